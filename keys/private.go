package keys

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/ssh"

	"github.com/nodekeys/nodekeys/internal/safefile"
)

// ErrEncrypted is returned for a private key protected by a passphrase:
// Flower SuperNodes load unencrypted keys only.
var ErrEncrypted = errors.New("the private key is encrypted: Flower needs an unencrypted key")

// Pair is a SuperNode key pair together with the bytes of its two files.
type Pair struct {
	Private *ecdsa.PrivateKey
	Public  *PublicKey
	// PrivateFile is the OpenSSH private key file, as ssh-keygen writes it.
	PrivateFile []byte
	// PublicFile is the .pub file: "ecdsa-sha2-nistp384 BASE64 \n".
	PublicFile []byte
}

// Generator makes P-384 SuperNode key pairs. The zero value draws every key
// from crypto/rand. A Generator with a Seed derives key number i from the
// seed alone, so the same seed and index give byte-identical files on every
// run and machine: that is for test fixtures only, since anyone who knows
// the seed knows every key.
type Generator struct {
	Seed []byte
}

// Pair returns key pair number index (used only when g has a Seed).
func (g Generator) Pair(index int) (*Pair, error) {
	var (
		priv  *ecdsa.PrivateKey
		check uint32
		err   error
	)
	if g.Seed == nil {
		if priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			return nil, fmt.Errorf("keys: generating: %w", err)
		}
		var b [4]byte
		rand.Read(b[:])
		check = binary.BigEndian.Uint32(b[:])
	} else {
		if priv, check, err = derive(g.Seed, index); err != nil {
			return nil, err
		}
	}
	return NewPair(priv, check)
}

// NewPair encodes priv as SuperNode key files. check is the OpenSSH check
// integer written twice in the private key file (random in ssh-keygen).
func NewPair(priv *ecdsa.PrivateKey, check uint32) (*Pair, error) {
	pub, err := NewPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	pf, err := marshalOpenSSH(priv, pub, "", check)
	if err != nil {
		return nil, err
	}
	return &Pair{Private: priv, Public: pub, PrivateFile: pf, PublicFile: pub.MarshalPublicKey("")}, nil
}

// derive returns key index of seed: a P-384 scalar from HKDF-SHA-512, drawn
// again with a counter in the rare case (about 2^-190) it is not below the
// group order, and the OpenSSH check integer.
func derive(seed []byte, index int) (*ecdsa.PrivateKey, uint32, error) {
	if len(seed) == 0 {
		return nil, 0, errors.New("keys: empty seed")
	}
	for ctr := 0; ctr < 64; ctr++ {
		d, err := hkdf.Key(sha512.New, seed, nil, fmt.Sprintf("nodekeys v1 P-384 key %d try %d", index, ctr), 48)
		if err != nil {
			return nil, 0, fmt.Errorf("keys: deriving: %w", err)
		}
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), d)
		if err != nil {
			continue
		}
		c, err := hkdf.Key(sha512.New, seed, nil, fmt.Sprintf("nodekeys v1 P-384 check %d", index), 4)
		if err != nil {
			return nil, 0, fmt.Errorf("keys: deriving: %w", err)
		}
		return priv, binary.BigEndian.Uint32(c), nil
	}
	return nil, 0, errors.New("keys: deriving: no valid scalar")
}

