package accounts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"

	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/internal/safefile"
)

// RetiredKeyKept is how long a rotated-out signing key stays published:
// longer than any access token it signed lives (access_token_lifetime is
// at most an hour), so rotation refuses no token before its expiry.
const RetiredKeyKept = 24 * time.Hour

// keyRing is the provider's signing keys (ES256, P-256), newest last, and
// the secret its sign-in page keys its CSRF tokens and device cookies
// with. It is kept in keys_file (0600) or, with Redis, under one key.
type keyRing struct {
	Keys   []ringKey `json:"keys"`
	Secret []byte    `json:"secret"`
}

type ringKey struct {
	ID      string    `json:"kid"`
	PKCS8   []byte    `json:"pkcs8"`
	Made    time.Time `json:"made"`
	Retired time.Time `json:"retired,omitzero"`

	key *ecdsa.PrivateKey
}

func newRingKey(now time.Time) (ringKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ringKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return ringKey{}, err
	}
	return ringKey{ID: randomID("k-", 9), PKCS8: der, Made: now.UTC(), key: k}, nil
}

func newRing(now time.Time) (*keyRing, error) {
	k, err := newRingKey(now)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	return &keyRing{Keys: []ringKey{k}, Secret: secret}, nil
}

func parseRing(name string, b []byte) (*keyRing, error) {
	r := &keyRing{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("accounts: signing keys %s: %v", name, err)
	}
	if len(r.Keys) == 0 || len(r.Secret) < 32 {
		return nil, fmt.Errorf("accounts: signing keys %s: no key, or no secret", name)
	}
	for i := range r.Keys {
		k, err := x509.ParsePKCS8PrivateKey(r.Keys[i].PKCS8)
		ec, ok := k.(*ecdsa.PrivateKey)
		if err != nil || !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("accounts: signing keys %s: key %q is not a P-256 key", name, r.Keys[i].ID)
		}
		r.Keys[i].key = ec
	}
	return r, nil
}

// current is the key that signs: the newest.
func (r *keyRing) current() *ringKey { return &r.Keys[len(r.Keys)-1] }

// published are the keys in the JWKS: the current one and those retired
// less than RetiredKeyKept ago.
func (r *keyRing) published(now time.Time) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range r.Keys {
		if k.Retired.IsZero() || now.Sub(k.Retired) < RetiredKeyKept {
			out = append(out, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.ID, Algorithm: string(jose.ES256), Use: "sig"})
		}
	}
	return out
}

// rotate adds a new current key, retires the old one, and drops keys
// retired past RetiredKeyKept.
func (r *keyRing) rotate(now time.Time) error {
	k, err := newRingKey(now)
	if err != nil {
		return err
	}
	var kept []ringKey
	for _, old := range r.Keys {
		if old.Retired.IsZero() {
			old.Retired = now.UTC()
		}
		if now.Sub(old.Retired) < RetiredKeyKept {
			kept = append(kept, old)
		}
	}
	r.Keys = append(kept, k)
	return nil
}

func (r *keyRing) marshal() []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return append(b, '\n')
}

// keySource reads the key ring, making it at first use.
type keySource interface {
	load(ctx context.Context) (*keyRing, error)
}

type fileKeys struct{ path string }

// load reads the keys file, writing a new one (0600) if there is none.
func (f fileKeys) load(context.Context) (*keyRing, error) {
	dir, err := atomicfile.OpenFolder(filepath.Dir(f.path))
	if err != nil {
		return nil, fmt.Errorf("accounts: keys_file: %w", err)
	}
	defer dir.Close()
	if !dir.Exists(filepath.Base(f.path)) {
		if err := dir.Lock(10*time.Second, nil); err != nil {
			return nil, fmt.Errorf("accounts: keys_file: %w", err)
		}
		defer dir.Unlock()
		if !dir.Exists(filepath.Base(f.path)) {
			r, err := newRing(time.Now())
			if err != nil {
				return nil, err
			}
			if err := dir.Write(filepath.Base(f.path), r.marshal(), 0o600, false); err != nil {
				return nil, fmt.Errorf("accounts: keys_file: %w", err)
			}
			return r, nil
		}
	}
	b, err := safefile.ReadRegular(f.path, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("accounts: keys_file: %w", err)
	}
	return parseRing(f.path, b)
}

// RotateKeyFile rotates the signing keys in the keys file at path (made
// if missing) and returns the new key's id. A gateway signs with the new
// key within a second; tokens of the old one stay valid to their expiry.
func RotateKeyFile(path string) (string, error) {
	if _, err := (fileKeys{path}).load(context.Background()); err != nil {
		return "", err
	}
	dir, err := atomicfile.OpenFolder(filepath.Dir(path))
	if err != nil {
		return "", fmt.Errorf("accounts: %w", err)
	}
	defer dir.Close()
	if err := dir.Lock(10*time.Second, nil); err != nil {
		return "", fmt.Errorf("accounts: %w", err)
	}
	b, err := safefile.ReadRegular(path, 1<<20)
	if err != nil {
		return "", fmt.Errorf("accounts: %w", err)
	}
	r, err := parseRing(path, b)
	if err != nil {
		return "", err
	}
	if err := r.rotate(time.Now()); err != nil {
		return "", err
	}
	if err := dir.Write(filepath.Base(path), r.marshal(), 0o600, true); err != nil {
		return "", fmt.Errorf("accounts: %w", err)
	}
	return r.current().ID, nil
}

const keysKey = "accounts:keys"

type kvKeys struct{ kv kv }

func (s kvKeys) load(ctx context.Context) (*keyRing, error) {
	b, err := s.kv.get(ctx, keysKey)
	if err != nil {
		return nil, err
	}
	if b == nil {
		r, err := newRing(time.Now())
		if err != nil {
			return nil, err
		}
		if _, err := s.kv.setNX(ctx, keysKey, r.marshal(), 0); err != nil {
			return nil, err
		}
		// Another replica may have made them first: take what is there.
		if b, err = s.kv.get(ctx, keysKey); err != nil {
			return nil, err
		}
		if b == nil {
			return nil, errors.New("accounts: the signing keys vanished from Redis")
		}
	}
	return parseRing("in Redis", b)
}

// RotateKeysRedis rotates the signing keys shared in Redis (under
// prefix) and returns the new key's id.
func RotateKeysRedis(ctx context.Context, rdb redis.UniversalClient, prefix string) (string, error) {
	s := kvKeys{&redisKV{rdb: rdb, prefix: prefix}}
	r, err := s.load(ctx)
	if err != nil {
		return "", err
	}
	if err := r.rotate(time.Now()); err != nil {
		return "", err
	}
	if err := s.kv.set(ctx, keysKey, r.marshal(), 0); err != nil {
		return "", err
	}
	return r.current().ID, nil
}
