package gateway

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodekeys/nodekeys/internal/safefile"
)

// certReloader serves a certificate and key from files and reloads them
// when either file changes, looking at most once a second: a certificate
// renewed with certgen --force is served to new connections without a
// restart. A pair that fails to load leaves the old one served.
type certReloader struct {
	certPath, keyPath string
	log               *slog.Logger
	onLoad            func(*tls.Certificate)

	cur  atomic.Pointer[tls.Certificate]
	mu   sync.Mutex
	next time.Time // the next look at the files
	seen [2]time.Time
	size [2]int64
}

func newCertReloader(certPath, keyPath string, log *slog.Logger, onLoad func(*tls.Certificate)) (*certReloader, error) {
	r := &certReloader{certPath: certPath, keyPath: keyPath, log: log, onLoad: onLoad}
	r.seen, r.size = r.stamps()
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

// stamps reports the files' modification times and sizes.
func (r *certReloader) stamps() (t [2]time.Time, n [2]int64) {
	for i, p := range []string{r.certPath, r.keyPath} {
		if fi, err := os.Stat(p); err == nil {
			t[i], n[i] = fi.ModTime(), fi.Size()
		}
	}
	return t, n
}

// get returns the pair to serve, reloading it first when a file changed.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := time.Now()
	r.mu.Lock()
	if now.After(r.next) {
		r.next = now.Add(time.Second)
		t, n := r.stamps()
		if t != r.seen || n != r.size {
			r.seen, r.size = t, n
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
