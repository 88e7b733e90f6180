package flwr

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FormatTimestamp formats t as a SuperNode writes flwr-timestamp: Python's
// datetime.isoformat() of an aware UTC datetime,
// "2026-11-22T17:45:03.123456+00:00", and "2026-11-22T17:45:03+00:00"
// when the microseconds are 0. Python keeps microseconds; finer digits are
// dropped.
func FormatTimestamp(t time.Time) string {
	t = t.UTC().Truncate(time.Microsecond)
	if t.Nanosecond() == 0 {
		return t.Format("2006-01-02T15:04:05+00:00")
	}
	return t.Format("2006-01-02T15:04:05.000000+00:00")
}

// MaxTimestampLen bounds flwr-timestamp: the longest accepted form is 32
// bytes.
const MaxTimestampLen = 64

// ParseTimestamp parses a flwr-timestamp value. It accepts exactly
//
//	YYYY-MM-DD(T| )HH:MM:SS[.fff|.ffffff](+|-)HH:MM
//
// the forms that every Python from 3.10 to 3.13 reads with
// datetime.fromisoformat() to the same instant, and that a SuperNode sends
// (isoformat() of an aware UTC time: "T", six digits or none, "+00:00").
// Flower's decision depends on its SuperLink's Python: 3.11 and later also
// read "Z", 1 to 9 fraction digits (truncating past 6), ",", basic and week
// dates, hour-only times and any separator, which 3.10 refuses. Refusing
// those here means nodekeys never accepts a timestamp that some Flower
// SuperLink refuses, and loses no SuperNode, which never sends them. A
// timestamp without a UTC offset (Flower's SuperLink crashes on it), one
// longer than MaxTimestampLen, or one not ASCII is refused. It does not
// allocate.
func ParseTimestamp(s string) (time.Time, bool) {
	if len(s) < 25 || len(s) > MaxTimestampLen {
		return time.Time{}, false
	}
	year, ok1 := digits(s, 0, 4)
	month, ok2 := digits(s, 5, 2)
	day, ok3 := digits(s, 8, 2)
	hour, ok4 := digits(s, 11, 2)
	minute, ok5 := digits(s, 14, 2)
	sec, ok6 := digits(s, 17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	if year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	i := 19
	usec := 0
	if s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			usec = usec*10 + int(s[i]-'0')
			i++
		}
		switch i - start {
		case 3:
			usec *= 1000
		case 6:
		default:
			return time.Time{}, false // Python 3.10 reads 3 or 6 digits only
		}
	}
	if len(s)-i != 6 || (s[i] != '+' && s[i] != '-') || s[i+3] != ':' {
		return time.Time{}, false
	}
	oh, okh := digits(s, i+1, 2)
	om, okm := digits(s, i+4, 2)
	if !okh || !okm || oh > 23 || om > 59 {
		return time.Time{}, false
	}
	offset := oh*3600 + om*60
	if s[i] == '-' {
		offset = -offset
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, usec*1000, time.UTC).Add(-time.Duration(offset) * time.Second)
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, false // outside Python's datetime once in UTC
	}
	return t, true
}

// digits parses n ASCII digits of s at i.
func digits(s string, i, n int) (int, bool) {
	if i+n > len(s) {
		return 0, false
	}
	v := 0
	for _, c := range []byte(s[i : i+n]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// Window is the accepted range of now - timestamp: a call is accepted when
// -Future < now - timestamp < Past, both ends open, as Flower checks it.
type Window struct {
	Future, Past time.Duration
}

// DefaultWindow is Flower's window since 1.20: -5 s < d < 305 s.
var DefaultWindow = Window{Future: 5 * time.Second, Past: 305 * time.Second}

// VersionError is a Flower version WindowOf has no window for.
type VersionError struct {
	Version string
	Reason  string // the message without the package's prefix
}

func (e *VersionError) Error() string { return "flwr: " + e.Reason }

// WindowOf returns the window of a Flower version ("1.19", "1.15.0",
// "1.27.0rc1"): 0 < d < 10 s in 1.15.0 (whose headers lacked the flwr-
// prefix), -5 s < d < 15 s in 1.15.1 to 1.19, DefaultWindow from 1.20.
// Flower before 1.15 used another scheme, and has no window; nor has a
// major version after 1, which this package does not know. A pre-release
// or development suffix of the last number (rc1, .dev0) is its release's.
func WindowOf(version string) (Window, error) {
	notVersion := &VersionError{Version: version, Reason: fmt.Sprintf("%q is not a Flower version like 1.19", version)}
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return Window{}, notVersion
	}
	nums := make([]int, 3)
	for i, p := range parts {
		if i == len(parts)-1 {
			// 1.27.0rc1, 1.27.0.dev0, 1.27rc1: the release the suffix is of.
			j := strings.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' })
			if j > 0 && (p[j] == '.' || p[j] >= 'a' && p[j] <= 'z') {
				p = p[:j]
			}
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p[0] == '+' {
			return Window{}, notVersion
		}
		nums[i] = n
	}
	major, minor, patch := nums[0], nums[1], nums[2]
	switch {
	case major > 1:
		return Window{}, &VersionError{Version: version, Reason: fmt.Sprintf("Flower %s is newer than this nodekeys knows (1.15 to 1.x sign timestamps)", version)}
	case major < 1 || minor < 15:
		return Window{}, &VersionError{Version: version, Reason: fmt.Sprintf("Flower %s does not use signed timestamps (1.15 and later do)", version)}
	case minor == 15 && patch == 0 && len(parts) == 3:
		return Window{Future: 0, Past: 10 * time.Second}, nil
	case minor < 20:
		return Window{Future: 5 * time.Second, Past: 15 * time.Second}, nil
	}
	return DefaultWindow, nil
}
