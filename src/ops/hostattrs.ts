// What a host file carries besides its data, for copies between the host and the image (cp -r
// both ways): extended attributes (every namespace the process may read or set, POSIX ACLs
// among them as system.posix_acl_*), times to the nanosecond, device numbers, and making
// device nodes, FIFOs and sockets. Through prism's addon (src/sys.ts), since Node has no
// calls for attributes or nanosecond times and rounds times to about a microsecond. Paths and
// names are bytes. Nothing here decides policy: a call that fails throws the host's error
// (code, errno, syscall, path); copy.ts decides what that means for the entry.
import {sys} from '../sys.js'
import type {Xattr} from '../format/xattr.js'
import type {Timestamp} from '../fs/inode.js'

/** The attributes of a host path (a final symlink not followed), in the order the host lists them. */
export function readHostXattrs(path: Buffer): Xattr[] {
  const s = sys()
  const out: Xattr[] = []
  for (const name of s.llistxattr(path)) {
    const value = s.lgetxattr(path, name)
    if (value !== null) out.push({name, value}) // gone since it was listed
  }
  return out
}

/** Sets one attribute of a host path (a symlink itself). */
export function writeHostXattr(path: Buffer, x: Xattr): void {
  sys().lsetxattr(path, x.name, x.value, 0)
}

/** utimensat to the nanosecond; with `nofollow`, a symlink itself. */
export function setHostTimes(path: Buffer, atime: Timestamp, mtime: Timestamp, nofollow: boolean): void {
  sys().utimensat(path, atime.s, atime.ns, mtime.s, mtime.ns, nofollow)
}

/** futimens to the nanosecond. */
export function setHostTimesFd(fd: number, atime: Timestamp, mtime: Timestamp): void {
  sys().futimens(fd, atime.s, atime.ns, mtime.s, mtime.ns)
}

/** mknod: `mode` holds the type and permissions (the umask applies, as to open's mode). */
export function makeHostNode(path: Buffer, mode: number, major: number, minor: number): void {
  sys().mknod(path, mode, major, minor)
}

/** The major and minor numbers of a host st_rdev, as glibc's major() and minor() take them apart. */
export function splitRdev(rdev: bigint): {major: number, minor: number} {
  const d = BigInt.asUintN(64, rdev)
  return {
    major: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn & 0xffffffffn)),
    minor: Number((d & 0xffn) | ((d >> 12n) & ~0xffn & 0xffffffffn)),
  }
}
