package verify_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// pySuperNode signs headers as a Flower SuperNode does (docs/protocol.md,
// "Node authentication"): the PEM of the public key, datetime isoformat, ECDSA with SHA-256.
// It writes the allowlist CSV and one JSON line per call.
const pySuperNode = `
import base64, csv, json, random, sys
from datetime import datetime, timedelta, timezone
from cryptography.hazmat.primitives import hashes, serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
out_dir, nkeys, ncalls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(7)
keys = [ec.generate_private_key(ec.SECP384R1()) for _ in range(nkeys)]
with open(out_dir + "/allow.csv", "w") as f:
    f.write(",".join(k.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH).decode() for k in keys) + "\n")
base = datetime(2026, 11, 22, 17, 45, 3, tzinfo=timezone.utc)
with open(out_dir + "/calls.jsonl", "w") as f:
    for i in range(ncalls):
        k = keys[i % nkeys]
        t = base + timedelta(seconds=rnd.randrange(-10**8, 10**8), microseconds=0 if i % 5 == 0 else rnd.randrange(10**6))
        ts = t.isoformat()
        sig = k.sign(ts.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        pem = k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
        f.write(json.dumps({"flwr-public-key-bin": base64.b64encode(pem).decode(), "flwr-timestamp": ts,
                            "flwr-signature-bin": base64.b64encode(sig).decode()}) + "\n")
`

type wireHeaders struct {
	PublicKey string `json:"flwr-public-key-bin"`
	Timestamp string `json:"flwr-timestamp"`
	Signature string `json:"flwr-signature-bin"`
	KeyFile   string `json:"key_file,omitempty"`
}

func calls(t *testing.T) int {
	if peer.Long() {
		return 3000
	}
	return 120
}

func TestPythonSignedHeadersVerifyInGo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := calls(t)
	peer.Python(t, nil, pySuperNode, dir, "16", fmt.Sprint(n))
	list, err := csvlist.ReadFile(filepath.Join(dir, "allow.csv"))
	require.NoError(t, err)
	al, err := verify.NewAllowlist(list.Keys())
	require.NoError(t, err)
	v := verify.New(al)

	f, err := os.Open(filepath.Join(dir, "calls.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	got, noFraction := 0, 0
	for sc.Scan() {
		var w wireHeaders
		require.NoError(t, json.Unmarshal(sc.Bytes(), &w))
		pemBytes, _ := base64.StdEncoding.DecodeString(w.PublicKey)
		sig, _ := base64.StdEncoding.DecodeString(w.Signature)
		h := sign.Headers{PublicKey: pemBytes, Timestamp: w.Timestamp, Signature: sig}
		ts, ok := flwr.ParseTimestamp(w.Timestamp)
		require.True(t, ok, w.Timestamp)
		// Python's isoformat is exactly ours.
		require.Equal(t, w.Timestamp, flwr.FormatTimestamp(ts))
		if !strings.Contains(w.Timestamp, ".") {
			noFraction++
		}
		// Exact PEM bytes hit the allowlist with no canonicalisation.
		_, err := v.VerifyAt(h, ts.Add(time.Second))
		require.NoError(t, err, w.Timestamp)
		h.Timestamp = flwr.FormatTimestamp(ts.Add(time.Microsecond))
		_, err = v.VerifyAt(h, ts.Add(time.Second))
		require.Equal(t, verify.BadSignature, reasonOf(err))
		got++
	}
	require.NoError(t, sc.Err())
	assert.Equal(t, n, got)
	assert.Positive(t, noFraction, "the no-microseconds form was covered")
}

// pySuperLink checks Go-signed headers as Flower's SuperLink does: the PEM
// must be byte-equal to what cryptography makes of the node's key, the
// signature must verify, and the timestamp must parse with fromisoformat.
const pySuperLink = `
import base64, json, sys
from datetime import datetime
from cryptography.hazmat.primitives import hashes, serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.exceptions import InvalidSignature
ok = bad = 0
for line in sys.stdin:
    c = json.loads(line)
    pem = base64.b64decode(c["flwr-public-key-bin"])
    sig = base64.b64decode(c["flwr-signature-bin"])
    ts = c["flwr-timestamp"]
    priv = s.load_ssh_private_key(open(c["key_file"], "rb").read(), password=None)
    want = priv.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
    assert pem == want, "PEM bytes differ"
    assert datetime.fromisoformat(ts).isoformat() == ts, ts
    pub = s.load_pem_public_key(pem)
    pub.verify(sig, ts.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    try:
        pub.verify(sig, (ts + " ").encode("ascii"), ec.ECDSA(hashes.SHA256()))
        bad += 1
    except InvalidSignature:
        ok += 1
print(ok, bad)
`

func TestGoSignedHeadersVerifyInPython(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := calls(t)
	rng := rand.New(rand.NewPCG(3, 4))
	var in bytes.Buffer
	var signers []*sign.Signer
	var files []string
	for i := range 16 {
		p, err := keys.Generator{}.Pair(i)
		require.NoError(t, err)
		path := filepath.Join(dir, fmt.Sprintf("client_credentials_%d", i))
		require.NoError(t, os.WriteFile(path, p.PrivateFile, 0o600))
		s, err := sign.ReadKey(path)
		require.NoError(t, err)
		signers = append(signers, s)
		files = append(files, path)
	}
	base := time.Date(2026, 11, 22, 17, 45, 3, 0, time.UTC)
	for i := range n {
		ts := base.Add(time.Duration(rng.Int64N(2e17)) - 1e17)
		if i%5 == 0 {
			ts = ts.Truncate(time.Second)
		}
		h, err := signers[i%16].SignTimestamp(flwr.FormatTimestamp(ts))
		require.NoError(t, err)
		line, err := json.Marshal(wireHeaders{
			PublicKey: base64.StdEncoding.EncodeToString(h.PublicKey), Timestamp: h.Timestamp,
			Signature: base64.StdEncoding.EncodeToString(h.Signature), KeyFile: files[i%16],
		})
		require.NoError(t, err)
		in.Write(append(line, '\n'))
	}
	out := peer.Python(t, in.Bytes(), pySuperLink)
	assert.Equal(t, fmt.Sprintf("%d 0", n), strings.TrimSpace(string(out)))
}
