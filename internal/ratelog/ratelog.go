// Package ratelog bounds how many lines a flood can write to a log: a
// Limiter lets a fixed number of lines through each second and counts the
// rest, so the next line that passes can say how many were left out.
package ratelog

import (
	"sync"
	"time"
)

// Limiter lets PerSecond lines through each second. The zero value lets
// none through; it is safe for concurrent use.
type Limiter struct {
	PerSecond int

	mu      sync.Mutex
	second  int64
	n       int
	dropped int
}

// Allow reports whether a line may be logged at now, and how many lines
// were dropped since the last one that was.
func (l *Limiter) Allow(now time.Time) (ok bool, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second {
		l.second, l.n = s, 0
	}
	if l.n >= l.PerSecond {
		l.dropped++
		return false, 0
	}
	l.n++
	d := l.dropped
	l.dropped = 0
	return true, d
}
