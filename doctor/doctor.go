// Package doctor finds what operators most often get wrong in a Flower
// federation's files and connections, each finding with the fix: SuperNode
// keys Flower cannot load, a .pub that is not its private key's, a server
// certificate that does not cover the address SuperNodes dial or does not
// chain to the CA, certificates near expiry, loose file modes, a TLS
// handshake that fails, and a clock too far from the SuperLink's.
package doctor

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/keys"
)

// Severity of a finding: an Error breaks the federation, a Warning will.
type Severity string

// The severities.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Finding is one problem, where it is, and what to run or change.
type Finding struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	File     string   `json:"file,omitempty"`
	Problem  string   `json:"problem"`
	Fix      string   `json:"fix"`
}

// ExpiryWarning is how close to its end a certificate is reported.
const ExpiryWarning = 30 * 24 * time.Hour

// Files checks the files and folders given (a folder: its files, one
// level). names are the names and addresses SuperNodes dial the SuperLink
// by; ca, if set, is the CA certificate file (else a CA among the files).
func Files(paths []string, names []string, ca string, now time.Time) []Finding {
	d := &files{now: now, names: names}
	for _, p := range expand(paths) {
		d.read(p)
	}
	if ca != "" {
		if c, err := certs.ReadCertificate(ca); err == nil {
			d.cas = append(d.cas, c)
		} else {
			d.add("ca", Error, ca, fmt.Sprintf("the CA certificate does not load: %v", err), "name the ca.crt that certgen or init wrote")
		}
	}
	d.checkCerts()
	sort.SliceStable(d.out, func(i, j int) bool { return d.out[i].File < d.out[j].File })
	return d.out
}

type certFile struct {
	path string
	cert *x509.Certificate
}

type files struct {
	now     time.Time
	names   []string
	out     []Finding
	cas     []*x509.Certificate
	servers []certFile
	tlsKeys map[string]crypto.PublicKey // path -> public key of a TLS key file
}

func (d *files) add(check string, sev Severity, file, problem, fix string) {
	d.out = append(d.out, Finding{Check: check, Severity: sev, File: file, Problem: problem, Fix: fix})
}

// expand lists the regular files of paths, a folder giving its files.
func expand(paths []string) []string {
	var out []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			out = append(out, p)
			continue
		}
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	return out
}

// isSuperNodeKey reports whether a file name is a SuperNode key's.
func isSuperNodeKey(path string) bool {
	base := filepath.Base(path)
	return strings.Contains(base, "credentials") && !strings.HasPrefix(base, "server_credentials")
}

func (d *files) read(path string) {
	b, err := safefile.ReadRegular(path, 1<<20)
	if err != nil {
		if errors.Is(err, safefile.ErrTooLarge) && strings.HasSuffix(path, ".csv") {
			return // a large allowlist: csv check reads those
		}
		d.add("read", Error, path, err.Error(), "name the key and certificate files")
		return
	}
	switch {
	case strings.HasSuffix(path, ".pub"):
		d.pub(path, b)
	case bytes.Contains(b, []byte("PRIVATE KEY-----")):
		d.private(path, b)
	case bytes.Contains(b, []byte("-----BEGIN CERTIFICATE-----")):
		d.certs(path, b)
	}
}

func (d *files) mode(path string, private bool) {
	fi, err := os.Stat(path)
	if err != nil || !private {
		return
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o022 != 0:
		d.add("file-mode", Error, path, fmt.Sprintf("others can write to this private key (mode %04o); Flower and ssh refuse such keys", perm), "chmod 600 "+path)
	case perm&0o044 != 0:
		d.add("file-mode", Warning, path, fmt.Sprintf("others can read this private key (mode %04o)", perm), "chmod 600 "+path)
	}
	if dfi, err := os.Stat(filepath.Dir(path)); err == nil && dfi.Mode().Perm()&0o022 != 0 {
		d.add("file-mode", Error, filepath.Dir(path), fmt.Sprintf("others can write to the folder of a private key (mode %04o): they can replace the key", dfi.Mode().Perm()), "chmod go-w "+filepath.Dir(path))
	}
}

