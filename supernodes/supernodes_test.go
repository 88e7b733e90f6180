package supernodes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/standin"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/supernodes"
)

func client(t testing.TB, up *standin.Server) *supernodes.Client {
	t.Helper()
	conn, err := grpc.NewClient(up.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return supernodes.NewClient(conn)
}

func wants(t testing.TB, n int) []supernodes.Want {
	t.Helper()
	out := make([]supernodes.Want, n)
	for i := range out {
		p, err := keys.Generator{Seed: []byte("supernodes-test-seed-0123456789ab")}.Pair(i + 1)
		require.NoError(t, err)
		out[i] = supernodes.Want{Key: p.Public, File: fmt.Sprintf("k%d.pub", i+1)}
	}
	return out
}

func startStandin(t testing.TB) *standin.Server {
	t.Helper()
	up, err := standin.Listen()
	require.NoError(t, err)
	t.Cleanup(up.Stop)
	return up
}

func TestRegisterListApply(t *testing.T) {
	up := startStandin(t)
	c := client(t, up)
	ctx := context.Background()
	all := wants(t, 1000)

	res := c.RegisterAll(ctx, all, supernodes.Options{Parallel: 32})
	require.Empty(t, res.Failed())
	assert.Equal(t, 1000, res.Count("registered"))
	assert.Equal(t, 1000, up.Registered())
	ids := map[uint64]bool{}
	for i, o := range res.Outcomes {
		assert.Equal(t, all[i].Key.Fingerprint(), o.Fingerprint, "outcomes in the input's order")
		ids[o.NodeID] = true
	}
	assert.Len(t, ids, 1000)

	nodes, err := c.List(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 1000)
	for _, n := range nodes {
		assert.NotEmpty(t, n.Fingerprint)
		assert.Equal(t, "none", n.Owner)
		assert.False(t, n.Unregistered)
	}

	// Again: nothing to do; registering again is reported, not an error.
	res = c.RegisterAll(ctx, all[:3], supernodes.Options{})
	assert.Equal(t, 3, res.Count("already-registered"))
	plan := supernodes.MakePlan(nodes, all, true)
	assert.True(t, plan.Empty())
	assert.Len(t, plan.Present, 1000)

	// The files drop 10 keys and gain 5.
	more := wants(t, 1005)[1000:]
	files := append(append([]supernodes.Want{}, all[10:]...), more...)
	plan = supernodes.MakePlan(nodes, files, false)
	assert.Len(t, plan.Register, 5)
	assert.Len(t, plan.Extra, 10, "without prune, extra keys are left alone")
	assert.Empty(t, plan.Unregister)
	res = c.Apply(ctx, plan, supernodes.Options{})
	assert.Equal(t, 5, res.Count("registered"))

	nodes, err = c.List(ctx)
	require.NoError(t, err)
	plan = supernodes.MakePlan(nodes, files, true)
	require.Len(t, plan.Unregister, 10)
	var burned []supernodes.Node
	res = c.Apply(ctx, plan, supernodes.Options{OnUnregistered: func(n supernodes.Node) { burned = append(burned, n) }})
	assert.Equal(t, 10, res.Count("unregistered"))
	assert.Len(t, burned, 10)
	assert.Equal(t, 995, up.Registered())

	// Idempotent: a second run has nothing to do.
	nodes, err = c.List(ctx)
	require.NoError(t, err)
	assert.True(t, supernodes.MakePlan(nodes, files, true).Empty())

	// An unregistered key is burned: wanting it again is reported, and a
	// direct registration is refused, as Flower refuses it.
	plan = supernodes.MakePlan(nodes, all[:1], false)
	require.Len(t, plan.Burned, 1)
	res = c.Apply(ctx, plan, supernodes.Options{})
	assert.Equal(t, 1, res.Count("burned"))
	_, err = c.Register(ctx, all[0].Key.PEM())
	assert.ErrorIs(t, err, supernodes.ErrAlreadyRegistered)
	// RegisterAll tells it from a registered key, which Flower answers
	// alike ("Public key already in use"), by the SuperLink's list.
	res = c.RegisterAll(ctx, []supernodes.Want{all[0], all[10]}, supernodes.Options{})
	require.Len(t, res.Outcomes, 2)
	assert.Equal(t, "burned", res.Outcomes[0].Action)
	assert.Contains(t, res.Outcomes[0].Error, "Flower never registers a key again")
	assert.Equal(t, "already-registered", res.Outcomes[1].Action)
	assert.Equal(t, nodesOf(nodes)[all[10].Key.Fingerprint()], res.Outcomes[1].NodeID, "with its node id")

	// The burned keys are recorded in the key folder.
	dir := t.TempDir()
	require.NoError(t, supernodes.RecordBurned(dir, burned, time.Now()))
	got, err := supernodes.ReadBurned(dir)
	require.NoError(t, err)
	assert.Len(t, got, 10)
	assert.True(t, got[all[0].Key.Fingerprint()])
}

// nodesOf maps fingerprints to the live nodes' ids.
func nodesOf(nodes []supernodes.Node) map[string]uint64 {
	m := map[string]uint64{}
	for _, n := range nodes {
		if !n.Unregistered {
			m[n.Fingerprint] = n.ID
		}
	}
	return m
}

// A run that partly fails says exactly what was and was not done; a second
// run on a fresh plan finishes the job.
func TestPartialFailureAndRetry(t *testing.T) {
	up, err := standin.Listen()
	require.NoError(t, err)
	up.Stop()
	ln := listenAt(t, up.Addr)
	up = standin.Start(ln, standin.FailRegistrations(func(n int) bool { return n%7 == 0 }))
	t.Cleanup(up.Stop)
	c := client(t, up)
	ctx := context.Background()
	all := wants(t, 100)
	res := c.RegisterAll(ctx, all, supernodes.Options{Parallel: 8})
	failed := res.Failed()
	require.NotEmpty(t, failed)
	assert.Equal(t, 100-len(failed), res.Count("registered"))
	assert.Equal(t, 100-len(failed), up.Registered())
	for _, f := range failed {
		assert.Contains(t, f.Error, "Unavailable")
	}
	for range 5 {
		nodes, err := c.List(ctx)
		require.NoError(t, err)
		plan := supernodes.MakePlan(nodes, all, false)
		if plan.Empty() {
			break
		}
		c.Apply(ctx, plan, supernodes.Options{})
	}
	assert.Equal(t, 100, up.Registered())
}

func listenAt(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	require.Eventually(t, func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	return ln
}

func TestReadWant(t *testing.T) {
	dir := t.TempDir()
	ws := wants(t, 3)
	for i, w := range ws {
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("client_credentials_%d.pub", i+1)), w.Key.MarshalPublicKey(""), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "server_credentials.pub"), wants(t, 4)[3].Key.MarshalPublicKey(""), 0o644))
	got, err := supernodes.ReadWant([]string{filepath.Join(dir, "client_credentials_1.pub")}, "", dir)
	require.NoError(t, err)
	assert.Len(t, got, 3, "a key named twice counts once; the server pair is not a SuperNode")
	_, err = supernodes.ReadWant(nil, "", filepath.Join(dir, "missing"))
	assert.Error(t, err)

	// The folder's allowlist holds keys 1 and 3: key 2's file stayed after
	// the key left the federation, and is not wanted.
	csv := filepath.Join(dir, "client_public_keys.csv")
	require.NoError(t, os.WriteFile(csv, csvlist.Marshal([]*keys.PublicKey{ws[0].Key, ws[2].Key}), 0o644))
	w, err := supernodes.ReadWanted(nil, "", dir)
	require.NoError(t, err)
	require.Len(t, w.Keys, 2)
	assert.Equal(t, ws[0].Key.Fingerprint(), w.Keys[0].Key.Fingerprint())
	assert.Equal(t, ws[2].Key.Fingerprint(), w.Keys[1].Key.Fingerprint())
	require.Len(t, w.Dropped, 1)
	assert.Equal(t, filepath.Join(dir, "client_credentials_2.pub"), w.Dropped[0].File)
	assert.Equal(t, csv, w.Allowlist)
	// Named on its own, a file is wanted whatever the folder's list says.
	w, err = supernodes.ReadWanted([]string{filepath.Join(dir, "client_credentials_2.pub")}, "", dir)
	require.NoError(t, err)
	assert.Len(t, w.Keys, 3)
	assert.Empty(t, w.Dropped)
}