// marshalOpenSSH writes the unencrypted "openssh-key-v1" format of
// OpenSSH's PROTOCOL.key, with base64 in 70-character lines like ssh-keygen.
func marshalOpenSSH(priv *ecdsa.PrivateKey, pub *PublicKey, comment string, check uint32) ([]byte, error) {
	d, err := priv.Bytes()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	point, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	ci, _ := curveOf(priv.Curve)
	str := func(b *cryptobyte.Builder, s []byte) {
		b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s) })
	}
	var sec cryptobyte.Builder
	sec.AddUint32(check)
	sec.AddUint32(check)
	str(&sec, []byte(ci.keyType))
	str(&sec, []byte(ci.name))
	str(&sec, point)
	str(&sec, mpint(d))
	str(&sec, []byte(comment))
	for i := byte(1); len(sec.BytesOrPanic())%8 != 0; i++ {
		sec.AddUint8(i)
	}
	var b cryptobyte.Builder
	b.AddBytes([]byte("openssh-key-v1\x00"))
	str(&b, []byte("none"))
	str(&b, []byte("none"))
	str(&b, nil)
	b.AddUint32(1)
	str(&b, pub.blob)
	str(&b, sec.BytesOrPanic())
	raw, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var sb strings.Builder
	sb.WriteString("-----BEGIN OPENSSH PRIVATE KEY-----\n")
	for len(enc) > 70 {
		sb.WriteString(enc[:70])
		sb.WriteByte('\n')
		enc = enc[70:]
	}
	sb.WriteString(enc)
	sb.WriteString("\n-----END OPENSSH PRIVATE KEY-----\n")
	return []byte(sb.String()), nil
}

// mpint encodes a non-negative big-endian integer as an SSH mpint body
// (RFC 4251 section 5): no leading zeros, a zero byte if the top bit is set.
func mpint(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) > 0 && b[0]&0x80 != 0 {
		return append([]byte{0}, b...)
	}
	return b
}

// ParsePrivateKey parses an unencrypted ECDSA private key in OpenSSH,
// PKCS #8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY") PEM form, on P-256,
// P-384 or P-521.
func ParsePrivateKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		if t := bytes.TrimSpace(b); bytes.HasPrefix(t, []byte("ecdsa-sha2-")) || bytes.HasPrefix(t, []byte("ssh-")) {
			return nil, parseErr(ErrFormat, "this is a public key (.pub); give the private key, the file without .pub")
		}
		return nil, parseErr(ErrFormat, "no PEM private key found")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "OPENSSH PRIVATE KEY":
		k, err = ssh.ParseRawPrivateKey(b)
		var pme *ssh.PassphraseMissingError
		if errors.As(err, &pme) {
			return nil, parseErr(ErrEncrypted, "")
		}
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		if _, enc := block.Headers["Proc-Type"]; enc {
			return nil, parseErr(ErrEncrypted, "")
		}
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, parseErr(ErrEncrypted, "")
	default:
		return nil, parseErr(ErrNotEC, "a %q PEM block is not a private key Flower can use", printable([]byte(block.Type)))
	}
	if err != nil {
		return nil, parseErr(ErrFormat, "%v", err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if _, ok := curveOf(k.Curve); !ok {
			return nil, parseErr(ErrCurve, "%s", k.Curve.Params().Name)
		}
		return k, nil
	default:
		return nil, parseErr(ErrNotEC, "the private key is %s", keyKind(k))
	}
}

// MaxKeyFileSize bounds what ReadPrivateKey and ReadPublicKey read: key
// files are a few hundred bytes.
const MaxKeyFileSize = 64 << 10

// readSmall reads a key file of at most MaxKeyFileSize bytes; it refuses
// folders, FIFOs and devices.
func readSmall(path string) ([]byte, error) {
	return safefile.ReadRegular(path, MaxKeyFileSize)
}

// ReadPublicKey reads a .pub file holding one OpenSSH public key line.
func ReadPublicKey(path string) (*PublicKey, error) {
	b, err := readSmall(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	k, err := ParsePublicKey(b)
	return k, withPath(err, path)
}

// ReadPrivateKey reads a private key file (see ParsePrivateKey). Like ssh,
// it refuses a file that users other than its owner can write to.
func ReadPrivateKey(path string) (*ecdsa.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if fi.Mode().IsRegular() && fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("keys: %s: others can write to this private key (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := readSmall(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	k, err := ParsePrivateKey(b)
	return k, withPath(err, path)
}

// withPath names the file in a ParseError.
func withPath(err error, path string) error {
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.Path = path
	}
	return err
}

// keyKind names a private key type for messages.
func keyKind(k any) string {
	switch k.(type) {
	case *rsa.PrivateKey:
		return "RSA"
	case ed25519.PrivateKey, *ed25519.PrivateKey:
		return "Ed25519"
	case *ecdh.PrivateKey:
		return "X25519"
	}
	return fmt.Sprintf("%T", k)
}
