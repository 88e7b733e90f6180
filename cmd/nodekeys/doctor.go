package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/doctor"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "find what is wrong with a federation's keys, certificates, TLS and clocks, each with the fix",
		Description: "Checks the files given, each by its content (default: certificates/ and\n" +
			"keys/): SuperNode keys Flower cannot load (PKCS #8, SEC 1, encrypted, RSA, Ed25519,\n" +
			"another curve), a .pub that is not its private key's, allowlists Flower fails on,\n" +
			"a server certificate that does not cover the address SuperNodes dial or does not\n" +
			"chain to the CA, expiry within 30 days, file modes.\n" +
			"With --superlink, a real TLS handshake as a SuperNode makes it. The clock is\n" +
			"compared with the SuperLink's: by the time its Control API sends with ListNodes\n" +
			"(--control), or by the Date of a gateway's /healthz (--health); a TLS handshake\n" +
			"carries no time. Each run ends with what it checked; a path with nothing to\n" +
			"check, or one it cannot read, is an error. Exit 0 only when nothing is wrong.\n\n" +
			"   nodekeys doctor --superlink superlink.example:9092\n" +
			"   nodekeys doctor --health http://127.0.0.1:9190/healthz keys/ certificates/",
		ArgsUsage: "[FILE|DIR...]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "superlink", Usage: "the Fleet API `ADDR` SuperNodes dial (its host is checked against the certificate)"},
			&cli.StringFlag{Name: "ca", Usage: "the CA certificate `FILE` SuperNodes trust (default: the CA among the files checked)"},
			&cli.StringSliceFlag{Name: "name", Usage: "another `NAME` or address SuperNodes dial (repeat)"},
			&cli.StringFlag{Name: "control", Usage: "the Control API `ADDR`, whose ListNodes gives the SuperLink's time"},
			&cli.StringFlag{Name: "health", Usage: "a gateway's health `URL`, whose Date header gives its time"},
			&cli.BoolFlag{Name: "json", Usage: "print the findings as JSON"},
		}, doctorControlFlags()...),
		Action: doctorAction,
	}
}

// doctorControlFlags are controlFlags with --superlink renamed, since
// doctor's --superlink is the Fleet address.
func doctorControlFlags() []cli.Flag {
	var out []cli.Flag
	for _, f := range controlFlags() {
		if f.Names()[0] != "superlink" {
			out = append(out, f)
		}
	}
	return out
}

func doctorAction(c *cli.Context) error {
	paths := c.Args().Slice()
	if len(paths) == 0 {
		for _, p := range []string{"certificates", "keys"} {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				paths = append(paths, p)
			}
		}
	}
	names := c.StringSlice("name")
	if sl := c.String("superlink"); sl != "" {
		host, _, err := net.SplitHostPort(sl)
		if err != nil {
			return usageErr("--superlink %q is not HOST:PORT", sl)
		}
		names = append(names, host)
	}
	if len(paths) == 0 && c.String("superlink") == "" && c.String("control") == "" && c.String("health") == "" {
		return usageErr("nothing to check: name files or folders, or run in a folder with certificates/ and keys/")
	}
	now := time.Now()
	rep := doctor.Files(paths, names, c.String("ca"), now)
	findings := rep.Findings
	// What was checked, said at the end of every run.
	checked := []string{}
	if len(paths) > 0 {
		checked = append(checked, rep.Checked.String())
	}
	ca := rep.CA
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if sl := c.String("superlink"); sl != "" {
		switch {
		case ca == "" && len(rep.CAs) > 1:
			return usageErr("--superlink: the files hold several CA certificates (%s): name the one SuperNodes trust with --ca", strings.Join(rep.CAs, ", "))
		case ca == "":
			return usageErr("--superlink needs the CA SuperNodes trust: name its folder (certificates/) or give --ca FILE")
		}
		findings = append(findings, doctor.TLS(ctx, sl, ca)...)
		checked = append(checked, "the TLS handshake with "+sl+" trusting "+ca)
	}
	if addr := c.String("control"); addr != "" {
		if c.String("root-certificates") == "" && !c.Bool("insecure") && ca != "" {
			c.Set("root-certificates", ca)
		}
		conn, err := controlConnTo(c, addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		if off, err := doctor.SkewControl(ctx, conn); err != nil {
			findings = append(findings, doctor.Finding{Check: "clock", Severity: doctor.Warning, File: addr,
				Problem: "could not read the SuperLink's time: " + err.Error(), Fix: "check --control and its credentials"})
		} else {
			findings = append(findings, doctor.Skew(off, addr)...)
			checked = append(checked, "the clock against "+addr)
		}
	}
	if url := c.String("health"); url != "" {
		if off, err := doctor.SkewHTTP(ctx, url); err != nil {
			findings = append(findings, doctor.Finding{Check: "clock", Severity: doctor.Warning, File: url,
				Problem: "could not read the server's time: " + err.Error(), Fix: "check the URL (the gateway's --metrics address)"})
		} else {
			findings = append(findings, doctor.Skew(off, url)...)
			checked = append(checked, "the clock against "+url)
		}
	}
	summary := "checked: " + strings.Join(checked, "; ")
	if c.Bool("json") {
		if findings == nil {
			findings = []doctor.Finding{}
		}
		if err := printJSON(c.App.Writer, findings); err != nil {
			return err
		}
		fmt.Fprintln(c.App.ErrWriter, "nodekeys: "+summary)
	} else {
		for _, f := range findings {
			where := ""
			if f.File != "" {
				where = f.File + ": "
			}
			fmt.Fprintf(c.App.Writer, "%-7s %s%s\n        fix: %s\n", f.Severity, where, f.Problem, f.Fix)
		}
		fmt.Fprintln(c.App.Writer, summary)
		if len(findings) == 0 {
			fmt.Fprintln(c.App.Writer, "nothing wrong found")
		}
	}
	if len(findings) > 0 {
		return silentFailure
	}
	return nil
}
