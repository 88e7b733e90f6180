package owners

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The embedded store is one bbolt file: a B+tree with copy-on-write pages
// and an fsync per write transaction, so a crash leaves the last committed
// state, and an flock so that two gateways cannot share one file by
// mistake. bbolt rather than SQLite: ownership records are keys and values
// with no query to run, and bbolt is a small pure-Go library where a
// pure-Go SQLite is a large translated C code base.

const (
	metaBucket = "meta"
	formatKey  = "format"
	format     = "nodekeys-state 1"
)

// ErrDamaged is returned by Open for a file that is not a sound state
// file.
var ErrDamaged = errors.New("the file is damaged or not a state file")

// ErrNotExist is returned by Open for a missing file. It is an error, not
// a cue to start empty: a file that vanished would otherwise lose every
// owner without a word. Create makes a new file.
var ErrNotExist = errors.New("the state file does not exist; it is made once, empty (Create)")

// Bolt is the embedded store.
type Bolt struct {
	db   *bolt.DB
	path string
}

// Create makes a new, empty state file at path (0600), refusing to replace
// one.
func Create(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	f.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("state: %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucket([]byte(metaBucket))
		if err != nil {
			return err
		}
		for _, k := range []Kind{Runs, Nodes} {
			if _, err := tx.CreateBucket([]byte(k)); err != nil {
				return err
			}
		}
		return m.Put([]byte(formatKey), []byte(format))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("state: %s: %w", path, err)
	}
	return nil
}

// Open opens an existing state file, checks every page of it, and holds
// it until Close; a second process waits up to a second, then gets an
// error. A missing file is ErrNotExist, a damaged one an error naming it.
func Open(path string, readOnly bool) (s *Bolt, err error) {
	fail := func(err error) (*Bolt, error) {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			err = ErrNotExist
		case errors.Is(err, bolterrors.ErrTimeout):
			err = errors.New("the file is in use by another process (a gateway already running?)")
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
			err = fmt.Errorf("%w (%w); restore it from a backup, or move it away and make a new one (every owner is then forgotten)", ErrDamaged, err)
		}
		return nil, fmt.Errorf("state: %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	// bbolt reads pages through a memory map and panics on some damaged
	// ones; a damaged file is an error here, never a crash. A page past the
	// end of the file would fault, so the size is checked first.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s, err = fail(fmt.Errorf("%w: %v", bolterrors.ErrInvalid, r))
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: readOnly,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			return os.OpenFile(name, flag&^os.O_CREATE, perm) // never create here
		}})
	if err != nil {
		return fail(err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket([]byte(metaBucket))
		if m == nil || string(m.Get([]byte(formatKey))) != format {
			return bolterrors.ErrInvalid
		}
		for _, k := range []Kind{Runs, Nodes} {
			if tx.Bucket([]byte(k)) == nil {
				return bolterrors.ErrInvalid
			}
		}
		if tx.Size() > fi.Size() {
			return fmt.Errorf("%w: truncated: %d bytes of %d", bolterrors.ErrInvalid, fi.Size(), tx.Size())
		}
		// Read every record once, here rather than mid-call.
		for _, k := range []Kind{Runs, Nodes} {
			err := tx.Bucket([]byte(k)).ForEach(func(key, v []byte) error {
				var o Owner
				if len(key) != 8 || json.Unmarshal(v, &o) != nil {
					return fmt.Errorf("%w: a damaged record in %s", bolterrors.ErrInvalid, k)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return fail(err)
	}
	return &Bolt{db: db, path: path}, nil
}

func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// SetOwner implements Store.
func (s *Bolt) SetOwner(_ context.Context, kind Kind, id uint64, o Owner) error {
	v, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return fmt.Errorf("state: unknown kind %q", kind)
		}
		if old := b.Get(idKey(id)); old != nil {
			var prev Owner
			if json.Unmarshal(old, &prev) == nil && prev.SameAs(o) {
				return nil
			}
			return ErrOwned
		}
		return b.Put(idKey(id), v)
	})
}

// Owners implements Store.
func (s *Bolt) Owners(_ context.Context, kind Kind, ids []uint64) (map[uint64]Owner, error) {
	out := make(map[uint64]Owner, len(ids))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return fmt.Errorf("state: unknown kind %q", kind)
		}
		for _, id := range ids {
			if v := b.Get(idKey(id)); v != nil {
				var o Owner
				if err := json.Unmarshal(v, &o); err != nil {
					return fmt.Errorf("state: %s: record %s/%d: %w", s.path, kind, id, err)
				}
				out[id] = o
			}
		}
		return nil
	})
	return out, err
}

// All implements Store.
func (s *Bolt) All(_ context.Context, kind Kind) (map[uint64]Owner, error) {
	out := map[uint64]Owner{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return fmt.Errorf("state: unknown kind %q", kind)
		}
		return b.ForEach(func(k, v []byte) error {
			var o Owner
			if len(k) != 8 || json.Unmarshal(v, &o) != nil {
				return fmt.Errorf("state: %s: a damaged record in %s", s.path, kind)
			}
			out[binary.BigEndian.Uint64(k)] = o
			return nil
		})
	})
	return out, err
}

// Close implements Store.
func (s *Bolt) Close() error { return s.db.Close() }
