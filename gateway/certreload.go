package gateway

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodekeys/nodekeys/internal/filewatch"
	"github.com/nodekeys/nodekeys/internal/safefile"
)

// certReloader serves a certificate and key from files and reloads them
// when either file changes (a filewatch.Stamp: replaced, resized or
// touched), looking at most once an interval (filewatch.DefaultInterval),
// at a handshake: a certificate renewed with certgen --force is served to
// new connections without a restart. A pair that fails to load leaves the
// old one served.
type certReloader struct {
	certPath, keyPath string
	log               *slog.Logger
	onLoad            func(*tls.Certificate)
	interval          time.Duration

	cur  atomic.Pointer[tls.Certificate]
	mu   sync.Mutex
	next time.Time // the next look at the files
	seen [2]filewatch.Stamp
}

func newCertReloader(certPath, keyPath string, log *slog.Logger, onLoad func(*tls.Certificate)) (*certReloader, error) {
	r := &certReloader{certPath: certPath, keyPath: keyPath, log: log, onLoad: onLoad, interval: filewatch.DefaultInterval}
	r.seen = r.stamps()
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	certPEM, err := safefile.ReadRegular(r.certPath, 1<<20)
	if err != nil {
		return err
	}
	keyPEM, err := safefile.ReadRegular(r.keyPath, 1<<20)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("%s and %s: %w", r.certPath, r.keyPath, err)
	}
	r.cur.Store(&pair)
	if r.onLoad != nil {
		r.onLoad(&pair)
	}
	return nil
}

// stamps looks at both files.
func (r *certReloader) stamps() [2]filewatch.Stamp {
	return [2]filewatch.Stamp{filewatch.Look(r.certPath), filewatch.Look(r.keyPath)}
}

// get returns the pair to serve, reloading it first when a file changed.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := time.Now()
	r.mu.Lock()
	if now.After(r.next) {
		r.next = now.Add(r.interval)
		if st := r.stamps(); st != r.seen {
			r.seen = st
			if err := r.load(); err != nil {
				r.log.Error("server certificate reload failed; the old one stays", "cert", r.certPath, "key", r.keyPath, "error", err)
			} else {
				r.log.Info("server certificate loaded", "cert", r.certPath, "not_after", r.cur.Load().Leaf.NotAfter)
			}
		}
	}
	r.mu.Unlock()
	return r.cur.Load(), nil
}
