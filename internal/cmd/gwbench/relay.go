//go:build linux

package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/metadata"

	"github.com/nodekeys/nodekeys/allowlist"
	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/gateway"
	"github.com/nodekeys/nodekeys/internal/keyrate"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
	"github.com/nodekeys/nodekeys/verify/grpcauth"
	"github.com/nodekeys/nodekeys/verify/replay"
)

// The bare relay (-serve-relay) is a yardstick, not a gateway: the least
// a Go proxy with node authentication does for a Fleet call. It ends TLS,
// reads HTTP/2 frames, verifies each call's signature headers with the
// gateway's verifier (hot keys and replay guard as the gateway's
// defaults), and relays the frames to one upstream connection in clear
// text, re-encoding headers for it, and the answers back: two goroutines
// a call's path crosses (the client connection's reader and the
// upstream's), where the gateway, a gRPC server and a gRPC client, has
// six. It has none of what makes the gateway safe to expose: no flow
// control accounting (it opens 1 GiB windows each way, which is enough
// for the benchmark's heartbeats of a few dozen bytes), no limit on
// streams, headers, resets or pings, no deadlines, no metrics, no
// reconnection. The windows are granted once, so the upstream connection
// carries 1 GiB in its life; the peers' windows, the upstream's
// SETTINGS_MAX_CONCURRENT_STREAMS (Flower's SuperLink: 100) and GOAWAY
// are ignored, and the upstream's reader writes to client sockets with
// blocking I/O: past the benchmark's settings (calls of a few dozen
// bytes, at most 100 in flight) it would stall rather than fail. It
// measures how much of the gateway's cost beyond HAProxy's is the price
// of relaying calls rather than frames.

// relayWindow is the flow-control window the relay opens each way.
const relayWindow = 1 << 30

// relaySide is the write half of one HTTP/2 connection: frames and the
// HPACK encoder, whose dynamic table follows the order frames are written
// in, under one lock.
type relaySide struct {
	mu  sync.Mutex
	bw  *bufio.Writer
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  headerBlock
}

// headerBlock collects the HPACK encoder's output for one HEADERS frame.
type headerBlock struct{ b []byte }

func (h *headerBlock) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }

// newRelaySide returns the write half on w and a framer reading r, which
// hands HEADERS and their CONTINUATIONs over as one decoded frame.
func newRelaySide(w io.Writer, r io.Reader) (*relaySide, *http2.Framer) {
	s := &relaySide{bw: bufio.NewWriterSize(w, 32<<10)}
	s.fr = http2.NewFramer(s.bw, nil)
	s.enc = hpack.NewEncoder(&s.hb)
	rf := http2.NewFramer(nil, r)
	rf.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	return s, rf
}

// writeHeaders writes one HEADERS frame of fields; s.mu is held.
func (s *relaySide) writeHeaders(id uint32, fields []hpack.HeaderField, end bool) error {
	s.hb.b = s.hb.b[:0]
	for _, f := range fields {
		if err := s.enc.WriteField(hpack.HeaderField{Name: f.Name, Value: f.Value}); err != nil {
			return err
		}
	}
	return s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: s.hb.b, EndStream: end, EndHeaders: true})
}

// locked runs f with s.mu held and flushes.
func (s *relaySide) locked(f func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := f(); err != nil {
		return err
	}
	return s.bw.Flush()
}

// relayUp is the one upstream connection; streams of every client
// connection are multiplexed on it.
type relayUp struct {
	*relaySide
	next   uint32 // the next stream id; under mu
	routes sync.Map
	done   chan error // the connection's end
}

// relayRoute is where an upstream stream's frames go back to.
type relayRoute struct {
	c  *relaySide
	id uint32
}

// serveRelay is -serve-relay: the bare relay on addr, in front of
// upstream (h2c), admitting the keys of allowlistPath, until SIGTERM or
// the upstream's end.
func serveRelay(addr, upstream, allowlistPath, certFile, keyFile string) error {
	list, err := allowlist.Load(allowlistPath)
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	done, err := startRelay(ln, upstream, list, pair)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err = <-done:
		if errors.Is(err, io.EOF) {
			err = nil // the upstream stopped: the run is over
		}
	}
	ln.Close()
	return err
}

