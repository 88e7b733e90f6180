package shared

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The epoch is how a replica learns that Redis lost the shared state
// (restarted without persistence, flushed, or replaced by an empty
// server): the key PREFIX epoch{PREFIX revoked} holds a random id and the
// time, on Redis's clock, that the first replica to find it missing wrote
// it. Its hash tag keeps it in the revoked set's slot, so that in a
// Cluster both sit on the same node. With one primary (standalone or
// Sentinel) the epoch is read on every new connection, before any other
// command: a restart ends every connection, so a replica sees the new
// epoch before it uses the new server. The watch loop reads it every
// CheckInterval too (a flush keeps the connections; a Cluster's other
// nodes are not followed).
//
// From the epoch, and from the outages its watch loop sees, each replica
// derives two things:
//
//   - the replay floor: a header signed before the epoch began, or before
//     this replica reached Redis again after an outage, may have been
//     accepted by another replica (recorded in the lost data, or by that
//     replica's own guard alone), so the replay guard refuses it as
//     Unavailable; the node signs its next call anew;
//   - when the revoked set is trusted: settle (2 x CheckInterval +
//     3 x Timeout) after the epoch began or Redis came back, time for every
//     replica's watch loop to assert again the revocations it has seen.
//
// What is not followed: the loss of a Cluster node other than the
// epoch's (its replay entries and buckets), a failover to a replica that
// missed the last writes (with its data: no new epoch), and an outage too
// short for two looks in a row of this replica's watch loop to fail (it
// looks every CheckInterval, and at once when a call finds Redis
// failing).
const epochScript = `
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local v = redis.call('GET', KEYS[1])
if not v then
  v = ARGV[1] .. ':' .. now
  redis.call('SET', KEYS[1], v)
end
return {v, now}
`

// ErrSettling is Revoked's error while this replica cannot trust the
// revoked set yet: Redis lost its data or was unreachable a moment ago,
// and the replicas are asserting again the revocations they have seen.
var ErrSettling = errors.New("shared: the revocations kept in Redis are being restored after Redis lost them or was unreachable")

type epoch struct {
	settle time.Duration
	floor  atomic.Int64 // unix ns: headers signed before are refused
	down   atomic.Bool  // the watch loop found Redis unreachable (twice in a row)

	mu        sync.Mutex
	value     string    // the epoch in force, as stored; "" before the first
	trustFrom time.Time // when the revoked set is trusted again
	known     map[[sha256.Size]byte]struct{}
	onReset   func(revocations int)
}

func (b *Backend) epochKey() string {
	if strings.ContainsAny(b.cfg.Prefix, "{}") {
		return b.key("epoch") // the prefix's own hash tag decides the slot
	}
	return b.key("epoch{", b.key("revoked"), "}")
}

func newEpochID() string {
	var id [16]byte
	rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// readEpoch reads the epoch through c, writing a new one if Redis has
// none, and adopts it.
func (b *Backend) readEpoch(ctx context.Context, c redis.Scripter) error {
	res, err := c.Eval(ctx, epochScript, []string{b.epochKey()}, newEpochID()).StringSlice()
	if err != nil {
		return err
	}
	b.adopt(res)
	return nil
}

// check reads the epoch, as the first thing New does.
func (b *Backend) check(ctx context.Context) error { return b.readEpoch(ctx, b.rdb) }

// onConnect reads the epoch on a new connection to the primary.
func (b *Backend) onConnect(ctx context.Context, cn *redis.Conn) error {
	err := b.readEpoch(ctx, cn)
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return nil // a Sentinel, which runs no scripts: the watch loop reads it
	}
	return err
}

// adopt takes the epoch ["id:unix ms", server's unix ms] read from Redis.
func (b *Backend) adopt(res []string) {
	if len(res) != 2 {
		return
	}
	began := time.Now()
	_, at, _ := strings.Cut(res[0], ":")
	created, err1 := strconv.ParseInt(at, 10, 64)
	now, err2 := strconv.ParseInt(res[1], 10, 64)
	if err1 == nil && err2 == nil && now > created {
		began = began.Add(-time.Duration(now-created) * time.Millisecond)
	}
	e := &b.ep
	e.mu.Lock()
	if res[0] == e.value {
		e.mu.Unlock()
		return
	}
	lost := e.value != ""
	e.value = res[0]
	raise(&e.floor, began)
	e.trustFrom = later(e.trustFrom, began.Add(e.settle))
	n, hook := len(e.known), e.onReset
	e.mu.Unlock()
	if lost {
		b.look() // assert the revocations again now
		if hook != nil {
			hook(n)
		}
	}
}

