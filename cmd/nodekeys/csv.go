package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/allowlist"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/keys"
)

func csvCommand() *cli.Command {
	return &cli.Command{
		Name:  "csv",
		Usage: "check and edit a SuperLink allowlist (client_public_keys.csv)",
		Subcommands: []*cli.Command{
			{
				Name:        "check",
				Usage:       "validate an allowlist as a CSV-era SuperLink reads it; exit 1 on any problem",
				ArgsUsage:   "FILE",
				Description: "Example:\n  nodekeys csv check keys/client_public_keys.csv",
				Flags:       []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"}},
				Action:      csvCheck,
			},
			{
				Name:        "add",
				Usage:       "add public keys (.pub files) to an allowlist, refusing duplicates",
				ArgsUsage:   "FILE KEY.pub...",
				Description: "Example:\n  nodekeys csv add keys/client_public_keys.csv keys/client_credentials_3.pub",
				Action:      csvAdd,
			},
			{
				Name:      "remove",
				Usage:     "remove keys, named by fingerprint (SHA256:...) or .pub file, from an allowlist",
				ArgsUsage: "FILE FINGERPRINT|KEY.pub...",
				Description: "Examples:\n" +
					"  nodekeys csv remove keys/client_public_keys.csv keys/client_credentials_3.pub\n" +
					"  nodekeys csv remove keys/client_public_keys.csv SHA256:Wm3o1H0z5bJq4l8f1Jm8uJ6yQm2mXKc9o1yqL3kq8bE",
				Action: csvRemove,
			},
		},
	}
}

type csvKeyJSON struct {
	Line        int    `json:"line"`
	Column      int    `json:"column"`
	Curve       string `json:"curve"`
	Fingerprint string `json:"fingerprint"`
	Comment     string `json:"comment,omitempty"`
}

type csvProblemJSON struct {
	Line         int    `json:"line"`
	Column       int    `json:"column"`
	Message      string `json:"message"`
	BreaksFlower bool   `json:"breaks_flower,omitempty"`
}

type csvCheckJSON struct {
	File     string           `json:"file"`
	OK       bool             `json:"ok"`
	Count    int              `json:"count"`
	Keys     []csvKeyJSON     `json:"keys"`
	Warnings []csvProblemJSON `json:"warnings"`
	Errors   []csvProblemJSON `json:"errors"`
}

func problemJSON(p *csvlist.Problem) csvProblemJSON {
	return csvProblemJSON{Line: p.Line, Column: p.Column, Message: p.Err.Error(), BreaksFlower: p.BreaksFlower}
}

func csvCheck(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageErr("csv check takes one FILE")
	}
	l, err := csvlist.ReadFile(c.Args().First())
	var probs csvlist.Problems
	if err != nil && !errors.As(err, &probs) {
		return err
	}
	// What Flower's SuperLink fails on is an error, though csvlist reads
	// it: the exit status and the words say the same.
	var warnings []*csvlist.Problem
	for _, w := range l.Warnings {
		if w.BreaksFlower {
			probs = append(probs, w)
		} else {
			warnings = append(warnings, w)
		}
	}
	sort.SliceStable(probs, func(i, j int) bool {
		return probs[i].Line < probs[j].Line || probs[i].Line == probs[j].Line && probs[i].Column < probs[j].Column
	})
	if len(l.Entries) == 0 && len(probs) == 0 {
		probs = append(probs, &csvlist.Problem{File: l.File, Err: errors.New("no keys: a SuperLink with this allowlist accepts no node")})
	}
	ok := len(probs) == 0
	out, stderr := c.App.Writer, c.App.ErrWriter
	if c.Bool("json") {
		res := csvCheckJSON{File: l.File, OK: ok, Count: len(l.Entries), Keys: []csvKeyJSON{}, Warnings: []csvProblemJSON{}, Errors: []csvProblemJSON{}}
		for _, e := range l.Entries {
			res.Keys = append(res.Keys, csvKeyJSON{e.Line, e.Column, e.Key.Curve(), e.Key.Fingerprint(), e.Key.Comment})
		}
		for _, w := range warnings {
			res.Warnings = append(res.Warnings, problemJSON(w))
		}
		for _, p := range probs {
			res.Errors = append(res.Errors, problemJSON(p))
		}
		if err := printJSON(out, res); err != nil {
			return err
		}
	} else {
		for _, e := range l.Entries {
			fmt.Fprintf(out, "%d:%d\t%s\t%s\n", e.Line, e.Column, e.Key.Curve(), e.Key.Fingerprint())
		}
		for _, w := range warnings {
			fmt.Fprintf(stderr, "nodekeys: warning: %s\n", w)
		}
		for _, p := range probs {
			fmt.Fprintf(stderr, "nodekeys: error: %s\n", p)
		}
		status := "ok"
		if !ok {
			status = "NOT OK"
		}
		fmt.Fprintf(out, "%s: %d %s, %d %s, %d %s: %s\n", l.File, len(l.Entries), plural(len(l.Entries), "key", "keys"),
			len(probs), plural(len(probs), "error", "errors"), len(warnings), plural(len(warnings), "warning", "warnings"), status)
	}
	if !ok {
		return silentFailure
	}
	return nil
}

