//go:build unix

package filewatch

import (
	"os"
	"syscall"
)

// FileID returns the inode number of the file fi describes, which changes
// when the file is replaced (an atomic rename), or 0 if fi has none.
func FileID(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
