//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// compareResult is the report of the proxy comparison.
type compareResult struct {
	Phases []phase `json:"phases"`
	// VerifyHotUs and VerifyColdUs are one signature verification's CPU
	// time in this process: a key held by the hot-key cache, and a key on
	// the path without it.
	VerifyHotUs  float64 `json:"verify_hot_cpu_us"`
	VerifyColdUs float64 `json:"verify_cold_cpu_us"`
	Cores        int     `json:"cores"`
	// Profile is the perf data file of the gateway under load, if asked.
	Profile string `json:"profile,omitempty"`
}

// runCompare measures, in one run, calls straight to an upstream (TLS on
// the upstream itself), through HAProxy terminating TLS and speaking
// HTTP/2 both sides (no node authentication), through nodekeys gateway,
// and through the bare frame relay (relay.go: verification and frames
// relayed, nothing else), all in front of the same plaintext upstream: the
// Go stand-in, in a process of its own, so that its CPU time is its own.
// Each target runs with one call in flight (latency) and with o.clients
// (calls a second and CPU time per call), in interleaved rounds.
func runCompare(o opts, baseNodekeys, perfOut, superlink string) error {
	b, done, err := newBench(o, "compare-")
	if err != nil {
		return err
	}
	defer done()
	ks, err := b.setup()
	if err != nil {
		return err
	}
	direct, err := b.startStandinProcess(true)
	if err != nil {
		return err
	}
	behind, err := b.startStandinProcess(false)
	if err != nil {
		return err
	}
	hap, err := b.startHAProxyH2(behind)
	if err != nil {
		return err
	}
	gw, err := b.startGatewayConfig(behind, ks, "")
	if err != nil {
		return err
	}
	relay, err := b.startRelayProcess(behind, ks.CSV)
	if err != nil {
		return err
	}
	type target struct {
		name, label, addr string
		proxy             string   // the proxy's address, for its CPU time
		upstream          []string // the upstream's addresses, for its CPU time
	}
	ups := []string{direct, behind}
	// The heartbeats of each SuperLink's nodes, by its Fleet address.
	payloads := map[string][][]byte{}
	plan := []target{
		{"direct", "Go stand-in, direct (TLS)", direct, "", ups},
		{"haproxy", "HAProxy (TLS, h2) -> stand-in", hap, hap, ups},
		{"gateway", "nodekeys gateway -> stand-in", gw, gw, ups},
		{"relay", "bare frame relay -> stand-in", relay, relay, ups},
	}
	if baseNodekeys != "" {
		own := b.o.nodekeys
		b.o.nodekeys = baseNodekeys
		base, err := b.startGatewayConfig(behind, ks, "")
		b.o.nodekeys = own
		if err != nil {
			return err
		}
		plan = append(plan, target{"gateway-base", "base gateway -> stand-in", base, base, ups})
	}
	if superlink != "" {
		flDirect, flBehind, err := b.startFlower(superlink, payloads)
		if err != nil {
			return err
		}
		flHap, err := b.startHAProxyH2(flBehind)
		if err != nil {
			return err
		}
		flGw, err := b.startGatewayConfig(flBehind, ks, "")
		if err != nil {
			return err
		}
		flRelay, err := b.startRelayProcess(flBehind, ks.CSV)
		if err != nil {
			return err
		}
		fl := []string{flDirect, flBehind}
		payloads[flHap], payloads[flGw], payloads[flRelay] = payloads[flBehind], payloads[flBehind], payloads[flBehind]
		plan = append(plan,
			target{"flower-direct", "Flower SuperLink, direct (TLS)", flDirect, "", fl},
			target{"flower-haproxy", "HAProxy -> Flower SuperLink", flHap, flHap, fl},
			target{"flower-gateway", "gateway -> Flower SuperLink", flGw, flGw, fl},
			target{"flower-relay", "bare frame relay -> Flower SuperLink", flRelay, flRelay, fl})
	}
	res := compareResult{Cores: runtimeCores()}
	runs := map[string][]phase{}
	var order []string
	for round := range o.rounds {
		for _, t := range plan {
			for _, clients := range []int{1, o.clients} {
				name := t.name
				if clients == 1 {
					name += "-1"
				}
				if o.only != "" && !strings.Contains(name, o.only) {
					continue
				}
				// CPU time and the profile count from the timed part on: the
				// handshakes and warm-up calls of a phase's connections are
				// not what is measured.
				b.payloads = payloads[t.addr] // nil for the stand-in
				var stopPerf func() error
				var perfErr error
				var proxy0, up0 float64
				b.started = func() {
					if perfOut != "" && round == 0 && t.name == "gateway" && clients > 1 {
						stopPerf, perfErr = startPerf(b.pids[gw], perfOut)
						res.Profile = perfOut
					}
					proxy0, up0 = b.cpu(t.proxy), b.cpu(t.upstream...)
				}
				p, err := b.measure(t.addr, "", clients)
				b.started = nil
				if err == nil {
					err = perfErr
				}
				if stopPerf != nil {
					if perr := stopPerf(); perr != nil && err == nil {
						err = perr
					}
				}
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				if p.Calls > 0 {
					n := float64(p.Calls)
					p.GatewayCPUus = (b.cpu(t.proxy) - proxy0) / n * 1e6
					p.RedisCPUus = (b.cpu(t.upstream...) - up0) / n * 1e6
				}
				p.Name, p.Target = name, t.label
				if runs[name] == nil {
					order = append(order, name)
				}
				runs[name] = append(runs[name], p)
			}
		}
	}
	for _, name := range order {
		res.Phases = append(res.Phases, median(runs[name]))
	}
	if res.VerifyHotUs, res.VerifyColdUs, err = verificationCost(b.signers[0]); err != nil {
		return err
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	reportCompare(res, o)
	return nil
}

// startFlower runs two of Flower's SuperLinks (bin, the flower-superlink
// command of 1.27): direct, serving TLS itself, and behind, in clear text
// for a proxy in front of it. Every signer's node is registered and
// activated on each, and each one's heartbeats (the valid calls) are put
// in payloads under its Fleet address.
func (b *bench) startFlower(bin string, payloads map[string][][]byte) (direct, behind string, err error) {
	if direct, err = b.startSuperLink(bin, true); err != nil {
		return "", "", err
	}
	if behind, err = b.startSuperLink(bin, false); err != nil {
		return "", "", err
	}
	if payloads[direct], err = b.activateNodes(direct, true); err != nil {
		return "", "", err
	}
	if payloads[behind], err = b.activateNodes(behind, false); err != nil {
		return "", "", err
	}
	return direct, behind, nil
}

// startSuperLink runs Flower's SuperLink (the flower-superlink command of
// Flower 1.27) on free loopback ports, with TLS or without, node
// authentication off (the gateway is what checks the signatures here), its
// state in memory, and waits up to 3 minutes for its Fleet API.
func (b *bench) startSuperLink(bin string, withTLS bool) (string, error) {
	var addrs [3]string
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return "", err
		}
		addrs[i] = a
	}
	storage, err := os.MkdirTemp(b.dir, "superlink-")
	if err != nil {
		return "", err
	}
	args := []string{"--fleet-api-address", addrs[0], "--serverappio-api-address", addrs[1],
		"--control-api-address", addrs[2], "--storage-dir", storage, "--isolation", "process"}
	if withTLS {
		args = append(args, "--ssl-certfile", b.tlsRes.ServerCert, "--ssl-keyfile", b.tlsRes.ServerKey, "--ssl-ca-certfile", b.tlsRes.CACert)
	} else {
		args = append(args, "--insecure")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "FLWR_TELEMETRY_ENABLED=0")
	if err := cmd.Start(); err != nil {
		return "", err
	}
	b.procs = append(b.procs, cmd)
	b.pids[addrs[0]] = cmd.Process.Pid
	if b.controlOf == nil {
		b.controlOf = map[string]string{}
	}
	b.controlOf[addrs[0]] = addrs[2]
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addrs[0]); err == nil {
			c.Close()
			return addrs[0], nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("flower-superlink: nothing listens on %s after 3 minutes", addrs[0])
}

