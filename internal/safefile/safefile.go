// Package safefile reads the small files nodekeys takes as input (keys,
// certificates, allowlists) without trusting what the path names: a FIFO,
// a device or a socket is refused before anything is read, and a read is
// bounded by the bytes it returns, not by a size that stat reports (0 for
// devices and pipes).
package safefile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrTooLarge is wrapped by the error of a file over its limit.
var ErrTooLarge = errors.New("file too large")

// ErrNotRegular is wrapped by the error of a path that is not a regular
// file: a folder, FIFO, device or socket.
var ErrNotRegular = errors.New("not a regular file")

// ReadRegular reads the regular file at path, following symbolic links,
// and at most limit bytes of it. The file is opened without blocking, so a
// FIFO cannot hang the caller, and checked on the open descriptor, so it
// cannot be swapped between the check and the read.
func ReadRegular(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", path, notRegular(Kind(fi.Mode())))
	}
	// A regular file's size is known: one over the limit is refused before
	// reading it. The read below is bounded too, for a file that grows.
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %w: larger than %s", path, ErrTooLarge, Size(limit))
	}
	// The size is known for a regular file: one buffer of it (plus a byte
	// to see growth), not a growing one, and never more than the limit.
	buf := bytes.NewBuffer(make([]byte, 0, min(fi.Size(), limit)+1))
	_, err = buf.ReadFrom(io.LimitReader(f, limit+1))
	b := buf.Bytes()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %s", path, ErrTooLarge, Size(limit))
	}
	return b, nil
}

// notRegular says what a path is instead of a regular file.
type notRegular string

func (n notRegular) Error() string { return "is " + string(n) + ", not a regular file" }
func (n notRegular) Unwrap() error { return ErrNotRegular }

// Kind names a file type for messages: "a folder", "a FIFO", ...
func Kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsRegular():
		return "a regular file"
	}
	return "not a regular file"
}

// Size formats a byte count as "512 MiB", "64 KiB" or "100 bytes".
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
