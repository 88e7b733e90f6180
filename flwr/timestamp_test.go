package flwr

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/internal/peer"
)

var now = time.Date(2026, 11, 22, 17, 45, 3, 123456000, time.UTC)

func TestFlowerWindow(t *testing.T) {
	for version, want := range map[string]Window{
		"1.15.0":      {Future: 0, Past: 10 * time.Second},
		"1.15.1":      {Future: 5 * time.Second, Past: 15 * time.Second},
		"1.15":        {Future: 5 * time.Second, Past: 15 * time.Second},
		"1.19":        {Future: 5 * time.Second, Past: 15 * time.Second},
		"1.20":        DefaultWindow,
		"1.23.1":      DefaultWindow,
		"1.27.0rc1":   DefaultWindow,
		"1.27.0.dev0": DefaultWindow,
		"1.19rc1":     {Future: 5 * time.Second, Past: 15 * time.Second},
		"1.15.0rc1":   {Future: 0, Past: 10 * time.Second},
	} {
		w, err := WindowOf(version)
		require.NoError(t, err, version)
		assert.Equal(t, want, w, version)
	}
	for _, bad := range []string{"", "1", "1.x", "1.14", "2.0", "-1.20", "1.rc1", "1.20.x", "1.+20", "rc1.20"} {
		_, err := WindowOf(bad)
		var ve *VersionError
		require.ErrorAs(t, err, &ve, bad)
		assert.Equal(t, bad, ve.Version)
		assert.Equal(t, "flwr: "+ve.Reason, err.Error())
	}
	_, err := WindowOf("2.0")
	assert.EqualError(t, err, "flwr: Flower 2.0 is newer than this nodekeys knows (1.15 to 1.x sign timestamps)")
	_, err = WindowOf("1.14")
	assert.EqualError(t, err, "flwr: Flower 1.14 does not use signed timestamps (1.15 and later do)")
}

func TestTimestampForms(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want time.Time
	}{
		{"2026-11-22T17:45:03.123456+00:00", time.Date(2026, 11, 22, 17, 45, 3, 123456000, time.UTC)},
		{"2026-11-22T17:45:03+00:00", time.Date(2026, 11, 22, 17, 45, 3, 0, time.UTC)},
		{"2026-11-22 17:45:03.500000+00:00", time.Date(2026, 11, 22, 17, 45, 3, 500000000, time.UTC)},
		{"2026-11-22T18:45:03.123+01:00", time.Date(2026, 11, 22, 17, 45, 3, 123000000, time.UTC)},
		{"2026-11-22T12:15:03-05:30", time.Date(2026, 11, 22, 17, 45, 3, 0, time.UTC)},
		{"2024-02-29T00:00:00.000001+00:00", time.Date(2024, 2, 29, 0, 0, 0, 1000, time.UTC)},
	} {
		got, ok := ParseTimestamp(tc.s)
		require.True(t, ok, tc.s)
		assert.True(t, tc.want.Equal(got), "%s: %v", tc.s, got)
	}
	for _, bad := range []string{
		"", "2026-11-22T17:45:03", "2026-11-22T17:45:03.123456", "2026-11-22", "2026-13-22T17:45:03+00:00",
		"2026-02-29T17:45:03+00:00", "2026-11-22T24:00:00+00:00", "2026-11-22T17:60:03+00:00",
		"2026-11-22T17:45:60+00:00", "2026-11-22T17:45:03.+00:00", "2026-11-22T17:45:03.1234567890+00:00",
		"2026-11-22T17:45:03+0000", "2026-11-22T17:45:03+24:00", "2026-11-22X17:45:03+00:00",
		"２026-11-22T17:45:03+00:00", "2026-11-22T17:45:03+00:00 ", "2026-11-22T17:45:03z",
		"0000-01-01T00:00:00+00:00", strings.Repeat("2", 100),
		// Python 3.11 reads these; 3.10 does not, so no SuperLink on it would.
		"2026-11-22T17:45:03Z", "2026-11-22T17:45:03.5+00:00", "2024-02-29T00:00:00.000000001+00:00",
		"2026-11-22T17:45:03,123+00:00", "2026-11-22T17:45+00:00", "20261122T174503+0000",
	} {
		_, ok := ParseTimestamp(bad)
		assert.False(t, ok, "%q", bad)
	}
}

func TestFormatTimestampRoundTrip(t *testing.T) {
	assert.Equal(t, "2026-11-22T17:45:03.123456+00:00", FormatTimestamp(now))
	assert.Equal(t, "2026-11-22T17:45:03+00:00", FormatTimestamp(now.Truncate(time.Second)))
	assert.Equal(t, "2026-11-22T17:45:03.000001+00:00", FormatTimestamp(now.Truncate(time.Second).Add(1999*time.Nanosecond)))
	loc := time.FixedZone("X", 3600)
	assert.Equal(t, "2026-11-22T17:45:03.123456+00:00", FormatTimestamp(now.In(loc)))
}

