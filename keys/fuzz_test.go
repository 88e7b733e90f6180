package keys_test

import (
	"crypto/ecdsa"
	"testing"

	"github.com/nodekeys/nodekeys/keys"
)

// FuzzParsePublicKey: no panic; an accepted line re-encodes to a line that
// parses to the same key.
func FuzzParsePublicKey(f *testing.F) {
	p, _ := keys.Generator{Seed: []byte("fuzz seed for keys")}.Pair(1)
	f.Add(p.PublicFile)
	f.Add([]byte(p.Public.AuthorizedKey() + " comment"))
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"))
	f.Add([]byte("ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAAABAA=="))
	f.Fuzz(func(t *testing.T, line []byte) {
		k, err := keys.ParsePublicKey(line)
		if err != nil {
			return
		}
		k2, err := keys.ParsePublicKey([]byte(k.AuthorizedKey()))
		if err != nil || !k.Equal(k2) {
			t.Fatalf("round trip: %v", err)
		}
		if _, err := ecdsa.ParseUncompressedPublicKey(k.Key.Curve, k.Point()); err != nil {
			t.Fatalf("accepted a point crypto/ecdsa refuses: %v", err)
		}
	})
}

// FuzzParsePrivateKey: OpenSSH and PEM private keys of any shape must not
// panic the parser, and an accepted key must be on a NIST curve.
func FuzzParsePrivateKey(f *testing.F) {
	p, _ := keys.Generator{Seed: []byte("fuzz seed for keys")}.Pair(1)
	f.Add(p.PrivateFile)
	f.Add(p.PrivateFile[:300])
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := keys.ParsePrivateKey(b)
		if err != nil {
			return
		}
		if _, err := keys.NewPublicKey(&k.PublicKey); err != nil {
			t.Fatalf("accepted a key Flower cannot use: %v", err)
		}
	})
}
