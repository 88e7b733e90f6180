package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/windows"
)

// Dir is an open folder. Its methods take file names, not paths.
type Dir struct {
	root *os.Root
	// Path is the folder's path as the caller named it, for messages.
	Path string

	mu   sync.Mutex
	lock *os.File // the lock file while Lock is held
}

// haveSyncfs: Windows has no syncfs, so Batch.Add syncs each file.
const haveSyncfs = false

func (d *Dir) syncfs() error { return nil }

// lockName is the file Lock creates in the folder and holds LockFileEx
// on: Windows cannot lock a folder's own handle.
const lockName = ".nodekeys-lock"

// OpenDir opens the folder at path for writing secrets into: it refuses a
// symbolic link or a junction (checked before opening, so a swap in
// between is not seen). Windows has no mode bits to refuse a folder that
// others can write to: its ACL is not checked.
func OpenDir(path string) (*Dir, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&(fs.ModeSymlink|fs.ModeIrregular) != 0 {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: is a symbolic link; name the folder itself", ErrUnsafeDir)}
	}
	return OpenFolder(path)
}

// OpenFolder opens the folder at path, following symbolic links, for
// files that are not secrets (an allowlist) and for locking: what is
// written through it still goes relative to its handle.
func OpenFolder(path string) (*Dir, error) {
	r, err := os.OpenRoot(path)
	if err != nil {
		return nil, err
	}
	return &Dir{root: r, Path: path}, nil
}

// Close closes the folder, releasing Lock.
func (d *Dir) Close() error {
	d.Unlock()
	return d.root.Close()
}

// Chmod sets the folder's read-only attribute from mode's owner write bit.
func (d *Dir) Chmod(mode fs.FileMode) error { return d.root.Chmod(".", mode) }

// tryLock takes LockFileEx on the folder's lock file without waiting.
func (d *Dir) tryLock() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lock != nil {
		return nil
	}
	f, err := d.root.OpenFile(lockName, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &windows.Overlapped{})
	if err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return errLocked
		}
		return err
	}
	d.lock = f
	return nil
}

// Unlock releases Lock.
func (d *Dir) Unlock() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lock == nil {
		return
	}
	windows.UnlockFileEx(windows.Handle(d.lock.Fd()), 0, 1, 0, &windows.Overlapped{})
	d.lock.Close()
	d.lock = nil
}

// pathError names name in the folder in an error of os.Root, which names
// it relative to the folder.
func (d *Dir) pathError(op, name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	return &fs.PathError{Op: op, Path: d.Join(name), Err: err}
}

// Lstat describes name in the folder, without following a symbolic link.
func (d *Dir) Lstat(name string) (fs.FileMode, error) {
	fi, err := d.root.Lstat(name)
	if err != nil {
		return 0, d.pathError("lstat", name, err)
	}
	return fi.Mode(), nil
}

// noLink fails for a symbolic link or junction at name (a look before the
// open that follows: see the package doc).
func (d *Dir) noLink(name string) error {
	mode, err := d.Lstat(name)
	if err != nil {
		return err
	}
	if mode&(fs.ModeSymlink|fs.ModeIrregular) != 0 {
		return &fs.PathError{Op: "open", Path: d.Join(name), Err: errors.New("is a symbolic link")}
	}
	return nil
}

// Open opens name in the folder for reading, refusing a symbolic link.
func (d *Dir) Open(name string) (*os.File, error) {
	if err := d.noLink(name); err != nil {
		return nil, err
	}
	f, err := d.root.Open(name)
	if err != nil {
		return nil, d.pathError("open", name, err)
	}
	return f, nil
}

// Sub opens the folder name inside d, refusing a symbolic link.
func (d *Dir) Sub(name string) (*Dir, error) {
	if err := d.noLink(name); err != nil {
		return nil, err
	}
	r, err := d.root.OpenRoot(name)
	if err != nil {
		return nil, d.pathError("open", name, err)
	}
	return &Dir{root: r, Path: d.Join(name)}, nil
}

// Remove removes the file name.
func (d *Dir) Remove(name string) error {
	if err := d.root.Remove(name); err != nil {
		return d.pathError("remove", name, err)
	}
	return nil
}

func (d *Dir) unlink(name string) { d.root.Remove(name) }

// RemoveAll removes the folder name and the files in it (one level: what
// this package writes), not following symbolic links.
func (d *Dir) RemoveAll(name string) error {
	sub, err := d.Sub(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	names, _ := sub.Names()
	for _, n := range names {
		sub.unlink(n)
	}
	sub.Close()
	if err := d.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return d.pathError("remove", name, err)
	}
	return nil
}

