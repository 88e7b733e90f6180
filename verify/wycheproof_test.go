package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodekeys/nodekeys/internal/p384"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type wycheproofFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		PublicKey struct {
			Uncompressed string `json:"uncompressed"`
		} `json:"publicKey"`
		SHA   string `json:"sha"`
		Tests []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Msg     string   `json:"msg"`
			Sig     string   `json:"sig"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestWycheproof runs every P-384 vector through the verify core and through
// crypto/ecdsa: both must give the expected result. The core judges each
// vector on three paths: a key's first verification, a later one, and a
// key held by a hot-key cache (on amd64).
func TestWycheproof(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ecdsa_secp384r1_sha256_test.json", "ecdsa_secp384r1_sha384_test.json"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "wycheproof", name))
			require.NoError(t, err)
			var f wycheproofFile
			require.NoError(t, json.Unmarshal(b, &f))
			ran := 0
			for _, g := range f.TestGroups {
				point, err := hex.DecodeString(g.PublicKey.Uncompressed)
				require.NoError(t, err)
				pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), point)
				require.NoError(t, err)
				k, err := newKey(pub)
				require.NoError(t, err)
				require.NotNil(t, k.p384, "the fast path is under test")
				hot, cache := hotKey(t, pub)
				for _, tc := range g.Tests {
					msg, _ := hex.DecodeString(tc.Msg)
					sig, _ := hex.DecodeString(tc.Sig)
					var sum []byte
					switch g.SHA {
					case "SHA-256":
						s := sha256.Sum256(msg)
						sum = s[:]
					case "SHA-384":
						s := sha512.Sum384(msg)
						sum = s[:]
					default:
						t.Fatalf("unexpected hash %s", g.SHA)
					}
					want := tc.Result == "valid"
					require.NotEqual(t, "acceptable", tc.Result, "no acceptable vectors expected")
					got := k.verifyDigest(sum, sig) == nil
					assert.Equal(t, want, got, "tcId %d %s %v", tc.TcID, tc.Comment, tc.Flags)
					// A key's first verification takes the plain path,
					// later ones the split path (internal/p384): judge
					// each vector on a fresh key too.
					fresh, err := newKey(pub)
					require.NoError(t, err)
					assert.Equal(t, want, fresh.verifyDigest(sum, sig) == nil, "fresh key, tcId %d", tc.TcID)
					assert.Equal(t, want, hot.verifyDigestIn(cache, sum, sig) == nil, "hot key, tcId %d", tc.TcID)
					assert.Equal(t, want, ecdsa.VerifyASN1(pub, sum, sig), "crypto/ecdsa on tcId %d", tc.TcID)
					ran++
				}
				require.Equal(t, p384.TableBytes > 0, hot.p384.Held(), "the key stayed held")
			}
			assert.Equal(t, f.NumberOfTests, ran)
		})
	}
}

// hotKey returns pub as a Key that a cache holds.
func hotKey(t testing.TB, pub *ecdsa.PublicKey) (*Key, *p384.Cache) {
	t.Helper()
	k, err := newKey(pub)
	require.NoError(t, err)
	c := p384.NewCache(p384.TableBytes, 1)
	c.Promote(k.p384)
	require.Equal(t, p384.TableBytes > 0, k.p384.Held(), "the hot path is under test on amd64")
	return k, c
}
