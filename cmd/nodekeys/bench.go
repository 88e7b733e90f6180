package main

import (
	"bytes"
	"fmt"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/benchmark"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// maxBenchHeaders bounds bench --headers: a million calls of JSON.
const maxBenchHeaders = 1 << 30

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure verification at SuperLink scale, against crypto/ecdsa in the same run",
		Description: "Builds an allowlist of N P-384 keys, signs realistic headers and reports, in one\n" +
			"run: verifications per second on one core and on all cores, the same for the\n" +
			"crypto/ecdsa path as a baseline, the cost of refusing stale or unknown-key floods,\n" +
			"the allowlist's load time and its memory per key.\n\n" +
			"Example:\n  nodekeys bench --nodes 20000 --duration 1s",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Aliases: []string{"n"}, Value: 100_000, Usage: "allowlist size"},
			&cli.DurationFlag{Name: "duration", Aliases: []string{"d"}, Value: 2 * time.Second, Usage: "how long each figure is measured"},
			&cli.IntFlag{Name: "workers", Aliases: []string{"w"}, Value: runtime.GOMAXPROCS(0), Usage: "goroutines for the all-cores figures"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.StringFlag{Name: "headers", Usage: "measure these calls instead (JSON Lines of flwr-* headers); needs --allowlist"},
			&cli.StringFlag{Name: "allowlist", Usage: "the allowlist for --headers"},
		},
		Action: benchAction,
	}
}

func benchAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("bench takes no arguments, got %q", c.Args().First())
	}
	n, w, d := c.Int("nodes"), c.Int("workers"), c.Duration("duration")
	if n < 64 || n > 10_000_000 {
		return usageErr("--nodes must be between 64 and 10000000, got %d", n)
	}
	if w < 1 || w > 4096 {
		return usageErr("--workers must be between 1 and 4096, got %d", w)
	}
	if d < 10*time.Millisecond || d > time.Hour {
		return usageErr("--duration must be between 10ms and 1h, got %v", d)
	}
	if c.IsSet("headers") {
		return benchHeaders(c, w, d)
	}
	stderr := c.App.ErrWriter
	r, err := benchmark.Run(benchmark.Config{Nodes: n, Duration: d, Workers: w, Log: func(f string, a ...any) {
		fmt.Fprintf(stderr, "bench: "+f+"\n", a...)
	}})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, r)
	}
	out := c.App.Writer
	fmt.Fprintf(out, "allowlist: %d P-384 keys, loaded in %.2f s, %.0f bytes per key, %.0f ns a lookup\n", r.Nodes, r.LoadSeconds, r.BytesPerKey, r.LookupNs)
	fmt.Fprintf(out, "%-22s %14s %14s %8s\n", "verify (calls/s)", "nodekeys", "crypto/ecdsa", "ratio")
	fmt.Fprintf(out, "%-22s %14.0f %14.0f %7.2fx\n", "one core", r.FastOneCore, r.StdOneCore, r.SpeedupOneCore)
	fmt.Fprintf(out, "%-22s %14.0f %14.0f %7.2fx\n", fmt.Sprintf("%d workers", r.Workers), r.FastAllCores, r.StdAllCores, r.SpeedupAllCores)
	fmt.Fprintf(out, "scaling: %.2f of %d x one core\n", r.Scaling, r.Workers)
	fmt.Fprintf(out, "a key's first call: %.0f ns; its second: %.0f ns, after which it holds %.0f more bytes\n", r.FirstCallNs, r.SecondCallNs, r.ActiveKeyBytes)
	fmt.Fprintf(out, "cost per call: valid %.0f ns, stale flood %.0f ns (%.0fx cheaper), unknown-key flood %.0f ns (%.0fx cheaper)\n",
		r.ValidNs, r.StaleNs, r.StaleRatio, r.UnknownNs, r.UnknownRatio)
	return nil
}

// benchHeaders measures the verify core on calls made elsewhere, so that
// another implementation can be measured on the very same calls.
func benchHeaders(c *cli.Context, workers int, d time.Duration) error {
	if !c.IsSet("allowlist") {
		return usageErr("--headers needs --allowlist")
	}
	l, err := csvlist.ReadFile(c.String("allowlist"))
	if err != nil {
		return err
	}
	list, err := verify.NewAllowlist(l.Keys())
	if err != nil {
		return err
	}
	data, err := safefile.ReadRegular(c.String("headers"), maxBenchHeaders)
	if err != nil {
		return err
	}
	var hs []sign.Headers
	err = readInputs(bytes.NewReader(data), func(in verifyInput) error {
		if in.err != nil {
			return fmt.Errorf("%s:%d: call %d: %w", c.String("headers"), in.line, len(hs)+1, in.err)
		}
		hs = append(hs, in.h)
		return nil
	})
	if err != nil {
		return err
	}
	one, all, err := benchmark.Rates(verify.New(list), hs, workers, d)
	if err != nil {
		return err
	}
	res := map[string]any{"calls": len(hs), "workers": workers, "per_second_one_core": one, "per_second_all_cores": all}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	fmt.Fprintf(c.App.Writer, "%d calls: %.0f/s on one core, %.0f/s on %d workers\n", len(hs), one, all, workers)
	return nil
}
