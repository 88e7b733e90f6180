package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"

	"github.com/nodekeys/nodekeys/control"
)

func loginCommand() *cli.Command {
	flags := controlFlags()
	for _, f := range flags {
		if sf, ok := f.(*cli.DurationFlag); ok && sf.Name == "timeout" {
			sf.Value = 10 * time.Minute // a person signs in
		}
	}
	return &cli.Command{
		Name:  "login",
		Usage: "log in to a Control API with account login (as flwr login does), for scripts",
		Description: "Starts a device login at the Control API (a nodekeys gateway with oidc, or a\n" +
			"SuperLink with Flower's account auth), prints the address to open and sign in at,\n" +
			"waits for the sign-in, and writes the tokens to --out (0600). Other commands send\n" +
			"them with --login-file, and keep the new pair when the server refreshes them.\n\n" +
			"   nodekeys login --superlink superlink.example:9093 --root-certificates certificates/ca.crt\n" +
			"   nodekeys nodes --superlink superlink.example:9093 --root-certificates certificates/ca.crt --login-file ~/.config/nodekeys/login.json",
		Flags: append(flags, &cli.StringFlag{Name: "out", Value: control.DefaultFile(), Usage: "the token `FILE` to write"}),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErr("login takes no arguments, got %q", c.Args().First())
			}
			if c.IsSet("login-file") {
				return usageErr("login writes --out; --login-file is for the other commands")
			}
			return withControl(c, func(ctx context.Context, conn *grpc.ClientConn) error {
				tok, err := control.Login(ctx, conn, func(uri string, expires time.Duration) {
					fmt.Fprintf(c.App.ErrWriter, "Open this address in a browser and sign in (within %s):\n  %s\n", expires.Round(time.Second), uri)
				})
				if err != nil {
					return err
				}
				if err := control.WriteFile(c.String("out"), tok); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "logged in; the tokens are in %s (0600)\n", c.String("out"))
				return nil
			})
		},
	}
}
