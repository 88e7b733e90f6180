// Package tokens is static bearer tokens for machines (CI pipelines,
// services) on a gateway's Control API, and, where configured, its Fleet
// API: the token file, the lookup, and the client credentials that send a
// token or fetch one from an OAuth 2.0 provider.
//
// A token is "nkt_" and 43 base64url characters (256 random bits), shown
// once when made. The token file keeps only its SHA-256, a name and a role,
// one per line:
//
//	# nodekeys tokens: sha256 of the token, name, role, made
//	sha256:5b1f...e9 ci-pipeline member 2026-11-23T19:40:00Z
//
// A presented token is hashed and compared with every entry in constant
// time, so neither a token nor its hash leaks through timing, and a stolen
// token file grants nothing.
package tokens

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/internal/safefile"
)

// Prefix starts every token, so that secret scanners and the gateway can
// tell one from an OAuth access token.
const Prefix = "nkt_"

// MaxFileSize bounds a token file.
const MaxFileSize = 4 << 20

const header = "# nodekeys tokens: sha256 of the token, name, role, made. The tokens themselves are not kept.\n"

// Entry is one line of a token file.
type Entry struct {
	Hash [sha256.Size]byte
	Name string
	Role string
	Made time.Time
}

// Fingerprint is the start of the entry's hash, for logs and listings: it
// names the entry without revealing anything usable.
func (e *Entry) Fingerprint() string { return "sha256:" + hex.EncodeToString(e.Hash[:6]) }

// Generate returns a new random token.
func Generate() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Hash returns a token's SHA-256.
func Hash(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// Parse reads a token file's content; errors name the file (name) and
// line, never the line's content.
func Parse(name string, b []byte) ([]Entry, error) {
	var out []Entry
	seen := map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(what string) error { return fmt.Errorf("tokens: %s:%d: %s", name, i+1, what) }
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, bad("want 4 fields: sha256:HASH NAME ROLE TIME")
		}
		h, ok := strings.CutPrefix(f[0], "sha256:")
		raw, err := hex.DecodeString(h)
		if !ok || err != nil || len(raw) != sha256.Size {
			return nil, bad("the first field is not sha256: and 64 hex digits")
		}
		if !authz.ValidName(f[1]) || !authz.ValidName(f[2]) {
			return nil, bad("a name or role with characters other than letters, digits and ._@-")
		}
		if seen[f[1]] {
			return nil, bad(fmt.Sprintf("the name %q is used twice", f[1]))
		}
		seen[f[1]] = true
		made, err := time.Parse(time.RFC3339, f[3])
		if err != nil {
			return nil, bad("the time is not RFC 3339")
		}
		e := Entry{Name: f[1], Role: f[2], Made: made}
		copy(e.Hash[:], raw)
		out = append(out, e)
	}
	return out, nil
}

// ReadFile reads the token file at path.
func ReadFile(path string) ([]Entry, error) {
	b, err := safefile.ReadRegular(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return Parse(path, b)
}

// Format returns the content of a token file holding entries.
func Format(entries []Entry) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	for _, e := range entries {
		fmt.Fprintf(&b, "sha256:%x %s %s %s\n", e.Hash, e.Name, e.Role, e.Made.UTC().Format(time.RFC3339))
	}
	return b.Bytes()
}

// edit changes the token file at path under a lock on its folder, and
// replaces it whole (0600), so that a reader sees the old file or the new,
// never half of one. A missing file is an empty one.
func edit(path string, change func([]Entry) ([]Entry, error)) error {
	dir, err := atomicfile.OpenFolder(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	defer dir.Close()
	if err := dir.Lock(10*time.Second, nil); err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	var entries []Entry
	if dir.Exists(filepath.Base(path)) {
		if entries, err = ReadFile(path); err != nil {
			return err
		}
	}
	if entries, err = change(entries); err != nil {
		return err
	}
	if err := dir.Write(filepath.Base(path), Format(entries), 0o600, true); err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	return nil
}

// New makes a token for name with role, adds its hash to the token file at
// path (made if missing), and returns the token: the only time it exists
// outside the caller. A name already in the file is refused.
func New(path, name, role string) (string, *Entry, error) {
	if !authz.ValidName(name) || !authz.ValidName(role) {
		return "", nil, errors.New("tokens: a name and role are 1 to 64 letters, digits and ._@-, starting with a letter or digit")
	}
	tok, err := Generate()
	if err != nil {
		return "", nil, err
	}
	e := Entry{Hash: Hash(tok), Name: name, Role: role, Made: time.Now().UTC().Truncate(time.Second)}
	err = edit(path, func(entries []Entry) ([]Entry, error) {
		for _, x := range entries {
			if x.Name == name {
				return nil, fmt.Errorf("tokens: %s already has a token named %q; revoke it first or pick another name", path, name)
			}
		}
		return append(entries, e), nil
	})
	if err != nil {
		return "", nil, err
	}
	return tok, &e, nil
}

// ErrNoSuchToken is returned by Revoke for a name the file lacks.
var ErrNoSuchToken = errors.New("no token of that name")

// Revoke removes the token named name from the file at path. A gateway
// refuses it from its next reload (SIGHUP, or the file's change seen
// within its reload interval).
func Revoke(path, name string) (*Entry, error) {
	var gone *Entry
	err := edit(path, func(entries []Entry) ([]Entry, error) {
		for i, x := range entries {
			if x.Name == name {
				gone = &x
				return append(entries[:i], entries[i+1:]...), nil
			}
		}
		return nil, fmt.Errorf("tokens: %s: %w %q", path, ErrNoSuchToken, name)
	})
	return gone, err
}

// Set is the tokens in force. The zero Set accepts nothing.
type Set struct {
	entries []Entry
}

// NewSet returns a Set of entries.
func NewSet(entries []Entry) *Set { return &Set{entries: append([]Entry(nil), entries...)} }

// Len returns the number of tokens.
func (s *Set) Len() int { return len(s.entries) }

// minus returns the entries of s that o lacks.
func (s *Set) minus(o *Set) []Entry {
	have := make(map[[sha256.Size]byte]bool, len(o.entries))
	for _, e := range o.entries {
		have[e.Hash] = true
	}
	var out []Entry
	for _, e := range s.entries {
		if !have[e.Hash] {
			out = append(out, e)
		}
	}
	return out
}

// Lookup returns the entry of token, or nil. Every entry is compared, in
// constant time, whatever matches.
func (s *Set) Lookup(token string) *Entry {
	if s == nil || !strings.HasPrefix(token, Prefix) {
		return nil
	}
	h := Hash(token)
	found := -1
	for i := range s.entries {
		eq := subtle.ConstantTimeCompare(h[:], s.entries[i].Hash[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil
	}
	e := s.entries[found]
	return &e
}
