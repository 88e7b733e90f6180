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
//
// # Operating systems
//
// The guarantees above are Linux's. Elsewhere the package uses each
// system's own equivalent where it has one and a weaker, stated path where
// it has none:
//
//   - Linux: RenameNoReplace is renameat2(RENAME_NOREPLACE) (a checked
//     rename on file systems without it), and Batch.Commit flushes the
//     whole file system once with syncfs(2).
//   - macOS: RenameNoReplace is renameatx_np(RENAME_EXCL). There is no
//     syncfs: a Batch syncs each file as it is added (one sync per file
//     instead of one per batch, with F_FULLFSYNC as Go's File.Sync does).
//   - FreeBSD and the other BSDs: no rename that refuses to replace.
//     RenameNoReplace links and unlinks a file (atomic); a folder is
//     renamed after checking that nothing is at the new name, which races
//     with a process that creates that name in between. A Batch syncs each
//     file, as on macOS.
//   - Windows: the folder is an os.Root, whose calls are relative to the
//     folder's handle as openat's are. There are no permission bits: OpenDir
//     cannot refuse a folder others may write to (its ACL is not read), and
//     a mode only sets or clears the read-only attribute. OpenDir, Open and
//     Sub check for a symbolic link or junction with a separate look before
//     opening, which races with a swap in between. Lock holds LockFileEx on
//     a file named .nodekeys-lock that it creates in the folder and leaves
//     there. RenameNoReplace links and unlinks a file; a folder is moved by
//     path with MoveFileEx without MOVEFILE_REPLACE_EXISTING (atomic, but
//     through the folder's path, not its handle). A Batch syncs each file;
//     the folder itself cannot be synced, so a crash just after a write may
//     lose the rename but never leaves a partial file. Owners are not
//     copied by WriteLike. Replacing a file fails while another process
//     holds it open without FILE_SHARE_DELETE.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nodekeys/nodekeys/internal/safefile"
)

// ErrUnsafeDir is wrapped by the error of a folder that others can write
// to, or that is a symbolic link.
var ErrUnsafeDir = errors.New("unsafe folder")

// errLocked is tryLock's error when another holder has the lock.
var errLocked = errors.New("locked")

// Join returns the path of name in the folder, for messages.
func (d *Dir) Join(name string) string { return filepath.Join(d.Path, name) }

// Lock takes an exclusive advisory lock on the folder (flock(2); on
// Windows, see the package doc), waiting up to timeout; waiting is called
// once if the lock is held by another process. The lock goes with Close or
// Unlock.
func (d *Dir) Lock(timeout time.Duration, waiting func()) error {
	err := d.tryLock()
	if err == nil {
		return nil
	}
	if !errors.Is(err, errLocked) {
		return &fs.PathError{Op: "lock", Path: d.Path, Err: err}
	}
	if waiting != nil {
		waiting()
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if err = d.tryLock(); err == nil {
			return nil
		}
	}
	return &fs.PathError{Op: "lock", Path: d.Path, Err: fmt.Errorf("another process has held it for %s", timeout)}
}

// Exists reports whether anything (a file, a folder, a link) is at name.
func (d *Dir) Exists(name string) bool {
	_, err := d.Lstat(name)
	return err == nil
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
		d.unlink(tmp)
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
	d.chownLike(tmp, like)
	if err := d.place(tmp, name, true); err != nil {
		d.unlink(tmp)
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

// finalPath makes an error about the temporary file of a path name the
// path itself: the temporary file is gone by the time anyone reads it.
func finalPath(err error, path string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		pe.Path = path
	}
	return err
}

// Write writes data to path with mode perm, as Dir.Write does in the
// folder of path. The folder is opened once, following symbolic links in
// its own path (this is for files such as an allowlist, not for folders of
// secrets: use OpenDir for those).
func Write(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	d, err := OpenFolder(filepath.Dir(path))
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
// files behind. Add may be called from several goroutines. Where the
// system has no syncfs (all but Linux), Add syncs each file instead.
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
	created, err := b.Dir.create(name, data, perm, b.Direct, !haveSyncfs)
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
	if haveSyncfs {
		if err := b.Dir.syncfs(); err != nil {
			b.abort(0)
			return fmt.Errorf("syncing %s: %w", b.Dir.Path, err)
		}
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
		b.Dir.unlink(p.tmp)
	}
	b.pending = nil
}
