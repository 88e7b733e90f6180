package accounts

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// kv is where the provider keeps what it must share among replicas:
// device authorizations, refresh-token families, failed sign-ins and
// lockouts, and (with Redis) the signing keys. Every operation is on one
// key, so that it works on a Redis Cluster too.
type kv interface {
	// get returns nil when the key is missing.
	get(ctx context.Context, key string) ([]byte, error)
	set(ctx context.Context, key string, v []byte, ttl time.Duration) error
	setNX(ctx context.Context, key string, v []byte, ttl time.Duration) (bool, error)
	// getDel takes a value: of callers taking the same key at once, one
	// gets it and the others nil.
	getDel(ctx context.Context, key string) ([]byte, error)
	del(ctx context.Context, key string) error
	// incr adds one to a counter and sets its time to live.
	incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
}

// memKV is a kv in this process, for a gateway without Redis.
type memKV struct {
	now    func() time.Time
	mu     sync.Mutex
	m      map[string]memEntry
	writes int
}

type memEntry struct {
	v   []byte
	n   int64
	exp time.Time
}

func newMemKV(now func() time.Time) *memKV { return &memKV{now: now, m: map[string]memEntry{}} }

// live returns the entry at key if it has not expired; mu is held.
func (m *memKV) live(key string) (memEntry, bool) {
	e, ok := m.m[key]
	if ok && !e.exp.IsZero() && !m.now().Before(e.exp) {
		delete(m.m, key)
		return memEntry{}, false
	}
	return e, ok
}

// put stores e, dropping expired entries now and then; mu is held.
func (m *memKV) put(key string, e memEntry, ttl time.Duration) {
	if ttl > 0 {
		e.exp = m.now().Add(ttl)
	}
	m.m[key] = e
	if m.writes++; m.writes%1024 == 0 {
		now := m.now()
		for k, x := range m.m {
			if !x.exp.IsZero() && !now.Before(x.exp) {
				delete(m.m, k)
			}
		}
	}
}

func (m *memKV) get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, _ := m.live(key)
	return e.v, nil
}

func (m *memKV) set(_ context.Context, key string, v []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(key, memEntry{v: v}, ttl)
	return nil
}

func (m *memKV) setNX(_ context.Context, key string, v []byte, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.live(key); ok {
		return false, nil
	}
	m.put(key, memEntry{v: v}, ttl)
	return true, nil
}

func (m *memKV) getDel(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(key)
	if ok {
		delete(m.m, key)
	}
	return e.v, nil
}

func (m *memKV) del(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, key)
	return nil
}

func (m *memKV) incr(_ context.Context, key string, ttl time.Duration) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, _ := m.live(key)
	e.n++
	m.put(key, e, ttl)
	return e.n, nil
}

// redisKV is a kv in Redis, shared by the replicas.
type redisKV struct {
	rdb    redis.UniversalClient
	prefix string
}

func (r *redisKV) get(ctx context.Context, key string) ([]byte, error) {
	b, err := r.rdb.Get(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

func (r *redisKV) set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	return r.rdb.Set(ctx, r.prefix+key, v, ttl).Err()
}

func (r *redisKV) setNX(ctx context.Context, key string, v []byte, ttl time.Duration) (bool, error) {
	err := r.rdb.SetArgs(ctx, r.prefix+key, v, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return err == nil, err
}

func (r *redisKV) getDel(ctx context.Context, key string) ([]byte, error) {
	b, err := r.rdb.GetDel(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

func (r *redisKV) del(ctx context.Context, key string) error {
	return r.rdb.Del(ctx, r.prefix+key).Err()
}

var incrScript = redis.NewScript(`local n = redis.call("INCR", KEYS[1]) redis.call("PEXPIRE", KEYS[1], ARGV[1]) return n`)

func (r *redisKV) incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return incrScript.Run(ctx, r.rdb, []string{r.prefix + key}, ttl.Milliseconds()).Int64()
}
