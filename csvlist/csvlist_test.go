package csvlist_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/keys"
)

func newKeys(t *testing.T, n int) []*keys.PublicKey {
	t.Helper()
	ks := make([]*keys.PublicKey, n)
	for i := range ks {
		p, err := keys.Generator{}.Pair(i)
		require.NoError(t, err)
		ks[i] = p.Public
	}
	return ks
}

func TestMarshalIsOneLine(t *testing.T) {
	ks := newKeys(t, 3)
	b := csvlist.Marshal(ks)
	want := ks[0].AuthorizedKey() + "," + ks[1].AuthorizedKey() + "," + ks[2].AuthorizedKey() + "\n"
	assert.Equal(t, want, string(b))
}

func TestParseLayouts(t *testing.T) {
	ks := newKeys(t, 4)
	a := make([]string, 4)
	for i, k := range ks {
		a[i] = k.AuthorizedKey()
	}
	for name, data := range map[string]string{
		"one line":      strings.Join(a, ",") + "\n",
		"no final EOL":  strings.Join(a, ","),
		"rows":          strings.Join(a, "\n") + "\n",
		"grid":          a[0] + "," + a[1] + "\n" + a[2] + "," + a[3] + "\n",
		"crlf":          strings.Join(a, "\r\n") + "\r\n",
		"comments":      a[0] + " alice," + a[1] + " bob@host," + a[2] + "," + a[3] + " x\n",
		"blank lines":   "\n" + a[0] + "\n\n" + strings.Join(a[1:], ",") + "\n\n",
		"quoted fields": `"` + a[0] + `","` + a[1] + `",` + a[2] + "," + a[3] + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			l, err := csvlist.Parse("allow.csv", []byte(data))
			require.NoError(t, err)
			require.Len(t, l.Entries, 4)
			for i, e := range l.Entries {
				assert.True(t, e.Key.Equal(ks[i]))
			}
			assert.Empty(t, l.Warnings)
		})
	}
}