// MkdirTemp makes a new folder named prefix + a unique suffix in d, and
// returns its name and the open folder.
func (d *Dir) MkdirTemp(prefix string) (string, *Dir, error) {
	for range 100 {
		name := prefix + strconv.FormatUint(uint64(randUint32()), 36)
		err := d.root.Mkdir(name, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, d.pathError("mkdir", name, err)
		}
		sub, err := d.Sub(name)
		if err != nil {
			return "", nil, err
		}
		return name, sub, nil
	}
	return "", nil, &fs.PathError{Op: "mkdir", Path: d.Join(prefix + "*"), Err: fs.ErrExist}
}

// RenameNoReplace moves old to new inside d, failing with fs.ErrExist if
// anything is at new: a file is linked to new and unlinked from old, on
// the folder's handle; a folder, or a file on a file system without hard
// links, is moved with MoveFileEx without MOVEFILE_REPLACE_EXISTING, which
// goes through the folder's path.
func (d *Dir) RenameNoReplace(old, new string) error {
	mode, err := d.Lstat(old)
	if err != nil {
		return err
	}
	if mode.IsRegular() {
		err = d.root.Link(old, new)
		if err == nil {
			d.root.Remove(old)
			return nil
		}
		if !noHardLinks(err) {
			return d.pathError("rename", new, err)
		}
	}
	from, err := windows.UTF16PtrFromString(d.Join(old))
	if err != nil {
		return d.pathError("rename", new, err)
	}
	to, err := windows.UTF16PtrFromString(d.Join(new))
	if err != nil {
		return d.pathError("rename", new, err)
	}
	if err := windows.MoveFileEx(from, to, windows.MOVEFILE_WRITE_THROUGH); err != nil {
		return d.pathError("rename", new, err)
	}
	return nil
}

// noHardLinks tells the error of a link on a file system without hard
// links (FAT, exFAT, some network shares).
func noHardLinks(err error) bool {
	return errors.Is(err, windows.ERROR_INVALID_FUNCTION) || errors.Is(err, windows.ERROR_NOT_SUPPORTED) || errors.Is(err, windows.ERROR_NOT_SAME_DEVICE)
}

// create writes data with mode perm to a new temporary file in d, or, when
// direct, to a new file at name itself; it syncs the file when sync is
// set. It returns the file's name, and leaves nothing on an error, which
// names name.
func (d *Dir) create(name string, data []byte, perm fs.FileMode, direct, sync bool) (_ string, err error) {
	created := name
	var f *os.File
	for range 100 {
		if !direct {
			created = "." + name + ".tmp-" + strconv.FormatUint(uint64(randUint32()), 36)
		}
		// O_EXCL creates a new entry and never opens an existing one, a
		// symbolic link included.
		f, err = d.root.OpenFile(created, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if direct || !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", d.pathError("open", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			d.unlink(created)
			err = finalPath(err, d.Join(name))
		}
	}()
	if _, err = f.Write(data); err != nil {
		return "", err
	}
	if sync {
		if err = f.Sync(); err != nil {
			return "", err
		}
	}
	// The mode last: a read-only mode makes the file read-only.
	if err = f.Chmod(perm); err != nil {
		return "", err
	}
	return created, f.Close()
}

// place moves the temporary file tmp to name: rename when overwriting,
// link and unlink otherwise, so that nothing at name is replaced.
func (d *Dir) place(tmp, name string, overwrite bool) error {
	if overwrite {
		if err := d.root.Rename(tmp, name); err != nil {
			return d.pathError("rename", name, err)
		}
		return nil
	}
	err := d.root.Link(tmp, name)
	switch {
	case err == nil:
		d.unlink(tmp)
		return nil
	case errors.Is(err, fs.ErrExist):
		return &fs.PathError{Op: "create", Path: d.Join(name), Err: fs.ErrExist}
	case noHardLinks(err):
		return d.RenameNoReplace(tmp, name)
	}
	return d.pathError("link", name, err)
}

// chownLike does nothing: Windows files have no owner and group this
// package could copy.
func (d *Dir) chownLike(string, fs.FileInfo) {}

// Sync does nothing: Windows cannot flush a folder (FlushFileBuffers needs
// a handle open for writing, which a folder cannot have). The data of
// each file was flushed before it was moved into place.
func (d *Dir) Sync() error { return nil }
