// Package doctor finds what operators most often get wrong in a Flower
// federation's files and connections, each finding with the fix: SuperNode
// keys Flower cannot load, a .pub that is not its private key's, a server
// certificate that does not cover the address SuperNodes dial or does not
// chain to the CA, certificates near expiry, loose file modes, a TLS
// handshake that fails, and a clock too far from the SuperLink's.
//
// Inspect says what one file is by its content (the classifier that both
// `nodekeys inspect` and Files use); Files checks files and folders and
// says what it checked; TLS, SkewHTTP and SkewControl check a live
// SuperLink or gateway.
package doctor

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nodekeys/nodekeys/certs"
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

// Report is what Files checked and what it found.
type Report struct {
	Findings []Finding
	Checked  Checked
	// CA is the CA certificate file the chains were checked against, and
	// the one a TLS check should trust: the one given, else the one CA
	// certificate file among the files ("" if none or several).
	CA string
	// CAs are the CA certificate files among the files checked.
	CAs []string
}

// Checked counts the files Files read, by what they are.
type Checked struct {
	SuperNodeKeys int `json:"supernode_keys"`
	TLSKeys       int `json:"tls_keys"`
	PublicKeys    int `json:"public_keys"`
	Allowlists    int `json:"allowlists"`
	Certificates  int `json:"certificates"`
	// Skipped counts the files of the folders given that are none of
	// these (a file named on its own is never skipped).
	Skipped int `json:"skipped"`
}

// Total is how many files were checked.
func (c Checked) Total() int {
	return c.SuperNodeKeys + c.TLSKeys + c.PublicKeys + c.Allowlists + c.Certificates
}

// String says what was checked: "3 SuperNode keys, 1 allowlist, 2
// certificates", or "no files".
func (c Checked) String() string {
	var parts []string
	for _, p := range []struct {
		n         int
		one, many string
	}{
		{c.SuperNodeKeys, "SuperNode key", "SuperNode keys"},
		{c.PublicKeys, "public key", "public keys"},
		{c.Allowlists, "allowlist", "allowlists"},
		{c.Certificates, "certificate", "certificates"},
		{c.TLSKeys, "TLS key", "TLS keys"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, plural(p.n, p.one, p.many)))
		}
	}
	if len(parts) == 0 {
		return "no files"
	}
	return strings.Join(parts, ", ")
}

// Files checks the files and folders given (a folder: its files, one
// level), each file read by its content as Inspect reads it. names are the
// names and addresses SuperNodes dial the SuperLink by; ca, if set, is the
// CA certificate file (else a CA among the files). A file named on its own
// that is not a key, a certificate or an allowlist, a path that cannot be
// read, and paths that hold nothing to check are findings: an empty
// report means that something was checked and nothing is wrong.
func Files(paths []string, names []string, ca string, now time.Time) Report {
	d := &files{now: now, names: names}
	var privates []*File
	for _, in := range d.expand(paths) {
		f := classify(in.path, now)
		switch f.class {
		case classUnread:
			d.unreadable(f)
		case classUnknown:
			if in.named {
				d.add("file", Error, f.File, "not a key, a certificate or an allowlist (doctor reads each file by its content)",
					"name the folders or files that hold them, e.g. nodekeys doctor certificates/ keys/")
			} else {
				d.checked.Skipped++
			}
		case classPrivate:
			privates = append(privates, f)
		case classPublic:
			d.checked.PublicKeys++
			d.pub(f)
		case classAllowlist:
			d.checked.Allowlists++
			d.allowlist(f)
		case classCert:
			d.checked.Certificates++
			d.certs(f)
		}
	}
	for _, f := range privates {
		d.private(f)
	}
	rep := Report{CAs: d.caFiles}
	switch {
	case ca != "":
		rep.CA = ca
		d.givenCA(ca)
	case len(d.caFiles) == 1:
		rep.CA = d.caFiles[0]
	}
	d.checkCerts()
	if len(paths) > 0 && d.checked.Total() == 0 && len(d.out) == 0 {
		problem := "no key, certificate or allowlist here"
		if n := d.checked.Skipped; n > 0 {
			problem += fmt.Sprintf(" (%d other %s)", n, plural(n, "file", "files"))
		}
		d.add("nothing-checked", Error, strings.Join(paths, " "), problem,
			"name the folders or files that hold them, e.g. nodekeys doctor certificates/ keys/")
	}
	sort.SliceStable(d.out, func(i, j int) bool { return d.out[i].File < d.out[j].File })
	rep.Findings, rep.Checked = d.out, d.checked
	return rep
}

type certFile struct {
	path string
	cert *x509.Certificate
}

type files struct {
	now     time.Time
	names   []string
	out     []Finding
	checked Checked
	cas     []*x509.Certificate
	caFiles []string
	certPub []crypto.PublicKey // the public keys of every certificate read
	servers []certFile
	tlsKeys map[string]crypto.PublicKey // path -> public key of a TLS key file
	folders map[string]bool             // the folders of private keys whose mode is checked
}

