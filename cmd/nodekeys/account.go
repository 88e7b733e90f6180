package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/gateway/shared"
)

func accountFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "file", Aliases: []string{"f"}, Value: "accounts.json",
		Usage: "the gateway's account `FILE` (its accounts: file setting)"}
}

// accountsFileOf is the account file a gateway config names, if any.
func accountsFileOf(g *gateway.Config) string {
	if g.Accounts == nil {
		return ""
	}
	return g.Accounts.File
}

// oneName returns the command's one argument, a name.
func oneName(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usageErr("%s takes one NAME, got %d arguments", c.Command.Name, c.NArg())
	}
	return c.Args().First(), nil
}

// readPassword reads a new password: typed twice at a terminal, or one
// line of stdin otherwise. It is never a flag, so it is not in the
// process list or the shell's history.
func readPassword(c *cli.Context) (string, error) {
	if f, ok := c.App.Reader.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.App.ErrWriter, "New password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", err
		}
		fmt.Fprint(c.App.ErrWriter, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(io.LimitReader(c.App.Reader, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on stdin (one line), and stdin is not a terminal")
	}
	return pw, nil
}

func accountCommand() *cli.Command {
	return &cli.Command{
		Name:  "account",
		Usage: "manage the accounts and service clients of a gateway's own sign-in (accounts:)",
		Description: "A gateway with an accounts: section is its own OpenID Connect provider: flwr login\n" +
			"sends people to its sign-in page, where they sign in with a name and password\n" +
			"(and a one-time code, where set). Accounts are made here by the operator, never\n" +
			"by their owners. The account file keeps argon2id hashes (t=3, 64 MiB, p=4),\n" +
			"never a password; the gateway looks at it before each sign-in and refresh, so a\n" +
			"change applies at once. Passwords are read from the terminal, or one line of\n" +
			"stdin, never from a flag.\n\n" +
			"Examples:\n" +
			"  nodekeys account add alice --role admin --email alice@example.org\n" +
			"  nodekeys account list --file /etc/nodekeys/accounts.json",
		Subcommands: []*cli.Command{{
			Name:      "add",
			Usage:     "add an account (asks for its password)",
			ArgsUsage: "NAME",
			Description: "Examples:\n" +
				"  nodekeys account add alice --role admin --email alice@example.org\n" +
				"  printf '%s\\n' \"$PASSWORD\" | nodekeys account add bob --role member --file /etc/nodekeys/accounts.json\n" +
				"  nodekeys account add carol --role data-science --config /etc/nodekeys/gateway.yaml",
			Flags: []cli.Flag{accountFileFlag(), policyConfigFlag(),
				&cli.StringSliceFlag{Name: "role", Required: true, Usage: "a `ROLE` in the gateway's policy (checked with --config; default policy: admin or member); repeat for more"},
				&cli.StringFlag{Name: "email", Usage: "the account's `EMAIL` (shown in logs and tokens)"},
			},
			Action: func(c *cli.Context) error {
				name, err := oneName(c)
				if err != nil {
					return err
				}
				file, err := roleTarget(c, "accounts: section", accountsFileOf, c.StringSlice("role")...)
				if err != nil {
					return err
				}
				pw, err := readPassword(c)
				if err != nil {
					return err
				}
				a, err := accounts.Add(file, name, c.StringSlice("role"), c.String("email"), pw, accounts.DefaultParams)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "account %q (%s, roles %s) added to %s\n", a.Name, a.ID, strings.Join(a.Roles, ","), file)
				return nil
			},
		}, {
			Name:        "passwd",
			Usage:       "set an account's password (ends its sessions)",
			ArgsUsage:   "NAME",
			Description: "Example:\n  nodekeys account passwd alice --file /etc/nodekeys/accounts.json",
			Flags:       []cli.Flag{accountFileFlag()},
			Action: func(c *cli.Context) error {
				name, err := oneName(c)
				if err != nil {
					return err
				}
				pw, err := readPassword(c)
				if err != nil {
					return err
				}
				if err := accounts.SetPassword(c.String("file"), name, pw, accounts.DefaultParams); err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "password of %q set; its sessions are ended\n", name)
				return nil
			},
		}, {
			Name:        "disable",
			Usage:       "disable an account or client (ends its sessions; enable undoes it)",
			ArgsUsage:   "NAME",
			Description: "Example:\n  nodekeys account disable alice --file /etc/nodekeys/accounts.json",
			Flags:       []cli.Flag{accountFileFlag()},
			Action:      func(c *cli.Context) error { return setDisabled(c, true) },
		}, {
			Name:        "enable",
			Usage:       "enable a disabled account or client",
			ArgsUsage:   "NAME",
			Description: "Example:\n  nodekeys account enable alice --file /etc/nodekeys/accounts.json",
			Flags:       []cli.Flag{accountFileFlag()},
			Action:      func(c *cli.Context) error { return setDisabled(c, false) },
		}, {
			Name:        "remove",
			Usage:       "remove an account or client (ends its sessions)",
			ArgsUsage:   "NAME",
			Description: "Example:\n  nodekeys account remove alice --file /etc/nodekeys/accounts.json",
			Flags:       []cli.Flag{accountFileFlag()},
			Action: func(c *cli.Context) error {
				name, err := oneName(c)
				if err != nil {
					return err
				}
				if err := accounts.Remove(c.String("file"), name); err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "removed %q; its sessions are ended\n", name)
				return nil
			},
		}, {
			Name:        "list",
			Usage:       "list the accounts and clients (never a password or secret)",
			Description: "Examples:\n  nodekeys account list\n  nodekeys account list --json --file /etc/nodekeys/accounts.json",
			Flags:       []cli.Flag{accountFileFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action:      listAccounts,
		}, {
			Name:  "client",
			Usage: "service clients, which fetch tokens with the client-credentials grant",
			Subcommands: []*cli.Command{{
				Name:      "add",
				Usage:     "add a service client and print its secret once",
				ArgsUsage: "NAME",
				Description: "The client's id is NAME; its secret (256 random bits) is written once to\n" +
					"--out FILE (0600), or else printed on stdout. The service fetches tokens at\n" +
					"ISSUER/oauth/token.\n\n" +
					"Examples:\n  nodekeys account client add ci --role member --file /etc/nodekeys/accounts.json --out ci.secret\n" +
					"  nodekeys account client add ci --role member --config /etc/nodekeys/gateway.yaml --out ci.secret",
				Flags: []cli.Flag{accountFileFlag(), policyConfigFlag(),
					&cli.StringSliceFlag{Name: "role", Required: true, Usage: "a `ROLE` in the gateway's policy (checked with --config); repeat for more"},
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the secret to `FILE`, mode 0600 (never replaced), instead of stdout"}},
				Action: func(c *cli.Context) error {
					name, err := oneName(c)
					if err != nil {
						return err
					}
					out := c.String("out")
					if err := checkSecretOut(out, "a client secret"); err != nil {
						return err
					}
					file, err := roleTarget(c, "accounts: section", accountsFileOf, c.StringSlice("role")...)
					if err != nil {
						return err
					}
					secret, err := accounts.AddClient(file, name, c.StringSlice("role"))
					if err != nil {
						return err
					}
					if out != "" {
						if err := writeSecretOut(out, secret); err != nil {
							return withHint(err, fmt.Sprintf("the secret is lost; remove the client and add it again: nodekeys account remove --file %s %s", file, name))
						}
						fmt.Fprintf(c.App.ErrWriter, "client %q added to %s; its secret is in %s (0600) and shown nowhere else\n", name, file, out)
						return nil
					}
					fmt.Fprintln(c.App.Writer, secret)
					fmt.Fprintf(c.App.ErrWriter, "client %q added to %s; its secret is shown only now\n", name, file)
					return nil
				},
			}},
		}, {
			Name:      "totp",
			Usage:     "turn on one-time codes (TOTP) for an account, and print its key once",
			ArgsUsage: "NAME",
			Description: "Prints an otpauth:// address (for an authenticator app, or a QR code made of\n" +
				"it) and its secret. A new key replaces the old one and ends the account's\n" +
				"sessions; --off turns the codes off.\n\n" +
				"Examples:\n  nodekeys account totp alice --file /etc/nodekeys/accounts.json\n  nodekeys account totp alice --off",
			Flags: []cli.Flag{accountFileFlag(),
				&cli.StringFlag{Name: "issuer", Value: "Flower federation", Usage: "the `NAME` the authenticator app shows"},
				&cli.BoolFlag{Name: "off", Usage: "turn the one-time codes off"}},
			Action: func(c *cli.Context) error {
				name, err := oneName(c)
				if err != nil {
					return err
				}
				secret, uri := "", ""
				if !c.Bool("off") {
					if secret, uri, err = accounts.TOTPKey(c.String("issuer"), name); err != nil {
						return err
					}
				}
				if err := accounts.Change(c.String("file"), name, func(a *accounts.Account) error { a.TOTP = secret; return nil }); err != nil {
					return err
				}
				if c.Bool("off") {
					fmt.Fprintf(c.App.ErrWriter, "one-time codes of %q turned off\n", name)
					return nil
				}
				fmt.Fprintln(c.App.Writer, uri)
				fmt.Fprintf(c.App.ErrWriter, "secret: %s\none-time codes of %q turned on; the key is shown only now\n", secret, name)
				return nil
			},
		}, {
			Name:  "rotate-keys",
			Usage: "make a new signing key; tokens of the old one stay valid to their expiry",
			Description: "Reads the gateway's config for where the keys are: its accounts: keys_file, or\n" +
				"Redis when redis: is set. Gateways sign with the new key within a second.\n\n" +
				"Example:\n  nodekeys account rotate-keys --config /etc/nodekeys/gateway.yaml",
			Flags: []cli.Flag{&cli.StringFlag{Name: "config", Required: true, Usage: "the gateway's config `FILE`"}},
			Action: func(c *cli.Context) error {
				cfg, err := gateway.LoadConfig(c.String("config"))
				if err != nil {
					return err
				}
				if cfg.Accounts == nil {
					return fmt.Errorf("%s has no accounts: section", c.String("config"))
				}
				cfg.Accounts.Defaults()
				var kid string
				if cfg.Redis != nil {
					cfg.Redis.Defaults()
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					b, err := shared.New(ctx, *cfg.Redis, func(string, error) {})
					if err != nil {
						return err
					}
					defer b.Close()
					kid, err = accounts.RotateKeysRedis(ctx, b.Client(), cfg.Redis.Prefix)
					if err != nil {
						return err
					}
				} else {
					kf := cfg.Accounts.KeysFile
					_, statErr := os.Stat(kf)
					if kid, err = accounts.RotateKeyFile(kf); err != nil {
						return err
					}
					if errors.Is(statErr, fs.ErrNotExist) {
						// The gateway makes the file on its first start: a
						// missing one is most often this command run from
						// another folder than the gateway's.
						fmt.Fprintf(c.App.ErrWriter, "nodekeys: warning: made %s, which did not exist: a gateway running with %s reads its keys from the folder it runs in\n",
							absPath(kf), c.String("config"))
					}
				}
				fmt.Fprintf(c.App.ErrWriter, "new signing key %s; the old one is published %s more\n", kid, accounts.RetiredKeyKept)
				return nil
			},
		}},
	}
}

