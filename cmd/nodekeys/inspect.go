package main

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
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/keys"
)

// expiryWarning is how close to expiry a certificate gets a warning.
const expiryWarning = 30 * 24 * time.Hour

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:  "inspect",
		Usage: "say what a certificate, key, .pub or allowlist CSV is, and whether keys match certificates",
		Description: "Each FILE is recognised by its content, not its name: PEM or DER certificates\n" +
			"(every certificate of a chain), private and public keys (OpenSSH, PEM, DER), and\n" +
			"allowlist CSVs. Fingerprints are SHA256:... as ssh-keygen prints them. Keys and\n" +
			"certificates given together are matched; a private key is checked against the\n" +
			".pub beside it; --ca checks that certificates chain to a CA.\n\n" +
			"   nodekeys inspect --ca certificates/ca.crt certificates/server.pem certificates/server.key\n" +
			"   nodekeys inspect keys/client_credentials_1 keys/client_public_keys.csv",
		ArgsUsage: "FILE...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array"},
			&cli.StringFlag{Name: "ca", Usage: "check that each certificate chains to the CA certificate in `FILE`"},
		},
		Action: inspectAction,
	}
}

// certInfo describes one certificate.
type certInfo struct {
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

// inspected describes one file.
type inspected struct {
	File        string     `json:"file"`
	Kind        string     `json:"kind"`
	Algorithm   string     `json:"algorithm,omitempty"`
	Fingerprint string     `json:"fingerprint,omitempty"`
	Comment     string     `json:"comment,omitempty"`
	Certs       []certInfo `json:"certificates,omitempty"`
	Keys        *int       `json:"keys,omitempty"`
	Matches     []string   `json:"matches,omitempty"`
	ChainsTo    string     `json:"chains_to,omitempty"`
	Warnings    []string   `json:"warnings,omitempty"`
	Error       string     `json:"error,omitempty"`

	pub   crypto.PublicKey
	certs []*x509.Certificate
}

func inspectAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageErr("inspect takes one or more FILEs")
	}
	now := time.Now()
	var roots *x509.CertPool
	if ca := c.String("ca"); ca != "" {
		cert, err := certs.ReadCertificate(ca)
		if err != nil {
			return err
		}
		roots = x509.NewCertPool()
		roots.AddCert(cert)
	}
	var all []*inspected
	for _, f := range c.Args().Slice() {
		i := inspectFile(f, now)
		if roots != nil && len(i.certs) > 0 {
			checkChain(i, roots, c.String("ca"), now)
		}
		all = append(all, i)
	}
	matchKeys(all)
	failed := false
	for _, i := range all {
		failed = failed || i.Error != ""
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, all); err != nil {
			return err
		}
	} else {
		for _, i := range all {
			printInspected(c.App.Writer, c.App.ErrWriter, i)
		}
	}
	if failed {
		return silentFailure
	}
	return nil
}

// matchKeys pairs the files whose public keys are the same: a private key
// and its certificate or its .pub.
func matchKeys(all []*inspected) {
	for a, x := range all {
		if x.pub == nil {
			continue
		}
		for _, y := range all[a+1:] {
			if y.pub == nil || x.File == y.File {
				continue
			}
			if samePublicKey(x.pub, y.pub) {
				x.Matches = append(x.Matches, y.File)
				y.Matches = append(y.Matches, x.File)
			}
		}
	}
}

// checkChain verifies the file's first certificate up to the CA, with the
// file's other certificates as intermediates.
func checkChain(i *inspected, roots *x509.CertPool, caFile string, now time.Time) {
	inter := x509.NewCertPool()
	for _, c := range i.certs[1:] {
		inter.AddCert(c)
	}
	_, err := i.certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		i.Warnings = append(i.Warnings, fmt.Sprintf("does not chain to %s: %v", caFile, err))
		return
	}
	i.ChainsTo = caFile
}