func (d *files) add(check string, sev Severity, file, problem, fix string) {
	d.out = append(d.out, Finding{Check: check, Severity: sev, File: file, Problem: problem, Fix: fix})
}

// input is a file to check, and whether it was named on its own.
type input struct {
	path  string
	named bool
}

// expand lists the regular files of paths, a folder giving its files; a
// path that cannot be read is a finding.
func (d *files) expand(paths []string) []input {
	var out []input
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			out = append(out, input{p, true})
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			d.unreadableFolder(p, err)
			continue
		}
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				out = append(out, input{filepath.Join(p, e.Name()), false})
			}
		}
	}
	return out
}

// unreadable reports a file that could not be read, with the fix.
func (d *files) unreadable(f *File) {
	switch {
	case errors.Is(f.err, fs.ErrPermission):
		d.add("read", Error, f.File, "cannot read it: "+f.Error,
			"let this user read it (ls -l "+f.File+"; chmod, or run as its owner)")
	case errors.Is(f.err, fs.ErrNotExist):
		d.add("read", Error, f.File, "no such file or folder", "check the path")
	default:
		d.add("read", Error, f.File, f.Error, "name the key, certificate and allowlist files")
	}
}

func (d *files) unreadableFolder(path string, err error) {
	if errors.Is(err, fs.ErrPermission) {
		d.add("read", Error, path, "cannot list this folder: permission denied",
			"let this user read it (ls -ld "+path+"; chmod u+rx, or run as its owner)")
		return
	}
	d.add("read", Error, path, "cannot list this folder: "+err.Error(), "check the path")
}

// isSuperNodeKey reports whether a file name is a SuperNode key's.
func isSuperNodeKey(path string) bool {
	base := filepath.Base(path)
	return strings.Contains(base, "credentials") && !strings.HasPrefix(base, "server_credentials")
}

// isTLSKey reports whether a private key is a certificate's: by its name
// (certgen's ca.key and server.key, a .pem) or because a certificate read
// has its public key.
func (d *files) isTLSKey(f *File) bool {
	if ext := filepath.Ext(f.File); ext == ".key" || ext == ".pem" || strings.HasPrefix(filepath.Base(f.File), "server_credentials") {
		return true
	}
	for _, p := range d.certPub {
		if f.pub != nil && samePublicKey(f.pub, p) {
			return true
		}
	}
	return false
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
	dir := filepath.Dir(path)
	if d.folders[dir] {
		return // said once per folder, not once per key
	}
	dfi, err := os.Stat(dir)
	if err != nil {
		return
	}
	if d.folders == nil {
		d.folders = map[string]bool{}
	}
	d.folders[dir] = true
	switch perm := dfi.Mode().Perm(); {
	case perm&0o022 != 0:
		d.add("file-mode", Error, dir, fmt.Sprintf("others can write to the folder of a private key (mode %04o): they can replace the key", perm), "chmod 700 "+dir)
	case perm&0o077 != 0:
		d.add("file-mode", Warning, dir, fmt.Sprintf("others can list the folder of a private key (mode %04o); nodekeys makes it 0700", perm), "chmod 700 "+dir)
	}
}

