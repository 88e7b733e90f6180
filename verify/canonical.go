package verify

import (
	"bytes"
	"encoding/base64"
)

const (
	pemHeader = "-----BEGIN PUBLIC KEY-----"
	pemFooter = "-----END PUBLIC KEY-----"
)

// canonicalPEM rewrites a PEM public key in the form OpenSSL writes (64
// base64 characters a line, "\n" line ends, a final newline) into buf and
// returns it; ok is false when h is not one PEM "PUBLIC KEY" block. It
// works in fixed buffers, so the unknown-key path allocates nothing.
func canonicalPEM(h []byte, buf *[maxPublicKeyLen]byte) (out []byte, ok bool) {
	h = bytes.TrimSpace(h)
	body, found := bytes.CutPrefix(h, []byte(pemHeader))
	if !found {
		return nil, false
	}
	body, found = bytes.CutSuffix(body, []byte(pemFooter))
	if !found {
		return nil, false
	}
	// The base64 characters, without line breaks or other white space.
	var b64 [maxPublicKeyLen]byte
	n := 0
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		if n == len(b64) {
			return nil, false
		}
		b64[n] = c
		n++
	}
	var der [maxPublicKeyLen * 3 / 4]byte
	m, err := base64.StdEncoding.Strict().Decode(der[:], b64[:n])
	if err != nil || m == 0 {
		return nil, false
	}
	enc := base64.StdEncoding.EncodedLen(m)
	need := len(pemHeader) + 1 + enc + (enc+63)/64 + len(pemFooter) + 1
	if need > len(buf) {
		return nil, false
	}
	w := copy(buf[:], pemHeader+"\n")
	var line [maxPublicKeyLen]byte // enc <= n: the input had as many characters
	base64.StdEncoding.Encode(line[:enc], der[:m])
	for i := 0; i < enc; i += 64 {
		w += copy(buf[w:], line[i:min(i+64, enc)])
		buf[w] = '\n'
		w++
	}
	w += copy(buf[w:], pemFooter+"\n")
	return buf[:w], true
}
