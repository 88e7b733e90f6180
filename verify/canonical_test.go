package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// canonicalPEM agrees with encoding/pem on every formatting of a key.
func TestCanonicalPEM(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		priv, _ := ecdsa.GenerateKey(c, rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		want := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		b64 := base64.StdEncoding.EncodeToString(der)
		wrap := func(n int, eol string) string {
			var sb strings.Builder
			for i := 0; i < len(b64); i += n {
				sb.WriteString(b64[i:min(i+n, len(b64))] + eol)
			}
			return sb.String()
		}
		for _, in := range []string{
			want,
			strings.ReplaceAll(want, "\n", "\r\n"),
			strings.TrimSuffix(want, "\n"),
			"  " + want + "\n\n",
			pemHeader + "\n" + wrap(76, "\n") + pemFooter + "\n",
			pemHeader + "\n" + b64 + "\n" + pemFooter,
		} {
			var buf [maxPublicKeyLen]byte
			got, ok := canonicalPEM([]byte(in), &buf)
			assert.True(t, ok, "%q", in)
			assert.Equal(t, want, string(got))
		}
		for _, bad := range []string{
			"", want[:40], strings.Replace(want, "PUBLIC KEY", "PRIVATE KEY", 1), want + "junk",
			pemHeader + "\n!!!!\n" + pemFooter, pemHeader + pemFooter, pemHeader + "\n" + strings.Repeat("A", 600) + "\n" + pemFooter,
		} {
			var buf [maxPublicKeyLen]byte
			_, ok := canonicalPEM([]byte(bad), &buf)
			assert.False(t, ok, "%q", bad)
		}
	}
}
