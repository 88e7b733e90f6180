package benchmark

import (
	"testing"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/verify"
)

// BenchmarkLoadAllowlist measures parsing a 10,000-key CSV and building
// the verifier's allowlist from it; divide by 10,000 for the cost per key.
func BenchmarkLoadAllowlist(b *testing.B) {
	pubs, _, err := makeKeys(10_000)
	if err != nil {
		b.Fatal(err)
	}
	data := csvlist.Marshal(pubs)
	b.ReportAllocs()
	for b.Loop() {
		l, err := csvlist.Parse("allowlist", data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := verify.NewAllowlist(l.Keys()); err != nil {
			b.Fatal(err)
		}
	}
}
