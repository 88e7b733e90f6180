//go:build amd64 && !purego

package p384

import (
	"crypto/rand"
	"math/big"
	"testing"
)

func TestWNAF(t *testing.T) {
	cases := [][48]byte{{}, {47: 1}}
	var all [48]byte
	for i := range all {
		all[i] = 0xff
	}
	cases = append(cases, all)
	for range 2000 {
		var k [48]byte
		rand.Read(k[:])
		cases = append(cases, k)
	}
	for _, k := range cases {
		for _, w := range []uint{5, 7, 8} {
			var out [386]int8
			n := wnaf(&out, &k, w)
			sum := new(big.Int)
			for i := n - 1; i >= 0; i-- {
				d := out[i]
				if d != 0 && (d%2 == 0 || int(abs8(d)) >= 1<<(w-1)) {
					t.Fatalf("digit %d at %d is not odd and below 2^(w-1)", d, i)
				}
				sum.Lsh(sum, 1).Add(sum, big.NewInt(int64(d)))
			}
			if want := new(big.Int).SetBytes(k[:]); sum.Cmp(want) != 0 {
				t.Fatalf("w=%d: NAF of %x sums to %x", w, want, sum)
			}
		}
	}
}
