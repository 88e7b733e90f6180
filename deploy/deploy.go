// Package deploy turns a federation's files (the certificates of certgen
// and the key pairs of keygen) into what Flower's deployments read:
// Kubernetes Secrets and Helm values for Flower's charts, with an optional
// cert-manager Issuer backed by the development CA, and the secrets of
// Flower's Docker Compose files.
package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
)

// Node is one SuperNode's key pair.
type Node struct {
	// Index is N of PREFIX_N; Name is the file name, PREFIX_N.
	Index int
	Name  string
	// PrivateKey is the OpenSSH private key file, as written.
	PrivateKey []byte
	// PublicKey is "ecdsa-sha2-nistp384 BASE64", the form of a CSV
	// allowlist element and of the .pub file without its comment.
	PublicKey   string
	Fingerprint string
}

// Federation is what a deployment needs of a federation's files.
type Federation struct {
	CACert, CAKey          []byte // CAKey only for a cert-manager Issuer
	ServerCert, ServerKey  []byte
	Hosts                  []string // the server certificate's SANs
	Nodes                  []Node
	certsDir, keysDir, pre string
}

// CertFileError is a file of the certificate folder that cannot be read.
type CertFileError struct {
	Path string
	Err  error
}

// Error names the file first: "certificates/ca.crt: no such file or
// directory".
func (e *CertFileError) Error() string {
	var pe *fs.PathError
	if errors.As(e.Err, &pe) && pe.Path == e.Path {
		return e.Path + ": " + pe.Err.Error()
	}
	return e.Err.Error() // safefile's other errors name the file already
}

func (e *CertFileError) Unwrap() error { return e.Err }

// Load reads the certificates in certsDir and the PREFIX_N pairs in
// keysDir, checking that each private key parses and matches its .pub.
// withCAKey also reads the CA's key, for an Issuer.
func Load(certsDir, keysDir, prefix string, withCAKey bool) (*Federation, error) {
	f := &Federation{certsDir: certsDir, keysDir: keysDir, pre: prefix}
	read := func(name string, dst *[]byte) error {
		p := filepath.Join(certsDir, name)
		b, err := safefile.ReadRegular(p, 1<<20)
		*dst = b
		if err != nil {
			return &CertFileError{Path: p, Err: err}
		}
		return nil
	}
	// In order: the first missing file is named, the same each run.
	for _, file := range []struct {
		name string
		dst  *[]byte
	}{{certs.CACertFile, &f.CACert}, {certs.ServerCertFile, &f.ServerCert}, {certs.ServerKeyFile, &f.ServerKey}} {
		if err := read(file.name, file.dst); err != nil {
			return nil, err
		}
	}
	if withCAKey {
		if err := read(certs.CAKeyFile, &f.CAKey); err != nil {
			return nil, fmt.Errorf("the CA key, for the Issuer: %w", err)
		}
	}
	cert, err := certs.ParseCertificate(f.ServerCert)
	if err != nil {
		return nil, fmt.Errorf("deploy: %s: %w", filepath.Join(certsDir, certs.ServerCertFile), err)
	}
	f.Hosts = append(f.Hosts, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		f.Hosts = append(f.Hosts, ip.String())
	}
	if prefix == "" {
		prefix = keyset.DefaultPrefix
	}
	idx, err := keyset.Existing(keysDir, prefix)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	for _, i := range idx {
		name := prefix + "_" + strconv.Itoa(i)
		path := filepath.Join(keysDir, name)
		priv, err := keys.ReadPrivateKey(path)
		if err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
		pub, err := keys.ReadPublicKey(path + ".pub")
		if err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
		if !priv.PublicKey.Equal(pub.Key) {
			return nil, fmt.Errorf("deploy: %s does not match %s.pub", path, path)
		}
		b, err := safefile.ReadRegular(path, keys.MaxKeyFileSize)
		if err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
		f.Nodes = append(f.Nodes, Node{Index: i, Name: name, PrivateKey: b, PublicKey: pub.AuthorizedKey(), Fingerprint: pub.Fingerprint()})
	}
	sort.Slice(f.Nodes, func(a, b int) bool { return f.Nodes[a].Index < f.Nodes[b].Index })
	return f, nil
}

// HasHost says whether the server certificate names host.
func (f *Federation) HasHost(host string) bool {
	return slices.Contains(f.Hosts, host)
}

// Registration says whether Flower version v ("1.27.0", "1.22") admits
// SuperNodes by registration (1.23 and later) rather than by the CSV
// allowlist. A version that does not parse is an error naming it.
func Registration(v string) (bool, error) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false, fmt.Errorf("deploy: %q is not a Flower version like 1.27.0", v)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || major != 1 || minor < 9 {
		return false, fmt.Errorf("deploy: %q is not a Flower version with node authentication (1.9 and later)", v)
	}
	return minor >= 23, nil
}

// DefaultFlowerVersion is the Flower version the outputs are for unless
// told otherwise.
const DefaultFlowerVersion = "1.27.0"

// dnsLabel makes a Kubernetes object name part: lower case, '-' for '_'.
func dnsLabel(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}
