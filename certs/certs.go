package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nodekeys/nodekeys/internal/safefile"
)

// KeyType names a key algorithm for certificates.
type KeyType string

// The key types certgen makes. ECDSA P-384 is the default: fast, and what
// the rest of a Flower federation's keys use. RSA-4096 is what
// generate_cert.sh makes.
const (
	ECDSAP384 KeyType = "ecdsa-p384"
	ECDSAP256 KeyType = "ecdsa-p256"
	RSA4096   KeyType = "rsa-4096"
)

// Validity limits, in days.
const (
	// MaxServerDays is the longest leaf validity browsers accept (CA/B
	// Forum baseline requirements since 2020).
	MaxServerDays = 397
	// DefaultServerDays is generate_cert.sh's 365 days.
	DefaultServerDays = 365
	// DefaultCADays gives a development CA ten years: renewing the server
	// certificate then never means handing SuperNodes a new ca.crt.
	DefaultCADays = 3650
	MaxCADays     = 9125
)

// DefaultHosts are the SANs of generate_cert.sh's server certificate.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Errors callers may test for.
var (
	ErrKeyMismatch = errors.New("the key does not match the certificate")
	ErrEncrypted   = errors.New("the private key is encrypted; give an unencrypted key")
	ErrNotCA       = errors.New("the certificate is not a CA (basicConstraints CA:TRUE with keyCertSign)")
)

// GenerateKey makes a private key of type t.
func GenerateKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case ECDSAP384, "":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("certs: unknown key type %q (ecdsa-p384, ecdsa-p256 or rsa-4096)", t)
}

// CA is a certificate authority: its certificate and key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// randomSerial returns a random positive 128-bit serial number (RFC 5280
// allows 20 octets; CA/B Forum asks for 64 bits of entropy).
func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	return s.Add(s, big.NewInt(1)), nil
}

