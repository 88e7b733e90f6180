// Package tlsconf reads CA bundles and builds the TLS client settings that
// nodekeys' clients share (of the SuperLink, the identity provider, Redis).
// Entry points: ReadCertPool and Client.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/nodekeys/nodekeys/internal/safefile"
)

// MaxBundle bounds a CA bundle file.
const MaxBundle = 1 << 20

// ReadCertPool reads a PEM file of one or more CA certificates (a bundle)
// into a pool for verifying servers. A file with no certificate in it is
// an error, not an empty pool that would trust nothing silently.
func ReadCertPool(path string) (*x509.CertPool, error) {
	b, err := safefile.ReadRegular(path, MaxBundle)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Client returns client settings that trust the CAs in caFile (the
// system's when caFile is empty) and check serverName (the dialled host's
// when empty), TLS 1.2 at least.
func Client(caFile, serverName string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pool, err := ReadCertPool(caFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	return conf, nil
}
