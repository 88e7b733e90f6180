package control

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/internal/safefile"
)

// Format is the layout of a login file.
type Format int

// The login files ReadLogin reads.
const (
	// Nodekeys is nodekeys login's JSON: {"access_token", "refresh_token"}.
	Nodekeys Format = iota
	// FlwrProject is the flwr CLI's token file up to Flower 1.25:
	// PROJECT/.flwr/.credentials/FEDERATION.json, JSON with the keys
	// flwr-oidc-access-token and flwr-oidc-refresh-token.
	FlwrProject
	// FlwrHome is the flwr CLI's credential store from Flower 1.26:
	// $FLWR_HOME/credentials.yaml (FLWR_HOME defaults to ~/.flwr), a YAML
	// map whose keys are flower.account-auth.HOST:PORT.oidc-access-token
	// and ...oidc-refresh-token, the values base64.
	FlwrHome
)

// The names of the flwr CLI's stores.
const (
	FlwrCredentialsYAML = "credentials.yaml"
	FlwrCredentialsDir  = ".flwr/.credentials"
)

// maxLoginFile bounds a login file (a credential store holds the logins
// of every connection).
const maxLoginFile = 1 << 20

// LoginFile is a login file as ReadLogin found it, and the tokens in it.
type LoginFile struct {
	Path   string
	Format Format
	// Host is the HOST:PORT whose entry of a FlwrHome store is used.
	Host   string
	Tokens Tokens
}

// flwrKey is the key of a token in the flwr CLI's credential store
// (flwr/cli/constant.py, 1.26 and later).
func flwrKey(host, token string) string { return "flower.account-auth." + host + "." + token }

// ReadLogin reads the tokens of an account login for the Control API at
// address. path is one of
//
//   - a file nodekeys login wrote;
//   - a flwr CLI token file of Flower 1.25 or older,
//     PROJECT/.flwr/.credentials/FEDERATION.json;
//   - the flwr CLI's credential store of Flower 1.26 or later,
//     $FLWR_HOME/credentials.yaml, whose entry for address is used (the
//     address as the flwr CLI's connection names it);
//   - a folder: FLWR_HOME (holding credentials.yaml), or a Flower project
//     whose .flwr/.credentials holds one federation's file.
//
// An error says where it looked.
func ReadLogin(path, address string) (*LoginFile, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return readLoginDir(path, address)
	}
	b, err := safefile.ReadRegular(path, maxLoginFile)
	if err != nil {
		return nil, err
	}
	return parseLogin(path, address, b)
}

func readLoginDir(dir, address string) (*LoginFile, error) {
	store := filepath.Join(dir, FlwrCredentialsYAML)
	if _, err := os.Stat(store); err == nil {
		return ReadLogin(store, address)
	}
	creds := filepath.Join(dir, filepath.FromSlash(FlwrCredentialsDir))
	names, _ := filepath.Glob(filepath.Join(creds, "*.json"))
	switch len(names) {
	case 1:
		return ReadLogin(names[0], address)
	case 0:
		return nil, fmt.Errorf("%s holds no login: looked for %s (flwr 1.26 and later) and %s (flwr 1.25 and earlier)",
			dir, store, filepath.Join(creds, "FEDERATION.json"))
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return nil, fmt.Errorf("%s holds the logins of several federations (%s): name the file of one", creds, strings.Join(names, ", "))
}

func parseLogin(path, address string, b []byte) (*LoginFile, error) {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err == nil {
			if a, _ := m["access_token"].(string); a != "" {
				r, _ := m["refresh_token"].(string)
				return &LoginFile{Path: path, Format: Nodekeys, Tokens: Tokens{Access: a, Refresh: r}}, nil
			}
			if a, _ := m[HeaderAccessToken].(string); a != "" {
				r, _ := m[HeaderRefreshToken].(string)
				return &LoginFile{Path: path, Format: FlwrProject, Tokens: Tokens{Access: a, Refresh: r}}, nil
			}
		}
		return nil, fmt.Errorf("%s: not a login file with an access_token", path)
	}
	var m map[string]string
	if err := yaml.Unmarshal(b, &m); err != nil || !hasFlwrKey(m) {
		return nil, fmt.Errorf("%s: not a login file: neither nodekeys login's JSON, a flwr token file (.flwr/.credentials/NAME.json) nor the flwr CLI's %s", path, FlwrCredentialsYAML)
	}
	key := flwrKey(address, "oidc-access-token")
	a, err := flwrValue(m, key)
	if err != nil || a == "" {
		if err == nil {
			err = fmt.Errorf("no key %s", key)
		}
		return nil, fmt.Errorf("%s holds no flwr login for %s (%v); it holds logins for: %s", path, address, err, strings.Join(flwrHosts(m), ", "))
	}
	r, err := flwrValue(m, flwrKey(address, "oidc-refresh-token"))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &LoginFile{Path: path, Format: FlwrHome, Host: address, Tokens: Tokens{Access: a, Refresh: r}}, nil
}