// activateNodes registers every signer's key with the SuperLink at fleet
// (Control RegisterNode, on the port after the ServerAppIo one), activates
// it (Fleet ActivateNode, signed), and returns each node's
// SendNodeHeartbeatRequest, the call the benchmark then makes.
func (b *bench) activateNodes(fleet string, withTLS bool) ([][]byte, error) {
	control := b.controlOf[fleet]
	dial := func(addr string, creds credentials.PerRPCCredentials) (*grpc.ClientConn, error) {
		if withTLS {
			return b.dial(addr, creds)
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec()))}
		if creds != nil {
			opts = append(opts, grpc.WithPerRPCCredentials(insecureCreds{creds}))
		}
		return grpc.NewClient(addr, opts...)
	}
	cc, err := dial(control, nil)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out [][]byte
	for _, s := range b.signers {
		h, err := s.SignTimestamp(flwr.FormatTimestamp(time.Now()))
		if err != nil {
			return nil, err
		}
		req := protowire.AppendTag(nil, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, h.PublicKey)
		var resp []byte
		if err := cc.Invoke(ctx, "/flwr.proto.Control/RegisterNode", &req, &resp); err != nil {
			return nil, fmt.Errorf("flower-superlink: RegisterNode: %w", err)
		}
		fc, err := dial(fleet, s.PerRPCCredentials())
		if err != nil {
			return nil, err
		}
		act := protowire.AppendTag(nil, 1, protowire.BytesType)
		act = protowire.AppendBytes(act, h.PublicKey)
		act = protowire.AppendTag(act, 2, protowire.Fixed64Type)
		act = protowire.AppendFixed64(act, math.Float64bits(30))
		err = fc.Invoke(ctx, "/flwr.proto.Fleet/ActivateNode", &act, &resp)
		fc.Close()
		if err != nil {
			return nil, fmt.Errorf("flower-superlink: ActivateNode: %w", err)
		}
		num, typ, n := protowire.ConsumeTag(resp)
		if n < 0 || num != 1 || typ != protowire.VarintType {
			return nil, fmt.Errorf("flower-superlink: ActivateNode answered %x", resp)
		}
		id, m := protowire.ConsumeVarint(resp[n:])
		if m < 0 {
			return nil, fmt.Errorf("flower-superlink: ActivateNode answered %x", resp)
		}
		node := protowire.AppendTag(nil, 1, protowire.VarintType)
		node = protowire.AppendVarint(node, id)
		hb := protowire.AppendTag(nil, 1, protowire.BytesType)
		hb = protowire.AppendBytes(hb, node)
		hb = protowire.AppendTag(hb, 2, protowire.Fixed64Type)
		hb = protowire.AppendFixed64(hb, math.Float64bits(30))
		out = append(out, hb)
	}
	return out, nil
}

