// Package benchmark measures the verify core as a SuperLink operator would
// run it: an allowlist of many nodes, realistic headers, one core and all
// cores, with crypto/ecdsa as the baseline in the same process, and the
// cost of refusing floods of stale or unknown-key calls.
package benchmark

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"
	"math/big"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudflare/circl/ecc/p384"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// Config says what to measure.
type Config struct {
	// Nodes is the size of the allowlist.
	Nodes int
	// Duration is how long each throughput figure is measured.
	Duration time.Duration
	// Workers is the goroutines of the all-cores figures; 0 means GOMAXPROCS.
	Workers int
	// Headers is how many distinct valid and stale calls are signed
	// beforehand and replayed in turn (default 1024, at least the 64
	// signing nodes).
	Headers int
	// Log, if set, is told what is being measured.
	Log func(format string, args ...any)
}

// Report holds the figures of one run. Rates are calls per second.
type Report struct {
	Nodes      int `json:"nodes"`
	Workers    int `json:"workers"`
	GOMAXPROCS int `json:"gomaxprocs"`

	LoadSeconds float64 `json:"allowlist_load_seconds"`
	BytesPerKey float64 `json:"allowlist_bytes_per_key"`
	// ActiveKeyBytes is what a key holds on to once it has verified
	// twice (the precomputed 2^192·Q of the P-384 path), on top of
	// BytesPerKey.
	ActiveKeyBytes float64 `json:"active_key_extra_bytes"`
	// FirstCallNs and SecondCallNs are a key's first two valid calls: the
	// first takes the path without precomputation, the second pays for it.
	FirstCallNs  float64 `json:"first_call_ns"`
	SecondCallNs float64 `json:"second_call_ns"`

	FastOneCore  float64 `json:"verify_per_second_one_core"`
	FastAllCores float64 `json:"verify_per_second_all_cores"`
	StdOneCore   float64 `json:"stdlib_per_second_one_core"`
	StdAllCores  float64 `json:"stdlib_per_second_all_cores"`
	// SpeedupOneCore and SpeedupAllCores are fast / stdlib.
	SpeedupOneCore  float64 `json:"speedup_vs_stdlib_one_core"`
	SpeedupAllCores float64 `json:"speedup_vs_stdlib_all_cores"`
	// Scaling is FastAllCores / (FastOneCore × Workers).
	Scaling float64 `json:"scaling_efficiency"`

	// LookupNs is one allowlist lookup of a known key's header bytes.
	LookupNs  float64 `json:"lookup_ns"`
	ValidNs   float64 `json:"valid_ns_per_call"`
	StaleNs   float64 `json:"stale_flood_ns_per_call"`
	UnknownNs float64 `json:"unknown_key_flood_ns_per_call"`
	// StaleRatio and UnknownRatio say how many times cheaper a refused
	// call is than a valid one.
	StaleRatio   float64 `json:"stale_cheaper_by"`
	UnknownRatio float64 `json:"unknown_key_cheaper_by"`
}

// signers is how many nodes of the allowlist sign the measured calls.
const signers = 64