func hasFlwrKey(m map[string]string) bool {
	for k := range m {
		if strings.HasPrefix(k, "flower.account-auth.") {
			return true
		}
	}
	return false
}

// flwrHosts are the hosts a credential store holds access tokens for.
func flwrHosts(m map[string]string) []string {
	var out []string
	for k := range m {
		if h, ok := strings.CutPrefix(k, "flower.account-auth."); ok {
			if h, ok := strings.CutSuffix(h, ".oidc-access-token"); ok {
				out = append(out, h)
			}
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

func flwrValue(m map[string]string, key string) (string, error) {
	v, ok := m[key]
	if !ok {
		return "", nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(v)
	if err != nil {
		return "", fmt.Errorf("%s is not base64", key)
	}
	return string(b), nil
}

// writeMu keeps the rewrites of one process in order.
var writeMu sync.Mutex

// Write replaces the tokens in the file, in its own format, keeping what
// else it holds (the flwr CLI's other logins and keys); mode 0600.
func (f *LoginFile) Write(t *Tokens) error {
	writeMu.Lock()
	defer writeMu.Unlock()
	switch f.Format {
	case Nodekeys:
		return WriteFile(f.Path, t)
	case FlwrProject:
		m := map[string]any{}
		if b, err := safefile.ReadRegular(f.Path, maxLoginFile); err == nil {
			json.Unmarshal(b, &m)
		}
		if _, ok := m["authn-type"]; !ok {
			m["authn-type"] = "oidc"
		}
		m[HeaderAccessToken], m[HeaderRefreshToken] = t.Access, t.Refresh
		b, err := json.MarshalIndent(m, "", "    ")
		if err != nil {
			return err
		}
		return atomicfile.Write(f.Path, b, 0o600, true)
	case FlwrHome:
		m := map[string]string{}
		if b, err := safefile.ReadRegular(f.Path, maxLoginFile); err == nil {
			yaml.Unmarshal(b, &m)
		}
		m[flwrKey(f.Host, "oidc-access-token")] = base64.StdEncoding.EncodeToString([]byte(t.Access))
		m[flwrKey(f.Host, "oidc-refresh-token")] = base64.StdEncoding.EncodeToString([]byte(t.Refresh))
		b, err := yaml.Marshal(m)
		if err != nil {
			return err
		}
		return atomicfile.Write(f.Path, b, 0o600, true)
	}
	return errors.New("control: unknown login file format")
}

// WriteFile writes nodekeys login's token file atomically, mode 0600, in a
// folder made 0700 if it is new.
func WriteFile(path string, t *Tokens) error {
	if err := atomicfile.MkdirPrivate(filepath.Dir(path)); err != nil {
		return err
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600, true)
}

// DefaultFile is where nodekeys login keeps tokens:
// $XDG_CONFIG_HOME/nodekeys/login.json, or ~/.config/nodekeys/login.json.
func DefaultFile() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "nodekeys", "login.json")
}
