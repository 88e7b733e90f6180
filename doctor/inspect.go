package doctor

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/keys"
)

// Cert describes one certificate of a File.
type Cert struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	IsCA        bool      `json:"is_ca,omitempty"`
	Algorithm   string    `json:"algorithm"`
	SANs        []string  `json:"sans,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DaysLeft    int       `json:"days_left"`
	Fingerprint string    `json:"fingerprint"`
	KeyPrint    string    `json:"key_fingerprint"`
}

// File is what Inspect found a file to be, by its content: certificates
// (PEM or DER, every one of a chain), private and public keys (OpenSSH, PEM,
// DER) or an allowlist CSV. Fingerprints are SHA256:... as ssh-keygen
// prints them.
type File struct {
	File        string   `json:"file"`
	Kind        string   `json:"kind"`
	Algorithm   string   `json:"algorithm,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Comment     string   `json:"comment,omitempty"`
	Certs       []Cert   `json:"certificates,omitempty"`
	Keys        *int     `json:"keys,omitempty"`
	Matches     []string `json:"matches,omitempty"`
	// ListedIn and NotListedIn are the allowlists inspected with a key
	// that hold it and that do not.
	ListedIn    []string `json:"listed_in,omitempty"`
	NotListedIn []string `json:"not_listed_in,omitempty"`
	ChainsTo    string   `json:"chains_to,omitempty"`
	// Errors are what is wrong with a file that was understood: an
	// expired or not yet valid certificate, an allowlist Flower fails on.
	Errors   []string `json:"errors,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Error says why the file could not be read or understood.
	Error string `json:"error,omitempty"`

	class   class
	err     error // why it could not be read, or its key parsed
	pub     crypto.PublicKey
	certs   []*x509.Certificate
	data    []byte
	list    *csvlist.List
	listErr csvlist.Problems
}

// class is what sort of file a File is, as the checks need it.
type class int

const (
	classUnknown   class = iota // not a key, a certificate or an allowlist
	classUnread                 // could not be read
	classPrivate                // a private key (maybe one that does not parse)
	classPublic                 // one public key line, or PEM/DER public key
	classAllowlist              // an allowlist CSV
	classCert                   // one or more certificates
)

// Failed reports whether the file has an error: it could not be read or
// understood, or it holds a certificate out of its validity or an
// allowlist Flower fails on.
func (f *File) Failed() bool { return f.Error != "" || len(f.Errors) > 0 }

// maxKeyFile is the size past which a file can only be an allowlist.
const maxKeyFile = 1 << 20

// Inspect reads the file at path and says what it is by its content, not
// its name. A certificate out of its validity at now is an error, one
// within ExpiryWarning of its end a warning; a private key readable by
// others, or one that is not the key of the .pub beside it, a warning.
func Inspect(path string, now time.Time) *File {
	f := classify(path, now)
	if f.class == classPrivate && f.Error == "" {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			f.Warnings = append(f.Warnings, fmt.Sprintf("others can read this private key (mode %04o): chmod 600 it", fi.Mode().Perm()))
		}
		pubMatch(f, path+".pub")
	}
	return f
}

// classify reads path and says what it is; it checks nothing beyond what
// reading needs, besides the certificates' validity.
func classify(path string, now time.Time) *File {
	f := &File{File: path}
	fail := func(c class, format string, args ...any) *File {
		f.class, f.Error = c, fmt.Sprintf(format, args...)
		return f
	}
	// A key or certificate is small; only an allowlist may be large, and
	// its first mebibyte says so.
	b, err := safefile.ReadRegular(path, maxKeyFile)
	if errors.Is(err, safefile.ErrTooLarge) {
		if b, err = readHead(path, maxKeyFile); err == nil {
			if t := bytes.TrimSpace(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))); !isText(b[:max(0, len(b)-3)]) || !looksLikeKeys(t) && !bytes.HasPrefix(t, []byte("#")) {
				return fail(classUnknown, "larger than 1 MiB and not an allowlist: not a key or a certificate")
			}
			b, err = safefile.ReadRegular(path, csvlist.MaxFileSize)
		}
	}
	if err != nil {
		msg := err.Error()
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		f.err = err
		return fail(classUnread, "%s", strings.TrimPrefix(msg, path+": "))
	}
	f.data = b
	switch {
	case !isText(b):
		if inspectDER(f, b, now) {
			return f
		}
		return fail(classUnknown, "not a text file, nor a DER certificate or key")
	case bytes.Contains(b, []byte("-----BEGIN ")):
		inspectPEM(f, b, now)
	default:
		inspectText(f, b)
	}
	return f
}

// readHead reads the first n bytes of a regular file.
func readHead(path string, n int64) ([]byte, error) {
	fh, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(fh, b)
	if err == io.ErrUnexpectedEOF {
		err = nil
	}
	return b[:m], err
}

// isText reports whether b is UTF-8 text without NUL bytes.
func isText(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}

// pubMatch says whether a private key matches the .pub beside it.
func pubMatch(f *File, pubPath string) {
	k, err := keys.ReadPublicKey(pubPath)
	if err != nil {
		return // no .pub beside it, or not one to compare
	}
	if samePublicKey(f.pub, k.Key) {
		if !slices.Contains(f.Matches, pubPath) {
			f.Matches = append(f.Matches, pubPath)
		}
		return
	}
	f.Warnings = append(f.Warnings, fmt.Sprintf("does NOT match %s (%s): a SuperNode with this pair fails with \"Invalid signature\" before Flower 1.23", pubPath, k.Fingerprint()))
}

// inspectText reads an OpenSSH public key line or an allowlist CSV.
func inspectText(f *File, b []byte) {
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")))
	if !looksLikeKeys(trimmed) && !bytes.HasPrefix(trimmed, []byte("#")) {
		f.class, f.Error = classUnknown, "not a key, a certificate or an allowlist"
		return
	}
	l, err := csvlist.Parse(f.File, b)
	var probs csvlist.Problems
	if err != nil && !errors.As(err, &probs) {
		f.class, f.Error = classAllowlist, err.Error()
		return
	}
	f.list, f.listErr = l, probs
	oneLine := !bytes.ContainsAny(trimmed, ",\n")
	switch {
	case oneLine && len(l.Entries) == 1 && len(probs) == 0:
		k := l.Entries[0].Key
		f.class = classPublic
		f.Kind, f.Algorithm, f.Fingerprint, f.Comment, f.pub = "OpenSSH public key", "ECDSA "+k.Curve(), k.Fingerprint(), k.Comment, k.Key
	case len(probs) > 0:
		switch {
		case !looksLikeKeys(trimmed) && len(l.Entries) == 0:
			f.class = classUnknown // text led by a comment: no key in it
		case oneLine:
			f.class = classPublic
		default:
			f.class = classAllowlist
		}
		f.Error = strings.TrimPrefix(probs.Error(), f.File+":")
	default:
		f.class = classAllowlist
		f.Kind = "Flower allowlist CSV"
		n := len(l.Entries)
		f.Keys = &n
		for _, w := range l.Warnings {
			msg := fmt.Sprintf("line %d column %d: %v", w.Line, w.Column, w.Err)
			if w.BreaksFlower {
				f.Errors = append(f.Errors, msg)
			} else {
				f.Warnings = append(f.Warnings, msg)
			}
		}
	}
}

// looksLikeKeys reports whether text starts like an OpenSSH key line.
func looksLikeKeys(b []byte) bool {
	return bytes.HasPrefix(b, []byte("ssh-")) || bytes.HasPrefix(b, []byte("ecdsa-")) || bytes.HasPrefix(b, []byte("sk-"))
}

// inspectPEM reads every PEM block: certificates (a chain) and keys.
func inspectPEM(f *File, b []byte, now time.Time) {
	rest := b
	var kinds []string
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				f.class, f.Error = classCert, fmt.Sprintf("certificate %d: %v", len(f.certs)+1, err)
				return
			}
			addCert(f, cert, now)
		case "OPENSSH PRIVATE KEY":
			if f.class == classUnknown {
				f.class = classPrivate
			}
			k, err := keys.ParsePrivateKey(pem.EncodeToMemory(block))
			if err != nil {
				f.err, f.Error = err, keyReason(err)
				return
			}
			setKey(f, "OpenSSH private key", &k.PublicKey)
			kinds = append(kinds, f.Kind)
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			if f.class == classUnknown {
				f.class = classPrivate
			}
			k, err := certs.ParseKey(pem.EncodeToMemory(block))
			if err != nil {
				f.err, f.Error = err, err.Error()
				return
			}
			setKey(f, "PEM private key", k.Public())
			kinds = append(kinds, f.Kind)
		case "PUBLIC KEY":
			if f.class == classUnknown {
				f.class = classPublic
			}
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				f.Error = fmt.Sprintf("public key: %v", err)
				return
			}
			setKey(f, "PEM public key", pub)
			kinds = append(kinds, f.Kind)
		default:
			f.Error = fmt.Sprintf("a %q PEM block is neither a key nor a certificate", block.Type)
			return
		}
	}
	switch {
	case len(f.certs) == 0 && len(kinds) == 0:
		f.Error = "a PEM header without a readable block"
		if bytes.Contains(b, []byte("PRIVATE KEY-----")) {
			f.class = classPrivate
		}
	case len(f.certs) > 0:
		f.class = classCert
		finishCerts(f)
		if len(kinds) > 0 {
			f.Warnings = append(f.Warnings, "the file also holds a "+kinds[0]+": keep private keys in files of their own, mode 0600")
		}
	}
}

// inspectDER reads a DER certificate or key.
func inspectDER(f *File, b []byte, now time.Time) bool {
	if cert, err := x509.ParseCertificate(b); err == nil {
		addCert(f, cert, now)
		finishCerts(f)
		f.class, f.Kind = classCert, "DER "+f.Kind
		return true
	}
	f.class = classPrivate
	if k, err := x509.ParsePKCS8PrivateKey(b); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			setKey(f, "DER private key (PKCS #8)", s.Public())
			return true
		}
	}
	if k, err := x509.ParseECPrivateKey(b); err == nil {
		setKey(f, "DER private key (SEC 1)", k.Public())
		return true
	}
	if k, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		setKey(f, "DER private key (PKCS #1)", k.Public())
		return true
	}
	f.class = classPublic
	if pub, err := x509.ParsePKIXPublicKey(b); err == nil {
		setKey(f, "DER public key", pub)
		return true
	}
	f.class = classUnknown
	return false
}

func setKey(f *File, kind string, pub crypto.PublicKey) {
	if f.Kind == "" {
		f.Kind, f.Algorithm, f.Fingerprint, f.pub = kind, algorithm(pub), keyFingerprint(pub), pub
	}
}

func addCert(f *File, cert *x509.Certificate, now time.Time) {
	f.certs = append(f.certs, cert)
	ci := Cert{
		Subject: cert.Subject.String(), Issuer: cert.Issuer.String(), IsCA: cert.IsCA, Algorithm: algorithm(cert.PublicKey),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DaysLeft: certs.DaysLeft(cert.NotAfter, now),
		Fingerprint: certs.SHA256Fingerprint(cert), KeyPrint: keyFingerprint(cert.PublicKey),
	}
	ci.SANs = sans(cert)
	f.Certs = append(f.Certs, ci)
	what := "the certificate"
	if n := len(f.certs); n > 1 {
		what = fmt.Sprintf("certificate %d", n)
	}
	switch v := validity(cert, now); v.state {
	case notYetValid:
		f.Errors = append(f.Errors, fmt.Sprintf("%s is not valid until %s (%s from now): check this machine's clock and the issuer's",
			what, cert.NotBefore.UTC().Format(time.DateTime+" UTC"), cert.NotBefore.Sub(now).Round(time.Second)))
	case expired:
		f.Errors = append(f.Errors, fmt.Sprintf("%s has EXPIRED (%s): %s", what, cert.NotAfter.Format("2006-01-02"), renewFix(cert)))
	case expiring:
		f.Warnings = append(f.Warnings, fmt.Sprintf("%s expires in %d %s: renew it with '%s'",
			what, v.days, plural(v.days, "day", "days"), renewCommand(cert)))
	}
}

// finishCerts names the file's kind after its first certificate.
func finishCerts(f *File) {
	first := f.Certs[0]
	f.Kind = "certificate"
	if first.IsCA {
		f.Kind = "CA certificate"
	}
	if len(f.Certs) > 1 {
		f.Kind = fmt.Sprintf("certificate chain of %d", len(f.Certs))
	}
	f.Algorithm, f.Fingerprint, f.pub = first.Algorithm, first.Fingerprint, f.certs[0].PublicKey
}

// MatchKeys pairs the files whose public keys are the same: a private key
// and its certificate or its .pub; and says of each key, private or
// public, whether each allowlist among files holds it.
func MatchKeys(files []*File) {
	for a, x := range files {
		if x.pub == nil {
			continue
		}
		for _, y := range files[a+1:] {
			if y.pub == nil || x.File == y.File {
				continue
			}
			if samePublicKey(x.pub, y.pub) {
				// Inspect has matched a private key with its .pub already.
				if !slices.Contains(x.Matches, y.File) {
					x.Matches = append(x.Matches, y.File)
				}
				if !slices.Contains(y.Matches, x.File) {
					y.Matches = append(y.Matches, x.File)
				}
			}
		}
		if x.class != classPrivate && x.class != classPublic {
			continue
		}
		for _, l := range files {
			if l.class != classAllowlist || l.list == nil || l.Error != "" {
				continue
			}
			if slices.ContainsFunc(l.list.Keys(), func(k *keys.PublicKey) bool { return samePublicKey(x.pub, k.Key) }) {
				x.ListedIn = append(x.ListedIn, l.File)
			} else {
				x.NotListedIn = append(x.NotListedIn, l.File)
			}
		}
	}
}

// CheckChain verifies the file's first certificate up to a CA of roots,
// with the file's other certificates as intermediates; caName names roots
// in what it says. A certificate out of its validity is said so once, by
// Inspect; here only the chain is judged.
func (f *File) CheckChain(roots *x509.CertPool, caName string, now time.Time) {
	if len(f.certs) == 0 {
		return
	}
	if err := chain(f.certs[0], f.certs[1:], roots, now); err != nil {
		f.Warnings = append(f.Warnings, fmt.Sprintf("does not chain to %s: %v", caName, err))
		return
	}
	f.ChainsTo = caName
}

// chain verifies leaf up to roots. A chain whose only fault is a time
// outside a certificate's validity (reported on its own, as an expired or
// not yet valid certificate) is judged at a time within the leaf's
// validity, so that it is not reported twice, once with the wrong fix.
func chain(leaf *x509.Certificate, inter []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	pool := x509.NewCertPool()
	for _, c := range inter {
		pool.AddCert(c)
	}
	verify := func(at time.Time) error {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	err := verify(now)
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		if err = verify(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)); errors.As(err, &inv) && inv.Reason == x509.Expired {
			return nil // the CA's own validity, reported with the CA's file
		}
	}
	return err
}

// validityState is where now falls in a certificate's validity.
type validityState int

const (
	valid validityState = iota
	notYetValid
	expiring // within ExpiryWarning of its end
	expired
)

type certValidity struct {
	state validityState
	days  int // days left, rounded up
}

// validity says where now falls in c's validity.
func validity(c *x509.Certificate, now time.Time) certValidity {
	left := c.NotAfter.Sub(now)
	v := certValidity{days: certs.DaysLeft(c.NotAfter, now)}
	switch {
	case now.Before(c.NotBefore):
		v.state = notYetValid
	case left <= 0:
		v.state = expired
	case left < ExpiryWarning:
		v.state = expiring
	}
	return v
}

func renewCommand(c *x509.Certificate) string {
	if c.IsCA {
		return "nodekeys certgen --new-ca --force"
	}
	return "nodekeys certgen --force"
}

func renewFix(c *x509.Certificate) string {
	if c.IsCA {
		return "make a new CA: nodekeys certgen --new-ca --force, then give every SuperNode the new ca.crt"
	}
	return "renew it: nodekeys certgen --force (keeps the CA)"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// keyFingerprint is a public key's fingerprint as ssh-keygen -l prints it.
func keyFingerprint(pub crypto.PublicKey) string {
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}

func algorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

func samePublicKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
