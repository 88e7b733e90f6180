//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/rapidreset"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/sign"
)

// victimResult is one phase of the forged-signature flood.
type victimResult struct {
	InFlight int `json:"flood_in_flight"`
	// Sent and Refused count the real nodes' valid calls, and those
	// refused as over their rate limit; Failed those that failed otherwise.
	Sent, Refused, Failed int
	// P50ms is the real nodes' median call time, refusals included.
	P50ms       float64 `json:"p50_ms"`
	FloodPerSec float64 `json:"flood_per_second"`
	GatewayCPU  float64 `json:"gateway_cpu_seconds"`
	// LoadCPU is this process's: the flooder's and the real nodes'.
	LoadCPU float64 `json:"load_cpu_seconds"`
	Seconds float64 `json:"seconds"`
}

// victims is how many real nodes a forged flood names.
const victims = 5

// runVictims measures, for each number of flood calls in flight, how many
// valid calls of 5 real nodes a gateway (its defaults) refuses while a
// flooder sends forged signatures under those nodes' public keys, which
// are not secret. Each real node calls every 100 ms, on its own
// connection, made before the flood.
func runVictims(o opts, inFlight []int) error {
	b, done, err := newBench(o, "victims-")
	if err != nil {
		return err
	}
	defer done()
	ks, err := b.setup()
	if err != nil {
		return err
	}
	if len(b.signers) < victims {
		return fmt.Errorf("-nodes must be at least %d", victims)
	}
	up, err := listenStandin(standin.Forgetful())
	if err != nil {
		return err
	}
	defer up.Stop()
	var out []victimResult
	for _, n := range inFlight {
		// A gateway of its own for each phase: no bucket is left spent
		// by the one before.
		gw, err := b.startGatewayConfig(up.Addr, ks, "")
		if err != nil {
			return err
		}
		r, err := b.victimPhase(gw, n)
		if err != nil {
			return fmt.Errorf("%d in flight: %w", n, err)
		}
		out = append(out, r)
		fmt.Fprintf(os.Stderr, "gwbench: %d in flight: %d of %d refused\n", n, r.Refused, r.Sent)
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Printf("forged signatures under %d real nodes' keys; each real node calls every 100 ms for %s; gateway defaults, %s\n\n", victims, o.duration, o.nodekeys)
	fmt.Printf("%10s %22s %8s %12s %10s %14s %11s\n", "in flight", "real calls refused", "failed", "real p50 ms", "flood/s", "gateway CPU s", "load CPU s")
	for _, r := range out {
		fmt.Printf("%10d %12d of %-7d %8d %12.1f %10.0f %14.2f %11.2f\n", r.InFlight, r.Refused, r.Sent, r.Failed, r.P50ms, r.FloodPerSec, r.GatewayCPU, r.LoadCPU)
	}
	return nil
}

func (b *bench) victimPhase(addr string, inFlight int) (victimResult, error) {
	res := victimResult{InFlight: inFlight}
	real := make([]*grpc.ClientConn, victims)
	for i := range real {
		c, err := b.dial(addr, b.signers[i].PerRPCCredentials())
		if err != nil {
			return res, err
		}
		defer c.Close()
		req, out := []byte("warm"), []byte{}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.Invoke(ctx, method, &req, &out)
		cancel()
		if err != nil {
			return res, fmt.Errorf("warm-up call: %w", err)
		}
		real[i] = c
	}
	// Forged: the real keys, fresh timestamps, signatures that do not
	// verify.
	var forged []sign.Headers
	now := time.Now()
	for i := range 64 * victims {
		h, err := b.signers[i%victims].SignTimestamp(flwr.FormatTimestamp(now.Add(-time.Duration(i) * time.Millisecond)))
		if err != nil {
			return res, err
		}
		h.Signature = append([]byte(nil), h.Signature...)
		h.Signature[len(h.Signature)-1] ^= 1
		forged = append(forged, h)
	}
	// Connections enough for the calls in flight (1,000 streams each at
	// most, the gateway's default), at least 4.
	fconns := make([]*grpc.ClientConn, max(4, (inFlight+499)/500))
	if inFlight == 0 {
		fconns = nil // a baseline without a flood
	}
	for i := range fconns {
		c, err := b.dial(addr, nil)
		if err != nil {
			return res, err
		}
		defer c.Close()
		fconns[i] = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.o.duration+30*time.Second)
	defer cancel()
	gw0, self0 := b.cpu(addr), selfCPU()
	start := time.Now()
	stop := start.Add(b.o.duration)
	running := func() bool { return time.Now().Before(stop) }
	var floodN atomic.Int64
	var fw sync.WaitGroup
	for f := range inFlight {
		fw.Go(func() {
			c := fconns[f%len(fconns)]
			for i := f; running(); i += inFlight {
				h := forged[i%len(forged)]
				fctx := metadata.AppendToOutgoingContext(ctx, sign.HeaderPublicKey, string(h.PublicKey),
					sign.HeaderTimestamp, h.Timestamp, sign.HeaderSignature, string(h.Signature))
				req, out := []byte("flood"), []byte{}
				c.Invoke(fctx, method, &req, &out)
				floodN.Add(1)
			}
		})
	}
	var sent, refused, failed atomic.Int64
	lat := make([][]time.Duration, len(real))
	var wg sync.WaitGroup
	for v, c := range real {
		wg.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for running() {
				req, out := []byte("echo:valid"), []byte{}
				t0 := time.Now()
				err := c.Invoke(ctx, method, &req, &out)
				lat[v] = append(lat[v], time.Since(t0))
				sent.Add(1)
				switch {
				case status.Code(err) == codes.ResourceExhausted:
					refused.Add(1)
				case err != nil:
					failed.Add(1)
				}
				<-tick.C
			}
		})
	}
	wg.Wait()
	fw.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.GatewayCPU, res.LoadCPU = b.cpu(addr)-gw0, selfCPU()-self0
	res.Sent, res.Refused, res.Failed = int(sent.Load()), int(refused.Load()), int(failed.Load())
	res.FloodPerSec = float64(floodN.Load()) / res.Seconds
	if all := slices.Concat(lat...); len(all) > 0 {
		slices.Sort(all)
		res.P50ms = float64(all[len(all)/2].Microseconds()) / 1000
	}
	if ctx.Err() != nil {
		return res, errors.New("calls still running 30 s after the phase ended")
	}
	return res, nil
}