func printInspected(out, errw io.Writer, i *inspected) {
	if i.Error != "" {
		fmt.Fprintf(errw, "nodekeys: error: %s: %s\n", i.File, i.Error)
		return
	}
	fmt.Fprintf(out, "%s: %s", i.File, i.Kind)
	if i.Algorithm != "" {
		fmt.Fprintf(out, ", %s", i.Algorithm)
	}
	fmt.Fprintln(out)
	line := func(indent, k, v string) { fmt.Fprintf(out, "%s%-12s %s\n", indent, k+":", v) }
	for n, c := range i.Certs {
		indent := "  "
		if len(i.Certs) > 1 {
			fmt.Fprintf(out, "  certificate %d of %d:\n", n+1, len(i.Certs))
			indent = "    "
		}
		line(indent, "subject", c.Subject)
		line(indent, "issuer", c.Issuer)
		if len(i.Certs) > 1 {
			line(indent, "key", c.Algorithm)
		}
		if len(c.SANs) > 0 {
			line(indent, "SANs", strings.Join(c.SANs, ", "))
		}
		line(indent, "valid", fmt.Sprintf("%s to %s (%s)", c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"), daysLeftText(c.DaysLeft)))
		line(indent, "fingerprint", c.Fingerprint)
		line(indent, "key print", c.KeyPrint)
	}
	if i.Keys != nil {
		line("  ", "keys", fmt.Sprint(*i.Keys))
	}
	if i.Fingerprint != "" && len(i.Certs) == 0 {
		line("  ", "fingerprint", i.Fingerprint)
	}
	if i.Comment != "" {
		line("  ", "comment", i.Comment)
	}
	for _, m := range i.Matches {
		line("  ", "matches", m)
	}
	if i.ChainsTo != "" {
		line("  ", "chains to", i.ChainsTo)
	}
	for _, w := range i.Warnings {
		fmt.Fprintf(errw, "nodekeys: warning: %s: %s\n", i.File, w)
	}
}

func daysLeftText(n int) string {
	switch {
	case n > 0:
		return fmt.Sprintf("%d %s left", n, plural(n, "day", "days"))
	case n == 0:
		return "EXPIRED today"
	}
	return fmt.Sprintf("EXPIRED %d %s ago", -n, plural(-n, "day", "days"))
}

func inspectFile(path string, now time.Time) *inspected {
	i := &inspected{File: path}
	fail := func(format string, args ...any) *inspected {
		i.Error = fmt.Sprintf(format, args...)
		return i
	}
	// A key or certificate is small; only an allowlist may be large, and
	// its first mebibyte says so.
	b, err := safefile.ReadRegular(path, 1<<20)
	if errors.Is(err, safefile.ErrTooLarge) {
		if b, err = readHead(path, 1<<20); err == nil {
			if t := bytes.TrimSpace(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))); !isText(b[:max(0, len(b)-3)]) || !looksLikeKeys(t) && !bytes.HasPrefix(t, []byte("#")) {
				return fail("larger than 1 MiB and not an allowlist: not a key or a certificate")
			}
			b, err = safefile.ReadRegular(path, csvlist.MaxFileSize)
		}
	}
	if err != nil {
		msg := err.Error()
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return fail("%s", strings.TrimPrefix(msg, path+": "))
	}
	switch {
	case !isText(b):
		if inspectDER(i, b, now) {
			return i
		}
		return fail("not a text file, nor a DER certificate or key")
	case bytes.Contains(b, []byte("-----BEGIN ")):
		if !inspectPEM(i, b, now) {
			return i
		}
	default:
		inspectText(i, b)
		if i.Error != "" {
			return i
		}
	}
	if strings.Contains(i.Kind, "private") {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			i.Warnings = append(i.Warnings, fmt.Sprintf("others can read this private key (mode %04o): chmod 600 it", fi.Mode().Perm()))
		}
		pubMatch(i, path+".pub")
	}
	return i
}

// readHead reads the first n bytes of a regular file.
func readHead(path string, n int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
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
func pubMatch(i *inspected, pubPath string) {
	k, err := keys.ReadPublicKey(pubPath)
	if err != nil {
		return // no .pub beside it, or not one to compare
	}
	if samePublicKey(i.pub, k.Key) {
		if !slices.Contains(i.Matches, pubPath) {
			i.Matches = append(i.Matches, pubPath)
		}
		return
	}
	i.Warnings = append(i.Warnings, fmt.Sprintf("does NOT match %s (%s): a SuperNode with this pair fails with \"Invalid signature\" before Flower 1.23", pubPath, k.Fingerprint()))
}

// inspectText reads an OpenSSH public key line or an allowlist CSV.
func inspectText(i *inspected, b []byte) {
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")))
	if !looksLikeKeys(trimmed) && !bytes.HasPrefix(trimmed, []byte("#")) {
		i.Error = "not a key, a certificate or an allowlist"
		return
	}
	l, err := csvlist.Parse(i.File, b)
	var probs csvlist.Problems
	if err != nil && !errors.As(err, &probs) {
		i.Error = err.Error()
		return
	}
	oneKey := len(l.Entries) == 1 && len(probs) == 0 && !bytes.ContainsAny(trimmed, ",\n")
	switch {
	case oneKey:
		k := l.Entries[0].Key
		i.Kind, i.Algorithm, i.Fingerprint, i.Comment, i.pub = "OpenSSH public key", "ECDSA "+k.Curve(), k.Fingerprint(), k.Comment, k.Key
	default:
		if len(probs) > 0 {
			i.Error = strings.TrimPrefix(probs.Error(), i.File+":")
			return
		}
		i.Kind = "Flower allowlist CSV"
		n := len(l.Entries)
		i.Keys = &n
		for _, w := range l.Warnings {
			i.Warnings = append(i.Warnings, fmt.Sprintf("line %d column %d: %v", w.Line, w.Column, w.Err))
		}
	}
}

// looksLikeKeys reports whether text starts like an OpenSSH key line.
func looksLikeKeys(b []byte) bool {
	return bytes.HasPrefix(b, []byte("ssh-")) || bytes.HasPrefix(b, []byte("ecdsa-")) || bytes.HasPrefix(b, []byte("sk-"))
}

// inspectPEM reads every PEM block: certificates (a chain) and keys. It
// reports whether the file was understood.
func inspectPEM(i *inspected, b []byte, now time.Time) bool {
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
				i.Error = fmt.Sprintf("certificate %d: %v", len(i.certs)+1, err)
				return false
			}
			addCert(i, cert, now)
		case "OPENSSH PRIVATE KEY":
			k, err := keys.ParsePrivateKey(pem.EncodeToMemory(block))
			if err != nil {
				i.Error = strings.TrimPrefix(err.Error(), "keys: ")
				return false
			}
			setKey(i, "OpenSSH private key", &k.PublicKey)
			kinds = append(kinds, i.Kind)
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			k, err := certs.ParseKey(pem.EncodeToMemory(block))
			if err != nil {
				i.Error = err.Error()
				return false
			}
			setKey(i, "PEM private key", k.Public())
			kinds = append(kinds, i.Kind)
		case "PUBLIC KEY":
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				i.Error = fmt.Sprintf("public key: %v", err)
				return false
			}
			setKey(i, "PEM public key", pub)
			kinds = append(kinds, i.Kind)
		default:
			i.Error = fmt.Sprintf("a %q PEM block is neither a key nor a certificate", block.Type)
			return false
		}
	}
	switch {
	case len(i.certs) == 0 && len(kinds) == 0:
		i.Error = "a PEM header without a readable block"
		return false
	case len(i.certs) > 0:
		finishCerts(i)
		if len(kinds) > 0 {
			i.Warnings = append(i.Warnings, "the file also holds a "+kinds[0]+": keep private keys in files of their own, mode 0600")
		}
	}
	return true
}

