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
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Write writes data to path with mode perm. Unless overwrite is set, an
// existing path (a file, a folder or a symbolic link) is left alone and the
// returned error wraps fs.ErrExist. A symbolic link at path is replaced, not
// followed, when overwrite is set.
func Write(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	if !overwrite {
		// Fail early, before any work; link below closes the race.
		if _, err := os.Lstat(path); err == nil {
			return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
		}
	} else if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return &fs.PathError{Op: "create", Path: path, Err: errors.New("is a directory")}
	}
	tmp, err := create(path, data, perm, false, true)
	if err != nil {
		return err
	}
	if err := place(tmp, path, overwrite); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// create writes data with mode perm to a new temporary file beside path,
// or, when direct, to a new file at path itself; it syncs the file when
// sync is set. It returns the file's name, and leaves nothing on an error.
func create(path string, data []byte, perm fs.FileMode, direct, sync bool) (name string, err error) {
	var f *os.File
	if direct {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	} else {
		f, err = os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	}
	if err != nil {
		return "", finalPath(err, path)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = finalPath(err, path)
		}
	}()
	// The mode is set explicitly: the umask must not loosen or tighten it.
	if err = f.Chmod(perm); err != nil {
		return "", err
	}
	if _, err = f.Write(data); err != nil {
		return "", err
	}
	if sync {
		if err = f.Sync(); err != nil {
			return "", err
		}
	}
	return f.Name(), f.Close()
}

// finalPath makes an error about the temporary file of path name path
// itself: the temporary file is gone by the time anyone reads the error.
func finalPath(err error, path string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		pe.Path = path
	}
	return err
}

// place moves the temporary file tmp to path: rename(2) when overwriting,
// link(2) and unlink otherwise, so that nothing at path is replaced.
func place(tmp, path string, overwrite bool) error {
	if overwrite {
		return os.Rename(tmp, path)
	}
	if err := link(tmp, path); err != nil {
		return err
	}
	os.Remove(tmp)
	return nil
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

// Batch writes many files with one sync for all of them instead of two
// for each: Add writes each to a temporary file, Commit flushes the file
// system once and then moves every file into place. Until Commit, none of
// the final paths exists; a crash leaves only temporary files behind.
// Add may be called from several goroutines.
type Batch struct {
	// Overwrite replaces existing files, as Write's overwrite.
	Overwrite bool
	// Direct writes each file at its final path, with no temporary file:
	// for a private staging folder that is renamed into place as a whole
	// after Commit, where no reader can see a partial file.
	Direct bool

	mu      sync.Mutex
	pending []pending
}

type pending struct{ tmp, path string }

// Add writes data with mode perm to a temporary file beside path (to path
// itself when Direct).
func (b *Batch) Add(path string, data []byte, perm fs.FileMode) error {
	name, err := create(path, data, perm, b.Direct, false)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.pending = append(b.pending, pending{name, path})
	b.mu.Unlock()
	return nil
}

// Commit syncs the written data to disk, then moves each file into place.
// On an error, the files not yet moved are removed and the error names the
// first path that failed.
func (b *Batch) Commit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 {
		return nil
	}
	dirs := map[string]bool{}
	for _, p := range b.pending {
		dirs[filepath.Dir(p.tmp)] = true
	}
	for dir := range dirs {
		if err := syncFS(dir); err != nil {
			b.abort(0)
			return err
		}
	}
	for i, p := range b.pending {
		if b.Direct {
			continue
		}
		if err := place(p.tmp, p.path, b.Overwrite); err != nil {
			b.abort(i)
			return err
		}
	}
	b.pending = nil
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// Abort removes the temporary files of a batch that will not be committed.
func (b *Batch) Abort() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.abort(0)
}

func (b *Batch) abort(from int) {
	for _, p := range b.pending[from:] {
		if !b.Direct {
			os.Remove(p.tmp)
		}
	}
	b.pending = nil
}

// syncFS flushes the whole file system holding dir: one call where a sync
// of each file would take one disk flush per file.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
