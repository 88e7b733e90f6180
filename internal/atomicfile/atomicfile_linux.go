package atomicfile

import (
	"errors"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// haveSyncfs: Batch.Commit flushes the file system once with syncfs(2)
// instead of syncing each file as it is added.
const haveSyncfs = true

// syncfs flushes the file system of the folder.
func (d *Dir) syncfs() error { return unix.Syncfs(d.fd()) }

// RenameNoReplace moves old to new inside d, failing with fs.ErrExist if
// anything is at new (renameat2 with RENAME_NOREPLACE; where the file
// system lacks it, a checked rename).
func (d *Dir) RenameNoReplace(old, new string) error {
	err := unix.Renameat2(d.fd(), old, d.fd(), new, unix.RENAME_NOREPLACE)
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) {
		if d.Exists(new) {
			err = syscall.EEXIST
		} else {
			err = unix.Renameat(d.fd(), old, d.fd(), new)
		}
	}
	if err != nil {
		return &fs.PathError{Op: "rename", Path: d.Join(new), Err: err}
	}
	return nil
}