// up notes a round trip that succeeded. After an outage the watch loop
// saw, a header signed before now may have been accepted by another
// replica's own guard alone, and revocations made meanwhile are yet to
// be asserted again.
func (b *Backend) up() {
	e := &b.ep
	if !e.down.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down.Load() {
		now := time.Now()
		raise(&e.floor, now)
		e.trustFrom = later(e.trustFrom, now.Add(e.settle))
		e.down.Store(false)
		b.look() // assert the revocations again now
	}
}

// trusted reports whether the revoked set may be believed, read with the
// epoch value.
func (b *Backend) trusted(value string) bool {
	e := &b.ep
	if e.down.Load() {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return value == e.value && !time.Now().Before(e.trustFrom)
}

// beforeFloor reports whether a header signed at signed was signed before
// the replay floor.
func (b *Backend) beforeFloor(signed time.Time) bool {
	return signed.UnixNano() < b.ep.floor.Load()
}

func (b *Backend) remember(hashes [][sha256.Size]byte) {
	e := &b.ep
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.known == nil {
		e.known = make(map[[sha256.Size]byte]struct{}, len(hashes))
	}
	for _, h := range hashes {
		e.known[h] = struct{}{}
	}
}

func (b *Backend) revocations() []any {
	e := &b.ep
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]any, 0, len(e.known))
	for h := range e.known {
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

// OnReset sets fn, called when this replica finds that Redis lost the
// shared state (a new epoch), with the number of revocations it asserts
// again. Set it before serving.
func (b *Backend) OnReset(fn func(revocations int)) {
	b.ep.mu.Lock()
	defer b.ep.mu.Unlock()
	b.ep.onReset = fn
}

// look asks the watch loop to look now.
func (b *Backend) look() {
	select {
	case b.poke <- struct{}{}:
	default:
	}
}

// watch asserts the remembered revocations again and reads the epoch,
// every CheckInterval and when asked, until ctx ends; at most four times
// an interval, however often asked.
func (b *Backend) watch(ctx context.Context) {
	defer close(b.done)
	tick := time.NewTicker(b.cfg.CheckInterval)
	defer tick.Stop()
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-b.poke:
		}
		b.tick(ctx)
		pace.Reset(b.cfg.CheckInterval / 4)
		select {
		case <-ctx.Done():
			return
		case <-pace.C:
		}
	}
}

// tick is one look, in one round trip. Two failed looks in a row are an
// outage (one may be a slow moment): down is set, and reported. After a
// look that failed, the next dials anew, on a client of its own:
// go-redis's pool, after many failed dials, tries again only once a
// second, and the revocations this replica asserts must reach Redis
// within settle of its return.
func (b *Backend) tick(ctx context.Context) {
	var c redis.UniversalClient = b.rdb
	timeout := b.cfg.Timeout
	if b.fails > 0 {
		c = redis.NewUniversalClient(b.opts)
		defer c.Close()
		timeout = 3 * b.cfg.Timeout // the dial's 2 x Timeout, then the round trip
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	known := b.revocations()
	pipe := c.Pipeline()
	if len(known) > 0 {
		pipe.SAdd(ctx, b.key("revoked"), known...)
	}
	ep := pipe.Eval(ctx, epochScript, []string{b.epochKey()}, newEpochID())
	if _, err := pipe.Exec(ctx); err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return // closing
		}
		if b.fails++; b.fails == 1 {
			b.look() // again soon
			return
		}
		b.ep.down.Store(true)
		b.report("watch", err)
		return
	}
	b.fails = 0
	b.up()
	res, _ := ep.StringSlice()
	b.adopt(res)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// raise sets a to t (unix ns) unless it is later already.
func raise(a *atomic.Int64, t time.Time) {
	n := t.UnixNano()
	for {
		old := a.Load()
		if n <= old || a.CompareAndSwap(old, n) {
			return
		}
	}
}
