package main

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
)

func fixturesCommand() *cli.Command {
	return &cli.Command{
		Name:  "fixtures",
		Usage: "write a reproducible test federation for CI: CA, server certificate, N key pairs, CSV, manifest",
		Description: "Writes DIR/certificates (ca.crt, ca.key, server.pem, server.key), DIR/keys (N SuperNode\n" +
			"key pairs and client_public_keys.csv) and DIR/manifest.json listing every file and\n" +
			"fingerprint. Every key derives from --seed: the same seed gives the same keys on\n" +
			"every run and machine (the certificates are issued afresh, valid from now).\n" +
			"FOR TESTS ONLY: anyone with the seed has every private key.\n\n" +
			"Example:\n  nodekeys fixtures --out testdata/federation --clients 4 --seed-file testdata/seed",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "output folder (must not exist, unless --force)"},
			&cli.IntFlag{Name: "clients", Aliases: []string{"n"}, Value: 2, Usage: "SuperNode key pairs, 1 or more"},
			&cli.StringSliceFlag{Name: "san", Usage: "server certificate SANs (default localhost, 127.0.0.1, ::1)"},
			&cli.StringSliceFlag{Name: "add-san", Usage: "a SAN added to the defaults (repeat)"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing fixture folder's files"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
		}, seedFlags()...),
		Action: fixturesAction,
	}
}

// manifest describes a fixture federation.
type manifest struct {
	Seed         string         `json:"seed"`
	Certificates *certs.Result  `json:"certificates"`
	Keys         *keyset.Result `json:"keys"`
}

func fixturesAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("fixtures takes no arguments, got %q", c.Args().First())
	}
	n, err := pairCount(c, "clients", 1, "")
	if err != nil {
		return err
	}
	seed, err := seedOf(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	if seed == nil {
		return usageErr("fixtures needs a seed: --seed-file FILE, %s or --seed", seedEnv)
	}
	if err := checkSANs(c); err != nil {
		return err
	}
	out, force := c.String("out"), c.Bool("force")
	if _, err := os.Lstat(out); err == nil && !force {
		return withHint(fmt.Errorf("refusing to overwrite %s", out), "fixtures writes a new folder; use --force to replace its files")
	}
	fmt.Fprintln(c.App.ErrWriter, "nodekeys: warning: fixtures derive every key from the seed: for tests only.")
	start := time.Now()
	ks, err := keyset.Write(keyset.Options{
		Dir: filepath.Join(out, "keys"), Count: n, Force: force, Generator: keys.Generator{Seed: seed},
	})
	if err != nil {
		return err
	}
	// The CA and server keys come from the seed too, on their own labels.
	roleKey := func(role string) (crypto.Signer, error) {
		p, err := keys.Generator{Seed: append(append([]byte{}, seed...), "/tls/"+role...)}.Pair(0)
		if err != nil {
			return nil, err
		}
		return p.Private, nil
	}
	// The names come from the flags alone, never from a certificate
	// already in the folder: fixtures are the same for the same flags.
	hosts := c.StringSlice("san")
	if len(hosts) == 0 {
		hosts = certs.DefaultHosts
	}
	cs, err := certs.Write(certs.Options{
		Dir: filepath.Join(out, "certificates"), Hosts: hosts, AddHosts: c.StringSlice("add-san"), Force: force, NewCA: true, NewKey: roleKey,
	})
	if err != nil {
		return err
	}
	m := manifest{Seed: hex.EncodeToString(seed), Certificates: cs, Keys: ks}
	var b []byte
	if b, err = marshalIndent(m); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(out, "manifest.json"), b, 0o644, force); err != nil {
		return err
	}
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.Writer, "wrote a test federation in %s/ in %.2f s: CA and server certificate, %d key pairs, manifest.json\n",
			out, time.Since(start).Seconds(), n)
	}
	return nil
}
