//go:build !linux

package deploy

import "fmt"

// GrantRead lets user uid read the file at path: on Linux through a POSIX
// ACL; elsewhere it is not supported and says so.
func GrantRead(path string, uid int) error {
	return fmt.Errorf("deploy: %s: ACLs for uid %d are set on Linux only", path, uid)
}