// private checks a private key: SuperNode keys must be what a SuperNode
// loads (OpenSSH, unencrypted, ECDSA P-384).
func (d *files) private(path string, b []byte) {
	d.mode(path, true)
	block, _ := pem.Decode(b)
	if !isSuperNodeKey(path) {
		if k, err := certs.ParseKey(b); err == nil {
			if d.tlsKeys == nil {
				d.tlsKeys = map[string]crypto.PublicKey{}
			}
			d.tlsKeys[path] = k.Public()
		}
		return
	}
	k, err := keys.ParsePrivateKey(b)
	switch {
	case errors.Is(err, keys.ErrEncrypted):
		d.add("key-format", Error, path, "the key is encrypted; a SuperNode loads only unencrypted keys",
			"ssh-keygen -p -N '' -f "+path+"   (removes the passphrase; keep the file 0600)")
		return
	case err != nil:
		d.add("key-format", Error, path, "not a key a SuperNode can load: "+strings.TrimPrefix(err.Error(), "keys: "),
			"make a new pair: nodekeys keygen --append (SuperNodes use ECDSA P-384 keys in OpenSSH format)")
		return
	case block != nil && block.Type != "OPENSSH PRIVATE KEY":
		d.add("key-format", Error, path, fmt.Sprintf("a PEM %q key: a SuperNode loads OpenSSH private keys only", block.Type),
			"ssh-keygen -p -N '' -f "+path+"   (rewrites it in OpenSSH format), or nodekeys keygen --append")
	}
	if k != nil && k.Curve != elliptic.P384() {
		d.add("key-type", Warning, path, fmt.Sprintf("an ECDSA %s key: Flower accepts it, but its SuperNodes make P-384 keys", k.Curve.Params().Name),
			"make a P-384 pair: nodekeys keygen --append")
	}
	if k != nil {
		d.pubFor(path, k)
	}
}

// pubFor compares a private key with the .pub beside it.
func (d *files) pubFor(path string, k *ecdsa.PrivateKey) {
	pub, err := keys.ReadPublicKey(path + ".pub")
	if err != nil {
		return
	}
	if !k.PublicKey.Equal(pub.Key) {
		d.add("pub-mismatch", Error, path+".pub", "not the public key of "+path+": before Flower 1.23 the SuperNode fails with \"Invalid signature\", and registering this .pub admits no node",
			"ssh-keygen -y -f "+path+" > "+path+".pub   (writes the right one)")
	}
}

func (d *files) pub(path string, b []byte) {
	if _, err := keys.ParsePublicKey(b); err != nil {
		d.add("key-format", Error, path, "not a public key Flower accepts: "+strings.TrimPrefix(err.Error(), "keys: "),
			"write it again from the private key: ssh-keygen -y -f "+strings.TrimSuffix(path, ".pub")+" > "+path)
	}
}

func (d *files) certs(path string, b []byte) {
	rest := b
	first := true
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			d.add("certificate", Error, path, "a certificate does not parse: "+err.Error(), "issue it again: nodekeys certgen --force")
			return
		}
		d.expiry(path, c)
		switch {
		case c.IsCA:
			d.cas = append(d.cas, c)
		case first:
			d.servers = append(d.servers, certFile{path, c})
		}
		first = false
	}
}

func (d *files) expiry(path string, c *x509.Certificate) {
	left := c.NotAfter.Sub(d.now)
	what := "the certificate"
	if c.IsCA {
		what = "the CA certificate"
	}
	fix := "renew it: nodekeys certgen --force (keeps the CA)"
	if c.IsCA {
		fix = "make a new CA: nodekeys certgen --new-ca --force, then give every SuperNode the new ca.crt"
	}
	switch {
	case left <= 0:
		d.add("expiry", Error, path, fmt.Sprintf("%s expired on %s", what, c.NotAfter.Format("2006-01-02")), fix)
	case left < ExpiryWarning:
		n := certs.DaysLeft(c.NotAfter, d.now)
		d.add("expiry", Warning, path, fmt.Sprintf("%s expires in %d day%s (%s)", what, n, map[bool]string{true: "", false: "s"}[n == 1], c.NotAfter.Format("2006-01-02")), fix)
	}
}

// checkCerts checks each server certificate's names, chain and key.
func (d *files) checkCerts() {
	for _, s := range d.servers {
		for _, name := range d.names {
			if err := s.cert.VerifyHostname(name); err != nil {
				d.add("certificate-name", Error, s.path, fmt.Sprintf("does not cover %q, the address SuperNodes dial (SANs: %s)", name, strings.Join(sans(s.cert), ", ")),
					"nodekeys certgen --force --add-san "+name)
			}
		}
		if len(d.cas) > 0 {
			pool := x509.NewCertPool()
			for _, ca := range d.cas {
				pool.AddCert(ca)
			}
			if _, err := s.cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: d.now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				d.add("certificate-chain", Error, s.path, "does not chain to the CA given: "+err.Error(),
					"issue it with that CA: nodekeys certgen --force --ca-cert CA.crt --ca-key CA.key, or give SuperNodes the CA that issued it")
			}
		}
		keyPath := filepath.Join(filepath.Dir(s.path), "server.key")
		if pub, ok := d.tlsKeys[keyPath]; ok {
			if !publicEqual(pub, s.cert.PublicKey) {
				d.add("certificate-key", Error, keyPath, "not the key of "+s.path+": the SuperLink's TLS handshake fails",
					"issue both again: nodekeys certgen --force")
			}
		}
	}
}

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func sans(c *x509.Certificate) []string {
	out := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}
