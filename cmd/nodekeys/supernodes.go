package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nodekeys/nodekeys/control"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
	"github.com/nodekeys/nodekeys/supernodes"
)

// controlFlags say how to reach a SuperLink's Control API.
func controlFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "superlink", Value: "127.0.0.1:9093", Usage: "the SuperLink's Control API `ADDR` (Flower's default port is 9093)"},
		&cli.StringFlag{Name: "root-certificates", Aliases: []string{"root-certificate"}, Usage: "CA certificate `FILE` the SuperLink's certificate chains to (TLS)"},
		&cli.BoolFlag{Name: "insecure", Usage: "speak plaintext to a SuperLink started with --insecure"},
		&cli.StringFlag{Name: "token-file", Usage: "send the bearer token in `FILE` (a gateway's machine token); or set NODEKEYS_TOKEN"},
		&cli.StringFlag{Name: "login-file", Usage: "send the tokens of an account login (the `FILE` nodekeys login writes)"},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up on one call after this long"},
	}
}

// controlConn connects to the Control API as the flags say.
func controlConn(c *cli.Context) (*grpc.ClientConn, error) {
	return controlConnTo(c, c.String("superlink"))
}

// controlOptions are the Control API options the flags give, for addr.
func controlOptions(c *cli.Context, addr string) control.Options {
	return control.Options{
		Address: addr, RootCertificates: c.String("root-certificates"), Insecure: c.Bool("insecure"),
		Token: os.Getenv("NODEKEYS_TOKEN"), TokenFile: c.String("token-file"), LoginFile: c.String("login-file"),
	}
}

// controlConnTo connects to the Control API at addr with the flags'
// credentials.
func controlConnTo(c *cli.Context, addr string) (*grpc.ClientConn, error) {
	conn, err := control.Dial(controlOptions(c, addr))
	var le *control.LoginError
	switch {
	case errors.Is(err, control.ErrNoPort):
		return nil, usageErr("--superlink %q is not HOST:PORT (Flower's Control API port is 9093)", addr)
	case errors.Is(err, control.ErrTwoCredentials):
		return nil, usageErr("--login-file and --token-file (or NODEKEYS_TOKEN) do not go together: a call carries one credential")
	case errors.Is(err, control.ErrTLSAndInsecure):
		return nil, usageErr("--root-certificates and --insecure contradict each other")
	case errors.Is(err, control.ErrNoTransport):
		return nil, usageErr("say how to reach the SuperLink: --root-certificates CA.crt (TLS) or --insecure")
	case errors.Is(err, control.ErrTokenNeedsTLS):
		return nil, usageErr("a bearer token is sent over TLS only: use --root-certificates, not --insecure")
	case errors.As(err, &le):
		return nil, withHint(le.Err, "log in first: nodekeys login --out "+le.File)
	}
	return conn, err
}

// withControl connects to the Control API as the flags say and runs fn
// with a context that ends at --timeout or on SIGINT and SIGTERM. A
// Control API that cannot be reached is one "cannot reach" line, not
// gRPC's status text.
func withControl(c *cli.Context, fn func(ctx context.Context, conn *grpc.ClientConn) error) error {
	conn, err := controlConn(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := withTimeout(c)
	defer cancel()
	if err := control.Reach(ctx, conn); err != nil {
		return err
	}
	return loginHint(c, fn(ctx, conn))
}

// loginHint adds how to log in to err when the Control API refused a call
// that carried no credentials: a gateway that wants an account login or a
// machine token.
func loginHint(c *cli.Context, err error) error {
	if status.Code(err) != codes.Unauthenticated || scoped(c) || c.Command.Name == "login" {
		return err
	}
	args := []string{"nodekeys", "login", "--superlink", c.String("superlink")}
	if ca := c.String("root-certificates"); ca != "" {
		args = append(args, "--root-certificates", ca)
	}
	return withHint(err, "log in with '"+shellJoin(args)+"' and pass --login-file, or use --token-file")
}

func withTimeout(c *cli.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	tctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
	return tctx, func() { cancel(); stop() }
}

// keySourceFlags name the wanted keys.
func keySourceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "allowlist", Aliases: []string{"a"}, Usage: "the keys of an allowlist `CSV`"},
		&cli.StringFlag{Name: "dir", Usage: "every *.pub in `DIR`"},
		&cli.IntFlag{Name: "parallel", Value: 16, Usage: "calls in flight at once"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON (node ids as decimal strings)"},
	}
}

