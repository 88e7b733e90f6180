package shared_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/gateway/owners"
	"github.com/nodekeys/nodekeys/internal/redistest"
)

// Owner hashes written by the release before kinds are read by this one:
// a token's record is the token's, a user's or client's keeps its meaning
// for that exact subject, and neither goes to another kind. Records this
// release writes carry the kind, under names the earlier release does not
// read as a subject.
func TestOwnersOfTheEarlierRelease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := replica(t, srv.Addr, nil, nil)
	ctx := context.Background()
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	// As the earlier release wrote them: json.Marshal of its Owner, HSETNX
	// into PREFIX owners:KIND.
	earlier := func(sub, name string) string {
		v, err := json.Marshal(struct {
			Subject string    `json:"sub"`
			Name    string    `json:"name,omitempty"`
			At      time.Time `json:"at"`
		}{sub, name, at})
		require.NoError(t, err)
		return string(v)
	}
	require.NoError(t, b.Client().HSet(ctx, "nodekeys:owners:runs", "1", earlier("token:ci", "ci"), "2", earlier("bob", "Bob")).Err())

	got, err := b.Owners(ctx, owners.Runs, []uint64{1, 2})
	require.NoError(t, err)
	token, bob := got[1], got[2]
	assert.Equal(t, owners.Owner{Subject: "token:ci", Name: "ci", At: at}, token)
	assert.True(t, token.Matches(authz.Principal{Kind: authz.KindToken, Subject: "ci"}))
	assert.False(t, token.Matches(authz.Principal{Kind: authz.KindUser, Subject: "ci"}))
	assert.False(t, token.Matches(authz.Principal{Kind: authz.KindUser, Subject: "token:ci"}))
	assert.True(t, bob.Matches(authz.Principal{Kind: authz.KindUser, Subject: "bob"}))
	assert.True(t, bob.Matches(authz.Principal{Kind: authz.KindClient, Subject: "bob"}), "the earlier release could not tell them apart")
	assert.False(t, bob.Matches(authz.Principal{Kind: authz.KindToken, Subject: "bob"}))
	require.NoError(t, b.SetOwner(ctx, owners.Runs, 1, owners.Owner{Kind: authz.KindToken, Subject: "ci"}), "its owner again is no change")
	assert.ErrorIs(t, b.SetOwner(ctx, owners.Runs, 2, owners.Owner{Kind: authz.KindToken, Subject: "bob"}), owners.ErrOwned)

	require.NoError(t, b.SetOwner(ctx, owners.Runs, 3, owners.Owner{Kind: authz.KindClient, Subject: "bob", At: at}))
	raw, err := b.Client().HGet(ctx, "nodekeys:owners:runs", "3").Result()
	require.NoError(t, err)
	assert.JSONEq(t, `{"kind":"client","subject":"bob","at":"2026-11-23T12:00:00Z"}`, raw)
	all, err := b.All(ctx, owners.Runs)
	require.NoError(t, err)
	assert.Len(t, all, 3)
	assert.False(t, all[3].Matches(authz.Principal{Kind: authz.KindUser, Subject: "bob"}))
}
