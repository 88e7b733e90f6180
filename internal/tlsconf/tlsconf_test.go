package tlsconf_test

import (
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/tlsconf"
)

func TestReadCertPool(t *testing.T) {
	res, err := certs.Write(certs.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	pool, err := tlsconf.ReadCertPool(res.CACert)
	require.NoError(t, err)
	cert, err := certs.ReadCertificate(res.ServerCert)
	require.NoError(t, err)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"})
	require.NoError(t, err)
	_, err = tlsconf.ReadCertPool(res.ServerKey)
	assert.ErrorContains(t, err, res.ServerKey+": no PEM certificate in it", "a key is not a CA bundle")
	_, err = tlsconf.ReadCertPool("/dev/zero")
	assert.ErrorContains(t, err, "not a regular file")

	conf, err := tlsconf.Client(res.CACert, "superlink.example")
	require.NoError(t, err)
	assert.Equal(t, "superlink.example", conf.ServerName)
	assert.NotNil(t, conf.RootCAs)
	conf, err = tlsconf.Client("", "")
	require.NoError(t, err)
	assert.Nil(t, conf.RootCAs, "the system's")
}
