//go:build amd64 && !purego

package p384

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"testing"
)

var two192 = new(big.Int).Lsh(big.NewInt(1), 192)

// mulBase returns k·G, uncompressed, from crypto/ecdh, or nil for k ≡ 0.
func mulBase(t *testing.T, k *big.Int) []byte {
	t.Helper()
	k = new(big.Int).Mod(k, curveN)
	if k.Sign() == 0 {
		return nil
	}
	priv, err := ecdh.P384().NewPrivateKey(k.FillBytes(make([]byte, 48)))
	if err != nil {
		t.Fatal(err)
	}
	return priv.PublicKey().Bytes()
}

// encode returns P, finite, as an uncompressed point.
func encode(P jacobianPoint) []byte {
	var a [1]affinePoint
	toAffine(a[:], []jacobianPoint{P})
	out := []byte{4}
	for _, c := range []*fp384{&a[0].x, &a[0].y} {
		var d fp384
		fp384Mul(&d, c, &fp384{1}) // out of Montgomery form
		for i := range 48 {
			out = append(out, d[47-i])
		}
	}
	return out
}

// checkProducts computes m·G + n·Q with the three multiplications, plain,
// split (given high = 2^192·Q) and hot (given Q's table), and fails t
// unless each is the uncompressed point want, or infinity for a nil want.
func checkProducts(t *testing.T, k *PublicKey, high *jacobianPoint, tab *hotTable, m, n *[48]byte, want []byte) {
	t.Helper()
	var plain, split, hot jacobianPoint
	combinedMult(&plain, &k.q, m, n)
	splitMult(&split, &k.q, high, m, n)
	hotMult(&hot, tab, m, n)
	for name, P := range map[string]jacobianPoint{"combinedMult": plain, "splitMult": split, "hotMult": hot} {
		if want == nil {
			if P.z != (fp384{}) {
				t.Fatalf("%s m=%x n=%x: want infinity", name, m, n)
			}
		} else if P.z == (fp384{}) || string(encode(P)) != string(want) {
			t.Fatalf("%s m=%x n=%x: got %x, want %x", name, m, n, encode(P), want)
		}
	}
}

func publicKey(t *testing.T, d *big.Int) *PublicKey {
	t.Helper()
	k, err := NewPublicKey(mulBase(t, d))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestBaseHighTable checks the table built at run time, (2i+1)·2^192·G,
// against crypto/ecdh.
func TestBaseHighTable(t *testing.T) {
	tab := baseHighOddMultiples()
	for i, a := range tab {
		want := mulBase(t, new(big.Int).Mul(big.NewInt(int64(2*i+1)), two192))
		if got := encode(a.toJacobian()); string(got) != string(want) {
			t.Fatalf("entry %d: got %x, want %x", i, got, want)
		}
	}
}

// TestHighQ checks 2^192·Q against crypto/ecdh: not computed for a key's
// first verification, computed on the second, then kept.
func TestHighQ(t *testing.T) {
	for range 20 {
		d, _ := rand.Int(rand.Reader, curveN)
		d.Add(d, big.NewInt(1)).Mod(d, curveN)
		k := publicKey(t, d)
		want := mulBase(t, new(big.Int).Mul(d, two192))
		if k.highQ() != nil {
			t.Fatal("2^192·Q computed for a key's first verification")
		}
		first := k.highQ()
		if got := encode(*first); string(got) != string(want) {
			t.Fatalf("d=%x: got %x, want %x", d, got, want)
		}
		if k.highQ() != first {
			t.Fatal("2^192·Q computed again")
		}
	}
}

// TestCombinedMultEdges compares m·G + n·Q, by combinedMult, splitMult
// and hotMult, with (m + n·d)·G from crypto/ecdh where the products
// collide: Q is ±G, ±2^192·G, 2^192·G + G, 2^32·G or -2^352·G (pieces of a
// hot table), and the halves of m and n are equal, opposite or zero, down
// to results at infinity.
func TestCombinedMultEdges(t *testing.T) {
	t.Parallel()
	one := big.NewInt(1)
	neg := func(v *big.Int) *big.Int { return new(big.Int).Sub(curveN, v) }
	two32 := new(big.Int).Lsh(one, 32)
	two352 := new(big.Int).Lsh(one, 352)
	keys := []*big.Int{one, neg(one), two192, neg(two192), new(big.Int).Add(two192, one), big.NewInt(2),
		two32, neg(two352)}
	halves := func(lo, hi int64) *big.Int {
		v := new(big.Int).Mul(big.NewInt(hi), two192)
		return v.Add(v, big.NewInt(lo))
	}
	scalars := []*big.Int{one, two192, halves(1, 1), halves(5, 3), halves(0, 7), neg(one), neg(two192), neg(halves(1, 1)), big.NewInt(0),
		two32, two352, neg(two32), new(big.Int).Sub(two352, one)}
	random := 1 // FuzzMult goes further
	if os.Getenv("NODEKEYS_LONG") == "1" {
		random = 5
	}
	for range random {
		r, _ := rand.Int(rand.Reader, curveN)
		scalars = append(scalars, r)
	}
	for i, d := range keys { // each key its own subtest, run beside the others
		t.Run(fmt.Sprint("key", i), func(t *testing.T) {
			t.Parallel()
			checked := 0
			k := publicKey(t, d)
			high := shifted(&k.q)
			tab := buildTable(k)
			for _, m := range scalars {
				for _, n := range scalars {
					if n.Sign() == 0 {
						continue // Verify never sees u2 = 0: r is in [1, n-1]
					}
					// And m·G + n·Q at infinity: m = -n·d.
					for _, mm := range []*big.Int{m, new(big.Int).Mod(new(big.Int).Neg(new(big.Int).Mul(n, d)), curveN)} {
						var mb, nb [48]byte
						mm.FillBytes(mb[:])
						n.FillBytes(nb[:])
						want := mulBase(t, new(big.Int).Add(mm, new(big.Int).Mul(n, d)))
						checkProducts(t, k, high, tab, &mb, &nb, want)
						checked += 2
					}
				}
			}
			t.Logf("%d products agree with crypto/ecdh", checked)
		})
	}
}

// FuzzMult compares the three multiplications, m·G + n·Q for Q = d·G, with
// (m + n·d)·G from crypto/ecdh, on arbitrary scalars.
func FuzzMult(f *testing.F) {
	f.Add([]byte{1}, []byte{1}, []byte{1})
	f.Add(two192.Bytes(), two192.Bytes(), []byte{1})
	f.Add(new(big.Int).Sub(curveN, big.NewInt(1)).Bytes(), []byte{1}, []byte{1})
	f.Add([]byte{2}, new(big.Int).Sub(curveN, big.NewInt(2)).Bytes(), []byte{1})
	f.Fuzz(func(t *testing.T, d, m, n []byte) {
		scalar := func(b []byte) (*big.Int, [48]byte) {
			v := new(big.Int).SetBytes(b)
			v.Mod(v, curveN)
			var out [48]byte
			v.FillBytes(out[:])
			return v, out
		}
		dv, _ := scalar(d)
		mv, mb := scalar(m)
		nv, nb := scalar(n)
		if dv.Sign() == 0 || nv.Sign() == 0 {
			return // no key is the identity; Verify never has u2 = 0
		}
		k := publicKey(t, dv)
		want := mulBase(t, new(big.Int).Add(mv, new(big.Int).Mul(nv, dv)))
		checkProducts(t, k, shifted(&k.q), buildTable(k), &mb, &nb, want)
	})
}
