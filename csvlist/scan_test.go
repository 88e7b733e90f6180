package csvlist

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/peer"
)

// pyRows splits each input with Python's csv.reader, the SuperLink's
// reader, and prints the rows as JSON.
const pyRows = `
import csv, io, json, sys
out = []
for s in json.load(sys.stdin):
    out.append(list(csv.reader(io.StringIO(s, newline=""))))
print(json.dumps(out))
`

// TestScanMatchesPython splits awkward inputs as Python's csv.reader does.
func TestScanMatchesPython(t *testing.T) {
	inputs := []string{
		"a,b,c\n", "a,b,c", "a\nb\n\nc\n", "a\r\nb\rc", ",a,,b,\n", "\n\n", "",
		`"a,b",c` + "\n", `"a""b",c`, `"a` + "\n" + `b",c`, `a"b,c`, `"a"b,c`, " a , b ",
		"a,\n,b\n", `""` + "\n", "a,b\r\n\r\nc",
	}
	in, err := json.Marshal(inputs)
	require.NoError(t, err)
	var want [][][]string
	require.NoError(t, json.Unmarshal(peer.Python(t, in, pyRows), &want))
	for n, s := range inputs {
		var got [][]string
		scanFields([]byte(s), func(f field) bool {
			if f.index == 0 {
				got = append(got, nil)
			}
			got[len(got)-1] = append(got[len(got)-1], string(f.text))
			return true
		})
		w := want[n]
		// Python gives an empty row for a blank line; scanFields gives none.
		var nonEmpty [][]string
		for _, r := range w {
			if len(r) > 0 {
				nonEmpty = append(nonEmpty, r)
			}
		}
		assert.Equal(t, nonEmpty, got, "%q", s)
	}
}

func TestScanPositions(t *testing.T) {
	var pos [][2]int
	scanFields([]byte("ab,cd\r\n\nef,\"g\nh\",ij"), func(f field) bool {
		pos = append(pos, [2]int{f.line, f.col})
		return true
	})
	assert.Equal(t, [][2]int{{1, 1}, {1, 4}, {3, 1}, {3, 4}, {4, 4}}, pos)
}