// insecureCreds sends per-call credentials over a connection without TLS,
// on loopback.
type insecureCreds struct{ credentials.PerRPCCredentials }

func (insecureCreds) RequireTransportSecurity() bool { return false }

// startStandinProcess runs the Go stand-in in a process of its own (this
// program, -serve-standin), with TLS or without.
func (b *bench) startStandinProcess(withTLS bool) (string, error) {
	var args []string
	if withTLS {
		args = []string{"-standin-cert", b.tlsRes.ServerCert, "-standin-key", b.tlsRes.ServerKey}
	}
	return b.startSelf("-serve-standin", args...)
}

// startRelayProcess runs the bare frame relay (relay.go) in a process of
// its own (this program, -serve-relay) in front of upstream, admitting the
// keys of csv.
func (b *bench) startRelayProcess(upstream, csv string) (string, error) {
	return b.startSelf("-serve-relay", "-relay-upstream", upstream, "-relay-allowlist", csv,
		"-standin-cert", b.tlsRes.ServerCert, "-standin-key", b.tlsRes.ServerKey)
}

// startSelf runs this program with serveFlag set to a free loopback
// address, and the other args, and waits for it to listen there.
func (b *bench) startSelf(serveFlag string, args ...string) (string, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(self, append([]string{serveFlag, addr}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	b.procs = append(b.procs, cmd)
	b.pids[addr] = cmd.Process.Pid
	return addr, waitTCP(addr)
}

// serveStandin is -serve-standin: the Go stand-in on addr until SIGTERM.
func serveStandin(addr, certFile, keyFile string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	opts := []standin.Option{standin.Forgetful()}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return err
		}
		opts = append(opts, standin.WithTLS(pair))
	}
	s := standin.Start(ln, opts...)
	defer s.Stop()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

// startHAProxyH2 runs HAProxy terminating TLS for gRPC: HTTP/2 with ALPN
// h2 on the client side, HTTP/2 in clear text (h2c) to the upstream, one
// connection's streams multiplexed as the gateway does. No node
// authentication: what operators would put in front of a SuperLink
// without it.
func (b *bench) startHAProxyH2(upstream string) (string, error) {
	front, err := freeAddr()
	if err != nil {
		return "", err
	}
	crt := filepath.Join(b.dir, "haproxy.pem")
	cert, err := os.ReadFile(b.tlsRes.ServerCert)
	if err != nil {
		return "", err
	}
	key, err := os.ReadFile(b.tlsRes.ServerKey)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(crt, append(append(cert, '\n'), key...), 0o600); err != nil {
		return "", err
	}
	conf := fmt.Sprintf(`global
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
frontend fleet
  bind %s ssl crt %s alpn h2
  default_backend superlink
backend superlink
  server s1 %s proto h2
`, front, crt, upstream)
	path := filepath.Join(b.dir, "haproxy-h2.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", err
	}
	cmd := exec.Command("haproxy", "-db", "-f", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("haproxy (apt-get install haproxy): %w", err)
	}
	b.procs = append(b.procs, cmd)
	b.pids[front] = cmd.Process.Pid
	return front, waitTCP(front)
}

// startPerf records pid's CPU profile with call stacks into out until the
// returned function is called.
func startPerf(pid int, out string) (func() error, error) {
	cmd := exec.Command("perf", "record", "-q", "-F", "999", "-g", "-p", fmt.Sprint(pid), "-o", out)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf (apt-get install linux-perf): %w", err)
	}
	time.Sleep(200 * time.Millisecond) // perf attaches
	return func() error {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait() // perf ends by the signal it was sent
		if st, err := os.Stat(out); err != nil || st.Size() == 0 {
			return fmt.Errorf("perf wrote no profile to %s", out)
		}
		return nil
	}, nil
}

