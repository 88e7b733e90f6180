package verify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/sign"
)

// FuzzParseSignature: what parseSignature accepts is exactly strict DER:
// re-encoding r and s gives back the input.
func FuzzParseSignature(f *testing.F) {
	priv, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	sum := sha256.Sum256([]byte("x"))
	sig, _ := ecdsa.SignASN1(rand.Reader, priv, sum[:])
	f.Add(sig)
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Add([]byte{0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Add([]byte{0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, sig []byte) {
		r, s, ok := parseSignature(sig)
		if !ok {
			return
		}
		var b cryptobyte.Builder
		b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(new(big.Int).SetBytes(r))
			b.AddASN1BigInt(new(big.Int).SetBytes(s))
		})
		out, err := b.Bytes()
		if err != nil || !bytes.Equal(out, sig) {
			t.Fatalf("accepted non-canonical DER %x (canonical %x)", sig, out)
		}
	})
}

// FuzzVerifyHeaders: arbitrary header values never panic, and anything but
// a real signature is refused with a reason.
func FuzzVerifyHeaders(f *testing.F) {
	priv, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	k, _ := newKey(&priv.PublicKey)
	list := &Allowlist{byPEM: map[string]*Key{k.PEM: k}}
	s, _ := sign.New(priv)
	now := time.Date(2026, 11, 22, 17, 45, 3, 0, time.UTC)
	h, _ := s.SignTimestamp(flwr.FormatTimestamp(now))
	f.Add(h.PublicKey, h.Timestamp, h.Signature)
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "2026-11-22T17:45:03Z", []byte{0x30, 0})
	f.Fuzz(func(t *testing.T, pemKey []byte, ts string, sig []byte) {
		for _, v := range []*Verifier{New(list), New(nil, AnyKey())} {
			key, err := v.VerifyAt(sign.Headers{PublicKey: pemKey, Timestamp: ts, Signature: sig}, now)
			if err == nil {
				if key == nil || !ecdsa.VerifyASN1(key.Public, sha256Of(ts), sig) {
					t.Fatal("accepted a call crypto/ecdsa refuses")
				}
				continue
			}
			if e, ok := err.(*Error); !ok || e.Reason == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
		}
	})
}

func sha256Of(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}
