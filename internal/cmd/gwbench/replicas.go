//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/gateway/shared"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/keyset"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// Flower's SuperNode defaults, from its sources (flwr/common/constant.py
// and flwr/supernode/main_loop.py): a heartbeat every 30 s times 0.8
// (HEARTBEAT_DEFAULT_INTERVAL, HEARTBEAT_BASE_MULTIPLIER), and, while no
// message waits, PullMessages every 3 s.
const (
	heartbeatEvery = 24 * time.Second
	pullEvery      = 3 * time.Second
)

// replicaResult is the report of the replica benchmark.
type replicaResult struct {
	Phases []phase `json:"phases"`
	// RoundTripUs: one SET NX (the replay guard) and one token-bucket
	// script (the rate limit), sequential, on loopback.
	ReplayRoundTripUs float64 `json:"replay_round_trip_us"`
	RateRoundTripUs   float64 `json:"rate_round_trip_us"`
	// BytesPerReplayEntry and BytesPerBucket: Redis used_memory per entry.
	BytesPerReplayEntry float64 `json:"bytes_per_replay_entry"`
	BytesPerBucket      float64 `json:"bytes_per_bucket"`
	Cores               int     `json:"cores"`
}

// runReplicas measures gateways sharing a Redis, behind HAProxy's TCP
// round robin: 1 gateway without Redis (the baseline), 1 with Redis, then
// n replicas for each n asked, each phase in rounds, interleaved.
func runReplicas(o opts, counts []int) error {
	b, done, err := newBench(o, "replicas-")
	if err != nil {
		return err
	}
	defer done()
	ks, err := b.setup()
	if err != nil {
		return err
	}
	redisAddr, err := b.startRedis()
	if err != nil {
		return err
	}
	up, err := listenStandin(standin.Forgetful())
	if err != nil {
		return err
	}
	defer up.Stop()

	alone, err := b.startGatewayConfig(up.Addr, ks, "")
	if err != nil {
		return err
	}
	withRedis, err := b.startGatewayConfig(up.Addr, ks, redisAddr)
	if err != nil {
		return err
	}
	// Each target names the processes whose CPU time a phase counts.
	type target struct {
		name, label, addr string
		gateways          []string
		front             string
	}
	plan := []target{
		{"alone-1", "1 gateway, no Redis, 1 call", alone, []string{alone}, ""},
		{"redis-1", "1 gateway + Redis, 1 call", withRedis, []string{withRedis}, ""},
		{"alone", "1 gateway, no Redis", alone, []string{alone}, ""},
		{"redis", "1 gateway + Redis", withRedis, []string{withRedis}, ""},
	}
	maxN := 0
	for _, n := range counts {
		maxN = max(maxN, n)
	}
	var gws []string
	for range maxN {
		g, err := b.startGatewayConfig(up.Addr, ks, redisAddr)
		if err != nil {
			return err
		}
		gws = append(gws, g)
	}
	for _, n := range counts {
		front, err := b.startHAProxy(gws[:n])
		if err != nil {
			return err
		}
		plan = append(plan, target{fmt.Sprintf("haproxy-%d", n), fmt.Sprintf("HAProxy -> %d gateway(s) + Redis", n), front, gws[:n], front})
	}

	runs := map[string][]phase{}
	var order []string
	for range o.rounds {
		for _, t := range plan {
			if o.only != "" && !strings.Contains(t.name, o.only) {
				continue
			}
			clients := o.clients
			if strings.HasSuffix(t.name, "-1") && !strings.HasPrefix(t.name, "haproxy") {
				clients = 1
			}
			gw0, redis0, front0 := b.cpu(t.gateways...), b.cpu(redisAddr), b.cpu(t.front)
			p, err := b.measure(t.addr, "", clients)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if p.Calls > 0 {
				// The warm-up calls are few against a phase's; they are
				// counted in the CPU time but not in the calls.
				n := float64(p.Calls)
				p.GatewayCPUus = (b.cpu(t.gateways...) - gw0) / n * 1e6
				p.RedisCPUus = (b.cpu(redisAddr) - redis0) / n * 1e6
				p.FrontCPUus = (b.cpu(t.front) - front0) / n * 1e6
			}
			p.Name, p.Target = t.name, t.label
			if runs[t.name] == nil {
				order = append(order, t.name)
			}
			runs[t.name] = append(runs[t.name], p)
		}
	}
	res := replicaResult{Cores: runtimeCores()}
	for _, name := range order {
		res.Phases = append(res.Phases, median(runs[name]))
	}
	if err := measureRedis(redisAddr, &res); err != nil {
		return err
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	reportReplicas(res, o)
	return nil
}

// cpu returns the CPU seconds (user and system) that the processes
// serving at addrs have used so far, from /proc.
func (b *bench) cpu(addrs ...string) float64 {
	var total float64
	for _, a := range addrs {
		pid, ok := b.pids[a]
		if !ok {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if len(f) > 13 {
			u, _ := strconv.ParseFloat(f[11], 64)
			s, _ := strconv.ParseFloat(f[12], 64)
			total += (u + s) / clockTicks
		}
	}
	return total
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100

// setup makes the certificates and the signing nodes.
func (b *bench) setup() (*keyset.Result, error) {
	if _, err := b.certificates(); err != nil {
		return nil, err
	}
	ks, err := keyset.Write(keyset.Options{Dir: filepath.Join(b.dir, "keys"), Count: b.o.nodes})
	if err != nil {
		return nil, err
	}
	for _, p := range ks.Pairs {
		s, err := sign.ReadKey(p.Private)
		if err != nil {
			return nil, err
		}
		b.signers = append(b.signers, s)
	}
	return ks, nil
}

// startRedis runs redis-server on a free loopback port, no persistence.
func (b *bench) startRedis() (string, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("redis-server (apt-get install redis-server): %w", err)
	}
	b.procs = append(b.procs, cmd)
	b.pids[addr] = cmd.Process.Pid
	return addr, waitTCP(addr)
}

// startGatewayConfig runs `nodekeys gateway` from a config file, with
// shared state in the Redis at redisAddr if it is not empty.
func (b *bench) startGatewayConfig(upstream string, ks *keyset.Result, redisAddr string) (string, error) {
	fleet, err := freeAddr()
	if err != nil {
		return "", err
	}
	metrics, err := freeAddr()
	if err != nil {
		return "", err
	}
	conf := fmt.Sprintf("listen_fleet: %s\nlisten_control: \"-\"\nupstream: %s\nupstream_insecure: true\n"+
		"allowlist: [%s]\ntls_cert: %s\ntls_key: %s\nmetrics: %s\nlog_level: error\n",
		fleet, upstream, ks.CSV, b.tlsRes.ServerCert, b.tlsRes.ServerKey, metrics)
	if redisAddr != "" {
		conf += fmt.Sprintf("redis:\n  addrs: [%s]\n", redisAddr)
	}
	path := filepath.Join(b.dir, "gateway-"+strings.ReplaceAll(fleet, ":", "-")+".yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", err
	}
	cmd := exec.Command(b.o.nodekeys, "gateway", "--config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	b.procs = append(b.procs, cmd)
	b.pids[fleet] = cmd.Process.Pid
	return fleet, waitTCP(fleet)
}

// startHAProxy runs HAProxy as a TCP round robin over gateways; TLS goes
// through it to the gateways untouched.
func (b *bench) startHAProxy(gateways []string) (string, error) {
	front, err := freeAddr()
	if err != nil {
		return "", err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n")
	fmt.Fprintf(&conf, "frontend fleet\n  bind %s\n  default_backend gateways\nbackend gateways\n  balance roundrobin\n", front)
	for i, g := range gateways {
		fmt.Fprintf(&conf, "  server g%d %s\n", i, g)
	}
	path := filepath.Join(b.dir, "haproxy-"+strconv.Itoa(len(gateways))+".cfg")
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
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

// measureRedis times the two round trips of a Fleet call, sequentially,
// and the memory of a replay entry and of a rate bucket.
func measureRedis(addr string, res *replicaResult) error {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	be, err := shared.New(ctx, shared.Config{Addrs: []string{addr}, Prefix: "bench:", Timeout: 2 * time.Second}, nil)
	if err != nil {
		return err
	}
	defer be.Close()
	used := func() (float64, error) {
		info, err := rdb.Info(ctx, "memory").Result()
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				return strconv.ParseFloat(v, 64)
			}
		}
		return 0, fmt.Errorf("no used_memory in INFO")
	}
	const entries, buckets = 20000, 5000
	shared := be.Replay(replay.NewGuard(0))
	base := time.Now()
	before, err := used()
	if err != nil {
		return err
	}
	start := time.Now()
	for i := range entries {
		signed := base.Add(time.Duration(i) * time.Microsecond)
		if err := shared.Check("bench-key-"+strconv.Itoa(i%100), flwr.FormatTimestamp(signed), signed, base, base.Add(10*time.Minute)); err != nil {
			return err
		}
	}
	res.ReplayRoundTripUs = float64(time.Since(start).Microseconds()) / entries
	mid, err := used()
	if err != nil {
		return err
	}
	limit := be.Limiter(100, 1000, nil)
	start = time.Now()
	for i := range buckets {
		if err := limit("bench-key-"+strconv.Itoa(i), base); err != nil {
			return err
		}
	}
	res.RateRoundTripUs = float64(time.Since(start).Microseconds()) / buckets
	after, err := used()
	if err != nil {
		return err
	}
	res.BytesPerReplayEntry = (mid - before) / entries
	res.BytesPerBucket = (after - mid) / buckets
	return nil
}

func reportReplicas(r replicaResult, o opts) {
	by := map[string]phase{}
	fmt.Printf("%d signing SuperNodes, %d valid calls in flight, %s a phase, medians of %d interleaved rounds,\n"+
		"loopback, %d cores shared by the load, HAProxy, every gateway, Redis and the Go stand-in\n\n",
		o.nodes, o.clients, o.duration, o.rounds, r.Cores)
	fmt.Printf("%-36s %10s %13s %9s %9s %7s %16s\n", "target", "valid/s", "range", "p50 us", "p99 us", "errors", "CPU us/call g/R/H")
	for _, p := range r.Phases {
		by[p.Name] = p
		fmt.Printf("%-36s %10.0f %6.0f-%-6.0f %9.0f %9.0f %7d %6.0f/%3.0f/%3.0f\n", p.Target, p.PerSec, p.MinPerSec, p.MaxPerSec, p.P50us, p.P99us, p.Errors,
			p.GatewayCPUus, p.RedisCPUus, p.FrontCPUus)
		if p.FirstError != "" {
			fmt.Printf("    first error: %s\n", p.FirstError)
		}
	}
	a1, r1 := by["alone-1"], by["redis-1"]
	fmt.Printf("\nRedis adds %.0f us at p50 to one call at a time (%.0f vs %.0f): its two round trips, measured alone at %.0f us (SET NX) + %.0f us (bucket script)\n",
		r1.P50us-a1.P50us, r1.P50us, a1.P50us, r.ReplayRoundTripUs, r.RateRoundTripUs)
	fmt.Printf("under load, 1 gateway with Redis does %.2fx the calls/s of one without\n", by["redis"].PerSec/max(by["alone"].PerSec, 1))
	if h1, ok := by["haproxy-1"]; ok {
		for _, name := range []string{"haproxy-2", "haproxy-4"} {
			if h, ok := by[name]; ok {
				fmt.Printf("%s vs 1 replica behind HAProxy: %.2fx the calls/s\n", strings.TrimPrefix(name, "haproxy-")+" replicas", h.PerSec/max(h1.PerSec, 1))
			}
		}
	}
	fmt.Printf("(CPU us/call: all gateways of the target / Redis / HAProxy, CPU time over valid calls)\n")
	perNode := float64(flwr.DefaultWindow.Past) / float64(time.Second) * (1/heartbeatEvery.Seconds() + 1/pullEvery.Seconds())
	fmt.Printf("Redis memory: %.0f bytes a replay entry, %.0f bytes a rate bucket; an idle Flower SuperNode (heartbeat every %s, pull every %s)\n"+
		"keeps %.0f replay entries in the %s window: %.1f KB of Redis per active node\n",
		r.BytesPerReplayEntry, r.BytesPerBucket, heartbeatEvery, pullEvery, perNode, flwr.DefaultWindow.Past,
		(perNode*r.BytesPerReplayEntry+r.BytesPerBucket)/1024)
}
