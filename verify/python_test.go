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
	return 300
}

func TestPythonSignedHeadersVerifyInGo(t *testing.T) {
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
		ts, ok := verify.ParseTimestamp(w.Timestamp)
		require.True(t, ok, w.Timestamp)
		// Python's isoformat is exactly ours.
		require.Equal(t, w.Timestamp, sign.FormatTimestamp(ts))
		if !strings.Contains(w.Timestamp, ".") {
			noFraction++
		}
		// Exact PEM bytes hit the allowlist with no canonicalisation.
		_, err := v.VerifyAt(h, ts.Add(time.Second))
		require.NoError(t, err, w.Timestamp)
		h.Timestamp = sign.FormatTimestamp(ts.Add(time.Microsecond))
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
		h, err := signers[i%16].SignTimestamp(sign.FormatTimestamp(ts))
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

// pyFromISO prints, for each line of stdin, the UTC instant Python's
// datetime.fromisoformat reads (microseconds since the epoch), or "refused".
const pyFromISO = `
import sys
from datetime import datetime, timezone
epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
for line in sys.stdin.read().split("\n")[:-1]:
    try:
        t = datetime.fromisoformat(line)
        if t.tzinfo is None:
            print("naive"); continue
        d = t - epoch
        print((d.days * 86400 + d.seconds) * 10**6 + d.microseconds)
    except Exception:
        print("refused")
`

// TestTimestampGrammarAgainstPython spells timestamps many ways and checks
// them against the machine's Python: whatever ParseTimestamp accepts,
// Python reads to the same instant; a SuperNode's forms are accepted by
// both; what Python reads and nodekeys refuses lies outside Python 3.10's
// grammar (ParseTimestamp's doc lists those forms).
func TestTimestampGrammarAgainstPython(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	var spellings []string
	seps := []string{"T", " ", "t", "x", "_"}
	fracs := []string{"", ".1", ".12", ".123", ".1234", ".12345", ".123456", ".1234567", ".123456789", ",123456", "."}
	zones := []string{"+00:00", "-00:00", "+01:30", "-05:00", "Z", "z", "+0000", "+00", "+00:00:30", "+00:00:30.5", "", "+24:00", "-23:59"}
	for range 400 {
		at := time.Unix(rnd.Int64N(4e9), 0).UTC()
		date := at.Format("2006-01-02")
		clock := at.Format("15:04:05")
		switch rnd.IntN(8) {
		case 0:
			clock = at.Format("15:04")
		case 1:
			date = at.Format("20060102")
		}
		spellings = append(spellings, date+seps[rnd.IntN(len(seps))]+clock+fracs[rnd.IntN(len(fracs))]+zones[rnd.IntN(len(zones))])
	}
	// What SuperNodes send: isoformat() of an aware UTC time.
	var supernode []string
	for range 200 {
		at := time.Unix(rnd.Int64N(4e9), int64(rnd.IntN(1e6))*1000*int64(rnd.IntN(2)))
		supernode = append(supernode, sign.FormatTimestamp(at))
	}
	all := append(spellings, supernode...)
	out := strings.Split(strings.TrimSpace(string(peer.Python(t, []byte(strings.Join(all, "\n")+"\n"), pyFromISO))), "\n")
	require.Len(t, out, len(all))
	accepted, pyOnly := 0, 0
	for i, s := range all {
		got, ok := verify.ParseTimestamp(s)
		py := out[i]
		if ok {
			accepted++
			require.NotEqual(t, "refused", py, "%q: nodekeys accepts what Python refuses", s)
			assert.Equal(t, py, fmt.Sprint(got.UnixMicro()), "%q: another instant than Python's", s)
			continue
		}
		require.Less(t, i, len(spellings), "%q: a SuperNode's timestamp refused", s)
		if py != "refused" && py != "naive" {
			pyOnly++
			assert.True(t, outside310(s), "%q: Python 3.10 reads it too, nodekeys should", s)
		}
	}
	t.Logf("%d of %d spellings accepted by both; %d read only by Python 3.11+", accepted, len(all), pyOnly)
	assert.Greater(t, accepted, len(supernode))
}

// outside310 reports whether s uses a form Python 3.10's fromisoformat
// refuses, or one nodekeys refuses on purpose though 3.10 reads it (an
// hour-and-minute time, another separator, an offset with seconds).
func outside310(s string) bool {
	if len(s) < 11 || s[4] != '-' || s[7] != '-' {
		return true // basic date
	}
	rest := s[11:]
	if s[10] != 'T' && s[10] != ' ' {
		return true // other separators: 3.10 reads them, no SuperNode sends them
	}
	if strings.ContainsAny(rest, "Zz,") {
		return true
	}
	if len(rest) < 8 || rest[5] != ':' {
		return true // HH:MM only
	}
	clock, zone := rest[:8], rest[8:]
	_ = clock
	if f, ok := strings.CutPrefix(zone, "."); ok {
		n := len(f) - len(strings.TrimLeft(f, "0123456789"))
		if n != 3 && n != 6 {
			return true
		}
		zone = f[n:]
	}
	return len(zone) != 6 // +HH:MM:SS offsets, +HHMM, +HH
}
