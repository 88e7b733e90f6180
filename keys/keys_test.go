package keys_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/keys"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// writePair writes a pair as keygen does and returns the private key path.
func writePair(t *testing.T, p *keys.Pair) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "client_credentials_1")
	require.NoError(t, os.WriteFile(path, p.PrivateFile, 0o600))
	require.NoError(t, os.WriteFile(path+".pub", p.PublicFile, 0o644))
	return path
}

func TestPairLoadsInSSHKeygen(t *testing.T) {
	for i := range 5 {
		p, err := keys.Generator{}.Pair(i)
		require.NoError(t, err)
		path := writePair(t, p)
		// ssh-keygen -y derives the public key from our private key file.
		out := peer.Run(t, nil, "ssh-keygen", "-y", "-f", path)
		assert.Equal(t, p.Public.AuthorizedKey(), strings.TrimSpace(string(out)))
		// ssh-keygen -l reads the .pub and agrees on the fingerprint.
		out = peer.Run(t, nil, "ssh-keygen", "-l", "-f", path+".pub")
		assert.Equal(t, "384 "+p.Public.Fingerprint()+" no comment (ECDSA)", strings.TrimSpace(string(out)))
	}
}

const pyLoadPair = `
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
priv = s.load_ssh_private_key(open(sys.argv[1], "rb").read(), password=None)
pub = s.load_ssh_public_key(open(sys.argv[1] + ".pub", "rb").read())
assert isinstance(priv, ec.EllipticCurvePrivateKey) and priv.curve.name == "secp384r1"
assert priv.public_key().public_numbers() == pub.public_numbers()
sys.stdout.buffer.write(pub.public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
`

func TestPairLoadsInPythonCryptography(t *testing.T) {
	for i := range 5 {
		p, err := keys.Generator{}.Pair(i)
		require.NoError(t, err)
		out := peer.Python(t, nil, pyLoadPair, writePair(t, p))
		// The PEM bytes Flower puts on the wire are the ones we make.
		assert.Equal(t, string(out), string(p.Public.PEM()))
	}
}

func TestSSHKeygenKeysLoad(t *testing.T) {
	for _, bits := range []string{"256", "384", "521"} {
		path := filepath.Join(t.TempDir(), "k")
		peer.Run(t, nil, "ssh-keygen", "-q", "-t", "ecdsa", "-b", bits, "-N", "", "-C", "node@example", "-f", path)
		priv, err := keys.ReadPrivateKey(path)
		require.NoError(t, err)
		pub, err := keys.ReadPublicKey(path + ".pub")
		require.NoError(t, err)
		assert.True(t, priv.PublicKey.Equal(pub.Key), bits)
		assert.Equal(t, "node@example", pub.Comment)
		fp := strings.Fields(string(peer.Run(t, nil, "ssh-keygen", "-l", "-f", path+".pub")))[1]
		assert.Equal(t, fp, pub.Fingerprint())
	}
}

const pyWriteKeys = `
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
d = sys.argv[1]
for name, curve in (("p256", ec.SECP256R1()), ("p384", ec.SECP384R1()), ("p521", ec.SECP521R1())):
    k = ec.generate_private_key(curve)
    open(f"{d}/{name}.openssh", "wb").write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.OpenSSH, s.NoEncryption()))
    open(f"{d}/{name}.pkcs8", "wb").write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
    open(f"{d}/{name}.sec1", "wb").write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()))
    open(f"{d}/{name}.pub", "wb").write(k.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH))
    open(f"{d}/{name}.pem", "wb").write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
`

func TestPythonKeysLoad(t *testing.T) {
	dir := t.TempDir()
	peer.Python(t, nil, pyWriteKeys, dir)
	for _, name := range []string{"p256", "p384", "p521"} {
		pub, err := keys.ReadPublicKey(filepath.Join(dir, name+".pub"))
		require.NoError(t, err)
		wantPEM, err := os.ReadFile(filepath.Join(dir, name+".pem"))
		require.NoError(t, err)
		assert.Equal(t, string(wantPEM), string(pub.PEM()), name)
		for _, form := range []string{"openssh", "pkcs8", "sec1"} {
			path := filepath.Join(dir, name+"."+form)
			require.NoError(t, os.Chmod(path, 0o600))
			priv, err := keys.ReadPrivateKey(path)
			require.NoError(t, err, path)
			assert.True(t, priv.PublicKey.Equal(pub.Key), path)
		}
	}
}

