package deploy

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// POSIX ACL entry tags and the xattr layout of Linux (acl_ea.h).
const (
	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclMask     = 0x10
	aclOther    = 0x20
	aclRead     = 4
	aclWrite    = 2
)

// GrantRead lets user uid read the file at path through a POSIX access
// ACL (as `setfacl -m u:UID:r` would), leaving the owner read-write and
// the group and others nothing. The owner of a file may set its ACL
// without root. It fails where the file system has no ACLs.
func GrantRead(path string, uid int) error {
	entry := func(b []byte, tag, perm uint16, id uint32) []byte {
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		return binary.LittleEndian.AppendUint32(b, id)
	}
	const undefined = ^uint32(0)
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	b = entry(b, aclUserObj, aclRead|aclWrite, undefined)
	b = entry(b, aclUser, aclRead, uint32(uid))
	b = entry(b, aclGroupObj, 0, undefined)
	b = entry(b, aclMask, aclRead, undefined)
	b = entry(b, aclOther, 0, undefined)
	if err := unix.Lsetxattr(path, "system.posix_acl_access", b, 0); err != nil {
		return fmt.Errorf("deploy: %s: an ACL for uid %d: %w", path, uid, err)
	}
	return nil
}
