// Package atomicfile writes whole files atomically: a reader, a crash or an
// interrupt sees either the old file or the new one, never a part of it.
//
// Files are written inside a Dir, an open folder: every step (the
// temporary file, its mode, the move into place, the clean-up on an error)
// works relative to the folder's descriptor, with openat(2), linkat(2),
// renameat(2) and unlinkat(2), never through its path again. Swapping the
// folder, or a folder above it, for a symbolic link after it was opened
// cannot redirect a write. OpenDir refuses a folder that is a symbolic link
// or that other users can write to, as ssh does for its keys.
//
// The data goes to a temporary file in the folder, is synced, given its
// final mode (independent of the umask) and then moved into place: with
// rename when overwriting, with link otherwise, so that a file that
// appeared in the meantime is never replaced.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodekeys/nodekeys/internal/safefile"
)

// ErrUnsafeDir is wrapped by the error of a folder that others can write
// to, or that is a symbolic link.
var ErrUnsafeDir = errors.New("unsafe folder")

// Dir is an open folder. Its methods take file names, not paths.
type Dir struct {
	f *os.File
	// Path is the folder's path as the caller named it, for messages.
	Path string
}

// OpenDir opens the folder at path for writing secrets into: it refuses a
// symbolic link and a folder that users other than its owner can write
// to (they could replace the files).
func OpenDir(path string) (*Dir, error) {
	d, err := openDir(path, unix.O_NOFOLLOW)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) && isSymlink(path) {
			return nil, &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: is a symbolic link; name the folder itself", ErrUnsafeDir)}
		}
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(d.fd(), &st); err != nil {
		d.Close()
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&0o022 != 0 {
		d.Close()
		return nil, &fs.PathError{Op: "open", Path: path,
			Err: fmt.Errorf("%w: other users can write to it (mode %04o); chmod go-w %s", ErrUnsafeDir, st.Mode&0o7777, path)}
	}
	return d, nil
}

func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&fs.ModeSymlink != 0
}

// OpenFolder opens the folder at path, following symbolic links, for
// files that are not secrets (an allowlist) and for locking: what is
// written through it still goes relative to its descriptor.
func OpenFolder(path string) (*Dir, error) { return openDir(path, 0) }

// openDir opens a folder with extra open flags.
func openDir(path string, flags int) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return &Dir{f: os.NewFile(uintptr(fd), path), Path: path}, nil
}

func (d *Dir) fd() int { return int(d.f.Fd()) }

// Close closes the folder.
func (d *Dir) Close() error { return d.f.Close() }

// Join returns the path of name in the folder, for messages.
func (d *Dir) Join(name string) string { return filepath.Join(d.Path, name) }

// Chmod sets the folder's mode.
func (d *Dir) Chmod(mode fs.FileMode) error { return d.f.Chmod(mode) }

// Lock takes an exclusive advisory lock on the folder (flock(2)), waiting
// up to timeout; waiting is called once if the lock is held by another
// process. The lock goes with Close or Unlock.
func (d *Dir) Lock(timeout time.Duration, waiting func()) error {
	err := unix.Flock(d.fd(), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return &fs.PathError{Op: "lock", Path: d.Path, Err: err}
	}
	if waiting != nil {
		waiting()
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if err = unix.Flock(d.fd(), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			return nil
		}
	}
	return &fs.PathError{Op: "lock", Path: d.Path, Err: fmt.Errorf("another process has held it for %s", timeout)}
}

// Unlock releases Lock.
func (d *Dir) Unlock() { unix.Flock(d.fd(), unix.LOCK_UN) }

// Lstat describes name in the folder, without following a symbolic link.
func (d *Dir) Lstat(name string) (fs.FileMode, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, &fs.PathError{Op: "lstat", Path: d.Join(name), Err: err}
	}
	return modeOf(st.Mode), nil
}

// Exists reports whether anything (a file, a folder, a link) is at name.
func (d *Dir) Exists(name string) bool {
	_, err := d.Lstat(name)
	return err == nil
}

func modeOf(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	return mode
}

