package main

import (
	"bufio"
	"bytes"
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
	"github.com/nodekeys/nodekeys/flwr"
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
			"grpcurl -H arguments.\n\n" +
			"Examples:\n" +
			"  nodekeys sign --key keys/client_credentials_1\n" +
			"  nodekeys sign --key keys/client_credentials_1 --format grpcurl",
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
	ts := flwr.FormatTimestamp(time.Now())
	if c.IsSet("timestamp") {
		ts = c.String("timestamp")
		if _, ok := flwr.ParseTimestamp(ts); !ok {
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
		Description: "Reads JSON objects of the form 'nodekeys sign' prints (one, or JSON Lines), or\n" +
			"the grpcurl -H form of 'sign --format grpcurl', and prints one line per input, in\n" +
			"order: 'ok <fingerprint>' or 'rejected <reason>: <detail>'. A bad input is reported\n" +
			"as malformed and the next ones are still checked. Inputs are verified on every core.\n" +
			"Reasons: missing-metadata, malformed, unknown-key, bad-signature, stale-timestamp,\n" +
			"future-timestamp. Exit 0 only when every input was accepted.\n\n" +
			"Example:\n" +
			"  nodekeys sign --key keys/client_credentials_1 | nodekeys verify --allowlist keys/client_public_keys.csv",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "allowlist", Aliases: []string{"a"}, Usage: "allowed keys (client_public_keys.csv)"},
			&cli.BoolFlag{Name: "any-key", Usage: "accept any valid P-384 key, as a SuperLink without an allowlist does"},
			&cli.StringFlag{Name: "now", Usage: "check as if the time were this (ISO 8601 with offset)"},
			&cli.StringFlag{Name: "flower", Usage: "use the timestamp window of this Flower version (1.15.0, 1.19, 1.20, ...)"},
			&cli.DurationFlag{Name: "max-future", Value: flwr.DefaultWindow.Future, Usage: "refuse timestamps this far ahead of now, or further"},
			&cli.DurationFlag{Name: "max-age", Value: flwr.DefaultWindow.Past, Usage: "refuse timestamps this old, or older"},
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
	w := flwr.DefaultWindow
	if c.IsSet("flower") {
		var err error
		if w, err = flwr.WindowOf(c.String("flower")); err != nil {
			if ve, ok := errors.AsType[*flwr.VersionError](err); ok {
				return usageErr("%s", ve.Reason)
			}
			return err
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
		if _, ok := flwr.ParseTimestamp(c.String("now")); !ok {
			return usageErr("--now %q is not an ISO 8601 time with a UTC offset", c.String("now"))
		}
	}
	v := verify.New(list, opts...)
	now := time.Now
	if c.IsSet("now") {
		t, _ := flwr.ParseTimestamp(c.String("now"))
		now = func() time.Time { return t }
	}

	out := bufio.NewWriter(c.App.Writer)
	defer out.Flush()
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
	// Inputs are verified in batches on every core; results keep the
	// input's order.
	var batch []verifyInput
	flush := func() error {
		var hs []sign.Headers
		for _, in := range batch {
			if in.err == nil {
				hs = append(hs, in.h)
			}
		}
		results := v.VerifyBatch(hs, now(), 0)
		j := 0
		for _, in := range batch {
			var res verifyResultJSON
			if in.err != nil {
				res = verifyResultJSON{Reason: string(verify.Malformed), Detail: in.err.Error()}
			} else {
				r := results[j]
				j++
				var ve *verify.Error
				switch {
				case r.Err == nil:
					res = verifyResultJSON{OK: true, Fingerprint: r.Key.Fingerprint()}
				case errors.As(r.Err, &ve):
					res = verifyResultJSON{Reason: string(ve.Reason), Detail: ve.Detail}
				default:
					res = verifyResultJSON{Reason: string(verify.Malformed), Detail: r.Err.Error()}
				}
			}
			if err := report(res); err != nil {
				return err
			}
		}
		batch = batch[:0]
		return nil
	}
	err := readInputs(c.App.Reader, func(in verifyInput) error {
		n++
		if in.err != nil {
			in.err = fmt.Errorf("input %d (line %d): %w", n, in.line, in.err)
		}
		batch = append(batch, in)
		if len(batch) == verifyBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
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

// verifyBatch is how many inputs are verified at once.
const verifyBatch = 1024

// verifyInput is one input of verify: headers, or why they could not be
// read, and the line it started on.
type verifyInput struct {
	h    sign.Headers
	err  error
	line int
}

// readInputs reads verify's input and calls fn for each: JSON objects one
// a line (JSON Lines), or spread over lines as sign prints them, or the
// grpcurl -H form. A bad input is reported and reading goes on at the next
// line that starts one. Each input is at most maxHeaderJSON bytes.
func readInputs(r io.Reader, fn func(verifyInput) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var acc []byte
	start, lineNo := 0, 0
	emitAcc := func() error {
		if len(bytes.TrimSpace(acc)) == 0 {
			acc = acc[:0]
			return nil
		}
		h, err := parseHeadersJSON(acc)
		acc = acc[:0]
		return fn(verifyInput{h: h, err: err, line: start})
	}
	for {
		line, err := readLine(br)
		if len(line) > 0 || err == nil || errors.Is(err, errValueTooLarge) {
			lineNo++
			trimmed := bytes.TrimSpace(line)
			switch {
			case errors.Is(err, errValueTooLarge):
				if e := emitAcc(); e != nil {
					return e
				}
				if e := fn(verifyInput{err: fmt.Errorf("larger than %d KiB", maxHeaderJSON>>10), line: lineNo}); e != nil {
					return e
				}
				if err = skipLine(br); err == nil {
					continue
				}
			case bytes.HasPrefix(trimmed, []byte("-H")):
				if e := emitAcc(); e != nil {
					return e
				}
				h, perr := parseGrpcurl(string(trimmed))
				if e := fn(verifyInput{h: h, err: perr, line: lineNo}); e != nil {
					return e
				}
			case len(trimmed) == 0 && len(acc) == 0:
			default:
				// A line that starts an object ends the one before it.
				if len(line) > 0 && line[0] == '{' && len(bytes.TrimSpace(acc)) > 0 {
					if e := emitAcc(); e != nil {
						return e
					}
				}
				if len(bytes.TrimSpace(acc)) == 0 {
					start = lineNo
				}
				acc = append(acc, line...)
				acc = append(acc, '\n')
				if len(acc) > maxHeaderJSON {
					acc = acc[:0]
					if e := fn(verifyInput{err: fmt.Errorf("larger than %d KiB", maxHeaderJSON>>10), line: start}); e != nil {
						return e
					}
				} else if json.Valid(acc) {
					if e := emitAcc(); e != nil {
						return e
					}
				}
			}
		}
		if err == io.EOF {
			return emitAcc()
		}
		if err != nil && !errors.Is(err, errValueTooLarge) {
			return err
		}
	}
}

// readLine reads one line without its newline, at most maxHeaderJSON bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxHeaderJSON {
			return nil, errValueTooLarge
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")), err
	}
}

// skipLine drops the rest of an over-long line.
func skipLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			return err
		}
	}
}

