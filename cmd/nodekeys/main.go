// Command nodekeys makes and checks the keys, certificates and node
// authentication of Flower federations. Run `nodekeys --help` for the
// commands; each only parses flags, calls a library package and prints.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1 // an error, a rejected input or a problem found
	exitUsage    = 2 // bad flags or arguments
	exitInternal = 3
	// exitInterrupted is the shell's code for a command ended by SIGINT
	// (128 + 2): the work was stopped and cleaned up, not failed.
	exitInterrupted = 130
)

// version is set at build time with -ldflags "-X main.version=..."; a
// binary from `go install ...@vX.Y.Z` reports the module version.
var version = "dev"

// versionString is the version set at build time, else the module's.
func versionString() string {
	if bi, ok := debug.ReadBuildInfo(); ok && version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// cliError is an error with an exit code and an optional hint line.
type cliError struct {
	err  error
	code int
	hint string
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

// usageErr reports bad flags or arguments (exit 2).
func usageErr(format string, args ...any) error {
	return &cliError{err: fmt.Errorf(format, args...), code: exitUsage}
}

// withHint adds a "hint:" line under the error.
func withHint(err error, hint string) error {
	return &cliError{err: err, code: exitFailure, hint: hint}
}

// silentFailure makes the exit code 1 without printing an error: the
// command has already said what failed.
var silentFailure = &cliError{err: errors.New(""), code: exitFailure}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "nodekeys",
		Usage: "keys, certificates and node authentication for Flower federations",
		Description: "nodekeys writes the SuperNode key pairs, allowlist CSV and development TLS\n" +
			"certificates that Flower's SuperLink and SuperNodes use, and signs and verifies\n" +
			"Flower's signed-timestamp node authentication.\n\n" +
			"Exit codes: 0 success, 1 failure or rejected input, 2 bad usage.",
		Version:              versionString(),
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		OnUsageError:         onUsageError,
		ExitErrHandler:       func(*cli.Context, error) {},
		Commands: []*cli.Command{
			initCommand(),
			keygenCommand(),
			csvCommand(),
			certgenCommand(),
			inspectCommand(),
			signCommand(),
			verifyCommand(),
			benchCommand(),
			fixturesCommand(),
			exportCommand(),
			doctorCommand(),
			gatewayCommand(),
			loginCommand(),
			registerCommand(),
			nodesCommand(),
			applyCommand(),
			rotateCommand(),
			tokenCommand(),
			accountCommand(),
			stateCommand(),
			versionCommand(),
			completionCommand(),
		},
	}
	app.Action = func(c *cli.Context) error { return dispatchUnknown(c, app.Commands, true) }
	setUsageErrors(app.Commands)
	return app
}

// dispatchUnknown is the action of the app and of each command that has
// subcommands: no argument shows the help; "help TOPIC" shows a command's
// help; anything else is an unknown command, a usage error (exit 2).
func dispatchUnknown(c *cli.Context, cmds []*cli.Command, root bool) error {
	args := c.Args().Slice()
	if len(args) == 0 {
		// The help, and a failure: a script that ran nodekeys without a
		// command did not do what it meant.
		if err := cli.ShowSubcommandHelp(c); err != nil {
			return err
		}
		return &cliError{err: errors.New(""), code: exitUsage}
	}
	if args[0] == "help" && root {
		if len(args) == 1 {
			return cli.ShowAppHelp(c)
		}
		for _, cmd := range cmds {
			if cmd.HasName(args[1]) {
				return cli.ShowCommandHelp(c, args[1])
			}
		}
		return usageErr("no command %q", args[1])
	}
	return usageErr("unknown command %q", args[0])
}

// onUsageError turns a flag error into exit code 2 with a one-line message
// and a hint, instead of the whole help text.
func onUsageError(_ *cli.Context, err error, _ bool) error {
	return &cliError{err: err, code: exitUsage}
}

func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		if len(c.Subcommands) > 0 && c.Action == nil {
			subs := c.Subcommands
			c.Action = func(ctx *cli.Context) error { return dispatchUnknown(ctx, subs, false) }
		}
		setUsageErrors(c.Subcommands)
	}
}

// run runs the command line args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	setCompletion(app, args)
	err := app.Run(flagsFirst(app.Commands, args))
	if err == nil {
		return exitOK
	}
	code, hint := exitFailure, ""
	var ce *cliError
	if errors.As(err, &ce) {
		code, hint = ce.code, ce.hint
		if ce == silentFailure || ce.err.Error() == "" {
			return code
		}
	} else if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		code = exitInterrupted
	} else if strings.HasPrefix(err.Error(), "flag provided but not defined") ||
		strings.HasPrefix(err.Error(), "invalid value") ||
		strings.Contains(err.Error(), "Required flag") {
		code = exitUsage
	}
	fmt.Fprintf(stderr, "nodekeys: error: %s\n", oneLine(err.Error()))
	if hint != "" {
		fmt.Fprintf(stderr, "hint: %s\n", hint)
	} else if code == exitUsage {
		fmt.Fprintf(stderr, "hint: run 'nodekeys %s--help'\n", commandPath(app.Commands, args[1:]))
	}
	return code
}