// startRelay serves the bare relay on ln, with TLS by pair, in front of
// upstream (h2c), admitting list's keys with the gateway's verifier
// defaults: the signature window, exact PEM, hot keys, at most 4
// verifications a core at once, the key rate and the replay guard. The
// channel gets the upstream connection's end.
func startRelay(ln net.Listener, upstream string, list *verify.Allowlist, pair tls.Certificate) (<-chan error, error) {
	rate := keyrate.New(gateway.DefaultKeyRate, gateway.DefaultKeyBurst)
	v := verify.New(list, verify.ExactPEM(), verify.WithWindow(flwr.DefaultWindow),
		verify.WithMaxConcurrent(4*runtime.GOMAXPROCS(0)),
		verify.WithHotKeys(verify.DefaultHotKeyBytes, verify.DefaultPromoteAfter),
		verify.WithKeyCheck(func(k *verify.Key, now time.Time) error {
			if !rate.Allow(k.PEM, now) {
				return &verify.Error{Reason: verify.RateLimited, Detail: "key_rate"}
			}
			return nil
		}),
		verify.WithReplay(replay.NewGuard(gateway.DefaultReplayEntries, replay.WithKeyQuota(replay.DefaultKeyQuota))))
	u, err := dialRelayUp(upstream)
	if err != nil {
		return nil, err
	}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}})
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go relayClient(c, u, v)
		}
	}()
	return u.done, nil
}

// dialRelayUp opens the upstream connection and starts its reader.
func dialRelayUp(addr string) (*relayUp, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 32<<10)
	s, rf := newRelaySide(nc, br)
	u := &relayUp{relaySide: s, next: 1, done: make(chan error, 1)}
	err = s.locked(func() error {
		s.bw.WriteString(http2.ClientPreface)
		if err := s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: relayWindow},
			http2.Setting{ID: http2.SettingEnablePush, Val: 0}); err != nil {
			return err
		}
		return s.fr.WriteWindowUpdate(0, relayWindow)
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	go u.read(br, rf)
	return u, nil
}

// read relays the upstream's frames to the client connections their
// streams came from, and flushes those it wrote to once the upstream has
// nothing more buffered.
func (u *relayUp) read(br *bufio.Reader, rf *http2.Framer) {
	dirty := map[*relaySide]bool{}
	for {
		f, err := rf.ReadFrame()
		if err != nil {
			u.done <- err
			return
		}
		relayControl(u.relaySide, f)
		if r, end, ok := u.route(f); ok {
			r.c.mu.Lock()
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				err = r.c.writeHeaders(r.id, f.Fields, end)
			case *http2.DataFrame:
				err = r.c.fr.WriteData(r.id, end, f.Data())
			case *http2.RSTStreamFrame:
				err = r.c.fr.WriteRSTStream(r.id, f.ErrCode)
			}
			r.c.mu.Unlock()
			if err == nil {
				dirty[r.c] = true
			}
		}
		if br.Buffered() == 0 {
			for c := range dirty {
				c.locked(func() error { return nil })
				delete(dirty, c)
			}
		}
	}
}

// route returns where an upstream frame goes, and whether it ends its
// stream (whose route is then dropped).
func (u *relayUp) route(f http2.Frame) (relayRoute, bool, bool) {
	var end bool
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		end = f.StreamEnded()
	case *http2.DataFrame:
		end = f.StreamEnded()
	case *http2.RSTStreamFrame:
		end = true
	default:
		return relayRoute{}, false, false
	}
	r, ok := u.routes.Load(f.Header().StreamID)
	if !ok {
		return relayRoute{}, false, false
	}
	if end {
		u.routes.Delete(f.Header().StreamID)
	}
	return r.(relayRoute), end, true
}

