package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// maxHeaderJSON bounds one JSON object on verify's input.
const maxHeaderJSON = 64 << 10

// wireHeaders is the JSON form of the three metadata values: the -bin
// values in base64, as gRPC text metadata carries them.
type wireHeaders struct {
	PublicKey string `json:"flwr-public-key-bin"`
	Timestamp string `json:"flwr-timestamp"`
	Signature string `json:"flwr-signature-bin"`
}

func toWire(h sign.Headers) wireHeaders {
	return wireHeaders{
		PublicKey: base64.StdEncoding.EncodeToString(h.PublicKey),
		Timestamp: h.Timestamp,
		Signature: base64.StdEncoding.EncodeToString(h.Signature),
	}
}

// fromWire decodes the -bin values; gRPC accepts padded and unpadded base64.
func fromWire(w wireHeaders) (sign.Headers, error) {
	dec := func(name, s string) ([]byte, error) {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if b, err2 := base64.RawStdEncoding.DecodeString(s); err2 == nil {
				return b, nil
			}
			return nil, fmt.Errorf("%s is not base64", name)
		}
		return b, nil
	}
	pk, err := dec(sign.HeaderPublicKey, w.PublicKey)
	if err != nil {
		return sign.Headers{}, err
	}
	sig, err := dec(sign.HeaderSignature, w.Signature)
	if err != nil {
		return sign.Headers{}, err
	}
	return sign.Headers{PublicKey: pk, Timestamp: w.Timestamp, Signature: sig}, nil
}

func signCommand() *cli.Command {
	return &cli.Command{
		Name:  "sign",
		Usage: "print the authentication metadata a SuperNode sends, signed with its key",
		Description: "Prints flwr-public-key-bin, flwr-timestamp and flwr-signature-bin exactly as a\n" +
			"Flower SuperNode sends them: as a JSON object (the -bin values in base64), or as\n" +
			"grpcurl -H arguments.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Aliases: []string{"k"}, Required: true, Usage: "SuperNode private key (OpenSSH or PEM)"},
			&cli.StringFlag{Name: "timestamp", Usage: "sign this time (Python isoformat, e.g. 2026-11-22T17:45:03+00:00) instead of now"},
			&cli.StringFlag{Name: "format", Value: "json", Usage: "json or grpcurl"},
		},
		Action: signAction,
	}
}

func signAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("sign takes no arguments, got %q", c.Args().First())
	}
	format := c.String("format")
	if format != "json" && format != "grpcurl" {
		return usageErr("--format must be json or grpcurl, got %q", format)
	}
	s, err := sign.ReadKey(c.String("key"))
	if err != nil {
		return err
	}
	warnReadable(c.App.ErrWriter, c.String("key"))
	ts := sign.FormatTimestamp(time.Now())
	if c.IsSet("timestamp") {
		ts = c.String("timestamp")
		if _, ok := verify.ParseTimestamp(ts); !ok {
			return usageErr("--timestamp %q is not an ISO 8601 time with a UTC offset, like 2026-11-22T17:45:03.123456+00:00", ts)
		}
	}
	h, err := s.SignTimestamp(ts)
	if err != nil {
		return err
	}
	w := toWire(h)
	if format == "grpcurl" {
		fmt.Fprintf(c.App.Writer, "-H '%s: %s' -H '%s: %s' -H '%s: %s'\n",
			sign.HeaderPublicKey, w.PublicKey, sign.HeaderTimestamp, w.Timestamp, sign.HeaderSignature, w.Signature)
		return nil
	}
	return printJSON(c.App.Writer, w)
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check authentication metadata (JSON on stdin) as a SuperLink does",
		Description: "Reads one JSON object, or JSON Lines, of the form 'nodekeys sign' prints, and\n" +
			"prints one line per input: 'ok <fingerprint>' or 'rejected <reason>: <detail>'.\n" +
			"Reasons: missing-metadata, malformed, unknown-key, bad-signature, stale-timestamp,\n" +
			"future-timestamp. Exit 0 only when every input was accepted.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "allowlist", Aliases: []string{"a"}, Usage: "allowed keys (client_public_keys.csv)"},
			&cli.BoolFlag{Name: "any-key", Usage: "accept any valid P-384 key, as a SuperLink without an allowlist does"},
			&cli.StringFlag{Name: "now", Usage: "check as if the time were this (ISO 8601 with offset)"},
			&cli.StringFlag{Name: "flower", Usage: "use the timestamp window of this Flower version (1.15.0, 1.19, 1.20, ...)"},
			&cli.DurationFlag{Name: "max-future", Value: verify.DefaultWindow.Future, Usage: "refuse timestamps this far ahead of now, or further"},
			&cli.DurationFlag{Name: "max-age", Value: verify.DefaultWindow.Past, Usage: "refuse timestamps this old, or older"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON object per input"},
		},
		Action: verifyAction,
	}
}

