//go:build freebsd || openbsd || netbsd || dragonfly

package atomicfile

// RenameNoReplace moves old to new inside d, failing with fs.ErrExist if
// anything is at new. These systems have no rename that refuses to
// replace: see renameByLink.
func (d *Dir) RenameNoReplace(old, new string) error { return d.renameByLink(old, new) }
