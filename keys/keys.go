package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// KeyType is the OpenSSH name of the key type Flower SuperNodes use.
const KeyType = "ecdsa-sha2-nistp384"

// Errors that say why a public key was refused. Parse errors wrap one of them.
var (
	ErrFormat   = errors.New("malformed key")
	ErrBase64   = errors.New("bad base64")
	ErrNotEC    = errors.New("not an EC key")
	ErrCurve    = errors.New("unsupported curve")
	ErrPoint    = errors.New("point not on the curve")
	ErrIdentity = errors.New("the identity point is not a public key")
)

// ParseError is a key that was refused. Err is one of the Err variables
// above; Detail says more, without echoing key material.
type ParseError struct {
	// Path is the file the key was read from, if any.
	Path   string
	Err    error
	Detail string
}

func parseErr(err error, format string, args ...any) *ParseError {
	return &ParseError{Err: err, Detail: fmt.Sprintf(format, args...)}
}

// Error returns "keys: ", the path if known, and Reason.
func (e *ParseError) Error() string {
	if e.Path != "" {
		return "keys: " + e.Path + ": " + e.Reason()
	}
	return "keys: " + e.Reason()
}

// Reason is the message without the package prefix, for callers that say
// where the key was.
func (e *ParseError) Reason() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

// Unwrap returns one of the Err variables.
func (e *ParseError) Unwrap() error { return e.Err }

// curveInfo ties the OpenSSH names of a NIST curve to crypto/elliptic,
// with the DER that starts a SubjectPublicKeyInfo of a key on it (RFC 5480:
// id-ecPublicKey, the curve's OID, and the BIT STRING header of the point).
type curveInfo struct {
	keyType, name, display string
	curve                  elliptic.Curve
	spkiPrefix             string
}

var curves = []curveInfo{
	{"ecdsa-sha2-nistp256", "nistp256", "P-256", elliptic.P256(),
		"\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\x03\x42\x00"},
	{"ecdsa-sha2-nistp384", "nistp384", "P-384", elliptic.P384(),
		"\x30\x76\x30\x10\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x05\x2b\x81\x04\x00\x22\x03\x62\x00"},
	{"ecdsa-sha2-nistp521", "nistp521", "P-521", elliptic.P521(),
		"\x30\x81\x9b\x30\x10\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x05\x2b\x81\x04\x00\x23\x03\x81\x86\x00"},
}

// curveByType finds the curve of an OpenSSH key type, or says why the type
// is refused; what names where the type was read ("the type is").
func curveByType(typ []byte, what string) (curveInfo, error) {
	for _, c := range curves {
		if c.keyType == string(typ) {
			return c, nil
		}
	}
	if bytes.HasPrefix(typ, []byte("ecdsa-sha2-")) {
		return curveInfo{}, parseErr(ErrCurve, "%q", printable(typ))
	}
	return curveInfo{}, parseErr(ErrNotEC, "%s %q", what, printable(typ))
}

func curveOf(c elliptic.Curve) (curveInfo, bool) {
	for _, ci := range curves {
		if ci.curve == c {
			return ci, true
		}
	}
	return curveInfo{}, false
}

// PublicKey is a parsed OpenSSH ECDSA public key.
type PublicKey struct {
	// Key is the public key; its curve is P-256, P-384 or P-521.
	Key *ecdsa.PublicKey
	// Comment is the text after the base64 blob, if any.
	Comment string
	// blob is the SSH wire encoding (RFC 5656 section 3.1).
	blob []byte
}

// NewPublicKey wraps an ECDSA public key on a NIST curve.
func NewPublicKey(pub *ecdsa.PublicKey) (*PublicKey, error) {
	ci, ok := curveOf(pub.Curve)
	if !ok {
		return nil, parseErr(ErrCurve, "%s", pub.Curve.Params().Name)
	}
	point, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	var b cryptobyte.Builder
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(ci.keyType)) })
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(ci.name)) })
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(point) })
	return &PublicKey{Key: pub, blob: b.BytesOrPanic()}, nil
}

// ParsePublicKey parses one OpenSSH public key line, "TYPE BASE64 [COMMENT]",
// the form of a .pub file and of each element of Flower's allowlist CSV.
// Surrounding white space and a final newline are ignored. The key must be
// an ECDSA key on P-256, P-384 or P-521 whose point lies on the curve.
func ParsePublicKey(line []byte) (*PublicKey, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, parseErr(ErrFormat, "empty")
	}
	if bytes.HasPrefix(line, []byte("-----BEGIN")) {
		return nil, parseErr(ErrFormat, "this is PEM, not an OpenSSH public key line")
	}
	typ, rest, _ := bytes.Cut(line, []byte{' '})
	rest = bytes.TrimLeft(rest, " \t")
	b64, comment, _ := bytes.Cut(rest, []byte{' '})
	if bytes.ContainsAny(typ, "\t\r\n") || bytes.ContainsAny(b64, "\t\r\n") {
		return nil, parseErr(ErrFormat, "unexpected control character")
	}
	if len(b64) == 0 {
		return nil, parseErr(ErrFormat, "no key data after the type")
	}
	ci, err := curveByType(typ, "the type is")
	if err != nil {
		return nil, err
	}
	blob := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	n, err := base64.StdEncoding.Strict().Decode(blob, b64)
	if err != nil {
		return nil, parseErr(ErrBase64, "%v", err)
	}
	k, err := ParseWireKey(blob[:n])
	if err != nil {
		return nil, err
	}
	if kc, _ := curveOf(k.Key.Curve); kc.keyType != ci.keyType {
		return nil, parseErr(ErrFormat, "the line says %s but the key is %s", ci.keyType, kc.keyType)
	}
	k.Comment = string(bytes.TrimSpace(comment))
	return k, nil
}