type verifyResultJSON struct {
	OK          bool   `json:"ok"`
	Reason      string `json:"reason,omitempty"`
	Detail      string `json:"detail,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

func verifyAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("verify reads stdin and takes no arguments, got %q", c.Args().First())
	}
	var opts []verify.Option
	var list *verify.Allowlist
	switch {
	case c.Bool("any-key") && c.IsSet("allowlist"):
		return usageErr("--any-key and --allowlist do not go together")
	case c.Bool("any-key"):
		opts = append(opts, verify.AnyKey())
	case c.IsSet("allowlist"):
		l, err := csvlist.ReadFile(c.String("allowlist"))
		if err != nil {
			return withHint(err, "run 'nodekeys csv check "+c.String("allowlist")+"' to see every problem")
		}
		if list, err = verify.NewAllowlist(l.Keys()); err != nil {
			return err
		}
	default:
		return usageErr("name the allowed keys with --allowlist CSV, or accept any P-384 key with --any-key")
	}
	w := verify.DefaultWindow
	if c.IsSet("flower") {
		var err error
		if w, err = verify.FlowerWindow(c.String("flower")); err != nil {
			return usageErr("%v", strings.TrimPrefix(err.Error(), "verify: "))
		}
	}
	if c.IsSet("max-future") {
		w.Future = c.Duration("max-future")
	}
	if c.IsSet("max-age") {
		w.Past = c.Duration("max-age")
	}
	if w.Future < 0 || w.Past <= 0 {
		return usageErr("--max-future must not be negative and --max-age must be positive")
	}
	opts = append(opts, verify.WithWindow(w))
	if c.IsSet("now") {
		now, ok := verify.ParseTimestamp(c.String("now"))
		if !ok {
			return usageErr("--now %q is not an ISO 8601 time with a UTC offset", c.String("now"))
		}
		opts = append(opts, verify.WithClock(func() time.Time { return now }))
	}
	v := verify.New(list, opts...)

	out := bufio.NewWriter(c.App.Writer)
	defer out.Flush()
	lim := &perValueLimit{r: bufio.NewReader(c.App.Reader)}
	dec := json.NewDecoder(lim)
	all, n := true, 0
	report := func(res verifyResultJSON) error {
		all = all && res.OK
		if c.Bool("json") {
			b, _ := json.Marshal(res)
			_, err := fmt.Fprintf(out, "%s\n", b)
			return err
		}
		if res.OK {
			_, err := fmt.Fprintf(out, "ok %s\n", res.Fingerprint)
			return err
		}
		_, err := fmt.Fprintf(out, "rejected %s: %s\n", res.Reason, res.Detail)
		return err
	}
	for {
		lim.n = 0
		var w wireHeaders
		err := dec.Decode(&w)
		if err == io.EOF {
			break
		}
		n++
		if err != nil {
			detail := fmt.Sprintf("input %d is not a JSON object of flwr-* headers", n)
			if errors.Is(err, errValueTooLarge) {
				detail = fmt.Sprintf("input %d is larger than %d KiB", n, maxHeaderJSON>>10)
			}
			if rerr := report(verifyResultJSON{Reason: string(verify.Malformed), Detail: detail}); rerr != nil {
				return rerr
			}
			break // the stream cannot be resynchronised
		}
		h, err := fromWire(w)
		if err != nil {
			if err := report(verifyResultJSON{Reason: string(verify.Malformed), Detail: err.Error()}); err != nil {
				return err
			}
			continue
		}
		k, err := v.Verify(h)
		var ve *verify.Error
		switch {
		case err == nil:
			err = report(verifyResultJSON{OK: true, Fingerprint: k.Fingerprint()})
		case errors.As(err, &ve):
			err = report(verifyResultJSON{Reason: string(ve.Reason), Detail: ve.Detail})
		}
		if err != nil {
			return err
		}
	}
	if n == 0 {
		out.Flush()
		return fmt.Errorf("no input: give verify a JSON object of flwr-* headers on stdin")
	}
	if !all {
		return silentFailure
	}
	return nil
}

var errValueTooLarge = errors.New("JSON value too large")

// perValueLimit fails a read once n bytes have gone by since it was reset,
// so one huge JSON value cannot take all memory.
type perValueLimit struct {
	r io.Reader
	n int
}

func (l *perValueLimit) Read(p []byte) (int, error) {
	if l.n >= maxHeaderJSON {
		return 0, errValueTooLarge
	}
	if len(p) > maxHeaderJSON-l.n {
		p = p[:maxHeaderJSON-l.n]
	}
	m, err := l.r.Read(p)
	l.n += m
	return m, err
}

// warnReadable warns, as ssh does, when others can read a private key.
func warnReadable(w io.Writer, path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o044 != 0 {
		fmt.Fprintf(w, "nodekeys: warning: %s: others can read this private key (mode %04o); chmod 600 it\n", path, fi.Mode().Perm())
	}
}
