//go:build linux

// Command gwbench measures nodekeys gateway side by side, in one run, for
// scripts/bench-gateway.sh: valid Fleet calls a second and latency through
// the gateway against calls straight to a stand-in SuperLink, and valid
// calls a second (goodput) while a flooder sends stale, unknown-key or
// bad-signature calls at full speed, for the gateway in front of a Python
// SuperLink stand-in against that stand-in alone, and with -superlink the
// same for Flower's own SuperLink 1.27, its registered nodes' heartbeats
// as the valid calls. -replicas, -victims
// and -resets measure other things instead: replicas sharing Redis, forged
// floods under real nodes' keys, and HTTP/2 rapid resets.
//
// The load is a Go client in this repository, not ghz: every Flower call
// must carry a fresh ECDSA signature over its own timestamp, which ghz's
// static or templated metadata cannot make. Everything runs on loopback,
// each phase for a fixed time. It reads CPU times from /proc and getrusage,
// so it builds on Linux only.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
	"github.com/nodekeys/nodekeys/sign"
)

type opts struct {
	nodekeys, python, script string
	duration                 time.Duration
	nodes, clients, flooders int
	jsonOut                  bool
	only                     string
	rounds                   int
}

// phase is one measured configuration.
type phase struct {
	Name      string  `json:"name"`
	Target    string  `json:"target"`
	Flood     string  `json:"flood"`
	Calls     int     `json:"valid_calls"`
	Errors    int     `json:"valid_errors"`
	PerSec    float64 `json:"valid_per_second"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	FloodSec  float64 `json:"flood_per_second"`
	MinPerSec float64 `json:"valid_per_second_min"`
	MaxPerSec float64 `json:"valid_per_second_max"`
	Rounds    int     `json:"rounds"`
	// FirstError is the first valid call's error, if any failed.
	FirstError string `json:"first_error,omitempty"`
	// CPU microseconds per valid call of the gateways, of Redis and of
	// the load balancer (replica runs only).
	GatewayCPUus float64 `json:"gateway_cpu_us_per_call,omitempty"`
	RedisCPUus   float64 `json:"redis_cpu_us_per_call,omitempty"`
	FrontCPUus   float64 `json:"haproxy_cpu_us_per_call,omitempty"`
}

func main() {
	var o opts
	flag.StringVar(&o.nodekeys, "nodekeys", "nodekeys", "the nodekeys binary")
	flag.StringVar(&o.python, "python", "python3", "the Python interpreter with grpc and cryptography")
	flag.StringVar(&o.script, "script", "scripts/flower_superlink_standin.py", "the Python SuperLink stand-in")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "time a phase runs")
	flag.IntVar(&o.nodes, "nodes", 64, "signing SuperNodes")
	flag.IntVar(&o.clients, "clients", 32, "valid calls in flight at once")
	flag.IntVar(&o.flooders, "flooders", 256, "flood calls in flight at once")
	flag.BoolVar(&o.jsonOut, "json", false, "print JSON")
	flag.IntVar(&o.rounds, "rounds", 3, "times each phase runs, interleaved; figures are medians")
	replicas := flag.String("replicas", "", "instead: gateways sharing a Redis behind HAProxy, for each count in this list (1,2,4)")
	flag.StringVar(&o.only, "only", "", "run only the phases whose names contain this (go-direct, py-gateway-stale, ...)")
	victimsIn := flag.String("victims", "", "instead: forged signatures under 5 real nodes' keys, for each number of calls in flight in this list (256,2000,5000): the real nodes' valid calls refused")
	resets := flag.Int("resets", 0, "instead: the gateway's CPU time for this many HTTP/2 streams opened and reset at once")
	compare := flag.Bool("compare", false, "instead: the gateway against HAProxy (TLS, h2), the bare frame relay and no proxy, in front of the same stand-in")
	base := flag.String("base-nodekeys", "", "with -compare: also a gateway of this nodekeys binary (another version)")
	perfOut := flag.String("perf", "", "with -compare: record the gateway's CPU profile under load with perf into this file")
	superlink := flag.String("superlink", "", "also Flower's flower-superlink command (1.27) as the upstream, alone and behind the gateway (and HAProxy with -compare)")
	serve := flag.String("serve-standin", "", "serve the Go stand-in on this address until SIGTERM (used by -compare)")
	standinCert := flag.String("standin-cert", "", "with -serve-standin or -serve-relay: TLS certificate")
	standinKey := flag.String("standin-key", "", "with -serve-standin or -serve-relay: TLS key")
	serveRelayAddr := flag.String("serve-relay", "", "serve the bare frame relay (a yardstick, not a gateway) on this address until SIGTERM, with -standin-cert and -standin-key (used by -compare)")
	relayUpstream := flag.String("relay-upstream", "", "with -serve-relay: the upstream (h2c)")
	relayAllowlist := flag.String("relay-allowlist", "", "with -serve-relay: the keys CSV")
	flag.Parse()
	var err error
	if *serve != "" {
		err = serveStandin(*serve, *standinCert, *standinKey)
	} else if *serveRelayAddr != "" {
		err = serveRelay(*serveRelayAddr, *relayUpstream, *relayAllowlist, *standinCert, *standinKey)
	} else if *compare {
		err = runCompare(o, *base, *perfOut, *superlink)
	} else if *victimsIn != "" {
		var counts []int
		for _, f := range strings.Split(*victimsIn, ",") {
			n, cerr := strconv.Atoi(strings.TrimSpace(f))
			if cerr != nil || n < 0 {
				fmt.Fprintln(os.Stderr, "gwbench: -victims is a list of counts, like 0,256,2000,5000 (0: no flood)")
				os.Exit(2)
			}
			counts = append(counts, n)
		}
		err = runVictims(o, counts)
	} else if *resets > 0 {
		err = runResets(o, *resets)
	} else if *replicas != "" {
		var counts []int
		for _, f := range strings.Split(*replicas, ",") {
			n, cerr := strconv.Atoi(strings.TrimSpace(f))
			if cerr != nil || n < 1 {
				fmt.Fprintln(os.Stderr, "gwbench: -replicas is a list of counts, like 1,2,4")
				os.Exit(2)
			}
			counts = append(counts, n)
		}
		err = runReplicas(o, counts)
	} else {
		err = run(o, *superlink)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gwbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	o       opts
	dir     string
	tlsRes  *certs.Result
	signers []*sign.Signer // valid nodes
	flooder *sign.Signer   // an allowed key the attacker holds
	strange []*sign.Signer // keys not in the allowlist
	pool    *x509.CertPool
	procs   []*exec.Cmd
	pids    map[string]int // address served -> process, for CPU time
	// started, if set, is called when a phase's timed part starts, after
	// the connections and their warm-up calls.
	started func()
	// payloads, if set, are the requests of the valid calls and warm-up
	// calls on each signer's connection, instead of the stand-in's text
	// commands: a real SuperLink parses them.
	payloads [][]byte
	// controlOf is each Flower SuperLink's Control API address, by its
	// Fleet API address.
	controlOf map[string]string
}

// run measures the stand-ins alone and behind a gateway, and with
// superlink (the flower-superlink command of Flower 1.27) also Flower's own
// SuperLink alone and behind a gateway, under the same floods.
func run(o opts, superlink string) error {
	b, done, err := newBench(o, "")
	if err != nil {
		return err
	}
	defer done()
	dir := b.dir
	pair, err := b.certificates()
	if err != nil {
		return err
	}
	ks, err := keyset.Write(keyset.Options{Dir: filepath.Join(dir, "keys"), Count: o.nodes + 1})
	if err != nil {
		return err
	}
	for i, p := range ks.Pairs {
		s, err := sign.ReadKey(p.Private)
		if err != nil {
			return err
		}
		if i == o.nodes {
			b.flooder = s
		} else {
			b.signers = append(b.signers, s)
		}
	}
	for i := range 16 {
		p, err := keys.Generator{}.Pair(i)
		if err != nil {
			return err
		}
		s, _ := sign.New(p.Private)
		b.strange = append(b.strange, s)
	}

	// Part 1: the gateway's own cost, in front of the Go stand-in.
	goDirect, err := listenStandin(standin.Forgetful(), standin.WithTLS(pair))
	if err != nil {
		return err
	}
	defer goDirect.Stop()
	goBehind, err := listenStandin(standin.Forgetful())
	if err != nil {
		return err
	}
	defer goBehind.Stop()
	gwGo, err := b.startGateway(goBehind.Addr, ks.CSV)
	if err != nil {
		return err
	}
	// Part 2 and 3: a Python SuperLink stand-in, alone and behind a gateway.
	pyDirect, err := b.startPython(ks.CSV, true)
	if err != nil {
		return err
	}
	pyBehind, err := b.startPython(ks.CSV, false)
	if err != nil {
		return err
	}
	gwPy, err := b.startGateway(pyBehind, ks.CSV)
	if err != nil {
		return err
	}

	runs := map[string][]phase{}
	var order []string
	// The heartbeats of each Flower SuperLink's nodes, by the address the
	// calls go to; nil (the stand-ins' text commands) for the others.
	payloads := map[string][][]byte{}
	add := func(name, target, addr, flood string) error {
		clients := o.clients
		if name == "go-direct-1" || name == "go-gateway-1" {
			clients = 1 // unloaded latency
		}
		b.payloads = payloads[addr]
		p, err := b.measure(addr, flood, clients)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		p.Name, p.Target, p.Flood = name, target, flood
		if runs[name] == nil {
			order = append(order, name)
		}
		runs[name] = append(runs[name], p)
		return nil
	}
	plan := []struct{ name, target, addr, flood string }{
		{"go-direct-1", "Go stand-in, direct, 1 call", goDirect.Addr, ""},
		{"go-gateway-1", "gateway -> Go stand-in, 1 call", gwGo, ""},
		{"go-direct", "Go stand-in SuperLink, direct", goDirect.Addr, ""},
		{"go-gateway", "gateway -> Go stand-in", gwGo, ""},
		{"py-gateway", "gateway -> Python SuperLink", gwPy, ""},
		{"py-gateway-stale", "gateway -> Python SuperLink", gwPy, "stale"},
		{"py-gateway-unknown", "gateway -> Python SuperLink", gwPy, "unknown-key"},
		{"py-gateway-badsig", "gateway -> Python SuperLink", gwPy, "bad-signature"},
		{"py-direct", "Python SuperLink, direct", pyDirect, ""},
		{"py-direct-stale", "Python SuperLink, direct", pyDirect, "stale"},
		{"py-direct-unknown", "Python SuperLink, direct", pyDirect, "unknown-key"},
		{"py-direct-badsig", "Python SuperLink, direct", pyDirect, "bad-signature"},
		{"go-gateway-badsig", "gateway -> Go stand-in", gwGo, "bad-signature"},
	}
	if superlink != "" {
		// Part 4: Flower's own SuperLink, alone and behind a gateway, with
		// its registered nodes' heartbeats as the valid calls and as the
		// floods' bodies.
		flDirect, flBehind, err := b.startFlower(superlink, payloads)
		if err != nil {
			return err
		}
		flGw, err := b.startGateway(flBehind, ks.CSV)
		if err != nil {
			return err
		}
		payloads[flGw] = payloads[flBehind]
		for _, t := range []struct{ name, target, addr string }{
			{"fl-gateway", "gateway -> Flower SuperLink", flGw},
			{"fl-direct", "Flower SuperLink, direct", flDirect},
		} {
			for _, f := range []struct{ suffix, flood string }{
				{"", ""}, {"-stale", "stale"}, {"-unknown", "unknown-key"}, {"-badsig", "bad-signature"},
			} {
				plan = append(plan, struct{ name, target, addr, flood string }{t.name + f.suffix, t.target, t.addr, f.flood})
			}
		}
	}
	// Rounds interleave the phases, so that a slow minute of the machine
	// falls on every configuration alike; each figure is the median.
	for range o.rounds {
		for _, s := range plan {
			if o.only != "" && !strings.Contains(s.name, o.only) {
				continue
			}
			if err := add(s.name, s.target, s.addr, s.flood); err != nil {
				return err
			}
		}
	}
	var phases []phase
	for _, name := range order {
		phases = append(phases, median(runs[name]))
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(phases)
	}
	report(phases, o)
	return nil
}

// certificates writes the TLS files, loads the CA the clients trust, and
// returns the server's key pair.
func (b *bench) certificates() (tls.Certificate, error) {
	var err error
	if b.tlsRes, err = certs.Write(certs.Options{Dir: filepath.Join(b.dir, "certificates")}); err != nil {
		return tls.Certificate{}, err
	}
	ca, err := os.ReadFile(b.tlsRes.CACert)
	if err != nil {
		return tls.Certificate{}, err
	}
	b.pool = x509.NewCertPool()
	b.pool.AppendCertsFromPEM(ca)
	return tls.LoadX509KeyPair(b.tlsRes.ServerCert, b.tlsRes.ServerKey)
}

// median returns the phase with each figure the median of the runs, the
// range of valid calls a second, and the errors of all runs.
func median(ps []phase) phase {
	out := ps[0]
	pick := func(get func(phase) float64) float64 {
		v := make([]float64, len(ps))
		for i, p := range ps {
			v[i] = get(p)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	out.PerSec = pick(func(p phase) float64 { return p.PerSec })
	out.P50us = pick(func(p phase) float64 { return p.P50us })
	out.P99us = pick(func(p phase) float64 { return p.P99us })
	out.FloodSec = pick(func(p phase) float64 { return p.FloodSec })
	out.GatewayCPUus = pick(func(p phase) float64 { return p.GatewayCPUus })
	out.RedisCPUus = pick(func(p phase) float64 { return p.RedisCPUus })
	out.FrontCPUus = pick(func(p phase) float64 { return p.FrontCPUus })
	out.MinPerSec, out.MaxPerSec = out.PerSec, out.PerSec
	out.Calls, out.Errors = 0, 0
	for _, p := range ps {
		out.Calls += p.Calls
		out.Errors += p.Errors
		out.MinPerSec = min(out.MinPerSec, p.PerSec)
		out.MaxPerSec = max(out.MaxPerSec, p.PerSec)
		if out.FirstError == "" {
			out.FirstError = p.FirstError
		}
	}
	out.Rounds = len(ps)
	return out
}

func listenStandin(opts ...standin.Option) (*standin.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return standin.Start(ln, opts...), nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startGateway runs `nodekeys gateway` in front of upstream with its
// defaults, and waits for it to be ready.
func (b *bench) startGateway(upstream, csv string) (string, error) {
	fleet, err := freeAddr()
	if err != nil {
		return "", err
	}
	metrics, err := freeAddr()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(b.o.nodekeys, "gateway", "--listen-fleet", fleet, "--listen-control", "-",
		"--upstream", upstream, "--upstream-insecure", "--allowlist", csv,
		"--tls-cert", b.tlsRes.ServerCert, "--tls-key", b.tlsRes.ServerKey, "--metrics", metrics, "--log-level", "error")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	b.procs = append(b.procs, cmd)
	return fleet, waitTCP(fleet)
}

// startPython runs the Python SuperLink stand-in, with TLS or without.
func (b *bench) startPython(csv string, withTLS bool) (string, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	args := []string{b.o.script, csv, addr}
	if withTLS {
		args = append(args, b.tlsRes.ServerCert, b.tlsRes.ServerKey)
	}
	cmd := exec.Command(b.o.python, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	b.procs = append(b.procs, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		return "", fmt.Errorf("the Python stand-in did not start: %q %v", line, err)
	}
	return addr, nil
}

func (b *bench) stopAll() {
	for _, p := range b.procs {
		p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.Process.Kill()
		}
	}
}

func waitTCP(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

func (b *bench) dial(addr string, creds credentials.PerRPCCredentials) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: b.pool, ServerName: "localhost"})),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(standin.Codec())),
	}
	if creds != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(creds))
	}
	return grpc.NewClient(addr, opts...)
}

const method = flwr.FleetPrefix + "SendNodeHeartbeat"

// floodHeaders makes the headers a flooder sends round robin.
func (b *bench) floodHeaders(kind string) ([]sign.Headers, error) {
	var out []sign.Headers
	now := time.Now()
	for i := range 256 {
		var h sign.Headers
		var err error
		switch kind {
		case "stale":
			h, err = b.signers[i%len(b.signers)].SignTimestamp(flwr.FormatTimestamp(now.Add(-400*time.Second - time.Duration(i)*time.Millisecond)))
		case "unknown-key":
			h, err = b.strange[i%len(b.strange)].SignTimestamp(flwr.FormatTimestamp(now.Add(-time.Duration(i) * time.Millisecond)))
		case "bad-signature":
			h, err = b.flooder.SignTimestamp(flwr.FormatTimestamp(now.Add(-time.Duration(i) * time.Millisecond)))
			if err == nil {
				h.Signature = append([]byte(nil), h.Signature...)
				h.Signature[len(h.Signature)-1] ^= 1
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// measure runs valid clients (and a flood) against addr for the duration.
func (b *bench) measure(addr, flood string, clients int) (phase, error) {
	var p phase
	conns := make([]*grpc.ClientConn, len(b.signers))
	for i, s := range b.signers {
		c, err := b.dial(addr, s.PerRPCCredentials())
		if err != nil {
			return p, err
		}
		defer c.Close()
		conns[i] = c
	}
	// Warm up every connection (handshakes are not what is measured).
	for i, c := range conns {
		req, out := []byte("warm"), []byte{}
		if b.payloads != nil {
			req = b.payloads[i]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Invoke(ctx, method, &req, &out)
		cancel()
		if err != nil {
			return p, fmt.Errorf("warm-up call: %w", err)
		}
	}
	if b.started != nil {
		b.started()
	}
	// Calls get a generous deadline; the phase ends at stop, after which no
	// call starts, so no call is cut short by the phase's end.
	ctx, cancel := context.WithTimeout(context.Background(), b.o.duration+30*time.Second)
	defer cancel()
	stop := time.Now().Add(b.o.duration)
	running := func() bool { return time.Now().Before(stop) }
	var floodN atomic.Int64
	var fw sync.WaitGroup
	if flood != "" {
		hs, err := b.floodHeaders(flood)
		if err != nil {
			return p, err
		}
		fconns := make([]*grpc.ClientConn, 4)
		for i := range fconns {
			c, err := b.dial(addr, nil)
			if err != nil {
				return p, err
			}
			defer c.Close()
			fconns[i] = c
		}
		for f := range b.o.flooders {
			fw.Go(func() {
				c := fconns[f%len(fconns)]
				for i := f; running(); i += b.o.flooders {
					h := hs[i%len(hs)]
					fctx := metadata.AppendToOutgoingContext(ctx, sign.HeaderPublicKey, string(h.PublicKey),
						sign.HeaderTimestamp, h.Timestamp, sign.HeaderSignature, string(h.Signature))
					req, out := []byte("flood"), []byte{}
					if b.payloads != nil {
						// A real SuperLink parses the body of a call its
						// signature check lets through: a heartbeat.
						req = b.payloads[i%len(b.payloads)]
					}
					c.Invoke(fctx, method, &req, &out)
					floodN.Add(1)
				}
			})
		}
	}
	lat := make([][]time.Duration, clients)
	var errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := range clients {
		wg.Go(func() {
			for i := w; running(); i += clients {
				c := conns[i%len(conns)]
				req, out := []byte("echo:valid"), []byte{}
				if b.payloads != nil {
					req = b.payloads[i%len(conns)]
				}
				t0 := time.Now()
				err := c.Invoke(ctx, method, &req, &out)
				if err != nil {
					if errs.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	fw.Wait()
	if ctx.Err() != nil {
		return p, fmt.Errorf("calls still running 30 s after the phase ended")
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	p.Calls, p.Errors = len(all), int(errs.Load())
	if e, ok := firstErr.Load().(string); ok {
		p.FirstError = e
	}
	p.PerSec = float64(len(all)) / elapsed.Seconds()
	p.FloodSec = float64(floodN.Load()) / elapsed.Seconds()
	if len(all) > 0 {
		p.P50us = float64(all[len(all)/2].Microseconds())
		p.P99us = float64(all[len(all)*99/100].Microseconds())
	}
	return p, nil
}

func report(ps []phase, o opts) {
	by := map[string]phase{}
	for _, p := range ps {
		by[p.Name] = p
	}
	fmt.Printf("%d signing SuperNodes, %d valid calls in flight, %d flood calls in flight, %s a phase, medians of %d interleaved rounds,\nloopback, %d cores shared by the load, the gateway and the stand-ins\n\n",
		o.nodes, o.clients, o.flooders, o.duration, o.rounds, runtimeCores())
	fmt.Printf("%-30s %-14s %12s %13s %9s %9s %9s %7s\n", "target", "flood", "valid/s", "range", "p50 us", "p99 us", "flood/s", "errors")
	for _, p := range ps {
		fl := p.Flood
		if fl == "" {
			fl = "-"
		}
		fmt.Printf("%-30s %-14s %12.0f %6.0f-%-6.0f %9.0f %9.0f %9.0f %7d\n", p.Target, fl, p.PerSec, p.MinPerSec, p.MaxPerSec, p.P50us, p.P99us, p.FloodSec, p.Errors)
		if p.FirstError != "" {
			fmt.Printf("    first error: %s\n", p.FirstError)
		}
	}
	if o.only != "" {
		return
	}
	d, g := by["go-direct"], by["go-gateway"]
	d1, g1 := by["go-direct-1"], by["go-gateway-1"]
	fmt.Printf("\nthrough the gateway vs straight to the Go stand-in: %.2fx the calls/s under load;\n"+
		"one call at a time, the gateway adds %.0f us at p50 (%.0f vs %.0f) and %.0f us at p99 (%.0f vs %.0f)\n",
		g.PerSec/d.PerSec, g1.P50us-d1.P50us, g1.P50us, d1.P50us, g1.P99us-d1.P99us, g1.P99us, d1.P99us)
	for _, up := range []struct{ prefix, name string }{{"py-", "Python stand-in"}, {"fl-", "Flower SuperLink"}} {
		base, ok := by[up.prefix+"gateway"]
		if !ok {
			continue
		}
		fmt.Printf("\nin front of the %s:\n", up.name)
		for _, f := range []string{"stale", "unknown", "badsig"} {
			g, d := by[up.prefix+"gateway-"+f], by[up.prefix+"direct-"+f]
			fmt.Printf("  under the %-7s flood: gateway goodput %3.0f%% of unflooded (target >= 80%%); %.0f vs %.0f valid/s alone = %.1fx; p99 %.0f vs %.0f us\n",
				f, 100*g.PerSec/max(base.PerSec, 0.001), g.PerSec, d.PerSec, g.PerSec/max(d.PerSec, 0.001), g.P99us, d.P99us)
		}
	}
	fmt.Println("(target under the bad-signature flood: >= 5x the valid calls/s of the SuperLink alone)")
}

func runtimeCores() int { return runtime.NumCPU() }

// newBench makes a bench in a new temporary folder named gwbench-NAME...;
// done stops the processes it started and removes the folder.
func newBench(o opts, name string) (b *bench, done func(), err error) {
	dir, err := os.MkdirTemp("", "gwbench-"+name)
	if err != nil {
		return nil, nil, err
	}
	b = &bench{o: o, dir: dir, pids: map[string]int{}}
	return b, func() { b.stopAll(); os.RemoveAll(dir) }, nil
}