// BenchmarkRegister measures registering N keys against the stand-in, 16
// calls in flight, on loopback: ns/op divided by N is the cost of a key.
func BenchmarkRegister(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			all := wants(b, n)
			for b.Loop() {
				b.StopTimer()
				up := startStandin(b)
				c := client(b, up)
				b.StartTimer()
				res := c.RegisterAll(context.Background(), all, supernodes.Options{Parallel: 16})
				if len(res.Failed()) > 0 {
					b.Fatal(res.Failed()[0])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "us/key")
		})
	}
}

// A node id in JSON is a decimal string, "node_id": "18446744073709551615",
// as flwr supernode ls --format json prints node-id: Flower's node ids are
// random 64-bit numbers, and a JSON number above 2^53 comes out changed in
// JavaScript and jq.
func TestNodeIDJSONIsString(t *testing.T) {
	t.Parallel()
	const id = uint64(18446744073709551615) // 2^64-1
	b, err := json.Marshal(supernodes.Node{ID: id, Fingerprint: "SHA256:x", Status: "registered"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"node_id": "18446744073709551615", "fingerprint": "SHA256:x", "status": "registered", "unregistered": false}`, string(b))
	b, err = json.Marshal(supernodes.Outcome{Fingerprint: "SHA256:x", NodeID: id, Action: "registered"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"fingerprint": "SHA256:x", "node_id": "18446744073709551615", "action": "registered"}`, string(b))
	// No node id, no key, as before.
	b, err = json.Marshal(supernodes.Outcome{Fingerprint: "SHA256:x", Action: "burned"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"fingerprint": "SHA256:x", "action": "burned"}`, string(b))

	// Read as JavaScript and jq read JSON (numbers as float64), still exact.
	var m map[string]any
	b, err = json.Marshal(supernodes.Node{ID: 9007199254740993}) // 2^53+1
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, "9007199254740993", m["node_id"])
}

// Node and Outcome read the node id back as a decimal string or as the
// number nodekeys wrote before, exact either way.
func TestNodeIDJSONReadsStringOrNumber(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`"18446744073709551615"`, `18446744073709551615`} {
		var n supernodes.Node
		require.NoError(t, json.Unmarshal([]byte(`{"node_id": `+in+`, "fingerprint": "SHA256:x", "status": "registered", "owner": "ci", "unregistered": true}`), &n), in)
		assert.Equal(t, supernodes.Node{ID: 18446744073709551615, Fingerprint: "SHA256:x", Status: "registered", Owner: "ci", Unregistered: true}, n, in)
		var o supernodes.Outcome
		require.NoError(t, json.Unmarshal([]byte(`{"fingerprint": "SHA256:x", "file": "k.pub", "node_id": `+in+`, "action": "registered"}`), &o), in)
		assert.Equal(t, supernodes.Outcome{Fingerprint: "SHA256:x", File: "k.pub", NodeID: 18446744073709551615, Action: "registered"}, o, in)
	}
	// No node id (an outcome without one), or null: 0.
	var o supernodes.Outcome
	require.NoError(t, json.Unmarshal([]byte(`{"fingerprint": "SHA256:x", "action": "burned"}`), &o))
	assert.Equal(t, supernodes.Outcome{Fingerprint: "SHA256:x", Action: "burned"}, o)
	var n supernodes.Node
	require.NoError(t, json.Unmarshal([]byte(`{"node_id": null}`), &n))
	assert.Zero(t, n.ID)
	// Not a node id.
	for _, in := range []string{`"-1"`, `-1`, `1.5`, `"18446744073709551616"`, `18446744073709551616`, `""`, `"0x10"`, `true`, `{}`} {
		assert.Error(t, json.Unmarshal([]byte(`{"node_id": `+in+`}`), &n), in)
		assert.Error(t, json.Unmarshal([]byte(`{"node_id": `+in+`}`), &o), in)
	}
	var list []supernodes.Node
	require.NoError(t, json.Unmarshal([]byte(`[{"node_id": 1}, {"node_id": "2"}]`), &list))
	assert.Equal(t, []supernodes.Node{{ID: 1}, {ID: 2}}, list)
}
