package verify_test

import (
	"fmt"
	"time"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
	"github.com/nodekeys/nodekeys/verify"
)

// A SuperLink checks each call's headers against its allowlist.
func Example() {
	// A SuperNode's key pair, and the allowlist that names it.
	pair, _ := keys.Generator{}.Pair(1)
	list, _ := verify.NewAllowlist([]*keys.PublicKey{pair.Public})

	// The SuperNode signs the current time.
	now := time.Now()
	signer, _ := sign.New(pair.Private)
	h, _ := signer.SignTimestamp(flwr.FormatTimestamp(now))

	// The SuperLink verifies it.
	v := verify.New(list)
	if _, err := v.VerifyAt(h, now.Add(2*time.Second)); err == nil {
		fmt.Println("accepted")
	}
	// Ten minutes later, the same headers are refused.
	_, err := v.VerifyAt(h, now.Add(10*time.Minute))
	fmt.Println(err.(*verify.Error).Reason, "/", err.(*verify.Error).Reason.FlowerMessage())
	// Output:
	// accepted
	// stale-timestamp / Invalid timestamp
}
