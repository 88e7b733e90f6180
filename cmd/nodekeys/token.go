package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/tokens"
)

func tokenFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "file", Aliases: []string{"f"}, Value: "tokens.txt",
		Usage: "the gateway's token `FILE` (its token_list setting)"}
}

// checkSecretOut refuses an --out file that exists, before the secret
// (what, for the hint) is made. An empty out is stdout.
func checkSecretOut(out, what string) error {
	if out == "" {
		return nil
	}
	if _, err := os.Lstat(out); err == nil {
		return withHint(fmt.Errorf("refusing to overwrite %s", out), "name a new file: "+what+" is written once")
	}
	return nil
}

// writeSecretOut writes secret and a newline to out, mode 0600 whatever
// the umask, never over a file that appeared since checkSecretOut.
func writeSecretOut(out, secret string) error {
	return atomicfile.Write(out, []byte(secret+"\n"), 0o600, false)
}

// policyConfigFlag is --config of the commands that give a role: the
// gateway config whose policy the roles are checked against, and whose
// file they write when --file is not given.
func policyConfigFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Aliases: []string{"c"},
		Usage: "the gateway's config `FILE`: --role is checked against its policy: (the default policy if it has none), and --file defaults to the file it names"}
}

// roleTarget reads the gateway config --config names, if any, and returns
// the file the command writes: --file if given, else the one that config
// names (fileOf: its accounts: file or token_list, the setting), else
// --file's default. A --file other than the config's, or a config without
// the setting, gets a warning, as the gateway would not read the file; so
// does a relative path from a config in another folder, which the gateway
// reads from the folder it runs in. Then it warns on stderr of each role
// that gateway's policy does not name (EffectivePolicy: the config's
// policy:, or authz.Default), unless it is the config's fleet_token_role:
// a typo would otherwise make an account or token that every Control call
// refuses. Without --config only authz.Default can be checked, and the
// warning says so. A config that cannot be read, or whose policy the
// gateway would refuse, is an error. An unknown role stays a warning: the
// policy may be about to change.
func roleTarget(c *cli.Context, setting string, fileOf func(*gateway.Config) string, roles ...string) (string, error) {
	file, path := c.String("file"), c.String("config")
	w := c.App.ErrWriter
	policy, fleetRole, own := authz.Default(), "", false
	if path != "" {
		cfg, err := gateway.LoadConfig(path)
		if err != nil {
			return "", err
		}
		if cfg.Policy != nil {
			if err := cfg.Policy.Validate(); err != nil {
				return "", fmt.Errorf("%s: policy: %w", path, err)
			}
		}
		policy, fleetRole, own = cfg.EffectivePolicy(), cfg.FleetTokenRole, cfg.Policy != nil
		switch its := fileOf(cfg); {
		case its == "":
			fmt.Fprintf(w, "nodekeys: warning: writing %s, but the gateway of %s reads no such file (it has no %s)\n", file, path, setting)
		case !c.IsSet("file"):
			file = its
			if !filepath.IsAbs(its) && filepath.Dir(path) != "." {
				fmt.Fprintf(w, "nodekeys: warning: %s names %s, which the gateway reads from the folder it runs in: writing %s\n", path, its, absPath(its))
			}
		case filepath.Clean(its) != filepath.Clean(file):
			fmt.Fprintf(w, "nodekeys: warning: writing %s, but the gateway of %s reads %s\n", file, path, its)
		}
	}
	known := strings.Join(slices.Sorted(maps.Keys(policy.Roles)), ", ")
	for _, r := range roles {
		if _, ok := policy.Roles[r]; ok || (r == fleetRole && r != "") {
			continue
		}
		switch {
		case path == "":
			fmt.Fprintf(w, "nodekeys: warning: role %q is not in the default policy (roles: %s); no --config named the gateway's config, so its own policy: was not checked\n", r, known)
		case own:
			fmt.Fprintf(w, "nodekeys: warning: role %q is not in the policy of %s (roles: %s): that gateway grants it no Control method\n", r, path, known)
		default:
			fmt.Fprintf(w, "nodekeys: warning: role %q is not in the default policy (roles: %s), which the gateway of %s uses, as it has no policy: section; that gateway grants it no Control method\n", r, known, path)
		}
	}
	return file, nil
}

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "make, list and revoke bearer tokens for machines (CI, services) on a gateway",
		Description: "A token is 256 random bits, printed once by 'token new'. The token file keeps\n" +
			"only its SHA-256, a name and a role; the gateway reads it (token_list) and\n" +
			"reloads it on change, SIGHUP and SIGUSR1. Clients send it as\n" +
			"'authorization: Bearer TOKEN' (nodekeys register/nodes --token-file, or\n" +
			"tokens.Static in Go).\n\n" +
			"Examples:\n" +
			"  nodekeys token new --file /etc/nodekeys/tokens.txt --name ci-pipeline --role member --out ci.token\n" +
			"  nodekeys token new --config /etc/nodekeys/gateway.yaml --name node-1 --role supernode --out node-1.token\n" +
			"  nodekeys token list --file /etc/nodekeys/tokens.txt\n" +
			"  nodekeys token revoke --file /etc/nodekeys/tokens.txt --name ci-pipeline",
		Subcommands: []*cli.Command{{
			Name:  "new",
			Usage: "make a token, add its hash to the file, and print the token once",
			Description: "Examples:\n" +
				"  nodekeys token new --file /etc/nodekeys/tokens.txt --name ci-pipeline --role member --out ci.token\n" +
				"  nodekeys token new --config /etc/nodekeys/gateway.yaml --name node-1 --role supernode --out node-1.token",
			Flags: []cli.Flag{
				tokenFileFlag(),
				policyConfigFlag(),
				&cli.StringFlag{Name: "name", Required: true, Usage: "what the token is for (`NAME`, unique in the file; owns what it starts)"},
				&cli.StringFlag{Name: "role", Required: true, Usage: "the `ROLE` it has in the gateway's policy (checked with --config; default policy: admin or member)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON (with the token)"},
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the token to `FILE`, mode 0600 (never replaced), instead of stdout"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return usageErr("token new takes no arguments, got %q", c.Args().First())
				}
				out := c.String("out")
				if err := checkSecretOut(out, "a token"); err != nil {
					return err
				}
				file, err := roleTarget(c, "token_list", func(g *gateway.Config) string { return g.TokenList }, c.String("role"))
				if err != nil {
					return err
				}
				tok, e, err := tokens.New(file, c.String("name"), c.String("role"))
				if err != nil {
					return err
				}
				if out != "" {
					if err := writeSecretOut(out, tok); err != nil {
						return withHint(err, fmt.Sprintf("the token is lost; revoke it: nodekeys token revoke --file %s --name %s", file, e.Name))
					}
					fmt.Fprintf(c.App.ErrWriter, "token %q (role %s, %s) added to %s; the token is in %s (0600) and shown nowhere else\n",
						e.Name, e.Role, e.Fingerprint(), file, out)
					return nil
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]string{"token": tok, "name": e.Name, "role": e.Role,
						"fingerprint": e.Fingerprint(), "file": file})
				}
				// The token alone on stdout, so that it can be redirected to
				// a file or a secret store; the rest on stderr.
				fmt.Fprintln(c.App.Writer, tok)
				fmt.Fprintf(c.App.ErrWriter, "token %q (role %s, %s) added to %s; it is shown only now\n",
					e.Name, e.Role, e.Fingerprint(), file)
				return nil
			},
		}, {
			Name:        "list",
			Usage:       "list the tokens in a file (names, roles, fingerprints; never the tokens)",
			Description: "Example:\n  nodekeys token list --file /etc/nodekeys/tokens.txt --json",
			Flags:       []cli.Flag{tokenFileFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action: func(c *cli.Context) error {
				entries, err := tokens.ReadFile(c.String("file"))
				if err != nil {
					return err
				}
				type row struct {
					Name        string    `json:"name"`
					Role        string    `json:"role"`
					Fingerprint string    `json:"fingerprint"`
					Made        time.Time `json:"made"`
				}
				rows := make([]row, len(entries))
				for i, e := range entries {
					rows[i] = row{e.Name, e.Role, e.Fingerprint(), e.Made}
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, rows)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tROLE\tFINGERPRINT\tMADE")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Role, r.Fingerprint, r.Made.Format(time.RFC3339))
				}
				return tw.Flush()
			},
		}, {
			Name:        "revoke",
			Usage:       "remove a token from the file; a gateway refuses it from its next reload",
			Description: "Example:\n  nodekeys token revoke --file /etc/nodekeys/tokens.txt --name ci-pipeline",
			Flags:       []cli.Flag{tokenFileFlag(), &cli.StringFlag{Name: "name", Required: true, Usage: "the token's `NAME`"}},
			Action: func(c *cli.Context) error {
				e, err := tokens.Revoke(c.String("file"), c.String("name"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "revoked %q (%s); a gateway refuses it within its reload interval, or at once on SIGHUP\n",
					e.Name, e.Fingerprint())
				return nil
			},
		}},
	}
}

