package atomicfile

import (
	"crypto/rand"
	"encoding/binary"
)

// randUint32 makes temporary names unguessable, so that no one can plant a
// file or link at the next one.
func randUint32() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:])
}
