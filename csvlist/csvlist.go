// Package csvlist reads and writes Flower's allowlist of SuperNode public
// keys, client_public_keys.csv.
//
// A CSV-era SuperLink (Flower 1.9 to 1.22, --auth-list-public-keys) reads the
// file with Python's csv.reader and takes every element of every row as one
// OpenSSH public key line, "TYPE BASE64 [COMMENT]": rows and columns both
// work. Flower's generate_auth_keys.sh writes one line, the keys joined by
// ",", ending in "\n"; Write does the same.
//
// Read is lenient where that loses nothing (a UTF-8 BOM, CRLF line ends,
// spaces around elements, a trailing comma) but reports each such place as a
// Warning, because Flower's SuperLink fails on a BOM, a trailing comma and a
// space after a comma. Keys on P-256 and P-521 are accepted with a warning:
// Flower accepts any NIST-curve EC key, and its SuperNodes make P-384.
package csvlist

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/nodekeys/nodekeys/internal/parallel"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/keys"
)

// Size limits for an allowlist file. A million P-384 keys take 170 MB.
const (
	MaxFileSize    = 512 << 20
	MaxElementSize = 8 << 10
	// MaxProblems is how many errors Parse reports; a file of garbage has
	// one per element.
	MaxProblems = 100
)

// Entry is one key of an allowlist and where it was read.
type Entry struct {
	Key          *keys.PublicKey
	Line, Column int
}

// Problem is something wrong with a place in an allowlist file. Its Error
// reads "FILE:LINE:COLUMN: what is wrong".
type Problem struct {
	File         string
	Line, Column int
	Err          error
	// BreaksFlower marks a warning about input that Read accepts but a
	// CSV-era Flower SuperLink fails on.
	BreaksFlower bool
}

// Error returns "FILE:LINE:COLUMN: what is wrong".
func (p *Problem) Error() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %v", p.File, p.Err)
	}
	return fmt.Sprintf("%s:%d:%d: %v", p.File, p.Line, p.Column, p.Err)
}

// Unwrap returns what is wrong, for errors.Is.
func (p *Problem) Unwrap() error { return p.Err }

// Problems is every error found in a file, in file order. Its Error names
// the first and counts the rest.
type Problems []*Problem

// Error names the first problem and counts the others.
func (ps Problems) Error() string {
	if len(ps) == 1 {
		return ps[0].Error()
	}
	return fmt.Sprintf("%s (and %d more problems)", ps[0].Error(), len(ps)-1)
}

// Unwrap gives errors.Is and errors.As every problem.
func (ps Problems) Unwrap() []error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errs
}

// Errors that Problems wrap, besides the keys package's parse errors.
var (
	ErrEmpty     = errors.New("empty element")
	ErrDuplicate = errors.New("duplicate key")
	ErrTooLarge  = errors.New("too large")
	// ErrTrailingComma is wrapped by the warning about a trailing comma,
	// which Flower's SuperLink fails on, and which is how a file cut
	// short, or read while being written, can end.
	ErrTrailingComma = errors.New("trailing comma")
)

// List is a parsed allowlist.
type List struct {
	// File is the name the list was read under, for messages.
	File    string
	Entries []Entry
	// Warnings are places a CSV-era Flower SuperLink would refuse or that
	// deserve a look, though Read accepted them.
	Warnings []*Problem
}

// ErrNotText is wrapped by the one problem of a file that is not text.
var ErrNotText = errors.New("not a text file")

// notText returns the offset of the first NUL byte or invalid UTF-8 in b
// and what it is, or -1.
func notText(b []byte) (int, string) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		if j := invalidUTF8(b[:i]); j >= 0 {
			return j, "invalid UTF-8"
		}
		return i, "a NUL byte"
	}
	if j := invalidUTF8(b); j >= 0 {
		return j, "invalid UTF-8"
	}
	return -1, ""
}

func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// ReadFile reads and parses the allowlist at path. A folder, FIFO or
// device is refused, and at most MaxFileSize bytes are read.
func ReadFile(path string) (*List, error) {
	data, err := safefile.ReadRegular(path, MaxFileSize)
	if errors.Is(err, safefile.ErrTooLarge) {
		return &List{File: path}, Problems{{File: path, Err: fmt.Errorf("%w: larger than %d MiB", ErrTooLarge, MaxFileSize>>20)}}
	}
	if err != nil {
		return nil, err // it names the file
	}
	return Parse(path, data)
}