func stateCommand() *cli.Command {
	return &cli.Command{
		Name:  "state",
		Usage: "make and read a gateway's state file (who started each run, registered each node)",
		Description: "A gateway with account login or tokens keeps run and node owners in its\n" +
			"state_file. It never makes one itself, so that a lost file is an error at start\n" +
			"rather than every owner silently forgotten.\n\n" +
			"Examples:\n" +
			"  nodekeys state init /var/lib/nodekeys/state.db\n" +
			"  nodekeys state show --json /var/lib/nodekeys/state.db   (with the gateway stopped)",
		Subcommands: []*cli.Command{{
			Name:        "init",
			Usage:       "make a new, empty state file (0600); an existing file is never replaced",
			ArgsUsage:   "FILE",
			Description: "Example:\n  nodekeys state init /var/lib/nodekeys/state.db",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usageErr("state init takes one FILE")
				}
				if err := owners.Create(c.Args().First()); err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "made %s\n", c.Args().First())
				return nil
			},
		}, {
			Name:      "show",
			Usage:     "list the owners a state file records",
			ArgsUsage: "FILE",
			Description: "Prints a table: KIND (nodes or runs), ID, OWNER, NAME, SINCE; nodes first, each\n" +
				"kind by time. With --json, the same rows as an array of objects with the keys\n" +
				"kind, id, owner, name (if any) and at (RFC 3339). The id is a decimal string,\n" +
				"\"id\": \"18446744073709551615\", as flwr ls and flwr supernode ls --format json\n" +
				"print run-id and node-id: Flower's ids are random 64-bit numbers, and a JSON\n" +
				"number above 2^53 comes out changed in JavaScript and jq.\n\n" +
				"Example:\n" +
				"  nodekeys state show --json state.db | jq -r '.[] | select(.kind == \"runs\") | .id'",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON (ids as decimal strings)"}},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usageErr("state show takes one FILE (flags first)")
				}
				s, err := owners.Open(c.Args().First(), true)
				if err != nil {
					return err
				}
				defer s.Close()
				type row struct {
					Kind  owners.Kind `json:"kind"`
					ID    uint64      `json:"id,string"` // exact in JavaScript and jq past 2^53
					Owner string      `json:"owner"`
					Name  string      `json:"name,omitempty"`
					At    time.Time   `json:"at"`
				}
				var rows []row
				for _, k := range []owners.Kind{owners.Runs, owners.Nodes} {
					all, err := s.All(context.Background(), k)
					if err != nil {
						return err
					}
					for id, o := range all {
						rows = append(rows, row{k, id, o.String(), o.Name, o.At})
					}
				}
				slices.SortFunc(rows, func(a, b row) int {
					return cmp.Or(cmp.Compare(a.Kind, b.Kind), a.At.Compare(b.At), cmp.Compare(a.ID, b.ID))
				})
				if c.Bool("json") {
					if rows == nil {
						rows = []row{}
					}
					return printJSON(c.App.Writer, rows)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KIND\tID\tOWNER\tNAME\tSINCE")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.Kind, r.ID, r.Owner, r.Name, r.At.Format(time.RFC3339))
				}
				return tw.Flush()
			},
		}},
	}
}