// ParseWireKey parses an ECDSA public key in the SSH wire encoding of
// RFC 5656 section 3.1: string type, string curve, string Q.
func ParseWireKey(blob []byte) (*PublicKey, error) {
	s := cryptobyte.String(blob)
	var typ, name, point []byte
	if !readString(&s, &typ) {
		return nil, parseErr(ErrFormat, "truncated key data")
	}
	ci, err := curveByType(typ, "the key data is")
	if err != nil {
		return nil, err
	}
	if !readString(&s, &name) || !readString(&s, &point) {
		return nil, parseErr(ErrFormat, "truncated key data")
	}
	if !s.Empty() {
		return nil, parseErr(ErrFormat, "trailing bytes after the key")
	}
	if string(name) != ci.name {
		return nil, parseErr(ErrFormat, "curve %q in a %s key", printable(name), ci.keyType)
	}
	pub, err := parsePoint(ci.curve, point)
	if err != nil {
		return nil, err
	}
	return &PublicKey{Key: pub, blob: bytes.Clone(blob)}, nil
}

// readString reads an SSH string: a uint32 length and that many bytes.
func readString(s *cryptobyte.String, out *[]byte) bool {
	var n uint32
	return s.ReadUint32(&n) && s.ReadBytes(out, int(n))
}

func parsePoint(c elliptic.Curve, point []byte) (*ecdsa.PublicKey, error) {
	if len(point) == 1 && point[0] == 0 {
		return nil, parseErr(ErrIdentity, "")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(c, point)
	if err != nil {
		if len(point) > 0 && point[0] == 4 && len(point) == 1+2*((c.Params().BitSize+7)/8) {
			return nil, parseErr(ErrPoint, "")
		}
		return nil, parseErr(ErrFormat, "not an uncompressed point of the right size")
	}
	return pub, nil
}

// printable keeps error messages to one line of short, plain text.
func printable(b []byte) string {
	const max = 40
	out := make([]rune, 0, len(b))
	for _, r := range string(b) {
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		out = append(out, r)
		if len(out) == max {
			return string(out) + "..."
		}
	}
	return string(out)
}

// Curve returns the key's curve name: "P-256", "P-384" or "P-521".
func (k *PublicKey) Curve() string {
	ci, _ := curveOf(k.Key.Curve)
	return ci.display
}

// Type returns the OpenSSH key type, such as "ecdsa-sha2-nistp384".
func (k *PublicKey) Type() string {
	ci, _ := curveOf(k.Key.Curve)
	return ci.keyType
}

// Wire returns the SSH wire encoding of the key. The caller must not modify it.
func (k *PublicKey) Wire() []byte { return k.blob }

// Fingerprint returns the key's fingerprint as `ssh-keygen -l` prints it:
// "SHA256:" and the unpadded base64 of the SHA-256 of the wire encoding.
func (k *PublicKey) Fingerprint() string { return FingerprintWire(k.blob) }

// FingerprintWire returns the ssh-keygen fingerprint of an SSH wire-encoded key.
func FingerprintWire(blob []byte) string {
	sum := sha256.Sum256(blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// AuthorizedKey returns "TYPE BASE64" with no comment and no newline: the
// form of an element of Flower's allowlist CSV.
func (k *PublicKey) AuthorizedKey() string {
	return k.Type() + " " + base64.StdEncoding.EncodeToString(k.blob)
}

// MarshalPublicKey returns the .pub file ssh-keygen writes for the key:
// "TYPE BASE64 COMMENT\n". With an empty comment the line ends in a space
// before the newline, as `ssh-keygen -C ""` leaves it.
func (k *PublicKey) MarshalPublicKey(comment string) []byte {
	return []byte(k.AuthorizedKey() + " " + comment + "\n")
}

// PEM returns the key as PEM SubjectPublicKeyInfo: "-----BEGIN PUBLIC
// KEY-----\n", base64 in 64-character lines, "-----END PUBLIC KEY-----\n",
// byte-for-byte what OpenSSL (and so Python's cryptography) writes. This is
// the value of Flower's flwr-public-key-bin metadata.
func (k *PublicKey) PEM() []byte {
	ci, _ := curveOf(k.Key.Curve)
	der := append([]byte(ci.spkiPrefix), k.Point()...)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Point returns the key's uncompressed point, 0x04 || X || Y, the last
// field of the wire encoding. The caller must not modify it.
func (k *PublicKey) Point() []byte {
	ci, _ := curveOf(k.Key.Curve)
	n := 1 + 2*((ci.curve.Params().BitSize+7)/8)
	return k.blob[len(k.blob)-n:]
}

// MarshalPEM returns pub as PEM SubjectPublicKeyInfo, as OpenSSL writes it.
func MarshalPEM(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// Equal reports whether k and o are the same key, whatever their comments.
func (k *PublicKey) Equal(o *PublicKey) bool { return bytes.Equal(k.blob, o.blob) }

// ParsePEMPublicKey parses a PEM SubjectPublicKeyInfo holding an ECDSA key
// on P-256, P-384 or P-521: the form of flwr-public-key-bin and of the
// keys a SuperLink lists.
func ParsePEMPublicKey(b []byte) (*PublicKey, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, parseErr(ErrFormat, "not one PEM PUBLIC KEY block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, parseErr(ErrFormat, "%v", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, parseErr(ErrNotEC, "the key is %T", pub)
	}
	return NewPublicKey(ec)
}