// FuzzParseTimestamp: no panic; an accepted timestamp formats back (in
// UTC, to the microsecond) to a string that parses to the same instant.
func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"2026-11-22T17:45:03.123456+00:00", "2026-11-22T17:45:03+00:00", "2026-11-22 17:45:03Z",
		"2026-11-22T17:45:03.5-05:30", "2024-02-29T23:59:59.999999999+23:59", "2026-11-22T17:45:03"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, ok := ParseTimestamp(s)
		if !ok {
			return
		}
		if len(s) > MaxTimestampLen {
			t.Fatal("accepted an over-long timestamp")
		}
		back, ok := ParseTimestamp(FormatTimestamp(ts))
		if !ok || !back.Equal(ts.Truncate(time.Microsecond)) {
			t.Fatalf("%q: %v formats to %q", s, ts, FormatTimestamp(ts))
		}
	})
}

// pyFromISO prints, for each line of stdin, the UTC instant Python's
// datetime.fromisoformat reads (microseconds since the epoch), or "refused".
const pyFromISO = `
import sys
from datetime import datetime, timezone
epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
for line in sys.stdin.read().split("\n")[:-1]:
    try:
        t = datetime.fromisoformat(line)
        if t.tzinfo is None:
            print("naive"); continue
        d = t - epoch
        print((d.days * 86400 + d.seconds) * 10**6 + d.microseconds)
    except Exception:
        print("refused")
`

// TestTimestampGrammarAgainstPython spells timestamps many ways and checks
// them against the machine's Python: whatever ParseTimestamp accepts,
// Python reads to the same instant; a SuperNode's forms are accepted by
// both; what Python reads and nodekeys refuses lies outside Python 3.10's
// grammar (ParseTimestamp's doc lists those forms).
func TestTimestampGrammarAgainstPython(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	var spellings []string
	seps := []string{"T", " ", "t", "x", "_"}
	fracs := []string{"", ".1", ".12", ".123", ".1234", ".12345", ".123456", ".1234567", ".123456789", ",123456", "."}
	zones := []string{"+00:00", "-00:00", "+01:30", "-05:00", "Z", "z", "+0000", "+00", "+00:00:30", "+00:00:30.5", "", "+24:00", "-23:59"}
	for range 400 {
		at := time.Unix(rnd.Int64N(4e9), 0).UTC()
		date := at.Format("2006-01-02")
		clock := at.Format("15:04:05")
		switch rnd.IntN(8) {
		case 0:
			clock = at.Format("15:04")
		case 1:
			date = at.Format("20060102")
		}
		spellings = append(spellings, date+seps[rnd.IntN(len(seps))]+clock+fracs[rnd.IntN(len(fracs))]+zones[rnd.IntN(len(zones))])
	}
	// What SuperNodes send: isoformat() of an aware UTC time.
	var supernode []string
	for range 200 {
		at := time.Unix(rnd.Int64N(4e9), int64(rnd.IntN(1e6))*1000*int64(rnd.IntN(2)))
		supernode = append(supernode, FormatTimestamp(at))
	}
	all := append(spellings, supernode...)
	out := strings.Split(strings.TrimSpace(string(peer.Python(t, []byte(strings.Join(all, "\n")+"\n"), pyFromISO))), "\n")
	require.Len(t, out, len(all))
	accepted, pyOnly := 0, 0
	for i, s := range all {
		got, ok := ParseTimestamp(s)
		py := out[i]
		if ok {
			accepted++
			require.NotEqual(t, "refused", py, "%q: nodekeys accepts what Python refuses", s)
			assert.Equal(t, py, fmt.Sprint(got.UnixMicro()), "%q: another instant than Python's", s)
			continue
		}
		require.Less(t, i, len(spellings), "%q: a SuperNode's timestamp refused", s)
		if py != "refused" && py != "naive" {
			pyOnly++
			assert.True(t, outside310(s), "%q: Python 3.10 reads it too, nodekeys should", s)
		}
	}
	t.Logf("%d of %d spellings accepted by both; %d read only by Python 3.11+", accepted, len(all), pyOnly)
	assert.Greater(t, accepted, len(supernode))
}

// outside310 reports whether s uses a form Python 3.10's fromisoformat
// refuses, or one nodekeys refuses on purpose though 3.10 reads it (an
// hour-and-minute time, another separator, an offset with seconds).
func outside310(s string) bool {
	if len(s) < 11 || s[4] != '-' || s[7] != '-' {
		return true // basic date
	}
	rest := s[11:]
	if s[10] != 'T' && s[10] != ' ' {
		return true // other separators: 3.10 reads them, no SuperNode sends them
	}
	if strings.ContainsAny(rest, "Zz,") {
		return true
	}
	if len(rest) < 8 || rest[5] != ':' {
		return true // HH:MM only
	}
	clock, zone := rest[:8], rest[8:]
	_ = clock
	if f, ok := strings.CutPrefix(zone, "."); ok {
		n := len(f) - len(strings.TrimLeft(f, "0123456789"))
		if n != 3 && n != 6 {
			return true
		}
		zone = f[n:]
	}
	return len(zone) != 6 // +HH:MM:SS offsets, +HHMM, +HH
}