// flagsFirst moves the flags that follow a command's arguments before
// them: urfave/cli stops reading flags at the first argument, so
// `csv check FILE --json` would take --json for a file. A flag that takes
// a value keeps the word after it; "--" ends the flags. Shell completion
// (a last argument --generate-bash-completion) is left as it is.
func flagsFirst(cmds []*cli.Command, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		return args
	}
	out := []string{args[0]}
	var cmd *cli.Command
	i := 1
	for ; i < len(args); i++ {
		next := findCommand(cmds, args[i])
		if next == nil {
			break
		}
		cmd, cmds = next, next.Subcommands
		out = append(out, args[i])
	}
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		tv := true
		if d, ok := f.(cli.DocGenerationFlag); ok {
			tv = d.TakesValue()
		}
		for _, n := range f.Names() {
			takesValue[n] = tv
		}
	}
	var flags, rest []string
	for j := i; j < len(args); j++ {
		a := args[j]
		switch {
		case a == "--":
			rest = append(rest, args[j:]...)
			j = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			flags = append(flags, a)
			if name := strings.TrimLeft(a, "-"); !strings.Contains(name, "=") && takesValue[name] && j+1 < len(args) {
				flags = append(flags, args[j+1])
				j++
			}
		default:
			rest = append(rest, a)
		}
	}
	return append(append(out, flags...), rest...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// setCompletion makes shell completion (the word being completed, then
// --generate-bash-completion, as the scripts of 'nodekeys completion'
// send it) offer a command's flags when the word starts with '-' or the
// command has no subcommands, else its subcommands. It reads args, not
// os.Args as urfave/cli's own completion does.
func setCompletion(app *cli.App, args []string) {
	word := ""
	if n := len(args); n > 2 && args[n-1] == "--generate-bash-completion" {
		word = args[n-2]
	}
	suggest := func(w io.Writer, subs []*cli.Command, flags []cli.Flag) {
		if strings.HasPrefix(word, "-") || len(subs) == 0 {
			for _, f := range flags {
				for _, n := range f.Names() {
					if len(n) > 1 && n != "help" {
						fmt.Fprintln(w, "--"+n)
					}
				}
			}
			fmt.Fprintln(w, "--help")
			return
		}
		for _, c := range subs {
			if !c.Hidden && c.Name != "help" {
				fmt.Fprintln(w, c.Name)
			}
		}
	}
	app.BashComplete = func(c *cli.Context) { suggest(c.App.Writer, app.Commands, nil) }
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, cmd := range cmds {
			cmd.BashComplete = func(c *cli.Context) { suggest(c.App.Writer, cmd.Subcommands, cmd.Flags) }
			walk(cmd.Subcommands)
		}
	}
	walk(app.Commands)
}

// commandPath returns "csv check " for "nodekeys csv check --bad x": the
// leading arguments that name commands, for the hint.
func commandPath(cmds []*cli.Command, args []string) string {
	for _, c := range cmds {
		if len(args) > 0 && c.HasName(args[0]) {
			return c.Name + " " + commandPath(c.Subcommands, args[1:])
		}
	}
	return ""
}

// oneLine keeps an error to one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	b, err := marshalIndent(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// marshalIndent is v as indented JSON with a final newline.
func marshalIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return append(b, '\n'), err
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:        "version",
		Usage:       "print the nodekeys version",
		Description: "Example:\n  nodekeys version",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "nodekeys %s\n", versionString())
			return nil
		},
	}
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:        "completion",
		Usage:       "print a shell completion script (bash, zsh or fish)",
		ArgsUsage:   "SHELL",
		Description: "Example:\n  source <(nodekeys completion bash)",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				fmt.Fprint(c.App.Writer, s)
			default:
				return usageErr("completion: name a shell: bash, zsh or fish")
			}
			return nil
		},
	}
}

const bashCompletion = `# nodekeys bash completion: source <(nodekeys completion bash)
_nodekeys_complete() {
  local opts
  opts=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  COMPREPLY=($(compgen -W "${opts}" -- "${COMP_WORDS[COMP_CWORD]}"))
  return 0
}
complete -o default -F _nodekeys_complete nodekeys
`

const zshCompletion = `#compdef nodekeys
# nodekeys zsh completion: source <(nodekeys completion zsh)
_nodekeys() {
  local -a opts
  opts=("${(@f)$(${words[1]} ${words[@]:1:$CURRENT-1} --generate-bash-completion 2>/dev/null)}")
  _describe 'values' opts
}
compdef _nodekeys nodekeys
`
