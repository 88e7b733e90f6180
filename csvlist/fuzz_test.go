package csvlist_test

import (
	"testing"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/keys"
)

// FuzzParse feeds arbitrary files to the reader: it must not panic, and
// what it accepts must survive Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	p, _ := keys.Generator{Seed: []byte("fuzz seed for csvlist")}.Pair(1)
	q, _ := keys.Generator{Seed: []byte("fuzz seed for csvlist")}.Pair(2)
	a, b := p.Public.AuthorizedKey(), q.Public.AuthorizedKey()
	for _, s := range []string{a + "," + b + "\n", a + "\r\n" + b, "\ufeff" + a + ", " + b + ",", `"` + a + `"`, "ssh-rsa AAAA", ",,\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := csvlist.Parse("fuzz.csv", data)
		if err != nil {
			return
		}
		again, err := csvlist.Parse("again.csv", csvlist.Marshal(l.Keys()))
		if err != nil {
			t.Fatalf("re-reading what Marshal wrote: %v", err)
		}
		if len(again.Entries) != len(l.Entries) {
			t.Fatalf("%d keys became %d", len(l.Entries), len(again.Entries))
		}
		for i := range l.Entries {
			if !l.Entries[i].Key.Equal(again.Entries[i].Key) {
				t.Fatalf("key %d changed", i)
			}
		}
	})
}
