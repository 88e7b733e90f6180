package certs

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nodekeys/nodekeys/internal/atomicfile"
)

// File names in the output folder, those of generate_cert.sh.
const (
	DefaultDir     = "certificates"
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server.key"
)

// Options say what Write makes. Zero values take the defaults.
type Options struct {
	Dir string
	// Hosts are the server certificate's SANs. Empty means the SANs of
	// the server certificate being replaced (renewal keeps its names), or
	// DefaultHosts when there is none.
	Hosts []string
	// AddHosts are SANs added to Hosts (or to what empty Hosts means); a
	// name already there is not added twice.
	AddHosts []string
	Days     int
	CADays   int
	KeyType  KeyType
	// CACert and CAKey name an existing CA to issue with; its certificate
	// is copied into Dir, its key never is.
	CACert, CAKey string
	// NewCA makes a new CA even if Dir holds one (with Force to replace it).
	NewCA bool
	// Force replaces the server files; with NewCA, the CA files too.
	Force bool
	// Now is the issue time (default time.Now()).
	Now time.Time
	// NewKey, if set, makes the key for role "ca" or "server" instead of
	// GenerateKey(KeyType): fixtures derive them from a seed.
	NewKey func(role string) (crypto.Signer, error)
}

// Result says what Write wrote.
type Result struct {
	Dir               string    `json:"dir"`
	CACert            string    `json:"ca_cert"`
	CAKey             string    `json:"ca_key,omitempty"`
	ServerCert        string    `json:"server_cert"`
	ServerKey         string    `json:"server_key"`
	CACreated         bool      `json:"ca_created"`
	CAFingerprint     string    `json:"ca_sha256"`
	CANotAfter        time.Time `json:"ca_not_after"`
	ServerFingerprint string    `json:"server_sha256"`
	ServerNotAfter    time.Time `json:"server_not_after"`
	Hosts             []string  `json:"sans"`
	// KeptHosts are the SANs taken from the server certificate that was
	// replaced (empty Hosts); KeptFrom names it. Both are empty otherwise.
	KeptHosts []string `json:"kept_sans,omitempty"`
	KeptFrom  string   `json:"kept_from,omitempty"`
	KeyType   KeyType  `json:"key_type"`
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func refuse(p string, why Conflict) error {
	return &ExistError{Path: p, Why: why}
}

// Conflict says why Write will not replace a file.
type Conflict int

// The conflicts of an ExistError.
const (
	// ServerExists: the server certificate or key is there; renewing it
	// needs Force (the CA is kept).
	ServerExists Conflict = iota
	// OtherCA: the folder holds another CA than CACert; another Dir, or
	// Force.
	OtherCA
	// CAExists: NewCA, and a CA is there; replacing it needs Force too
	// (every SuperNode must then get the new CA certificate).
	CAExists
)

// Errors of contradictory Options.
var (
	ErrCAPair      = errors.New("certs: CACert and CAKey go together")
	ErrNewCAWithCA = errors.New("certs: NewCA and CACert do not go together")
)

// HalfCAError is a folder that holds one of the CA's certificate and key
// but not the other: Write neither reuses nor replaces it without NewCA
// and Force.
type HalfCAError struct {
	Have, Missing string
}

func (e *HalfCAError) Error() string {
	return fmt.Sprintf("certs: %s is there but %s is not", e.Have, e.Missing)
}

// ExistError is a file that Write will not replace without Force.
type ExistError struct {
	Path string
	Why  Conflict
}

// Error says which file is in the way.
func (e *ExistError) Error() string { return "refusing to overwrite " + e.Path }

// Unwrap makes errors.Is(err, fs.ErrExist) true.
func (e *ExistError) Unwrap() error { return fs.ErrExist }

// Write makes (or reuses) the CA and issues a server certificate into
// opts.Dir. It checks everything before it writes anything.
func Write(opts Options) (*Result, error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	var kept []string
	if len(opts.Hosts) == 0 && opts.Force {
		kept = ExistingHosts(filepath.Join(opts.Dir, ServerCertFile))
		opts.Hosts = kept
	}
	if len(opts.Hosts) == 0 {
		opts.Hosts = DefaultHosts
	}
	if opts.Days == 0 {
		opts.Days = DefaultServerDays
	}
	if opts.CADays == 0 {
		opts.CADays = DefaultCADays
	}
	if opts.KeyType == "" {
		opts.KeyType = ECDSAP384
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Days < 1 || opts.Days > MaxServerDays {
		return nil, fmt.Errorf("certs: Days must be 1 to %d (the longest validity browsers accept for a server certificate), got %d", MaxServerDays, opts.Days)
	}
	if opts.CADays < 1 || opts.CADays > MaxCADays {
		return nil, fmt.Errorf("certs: CA validity must be 1 to %d days, got %d", MaxCADays, opts.CADays)
	}
	if (opts.CACert == "") != (opts.CAKey == "") {
		return nil, ErrCAPair
	}
	if opts.CACert != "" && opts.NewCA {
		return nil, ErrNewCAWithCA
	}
	hosts, err := MergeSANs(opts.Hosts, opts.AddHosts)
	if err != nil {
		return nil, err
	}
	switch opts.KeyType {
	case ECDSAP384, ECDSAP256, RSA4096:
	default:
		return nil, fmt.Errorf("certs: unknown key type %q (ecdsa-p384, ecdsa-p256 or rsa-4096)", opts.KeyType)
	}

	p := func(name string) string { return filepath.Join(opts.Dir, name) }
	res := &Result{
		Dir: opts.Dir, CACert: p(CACertFile), CAKey: p(CAKeyFile),
		ServerCert: p(ServerCertFile), ServerKey: p(ServerKeyFile), Hosts: hosts, KeyType: opts.KeyType,
	}
	if len(kept) > 0 {
		res.KeptHosts, res.KeptFrom = kept, res.ServerCert
	}
	for _, f := range []string{res.ServerCert, res.ServerKey} {
		if exists(f) && !opts.Force {
			return nil, refuse(f, ServerExists)
		}
	}

	var ca *CA
	copyCA := false
	switch {
	case opts.CACert != "":
		if ca, err = ReadCA(opts.CACert, opts.CAKey); err != nil {
			return nil, err
		}
		res.CAKey = ""
		if b, err := readFile(res.CACert); err == nil {
			if !bytes.Equal(b, MarshalCertificate(ca.Cert)) && !opts.Force {
				return nil, refuse(res.CACert, OtherCA)
			}
		}
		copyCA = true
	case opts.NewCA:
		for _, f := range []string{res.CACert, res.CAKey} {
			if exists(f) && !opts.Force {
				return nil, refuse(f, CAExists)
			}
		}
	case exists(res.CACert) && exists(res.CAKey):
		if ca, err = ReadCA(res.CACert, res.CAKey); err != nil {
			return nil, err
		}
		res.CAKey = ""
	case exists(res.CACert):
		return nil, &HalfCAError{Have: res.CACert, Missing: res.CAKey}
	case exists(res.CAKey):
		return nil, &HalfCAError{Have: res.CAKey, Missing: res.CACert}
	}

	if err := atomicfile.MkdirPrivate(opts.Dir); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	// Every file goes in through one open descriptor of the folder, which
	// refuses a symbolic link and a folder others can write to.
	dir, err := atomicfile.OpenDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	defer dir.Close()
	newKey := opts.NewKey
	if newKey == nil {
		newKey = func(string) (crypto.Signer, error) { return GenerateKey(opts.KeyType) }
	}
	if ca == nil {
		key, err := newKey("ca")
		if err != nil {
			return nil, err
		}
		if ca, err = NewCA(key, opts.CADays, opts.Now); err != nil {
			return nil, err
		}
		if err := writePair(dir, CAKeyFile, CACertFile, key, ca.Cert, opts.Force); err != nil {
			return nil, err
		}
		res.CACreated = true
	} else if copyCA {
		if err := dir.Write(CACertFile, MarshalCertificate(ca.Cert), 0o644, true); err != nil {
			return nil, fmt.Errorf("certs: %w", err)
		}
	}

	key, err := newKey("server")
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(key.Public(), hosts, opts.Days, opts.Now)
	if err != nil {
		return nil, err
	}
	if err := writePair(dir, ServerKeyFile, ServerCertFile, key, cert, opts.Force); err != nil {
		return nil, err
	}
	res.CAFingerprint = SHA256Fingerprint(ca.Cert)
	res.CANotAfter = ca.Cert.NotAfter
	res.ServerFingerprint = SHA256Fingerprint(cert)
	res.ServerNotAfter = cert.NotAfter
	return res, nil
}

// ExistingHosts returns the SANs (DNS names, then IP addresses) of the
// certificate at path, or nil if there is no readable certificate there.
func ExistingHosts(path string) []string {
	b, err := readFile(path)
	if err != nil {
		return nil
	}
	cert, err := ParseCertificate(b)
	if err != nil {
		return nil
	}
	hosts := append([]string{}, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return hosts
}

// writePair writes a key (0600) and its certificate (0644); both land after
// one sync, so a crash leaves the old pair or the new one.
func writePair(dir *atomicfile.Dir, keyName, certName string, key crypto.Signer, cert *x509.Certificate, force bool) error {
	keyPEM, err := MarshalKey(key)
	if err != nil {
		return err
	}
	b := &atomicfile.Batch{Dir: dir, Overwrite: force}
	if err := b.Add(keyName, keyPEM, 0o600); err != nil {
		b.Abort()
		return fmt.Errorf("certs: %w", err)
	}
	if err := b.Add(certName, MarshalCertificate(cert), 0o644); err != nil {
		b.Abort()
		return fmt.Errorf("certs: %w", err)
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}