func TestPublicFileFormat(t *testing.T) {
	p, err := keys.Generator{}.Pair(1)
	require.NoError(t, err)
	// Exactly what `ssh-keygen -C ""` writes: the empty comment leaves a space.
	assert.Equal(t, p.Public.AuthorizedKey()+" \n", string(p.PublicFile))
	assert.True(t, strings.HasPrefix(string(p.PublicFile), "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQ"))
	// OpenSSH's 70-column base64.
	lines := strings.Split(strings.TrimSpace(string(p.PrivateFile)), "\n")
	require.Greater(t, len(lines), 3)
	assert.Equal(t, "-----BEGIN OPENSSH PRIVATE KEY-----", lines[0])
	for _, l := range lines[1 : len(lines)-2] {
		assert.Len(t, l, 70)
	}
}

func TestSeededIsReproducible(t *testing.T) {
	g := keys.Generator{Seed: []byte("0123456789abcdef0123456789abcdef")}
	a, err := g.Pair(7)
	require.NoError(t, err)
	b, err := g.Pair(7)
	require.NoError(t, err)
	c, err := g.Pair(8)
	require.NoError(t, err)
	d, err := keys.Generator{Seed: []byte("0123456789abcdef0123456789abcdeF")}.Pair(7)
	require.NoError(t, err)
	assert.Equal(t, a.PrivateFile, b.PrivateFile)
	assert.Equal(t, a.PublicFile, b.PublicFile)
	assert.NotEqual(t, a.PublicFile, c.PublicFile, "another index gives another key")
	assert.NotEqual(t, a.PublicFile, d.PublicFile, "another seed gives another key")

	// Golden files pin the derivation across versions and machines.
	golden := filepath.Join("testdata", "seeded_7")
	if *update {
		require.NoError(t, os.WriteFile(golden, a.PrivateFile, 0o600))
		require.NoError(t, os.WriteFile(golden+".pub", a.PublicFile, 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(a.PrivateFile))
	want, err = os.ReadFile(golden + ".pub")
	require.NoError(t, err)
	assert.Equal(t, string(want), string(a.PublicFile))
}

func TestParsePublicKeyErrors(t *testing.T) {
	good, err := keys.Generator{}.Pair(1)
	require.NoError(t, err)
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p256pub, err := keys.NewPublicKey(&p256.PublicKey)
	require.NoError(t, err)

	// Build wire blobs by hand for the invalid points.
	wire := func(typ, curve string, point []byte) string {
		var b bytes.Buffer
		for _, s := range [][]byte{[]byte(typ), []byte(curve), point} {
			b.Write([]byte{0, 0, byte(len(s) >> 8), byte(len(s))})
			b.Write(s)
		}
		return typ + " " + base64.StdEncoding.EncodeToString(b.Bytes())
	}
	offCurve := make([]byte, 97)
	offCurve[0] = 4
	offCurve[96] = 1
	blob := good.Public.Wire()
	for _, tc := range []struct {
		name, line string
		want       error
	}{
		{"empty", "", keys.ErrFormat},
		{"rsa", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7", keys.ErrNotEC},
		{"ed25519", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", keys.ErrNotEC},
		{"p192", "ecdsa-sha2-nistp192 AAAA", keys.ErrCurve},
		{"bad base64", "ecdsa-sha2-nistp384 AAAA!!!!", keys.ErrBase64},
		{"truncated", "ecdsa-sha2-nistp384 " + base64.StdEncoding.EncodeToString(blob[:len(blob)-10]), keys.ErrFormat},
		{"trailing bytes", "ecdsa-sha2-nistp384 " + base64.StdEncoding.EncodeToString(append(bytes.Clone(blob), 0, 0, 0, 0)), keys.ErrFormat},
		{"type mismatch", "ecdsa-sha2-nistp384 " + base64.StdEncoding.EncodeToString(p256pub.Wire()), keys.ErrFormat},
		{"not on curve", wire("ecdsa-sha2-nistp384", "nistp384", offCurve), keys.ErrPoint},
		{"identity", wire("ecdsa-sha2-nistp384", "nistp384", []byte{0}), keys.ErrIdentity},
		{"compressed", wire("ecdsa-sha2-nistp384", "nistp384", append([]byte{2}, offCurve[1:49]...)), keys.ErrFormat},
		{"curve name mismatch", wire("ecdsa-sha2-nistp384", "nistp256", offCurve), keys.ErrFormat},
		{"pem", string(good.Public.PEM()), keys.ErrFormat},
		{"no data", "ecdsa-sha2-nistp384", keys.ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keys.ParsePublicKey([]byte(tc.line))
			require.ErrorIs(t, err, tc.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestParsePublicKeyAccepts(t *testing.T) {
	p, err := keys.Generator{}.Pair(1)
	require.NoError(t, err)
	for _, line := range []string{
		p.Public.AuthorizedKey(),
		string(p.PublicFile),
		"  " + p.Public.AuthorizedKey() + " a comment with spaces\r\n",
	} {
		k, err := keys.ParsePublicKey([]byte(line))
		require.NoError(t, err, line)
		assert.True(t, k.Equal(p.Public))
	}
}

func TestReadPrivateKeyErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, perm))
		require.NoError(t, os.Chmod(p, perm))
		return p
	}
	good, err := keys.Generator{}.Pair(1)
	require.NoError(t, err)
	rsaDER, err := x509.MarshalPKCS8PrivateKey(mustRSA(t))
	require.NoError(t, err)

	enc := filepath.Join(dir, "encrypted")
	peer.Run(t, nil, "ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "secret", "-f", enc)

	for _, tc := range []struct {
		name, path string
		want       string
	}{
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"folder", dir, "is a folder"},
		{"empty", write("empty", nil, 0o600), "no PEM private key"},
		{"garbage", write("garbage", []byte("\x00\x01binary"), 0o600), "no PEM private key"},
		{"truncated", write("trunc", good.PrivateFile[:200], 0o600), "no PEM private key"},
		{"public key", write("pub", good.PublicFile, 0o600), "this is a public key (.pub); give the private key, the file without .pub"},
		{"rsa", write("rsa", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}), 0o600), "not an EC key: the private key is RSA"},
		{"encrypted", enc, "encrypted"},
		{"world writable", write("ww", good.PrivateFile, 0o666), "others can write"},
		{"huge", write("huge", bytes.Repeat([]byte("A"), keys.MaxKeyFileSize+1), 0o600), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keys.ReadPrivateKey(tc.path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n")
			assert.NotContains(t, err.Error(), "b3BlbnNzaC1rZXktdjE", "never echo key material")
		})
	}
}

func BenchmarkPair(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := (keys.Generator{}).Pair(i); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPairSeeded(b *testing.B) {
	g := keys.Generator{Seed: []byte("0123456789abcdef0123456789abcdef")}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := g.Pair(i); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePublicKey(b *testing.B) {
	p, err := keys.Generator{}.Pair(1)
	require.NoError(b, err)
	line := p.PublicFile
	b.ReportAllocs()
	for b.Loop() {
		if _, err := keys.ParsePublicKey(line); err != nil {
			b.Fatal(err)
		}
	}
}

// PEM builds the SubjectPublicKeyInfo by hand; it must be what crypto/x509
// makes, on every curve.
func TestPEMMatchesX509(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		for range 20 {
			priv, err := ecdsa.GenerateKey(c, rand.Reader)
			require.NoError(t, err)
			pk, err := keys.NewPublicKey(&priv.PublicKey)
			require.NoError(t, err)
			want, err := keys.MarshalPEM(&priv.PublicKey)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(pk.PEM()))
			point, _ := priv.PublicKey.Bytes()
			assert.Equal(t, point, pk.Point())
		}
	}
}
