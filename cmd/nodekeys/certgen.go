package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/certs"
)

func certgenCommand() *cli.Command {
	return &cli.Command{
		Name:  "certgen",
		Usage: "write a development CA and SuperLink server certificate (replaces generate_cert.sh)",
		Description: "Writes certificates/ca.crt, ca.key, server.pem and server.key, for SANs localhost,\n" +
			"127.0.0.1 and ::1, plus each --add-san; --san replaces those three. A CA already in\n" +
			"the folder (or given with --ca-cert and --ca-key) is reused: the server certificate\n" +
			"is renewed and SuperNodes that trust ca.crt keep working. A new CA needs --new-ca.\n" +
			"Renewing (--force) keeps the names of the certificate it replaces, plus each\n" +
			"--add-san, unless --san names them all.\n\n" +
			"   nodekeys certgen --add-san superlink.example --add-san 192.0.2.7\n" +
			"   nodekeys certgen --force --add-san superlink.example   (renew, keep the CA)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: certs.DefaultDir, Usage: "output folder"},
			&cli.StringSliceFlag{Name: "add-san", Usage: "a DNS name or IP address of the SuperLink, added to the defaults (repeat)"},
			&cli.StringSliceFlag{Name: "san", Usage: "a DNS name or IP address of the SuperLink (repeat; replaces the defaults)"},
			&cli.IntFlag{Name: "days", Value: certs.DefaultServerDays, Usage: fmt.Sprintf("server certificate validity, at most %d", certs.MaxServerDays)},
			&cli.IntFlag{Name: "ca-days", Value: certs.DefaultCADays, Usage: "validity of a new CA"},
			&cli.StringFlag{Name: "key-type", Value: string(certs.ECDSAP384), Usage: "ecdsa-p384, ecdsa-p256 or rsa-4096"},
			&cli.StringFlag{Name: "ca-cert", Usage: "issue with this CA certificate (with --ca-key)"},
			&cli.StringFlag{Name: "ca-key", Usage: "the key of --ca-cert"},
			&cli.BoolFlag{Name: "new-ca", Usage: "make a new CA even if the folder holds one (with --force to replace it)"},
			&cli.BoolFlag{Name: "force", Usage: "replace the server files (and, with --new-ca, the CA)"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON summary"},
		},
		Action: certgenAction,
	}
}

// existHints say what to do about a file certgen will not replace.
var existHints = map[certs.Conflict]string{
	certs.ServerExists: "use --force to renew the server certificate (the CA is kept)",
	certs.OtherCA:      "it holds another CA; use another --out, or --force",
	certs.CAExists:     "a new CA needs --force too: every SuperNode must then get the new ca.crt",
}

func certgenAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("certgen takes no arguments, got %q", c.Args().First())
	}
	days := c.Int("days")
	if days < 1 || days > certs.MaxServerDays {
		return usageErr("--days must be 1 to %d (the longest validity browsers accept for a server certificate), got %d", certs.MaxServerDays, days)
	}
	if d := c.Int("ca-days"); d < 1 || d > certs.MaxCADays {
		return usageErr("--ca-days must be 1 to %d, got %d", certs.MaxCADays, d)
	}
	switch {
	case (c.String("ca-cert") == "") != (c.String("ca-key") == ""):
		return usageErr("--ca-cert and --ca-key go together")
	case c.String("ca-cert") != "" && c.Bool("new-ca"):
		return usageErr("--new-ca and --ca-cert do not go together")
	}
	kt, err := keyTypeOf(c)
	if err != nil {
		return err
	}
	if err := checkSANs(c); err != nil {
		return err
	}
	res, err := certs.Write(certs.Options{
		Dir: c.String("out"), Hosts: c.StringSlice("san"), AddHosts: c.StringSlice("add-san"), Days: days, CADays: c.Int("ca-days"), KeyType: kt,
		CACert: c.String("ca-cert"), CAKey: c.String("ca-key"), NewCA: c.Bool("new-ca"), Force: c.Bool("force"),
	})
	if err != nil {
		var ee *certs.ExistError
		var half *certs.HalfCAError
		switch {
		case errors.As(err, &ee):
			return withHint(err, existHints[ee.Why])
		case errors.As(err, &half) && strings.HasSuffix(half.Missing, certs.CAKeyFile):
			return withHint(err, "give the CA key, or --new-ca --force for a new CA")
		case errors.As(err, &half):
			return withHint(err, "give the CA certificate, or --new-ca --force for a new CA")
		}
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	out := c.App.Writer
	if res.CACreated {
		fmt.Fprintf(out, "new CA: %s (key %s, 0600), valid until %s\n", res.CACert, res.CAKey, res.CANotAfter.Format("2006-01-02"))
	} else {
		fmt.Fprintf(out, "kept the CA: %s, valid until %s; SuperNodes that trust it keep working\n", res.CACert, res.CANotAfter.Format("2006-01-02"))
	}
	if len(res.KeptHosts) > 0 {
		fmt.Fprintf(out, "kept the names of the certificate it replaces: %s (--san to choose others)\n", strings.Join(res.KeptHosts, ", "))
	}
	fmt.Fprintf(out, "server certificate: %s (key %s, 0600) for %v, %s, valid until %s (%d days)\n",
		res.ServerCert, res.ServerKey, res.Hosts, res.KeyType, res.ServerNotAfter.Format("2006-01-02"),
		certs.DaysLeft(res.ServerNotAfter, time.Now()))
	fmt.Fprintf(out, "\nSuperLink: flower-superlink --ssl-ca-certfile %s --ssl-certfile %s --ssl-keyfile %s ...\n", res.CACert, res.ServerCert, res.ServerKey)
	fmt.Fprintf(out, "SuperNode: flower-supernode --root-certificates %s ...\n", res.CACert)
	fmt.Fprintf(out, "flwr CLI: root-certificates = %q\n", absPath(res.CACert))
	fmt.Fprintf(out, "  (Flower 1.26 and later: in ~/.flwr/config.toml under [superlink.<name>];\n")
	fmt.Fprintf(out, "   before: in the project's pyproject.toml under [tool.flwr.federations.<name>])\n")
	return nil
}

// checkSANs checks --san and --add-san as certs.Write will, so that a bad
// name is a usage error (exit 2) in every command that takes them.
func checkSANs(c *cli.Context) error {
	hosts := c.StringSlice("san")
	if len(hosts) == 0 {
		hosts = certs.DefaultHosts
	}
	if _, err := certs.MergeSANs(hosts, c.StringSlice("add-san")); err != nil {
		return &cliError{err: err, code: exitUsage}
	}
	return nil
}

// keyTypeOf reads --key-type.
func keyTypeOf(c *cli.Context) (certs.KeyType, error) {
	kt := certs.KeyType(c.String("key-type"))
	switch kt {
	case certs.ECDSAP384, certs.ECDSAP256, certs.RSA4096:
		return kt, nil
	}
	return "", usageErr("--key-type must be ecdsa-p384, ecdsa-p256 or rsa-4096, got %q", kt)
}