var headerNames = []string{sign.HeaderPublicKey, sign.HeaderTimestamp, sign.HeaderSignature}

// parseHeadersJSON reads one JSON object of flwr-* headers strictly: each
// name exactly as gRPC sends it (lower case) and at most once. Other names
// are ignored.
func parseHeadersJSON(b []byte) (sign.Headers, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return sign.Headers{}, errors.New("not a JSON object of flwr-* headers")
	}
	vals := map[string]string{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return sign.Headers{}, errors.New("not a JSON object of flwr-* headers")
		}
		name, _ := t.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return sign.Headers{}, errors.New("not a JSON object of flwr-* headers")
		}
		for _, want := range headerNames {
			if !strings.EqualFold(name, want) {
				continue
			}
			if name != want {
				return sign.Headers{}, fmt.Errorf("%q: metadata names are lower case (%s)", name, want)
			}
			if _, dup := vals[name]; dup {
				return sign.Headers{}, fmt.Errorf("%s appears twice", name)
			}
			s, ok := v.(string)
			if !ok {
				return sign.Headers{}, fmt.Errorf("%s is not a string", name)
			}
			vals[name] = s
		}
	}
	if _, err := dec.Token(); err != nil {
		return sign.Headers{}, errors.New("not a JSON object of flwr-* headers")
	}
	if dec.More() {
		return sign.Headers{}, errors.New("more than one JSON value on the input")
	}
	return fromWire(wireHeaders{PublicKey: vals[sign.HeaderPublicKey], Timestamp: vals[sign.HeaderTimestamp], Signature: vals[sign.HeaderSignature]})
}

// parseGrpcurl reads the -H 'name: value' arguments sign --format grpcurl
// prints.
func parseGrpcurl(line string) (sign.Headers, error) {
	vals := map[string]string{}
	rest := strings.TrimSpace(line)
	for rest != "" {
		after, ok := strings.CutPrefix(rest, "-H")
		if !ok {
			return sign.Headers{}, errors.New("not grpcurl -H 'name: value' arguments")
		}
		after = strings.TrimLeft(after, " ")
		var arg string
		if q := after[:min(1, len(after))]; q == "'" || q == `"` {
			end := strings.Index(after[1:], q)
			if end < 0 {
				return sign.Headers{}, errors.New("an unclosed quote in the -H arguments")
			}
			arg, rest = after[1:1+end], strings.TrimSpace(after[2+end:])
		} else {
			arg, rest, _ = strings.Cut(after, " ")
			rest = strings.TrimSpace(rest)
		}
		name, value, ok := strings.Cut(arg, ":")
		if !ok {
			return sign.Headers{}, fmt.Errorf("-H %q is not 'name: value'", arg)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		for _, want := range headerNames {
			if strings.EqualFold(name, want) {
				if _, dup := vals[want]; dup {
					return sign.Headers{}, fmt.Errorf("%s appears twice", want)
				}
				vals[want] = value
			}
		}
	}
	return fromWire(wireHeaders{PublicKey: vals[sign.HeaderPublicKey], Timestamp: vals[sign.HeaderTimestamp], Signature: vals[sign.HeaderSignature]})
}

var errValueTooLarge = errors.New("JSON value too large")

// warnReadable warns, as ssh does, when others can read a private key.
func warnReadable(w io.Writer, path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o044 != 0 {
		fmt.Fprintf(w, "nodekeys: warning: %s: others can read this private key (mode %04o); chmod 600 it\n", path, fi.Mode().Perm())
	}
}
