// Package tlstest serves TLS handshakes for tests that check a client's
// view of a server's certificate: ServeHandshakes is its entry point.
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
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}
