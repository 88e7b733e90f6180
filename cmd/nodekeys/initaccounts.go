package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/keyset"
)

// The SuperLink's loopback addresses behind a gateway made by init
// --accounts: the gateway's default upstream, and its Control port.
const (
	initUpstream        = gateway.DefaultUpstream
	initUpstreamControl = "127.0.0.1:19093"
)

// initAccounts is what init --accounts writes besides the credentials: a
// gateway config with an accounts: section, the account file with a
// first admin account, and the gateway's state file.
type initAccounts struct {
	Config   string `json:"config"`
	File     string `json:"accounts_file"`
	State    string `json:"state_file"`
	Issuer   string `json:"issuer"`
	Listen   string `json:"accounts_listen"`
	Admin    string `json:"admin"`
	password string
	// Password is set only when init made it: shown once, kept nowhere.
	Password string `json:"password,omitempty"`
}

// planAccounts checks what init --accounts would write, before anything
// is, and reads or makes the admin's password.
func planAccounts(c *cli.Context) (*initAccounts, error) {
	if !c.Bool("accounts") {
		for _, f := range []string{"admin", "issuer", "gateway-config"} {
			if c.IsSet(f) {
				return nil, usageErr("--%s goes with --accounts", f)
			}
		}
		return nil, nil
	}
	a := &initAccounts{Config: c.String("gateway-config"), Admin: c.String("admin")}
	dir := filepath.Dir(a.Config)
	a.File, a.State = filepath.Join(dir, "accounts.json"), filepath.Join(dir, "state.db")
	issuer, listen, err := initIssuer(c)
	if err != nil {
		return nil, err
	}
	a.Issuer, a.Listen = issuer, listen
	keysFile := strings.TrimSuffix(a.File, ".json") + "-keys.json"
	for _, p := range []string{a.Config, a.File, keysFile, a.State} {
		if exists(p) {
			return nil, withHint(fmt.Errorf("refusing to overwrite %s", p), "init writes a new federation; add accounts with 'nodekeys account add'")
		}
	}
	pw, made, err := adminPassword(c, a.Admin)
	if err != nil {
		return nil, err
	}
	a.password = pw
	if made {
		a.Password = pw
	}
	return a, nil
}

// initIssuer returns the sign-in's public address and the accounts
// listener's: --issuer, or the first name added to the certificate
// (else localhost) on port 9095; the listener takes the issuer's port, on
// every address unless the issuer's host is a loopback address. Its host must be one of the server
// certificate's names, for browsers to trust the page.
func initIssuer(c *cli.Context) (issuer, listen string, err error) {
	hosts := c.StringSlice("san")
	if len(hosts) == 0 {
		hosts = certs.DefaultHosts
	}
	sans, err := certs.MergeSANs(hosts, c.StringSlice("add-san"))
	if err != nil {
		return "", "", &cliError{err: err, code: exitUsage}
	}
	raw := c.String("issuer")
	if raw == "" {
		host := "localhost"
		if add := c.StringSlice("add-san"); len(add) > 0 {
			host = add[0]
		} else if len(c.StringSlice("san")) > 0 {
			host = sans[0]
		}
		raw = "https://" + net.JoinHostPort(host, strings.TrimPrefix(accounts.DefaultListen, ":"))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", usageErr("--issuer must be an https://HOST:PORT address, got %q", raw)
	}
	if !slices.Contains(sans, u.Hostname()) {
		return "", "", usageErr("--issuer's host %s is not a name of the server certificate %v: add it with --add-san", u.Hostname(), sans)
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	// An issuer at a loopback address is reached on loopback only.
	listen = ":" + port
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
		listen = net.JoinHostPort(u.Hostname(), port)
	}
	return "https://" + net.JoinHostPort(u.Hostname(), port), listen, nil
}

