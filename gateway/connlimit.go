package gateway

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Reasons a connection is refused, as the connection metric labels them:
// the option whose cap it met.
const (
	capTotal   = "max_connections"
	capAddress = "max_connections_per_address"
)

// connLimiter counts the client connections open on a gateway's listeners,
// in all and per client address, and refuses those past the caps: every
// connection holds a file descriptor from its first byte (a stalled TLS
// handshake as much as a busy SuperNode), and a process out of them can
// neither accept a SuperNode nor dial its SuperLink.
type connLimiter struct {
	total, perAddr int // 0: no cap
	m              *metrics
	refused        func(reason string, addr net.Addr)

	mu     sync.Mutex
	open   int
	byAddr map[netip.Prefix]int
}

// newConnLimiter applies the caps in force (see connCaps; 0 or below: no
// cap); refused, if set, hears of each refusal.
func newConnLimiter(total, perAddr int, m *metrics, refused func(string, net.Addr)) *connLimiter {
	return &connLimiter{total: max(total, 0), perAddr: max(perAddr, 0), m: m, refused: refused, byAddr: map[netip.Prefix]int{}}
}

// connCaps returns the caps in force for the configured ones (below 0:
// off) and the process's open-file limit (0: unknown). max_connections
// takes at most three quarters of the limit, leaving the rest to the
// upstream connections, Redis, the files the gateway reads and the
// metrics listener; max_connections_per_address at most half of
// max_connections, so that one address never holds every slot.
func connCaps(total, perAddr int, openFiles uint64) (int, int) {
	if fit := openFiles / 4 * 3; total > 0 && openFiles > 0 && uint64(total) > fit {
		total = int(max(min(fit, 1<<30), 1))
	}
	if total > 0 && perAddr > total/2 {
		perAddr = max(total/2, 1)
	}
	return total, perAddr
}

// clientKey is what the per-address cap counts by: the IPv4 address, or
// the IPv6 /64, the block one host is usually given, so that an IPv6
// client cannot pass the cap by changing the low bits of its address.
func clientKey(a net.Addr) (netip.Prefix, bool) {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}, false
	}
	ip := tcp.AddrPort().Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// admit takes a slot for a connection from addr, or names the cap it met.
// release gives the slot back; call it once.
func (l *connLimiter) admit(addr net.Addr) (release func(), reason string) {
	key, keyed := clientKey(addr)
	keyed = keyed && l.perAddr > 0
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total > 0 && l.open >= l.total:
		return nil, capTotal
	case keyed && l.byAddr[key] >= l.perAddr:
		return nil, capAddress
	}
	l.open++
	if keyed {
		l.byAddr[key]++
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.open--
		if keyed {
			if l.byAddr[key]--; l.byAddr[key] == 0 {
				delete(l.byAddr, key)
			}
		}
	}, ""
}

// wrap returns ln with the caps applied to what it accepts; name labels
// its open connections in the metrics ("fleet", "control").
func (l *connLimiter) wrap(ln net.Listener, name string) net.Listener {
	return &limitedListener{Listener: ln, l: l, name: name}
}

type limitedListener struct {
	net.Listener
	l    *connLimiter
	name string
}

// Accept returns the next connection within the caps; those past them are
// reset at once (no TIME_WAIT left behind) and counted.
func (ln *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, reason := ln.l.admit(c.RemoteAddr())
		if reason != "" {
			if tcp, ok := c.(*net.TCPConn); ok {
				tcp.SetLinger(0)
			}
			c.Close()
			ln.l.m.connRefusals.WithLabelValues(reason).Inc()
			if ln.l.refused != nil {
				ln.l.refused(reason, c.RemoteAddr())
			}
			continue
		}
		gauge := ln.l.m.conns.WithLabelValues(ln.name)
		gauge.Inc()
		return &limitedConn{Conn: c, release: func() { release(); gauge.Dec() }}, nil
	}
}

// limitedConn gives its slot back when it is closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// connLimits makes the gateway's connection limiter from its config and
// the open-file limit, saying so when that limit lowers a cap.
func (g *Gateway) connLimits() *connLimiter {
	files := openFileLimit()
	total, perAddr := connCaps(g.cfg.MaxConnections, g.cfg.MaxConnectionsPerAddress, files)
	if total != g.cfg.MaxConnections {
		g.log.Warn("max_connections lowered to three quarters of the open-file limit; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) to allow more",
			"open_files", files, "max_connections", total, "max_connections_per_address", perAddr)
	}
	return newConnLimiter(total, perAddr, g.m, g.connRefused)
}

// connRefused logs a refused connection, within the refusal log rate.
func (g *Gateway) connRefused(reason string, addr net.Addr) {
	if ok, dropped := g.refusal.Allow(time.Now()); ok {
		g.log.Warn("refused a connection: over "+reason, "peer", addr.String(), "suppressed", dropped)
	}
}
