package atomicfile

import (
	"errors"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// RenameNoReplace moves old to new inside d, failing with fs.ErrExist if
// anything is at new (renameatx_np with RENAME_EXCL; where the file system
// lacks it, as renameByLink does).
func (d *Dir) RenameNoReplace(old, new string) error {
	err := unix.RenameatxNp(d.fd(), old, d.fd(), new, unix.RENAME_EXCL)
	if errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EINVAL) {
		return d.renameByLink(old, new)
	}
	if err != nil {
		return &fs.PathError{Op: "rename", Path: d.Join(new), Err: err}
	}
	return nil
}