// editList edits the allowlist at path (allowlist.Edit), saying so when
// another nodekeys holds the folder, with the hint for a file that does
// not parse.
func editList(path string, create bool, edit func(l *csvlist.List) ([]*keys.PublicKey, error)) error {
	err := allowlist.Edit(path, allowlist.EditOptions{Create: create, Waiting: func(folder string) {
		fmt.Fprintf(os.Stderr, "nodekeys: waiting for another nodekeys writing %s\n", folder)
	}}, edit)
	if probs := (csvlist.Problems)(nil); errors.As(err, &probs) {
		return withHint(err, "run 'nodekeys csv check "+path+"' to see every problem; nothing was changed")
	}
	return err
}

func csvAdd(c *cli.Context) error {
	if c.NArg() < 2 {
		return usageErr("csv add takes FILE and at least one KEY.pub")
	}
	path := c.Args().First()
	var added []string
	var total int
	err := editList(path, true, func(l *csvlist.List) ([]*keys.PublicKey, error) {
		ks := l.Keys()
		for _, p := range c.Args().Slice()[1:] {
			k, err := keys.ReadPublicKey(p)
			if err != nil {
				return nil, err
			}
			for _, o := range ks {
				if o.Equal(k) {
					return nil, fmt.Errorf("%s: the key %s is already in %s; nothing was changed", p, k.Fingerprint(), path)
				}
			}
			if k.Curve() != "P-384" {
				fmt.Fprintf(c.App.ErrWriter, "nodekeys: warning: %s: %s key: Flower accepts it, but its SuperNodes make P-384 keys\n", p, k.Curve())
			}
			ks = append(ks, k)
			added = append(added, fmt.Sprintf("added %s (%s)", k.Fingerprint(), p))
		}
		total = len(ks)
		return ks, nil
	})
	if err != nil {
		return err
	}
	// Said only once the file is written.
	for _, a := range added {
		fmt.Fprintln(c.App.Writer, a)
	}
	fmt.Fprintf(c.App.Writer, "%s: %d keys\n", path, total)
	return nil
}

func csvRemove(c *cli.Context) error {
	if c.NArg() < 2 {
		return usageErr("csv remove takes FILE and at least one FINGERPRINT or KEY.pub")
	}
	path := c.Args().First()
	var removed []string
	var total int
	err := editList(path, false, func(l *csvlist.List) ([]*keys.PublicKey, error) {
		for _, a := range c.Args().Slice()[1:] {
			i := -1
			if strings.HasPrefix(a, "SHA256:") {
				i = l.IndexFingerprint(a)
			} else {
				k, err := keys.ReadPublicKey(a)
				if err != nil {
					return nil, err
				}
				i = l.Index(k)
			}
			if i < 0 {
				return nil, fmt.Errorf("%s is not in %s; nothing was changed", a, path)
			}
			removed = append(removed, "removed "+l.Entries[i].Key.Fingerprint())
			l.Entries = append(l.Entries[:i], l.Entries[i+1:]...)
		}
		total = len(l.Entries)
		return l.Keys(), nil
	})
	if err != nil {
		return err
	}
	for _, r := range removed {
		fmt.Fprintln(c.App.Writer, r)
	}
	fmt.Fprintf(c.App.Writer, "%s: %d keys\n", path, total)
	return nil
}