// Run builds the allowlist and measures.
func Run(cfg Config) (*Report, error) {
	if cfg.Nodes < signers {
		return nil, fmt.Errorf("benchmark: at least %d nodes", signers)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 2 * time.Second
	}
	if cfg.Headers <= 0 {
		cfg.Headers = 1024
	}
	logf := cfg.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	r := &Report{Nodes: cfg.Nodes, Workers: cfg.Workers, GOMAXPROCS: runtime.GOMAXPROCS(0)}

	logf("making %d keys", cfg.Nodes)
	pubs, privs, err := makeKeys(cfg.Nodes)
	if err != nil {
		return nil, err
	}
	data := csvlist.Marshal(pubs)
	signerKeys := append([]*keys.PublicKey(nil), pubs[:signers]...)
	pubs = nil

	logf("loading the allowlist (%d MB of CSV)", len(data)>>20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	l, err := csvlist.Parse("allowlist", data)
	if err != nil {
		return nil, err
	}
	list, err := verify.NewAllowlist(l.Keys())
	if err != nil {
		return nil, err
	}
	r.LoadSeconds = time.Since(start).Seconds()
	l = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	r.BytesPerKey = float64(after.HeapAlloc-before.HeapAlloc) / float64(cfg.Nodes)
	runtime.KeepAlive(list)

	now := time.Now()
	valid, stale, unknown, err := makeHeaders(privs, max(cfg.Headers, signers), now)
	if err != nil {
		return nil, err
	}
	fast := verify.New(list)
	std := verify.New(list, verify.StandardLibrary())

	logf("verifying on one core")
	r.FastOneCore = rate(fast, valid, now, 1, cfg.Duration, true)
	r.StdOneCore = rate(std, valid, now, 1, cfg.Duration, true)
	logf("verifying on %d workers", cfg.Workers)
	r.FastAllCores = rate(fast, valid, now, cfg.Workers, cfg.Duration, true)
	r.StdAllCores = rate(std, valid, now, cfg.Workers, cfg.Duration, true)
	logf("verifying keys' first calls")
	if r.FirstCallNs, r.SecondCallNs, r.ActiveKeyBytes, err = firstCalls(signerKeys, valid[:signers], now, cfg.Duration/2); err != nil {
		return nil, err
	}
	logf("looking keys up")
	r.LookupNs = lookupNs(list, valid, cfg.Duration/2)
	logf("refusing floods")
	r.StaleNs = 1e9 / rate(fast, stale, now, 1, cfg.Duration/2, false)
	r.UnknownNs = 1e9 / rate(fast, unknown, now, 1, cfg.Duration/2, false)

	r.SpeedupOneCore = r.FastOneCore / r.StdOneCore
	r.SpeedupAllCores = r.FastAllCores / r.StdAllCores
	r.Scaling = r.FastAllCores / (r.FastOneCore * float64(cfg.Workers))
	r.ValidNs = 1e9 / r.FastOneCore
	r.StaleRatio = r.ValidNs / r.StaleNs
	r.UnknownRatio = r.ValidNs / r.UnknownNs
	return r, nil
}

// makeKeys returns n distinct P-384 public keys: signers real key pairs,
// then points reached by adding the generator, which cost a point addition
// each instead of a key generation.
func makeKeys(n int) ([]*keys.PublicKey, []*ecdsa.PrivateKey, error) {
	pubs := make([]*keys.PublicKey, 0, n)
	var privs []*ecdsa.PrivateKey
	g := keys.Generator{Seed: []byte("nodekeys bench allowlist")}
	for i := range signers {
		p, err := g.Pair(i)
		if err != nil {
			return nil, nil, err
		}
		pubs = append(pubs, p.Public)
		privs = append(privs, p.Private)
	}
	curve := p384.P384()
	params := elliptic.P384().Params()
	b, _ := privs[signers-1].PublicKey.Bytes()
	x, y := new(big.Int).SetBytes(b[1:49]), new(big.Int).SetBytes(b[49:])
	var point [97]byte
	point[0] = 4
	for len(pubs) < n {
		x, y = curve.Add(x, y, params.Gx, params.Gy)
		x.FillBytes(point[1:49])
		y.FillBytes(point[49:])
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), point[:])
		if err != nil {
			return nil, nil, err
		}
		k, err := keys.NewPublicKey(pub)
		if err != nil {
			return nil, nil, err
		}
		pubs = append(pubs, k)
	}
	return pubs, privs, nil
}

