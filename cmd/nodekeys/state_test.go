package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/gateway/owners"
)

// state show --json prints run and node ids as decimal strings, as Flower's
// flwr ls and flwr supernode ls --format json do: Flower's ids are random
// 64-bit numbers, and a JSON number above 2^53 comes out changed in
// JavaScript and jq.
func TestStateShowJSONIDsAsStrings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	require.NoError(t, owners.Create(path))
	s, err := owners.Open(path, false)
	require.NoError(t, err)
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	const run, node = uint64(18446744073709551615), uint64(9007199254740993) // 2^64-1, 2^53+1
	ctx := context.Background()
	require.NoError(t, s.SetOwner(ctx, owners.Runs, run, owners.Owner{Kind: authz.KindUser, Subject: "alice", Name: "alice", At: at}))
	require.NoError(t, s.SetOwner(ctx, owners.Nodes, node, owners.Owner{Kind: authz.KindToken, Subject: "ci", Name: "ci", At: at}))
	require.NoError(t, s.Close())

	r := nk(t, dir, "", "state", "show", "--json", "state.db")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, `[
  {
    "kind": "nodes",
    "id": "9007199254740993",
    "owner": "token:ci",
    "name": "ci",
    "at": "2026-11-29T12:00:00Z"
  },
  {
    "kind": "runs",
    "id": "18446744073709551615",
    "owner": "alice",
    "name": "alice",
    "at": "2026-11-29T12:00:00Z"
  }
]
`, r.stdout)
	// Read as a JavaScript or jq reader reads JSON (numbers as float64),
	// every id is still exact.
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows))
	assert.Equal(t, "9007199254740993", rows[0]["id"])
	assert.Equal(t, "18446744073709551615", rows[1]["id"])

	// The table prints the ids as they are.
	r = nk(t, dir, "", "state", "show", "state.db")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "18446744073709551615")
	assert.Contains(t, r.stdout, "9007199254740993")
	r = nk(t, dir, "", "state", "show", "--help")
	assert.Contains(t, r.stdout, "decimal strings")
}