// inspectDER reads a DER certificate or key.
func inspectDER(i *inspected, b []byte, now time.Time) bool {
	if cert, err := x509.ParseCertificate(b); err == nil {
		addCert(i, cert, now)
		finishCerts(i)
		i.Kind = "DER " + i.Kind
		return true
	}
	if k, err := x509.ParsePKCS8PrivateKey(b); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			setKey(i, "DER private key (PKCS #8)", s.Public())
			return true
		}
	}
	if k, err := x509.ParseECPrivateKey(b); err == nil {
		setKey(i, "DER private key (SEC 1)", k.Public())
		return true
	}
	if k, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		setKey(i, "DER private key (PKCS #1)", k.Public())
		return true
	}
	if pub, err := x509.ParsePKIXPublicKey(b); err == nil {
		setKey(i, "DER public key", pub)
		return true
	}
	return false
}

func setKey(i *inspected, kind string, pub crypto.PublicKey) {
	if i.Kind == "" {
		i.Kind, i.Algorithm, i.Fingerprint, i.pub = kind, algorithm(pub), keyFingerprint(pub), pub
	}
}

func addCert(i *inspected, cert *x509.Certificate, now time.Time) {
	i.certs = append(i.certs, cert)
	ci := certInfo{
		Subject: cert.Subject.String(), Issuer: cert.Issuer.String(), IsCA: cert.IsCA, Algorithm: algorithm(cert.PublicKey),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DaysLeft: certs.DaysLeft(cert.NotAfter, now),
		Fingerprint: certs.SHA256Fingerprint(cert), KeyPrint: keyFingerprint(cert.PublicKey),
	}
	ci.SANs = append(ci.SANs, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		ci.SANs = append(ci.SANs, ip.String())
	}
	i.Certs = append(i.Certs, ci)
	switch left := cert.NotAfter.Sub(now); {
	case left <= 0:
		i.Warnings = append(i.Warnings, fmt.Sprintf("%s has EXPIRED", certName(i, len(i.certs))))
	case left < expiryWarning:
		i.Warnings = append(i.Warnings, fmt.Sprintf("%s expires in %s: renew it with 'nodekeys certgen --force'",
			certName(i, len(i.certs)), strings.TrimSuffix(daysLeftText(ci.DaysLeft), " left")))
	}
}

func certName(i *inspected, n int) string {
	if n == 1 {
		return "the certificate"
	}
	return fmt.Sprintf("certificate %d", n)
}

// finishCerts names the file's kind after its first certificate.
func finishCerts(i *inspected) {
	first := i.Certs[0]
	i.Kind = "certificate"
	if first.IsCA {
		i.Kind = "CA certificate"
	}
	if len(i.Certs) > 1 {
		i.Kind = fmt.Sprintf("certificate chain of %d", len(i.Certs))
	}
	i.Algorithm, i.Fingerprint, i.pub = first.Algorithm, first.Fingerprint, i.certs[0].PublicKey
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

// absPath makes a path absolute for config files read from elsewhere.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