// adminPassword reads the first account's password: typed at the
// terminal (Enter alone makes one), or one line of stdin (none makes
// one). A made password has 130 random bits.
func adminPassword(c *cli.Context, name string) (pw string, made bool, err error) {
	if f, ok := c.App.Reader.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(c.App.ErrWriter, "Password of the account %s (Enter makes one): ", name)
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", false, err
		}
		if len(a) > 0 {
			fmt.Fprint(c.App.ErrWriter, "Again: ")
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(c.App.ErrWriter)
			if err != nil {
				return "", false, err
			}
			if string(a) != string(b) {
				return "", false, errors.New("the passwords differ")
			}
		}
		pw = string(a)
	} else if c.App.Reader != nil {
		line, err := bufio.NewReader(io.LimitReader(c.App.Reader, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, err
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return rand.Text(), true, nil
	}
	if len([]rune(pw)) < accounts.MinPasswordLength {
		return "", false, fmt.Errorf("the password of %s needs at least %d characters", name, accounts.MinPasswordLength)
	}
	return pw, false, nil
}

// addAdmin writes the account file with the first account: before any
// other file, as it checks the name.
func (a *initAccounts) addAdmin() error {
	_, err := accounts.Add(a.File, a.Admin, []string{"admin"}, "", a.password, accounts.DefaultParams)
	return err
}

// write writes the state file and the gateway config, after the
// credentials are written.
func (a *initAccounts) write(cres *certs.Result, csv string, nodes int) error {
	if err := owners.Create(a.State); err != nil {
		return err
	}
	// No node yet: the gateway starts on the empty allowlist, and nodes
	// are added to it later (keygen --append, then SIGHUP).
	allowEmpty := ""
	if nodes == 0 {
		allowEmpty = "allow_empty: true\n"
	}
	conf := fmt.Sprintf(`# nodekeys gateway --config %[1]s
# Written by nodekeys init --accounts. Paths are relative to the folder
# init ran in: run the gateway there. The SuperLink runs on loopback:
#   flower-superlink --fleet-api-address %[2]s --control-api-address %[3]s \
#     --ssl-ca-certfile %[4]s --ssl-certfile %[5]s --ssl-keyfile %[6]s \
#     --enable-supernode-auth
listen_fleet: "%[7]s"
listen_control: "%[8]s"
upstream: "%[2]s"
upstream_control: "%[3]s"
upstream_ca: %[4]q
tls_cert: %[5]q
tls_key: %[6]q
# SuperNodes: the keys this list holds are let through and registered.
allowlist: [%[9]q]
%[14]sregister_nodes: true
# Who started each run and registered each node.
state_file: %[10]q
# Account login for flwr login, with the gateway's own sign-in page.
# Accounts have roles: admin (every Control call, every account's runs
# and nodes) or member (its own runs and nodes), unless a policy: here
# names others; add them with (--config checks the role against this file)
#   nodekeys account add NAME --role member --file %[12]s --config %[1]s
accounts:
  # The address people's browsers reach the sign-in page at.
  issuer: %[11]q
  listen: "%[13]s"
  file: %[12]q
`, a.Config, initUpstream, initUpstreamControl, cres.CACert, cres.ServerCert, cres.ServerKey,
		gateway.DefaultListenFleet, gateway.DefaultListenControl, csv, a.State, a.Issuer, a.File, a.Listen, allowEmpty)
	f, err := os.OpenFile(a.Config, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(conf); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// print says what init --accounts wrote, and how to run it; a password
// init made is shown here once.
func (a *initAccounts) print(out io.Writer, cres *certs.Result, kres *keyset.Result) {
	fmt.Fprintf(out, "wrote %s: the gateway's config, with its own account login at %s (%s, %s)\n", a.Config, a.Issuer, a.File, a.State)
	if a.Password != "" {
		fmt.Fprintf(out, "account %s (role admin), password: %s\n  (shown only now, kept nowhere in clear; change it with: nodekeys account passwd %s --file %s)\n",
			a.Admin, a.Password, a.Admin, a.File)
	} else {
		fmt.Fprintf(out, "account %s (role admin), with the password given\n", a.Admin)
	}
	fmt.Fprintf(out, "\nSuperLink: flower-superlink --fleet-api-address %s --control-api-address %s --ssl-ca-certfile %s --ssl-certfile %s --ssl-keyfile %s --enable-supernode-auth\n",
		initUpstream, initUpstreamControl, cres.CACert, cres.ServerCert, cres.ServerKey)
	fmt.Fprintf(out, "Gateway:   nodekeys gateway --config %s\n", a.Config)
	u, _ := url.Parse(a.Issuer)
	host := net.JoinHostPort(u.Hostname(), strings.TrimPrefix(gateway.DefaultListenControl, ":"))
	if len(kres.Pairs) > 0 {
		fleet := net.JoinHostPort(u.Hostname(), strings.TrimPrefix(gateway.DefaultListenFleet, ":"))
		fmt.Fprintf(out, "SuperNode: flower-supernode --superlink %s --root-certificates %s --auth-supernode-private-key %s\n", fleet, cres.CACert, kres.Pairs[0].Private)
	}
	fmt.Fprintf(out, "flwr:      address = %q, root-certificates = %q; then flwr login, and sign in as %s\n", host, absPath(cres.CACert), a.Admin)
}
