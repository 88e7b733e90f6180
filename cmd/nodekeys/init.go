package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/keyset"
)

// initPrefix is the key naming of Flower's current examples
// (generate_creds.py): supernode_credentials_N.
const initPrefix = "supernode_credentials"

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write every credential of a federation: CA, server certificate, N SuperNode key pairs (replaces generate_creds.py)",
		Description: "Writes certificates/ (ca.crt, ca.key, server.pem, server.key, as certgen) and keys/\n" +
			"(supernode_credentials_1 ... _N with .pub files and client_public_keys.csv, as keygen),\n" +
			"the layout of Flower's generate_creds.py --supernodes N, without ever deleting or\n" +
			"replacing a file: a second run stops and names the file in the way.\n\n" +
			"   nodekeys init --supernodes 3 --add-san superlink.example\n" +
			"   nodekeys init --prefix client_credentials   (the older naming)\n\n" +
			"With --accounts it also writes a ready gateway config (--gateway-config,\n" +
			"gateway.yaml) whose accounts: section makes the gateway its own sign-in for\n" +
			"flwr login, the account file (accounts.json) with a first account of role\n" +
			"admin (--admin NAME), and the gateway's empty state file (state.db). The\n" +
			"admin's password is one line of stdin, or typed at the terminal; given none\n" +
			"(empty line, no stdin), one of 130 random bits is made and printed once on\n" +
			"stdout, and kept nowhere in clear. Then the SuperLink on loopback and the\n" +
			"gateway in front of it are all there is to run:\n\n" +
			"   nodekeys init --accounts --add-san superlink.example\n" +
			"   printf '%s\\n' \"$PASSWORD\" | nodekeys init --accounts --admin alice --json\n" +
			"   flower-superlink --fleet-api-address 127.0.0.1:19092 --control-api-address 127.0.0.1:19093 \\\n" +
			"     --ssl-ca-certfile certificates/ca.crt --ssl-certfile certificates/server.pem \\\n" +
			"     --ssl-keyfile certificates/server.key --enable-supernode-auth\n" +
			"   nodekeys gateway --config gateway.yaml",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "supernodes", Aliases: []string{"n"}, Value: 2, Usage: "SuperNode key pairs, 1 or more (generate_creds.py's default is 2)"},
			&cli.StringFlag{Name: "prefix", Value: initPrefix, Usage: "key file prefix"},
			&cli.StringFlag{Name: "certs-dir", Value: certs.DefaultDir, Usage: "certificate folder"},
			&cli.StringFlag{Name: "keys-dir", Value: keyset.DefaultDir, Usage: "key folder"},
			&cli.StringSliceFlag{Name: "add-san", Usage: "a DNS name or IP address of the SuperLink, added to localhost, 127.0.0.1, ::1 (repeat)"},
			&cli.StringSliceFlag{Name: "san", Usage: "the SuperLink's names and addresses, replacing the defaults (repeat)"},
			&cli.StringFlag{Name: "key-type", Value: string(certs.ECDSAP384), Usage: "certificate keys: ecdsa-p384, ecdsa-p256 or rsa-4096 (generate_creds.py's)"},
			&cli.BoolFlag{Name: "accounts", Usage: "also write a gateway config with the gateway's own account login, and a first admin account"},
			&cli.StringFlag{Name: "admin", Value: "admin", Usage: "with --accounts, the first account's `NAME` (role admin)"},
			&cli.StringFlag{Name: "issuer", DefaultText: "https://FIRST-ADDED-SAN:9095, or https://localhost:9095", Usage: "with --accounts, the sign-in's public `URL` (a name of the server certificate; its port is the accounts listener's)"},
			&cli.StringFlag{Name: "gateway-config", Value: "gateway.yaml", Usage: "with --accounts, the gateway config `FILE` to write; the account and state files go beside it"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON summary"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
		},
		Action: initAction,
	}
}

func initAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("init takes no arguments, got %q", c.Args().First())
	}
	// With --accounts, 0 is a gateway that starts with no node yet (its
	// config says allow_empty); without, an allowlist no SuperLink can use.
	least, more := 1, "the certificates alone: nodekeys certgen --out "+certs.DefaultDir
	if c.Bool("accounts") {
		least, more = 0, "0 starts the gateway with no node"
	}
	n, err := pairCount(c, "supernodes", least, more)
	if err != nil {
		return err
	}
	kt, err := keyTypeOf(c)
	if err != nil {
		return err
	}
	if err := checkSANs(c); err != nil {
		return err
	}
	acc, err := planAccounts(c)
	if err != nil {
		return err
	}
	certsDir, keysDir, prefix := c.String("certs-dir"), c.String("keys-dir"), c.String("prefix")
	// Nothing is written unless nothing is in the way, in either folder.
	for _, f := range []string{certs.CACertFile, certs.CAKeyFile, certs.ServerCertFile, certs.ServerKeyFile} {
		if p := filepath.Join(certsDir, f); exists(p) {
			return withHint(fmt.Errorf("refusing to overwrite %s", p), "init writes a new federation; renew with 'nodekeys certgen --force', add nodes with 'nodekeys keygen --append'")
		}
	}
	for i := 1; i <= n; i++ {
		if p := filepath.Join(keysDir, fmt.Sprintf("%s_%d", prefix, i)); exists(p) || exists(p+".pub") {
			return withHint(fmt.Errorf("refusing to overwrite %s", p), "init writes a new federation; add nodes with 'nodekeys keygen --append --prefix "+prefix+"'")
		}
	}
	if acc != nil {
		if err := acc.addAdmin(); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cres, err := certs.Write(certs.Options{Dir: certsDir, Hosts: c.StringSlice("san"), AddHosts: c.StringSlice("add-san"), KeyType: kt})
	if err != nil {
		return err
	}
	kres, err := keyset.Write(keyset.Options{Dir: keysDir, Prefix: prefix, Count: n, Context: ctx})
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(err, fs.ErrExist) {
			return withHint(fmt.Errorf("refusing to overwrite %s", pe.Path), "add nodes with 'nodekeys keygen --append'")
		}
		return err
	}
	if acc != nil {
		if err := acc.write(cres, kres.CSV, len(kres.Pairs)); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		summary := map[string]any{"certificates": cres, "keys": kres}
		if acc != nil {
			summary["gateway"] = acc
		}
		return printJSON(c.App.Writer, summary)
	}
	if c.Bool("quiet") {
		if acc != nil && acc.Password != "" {
			fmt.Fprintln(c.App.Writer, acc.Password)
		}
		return nil
	}
	out := c.App.Writer
	fmt.Fprintf(out, "wrote %s/: CA (ca.crt, ca.key 0600) and server certificate for %v (server.pem, server.key 0600)\n", cres.Dir, cres.Hosts)
	fmt.Fprintf(out, "wrote %s/: %d SuperNode key %s (%s_N, 0600, and .pub) and %s\n", kres.Dir, len(kres.Pairs), plural(len(kres.Pairs), "pair", "pairs"), prefix, filepath.Base(kres.CSV))
	if acc != nil {
		acc.print(out, cres, kres)
		return nil
	}
	fmt.Fprintf(out, "\nSuperLink: flower-superlink --ssl-ca-certfile %s --ssl-certfile %s --ssl-keyfile %s --enable-supernode-auth\n", cres.CACert, cres.ServerCert, cres.ServerKey)
	if len(kres.Pairs) > 0 {
		fmt.Fprintf(out, "           then: nodekeys register --superlink 127.0.0.1:9093 --root-certificates %s --dir %s\n", cres.CACert, kres.Dir)
		fmt.Fprintf(out, "SuperNode: flower-supernode --root-certificates %s --auth-supernode-private-key %s\n", cres.CACert, kres.Pairs[0].Private)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
