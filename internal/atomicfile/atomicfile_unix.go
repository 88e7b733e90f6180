//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

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
		// Linux says ELOOP or ENOTDIR, FreeBSD EMLINK.
		if errors.Is(err, syscall.ELOOP) || (errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EMLINK)) && isSymlink(path) {
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

// Chmod sets the folder's mode.
func (d *Dir) Chmod(mode fs.FileMode) error { return d.f.Chmod(mode) }

// tryLock takes flock(2) without waiting.
func (d *Dir) tryLock() error {
	err := unix.Flock(d.fd(), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}

// Unlock releases Lock.
func (d *Dir) Unlock() { unix.Flock(d.fd(), unix.LOCK_UN) }

// Lstat describes name in the folder, without following a symbolic link.
func (d *Dir) Lstat(name string) (fs.FileMode, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, &fs.PathError{Op: "lstat", Path: d.Join(name), Err: err}
	}
	return modeOf(uint32(st.Mode)), nil // uint16 on the BSDs and macOS
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

// unlink removes the file name, for clean-ups that have an error to report
// already.
func (d *Dir) unlink(name string) { unix.Unlinkat(d.fd(), name, 0) }

// chownLike gives the file name the owner and group of like, where this
// process may: only root may give a file away; others keep their own files.
func (d *Dir) chownLike(name string, like fs.FileInfo) {
	if st, ok := like.Sys().(*syscall.Stat_t); ok {
		unix.Fchownat(d.fd(), name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
}

// Sync makes the renames in the folder durable.
func (d *Dir) Sync() error {
	if err := d.f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("syncing %s: %w", d.Path, err)
	}
	return nil
}

// renameByLink moves old to new without replacing anything at new, for
// the systems with no rename that refuses to (tested on all): a file is linked to new
// (linkat fails if anything is there) and unlinked from old. A folder,
// which cannot be linked, and a file on a file system without hard links
// are renamed after a look that nothing is at new: that races with a
// process creating new in between.
func (d *Dir) renameByLink(old, new string) error {
	mode, err := d.Lstat(old)
	if err != nil {
		return err
	}
	if !mode.IsDir() {
		err = unix.Linkat(d.fd(), old, d.fd(), new, 0)
		if err == nil {
			unix.Unlinkat(d.fd(), old, 0)
			return nil
		}
	}
	if mode.IsDir() || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EXDEV) {
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