// makeHeaders signs 1024 calls of the signing nodes, a second old; the same
// calls a day old; and calls of nodes not in the allowlist.
func makeHeaders(privs []*ecdsa.PrivateKey, n int, now time.Time) (valid, stale, unknown []sign.Headers, err error) {
	g := keys.Generator{Seed: []byte("nodekeys bench strangers")}
	for i := range n {
		s, err := sign.New(privs[i%len(privs)])
		if err != nil {
			return nil, nil, nil, err
		}
		at := now.Add(-time.Second - time.Duration(i)*time.Millisecond)
		h, err := s.SignTimestamp(flwr.FormatTimestamp(at))
		if err != nil {
			return nil, nil, nil, err
		}
		valid = append(valid, h)
		if h, err = s.SignTimestamp(flwr.FormatTimestamp(at.Add(-24 * time.Hour))); err != nil {
			return nil, nil, nil, err
		}
		stale = append(stale, h)
		if i < signers {
			p, err := g.Pair(i)
			if err != nil {
				return nil, nil, nil, err
			}
			if s, err = sign.New(p.Private); err != nil {
				return nil, nil, nil, err
			}
			if h, err = s.SignTimestamp(flwr.FormatTimestamp(at)); err != nil {
				return nil, nil, nil, err
			}
			unknown = append(unknown, h)
		}
	}
	return valid, stale, unknown, nil
}

// rate runs VerifyAt over hs on workers goroutines for d and returns calls
// per second. wantOK says whether the calls must be accepted.
func rate(v *verify.Verifier, hs []sign.Headers, now time.Time, workers int, d time.Duration, wantOK bool) float64 {
	var total atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			n := 0
			for i := w; ; i++ {
				_, err := v.VerifyAt(hs[i%len(hs)], now)
				if (err == nil) != wantOK {
					failed.Store(true)
				}
				n++
				if n%16 == 0 && time.Now().After(deadline) {
					break
				}
			}
			total.Add(int64(n))
		})
	}
	wg.Wait()
	if failed.Load() {
		return 0
	}
	return float64(total.Load()) / time.Since(start).Seconds()
}

// Rates measures v on the given calls, which must all be accepted, on one
// core and on workers goroutines, for d each, and returns calls per second.
func Rates(v *verify.Verifier, hs []sign.Headers, workers int, d time.Duration) (one, all float64, err error) {
	if len(hs) == 0 {
		return 0, 0, fmt.Errorf("benchmark: no calls to measure")
	}
	now := time.Now()
	for i, h := range hs {
		if _, err := v.VerifyAt(h, now); err != nil {
			return 0, 0, fmt.Errorf("benchmark: call %d is refused: %w", i+1, err)
		}
	}
	return rate(v, hs, now, 1, d, true), rate(v, hs, now, workers, d, true), nil
}

// firstCalls measures the first and second valid calls of each of keys,
// on fresh allowlists of them, for about d: the time of each, and the heap
// each key keeps afterwards. hs[i] is a call by keys[i].
func firstCalls(ks []*keys.PublicKey, hs []sign.Headers, now time.Time, d time.Duration) (first, second, bytes float64, err error) {
	var spent [2]time.Duration
	rounds := 0
	var before, after runtime.MemStats
	for spent[0]+spent[1] < d || rounds == 0 {
		list, err := verify.NewAllowlist(ks)
		if err != nil {
			return 0, 0, 0, err
		}
		v := verify.New(list)
		runtime.GC()
		runtime.ReadMemStats(&before)
		for call := range spent {
			start := time.Now()
			for _, h := range hs {
				if _, err := v.VerifyAt(h, now); err != nil {
					return 0, 0, 0, fmt.Errorf("benchmark: call %d of a key is refused: %w", call+1, err)
				}
			}
			spent[call] += time.Since(start)
		}
		rounds++
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(v)
	}
	calls := float64(rounds * len(hs))
	return float64(spent[0].Nanoseconds()) / calls, float64(spent[1].Nanoseconds()) / calls,
		float64(after.HeapAlloc-before.HeapAlloc) / float64(len(hs)), nil
}

// lookupNs measures allowlist lookups of the calls' keys, in ns each.
func lookupNs(list *verify.Allowlist, hs []sign.Headers, d time.Duration) float64 {
	n := 0
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; ; i++ {
		if list.Lookup(hs[i%len(hs)].PublicKey) == nil {
			return 0
		}
		n++
		if n%1024 == 0 && time.Now().After(deadline) {
			break
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}