// Parse parses allowlist data read from the file named name. On errors it
// returns the list of the good keys with a Problems error.
func Parse(name string, data []byte) (*List, error) {
	l := &List{File: name}
	if len(data) > MaxFileSize {
		return l, Problems{{File: name, Err: fmt.Errorf("%w: larger than %d MiB", ErrTooLarge, MaxFileSize>>20)}}
	}
	var errs Problems
	fail := func(line, col int, err error) {
		if len(errs) < MaxProblems {
			errs = append(errs, &Problem{File: name, Line: line, Column: col, Err: err})
		}
	}
	warn := func(line, col int, breaks bool, format string, args ...any) {
		if len(l.Warnings) >= MaxProblems {
			return
		}
		l.Warnings = append(l.Warnings, &Problem{File: name, Line: line, Column: col, Err: fmt.Errorf(format, args...), BreaksFlower: breaks})
	}
	if rest, ok := bytes.CutPrefix(data, []byte("\xef\xbb\xbf")); ok {
		warn(1, 1, true, "UTF-8 byte order mark: Flower's SuperLink fails on it")
		data = rest
	}
	// A binary file gets one line, not one per garbage field echoing bytes.
	if at, what := notText(data); at >= 0 {
		line := 1 + bytes.Count(data[:at], []byte("\n"))
		col := at - bytes.LastIndexByte(data[:at], '\n')
		return l, Problems{{File: name, Line: line, Column: col, Err: fmt.Errorf("%w: %s; an allowlist is text", ErrNotText, what)}}
	}
	// The CSV structure is read in order; the keys of each batch of
	// elements are parsed on all cores; duplicates are found in order. A
	// file past MaxProblems errors is not read further.
	type element struct {
		text      string
		line, col int
		key       *keys.PublicKey
		err       error
	}
	const batch = 8192
	els := make([]element, 0, batch)
	seen := make(map[string]Entry)
	flush := func() {
		parallel.For(len(els), 2048, func(i int) {
			els[i].key, els[i].err = keys.ParsePublicKey([]byte(els[i].text))
		})
		for _, el := range els {
			line, col, k := el.line, el.col, el.key
			if el.err != nil {
				fail(line, col, &keyError{pe: el.err})
				continue
			}
			if first, dup := seen[string(k.Wire())]; dup {
				fail(line, col, fmt.Errorf("%w %s (first at line %d column %d)", ErrDuplicate, k.Fingerprint(), first.Line, first.Column))
				continue
			}
			if c := k.Curve(); c != "P-384" {
				warn(line, col, false, "%s key: Flower accepts it, but its SuperNodes make P-384 keys", c)
			}
			e := Entry{Key: k, Line: line, Column: col}
			seen[string(k.Wire())] = e
			l.Entries = append(l.Entries, e)
		}
		els = els[:0]
	}
	scanFields(data, func(f field) bool {
		line, col := f.line, f.col
		trimmed := bytes.TrimSpace(f.text)
		switch {
		case len(trimmed) == 0 && f.last && f.index > 0:
			warn(line, col, true, "%w: Flower's SuperLink fails on it", ErrTrailingComma)
		case len(trimmed) == 0:
			fail(line, col, ErrEmpty)
		case len(f.text) > MaxElementSize:
			fail(line, col, fmt.Errorf("%w: element longer than %d bytes", ErrTooLarge, MaxElementSize))
		default:
			if lead := len(f.text) - len(bytes.TrimLeft(f.text, " \t")); lead > 0 {
				warn(line, col, true, "white space before the key: Flower's SuperLink fails on it")
				col += lead
			}
			els = append(els, element{text: string(trimmed), line: line, col: col})
		}
		if len(els) >= batch {
			flush()
		}
		return len(errs) < MaxProblems
	})
	flush()
	sort.SliceStable(errs, func(i, j int) bool {
		return errs[i].Line < errs[j].Line || errs[i].Line == errs[j].Line && errs[i].Column < errs[j].Column
	})
	sort.SliceStable(l.Warnings, func(i, j int) bool {
		a, b := l.Warnings[i], l.Warnings[j]
		return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
	})
	if len(errs) >= MaxProblems {
		errs = append(errs, &Problem{File: name, Err: fmt.Errorf("too many problems: stopped after %d", MaxProblems)})
	}
	if errs != nil {
		return l, errs
	}
	return l, nil
}

// keyError shows a key's parse error without the "keys: " prefix, since a
// Problem names the file, and keeps it for errors.Is.
type keyError struct{ pe error }

func (e *keyError) Error() string {
	var pe *keys.ParseError
	if errors.As(e.pe, &pe) {
		return pe.Reason()
	}
	return e.pe.Error()
}

func (e *keyError) Unwrap() error { return e.pe }

// Marshal returns the keys in the form of Flower's generate_auth_keys.sh:
// one line, each key as "TYPE BASE64" (with its comment, if it has one that
// is safe in a CSV element), joined by ",", ending in "\n".
func Marshal(ks []*keys.PublicKey) []byte {
	var b bytes.Buffer
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k.AuthorizedKey())
		if c := k.Comment; c != "" && !strings.ContainsAny(c, ",\"\r\n") {
			b.WriteByte(' ')
			b.WriteString(c)
		}
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// Keys returns the list's keys in file order.
func (l *List) Keys() []*keys.PublicKey {
	ks := make([]*keys.PublicKey, len(l.Entries))
	for i, e := range l.Entries {
		ks[i] = e.Key
	}
	return ks
}

// Index returns the position in the list of key k, or -1.
func (l *List) Index(k *keys.PublicKey) int {
	for i, e := range l.Entries {
		if e.Key.Equal(k) {
			return i
		}
	}
	return -1
}

// IndexFingerprint returns the position of the key with fingerprint fp
// ("SHA256:..."), or -1.
func (l *List) IndexFingerprint(fp string) int {
	for i, e := range l.Entries {
		if e.Key.Fingerprint() == fp {
			return i
		}
	}
	return -1
}
