package verify

import (
	"crypto/ecdsa"

	"github.com/nodekeys/nodekeys/internal/p384"
)

func newP384Key(pub *ecdsa.PublicKey) *p384.PublicKey {
	b, err := pub.Bytes()
	if err != nil {
		return nil
	}
	k, err := p384.NewPublicKey(b)
	if err != nil {
		return nil
	}
	return k
}
