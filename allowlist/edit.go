package allowlist

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/keys"
)

// EditOptions configure Edit.
type EditOptions struct {
	// Create takes a missing file for an empty list, which Edit creates
	// (mode 0644); without it a missing file is an error.
	Create bool
	// Wait is how long Edit waits for another writer of the folder to
	// finish (default one minute).
	Wait time.Duration
	// Waiting, if not nil, is called once when Edit has to wait, with the
	// folder it waits for.
	Waiting func(folder string)
}

// Edit changes the allowlist CSV at path: under an exclusive lock on its
// folder, so that concurrent edits (and keyset.Write) take turns, it reads
// the list, gives it to edit, and writes the keys edit returns in its
// place atomically: a reader sees the old file or the new, never a part.
// The file is written as Flower's generate_auth_keys.sh writes it
// (csvlist.Marshal). A symbolic link is written through to its target,
// which keeps its mode and owner. If edit returns an error, nothing is
// written. A file that does not parse is not edited: the error is the
// csvlist.Problems, for errors.As.
func Edit(path string, opts EditOptions, edit func(l *csvlist.List) ([]*keys.PublicKey, error)) error {
	if opts.Wait <= 0 {
		opts.Wait = time.Minute
	}
	target := path
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if target, err = filepath.EvalSymlinks(path); err != nil {
			return fmt.Errorf("%s: a symbolic link to nowhere: %w", path, err)
		}
	}
	dir := filepath.Dir(target)
	folder, err := atomicfile.OpenFolder(dir)
	if err != nil {
		return err
	}
	defer folder.Close()
	var waiting func()
	if opts.Waiting != nil {
		waiting = func() { opts.Waiting(dir) }
	}
	if err := folder.Lock(opts.Wait, waiting); err != nil {
		return err
	}
	l, err := csvlist.ReadFile(target)
	switch {
	case opts.Create && errors.Is(err, fs.ErrNotExist):
		l = &csvlist.List{}
	case err != nil:
		return err
	}
	l.File = path
	ks, err := edit(l)
	if err != nil {
		return err
	}
	data, name := csvlist.Marshal(ks), filepath.Base(target)
	if fi, err := os.Stat(target); err == nil {
		return folder.WriteLike(name, data, fi)
	}
	return folder.Write(name, data, 0o644, false)
}
