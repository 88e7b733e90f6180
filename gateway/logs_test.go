package gateway_test

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/nodekeys/nodekeys/accounts"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/flwrpb"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/tokens"
)

// logLines returns the JSON log lines whose msg is msg, raw and decoded.
func logLines(t *testing.T, r *rig, msg string) (raw []string, decoded []map[string]any) {
	t.Helper()
	for line := range strings.SplitSeq(r.logs.String(), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m["msg"] == msg {
			raw, decoded = append(raw, line), append(decoded, m)
		}
	}
	return raw, decoded
}

// "recorded an owner" names the record's kind and the owner's under two
// keys, and the id as a string: a JSON reader rounds a number above 2^53,
// as the stand-in's random run ids nearly always are.
func TestOwnerLogLine(t *testing.T) {
	t.Parallel()
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	ci, _, err := tokens.New(tokenFile, "ci", "member")
	require.NoError(t, err)
	r := newRig(t, 1, func(c *gateway.Config) { c.TokenList, c.LogFormat = tokenFile, "json" })
	run := startRun(t, r.dial(t, r.control, nil), bearer(ci))
	raw, lines := logLines(t, r, "recorded an owner")
	require.Len(t, lines, 1, r.logs.String())
	assert.Equal(t, 1, strings.Count(raw[0], `"kind":`), raw[0])
	assert.Equal(t, "runs", lines[0]["record"])
	assert.Equal(t, "token", lines[0]["kind"])
	assert.Equal(t, strconv.FormatUint(run, 10), lines[0]["id"])
}

// A call refused for a key the allowlist lacks logs that key's
// fingerprint, as for a known key, and never the header itself.
func TestRefusedUnknownKeyFingerprint(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, func(c *gateway.Config) { c.LogFormat = "json"; c.RefusalDelay = new(time.Duration) })
	stranger, err := keys.Generator{}.Pair(0)
	require.NoError(t, err)
	s, err := sign.New(stranger.Private)
	require.NoError(t, err)
	h, err := s.SignTimestamp(flwr.FormatTimestamp(time.Now()))
	require.NoError(t, err)
	_, _, _, err = call(r.dial(t, r.fleet, nil), heartbeat, "x", headerPairs(h)...)
	wantStatus(t, err, codes.Unauthenticated, "Public key not recognized")
	raw, lines := logLines(t, r, "refused a node call")
	require.Len(t, lines, 1, r.logs.String())
	assert.Equal(t, stranger.Public.Fingerprint(), lines[0]["fingerprint"])
	b64 := strings.Split(string(h.PublicKey), "\n")[1]
	assert.NotContains(t, raw[0], b64, "not the header's bytes")
}

// servingLogged waits for the rig's "gateway serving" line, logged as Serve starts.
func servingLogged(t *testing.T, r *rig) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(r.logs.String(), `"msg":"gateway serving"`) }, 10*time.Second, 5*time.Millisecond)
}

// A gateway that forwards the Control API without a login says so at
// start, naming the listener; the serving line names every listener.
func TestStartLogsListeners(t *testing.T) {
	t.Parallel()
	open := newRig(t, 1, func(c *gateway.Config) { c.LogFormat = "json" })
	servingLogged(t, open)
	_, warns := logLines(t, open, "the Control API is forwarded unauthenticated: anyone who reaches it can start and stop runs; set accounts:, oidc: or token_list to require a login")
	require.Len(t, warns, 1, open.logs.String())
	assert.Equal(t, "WARN", warns[0]["level"])
	assert.Equal(t, open.control, warns[0]["control"])
	_, serving := logLines(t, open, "gateway serving")
	require.Len(t, serving, 1)
	assert.Equal(t, open.fleet, serving[0]["fleet"])
	assert.Equal(t, open.control, serving[0]["control"])

	file, _ := accountFile(t)
	closed := newRig(t, 1, func(c *gateway.Config) { c.LogFormat = "json"; c.Accounts = &accounts.Config{File: file} })
	servingLogged(t, closed)
	assert.NotContains(t, closed.logs.String(), "unauthenticated")
	_, serving = logLines(t, closed, "gateway serving")
	require.Len(t, serving, 1)
	assert.Equal(t, closed.control, serving[0]["control"])
	assert.Equal(t, closed.accounts, serving[0]["accounts"])
}

// What zitadel's op logs while the gateway's own provider serves goes to
// the gateway's logger, with a device login's pending polls at Debug, not
// once a poll at Info.
func TestProviderLogsToGateway(t *testing.T) {
	t.Parallel()
	file, _ := accountFile(t)
	r := newRig(t, 1, func(c *gateway.Config) { c.LogFormat = "json"; c.Accounts = &accounts.Config{File: file} })
	c := r.dial(t, r.control, nil)
	out, err := ctl(c, nil, "GetLoginDetails", &flwrpb.GetLoginDetailsRequest{})
	require.NoError(t, err)
	d := &flwrpb.GetLoginDetailsResponse{}
	require.NoError(t, proto.Unmarshal(out[0], d))
	require.NotEmpty(t, d.DeviceCode)
	_, err = ctl(c, nil, "GetAuthTokens", &flwrpb.GetAuthTokensRequest{DeviceCode: d.DeviceCode})
	require.NoError(t, err, "pending")
	_, err = ctl(c, nil, "GetAuthTokens", &flwrpb.GetAuthTokensRequest{DeviceCode: "not-a-device-code"})
	require.Error(t, err)
	_, errs := logLines(t, r, "request error") // JSON: the gateway's logger
	require.NotEmpty(t, errs, "op's answer to the unknown code reaches the gateway's log:\n%s", r.logs.String())
	for _, e := range errs {
		assert.NotEqual(t, "authorization_pending", e["oidc_error"].(map[string]any)["type"], "pending polls are at Debug, below the log's Info")
	}
}