// jsonIDsHelp says, in a command's --help, how its JSON gives node ids.
const jsonIDsHelp = "Each node_id is a decimal string, \"node_id\": \"18446744073709551615\", as flwr\n" +
	"supernode ls --format json prints node-id: Flower's node ids are random 64-bit\n" +
	"numbers, and a JSON number above 2^53 comes out changed in JavaScript and jq."

func registerCommand() *cli.Command {
	return &cli.Command{
		Name:  "register",
		Usage: "register SuperNode keys with a SuperLink (Flower 1.23 and later), many at once",
		Description: "Registers every key not yet registered, in parallel, and prints the node id and\n" +
			"fingerprint of each. The key is sent as Flower's CLI sends it (PEM, as OpenSSL\n" +
			"writes it). A key the SuperLink already holds is looked up in its list: already\n" +
			"registered is reported, not an error; unregistered before (burned: Flower never\n" +
			"registers it again) is a failure; with a login or token, a key the list does not\n" +
			"show is another account's.\n\n" +
			"With --json: {\"outcomes\": [...]}, one object per key with fingerprint, file,\n" +
			"node_id (when registered or already registered) and action (registered,\n" +
			"already-registered, other-account, burned or failed), and error when there is one.\n" + jsonIDsHelp + "\n\n" +
			"   nodekeys register --superlink superlink.example:9093 --root-certificates certificates/ca.crt --dir keys\n" +
			"   nodekeys register --insecure keys/client_credentials_1.pub keys/client_credentials_2.pub",
		ArgsUsage: "[KEY.pub...]",
		Flags:     append(controlFlags(), keySourceFlags()...),
		Action:    registerAction,
	}
}

func registerAction(c *cli.Context) error {
	w, err := readWanted(c, c.Args().Slice())
	if err != nil {
		return err
	}
	want := w.Keys
	if len(want) == 0 && len(w.Dropped) == 0 {
		return usageErr("name the keys: KEY.pub files, --allowlist CSV or --dir DIR")
	}
	warnBurned(c.App.ErrWriter, c.String("dir"), want)
	if len(want) == 0 {
		return fmt.Errorf("no key to register: %s holds none of the keys", w.Allowlist)
	}
	// One line when the SuperLink cannot be reached, not one per key.
	return withControl(c, func(ctx context.Context, conn *grpc.ClientConn) error {
		res := supernodes.NewClient(conn).RegisterAll(ctx, want, supernodes.Options{Parallel: c.Int("parallel"), Scoped: scoped(c)})
		return reportResult(c, res, nil)
	})
}

// readWanted reads the keys the flags and files name, and says which of
// --dir's keys its allowlist no longer holds (they are left out).
func readWanted(c *cli.Context, files []string) (*supernodes.Wanted, error) {
	w, err := supernodes.ReadWanted(files, c.String("allowlist"), c.String("dir"))
	if err != nil {
		return nil, err
	}
	for _, d := range w.Dropped {
		fmt.Fprintf(c.App.ErrWriter, "nodekeys: leaving out %s (%s): %s no longer holds it\n", d.File, d.Key.Fingerprint(), w.Allowlist)
	}
	return w, nil
}

// scoped reports whether the calls carry an account's or a token's
// credentials: a gateway then lists a member only its own nodes.
func scoped(c *cli.Context) bool {
	return c.String("login-file") != "" || c.String("token-file") != "" || os.Getenv("NODEKEYS_TOKEN") != ""
}

// warnBurned warns about wanted keys recorded as unregistered in dir.
func warnBurned(w io.Writer, dir string, want []supernodes.Want) {
	if dir == "" {
		return
	}
	burned, err := supernodes.ReadBurned(dir)
	if err != nil {
		return
	}
	for _, k := range want {
		if burned[k.Key.Fingerprint()] {
			fmt.Fprintf(w, "nodekeys: warning: %s (%s) was unregistered before: Flower will not register it again; rotate the node's key\n", k.File, k.Key.Fingerprint())
		}
	}
}

