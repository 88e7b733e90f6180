package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/doctor"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:  "inspect",
		Usage: "say what a certificate, key, .pub or allowlist CSV is, and whether keys match certificates",
		Description: "Each FILE is recognised by its content, not its name: PEM or DER certificates\n" +
			"(every certificate of a chain), private and public keys (OpenSSH, PEM, DER), and\n" +
			"allowlist CSVs. Fingerprints are SHA256:... as ssh-keygen prints them. Keys and\n" +
			"certificates given together are matched; a private key is checked against the\n" +
			".pub beside it; --ca checks that certificates chain to a CA. Exit 1 for a file\n" +
			"that cannot be read, a certificate expired or not yet valid, or an allowlist\n" +
			"Flower's SuperLink fails on.\n\n" +
			"   nodekeys inspect --ca certificates/ca.crt certificates/server.pem certificates/server.key\n" +
			"   nodekeys inspect keys/client_credentials_1 keys/client_public_keys.csv",
		ArgsUsage: "FILE...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array"},
			&cli.StringFlag{Name: "ca", Usage: "check that each certificate chains to the CA certificate in `FILE`"},
		},
		Action: inspectAction,
	}
}

func inspectAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageErr("inspect takes one or more FILEs")
	}
	now := time.Now()
	var roots *x509.CertPool
	if ca := c.String("ca"); ca != "" {
		cert, err := certs.ReadCertificate(ca)
		if err != nil {
			return err
		}
		roots = x509.NewCertPool()
		roots.AddCert(cert)
	}
	var all []*doctor.File
	failed := false
	for _, f := range c.Args().Slice() {
		i := doctor.Inspect(f, now)
		if roots != nil {
			i.CheckChain(roots, c.String("ca"), now)
		}
		all = append(all, i)
		failed = failed || i.Failed()
	}
	doctor.MatchKeys(all)
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, all); err != nil {
			return err
		}
	} else {
		for _, i := range all {
			printInspected(c.App.Writer, c.App.ErrWriter, i)
		}
	}
	if failed {
		return silentFailure
	}
	return nil
}

func printInspected(out, errw io.Writer, i *doctor.File) {
	if i.Error != "" {
		fmt.Fprintf(errw, "nodekeys: error: %s: %s\n", i.File, i.Error)
		return
	}
	fmt.Fprintf(out, "%s: %s", i.File, i.Kind)
	if i.Algorithm != "" {
		fmt.Fprintf(out, ", %s", i.Algorithm)
	}
	fmt.Fprintln(out)
	line := func(indent, k, v string) { fmt.Fprintf(out, "%s%-12s %s\n", indent, k+":", v) }
	for n, c := range i.Certs {
		indent := "  "
		if len(i.Certs) > 1 {
			fmt.Fprintf(out, "  certificate %d of %d:\n", n+1, len(i.Certs))
			indent = "    "
		}
		line(indent, "subject", c.Subject)
		line(indent, "issuer", c.Issuer)
		if len(i.Certs) > 1 {
			line(indent, "key", c.Algorithm)
		}
		if len(c.SANs) > 0 {
			line(indent, "SANs", strings.Join(c.SANs, ", "))
		}
		line(indent, "valid", fmt.Sprintf("%s to %s (%s)", c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"), daysLeftText(c.DaysLeft)))
		line(indent, "fingerprint", c.Fingerprint)
		line(indent, "key print", c.KeyPrint)
	}
	if i.Keys != nil {
		line("  ", "keys", fmt.Sprint(*i.Keys))
	}
	if i.Fingerprint != "" && len(i.Certs) == 0 {
		line("  ", "fingerprint", i.Fingerprint)
	}
	if i.Comment != "" {
		line("  ", "comment", i.Comment)
	}
	for _, m := range i.Matches {
		line("  ", "matches", m)
	}
	for _, l := range i.ListedIn {
		line("  ", "listed in", l)
	}
	for _, l := range i.NotListedIn {
		line("  ", "NOT listed in", l)
	}
	if i.ChainsTo != "" {
		line("  ", "chains to", i.ChainsTo)
	}
	for _, e := range i.Errors {
		fmt.Fprintf(errw, "nodekeys: error: %s: %s\n", i.File, e)
	}
	for _, w := range i.Warnings {
		fmt.Fprintf(errw, "nodekeys: warning: %s: %s\n", i.File, w)
	}
}

func daysLeftText(n int) string {
	switch {
	case n > 0:
		return fmt.Sprintf("%d %s left", n, plural(n, "day", "days"))
	case n == 0:
		return "EXPIRED today"
	}
	return fmt.Sprintf("EXPIRED %d %s ago", -n, plural(-n, "day", "days"))
}

// absPath makes a path absolute for config files read from elsewhere.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
