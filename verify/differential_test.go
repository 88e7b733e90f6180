package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"github.com/nodekeys/nodekeys/internal/p384"
	"github.com/nodekeys/nodekeys/internal/peer"

	"github.com/stretchr/testify/require"
)

// mutations of a DER signature that a verifier must judge as crypto/ecdsa does.
func mutations(r *mrand.Rand, sig []byte, n *big.Int) [][]byte {
	out := [][]byte{sig}
	flip := append([]byte(nil), sig...)
	flip[r.IntN(len(flip))] ^= byte(1 << r.IntN(8))
	out = append(out, flip, sig[:r.IntN(len(sig))], append(append([]byte(nil), sig...), 0))
	rr, ss, ok := parseSignature(sig)
	if !ok {
		return out
	}
	R, S := new(big.Int).SetBytes(rr), new(big.Int).SetBytes(ss)
	one := big.NewInt(1)
	for _, p := range [][2]*big.Int{
		{S, R},                        // swapped
		{new(big.Int).Add(R, one), S}, // r+1
		{R, new(big.Int).Sub(S, one)}, // s-1
		{R, new(big.Int).Sub(n, S)},   // n-s: also valid (malleable)
		{new(big.Int).Add(R, n), S},   // r+n
		{R, new(big.Int).Add(S, n)},   // s+n
		{randBelow(r, n), S},          // random r
		{big.NewInt(0), S}, {R, big.NewInt(0)},
		{new(big.Int).Sub(n, one), new(big.Int).Sub(n, one)},
	} {
		out = append(out, derSig(p[0], p[1]))
	}
	return out
}

func randBelow(r *mrand.Rand, n *big.Int) *big.Int {
	b := make([]byte, (n.BitLen()+7)/8)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return new(big.Int).Mod(new(big.Int).SetBytes(b), n)
}

func derSig(r, s *big.Int) []byte {
	enc := func(v *big.Int) []byte {
		b := v.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return append([]byte{0x02, byte(len(b))}, b...)
	}
	body := append(enc(r), enc(s)...)
	if len(body) < 128 {
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	return append([]byte{0x30, 0x81, byte(len(body))}, body...)
}

// TestDifferential compares the verify core with crypto/ecdsa on random
// valid signatures and their mutations, on every supported curve, and on
// P-384 with a key held by a hot-key cache too.
func TestDifferential(t *testing.T) {
	t.Parallel()
	rng := mrand.New(mrand.NewPCG(1, 2))
	rounds := 8 // the fuzz targets, run in CI, go much further
	if peer.Long() {
		rounds = 100
	}
	for _, curve := range []elliptic.Curve{elliptic.P384(), elliptic.P256(), elliptic.P521()} {
		n := curve.Params().N
		agreed := 0
		for i := range rounds {
			priv, err := ecdsa.GenerateKey(curve, rand.Reader)
			require.NoError(t, err)
			k, err := newKey(&priv.PublicKey)
			require.NoError(t, err)
			var hot *Key
			var cache *p384.Cache
			if curve == elliptic.P384() {
				hot, cache = hotKey(t, &priv.PublicKey)
			}
			msg := make([]byte, rng.IntN(64))
			for j := range msg {
				msg[j] = byte(rng.Uint32())
			}
			sum := sha256.Sum256(msg)
			sig, err := ecdsa.SignASN1(rand.Reader, priv, sum[:])
			require.NoError(t, err)
			for m, s := range mutations(rng, sig, n) {
				want := ecdsa.VerifyASN1(&priv.PublicKey, sum[:], s)
				got := k.verifyDigest(sum[:], s) == nil
				require.Equal(t, want, got, "%s round %d mutation %d", curve.Params().Name, i, m)
				if hot != nil {
					require.Equal(t, want, hot.verifyDigestIn(cache, sum[:], s) == nil, "hot key, round %d mutation %d", i, m)
				}
				agreed++
			}
			// Another digest never verifies.
			other := sha256.Sum256(append(msg, 1))
			require.Error(t, k.verifyDigest(other[:], sig))
		}
		t.Logf("%s: %d verdicts agree with crypto/ecdsa", curve.Params().Name, agreed)
	}
}

// FuzzVerifyP384 compares the P-384 fast path with crypto/ecdsa on
// arbitrary digests and signatures.
func FuzzVerifyP384(f *testing.F) {
	d := sha512.Sum384([]byte("fuzz key"))
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), d[:])
	if err != nil {
		f.Fatal(err)
	}
	k, err := newKey(&priv.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	sum := sha256.Sum256([]byte("2026-11-22T17:45:03.123456+00:00"))
	sig, _ := ecdsa.SignASN1(rand.Reader, priv, sum[:])
	f.Add(sum[:], sig)
	f.Add(sum[:], []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Add([]byte{}, []byte{0x30, 0x00})
	// k soon takes the split path of a key seen before; a fresh key each
	// time takes the plain path of a key's first call; hot has a table.
	k.verifyDigest(sum[:], sig)
	k.verifyDigest(sum[:], sig)
	hot, cache := hotKey(f, &priv.PublicKey)
	f.Fuzz(func(t *testing.T, digest, sig []byte) {
		want := ecdsa.VerifyASN1(&priv.PublicKey, digest, sig)
		fresh, err := newKey(&priv.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		for name, k := range map[string]*Key{"warm": k, "fresh": fresh, "hot": hot} {
			var c *p384.Cache // a key of the cache's alone: the others stay out
			if k == hot {
				c = cache
			}
			if got := k.verifyDigestIn(c, digest, sig) == nil; want != got {
				t.Fatalf("crypto/ecdsa says %v, the fast path (%s key) %v", want, name, got)
			}
		}
	})
}