// reportResult prints the outcomes (with the plan, for apply) and says
// what failed; exit 1 when anything did.
func reportResult(c *cli.Context, res *supernodes.Result, plan *supernodes.Plan) error {
	out := c.App.Writer
	if c.Bool("json") {
		v := map[string]any{"outcomes": res.Outcomes}
		if plan != nil {
			v["extra"] = orEmpty(plan.Extra)
		}
		if err := printJSON(out, v); err != nil {
			return err
		}
	} else {
		for _, o := range res.Outcomes {
			fmt.Fprintln(out, o)
		}
		others := ""
		if n := res.Count("other-account"); n > 0 {
			others = fmt.Sprintf(", %d held by other accounts", n)
		}
		fmt.Fprintf(out, "%d registered, %d already registered%s, %d unregistered, %d burned, %d failed\n",
			res.Count("registered"), res.Count("already-registered"), others, res.Count("unregistered"), res.Count("burned"), len(res.Failed()))
	}
	if n := len(res.Failed()) + res.Count("burned"); n > 0 {
		return withHint(fmt.Errorf("%d of %d keys were not done", n, len(res.Outcomes)), "run the same command again: it does only what is left")
	}
	return nil
}

func nodesCommand() *cli.Command {
	return &cli.Command{
		Name:  "nodes",
		Usage: "list the SuperNodes a SuperLink has registered",
		Description: "Prints a table: NODE ID, FINGERPRINT, STATUS, OWNER, unregistered (burned) keys\n" +
			"included. With --json, an array of objects with node_id, fingerprint, status,\n" +
			"owner, registered_at and unregistered (true for a burned key).\n" + jsonIDsHelp + "\n\n" +
			"   nodekeys nodes --superlink superlink.example:9093 --root-certificates certificates/ca.crt --json",
		Flags: append(controlFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON (node ids as decimal strings)"}),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErr("nodes takes no arguments, got %q", c.Args().First())
			}
			return withControl(c, func(ctx context.Context, conn *grpc.ClientConn) error {
				nodes, err := supernodes.NewClient(conn).List(ctx)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, nodes)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE ID\tFINGERPRINT\tSTATUS\tOWNER")
				for _, n := range nodes {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", n.ID, n.Fingerprint, n.Status, n.Owner)
				}
				return tw.Flush()
			})
		},
	}
}

func applyCommand() *cli.Command {
	return &cli.Command{
		Name:  "apply",
		Usage: "make a SuperLink's registrations equal the key files",
		Description: "Registers the keys of --allowlist or --dir the SuperLink lacks; with --prune,\n" +
			"unregisters the keys the files no longer hold (Flower never registers those\n" +
			"again: they are recorded in DIR/" + supernodes.BurnedFile + "). Prints the plan first;\n" +
			"--dry-run stops there. Running it again does only what is left.\n\n" +
			"With --json, --dry-run prints the plan: register and burned (fingerprint, file),\n" +
			"unregister, present and extra (nodes, as nodes --json lists them); a run prints\n" +
			"{\"outcomes\": [...], \"extra\": [...]}, the outcomes as register --json prints\n" +
			"them (actions unregistered and burned too).\n" + jsonIDsHelp + "\n\n" +
			"   nodekeys apply --superlink superlink.example:9093 --root-certificates certificates/ca.crt --dir keys --prune",
		Flags: append(append(controlFlags(), keySourceFlags()...),
			&cli.BoolFlag{Name: "prune", Usage: "unregister keys the files do not hold"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and change nothing"}),
		Action: applyAction,
	}
}

func applyAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("apply takes --allowlist or --dir, not arguments")
	}
	if c.String("allowlist") == "" && c.String("dir") == "" {
		return usageErr("name the keys with --allowlist CSV or --dir DIR")
	}
	wanted, err := readWanted(c, nil)
	if err != nil {
		return err
	}
	want := wanted.Keys
	return withControl(c, func(ctx context.Context, conn *grpc.ClientConn) error {
		client := supernodes.NewClient(conn)
		nodes, err := client.List(ctx)
		if err != nil {
			return err
		}
		plan := supernodes.MakePlan(nodes, want, c.Bool("prune"))
		plan.Scoped = scoped(c)
		w := c.App.ErrWriter
		if c.Bool("json") && c.Bool("dry-run") {
			return printJSON(c.App.Writer, planJSON(plan))
		}
		if plan.Scoped {
			fmt.Fprintln(w, "the plan is made from the nodes this account may see (a gateway lists a member's own nodes only)")
		}
		fmt.Fprintf(w, "plan: register %d, unregister %d, keep %d registered", len(plan.Register), len(plan.Unregister), len(plan.Present))
		if len(plan.Extra) > 0 {
			fmt.Fprintf(w, ", leave %d not in the files (--prune unregisters them)", len(plan.Extra))
		}
		fmt.Fprintln(w)
		for _, b := range plan.Burned {
			fmt.Fprintf(w, "  cannot register %s (%s): unregistered before; the node needs a new key (nodekeys rotate)\n", b.Key.Fingerprint(), b.File)
		}
		if c.Bool("dry-run") {
			for _, r := range plan.Register {
				fmt.Fprintf(c.App.Writer, "would register   %s  %s\n", r.Key.Fingerprint(), r.File)
			}
			for _, n := range plan.Unregister {
				fmt.Fprintf(c.App.Writer, "would unregister %s  node %d\n", n.Fingerprint, n.ID)
			}
			return nil
		}
		opts := supernodes.Options{Parallel: c.Int("parallel")}
		var gone []supernodes.Node
		opts.OnUnregistered = func(n supernodes.Node) { gone = append(gone, n) }
		res := client.Apply(ctx, plan, opts)
		if dir := burnedDir(c); dir != "" {
			if err := supernodes.RecordBurned(dir, gone, time.Now()); err != nil {
				fmt.Fprintf(w, "nodekeys: warning: recording the unregistered keys: %v\n", err)
			}
		}
		return reportResult(c, res, plan)
	})
}

