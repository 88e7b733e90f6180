package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/internal/tlsconf"

	"google.golang.org/grpc"
)

// TLS makes the TLS handshake a SuperNode makes with addr (HOST:PORT): the
// CA certificate in caFile, the host as the name, HTTP/2 as gRPC asks.
func TLS(ctx context.Context, addr, caFile string) []Finding {
	var out []Finding
	add := func(check string, sev Severity, problem, fix string) {
		out = append(out, Finding{Check: check, Severity: sev, File: addr, Problem: problem, Fix: fix})
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		add("tls", Error, fmt.Sprintf("%q is not HOST:PORT", addr), "give the address SuperNodes dial, e.g. superlink.example:9092")
		return out
	}
	pool, err := tlsconf.ReadCertPool(caFile)
	if err != nil {
		add("tls", Error, "the CA certificate does not load: "+err.Error(), "give --ca certificates/ca.crt")
		return out
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config: &tls.Config{RootCAs: pool, ServerName: host, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}}
	c, err := d.DialContext(ctx, "tcp", addr)
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var recErr tls.RecordHeaderError
	switch {
	case err == nil:
	case errors.As(err, &hostErr):
		add("tls-name", Error, fmt.Sprintf("the server's certificate does not cover %q: %v", host, hostErr),
			"renew it with the name: nodekeys certgen --force --add-san "+host)
		return out
	case errors.As(err, &authErr):
		add("tls-authority", Error, "the server's certificate was not issued by the CA given (unknown authority)",
			"give SuperNodes the ca.crt that issued the server's certificate, or renew the server's with this CA (certgen --force)")
		return out
	case errors.As(err, &invalid):
		add("tls-certificate", Error, "the server's certificate is not valid: "+invalid.Error(), "renew it: nodekeys certgen --force")
		return out
	case errors.As(err, &recErr):
		add("tls-protocol", Error, "the server does not speak TLS there (a SuperLink started with --insecure?)",
			"start it with --ssl-ca-certfile, --ssl-certfile and --ssl-keyfile, or put nodekeys gateway in front")
		return out
	default:
		add("reachable", Error, "cannot connect: "+err.Error(), "check the address, the port (Fleet API 9092) and firewalls")
		return out
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	if st.NegotiatedProtocol != "h2" {
		add("tls-protocol", Error, "the server did not agree to HTTP/2 (ALPN h2): not a gRPC server", "check that the address is the SuperLink's Fleet API")
	}
	return out
}

// SkewHTTP measures how far this machine's clock is from a server's, by
// the Date header of an HTTP answer (the gateway's /healthz), taking the
// middle of the request as the moment the server stamped it. The header
// has whole seconds, so the measure is good to about a second.
func SkewHTTP(ctx context.Context, url string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	end := time.Now()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return 0, fmt.Errorf("%s sent no Date header", url)
	}
	mid := start.Add(end.Sub(start) / 2)
	// The server's clock read somewhere in [date, date+1s).
	return mid.Sub(date.Add(500 * time.Millisecond)), nil
}

// SkewControl measures the clock offset by the "now" a SuperLink's
// Control API sends with ListNodes.
func SkewControl(ctx context.Context, conn grpc.ClientConnInterface) (time.Duration, error) {
	start := time.Now()
	out, err := flwrpb.NewControlClient(conn).ListNodes(ctx, &flwrpb.ListNodesRequest{})
	if err != nil {
		return 0, err
	}
	end := time.Now()
	server, err := time.Parse(time.RFC3339Nano, out.Now)
	if err != nil {
		t, ok := flwr.ParseTimestamp(out.Now)
		if !ok {
			return 0, fmt.Errorf("the SuperLink's time %q does not parse", out.Now)
		}
		server = t
	}
	return start.Add(end.Sub(start) / 2).Sub(server), nil
}

// Skew turns a measured offset (local minus server) into findings by
// Flower's window: a node more than 5 s ahead is refused; one 300 s or
// more behind is refused; a second or more either way deserves NTP.
func Skew(offset time.Duration, source string) []Finding {
	f := func(sev Severity, problem string) []Finding {
		return []Finding{{Check: "clock", Severity: sev, File: source, Problem: problem,
			Fix: "synchronise this machine's clock (and the SuperLink's) with NTP: timedatectl set-ntp true"}}
	}
	switch {
	case offset >= flwr.DefaultWindow.Future:
		return f(Error, fmt.Sprintf("this clock is %.1f s ahead of the server's: Flower refuses timestamps 5 s or more ahead", offset.Seconds()))
	case -offset >= flwr.DefaultWindow.Past-5*time.Second:
		return f(Error, fmt.Sprintf("this clock is %.0f s behind the server's: Flower refuses timestamps 305 s or more old", -offset.Seconds()))
	case offset >= 2*time.Second || offset <= -2*time.Second:
		return f(Warning, fmt.Sprintf("this clock is %.1f s off the server's", offset.Seconds()))
	}
	return nil
}
