// Package atomicfile writes whole files atomically: a reader, a crash or an
// interrupt sees either the old file or the new one, never a part of it.
//
// The data goes to a temporary file in the same folder, is synced, given its
// final mode (independent of the umask) and then moved into place: with
// rename(2) when overwriting, with link(2) otherwise, so that a file that
// appeared in the meantime is never replaced.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Write writes data to path with mode perm. Unless overwrite is set, an
// existing path (a file, a folder or a symbolic link) is left alone and the
// returned error wraps fs.ErrExist. A symbolic link at path is replaced, not
// followed, when overwrite is set.
func Write(path string, data []byte, perm fs.FileMode, overwrite bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if !overwrite {
		// Fail early, before any work; link below closes the race.
		if _, err := os.Lstat(path); err == nil {
			return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
		}
	} else if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return &fs.PathError{Op: "create", Path: path, Err: errors.New("is a directory")}
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if overwrite {
		err = os.Rename(tmp, path)
	} else {
		err = link(tmp, path)
		if err == nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// link moves tmp to path without replacing anything at path. Where the file
// system has no hard links it falls back to a checked rename.
func link(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil {
		return nil
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		switch {
		case errors.Is(le.Err, fs.ErrExist):
			return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
		case errors.Is(le.Err, syscall.EPERM), errors.Is(le.Err, syscall.ENOTSUP),
			errors.Is(le.Err, syscall.EOPNOTSUPP), errors.Is(le.Err, syscall.EXDEV):
			if _, err := os.Lstat(path); err == nil {
				return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
			}
			return os.Rename(tmp, path)
		}
	}
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// MkdirPrivate creates dir and its missing parents with mode 0700, whatever
// the umask. An existing folder is left as it is.
func MkdirPrivate(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}