// resetResult is the rapid-reset measure.
type resetResult struct {
	Resets      int     `json:"resets"`
	Connections int     `json:"connections"`
	Seconds     float64 `json:"seconds"`
	GatewayCPU  float64 `json:"gateway_cpu_seconds"`
	CPUus       float64 `json:"gateway_cpu_us_per_reset"`
	PerSec      float64 `json:"resets_per_second"`
	FirstConn   int     `json:"resets_on_first_connection"`
	// ClientCPU is this process's CPU time over the same span: what the
	// resets cost the one sending them.
	ClientCPU float64 `json:"client_cpu_seconds"`
}

// runResets sends count HTTP/2 streams, each opened (a Fleet call's
// headers) and reset at once, to a gateway with its defaults, on one
// connection for as long as the gateway keeps it and then on new ones, and
// reports the gateway's CPU time for them. Streams go in batches of 50,
// each followed by a SETTINGS frame whose acknowledgement says the gateway has read them, so
// that a stream is counted only once the gateway has read it.
func runResets(o opts, count int) error {
	b, done, err := newBench(o, "resets-")
	if err != nil {
		return err
	}
	defer done()
	ks, err := b.setup()
	if err != nil {
		return err
	}
	up, err := listenStandin(standin.Forgetful())
	if err != nil {
		return err
	}
	defer up.Stop()
	gw, err := b.startGatewayConfig(up.Addr, ks, "")
	if err != nil {
		return err
	}
	conf := &tls.Config{RootCAs: b.pool, ServerName: "localhost"}
	res := resetResult{}
	cpu0, self0 := b.cpu(gw), selfCPU()
	start := time.Now()
	const batch = 50
	var c *rapidreset.Conn
	for res.Resets < count {
		if c == nil {
			if c, err = rapidreset.Dial(gw, conf); err != nil {
				return err
			}
			res.Connections++
		}
		n := min(batch, count-res.Resets)
		for range n {
			if c.Reset(method) != nil {
				break
			}
		}
		if err := c.Sync(10 * time.Second); err != nil {
			// Closed: the streams of this batch may not have been read.
			c.Close()
			c = nil
			continue
		}
		res.Resets += n
		if res.Connections == 1 {
			res.FirstConn = res.Resets
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.ClientCPU = selfCPU() - self0
	if c != nil {
		c.Close()
	}
	time.Sleep(time.Second) // the handlers of the last streams finish
	res.GatewayCPU = b.cpu(gw) - cpu0
	res.CPUus = res.GatewayCPU / float64(res.Resets) * 1e6
	res.PerSec = float64(res.Resets) / res.Seconds
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Printf("%d streams opened and reset (HEADERS + RST_STREAM), gateway defaults, %s\n", res.Resets, o.nodekeys)
	fmt.Printf("connections: %d (resets read on the first: %d)\n", res.Connections, res.FirstConn)
	fmt.Printf("wall: %.2f s, %.0f resets/s\n", res.Seconds, res.PerSec)
	fmt.Printf("gateway CPU: %.2f s, %.1f us a reset, %.2f cores\n", res.GatewayCPU, res.CPUus, res.GatewayCPU/res.Seconds)
	fmt.Printf("sender CPU: %.2f s; the gateway spends %.1fx the sender's\n", res.ClientCPU, res.GatewayCPU/res.ClientCPU)
	return nil
}

// selfCPU returns the CPU seconds (user and system) this process has used.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