func TestParseWarnings(t *testing.T) {
	ks := newKeys(t, 2)
	a, b := ks[0].AuthorizedKey(), ks[1].AuthorizedKey()
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	k256, err := keys.NewPublicKey(&p256.PublicKey)
	require.NoError(t, err)
	for _, tc := range []struct {
		name, data string
		want       string
		breaks     bool
		count      int
	}{
		{"bom", "\ufeff" + a + "," + b + "\n", "allow.csv:1:1: UTF-8 byte order mark", true, 2},
		{"trailing comma", a + "," + b + ",\n", "allow.csv:1:" + itoa(len(a)+len(b)+3) + ": trailing comma", true, 2},
		{"space after comma", a + ", " + b + "\n", "allow.csv:1:" + itoa(len(a)+2) + ": white space before the key", true, 2},
		{"p256", a + "," + k256.AuthorizedKey() + "\n", "allow.csv:1:" + itoa(len(a)+2) + ": P-256 key", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := csvlist.Parse("allow.csv", []byte(tc.data))
			require.NoError(t, err)
			assert.Len(t, l.Entries, tc.count)
			require.Len(t, l.Warnings, 1)
			assert.True(t, strings.HasPrefix(l.Warnings[0].Error(), tc.want), l.Warnings[0].Error())
			assert.Equal(t, tc.breaks, l.Warnings[0].BreaksFlower)
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestParseErrors(t *testing.T) {
	ks := newKeys(t, 2)
	a, b := ks[0].AuthorizedKey(), ks[1].AuthorizedKey()
	col2 := itoa(len(a) + 2)
	for _, tc := range []struct {
		name, data, want string
		err              error
	}{
		{"rsa", a + ",ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7\n", "allow.csv:1:" + col2 + ": not an EC key", keys.ErrNotEC},
		{"ed25519 on line 2", a + "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n", "allow.csv:2:1: not an EC key", keys.ErrNotEC},
		{"other curve", a + ",ecdsa-sha2-nistp192 AAAA\n", "allow.csv:1:" + col2 + ": unsupported curve", keys.ErrCurve},
		{"bad base64", a + ",ecdsa-sha2-nistp384 AAAA$$$$\n", "allow.csv:1:" + col2 + ": bad base64", keys.ErrBase64},
		{"duplicate", a + "," + b + "\n" + a + "\n", "allow.csv:2:1: duplicate key " + ks[0].Fingerprint() + " (first at line 1 column 1)", csvlist.ErrDuplicate},
		{"empty element", a + ",," + b + "\n", "allow.csv:1:" + col2 + ": empty element", csvlist.ErrEmpty},
		{"blank element", "  \n", "allow.csv:1:1: empty element", csvlist.ErrEmpty},
		{"huge element", a + "," + strings.Repeat("A", csvlist.MaxElementSize+1) + "\n", "allow.csv:1:" + col2 + ": too large", csvlist.ErrTooLarge},
		{"binary", "\x00\x01\x02\xff\xfe", "allow.csv:1:1: not a text file: a NUL byte", csvlist.ErrNotText},
		{"latin-1", "ecdsa-sha2-nistp384 AAAA,\ncaf\xe9\n", "allow.csv:2:4: not a text file: invalid UTF-8", csvlist.ErrNotText},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := csvlist.Parse("allow.csv", []byte(tc.data))
			require.Error(t, err)
			require.ErrorIs(t, err, tc.err)
			assert.True(t, strings.HasPrefix(err.Error(), tc.want), err.Error())
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestParseCollectsEveryProblem(t *testing.T) {
	ks := newKeys(t, 1)
	data := "ssh-rsa AAAA\n" + ks[0].AuthorizedKey() + "\n,\necdsa-sha2-nistp384 ???\n"
	l, err := csvlist.Parse("x.csv", []byte(data))
	var ps csvlist.Problems
	require.ErrorAs(t, err, &ps)
	assert.Len(t, ps, 3)
	assert.Len(t, l.Entries, 1, "the good key is still returned")
}

func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := csvlist.ReadFile(filepath.Join(dir, "missing.csv"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = csvlist.ReadFile(dir)
	require.ErrorContains(t, err, "is a folder")
	// A sparse file over the limit: refused by its size, nothing read.
	big := filepath.Join(dir, "big.csv")
	require.NoError(t, os.WriteFile(big, nil, 0o644))
	require.NoError(t, os.Truncate(big, csvlist.MaxFileSize+1))
	_, err = csvlist.ReadFile(big)
	require.ErrorIs(t, err, csvlist.ErrTooLarge)
}

// pySuperLink reads an allowlist the way a CSV-era Flower SuperLink does:
// csv.reader, every element through load_ssh_public_key, EC keys only, each
// kept as PEM SubjectPublicKeyInfo. It prints the PEMs, one per line.
const pySuperLink = `
import csv, sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
out = []
with open(sys.argv[1], newline="") as f:
    for row in csv.reader(f):
        for element in row:
            k = s.load_ssh_public_key(element.encode())
            if not isinstance(k, ec.EllipticCurvePublicKey):
                sys.exit("not EC")
            out.append(k.public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo).decode().replace("\n", "|"))
print("\n".join(out))
`

func TestFlowerReadsWhatWeWrite(t *testing.T) {
	ks := newKeys(t, 50)
	path := filepath.Join(t.TempDir(), "client_public_keys.csv")
	require.NoError(t, os.WriteFile(path, csvlist.Marshal(ks), 0o644))
	out := peer.Python(t, nil, pySuperLink, path)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, len(ks))
	for i, k := range ks {
		assert.Equal(t, strings.ReplaceAll(string(k.PEM()), "\n", "|"), lines[i])
	}
}

// The warnings mark exactly what Flower's reader fails on.
func TestWarningsMatchFlower(t *testing.T) {
	ks := newKeys(t, 2)
	a, b := ks[0].AuthorizedKey(), ks[1].AuthorizedKey()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"bom": "\ufeff" + a + "," + b + "\n", "trailing comma": a + "," + b + ",\n", "space": a + ", " + b + "\n",
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
		_, err := peer.TryPython(t, nil, pySuperLink, path)
		assert.Error(t, err, "Flower's reader should fail on %s", name)
		l, perr := csvlist.Parse(path, []byte(data))
		require.NoError(t, perr)
		require.Len(t, l.Warnings, 1)
		assert.True(t, l.Warnings[0].BreaksFlower)
	}
}

const pyWriteCSV = `
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
keys = [ec.generate_private_key(ec.SECP384R1()).public_key() for _ in range(20)]
lines = [k.public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH).decode() for k in keys]
open(sys.argv[1], "w").write("\n".join(",".join(lines[i:i+5]) for i in range(0, 20, 5)) + "\n")
for k in keys:
    sys.stdout.write(k.public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo).decode().replace("\n", "|") + "\n")
`

func TestWeReadWhatPythonWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grid.csv")
	out := peer.Python(t, nil, pyWriteCSV, path)
	l, err := csvlist.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, l.Entries, 20)
	for i, e := range l.Entries {
		assert.Equal(t, lines[i], strings.ReplaceAll(string(e.Key.PEM()), "\n", "|"))
	}
	assert.Equal(t, 4, l.Entries[15].Line)
	assert.True(t, bytes.HasSuffix(csvlist.Marshal(l.Keys()), []byte("\n")))
}

func TestGarbageIsBounded(t *testing.T) {
	data := []byte(strings.Repeat("garbage,", 100_000))
	_, err := csvlist.Parse("junk.csv", data)
	var ps csvlist.Problems
	require.ErrorAs(t, err, &ps)
	assert.Len(t, ps, csvlist.MaxProblems+1)
	assert.Contains(t, ps[len(ps)-1].Error(), "too many problems: stopped after 100")
}
