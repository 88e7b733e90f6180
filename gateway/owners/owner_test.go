package owners_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/nodekeys/nodekeys/authz"
	"github.com/nodekeys/nodekeys/gateway/owners"
)

// earlierOwner is owners.Owner as the release before kinds declared it:
// json.Marshal of it is a record as that release wrote it, and
// json.Unmarshal into it is how that release reads one.
type earlierOwner struct {
	Subject string    `json:"sub"`
	Name    string    `json:"name,omitempty"`
	At      time.Time `json:"at"`
}

var (
	userBob   = authz.Principal{Kind: authz.KindUser, Subject: "bob"}
	clientBob = authz.Principal{Kind: authz.KindClient, Subject: "bob"}
	tokenBob  = authz.Principal{Kind: authz.KindToken, Subject: "bob"}
	tokenCI   = authz.Principal{Kind: authz.KindToken, Subject: "ci"}
	userCI    = authz.Principal{Kind: authz.KindUser, Subject: "ci"}
	userPose  = authz.Principal{Kind: authz.KindUser, Subject: "token:ci"}
	clientCI  = authz.Principal{Kind: authz.KindClient, Subject: "ci"}
)

// Owners compare kind and subject both; a record of the earlier release
// is read as the package doc says.
func TestOwnerMatchesKindAndSubject(t *testing.T) {
	t.Parallel()
	all := []authz.Principal{userBob, clientBob, tokenBob, tokenCI, userCI, userPose, clientCI}
	for _, tc := range []struct {
		name  string
		owner owners.Owner
		want  []authz.Principal // the principals it matches; no other
		shown string
	}{
		{"a user's", owners.Owner{Kind: authz.KindUser, Subject: "bob"}, []authz.Principal{userBob}, "bob"},
		{"a client's", owners.Owner{Kind: authz.KindClient, Subject: "bob"}, []authz.Principal{clientBob}, "client:bob"},
		{"a token's", owners.Owner{Kind: authz.KindToken, Subject: "ci"}, []authz.Principal{tokenCI}, "token:ci"},
		{"a user's named like a token", owners.Owner{Kind: authz.KindUser, Subject: "token:ci"}, []authz.Principal{userPose}, "user:token:ci"},
		{"an earlier token's", owners.Owner{Subject: "token:ci"}, []authz.Principal{tokenCI}, "token:ci"},
		{"an earlier user's or client's", owners.Owner{Subject: "bob"}, []authz.Principal{userBob, clientBob}, "bob"},
		{"a kind this release does not know", owners.Owner{Kind: "robot", Subject: "bob"}, nil, "robot:bob"},
		{"no subject", owners.Owner{Kind: authz.KindUser}, nil, ""},
		{"an earlier record with no subject", owners.Owner{}, nil, ""},
	} {
		for _, p := range all {
			assert.Equal(t, slices.Contains(tc.want, p), tc.owner.Matches(p), "%s record, %s", tc.name, p.Key())
		}
		assert.Equal(t, tc.shown, tc.owner.String(), tc.name)
	}
	assert.True(t, owners.Owner{Subject: "bob"}.SameAs(owners.Owner{Kind: authz.KindClient, Subject: "bob"}))
	assert.True(t, owners.Owner{Kind: authz.KindToken, Subject: "ci"}.SameAs(owners.Owner{Subject: "token:ci"}))
	assert.False(t, owners.Owner{Kind: authz.KindUser, Subject: "bob"}.SameAs(owners.Owner{Kind: authz.KindClient, Subject: "bob"}))
	assert.False(t, owners.Owner{Subject: "token:ci"}.SameAs(owners.Owner{Kind: authz.KindUser, Subject: "token:ci"}))
	assert.False(t, owners.Owner{}.SameAs(owners.Owner{}))
}

// A record keeps its kind through JSON; one without a kind is written and
// read as the earlier release did; and the earlier release reads a record
// with a kind as naming no subject, so it matches no one there.
func TestOwnerJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	o := owners.Owner{Kind: authz.KindClient, Subject: "bob", At: at}
	b, err := json.Marshal(o)
	require.NoError(t, err)
	assert.JSONEq(t, `{"kind":"client","subject":"bob","at":"2026-11-23T12:00:00Z"}`, string(b))
	var back owners.Owner
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, o, back)
	var earlier earlierOwner
	require.NoError(t, json.Unmarshal(b, &earlier))
	assert.Empty(t, earlier.Subject, "the earlier release finds no subject in it")

	old, err := json.Marshal(earlierOwner{Subject: "token:ci", Name: "ci", At: at})
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(old, &back))
	assert.Equal(t, owners.Owner{Subject: "token:ci", Name: "ci", At: at}, back)
	again, err := json.Marshal(back)
	require.NoError(t, err)
	assert.JSONEq(t, string(old), string(again), "a record without a kind is written as the earlier release wrote it")
}

// A state file holding records the earlier release wrote is read by this
// one: a token's record is the token's, a user's or client's keeps its
// meaning for that exact subject, and neither goes to another kind.
func TestBoltReadsTheEarlierReleasesRecords(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	require.NoError(t, owners.Create(path))
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		for id, o := range map[uint64]earlierOwner{1: {"token:ci", "ci", at}, 2: {"bob", "Bob", at}} {
			v, err := json.Marshal(o)
			require.NoError(t, err)
			if err := tx.Bucket([]byte(owners.Runs)).Put(binary.BigEndian.AppendUint64(nil, id), v); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, db.Close())

	s, err := owners.Open(path, false)
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	got, err := s.Owners(ctx, owners.Runs, []uint64{1, 2})
	require.NoError(t, err)
	assert.Equal(t, owners.Owner{Subject: "token:ci", Name: "ci", At: at}, got[1])
	assert.True(t, got[1].Matches(tokenCI))
	assert.False(t, got[1].Matches(userCI))
	assert.False(t, got[1].Matches(userPose), "a user whose subject is the earlier token subject")
	assert.Equal(t, "token:ci", got[1].String())
	assert.True(t, got[2].Matches(userBob))
	assert.True(t, got[2].Matches(clientBob), "the earlier release could not tell them apart")
	assert.False(t, got[2].Matches(tokenBob))

	require.NoError(t, s.SetOwner(ctx, owners.Runs, 1, owners.Owner{Kind: authz.KindToken, Subject: "ci", At: at}), "its owner again is no change")
	assert.ErrorIs(t, s.SetOwner(ctx, owners.Runs, 1, owners.Owner{Kind: authz.KindUser, Subject: "token:ci"}), owners.ErrOwned)
	assert.ErrorIs(t, s.SetOwner(ctx, owners.Runs, 2, owners.Owner{Kind: authz.KindToken, Subject: "bob"}), owners.ErrOwned)
	require.NoError(t, s.SetOwner(ctx, owners.Runs, 3, owners.Owner{Kind: authz.KindClient, Subject: "bob", At: at}))
	all, err := s.All(ctx, owners.Runs)
	require.NoError(t, err)
	assert.Len(t, all, 3)
	assert.True(t, all[3].Matches(clientBob))
	assert.False(t, all[3].Matches(userBob))
}