// private checks a private key. A key that is not a certificate's is
// checked as a SuperNode key, which must be what a SuperNode loads
// (OpenSSH, unencrypted, ECDSA P-384), whatever its name.
func (d *files) private(f *File) {
	path, b := f.File, f.data
	d.mode(path, true)
	if !isSuperNodeKey(path) && d.isTLSKey(f) {
		d.checked.TLSKeys++
		switch {
		case errors.Is(f.err, certs.ErrEncrypted) || errors.Is(f.err, keys.ErrEncrypted):
			d.add("key-format", Error, path, "the key is encrypted; a SuperLink (and the gateway) loads only unencrypted keys",
				"issue the key and certificate again: nodekeys certgen --force")
		case f.Error != "" && filepath.Ext(path) != ".pem":
			d.add("key-format", Error, path, "the key does not load: "+f.Error, "issue the key and certificate again: nodekeys certgen --force")
		case f.pub != nil:
			if d.tlsKeys == nil {
				d.tlsKeys = map[string]crypto.PublicKey{}
			}
			d.tlsKeys[path] = f.pub
		}
		return
	}
	d.checked.SuperNodeKeys++
	block, _ := pem.Decode(b)
	k, err := keys.ParsePrivateKey(b)
	switch {
	case errors.Is(err, keys.ErrEncrypted):
		d.add("key-format", Error, path, "the key is encrypted; a SuperNode loads only unencrypted keys",
			"ssh-keygen -p -N '' -f "+path+"   (removes the passphrase; keep the file 0600)")
		return
	case err != nil:
		d.add("key-format", Error, path, "not a key a SuperNode can load: "+keyReason(err),
			"make a new pair: nodekeys keygen --append (SuperNodes use ECDSA P-384 keys in OpenSSH format)")
		return
	case block == nil:
		d.add("key-format", Error, path, "a DER key: a SuperNode loads OpenSSH private keys only",
			"make a new pair: nodekeys keygen --append (SuperNodes use ECDSA P-384 keys in OpenSSH format)")
	case block.Type != "OPENSSH PRIVATE KEY":
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

func (d *files) pub(f *File) {
	path := f.File
	if f.Error == "" {
		return
	}
	d.add("key-format", Error, path, "not a public key Flower accepts: "+strings.TrimPrefix(f.Error, "1:1: "),
		"write it again from the private key: ssh-keygen -y -f "+strings.TrimSuffix(path, ".pub")+" > "+path)
}

// allowlist checks an allowlist CSV as a CSV-era SuperLink reads it.
func (d *files) allowlist(f *File) {
	fix := "see every problem: nodekeys csv check " + f.File
	switch {
	case len(f.listErr) > 0:
		d.add("allowlist", Error, f.File, f.listErr.Error(), fix)
		return
	case f.Error != "":
		d.add("allowlist", Error, f.File, f.Error, fix)
		return
	case f.list == nil:
		return
	case len(f.list.Entries) == 0:
		d.add("allowlist", Error, f.File, "no keys: a SuperLink with this allowlist accepts no node", "add the SuperNodes' keys: nodekeys csv add "+f.File+" KEY.pub")
	}
	for _, w := range f.list.Warnings {
		if w.BreaksFlower {
			d.add("allowlist", Error, f.File, w.Error(), "write it again: nodekeys csv remove or add rewrites it as Flower reads it")
		} else {
			d.add("allowlist", Warning, f.File, w.Error(), fix)
		}
	}
}

func (d *files) certs(f *File) {
	path := f.File
	if f.Error != "" {
		d.add("certificate", Error, path, "a certificate does not parse: "+f.Error, "issue it again: nodekeys certgen --force")
		return
	}
	for i, c := range f.certs {
		d.certPub = append(d.certPub, c.PublicKey)
		d.expiry(path, c)
		switch {
		case c.IsCA:
			d.cas = append(d.cas, c)
			if i == 0 {
				d.caFiles = append(d.caFiles, path)
			}
		case i == 0:
			d.servers = append(d.servers, certFile{path, c})
		}
	}
}

// givenCA adds the CA certificate file named apart from the files.
func (d *files) givenCA(path string) {
	if slices.Contains(d.caFiles, path) {
		return
	}
	f := classify(path, d.now)
	var cas []*x509.Certificate
	for _, c := range f.certs {
		if c.IsCA {
			cas = append(cas, c)
		}
	}
	if f.Error != "" || len(cas) == 0 {
		problem := "not a CA certificate"
		if f.Error != "" {
			problem = f.Error
		}
		d.add("ca", Error, path, "the CA certificate does not load: "+problem, "name the ca.crt that certgen or init wrote")
		return
	}
	for _, c := range cas {
		d.expiry(path, c)
	}
	d.cas = append(d.cas, cas...)
}

func (d *files) expiry(path string, c *x509.Certificate) {
	what := "the certificate"
	if c.IsCA {
		what = "the CA certificate"
	}
	switch v := validity(c, d.now); v.state {
	case notYetValid:
		d.add("not-yet-valid", Error, path, fmt.Sprintf("%s is not valid until %s: a TLS handshake with it fails until then",
			what, c.NotBefore.UTC().Format(time.DateTime+" UTC")),
			"check this machine's clock and the issuer's (timedatectl), or issue it again: "+renewCommand(c))
	case expired:
		d.add("expiry", Error, path, fmt.Sprintf("%s expired on %s", what, c.NotAfter.Format("2006-01-02")), renewFix(c))
	case expiring:
		d.add("expiry", Warning, path, fmt.Sprintf("%s expires in %d %s (%s)", what, v.days, plural(v.days, "day", "days"), c.NotAfter.Format("2006-01-02")), renewFix(c))
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
			if err := chain(s.cert, nil, pool, d.now); err != nil {
				d.add("certificate-chain", Error, s.path, "does not chain to the CA given: "+err.Error(),
					"issue it with that CA: nodekeys certgen --force --ca-cert CA.crt --ca-key CA.key, or give SuperNodes the CA that issued it")
			}
		}
		keyPath := filepath.Join(filepath.Dir(s.path), "server.key")
		if pub, ok := d.tlsKeys[keyPath]; ok {
			if !samePublicKey(pub, s.cert.PublicKey) {
				d.add("certificate-key", Error, keyPath, "not the key of "+s.path+": the SuperLink's TLS handshake fails",
					"issue both again: nodekeys certgen --force")
			}
		}
	}
}

func sans(c *x509.Certificate) []string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// keyReason is why package keys refused a key, without its "keys: "
// prefix: the file is named by the caller.
func keyReason(err error) string {
	if pe, ok := errors.AsType[*keys.ParseError](err); ok {
		return pe.Reason()
	}
	return err.Error()
}
