package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
	"github.com/nodekeys/nodekeys/supernodes"
)

// maxClients bounds --clients: a million pairs is 800 MB of files.
const maxClients = 1_000_000

// pairCount reads the count of SuperNode key pairs from flag (keygen and
// fixtures --clients, init --supernodes): least (1, or 0 where a gateway
// may start with no node) to maxClients, else a usage error with a hint
// (more, if not empty, ends it). No pair would be an allowlist with no
// key: csv check calls it an error, and a Flower 1.22 SuperLink given it
// refuses every node (later ones refuse the flag).
func pairCount(c *cli.Context, flag string, least int, more string) (int, error) {
	n := c.Int(flag)
	if n >= least && n <= maxClients {
		return n, nil
	}
	hint := fmt.Sprintf("--%s N writes N SuperNode key pairs and their allowlist (default 2)", flag)
	if more != "" {
		hint += "; " + more
	}
	return 0, &cliError{err: fmt.Errorf("--%s must be between %d and %d, got %d", flag, least, maxClients, n), code: exitUsage, hint: hint}
}

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "write SuperNode key pairs and the allowlist CSV (replaces generate_auth_keys.sh)",
		Description: "Writes N ECDSA P-384 key pairs as ssh-keygen does (OpenSSH private key, mode 0600;\n" +
			"'ecdsa-sha2-nistp384 <base64> ' .pub file) and client_public_keys.csv, one line\n" +
			"of the public keys joined by ',', in a folder of mode 0700. Existing files are\n" +
			"never replaced without --force; --append adds pairs after the highest existing one.\n\n" +
			"Examples:\n" +
			"  nodekeys keygen --clients 3 --out keys\n" +
			"  nodekeys keygen --append --clients 1 --out keys",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "clients", Aliases: []string{"n"}, Value: 2, Usage: "how many SuperNode key pairs to write (1 or more)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: keyset.DefaultDir, Usage: "output folder"},
			&cli.StringFlag{Name: "prefix", Value: keyset.DefaultPrefix, Usage: "file name prefix (supernode_credentials for newer Flower examples; with --append, the folder's own by default)"},
			&cli.StringFlag{Name: "csv", Value: keyset.DefaultCSV, Usage: "allowlist file; a bare name is put in the output folder"},
			&cli.BoolFlag{Name: "append", Usage: "add pairs numbered after the highest existing one and extend the CSV"},
			&cli.BoolFlag{Name: "force", Usage: "replace files that are in the way"},
			&cli.BoolFlag{Name: "server-key", Usage: "also write server_credentials and .pub (Flower before 1.15)"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON summary (paths and fingerprints) on stdout"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
		}, seedFlags()...),
		Action: keygenAction,
	}
}

func keygenAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("keygen takes no arguments, got %q", c.Args().First())
	}
	n, err := pairCount(c, "clients", 1, "")
	if err != nil {
		return err
	}
	if c.Bool("append") && c.Bool("force") {
		return usageErr("--append and --force do not go together: --append never replaces a key")
	}
	opts := keyset.Options{
		Dir: c.String("out"), Prefix: c.String("prefix"), CSV: c.String("csv"), Count: n,
		Append: c.Bool("append"), Force: c.Bool("force"), ServerKey: c.Bool("server-key"),
	}
	if opts.Append {
		opts.Prefix = prefixIn(c, opts.Dir) // init's folders hold supernode_credentials_N
	}
	stderr := c.App.ErrWriter
	seed, err := seedOf(c, stderr)
	if err != nil {
		return err
	}
	if seed != nil {
		opts.Generator = keys.Generator{Seed: seed}
		fmt.Fprintln(stderr, "nodekeys: warning: the seed derives every key: anyone who knows it has the private keys. Use these keys for tests only.")
	}
	bar := progressBar(stderr, n, "keygen", c.Bool("quiet"))
	if bar != nil {
		var mu sync.Mutex
		opts.Progress = func(int) { mu.Lock(); bar.Add(1); mu.Unlock() }
	}
	// SIGINT or SIGTERM stops the work and removes what it wrote so far.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts.Context = ctx
	opts.Waiting = func() {
		fmt.Fprintf(stderr, "nodekeys: waiting for another nodekeys writing %s\n", opts.Dir)
	}
	res, err := keyset.Write(opts)
	if bar != nil {
		// An interrupted or failed run erases the bar: the error line
		// starts on a clean line, with no half bar before it.
		if err != nil {
			bar.Exit()
			bar.Clear()
			fmt.Fprint(stderr, "\r\033[K")
		} else {
			bar.Close()
		}
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(err, fs.ErrExist) {
			return withHint(fmt.Errorf("refusing to overwrite %s", pe.Path),
				"use --force to replace it, --append to add keys after the existing ones, or another --out")
		}
		return err
	}
	if n := len(res.Cleaned); n > 0 {
		fmt.Fprintf(stderr, "nodekeys: removed %d temporary %s left by an interrupted run (%s)\n", n, plural(n, "file", "files"), res.Cleaned[0])
	}
	if burned, err := supernodes.ReadBurned(res.Dir); err == nil {
		for _, p := range res.Pairs {
			if burned[p.Fingerprint] {
				fmt.Fprintf(stderr, "nodekeys: warning: %s is a key a SuperLink unregistered before (%s): Flower will not register it again; use another seed\n", p.Public, supernodes.BurnedFile)
			}
		}
	}
	if n := len(res.Dropped); n > 0 {
		fmt.Fprintf(stderr, "nodekeys: warning: %d %s left the allowlist: %s\n", n, plural(n, "key", "keys"), strings.Join(res.Dropped, ", "))
	}
	if n := len(res.NotInCSV); n > 0 {
		fmt.Fprintf(stderr, "nodekeys: note: %d key %s in %s %s not in the allowlist, and %s out: %s\n",
			n, plural(n, "pair", "pairs"), res.Dir, plural(n, "is", "are"), plural(n, "stays", "stay"), strings.Join(res.NotInCSV, ", "))
	}
	out := c.App.Writer
	switch {
	case c.Bool("json"):
		return printJSON(out, res)
	case c.Bool("quiet"):
		return nil
	}
	fmt.Fprintf(out, "wrote %d key %s in %s/ (private keys 0600)\n", len(res.Pairs), plural(len(res.Pairs), "pair", "pairs"), res.Dir)
	show := res.Pairs
	if len(show) > 5 {
		show = show[:5]
	}
	for _, p := range show {
		fmt.Fprintf(out, "  %s  %s\n", p.Private, p.Fingerprint)
	}
	if len(res.Pairs) > len(show) {
		fmt.Fprintf(out, "  ... and %d more (--json lists all)\n", len(res.Pairs)-len(show))
	}
	if res.Server != nil {
		fmt.Fprintf(out, "  %s  %s\n", res.Server.Private, res.Server.Fingerprint)
	}
	fmt.Fprintf(out, "wrote %s with %d %s\n", res.CSV, res.CSVKeys, plural(res.CSVKeys, "key", "keys"))
	if len(res.Pairs) > 0 {
		first := res.Pairs[0].Private
		fmt.Fprintf(out, "\nSuperLink (Flower 1.9 to 1.22):  flower-superlink ... --auth-list-public-keys %s\n", res.CSV)
		fmt.Fprintf(out, "SuperLink (Flower 1.23 and later): flower-superlink ... --enable-supernode-auth\n")
		fmt.Fprintf(out, "                                   flwr supernode register %s.pub\n", first)
		fmt.Fprintf(out, "SuperNode: flower-supernode ... --auth-supernode-private-key %s\n", first)
		fmt.Fprintf(out, "           (before Flower 1.23 also --auth-supernode-public-key %s.pub)\n", first)
	}
	return nil
}

// plural picks the word for n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// parseSeed reads a seed: hex, at least 16 bytes for keys that do not
// collide across fixtures.
func parseSeed(s string) ([]byte, error) {
	seed, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	if err != nil {
		return nil, usageErr("the seed must be hexadecimal: %v", err)
	}
	if len(seed) < 16 {
		return nil, usageErr("the seed must be at least 16 bytes (32 hex digits), got %d bytes", len(seed))
	}
	return seed, nil
}

// progressBar returns a bar on stderr when it is a terminal and the work is
// long enough to watch, else nil.
func progressBar(w io.Writer, n int, what string, quiet bool) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if quiet || !ok || n < 200 || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions(n,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
	)
}
