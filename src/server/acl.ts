// POSIX ACL inheritance for inodes a mount creates (the kernel enforces ACLs, but with
// FUSE_CAP_POSIX_ACL it leaves the umask and the parent's default ACL to the filesystem, as a
// local filesystem's posix_acl_create does). Pure: ACL values and modes in, values and modes
// out; it never reads or writes the image.
import {ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_GROUP, ACL_USER_OBJ, decodeAcl, encodeAcl} from '../format/xattr.js'

const S_IFMT = 0o170000
const S_IFDIR = 0o040000

export interface Inherited {
  /** the new inode's mode (type bits kept) */
  mode: number
  /** its system.posix_acl_access value, when it holds more than the mode does */
  access: Buffer | null
  /** its system.posix_acl_default value (directories inherit the parent's) */
  default: Buffer | null
}

/**
 * The mode and ACLs of a new inode of mode `mode` (as the caller asked, before any umask) in
 * a directory whose default ACL is `parentDefault` (null: none, then the umask applies), as
 * the kernel's posix_acl_create and posix_acl_create_masq make them.
 */
export function inherit(mode: number, umask: number, parentDefault: Buffer | null): Inherited {
  const isDir = (mode & S_IFMT) === S_IFDIR
  if (!parentDefault || parentDefault.length <= 4) return {mode: mode & ~(umask & 0o777), access: null, default: null}
  const entries = decodeAcl(parentDefault).map((e) => ({...e}))
  let m = mode
  let notEquiv = false
  let groupObj: {perm: number} | undefined
  let maskObj: {perm: number} | undefined
  for (const e of entries) {
    switch (e.tag) {
      case ACL_USER_OBJ:
        e.perm &= (m >> 6) & 7
        m &= (e.perm << 6) | ~0o700
        break
      case ACL_USER:
      case ACL_GROUP:
        notEquiv = true
        break
      case ACL_GROUP_OBJ:
        groupObj = e
        break
      case ACL_OTHER:
        e.perm &= m & 7
        m &= e.perm | ~0o007
        break
      case ACL_MASK:
        maskObj = e
        notEquiv = true
        break
    }
  }
  const g = maskObj ?? groupObj
  if (g) {
    g.perm &= (m >> 3) & 7
    m &= (g.perm << 3) | ~0o070
  }
  return {mode: m, access: notEquiv ? encodeAcl(entries) : null, default: isDir ? Buffer.from(parentDefault) : null}
}