// keyID is the subject key identifier of pub: the leftmost 160 bits of the
// SHA-256 of its subjectPublicKey (RFC 7093 section 2, method 1).
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// NewCA makes a self-signed development CA with key, valid for days.
func NewCA(key crypto.Signer, days int, now time.Time) (*CA, error) {
	if days < 1 || days > MaxCADays {
		return nil, fmt.Errorf("certs: CA validity must be 1 to %d days, got %d", MaxCADays, days)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := keyID(key.Public())
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	name := pkix.Name{Organization: []string{"Flower development CA"}, CommonName: "Flower development CA " + serial.Text(16)[:8]}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      name,
		// An hour back tolerates clocks that lag the one that issued it.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(0, 0, days),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// Path length 0: this CA signs server certificates, never other CAs.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:   ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Issue makes a server certificate for hosts (DNS names or IP addresses)
// and the public key pub, valid for days.
func (ca *CA) Issue(pub crypto.PublicKey, hosts []string, days int, now time.Time) (*x509.Certificate, error) {
	if days < 1 || days > MaxServerDays {
		return nil, fmt.Errorf("certs: server validity must be 1 to %d days, got %d", MaxServerDays, days)
	}
	if len(hosts) == 0 {
		return nil, errors.New("certs: a server certificate needs at least one SAN")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := keyID(pub)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The common name alone: an organization without a country is what
		// linters flag (zlint e_sub_cert_country_name_must_appear), and the
		// SANs, not the subject, are what clients check.
		Subject:   pkix.Name{CommonName: hosts[0]},
		NotBefore: now.Add(-time.Hour),
		NotAfter:  now.AddDate(0, 0, days),
		// keyEncipherment only where the key can encipher: RSA key transport.
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		SubjectKeyId: ski,
	}
	if _, ok := pub.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	for _, h := range hosts {
		san, err := ParseSAN(h)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(san); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	if now.AddDate(0, 0, days).After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("certs: the CA expires on %s, before the %d days asked for; make a new CA or ask for fewer days",
			ca.Cert.NotAfter.Format("2006-01-02"), days)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return x509.ParseCertificate(der)
}

// ParseSAN checks a --san value: an IP address, or a DNS name of letters,
// digits and hyphens (a leading "*." wildcard allowed). It returns the
// name lowercased, or the IP as given.
func ParseSAN(s string) (string, error) {
	if ip := net.ParseIP(s); ip != nil {
		return ip.String(), nil
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("certs: invalid SAN %q: %s", printable(s), why)
	}
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if name == "" {
		return bad("empty")
	}
	if len(name) > 253 {
		return bad("longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for i, l := range labels {
		switch {
		case l == "*" && i == 0 && len(labels) > 2:
			continue
		case l == "":
			return bad("empty label")
		case len(l) > 63:
			return bad("a label is longer than 63 characters")
		case l[0] == '-' || l[len(l)-1] == '-':
			return bad("a label starts or ends with '-'")
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return bad("not an IP address or a DNS name of letters, digits and '-'")
			}
		}
	}
	if strings.Count(s, ":") > 0 {
		return bad("not an IP address")
	}
	// A name whose last label is all digits is no host name (RFC 1123,
	// RFC 3696): it is a mistyped address, such as 10.0.0.256.
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return bad("not an IP address (and a DNS name cannot end in a number)")
	}
	return name, nil
}

// ParseSANs checks every SAN with ParseSAN and refuses a name or address
// given twice (in any spelling of it).
func ParseSANs(in []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, h := range in {
		san, err := ParseSAN(h)
		if err != nil {
			return nil, err
		}
		if seen[san] {
			return nil, fmt.Errorf("certs: the SAN %q is given twice", printable(h))
		}
		seen[san] = true
		out = append(out, san)
	}
	return out, nil
}

// MergeSANs checks base and add and returns base followed by the names of
// add that base does not already hold: adding a name that is there (one of
// DefaultHosts, or a name a renewal keeps) is not an error. A name given
// twice within base, or within add, is.
func MergeSANs(base, add []string) ([]string, error) {
	out, err := ParseSANs(base)
	if err != nil {
		return nil, err
	}
	extra, err := ParseSANs(add)
	if err != nil {
		return nil, err
	}
	for _, h := range extra {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out, nil
}

// printable makes s safe to echo in a message: control characters
// replaced, and cut after 64 characters.
func printable(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == 64 {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// MarshalCertificate returns cert as PEM.
func MarshalCertificate(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// MarshalKey returns key as PKCS #8 PEM ("PRIVATE KEY"), what OpenSSL 3
// writes and gRPC reads.
func MarshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey parses an unencrypted PEM private key: PKCS #8, SEC 1 or PKCS #1.
func ParseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
		return nil, ErrEncrypted
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("a %q PEM block is not a private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	return s, nil
}

// ParseCertificate parses the first PEM certificate of b.
func ParseCertificate(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	return x509.ParseCertificate(block.Bytes)
}

// readFile reads a PEM file of at most 1 MiB; it refuses folders, FIFOs
// and devices.
func readFile(path string) ([]byte, error) {
	return safefile.ReadRegular(path, 1<<20)
}

// ReadKey reads a PEM private key file.
func ReadKey(path string) (crypto.Signer, error) { return readParsed(path, ParseKey) }

// ReadCertificate reads a PEM certificate file.
func ReadCertificate(path string) (*x509.Certificate, error) {
	return readParsed(path, ParseCertificate)
}

// readParsed reads path and parses it, naming path in any error.
func readParsed[T any](path string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	b, err := readFile(path)
	if err != nil {
		return zero, fmt.Errorf("certs: %w", err)
	}
	v, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("certs: %s: %w", path, err)
	}
	return v, nil
}

// KeyMatches reports whether key is the private key of cert.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}

// ReadCA reads a CA certificate and its key, and checks that they match
// and that the certificate can sign server certificates.
func ReadCA(certPath, keyPath string) (*CA, error) {
	cert, err := ReadCertificate(certPath)
	if err != nil {
		return nil, err
	}
	key, err := ReadKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !KeyMatches(cert, key) {
		return nil, fmt.Errorf("certs: %s and %s: %w", keyPath, certPath, ErrKeyMismatch)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 && cert.KeyUsage != 0 {
		return nil, fmt.Errorf("certs: %s: %w", certPath, ErrNotCA)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// SHA256Fingerprint returns the SHA-256 of cert's DER as "SHA256:" and
// unpadded base64, the form ssh-keygen prints key fingerprints in, so that
// nodekeys shows one fingerprint format everywhere. (openssl x509
// -fingerprint -sha256 prints the same digest in colon hex.)
func SHA256Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// DaysLeft returns the whole days from now until t, rounded up: a
// certificate issued for 365 days has 365 days left when issued, and one
// with an hour left has 1. It is 0 or less once t has passed.
func DaysLeft(t, now time.Time) int {
	d := t.Sub(now)
	if d <= 0 {
		return -int(-d / (24 * time.Hour))
	}
	return int((d + 24*time.Hour - 1) / (24 * time.Hour))
}