// Names lists the folder's entries.
func (d *Dir) Names() ([]string, error) {
	f, err := d.Open(".")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// Open opens name in the folder for reading, not following a symbolic link
// and not blocking on a FIFO.
func (d *Dir) Open(name string) (*os.File, error) {
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	return os.NewFile(uintptr(fd), d.Join(name)), nil
}

// Sub opens the folder name inside d, not following a symbolic link.
func (d *Dir) Sub(name string) (*Dir, error) {
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	return &Dir{f: os.NewFile(uintptr(fd), d.Join(name)), Path: d.Join(name)}, nil
}

// Remove removes the file name.
func (d *Dir) Remove(name string) error {
	if err := unix.Unlinkat(d.fd(), name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	return nil
}

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
		unix.Unlinkat(sub.fd(), n, 0)
	}
	sub.Close()
	if err := unix.Unlinkat(d.fd(), name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, syscall.ENOENT) {
		return &fs.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	return nil
}

// MkdirTemp makes a new folder of mode 0700 named prefix + a unique
// suffix in d, and returns its name and the open folder.
func (d *Dir) MkdirTemp(prefix string) (string, *Dir, error) {
	for range 100 {
		name := prefix + strconv.FormatUint(uint64(randUint32()), 36)
		err := unix.Mkdirat(d.fd(), name, 0o700)
		if errors.Is(err, syscall.EEXIST) {
			continue
		}
		if err != nil {
			return "", nil, &fs.PathError{Op: "mkdir", Path: d.Join(name), Err: err}
		}
		sub, err := d.Sub(name)
		if err != nil {
			return "", nil, err
		}
		// The mode is set explicitly: the umask must not tighten or loosen it.
		sub.Chmod(0o700)
		return name, sub, nil
	}
	return "", nil, &fs.PathError{Op: "mkdir", Path: d.Join(prefix + "*"), Err: fs.ErrExist}
}

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

// Write writes data to name in d with mode perm. Unless overwrite is set,
// anything already at name (a file, a folder or a symbolic link) is left
// alone and the returned error wraps fs.ErrExist. With overwrite a regular
// file or a symbolic link at name is replaced, never followed; a folder or
// any other kind of file is not replaced.
func (d *Dir) Write(name string, data []byte, perm fs.FileMode, overwrite bool) error {
	if err := d.check(name, overwrite); err != nil {
		return err
	}
	tmp, err := d.create(name, data, perm, false, true)
	if err != nil {
		return err
	}
	if err := d.place(tmp, name, overwrite); err != nil {
		unix.Unlinkat(d.fd(), tmp, 0)
		return err
	}
	return d.Sync()
}

// WriteLike replaces name with data, keeping the mode and, where this
// process may set it, the owner and group of like (a Stat of the file being
// replaced): editing a file does not change who may read it.
func (d *Dir) WriteLike(name string, data []byte, like fs.FileInfo) error {
	if err := d.check(name, true); err != nil {
		return err
	}
	tmp, err := d.create(name, data, like.Mode().Perm(), false, true)
	if err != nil {
		return err
	}
	if st, ok := like.Sys().(*syscall.Stat_t); ok {
		// Only root may give a file away; others keep their own files.
		unix.Fchownat(d.fd(), tmp, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
	if err := d.place(tmp, name, true); err != nil {
		unix.Unlinkat(d.fd(), tmp, 0)
		return err
	}
	return d.Sync()
}

// check fails early, before any work, if name cannot be written: something
// is there (without overwrite) or something that is not a regular file or
// a link is there (with it). Placing the file closes the race.
func (d *Dir) check(name string, overwrite bool) error {
	mode, err := d.Lstat(name)
	if err != nil {
		return nil
	}
	if !overwrite {
		return &fs.PathError{Op: "create", Path: d.Join(name), Err: fs.ErrExist}
	}
	if !mode.IsRegular() && mode&fs.ModeSymlink == 0 {
		return &fs.PathError{Op: "create", Path: d.Join(name), Err: fmt.Errorf("is %s, not a regular file; refusing to replace it", safefile.Kind(mode))}
	}
	return nil
}

// create writes data with mode perm to a new temporary file in d, or, when
// direct, to a new file at name itself; it syncs the file when sync is
// set. It returns the file's name, and leaves nothing on an error, which
// names name.
func (d *Dir) create(name string, data []byte, perm fs.FileMode, direct, sync bool) (_ string, err error) {
	created := name
	var fd int
	for range 100 {
		if !direct {
			created = "." + name + ".tmp-" + strconv.FormatUint(uint64(randUint32()), 36)
		}
		fd, err = unix.Openat(d.fd(), created, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if direct || !errors.Is(err, syscall.EEXIST) {
			break
		}
	}
	if err != nil {
		return "", &fs.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.Join(name))
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(d.fd(), created, 0)
			err = finalPath(err, d.Join(name))
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
	return created, f.Close()
}

// finalPath makes an error about the temporary file of a path name the
// path itself: the temporary file is gone by the time anyone reads it.
func finalPath(err error, path string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		pe.Path = path
	}
	return err
}

// place moves the temporary file tmp to name: rename when overwriting,
// link and unlink otherwise, so that nothing at name is replaced.
func (d *Dir) place(tmp, name string, overwrite bool) error {
	if overwrite {
		if err := unix.Renameat(d.fd(), tmp, d.fd(), name); err != nil {
			return &fs.PathError{Op: "rename", Path: d.Join(name), Err: err}
		}
		return nil
	}
	err := unix.Linkat(d.fd(), tmp, d.fd(), name, 0)
	switch {
	case err == nil:
		unix.Unlinkat(d.fd(), tmp, 0)
		return nil
	case errors.Is(err, syscall.EEXIST):
		return &fs.PathError{Op: "create", Path: d.Join(name), Err: fs.ErrExist}
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.ENOTSUP), errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.EXDEV):
		// No hard links on this file system.
		return d.RenameNoReplace(tmp, name)
	}
	return &fs.PathError{Op: "link", Path: d.Join(name), Err: err}
}

// Sync makes the renames in the folder durable.
func (d *Dir) Sync() error {
	if err := d.f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("syncing %s: %w", d.Path, err)
	}
	return nil
}

