// Package sign makes the metadata a Flower SuperNode sends to authenticate
// each call to the SuperLink's Fleet service (Flower 1.15.1 and later):
//
//	flwr-public-key-bin  the node's public key, PEM SubjectPublicKeyInfo
//	flwr-timestamp       the current UTC time in Python's isoformat()
//	flwr-signature-bin   DER ECDSA signature, SHA-256 over the timestamp
//
// The bytes are those Flower's Python SuperNode sends: the PEM as OpenSSL
// writes it (64-character lines, final newline), the timestamp as
// datetime.now(timezone.utc).isoformat() prints it.
package sign

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/keys"
)

// The gRPC metadata keys of Flower's node authentication. The -bin keys
// carry binary values (base64 on the wire, as gRPC does for -bin keys).
const (
	HeaderPublicKey = flwr.HeaderPublicKey
	HeaderTimestamp = flwr.HeaderTimestamp
	HeaderSignature = flwr.HeaderSignature
)

// Headers are the three authentication values of one call.
type Headers struct {
	// PublicKey is the PEM SubjectPublicKeyInfo of the node's key.
	PublicKey []byte
	// Timestamp is the signed time, in Python's isoformat().
	Timestamp string
	// Signature is the DER ECDSA signature over SHA-256(Timestamp).
	Signature []byte
}

// Signer signs timestamps with a SuperNode's private key. It is safe for
// concurrent use.
type Signer struct {
	key *ecdsa.PrivateKey
	pem []byte
	now func() time.Time
}

// Option configures a Signer.
type Option func(*Signer)

// WithClock makes the Signer read the time from now instead of time.Now.
func WithClock(now func() time.Time) Option { return func(s *Signer) { s.now = now } }

// New returns a Signer for key, an ECDSA key on P-256, P-384 or P-521
// (Flower SuperNodes use P-384).
func New(key *ecdsa.PrivateKey, opts ...Option) (*Signer, error) {
	pemBytes, err := keys.MarshalPEM(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	s := &Signer{key: key, pem: pemBytes, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// ReadKey reads a private key file (OpenSSH or PEM) and returns its Signer.
func ReadKey(path string, opts ...Option) (*Signer, error) {
	k, err := keys.ReadPrivateKey(path)
	if err != nil {
		return nil, err
	}
	return New(k, opts...)
}

// PublicKeyPEM returns the value of flwr-public-key-bin. The caller must
// not modify it.
func (s *Signer) PublicKeyPEM() []byte { return s.pem }

// Sign returns the headers for a call made now.
func (s *Signer) Sign() (Headers, error) {
	return s.SignTimestamp(flwr.FormatTimestamp(s.now()))
}

// SignTimestamp returns the headers that sign the timestamp string ts as
// it is. Use flwr.FormatTimestamp to make one.
func (s *Signer) SignTimestamp(ts string) (Headers, error) {
	sum := sha256.Sum256([]byte(ts))
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, sum[:])
	if err != nil {
		return Headers{}, fmt.Errorf("sign: %w", err)
	}
	return Headers{PublicKey: s.pem, Timestamp: ts, Signature: sig}, nil
}