// burnedDir is the key folder that records unregistered keys.
func burnedDir(c *cli.Context) string {
	if d := c.String("dir"); d != "" {
		return d
	}
	if a := c.String("allowlist"); a != "" {
		return filepath.Dir(a)
	}
	return ""
}

// orEmpty is ns, or an empty list for none: JSON [] rather than null, so
// that jq's .[] takes it.
func orEmpty(ns []supernodes.Node) []supernodes.Node {
	if ns == nil {
		return []supernodes.Node{}
	}
	return ns
}

func planJSON(p *supernodes.Plan) map[string]any {
	fps := func(ws []supernodes.Want) []map[string]string {
		out := []map[string]string{}
		for _, w := range ws {
			out = append(out, map[string]string{"fingerprint": w.Key.Fingerprint(), "file": w.File})
		}
		return out
	}
	v := map[string]any{"register": fps(p.Register), "burned": fps(p.Burned), "unregister": orEmpty(p.Unregister),
		"present": orEmpty(p.Present), "extra": orEmpty(p.Extra)}
	if p.Scoped {
		v["scoped"] = true
	}
	return v
}

func rotateCommand() *cli.Command {
	return &cli.Command{
		Name:  "rotate",
		Usage: "give SuperNode N a new key pair and register it, keeping the old one until the node has the new",
		Description: "Writes DIR/PREFIX_N.new and PREFIX_N.new.pub beside the old pair (never over a\n" +
			"file), adds the new key to the allowlist CSV in DIR if there is one, registers it,\n" +
			"and prints the two steps left: give the node its new pair, then put the new files\n" +
			"in place and unregister the old key (nodekeys apply --prune does it).\n\n" +
			"   nodekeys rotate 3 --superlink superlink.example:9093 --root-certificates certificates/ca.crt",
		ArgsUsage: "N",
		Flags: append(controlFlags(),
			&cli.StringFlag{Name: "dir", Value: keyset.DefaultDir, Usage: "the key folder"},
			&cli.StringFlag{Name: "prefix", Value: keyset.DefaultPrefix, Usage: "the key files' prefix (default: supernode_credentials if DIR holds only such files, as init writes)"},
			&cli.BoolFlag{Name: "no-register", Usage: "write the new pair only (a SuperLink of Flower 1.22 or older)"}),
		Action: rotateAction,
	}
}

func rotateAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageErr("rotate takes the node's number N")
	}
	n, err := strconv.Atoi(c.Args().First())
	if err != nil || n < 1 {
		return usageErr("N must be a node number, got %q", c.Args().First())
	}
	dir := c.String("dir")
	prefix := prefixIn(c, dir)
	if prefix != filepath.Base(prefix) {
		return usageErr("--prefix must be a plain file name")
	}
	oldName := prefix + "_" + strconv.Itoa(n)
	old, err := keys.ReadPublicKey(filepath.Join(dir, oldName+".pub"))
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(c)
	defer cancel()
	var conn *grpc.ClientConn
	if !c.Bool("no-register") {
		if conn, err = controlConn(c); err != nil {
			return err
		}
		defer conn.Close()
		// Nothing is written for a SuperLink that cannot be reached.
		if err := control.Reach(ctx, conn); err != nil {
			return err
		}
	}
	d, err := atomicfile.OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Lock(time.Minute, nil); err != nil {
		return err
	}
	pair, err := keys.Generator{}.Pair(0)
	if err != nil {
		return err
	}
	newName := oldName + ".new"
	b := &atomicfile.Batch{Dir: d}
	if err := b.Add(newName, pair.PrivateFile, 0o600); err != nil {
		b.Abort()
		return withHint(err, "a rotation is under way: finish it, or remove "+filepath.Join(dir, newName)+"*")
	}
	if err := b.Add(newName+".pub", pair.PublicFile, 0o644); err != nil {
		b.Abort()
		return err
	}
	if err := b.Commit(); err != nil {
		return err
	}
	out := c.App.Writer
	fmt.Fprintf(out, "wrote %s (0600) and .pub: %s\n", filepath.Join(dir, newName), pair.Public.Fingerprint())
	csvPath := filepath.Join(dir, keyset.DefaultCSV)
	if l, err := csvlist.ReadFile(csvPath); err == nil {
		if err := d.Write(keyset.DefaultCSV, csvlist.Marshal(append(l.Keys(), pair.Public)), 0o644, true); err != nil {
			return err
		}
		fmt.Fprintf(out, "added it to %s (the old key stays until step 2)\n", csvPath)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if conn != nil {
		id, err := supernodes.NewClient(conn).Register(ctx, pair.Public.PEM())
		if err != nil {
			return withHint(fmt.Errorf("registering the new key: %w", err), "the new pair is written; register it with: "+registerAgain(c, filepath.Join(dir, newName+".pub")))
		}
		fmt.Fprintf(out, "registered the new key as node %d\n", id)
	}
	fmt.Fprintf(out, "\nleft to do:\n")
	fmt.Fprintf(out, "  1. give node %d its new pair (%s) and restart it with it\n", n, filepath.Join(dir, newName))
	fmt.Fprintf(out, "  2. mv %s %s && mv %s.pub %s.pub\n", filepath.Join(dir, newName), filepath.Join(dir, oldName), filepath.Join(dir, newName), filepath.Join(dir, oldName))
	fmt.Fprintf(out, "     nodekeys csv remove %s %s\n", csvPath, old.Fingerprint())
	fmt.Fprintf(out, "     nodekeys apply --prune --dir %s ...   (unregisters the old key %s)\n", dir, old.Fingerprint())
	return nil
}

// registerAgain is the register command that finishes an interrupted
// rotation: the same SuperLink and credentials as this run's flags.
func registerAgain(c *cli.Context, pub string) string {
	args := []string{"nodekeys", "register", "--superlink", c.String("superlink")}
	if ca := c.String("root-certificates"); ca != "" {
		args = append(args, "--root-certificates", ca)
	}
	if c.Bool("insecure") {
		args = append(args, "--insecure")
	}
	for _, f := range []string{"token-file", "login-file"} {
		if v := c.String(f); v != "" {
			args = append(args, "--"+f, v)
		}
	}
	args = append(args, pub)
	return shellJoin(args)
}

// shellJoin is args as a POSIX shell command line, each word quoted when
// it needs to be.
func shellJoin(args []string) string {
	args = append([]string(nil), args...)
	for i, a := range args {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return !safeShell(r) }) {
			args[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(args, " ")
}

// safeShell reports whether r needs no quoting in a POSIX shell word.
func safeShell(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@+,%", r)
}
