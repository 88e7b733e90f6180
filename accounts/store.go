package accounts

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/internal/safefile"
)

// MaxFileSize bounds an account file.
const MaxFileSize = 4 << 20

// Account is a person who signs in with a name and password.
type Account struct {
	// Name is what the person types at the sign-in page; unique in the
	// file, among accounts and clients.
	Name string `json:"name"`
	// ID is the account's subject (sub) in its tokens: random, made when
	// the account is added, so that an account removed and added again
	// under the same name owns none of the old account's runs.
	ID    string   `json:"id"`
	Roles []string `json:"roles"`
	Email string   `json:"email,omitempty"`
	// Password is the argon2id hash, in the PHC string format.
	Password string `json:"password"`
	// TOTP is the base32 secret of the one-time codes, when enabled.
	TOTP     string `json:"totp,omitempty"`
	Disabled bool   `json:"disabled,omitempty"`
	// Generation changes with each password change, disabling and TOTP
	// change: a login made under another generation is refused at its
	// next refresh.
	Generation int       `json:"generation"`
	Made       time.Time `json:"made"`
}

// Client is a service that fetches tokens with the client-credentials
// grant: its client_id is its name, and its tokens' subject too.
type Client struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// SecretHash is the SHA-256 of its secret, 256 random bits (so a fast
	// hash is as strong as a slow one, and costs a caller nothing to make
	// the gateway compute).
	SecretHash string    `json:"secret_sha256"`
	Disabled   bool      `json:"disabled,omitempty"`
	Made       time.Time `json:"made"`
}

// File is the content of an account file.
type File struct {
	Accounts []Account `json:"accounts"`
	Clients  []Client  `json:"clients"`
}

// Account returns the account named name, or nil.
func (f *File) Account(name string) *Account {
	for i := range f.Accounts {
		if f.Accounts[i].Name == name {
			return &f.Accounts[i]
		}
	}
	return nil
}

// AccountByID returns the account whose ID is id, or nil.
func (f *File) AccountByID(id string) *Account {
	for i := range f.Accounts {
		if f.Accounts[i].ID == id {
			return &f.Accounts[i]
		}
	}
	return nil
}

// Client returns the client named name, or nil.
func (f *File) Client(name string) *Client {
	for i := range f.Clients {
		if f.Clients[i].Name == name {
			return &f.Clients[i]
		}
	}
	return nil
}

var errName = errors.New("accounts: a name and role are 1 to 64 letters, digits and ._@-, starting with a letter or digit")