// Write writes data to path with mode perm, as Dir.Write does in the
// folder of path. The folder is opened once, following symbolic links in
// its own path (this is for files such as an allowlist, not for folders of
// secrets: use OpenDir for those).
func Write(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	d, err := openDir(filepath.Dir(path), 0)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Write(filepath.Base(path), data, perm, overwrite); err != nil {
		return finalPath(err, path)
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

// Batch writes many files in one folder with one sync for all of them
// instead of two for each: Add writes each to a temporary file, Commit
// flushes the file system once and then moves every file into place. Until
// Commit, none of the final names exists; a crash leaves only temporary
// files behind. Add may be called from several goroutines.
type Batch struct {
	// Dir is the folder the files go in.
	Dir *Dir
	// Overwrite replaces existing files, as Write's overwrite.
	Overwrite bool
	// Direct writes each file at its final name, with no temporary file:
	// for a private staging folder that is renamed into place as a whole
	// after Commit, where no reader can see a partial file.
	Direct bool

	mu      sync.Mutex
	pending []pending
}

type pending struct{ tmp, name string }

// Add writes data with mode perm to a temporary file for name (to name
// itself when Direct).
func (b *Batch) Add(name string, data []byte, perm fs.FileMode) error {
	if !b.Direct {
		if err := b.Dir.check(name, b.Overwrite); err != nil {
			return err
		}
	}
	created, err := b.Dir.create(name, data, perm, b.Direct, false)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.pending = append(b.pending, pending{created, name})
	b.mu.Unlock()
	return nil
}

// Commit syncs the written data to disk, then moves each file into place.
// On an error, the files not yet moved are removed and the error names the
// first name that failed.
func (b *Batch) Commit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 {
		return nil
	}
	if err := unix.Syncfs(b.Dir.fd()); err != nil {
		b.abort(0)
		return fmt.Errorf("syncing %s: %w", b.Dir.Path, err)
	}
	for i, p := range b.pending {
		if b.Direct {
			continue
		}
		if err := b.Dir.place(p.tmp, p.name, b.Overwrite); err != nil {
			b.abort(i)
			return err
		}
	}
	b.pending = nil
	return b.Dir.Sync()
}

// Abort removes the files of a batch that will not be committed.
func (b *Batch) Abort() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.abort(0)
}

func (b *Batch) abort(from int) {
	for _, p := range b.pending[from:] {
		unix.Unlinkat(b.Dir.fd(), p.tmp, 0)
	}
	b.pending = nil
}
