package sign_test

import (
	"fmt"
	"time"

	"github.com/nodekeys/nodekeys/flwr"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/sign"
)

func ExampleFormatTimestamp() {
	t := time.Date(2026, 11, 22, 17, 45, 3, 123456789, time.UTC)
	fmt.Println(flwr.FormatTimestamp(t))
	fmt.Println(flwr.FormatTimestamp(t.Truncate(time.Second)))
	// Output:
	// 2026-11-22T17:45:03.123456+00:00
	// 2026-11-22T17:45:03+00:00
}

func ExampleSigner_SignTimestamp() {
	pair, _ := keys.Generator{}.Pair(1)
	s, _ := sign.New(pair.Private)
	h, _ := s.SignTimestamp("2026-11-22T17:45:03+00:00")
	fmt.Printf("%s%s\n", h.PublicKey[:27], h.Timestamp)
	// Output:
	// -----BEGIN PUBLIC KEY-----
	// 2026-11-22T17:45:03+00:00
}
