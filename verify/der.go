package verify

import (
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// maxSignatureLen bounds flwr-signature-bin: a P-521 DER signature is at
// most 139 bytes.
const maxSignatureLen = 160

// parseSignature parses a DER ECDSA-Sig-Value, SEQUENCE { r INTEGER,
// s INTEGER }, strictly: minimal lengths, minimal non-negative integers, no
// trailing bytes. It returns r and s as big-endian bytes without leading
// zeros, which alias sig.
func parseSignature(sig []byte) (r, s []byte, ok bool) {
	input := cryptobyte.String(sig)
	var inner cryptobyte.String
	if !input.ReadASN1(&inner, asn1.SEQUENCE) || !input.Empty() {
		return nil, nil, false
	}
	if r, ok = readUint(&inner); !ok {
		return nil, nil, false
	}
	if s, ok = readUint(&inner); !ok || !inner.Empty() {
		return nil, nil, false
	}
	return r, s, true
}

// readUint reads a DER INTEGER that must be positive and minimally
// encoded, and returns its magnitude.
func readUint(s *cryptobyte.String) ([]byte, bool) {
	var b cryptobyte.String
	if !s.ReadASN1(&b, asn1.INTEGER) || len(b) == 0 {
		return nil, false
	}
	if b[0]&0x80 != 0 {
		return nil, false // negative
	}
	if b[0] == 0 {
		if len(b) == 1 {
			return b[1:], true // zero; rejected by the range check
		}
		if b[1]&0x80 == 0 {
			return nil, false // not minimal
		}
		b = b[1:]
	}
	return b, true
}

// inRange reports whether 1 <= v <= n-1 for a big-endian magnitude v.
func inRange(v []byte, n *big.Int) bool {
	if len(v) == 0 || len(v) > (n.BitLen()+7)/8 {
		return false
	}
	var x big.Int
	x.SetBytes(v)
	return x.Sign() > 0 && x.Cmp(n) < 0
}