// verificationCost returns one verification's CPU time, in microseconds,
// for a key the hot-key cache holds and for one on the path without it:
// 300 verifications each, after a warm-up.
func verificationCost(s *sign.Signer) (hot, cold float64, err error) {
	h, err := s.SignTimestamp(flwr.FormatTimestamp(time.Now()))
	if err != nil {
		return 0, 0, err
	}
	k, err := keys.ParsePEMPublicKey(h.PublicKey)
	if err != nil {
		return 0, 0, err
	}
	list, err := verify.NewAllowlist([]*keys.PublicKey{k})
	if err != nil {
		return 0, 0, err
	}
	cost := func(v *verify.Verifier) (float64, error) {
		for range 10 {
			if _, err := v.Verify(h); err != nil {
				return 0, err
			}
		}
		const n = 300
		c0 := selfCPU()
		for range n {
			v.Verify(h)
		}
		return (selfCPU() - c0) / n * 1e6, nil
	}
	if hot, err = cost(verify.New(list, verify.WithHotKeys(verify.DefaultHotKeyBytes, 1))); err != nil {
		return 0, 0, err
	}
	cold, err = cost(verify.New(list, verify.WithHotKeys(0, 0)))
	return hot, cold, err
}

func reportCompare(r compareResult, o opts) {
	by := map[string]phase{}
	fmt.Printf("%d signing SuperNodes, %d valid calls in flight (and 1), %s a phase, medians of %d interleaved rounds,\n"+
		"loopback, %d cores shared by the load, the proxies and the stand-ins (each in its own process)\n\n",
		o.nodes, o.clients, o.duration, o.rounds, r.Cores)
	fmt.Printf("%-44s %10s %13s %9s %9s %7s %14s %14s\n", "target", "valid/s", "range", "p50 us", "p99 us", "errors", "proxy CPU/call", "upstream CPU")
	for _, p := range r.Phases {
		by[p.Name] = p
		label := p.Target
		if strings.HasSuffix(p.Name, "-1") {
			label += ", 1 call"
		}
		fmt.Printf("%-44s %10.0f %6.0f-%-6.0f %9.0f %9.0f %7d %11.0f us %11.0f us\n", label, p.PerSec, p.MinPerSec, p.MaxPerSec, p.P50us, p.P99us, p.Errors,
			p.GatewayCPUus, p.RedisCPUus)
		if p.FirstError != "" {
			fmt.Printf("    first error: %s\n", p.FirstError)
		}
	}
	fmt.Printf("\none verification here: %.0f us of CPU for a hot key, %.0f us without the hot-key cache\n", r.VerifyHotUs, r.VerifyColdUs)
	for _, up := range []string{"", "flower-"} {
		d1, ok1 := by[up+"direct-1"]
		d, ok := by[up+"direct"]
		if !ok1 || !ok {
			continue
		}
		for _, name := range []string{"haproxy", "gateway", "gateway-base", "relay"} {
			p1, ok1 := by[up+name+"-1"]
			p, ok := by[up+name]
			if !ok1 || !ok {
				continue
			}
			fmt.Printf("%-20s adds %5.0f us at p50 and %6.0f us at p99 to one call at a time; %.2fx the calls/s of direct under load; %.0f us of its CPU a call\n",
				up+name, p1.P50us-d1.P50us, p1.P99us-d1.P99us, p.PerSec/max(d.PerSec, 1), p.GatewayCPUus)
		}
		if h, g := by[up+"haproxy"], by[up+"gateway"]; h.PerSec > 0 && g.PerSec > 0 {
			fmt.Printf("%sgateway vs HAProxy: %.2fx the calls/s, %.2fx the CPU a call; p50 added latency over HAProxy's: %.0f us (one verification: %.0f us hot)\n",
				up, g.PerSec/h.PerSec, g.GatewayCPUus/max(h.GatewayCPUus, 1), by[up+"gateway-1"].P50us-by[up+"haproxy-1"].P50us, r.VerifyHotUs)
		}
		if h, x := by[up+"haproxy"], by[up+"relay"]; h.PerSec > 0 && x.PerSec > 0 {
			fmt.Printf("%sbare frame relay vs HAProxy: %.2fx the calls/s, %.2fx the CPU a call; p50 added latency over HAProxy's: %.0f us\n",
				up, x.PerSec/h.PerSec, x.GatewayCPUus/max(h.GatewayCPUus, 1), by[up+"relay-1"].P50us-by[up+"haproxy-1"].P50us)
		}
		if g, x := by[up+"gateway"], by[up+"relay"]; g.PerSec > 0 && x.PerSec > 0 {
			fmt.Printf("%sgateway vs bare frame relay: %.2fx the calls/s, %.2fx the CPU a call; p50 added latency over the relay's: %.0f us\n",
				up, g.PerSec/x.PerSec, g.GatewayCPUus/max(x.GatewayCPUus, 1), by[up+"gateway-1"].P50us-by[up+"relay-1"].P50us)
		}
	}
	if r.Profile != "" {
		fmt.Printf("perf data of the gateway under load: %s\n", r.Profile)
	}
}
