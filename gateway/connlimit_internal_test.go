package gateway

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestConnCaps(t *testing.T) {
	for _, tc := range []struct {
		total, perAddr int
		files          uint64
		want           [2]int
	}{
		{10_000, 512, 0, [2]int{10_000, 512}},         // limit unknown
		{10_000, 512, 1_048_576, [2]int{10_000, 512}}, // room enough
		{10_000, 512, 1024, [2]int{768, 384}},         // the review's limit
		{10_000, -1, 1024, [2]int{768, -1}},           // per-address off stays off
		{-1, 512, 1024, [2]int{-1, 512}},              // total off stays off
		{20, 512, 0, [2]int{20, 10}},                  // one address, half at most
		{10_000, 512, 2, [2]int{1, 1}},                // never 0, which is no cap
	} {
		total, perAddr := connCaps(tc.total, tc.perAddr, tc.files)
		assert.Equal(t, tc.want, [2]int{total, perAddr}, "%+v", tc)
	}
}

// IPv4 clients are counted by address, IPv6 clients by /64, IPv4-mapped
// IPv6 addresses as IPv4.
func TestClientKey(t *testing.T) {
	key := func(ip string) string {
		p, ok := clientKey(&net.TCPAddr{IP: net.ParseIP(ip), Port: 1234})
		assert.True(t, ok)
		return p.String()
	}
	assert.Equal(t, "192.0.2.7/32", key("192.0.2.7"))
	assert.Equal(t, "192.0.2.7/32", key("::ffff:192.0.2.7"))
	assert.Equal(t, "2001:db8:1:2::/64", key("2001:db8:1:2::1"))
	assert.Equal(t, key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"))
	assert.NotEqual(t, key("2001:db8:1:2::1"), key("2001:db8:1:3::1"))
	_, ok := clientKey(&net.UnixAddr{Name: "/run/x.sock", Net: "unix"})
	assert.False(t, ok, "only the total cap applies")
}