// relayControl answers a connection's SETTINGS and PING frames, and
// reports whether f was one of the frames the relay handles per
// connection.
func relayControl(s *relaySide, f http2.Frame) bool {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			s.locked(s.fr.WriteSettingsAck)
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			s.locked(func() error { return s.fr.WritePing(true, f.Data) })
		}
	case *http2.WindowUpdateFrame, *http2.PriorityFrame, *http2.GoAwayFrame:
	default:
		return false
	}
	return true
}

// relayClient serves one client connection: each call's headers are
// verified as they arrive, and a verified call's frames go upstream under
// a stream id of the upstream connection's.
func relayClient(nc net.Conn, u *relayUp, v *verify.Verifier) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 32<<10)
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, pre); err != nil || string(pre) != http2.ClientPreface {
		return
	}
	s, rf := newRelaySide(nc, br)
	err := s.locked(func() error {
		if err := s.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: relayWindow}); err != nil {
			return err
		}
		return s.fr.WriteWindowUpdate(0, relayWindow)
	})
	if err != nil {
		return
	}
	ups := map[uint32]uint32{} // this connection's open streams: their upstream ids
	refused := map[uint32]bool{}
	for {
		f, err := rf.ReadFrame()
		if err != nil {
			return
		}
		if err := relayFrame(s, u, v, f, ups, refused); err != nil {
			return
		}
		if br.Buffered() == 0 {
			if u.locked(func() error { return nil }) != nil {
				return
			}
		}
	}
}

// relayFrame handles one frame of a client connection: a call's headers
// are verified, and a verified call's frames are written upstream (not
// flushed).
func relayFrame(s *relaySide, u *relayUp, v *verify.Verifier, f http2.Frame, ups map[uint32]uint32, refused map[uint32]bool) (err error) {
	if relayControl(s, f) {
		return nil
	}
	id := f.Header().StreamID
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		if err := relayCheck(v, f.Fields); err != nil {
			st := grpcauth.StatusOf(err)
			s.locked(func() error {
				return s.writeHeaders(id, []hpack.HeaderField{{Name: ":status", Value: "200"},
					{Name: "content-type", Value: "application/grpc"},
					{Name: "grpc-status", Value: strconv.Itoa(int(st.Code()))},
					{Name: "grpc-message", Value: st.Message()}}, true)
			})
			if !f.StreamEnded() {
				refused[id] = true
			}
			return nil
		}
		u.mu.Lock()
		upID := u.next
		u.next += 2
		u.routes.Store(upID, relayRoute{s, id})
		err = u.writeHeaders(upID, f.Fields, f.StreamEnded())
		u.mu.Unlock()
		if !f.StreamEnded() {
			ups[id] = upID
		}
	case *http2.DataFrame:
		if refused[id] {
			if f.StreamEnded() {
				delete(refused, id)
			}
			return nil
		}
		upID, ok := ups[id]
		if !ok {
			return nil
		}
		if f.StreamEnded() {
			delete(ups, id)
		}
		u.mu.Lock()
		err = u.fr.WriteData(upID, f.StreamEnded(), f.Data())
		u.mu.Unlock()
	case *http2.RSTStreamFrame:
		upID, ok := ups[id]
		if !ok {
			return nil
		}
		delete(ups, id)
		u.mu.Lock()
		err = u.fr.WriteRSTStream(upID, f.ErrCode)
		u.mu.Unlock()
	}
	return err
}

// relayCheck verifies a call's signature headers as the gateway does,
// with grpcauth.Check: the flwr-* headers become the call's metadata, the
// -bin values decoded from base64 as gRPC decodes them.
func relayCheck(v *verify.Verifier, fields []hpack.HeaderField) error {
	md := metadata.MD{}
	for _, f := range fields {
		if !strings.HasPrefix(f.Name, "flwr-") {
			continue
		}
		val := f.Value
		if strings.HasSuffix(f.Name, "-bin") {
			b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(val, "="))
			if err != nil {
				return &verify.Error{Reason: verify.Malformed, Detail: "a -bin header is not base64"}
			}
			val = string(b)
		}
		md[f.Name] = append(md[f.Name], val)
	}
	_, _, err := grpcauth.Check(md, func(h sign.Headers) (*verify.Key, error) { return v.VerifyAt(h, time.Now()) })
	return err
}
