package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/sign"
)

func TestSignVerifyEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "2", "-q").code)
	csv := "keys/client_public_keys.csv"

	r := nk(t, dir, "", "sign", "--key", "keys/client_credentials_1")
	require.Equal(t, 0, r.code, r.stderr)
	var h map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &h))
	assert.Len(t, h, 3)
	for _, k := range []string{sign.HeaderPublicKey, sign.HeaderTimestamp, sign.HeaderSignature} {
		assert.NotEmpty(t, h[k], k)
	}
	signed := r.stdout

	r = nk(t, dir, signed, "verify", "--allowlist", csv)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^ok SHA256:[A-Za-z0-9+/]{43}\n$`, r.stdout)

	// A fixed timestamp, checked at a fixed time: JSON Lines, mixed verdicts.
	ts := "2026-11-22T17:45:03+00:00"
	one := nk(t, dir, "", "sign", "-k", "keys/client_credentials_1", "--timestamp", ts).stdout
	two := nk(t, dir, "", "sign", "-k", "keys/client_credentials_2", "--timestamp", ts).stdout
	compact := func(s string) string {
		var v map[string]string
		require.NoError(t, json.Unmarshal([]byte(s), &v))
		b, _ := json.Marshal(v)
		return string(b) + "\n"
	}
	in := compact(one) + compact(two) + `{"flwr-timestamp":"` + ts + `"}` + "\n"
	r = nk(t, dir, in, "verify", "-a", csv, "--now", "2026-11-22T17:45:04+00:00")
	assert.Equal(t, 1, r.code)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	assert.True(t, strings.HasPrefix(lines[0], "ok SHA256:"))
	assert.True(t, strings.HasPrefix(lines[1], "ok SHA256:"))
	assert.Equal(t, "rejected missing-metadata: a flwr-* header is missing or empty", lines[2])

	for _, tc := range []struct {
		now, flower, want string
	}{
		{"2026-11-22T17:50:08+00:00", "", "stale-timestamp"},               // 305 s: the edge is refused
		{"2026-11-22T17:50:07+00:00", "", ""},                              // 304 s
		{"2026-11-22T17:44:58+00:00", "", "future-timestamp"},              // -5 s
		{"2026-11-22T17:45:18+00:00", "1.19", "stale-timestamp"},           // 15 s under Flower 1.19
		{"2026-11-22T17:45:17+00:00", "1.19", ""},                          // 14 s
		{"2026-11-22T17:45:02.999999+00:00", "1.15.0", "future-timestamp"}, // 1.15.0 accepted no future
	} {
		args := []string{"verify", "-a", csv, "--now", tc.now, "--json"}
		if tc.flower != "" {
			args = append(args, "--flower", tc.flower)
		}
		r = nk(t, dir, one, args...)
		var res struct {
			OK          bool
			Reason      string
			Fingerprint string
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stderr)
		assert.Equal(t, tc.want, res.Reason, "%+v", tc)
		assert.Equal(t, tc.want == "", res.OK)
		assert.Equal(t, map[bool]int{true: 0, false: 1}[tc.want == ""], r.code)
	}

	// --any-key accepts any P-384 key, and only when asked.
	r = nk(t, dir, signed, "verify", "--any-key")
	assert.Equal(t, 0, r.code, r.stderr)
	r = nk(t, dir, signed, "verify")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "name the allowed keys with --allowlist CSV, or accept any P-384 key with --any-key")

	// grpcurl form.
	r = nk(t, dir, "", "sign", "-k", "keys/client_credentials_1", "--format", "grpcurl")
	require.Equal(t, 0, r.code)
	assert.Regexp(t, `^-H 'flwr-public-key-bin: LS0t[^']+' -H 'flwr-timestamp: [^']+' -H 'flwr-signature-bin: [^']+'\n$`, r.stdout)
}

func TestVerifyBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "1", "-q").code)
	csv := "keys/client_public_keys.csv"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not JSON", "hello\n", "rejected malformed: input 1 (line 1): not a JSON object of flwr-* headers\n"},
		{"bad base64", `{"flwr-public-key-bin":"!!","flwr-timestamp":"x","flwr-signature-bin":"AA=="}`, "rejected malformed: input 1 (line 1): flwr-public-key-bin is not base64\n"},
		{"huge", `{"flwr-timestamp":"` + strings.Repeat("a", 100<<10) + `"}`, "rejected malformed: input 1 (line 1): larger than 64 KiB\n"},
		{"odd timestamp", `{"flwr-public-key-bin":"` + pemB64(t, dir) + `","flwr-timestamp":"yesterday","flwr-signature-bin":"MAYCAQECAQE="}`, "rejected malformed: flwr-timestamp is not an ISO 8601 time with a UTC offset\n"},
	} {
		r := nk(t, dir, tc.in, "verify", "-a", csv)
		assert.Equal(t, 1, r.code, tc.name)
		assert.Equal(t, tc.want, r.stdout, tc.name)
	}
	r := nk(t, dir, "", "verify", "-a", csv)
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: no input: give verify a JSON object of flwr-* headers on stdin\n", r.stderr)

	for _, args := range [][]string{
		{"sign"},
		{"sign", "-k", "keys/client_credentials_1", "--timestamp", "2026-11-22T17:45:03"},
		{"sign", "-k", "keys/client_credentials_1", "--format", "xml"},
		{"verify", "-a", csv, "--now", "noon"},
		{"verify", "-a", csv, "--flower", "1.14"},
		{"verify", "-a", csv, "--any-key"},
	} {
		r := nk(t, dir, "", args...)
		assert.Equal(t, 2, r.code, args)
		assert.Equal(t, 2, strings.Count(r.stderr, "\n"), "one error line and a hint: %q", r.stderr)
	}
	r = nk(t, dir, "", "verify", "-a", csv, "--flower", "1.14")
	assert.Equal(t, "nodekeys: error: Flower 1.14 does not use signed timestamps (1.15 and later do)\nhint: run 'nodekeys verify --help'\n", r.stderr)
	r = nk(t, dir, "", "sign", "-k", "keys/client_credentials_1.pub")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "nodekeys: error: keys: keys/client_credentials_1.pub: malformed key: this is a public key (.pub); give the private key, the file without .pub\n", r.stderr)
}

func pemB64(t *testing.T, dir string) string {
	r := nk(t, dir, "", "sign", "-k", "keys/client_credentials_1")
	var h map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &h))
	return h[sign.HeaderPublicKey]
}

// verify reads every input and reports each, in order: a bad line in the
// middle does not stop the later ones; duplicated or upper-case header
// names are refused; sign's pretty JSON and grpcurl forms are read; a
// large input keeps its order while verified on every core.
func TestVerifyEveryInputInOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "2", "-q").code)
	csv := "keys/client_public_keys.csv"
	ts := "2026-11-22T17:45:03+00:00"
	now := "2026-11-22T17:45:04+00:00"
	pretty := nk(t, dir, "", "sign", "-k", "keys/client_credentials_1", "--timestamp", ts).stdout
	grpcurl := nk(t, dir, "", "sign", "-k", "keys/client_credentials_2", "--timestamp", ts, "--format", "grpcurl").stdout
	var h map[string]string
	require.NoError(t, json.Unmarshal([]byte(pretty), &h))
	compact, _ := json.Marshal(h)
	dup := `{"flwr-public-key-bin":"` + h["flwr-public-key-bin"] + `","flwr-timestamp":"` + ts + `","flwr-signature-bin":"` + h["flwr-signature-bin"] + `","flwr-timestamp":"` + ts + `"}`
	upper := strings.Replace(string(compact), "flwr-timestamp", "FLWR-TIMESTAMP", 1)

	in := pretty + "not json at all\n" + string(compact) + "\n" + dup + "\n" + upper + "\n" + grpcurl + "{\"flwr-timestamp\": \n" + string(compact) + "\n"
	r := nk(t, dir, in, "verify", "-a", csv, "--now", now)
	assert.Equal(t, 1, r.code)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 8, r.stdout)
	assert.True(t, strings.HasPrefix(lines[0], "ok SHA256:"), "sign's own output, over several lines")
	assert.Equal(t, "rejected malformed: input 2 (line 6): not a JSON object of flwr-* headers", lines[1])
	assert.True(t, strings.HasPrefix(lines[2], "ok SHA256:"), "the line after a bad one is still read")
	assert.Equal(t, "rejected malformed: input 4 (line 8): flwr-timestamp appears twice", lines[3])
	assert.Contains(t, lines[4], `"FLWR-TIMESTAMP": metadata names are lower case`)
	assert.True(t, strings.HasPrefix(lines[5], "ok SHA256:"), "the grpcurl form: %s", lines[5])
	assert.Contains(t, lines[6], "rejected malformed: input 7 (line 11)")
	assert.True(t, strings.HasPrefix(lines[7], "ok SHA256:"))

	// 3,000 inputs, every third broken: results in input order.
	var b strings.Builder
	for i := range 3000 {
		if i%3 == 2 {
			fmt.Fprintf(&b, "{\"n\": %d}\n", i)
		} else {
			b.Write(compact)
			b.WriteByte('\n')
		}
	}
	r = nk(t, dir, b.String(), "verify", "-a", csv, "--now", now)
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3000)
	for i, l := range lines {
		if i%3 == 2 {
			assert.True(t, strings.HasPrefix(l, "rejected missing-metadata"), "%d: %s", i, l)
		} else {
			assert.True(t, strings.HasPrefix(l, "ok "), "%d: %s", i, l)
		}
	}
}
