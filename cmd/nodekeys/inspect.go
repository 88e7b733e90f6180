package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/keys"
)

// expiryWarning is how close to expiry a certificate gets a warning.
const expiryWarning = 30 * 24 * time.Hour

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "say what a certificate, key, .pub or allowlist CSV is, and whether keys match certificates",
		ArgsUsage: "FILE...",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON array"}},
		Action:    inspectAction,
	}
}

// inspected describes one file.
type inspected struct {
	File        string    `json:"file"`
	Kind        string    `json:"kind"`
	Algorithm   string    `json:"algorithm,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Subject     string    `json:"subject,omitempty"`
	Issuer      string    `json:"issuer,omitempty"`
	IsCA        bool      `json:"is_ca,omitempty"`
	SANs        []string  `json:"sans,omitempty"`
	NotBefore   time.Time `json:"not_before,omitzero"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	DaysLeft    *int      `json:"days_left,omitempty"`
	Keys        *int      `json:"keys,omitempty"`
	Matches     []string  `json:"matches,omitempty"`
	Warnings    []string  `json:"warnings,omitempty"`
	Error       string    `json:"error,omitempty"`

	pub  crypto.PublicKey
	cert *x509.Certificate
}

func inspectAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageErr("inspect takes one or more FILEs")
	}
	now := time.Now()
	var all []*inspected
	for _, f := range c.Args().Slice() {
		all = append(all, inspectFile(f, now))
	}
	// Which keys belong to which certificates.
	for _, k := range all {
		if k.pub == nil || k.cert != nil {
			continue
		}
		for _, crt := range all {
			if crt.cert != nil && samePublicKey(k.pub, crt.cert.PublicKey) {
				k.Matches = append(k.Matches, crt.File)
				crt.Matches = append(crt.Matches, k.File)
			}
		}
	}
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
	line := func(k, v string) { fmt.Fprintf(out, "  %-12s %s\n", k+":", v) }
	if i.Subject != "" {
		line("subject", i.Subject)
		line("issuer", i.Issuer)
	}
	if len(i.SANs) > 0 {
		line("SANs", strings.Join(i.SANs, ", "))
	}
	if !i.NotAfter.IsZero() {
		line("valid", fmt.Sprintf("%s to %s (%d days left)", i.NotBefore.Format("2006-01-02"), i.NotAfter.Format("2006-01-02"), *i.DaysLeft))
	}
	if i.Keys != nil {
		line("keys", fmt.Sprint(*i.Keys))
	}
	if i.Fingerprint != "" {
		line("fingerprint", i.Fingerprint)
	}
	for _, m := range i.Matches {
		line("matches", m)
	}
	for _, w := range i.Warnings {
		fmt.Fprintf(errw, "nodekeys: warning: %s: %s\n", i.File, w)
	}
}

func inspectFile(path string, now time.Time) *inspected {
	i := &inspected{File: path}
	fail := func(format string, args ...any) *inspected {
		i.Error = fmt.Sprintf(format, args...)
		return i
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fail("%v", errors.Unwrap(err))
	}
	if fi.IsDir() {
		return fail("is a folder")
	}
	if strings.HasSuffix(path, ".csv") {
		l, err := csvlist.ReadFile(path)
		if err != nil {
			return fail("%v", strings.TrimPrefix(err.Error(), path+":"))
		}
		i.Kind = "Flower allowlist CSV"
		n := len(l.Entries)
		i.Keys = &n
		for _, w := range l.Warnings {
			i.Warnings = append(i.Warnings, fmt.Sprintf("line %d column %d: %v", w.Line, w.Column, w.Err))
		}
		return i
	}
	if fi.Size() > 1<<20 {
		return fail("larger than 1 MiB: not a key or certificate")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fail("%v", errors.Unwrap(err))
	}
	if k, err := keys.ParsePublicKey(b); err == nil {
		i.Kind, i.Algorithm, i.Fingerprint, i.pub = "OpenSSH public key", "ECDSA "+k.Curve(), k.Fingerprint(), k.Key
		return i
	}
	block, _ := pem.Decode(b)
	if block == nil {
		if bytes.HasPrefix(bytes.TrimSpace(b), []byte("ssh-")) || bytes.HasPrefix(bytes.TrimSpace(b), []byte("ecdsa-")) {
			_, err := keys.ParsePublicKey(b)
			return fail("%v", strings.TrimPrefix(err.Error(), "keys: "))
		}
		return fail("not a PEM file, an OpenSSH key or a CSV allowlist")
	}
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fail("certificate: %v", err)
		}
		i.cert, i.pub = cert, cert.PublicKey
		i.Kind = "certificate"
		if cert.IsCA {
			i.Kind, i.IsCA = "CA certificate", true
		}
		i.Algorithm = algorithm(cert.PublicKey)
		i.Subject, i.Issuer = cert.Subject.String(), cert.Issuer.String()
		i.SANs = append(i.SANs, cert.DNSNames...)
		for _, ip := range cert.IPAddresses {
			i.SANs = append(i.SANs, ip.String())
		}
		i.NotBefore, i.NotAfter = cert.NotBefore, cert.NotAfter
		days := int(cert.NotAfter.Sub(now).Hours() / 24)
		i.DaysLeft = &days
		i.Fingerprint = "SHA256 " + certs.SHA256Fingerprint(cert)
		switch left := cert.NotAfter.Sub(now); {
		case left <= 0:
			i.Warnings = append(i.Warnings, "the certificate has EXPIRED")
		case left < expiryWarning:
			i.Warnings = append(i.Warnings, fmt.Sprintf("the certificate expires in %d days: renew it with 'nodekeys certgen --force'", days))
		}
		return i
	case "OPENSSH PRIVATE KEY":
		k, err := keys.ParsePrivateKey(b)
		if err != nil {
			return fail("%v", strings.TrimPrefix(err.Error(), "keys: "))
		}
		pk, _ := keys.NewPublicKey(&k.PublicKey)
		i.Kind, i.Algorithm, i.Fingerprint, i.pub = "OpenSSH private key", "ECDSA "+pk.Curve(), pk.Fingerprint(), &k.PublicKey
	case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		k, err := certs.ParseKey(b)
		if err != nil {
			return fail("%v", err)
		}
		i.Kind, i.Algorithm, i.pub = "PEM private key", algorithm(k.Public()), k.Public()
		i.Fingerprint = spkiFingerprint(k.Public())
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return fail("public key: %v", err)
		}
		i.Kind, i.Algorithm, i.pub = "PEM public key", algorithm(pub), pub
		i.Fingerprint = spkiFingerprint(pub)
	default:
		return fail("a %q PEM block is neither a key nor a certificate", block.Type)
	}
	if i.Error == "" && strings.Contains(i.Kind, "private") && fi.Mode().Perm()&0o077 != 0 {
		i.Warnings = append(i.Warnings, fmt.Sprintf("others can read this private key (mode %04o): chmod 600 it", fi.Mode().Perm()))
	}
	return i
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

// spkiFingerprint is the SHA-256 of the DER SubjectPublicKeyInfo, base64.
func spkiFingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return "SPKI-SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
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
