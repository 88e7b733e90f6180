package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/internal/safefile"
)

// seedEnv names the environment variable that may hold a seed.
const seedEnv = "NODEKEYS_SEED"

// seedFlags are the ways to give a seed: a file, the environment, or, the
// least private, a flag that every local user sees in the process list.
func seedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "seed-file", Usage: "derive every key from the hex seed in `FILE` (or in $" + seedEnv + "): reproducible, for TEST FIXTURES ONLY"},
		&cli.StringFlag{Name: "seed", Usage: "the same with the seed as `HEX` on the command line, where other local users can read it"},
	}
}

// seedOf returns the seed given by --seed-file, NODEKEYS_SEED or --seed
// (exactly one of them), or nil when none is. A seed on the command line
// draws a warning on stderr.
func seedOf(c *cli.Context, stderr io.Writer) ([]byte, error) {
	env, inEnv := os.LookupEnv(seedEnv)
	given := 0
	for _, set := range []bool{c.IsSet("seed-file"), inEnv, c.IsSet("seed")} {
		if set {
			given++
		}
	}
	switch {
	case given == 0:
		return nil, nil
	case given > 1:
		return nil, usageErr("give the seed one way: --seed-file, %s or --seed", seedEnv)
	case c.IsSet("seed-file"):
		b, err := safefile.ReadRegular(c.String("seed-file"), 4096)
		if err != nil {
			return nil, fmt.Errorf("--seed-file: %w", err)
		}
		return parseSeed(string(bytes.TrimSpace(b)))
	case inEnv:
		return parseSeed(env)
	}
	seed, err := parseSeed(c.String("seed"))
	if err == nil {
		fmt.Fprintf(stderr, "nodekeys: warning: --seed is visible to other local users in the process list; use --seed-file or %s\n", seedEnv)
	}
	return seed, err
}
