//go:build !unix

package filewatch

import "os"

// FileID returns 0: on this system (Windows) an os.FileInfo carries no
// file number, so a replaced file is seen by its size and modification
// time only.
func FileID(os.FileInfo) uint64 { return 0 }