// Parse reads an account file's content; errors name the file.
func Parse(name string, b []byte) (*File, error) {
	f := &File{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(f); err != nil {
		return nil, fmt.Errorf("accounts: %s: %v", name, err)
	}
	seen := map[string]bool{}
	for i, a := range f.Accounts {
		switch {
		case !authz.ValidName(a.Name) || seen[a.Name]:
			return nil, fmt.Errorf("accounts: %s: account %d: the name is not valid or used twice", name, i+1)
		case a.ID == "" || len(a.Roles) == 0:
			return nil, fmt.Errorf("accounts: %s: account %q has no id or no role", name, a.Name)
		}
		if _, err := parseHash(a.Password); err != nil && a.Password != "" {
			return nil, fmt.Errorf("accounts: %s: account %q: %v", name, a.Name, err)
		}
		seen[a.Name] = true
	}
	for i, c := range f.Clients {
		if !authz.ValidName(c.Name) || seen[c.Name] || len(c.SecretHash) != 64 {
			return nil, fmt.Errorf("accounts: %s: client %d: the name is not valid or used twice, or the secret hash is not 64 hex digits", name, i+1)
		}
		seen[c.Name] = true
	}
	return f, nil
}

// ReadFile reads the account file at path.
func ReadFile(path string) (*File, error) {
	b, err := safefile.ReadRegular(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return Parse(path, b)
}

// Edit changes the account file at path under a lock on its folder, and
// replaces it whole (0600), so that a reader (the gateway) sees the old
// file or the new, never half of one. A missing file is an empty one.
func Edit(path string, change func(*File) error) error {
	dir, err := atomicfile.OpenFolder(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	defer dir.Close()
	if err := dir.Lock(10*time.Second, nil); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	f := &File{}
	if dir.Exists(filepath.Base(path)) {
		if f, err = ReadFile(path); err != nil {
			return err
		}
	}
	if err := change(f); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := dir.Write(filepath.Base(path), append(b, '\n'), 0o600, true); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	return nil
}

// Errors of the file's edits.
var (
	ErrExists   = errors.New("the name is taken")
	ErrNotFound = errors.New("no account or client of that name")
)

func randomID(prefix string, n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Add adds an account with password (hashed with p) to the file at path.
func Add(path, name string, roles []string, email, password string, p Params) (*Account, error) {
	if !authz.ValidName(name) || len(roles) == 0 || !allValid(roles) {
		return nil, errName
	}
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	hash, err := p.Hash(password)
	if err != nil {
		return nil, err
	}
	a := Account{Name: name, ID: randomID("u-", 12), Roles: roles, Email: email, Password: hash, Generation: 1,
		Made: time.Now().UTC().Truncate(time.Second)}
	err = Edit(path, func(f *File) error {
		if f.Account(name) != nil || f.Client(name) != nil {
			return fmt.Errorf("accounts: %s: %w: %q", path, ErrExists, name)
		}
		f.Accounts = append(f.Accounts, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

func allValid(ss []string) bool {
	for _, s := range ss {
		if !authz.ValidName(s) {
			return false
		}
	}
	return true
}

// MinPasswordLength is the shortest password accepted (NIST SP 800-63B's
// minimum for a password chosen by its user).
const MinPasswordLength = 8

func checkPassword(pw string) error {
	if len([]rune(pw)) < MinPasswordLength {
		return fmt.Errorf("accounts: a password needs at least %d characters", MinPasswordLength)
	}
	if len(pw) > 1024 {
		return errors.New("accounts: a password has at most 1024 bytes")
	}
	return nil
}

// Change applies change to the account named name, and moves it to a new
// generation, ending its sessions.
func Change(path, name string, change func(*Account) error) error {
	return Edit(path, func(f *File) error {
		a := f.Account(name)
		if a == nil {
			return fmt.Errorf("accounts: %s: %w: %q", path, ErrNotFound, name)
		}
		if err := change(a); err != nil {
			return err
		}
		a.Generation++
		return nil
	})
}

// SetPassword sets the password of the account named name.
func SetPassword(path, name, password string, p Params) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := p.Hash(password)
	if err != nil {
		return err
	}
	return Change(path, name, func(a *Account) error { a.Password = hash; return nil })
}

// Remove removes the account or client named name.
func Remove(path, name string) error {
	return Edit(path, func(f *File) error {
		n := len(f.Accounts) + len(f.Clients)
		f.Accounts = slices.DeleteFunc(f.Accounts, func(a Account) bool { return a.Name == name })
		f.Clients = slices.DeleteFunc(f.Clients, func(c Client) bool { return c.Name == name })
		if len(f.Accounts)+len(f.Clients) == n {
			return fmt.Errorf("accounts: %s: %w: %q", path, ErrNotFound, name)
		}
		return nil
	})
}

// SetDisabled disables or enables the account or client named name.
func SetDisabled(path, name string, disabled bool) error {
	return Edit(path, func(f *File) error {
		if c := f.Client(name); c != nil {
			c.Disabled = disabled
			return nil
		}
		a := f.Account(name)
		if a == nil {
			return fmt.Errorf("accounts: %s: %w: %q", path, ErrNotFound, name)
		}
		a.Disabled = disabled
		a.Generation++
		return nil
	})
}

// AddClient adds a service client and returns its secret, shown only
// now.
func AddClient(path, name string, roles []string) (string, error) {
	if !authz.ValidName(name) || len(roles) == 0 || !allValid(roles) {
		return "", errName
	}
	secret := randomID("nks_", 32)
	sum := sha256.Sum256([]byte(secret))
	err := Edit(path, func(f *File) error {
		if f.Account(name) != nil || f.Client(name) != nil {
			return fmt.Errorf("accounts: %s: %w: %q", path, ErrExists, name)
		}
		f.Clients = append(f.Clients, Client{Name: name, Roles: roles, SecretHash: hex.EncodeToString(sum[:]),
			Made: time.Now().UTC().Truncate(time.Second)})
		return nil
	})
	return secret, err
}

// secretMatches compares a presented client secret with c's, in constant
// time.
func (c *Client) secretMatches(secret string) bool {
	want, err := hex.DecodeString(c.SecretHash)
	sum := sha256.Sum256([]byte(secret))
	return err == nil && subtle.ConstantTimeCompare(want, sum[:]) == 1
}

// Params are argon2id's cost parameters.
type Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultParams are RFC 9106's second recommended option (section 4):
// argon2id, 3 passes over 64 MiB with 4 lanes, a 16-byte random salt and a
// 32-byte tag. A hash takes about 0.1 s of one core.
var DefaultParams = Params{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// Hash returns the argon2id hash of password in the PHC string format
// ($argon2id$v=19$m=65536,t=3,p=4$SALT$TAG), which records the parameters.
func (p Params) Hash(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	tag := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(tag)), nil
}

type parsedHash struct {
	p         Params
	salt, tag []byte
}

func parseHash(s string) (*parsedHash, error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[1] != "argon2id" || f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, errors.New("the password is not an argon2id hash")
	}
	h := &parsedHash{}
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &h.p.MemoryKiB, &h.p.Time, &h.p.Threads); err != nil {
		return nil, errors.New("the password hash's parameters do not parse")
	}
	if h.p.MemoryKiB > 1<<20 || h.p.Time > 16 || h.p.Time == 0 || h.p.Threads == 0 {
		return nil, errors.New("the password hash's parameters are out of range")
	}
	var err1, err2 error
	h.salt, err1 = base64.RawStdEncoding.DecodeString(f[4])
	h.tag, err2 = base64.RawStdEncoding.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(h.tag) < 16 {
		return nil, errors.New("the password hash does not decode")
	}
	return h, nil
}

// verifyPassword reports whether password matches hash, comparing in
// constant time.
func verifyPassword(hash, password string) bool {
	h, err := parseHash(hash)
	if err != nil {
		return false
	}
	tag := argon2.IDKey([]byte(password), h.salt, h.p.Time, h.p.MemoryKiB, h.p.Threads, uint32(len(h.tag)))
	return subtle.ConstantTimeCompare(tag, h.tag) == 1
}
