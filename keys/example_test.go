package keys_test

import (
	"fmt"
	"strings"

	"github.com/nodekeys/nodekeys/keys"
)

// Key pair number 1 of a seeded Generator is the same on every run: for
// test fixtures only.
func ExampleGenerator_Pair() {
	pair, _ := keys.Generator{Seed: []byte("example seed, not for production")}.Pair(1)
	fmt.Println(strings.SplitN(string(pair.PrivateFile), "\n", 2)[0])
	fmt.Println(pair.Public.Type(), pair.Public.Curve())
	fmt.Println(pair.Public.Fingerprint())
	// Output:
	// -----BEGIN OPENSSH PRIVATE KEY-----
	// ecdsa-sha2-nistp384 P-384
	// SHA256:Tc72y1CqM5IhIDUKPdqUBvVvn6DZhHWA0/rnOI1xT0Y
}

func ExampleParsePublicKey() {
	_, err := keys.ParsePublicKey([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"))
	fmt.Println(err)
	// Output:
	// keys: not an EC key: the type is "ssh-ed25519"
}
