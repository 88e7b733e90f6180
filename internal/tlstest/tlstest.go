// Package tlstest serves TLS on loopback for tests that check a client's
// view of a server's certificate: ServeHandshakes and Serve are its entry
// points.
package tlstest

import (
	"crypto/tls"
	"testing"
)

// ServeHandshakes listens on a loopback port with the certificate in
// certFile and keyFile, offering h2 as a gRPC server does, and completes
// the TLS handshake of every connection, then closes it. It returns the
// address; the listener closes with the test.
func ServeHandshakes(t testing.TB, certFile, keyFile string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := Serve(t, "tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}},
		func(c *tls.Conn) { c.Handshake() })
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Serve listens on network and addr with cfg and runs handle on each
// connection, on a goroutine of its own, then closes the connection. It
// returns the address, or the error of listening (a test may skip where
// the network, IPv6 say, is absent); the listener closes with the test.
func Serve(t testing.TB, network, addr string, cfg *tls.Config, handle func(*tls.Conn)) (string, error) {
	t.Helper()
	ln, err := tls.Listen(network, addr, cfg)
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c.(*tls.Conn))
			}()
		}
	}()
	return ln.Addr().String(), nil
}