func setDisabled(c *cli.Context, disabled bool) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	if err := accounts.SetDisabled(c.String("file"), name, disabled); err != nil {
		return err
	}
	if disabled {
		fmt.Fprintf(c.App.ErrWriter, "disabled %q; its sessions are ended\n", name)
	} else {
		fmt.Fprintf(c.App.ErrWriter, "enabled %q\n", name)
	}
	return nil
}

func listAccounts(c *cli.Context) error {
	f, err := accounts.ReadFile(c.String("file"))
	if err != nil {
		return err
	}
	type row struct {
		Kind     string    `json:"kind"`
		Name     string    `json:"name"`
		ID       string    `json:"id"`
		Roles    []string  `json:"roles"`
		Email    string    `json:"email,omitempty"`
		TOTP     bool      `json:"totp"`
		Disabled bool      `json:"disabled"`
		Made     time.Time `json:"made"`
	}
	rows := []row{}
	for _, a := range f.Accounts {
		rows = append(rows, row{"account", a.Name, a.ID, a.Roles, a.Email, a.TOTP != "", a.Disabled, a.Made})
	}
	for _, cl := range f.Clients {
		rows = append(rows, row{"client", cl.Name, cl.Name, cl.Roles, "", false, cl.Disabled, cl.Made})
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, rows)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tID\tROLES\tEMAIL\tTOTP\tDISABLED\tMADE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%t\t%s\n", r.Kind, r.Name, r.ID, strings.Join(r.Roles, ","), r.Email, r.TOTP, r.Disabled,
			r.Made.Format(time.RFC3339))
	}
	return tw.Flush()
}
