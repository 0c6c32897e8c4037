// The FUSE interface Prism serves filesystems through: the operations a filesystem implements
// (FuseOps, inode-based, each may answer at once or through a promise), the mount options and
// the session a mount returns. Nothing here names libfuse: src/fuse/libfuse.ts implements it
// over the native addon, and another binding could implement it instead.
// It must never import from the library below (src/fs, src/ops, ...): the FUSE floor sits on
// top of the library, and the Prism adapter that joins the two is a floor of its own.
import {constants} from 'node:os'

/**
 * Numbers. Inode (node) numbers, file handles, offsets, sizes and readdir cookies are plain
 * JavaScript numbers: integers from 0 to 2^53-1 (Number.MAX_SAFE_INTEGER), never BigInt. The
 * kernel only hands back node ids and handles the filesystem gave it, so these never exceed
 * what the filesystem chose; offsets beyond 2^53-1 never reach a handler (a read there is at
 * end of file, a write or truncate there fails with EFBIG, a seek with ENXIO).
 */
export type Ino = number

/** A time: whole seconds since the epoch (may be negative) and nanoseconds 0..999999999. */
export interface Timespec {
  sec: number
  nsec: number
}

/** Who made a request (the calling thread's credentials, from fuse_req_ctx). */
export interface FuseContext {
  uid: number
  gid: number
  /** the calling thread's id; 0 for requests the kernel makes itself (writeback, forget) */
  pid: number
  /**
   * The caller's umask: given in create, mknod and mkdir (0 elsewhere). The mode of those
   * requests is already masked by the kernel, except when the mount asked for `dontMask` or
   * `posixAcl` (then the filesystem applies the umask itself unless the parent directory has a
   * default ACL).
   */
  umask: number
  /** The caller's supplementary groups, read from /proc when asked ([] if the caller is gone). */
  groups(): number[]
}

export interface Attr {
  /** st_ino as stat shows it (usually the node id) */
  ino: number
  /** type and permission bits (S_IFREG | 0o644, ...) */
  mode: number
  nlink: number
  uid: number
  gid: number
  /** device number of a character or block device, as makedev encodes it */
  rdev: number
  size: number
  /** 512-byte blocks allocated */
  blocks: number
  /** preferred I/O size; 0 or absent lets the kernel choose */
  blksize?: number
  atime: Timespec
  mtime: Timespec
  ctime: Timespec
}

/** The answer to lookup, mknod, mkdir, symlink, link (and the first half of create). */
export interface Entry {
  /**
   * The node id the kernel will use for this inode from now on. Each entry sent counts as one
   * lookup of that node, which the kernel later gives back through `forget`. 0 means "no such
   * name" (a negative entry, cached for `entryTimeout` seconds; only in lookup).
   */
  ino: Ino
  /** with `ino`, unique for the mount's lifetime (needed with exportSupport); default 0 */
  generation?: number
  /** required unless `ino` is 0 */
  attr?: Attr
  /** seconds the kernel may keep the attributes */
  attrTimeout: number
  /** seconds the kernel may keep the name -> node binding */
  entryTimeout: number
  /**
   * The inode has no `security.capability` attribute: the binding may answer the kernel's
   * getxattr of it (ENODATA, asked before every write) itself, without calling `getxattr`,
   * until a setxattr of the node through this session, an invalidateInode of it, or
   * forgetAnswers. Leave it out when unsure.
   */
  noCapability?: boolean
}

export interface AttrReply {
  attr: Attr
  /** seconds the kernel may keep them */
  timeout: number
}

export interface OpenReply {
  /** the file handle later requests on this open file carry; default 0 */
  fh?: number
  /** bypass the page cache for this open file */
  directIo?: boolean
  /** keep the data cached from earlier opens (the file did not change since) */
  keepCache?: boolean
  nonseekable?: boolean
  /** opendir: let the kernel cache this directory's entries */
  cacheReaddir?: boolean
  /** no flush request on close */
  noflush?: boolean
}

export interface CreateReply {
  entry: Entry
  open: OpenReply
}

/** One readdir entry. `offset` is the cookie of the *next* entry (a later readdir resumes there). */
export interface DirEntry {
  name: Buffer
  /** st_ino shown in the entry */
  ino: number
  /** only the type bits (S_IFMT) are used */
  mode: number
  /** 1..2^53-1 */
  offset: number
}

/**
 * One readdirplus entry. An entry with a non-zero `entry.ino`, other than "." and "..", counts
 * as one lookup when it is sent. The binding stops taking entries from the iterable when the
 * kernel's buffer is full and calls `forget(ino, 1)` for an entry it took but could not send
 * (or for all of them if the reply failed), so a filesystem may count the lookup as it yields.
 * For "." and ".." give `entry.ino` 0 with `entry.attr` holding at least ino and mode.
 */
export interface DirEntryPlus {
  name: Buffer
  offset: number
  entry: Entry & {attr: Attr}
}

/** The fields setattr changes; a field is present only when the request sets it. */
export interface SetAttr {
  mode?: number
  uid?: number
  gid?: number
  /** truncate (or extend) to this size; with `fh` when it comes from ftruncate */
  size?: number
  /** the time to set; with `atimeNow` the kernel's current time (utimensat UTIME_NOW) */
  atime?: Timespec
  atimeNow?: boolean
  mtime?: Timespec
  mtimeNow?: boolean
  /** the kernel sets ctime explicitly only with writeback caching */
  ctime?: Timespec
  /** the open file this comes through (ftruncate, futimens, fchmod ...) */
  fh?: number
  /** the raw FUSE_SET_ATTR_* bits, for anything not decoded above */
  valid: number
}

export interface StatFs {
  bsize: number
  frsize: number
  blocks: number
  bfree: number
  bavail: number
  files: number
  ffree: number
  favail: number
  fsid: number
  flag: number
  namemax: number
}

export interface WriteInfo {
  /** the open file's flags (O_APPEND, ...) */
  flags: number
  /** a write-back of cached pages (writeback cache): ctx is the kernel's, not a process's */
  writepage: boolean
}

export interface IoctlReply {
  result: number
  /** at most the `outSize` the request allowed */
  data?: Buffer
}

/** What the kernel and libfuse agreed on at INIT. */
export interface ConnInfo {
  protoMajor: number
  protoMinor: number
  /** FUSE_CAP_* bits the kernel offers, and those in use */
  capable: number
  want: number
  maxWrite: number
  maxRead: number
  maxReadahead: number
  maxBackground: number
  congestionThreshold: number
  timeGran: number
  writebackCache: boolean
  posixAcl: boolean
  readdirplus: boolean
  atomicOTrunc: boolean
  exportSupport: boolean
  handleKillpriv: boolean
  dontMask: boolean
}

type R<T> = T | Promise<T>

/**
 * A filesystem, inode-based. Every handler gets the caller's context first; names, symlink
 * targets and xattr names and values are Buffers (bytes, never decoded). A handler answers by
 * returning (or resolving) its result, and fails by throwing (or rejecting) a FuseError, or
 * any error whose `code` is an errno name ('ENOENT'); anything else is answered EIO and
 * reported through MountOptions.onError. Every request is answered exactly once whatever the
 * handler does; there is no time limit. A missing handler gets the kernel's and libfuse's
 * default (ENOSYS for most; open, opendir, release and releasedir succeed; statfs returns
 * zeros; ioctl is ENOTTY; without getlk/setlk (flock) the kernel keeps POSIX (flock) locks itself, per mount).
 *
 * The kernel checks permissions (default_permissions is always on): modes, owners, sticky
 * directories, and with posixAcl the ACLs held in system.posix_acl_* xattrs. The filesystem
 * sets owners on create (ctx.uid, and ctx.gid or a setgid parent's gid), keeps nlink, times
 * and the lookup counts. With atomic O_TRUNC (always on) open gets O_TRUNC and must truncate.
 * mkdir's mode holds permission bits only: the filesystem adds S_IFDIR.
 */
export interface FuseOps {
  /** after the kernel's INIT; informational (the capabilities come from MountOptions) */
  init?(conn: ConnInfo): void
  /** once, when the session has ended */
  destroy?(): void
  lookup?(ctx: FuseContext, parent: Ino, name: Buffer): R<Entry>
  /** the kernel drops `nlookup` lookups of `ino`; no answer */
  forget?(ino: Ino, nlookup: number): void
  getattr?(ctx: FuseContext, ino: Ino, fh: number | undefined): R<AttrReply>
  setattr?(ctx: FuseContext, ino: Ino, set: SetAttr): R<AttrReply>
  readlink?(ctx: FuseContext, ino: Ino): R<Buffer>
  mknod?(ctx: FuseContext, parent: Ino, name: Buffer, mode: number, rdev: number): R<Entry>
  mkdir?(ctx: FuseContext, parent: Ino, name: Buffer, mode: number): R<Entry>
  unlink?(ctx: FuseContext, parent: Ino, name: Buffer): R<void>
  rmdir?(ctx: FuseContext, parent: Ino, name: Buffer): R<void>
  symlink?(ctx: FuseContext, target: Buffer, parent: Ino, name: Buffer): R<Entry>
  /** flags: RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT (renameat2); unknown ones: EINVAL */
  rename?(ctx: FuseContext, parent: Ino, name: Buffer, newParent: Ino, newName: Buffer, flags: number): R<void>
  /** also names a file made by `tmpfile` (nlink 0) that was not opened with O_EXCL (linkat AT_EMPTY_PATH) */
  link?(ctx: FuseContext, ino: Ino, newParent: Ino, newName: Buffer): R<Entry>
  open?(ctx: FuseContext, ino: Ino, flags: number): R<OpenReply>
  /** at most `size` bytes; fewer only at end of file */
  read?(ctx: FuseContext, ino: Ino, fh: number, offset: number, size: number): R<Buffer>
  /** returns the number of bytes written */
  write?(ctx: FuseContext, ino: Ino, fh: number, offset: number, data: Buffer, info: WriteInfo): R<number>
  /**
   * On each close of a descriptor (there may be several per open), unless the open answered
   * `noflush`. `lockOwner`: the closing process's POSIX lock owner, whose locks on the file
   * the close releases (with setlk implemented). The binding answers it alone, without this
   * call, while no POSIX lock was ever asked for (setlk) through the mount.
   */
  flush?(ctx: FuseContext, ino: Ino, fh: number, lockOwner: string): R<void>
  /**
   * The last close of an open file. `flockOwner`: set when the open file holds a flock lock
   * (FUSE_RELEASE_FLOCK_UNLOCK, with flock implemented), which this releases.
   */
  release?(ctx: FuseContext, ino: Ino, fh: number, flags: number, flockOwner?: string): R<void>
  fsync?(ctx: FuseContext, ino: Ino, fh: number, datasync: boolean): R<void>
  opendir?(ctx: FuseContext, ino: Ino, flags: number): R<OpenReply>
  /** entries from cookie `offset` on (0: the start); the binding takes as many as fit in `size` bytes */
  readdir?(ctx: FuseContext, ino: Ino, fh: number, offset: number, size: number): R<Iterable<DirEntry>>
  readdirplus?(ctx: FuseContext, ino: Ino, fh: number, offset: number, size: number): R<Iterable<DirEntryPlus>>
  releasedir?(ctx: FuseContext, ino: Ino, fh: number): R<void>
  fsyncdir?(ctx: FuseContext, ino: Ino, fh: number, datasync: boolean): R<void>
  statfs?(ctx: FuseContext, ino: Ino): R<StatFs>
  /** flags: XATTR_CREATE, XATTR_REPLACE */
  setxattr?(ctx: FuseContext, ino: Ino, name: Buffer, value: Buffer, flags: number): R<void>
  /** the whole value; the binding answers the size probe (size 0) and ERANGE itself; ENODATA when absent */
  getxattr?(ctx: FuseContext, ino: Ino, name: Buffer): R<Buffer>
  /** the names; the binding joins them with NUL bytes and answers the size probe and ERANGE */
  listxattr?(ctx: FuseContext, ino: Ino): R<Buffer[]>
  removexattr?(ctx: FuseContext, ino: Ino, name: Buffer): R<void>
  /** not sent while default_permissions is on (always here); kept for completeness */
  access?(ctx: FuseContext, ino: Ino, mask: number): R<void>
  create?(ctx: FuseContext, parent: Ino, name: Buffer, mode: number, flags: number): R<CreateReply>
  /**
   * open(2) with O_TMPFILE in directory `parent`: a new regular file named by no directory,
   * opened (flags holds O_TMPFILE, and O_EXCL when it may never be linked). Until a `link` names
   * it, its nlink is 0, and it goes at its last release and forget, as an unlinked open file.
   * Absent: ENOSYS, and the kernel fails O_TMPFILE with EOPNOTSUPP from then on. Needs `create`.
   */
  tmpfile?(ctx: FuseContext, parent: Ino, mode: number, flags: number): R<CreateReply>
  /** mode: 0 or FALLOC_FL_* bits (KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, ...) */
  fallocate?(ctx: FuseContext, ino: Ino, fh: number, mode: number, offset: number, length: number): R<void>
  /** only well-formed (restricted) ioctls reach here; absent: ENOTTY */
  ioctl?(ctx: FuseContext, ino: Ino, fh: number, cmd: number, flags: number, input: Buffer, outSize: number): R<IoctlReply>
  /** whence: SEEK_DATA (3) or SEEK_HOLE (4); SEEK_SET/CUR/END are the kernel's */
  lseek?(ctx: FuseContext, ino: Ino, fh: number, offset: number, whence: number): R<number>
  copyFileRange?(ctx: FuseContext, inIno: Ino, inFh: number, inOffset: number, outIno: Ino, outFh: number, outOffset: number, length: number, flags: number): R<number>
  /**
   * POSIX locks (fcntl F_GETLK, F_SETLK, F_SETLKW; with getlk and setlk both implemented the
   * kernel stops keeping them itself, FUSE_CAP_POSIX_LOCKS). `owner` is the kernel's opaque
   * lock owner (per connection: the same process has another through another mount).
   * getlk answers the first lock in the way, or the request itself with type F_UNLCK.
   */
  getlk?(ctx: FuseContext, ino: Ino, fh: number, owner: string, lock: FileLock): R<FileLock>
  /**
   * Sets, changes or removes (F_UNLCK) a POSIX lock; EAGAIN when another owner's lock is in
   * the way and `sleep` is false. With `sleep` (F_SETLKW) answer once the lock is granted, or
   * EINTR once `signal` aborts (the kernel interrupted the request: a signal, a killed
   * waiter), or EDEADLK.
   */
  setlk?(ctx: FuseContext, ino: Ino, fh: number, owner: string, lock: FileLock, sleep: boolean, signal: AbortSignal): R<void>
  /**
   * flock(2) (FUSE_CAP_FLOCK_LOCKS): op is LOCK_SH, LOCK_EX or LOCK_UN, with LOCK_NB for no
   * wait; `owner` is the open file's. A wait ends as setlk's does.
   */
  flock?(ctx: FuseContext, ino: Ino, fh: number, owner: string, op: number, signal: AbortSignal): R<void>
}

/** A POSIX lock: type F_RDLCK, F_WRLCK or F_UNLCK, bytes start..end inclusive (end -1: to the end of any file). */
export interface FileLock {
  type: number
  start: number
  end: number
  /** the process holding it (getlk's answer) or asking */
  pid: number
}

export const F_RDLCK = 0
export const F_WRLCK = 1
export const F_UNLCK = 2
export const LOCK_SH = 1
export const LOCK_EX = 2
export const LOCK_NB = 4
export const LOCK_UN = 8

export interface MountOptions {
  /** shown as the mount's source in /proc/mounts; default "prism" */
  fsname?: string
  /** the type shows as fuse.SUBTYPE; default "prism" */
  subtype?: string
  /** let users other than the one who mounted in (non-root mounts need user_allow_other in /etc/fuse.conf) */
  allowOther?: boolean
  readOnly?: boolean
  /** honour setuid/setgid bits (default: nosuid) */
  suid?: boolean
  /** allow opening device nodes (default: nodev) */
  dev?: boolean
  /** largest read request; default: the kernel's (128 KiB buffered, up to maxWrite direct) */
  maxRead?: number
  /** largest write request; default and most 1 MiB (libfuse 3.14's limit), least 4 KiB */
  maxWrite?: number
  maxReadahead?: number
  /** requests the kernel keeps in flight in the background (readahead, async direct I/O); default 64 */
  maxBackground?: number
  /** let the kernel cache writes (then it may read through write-only descriptors and sends mtime/ctime via setattr) */
  writebackCache?: boolean
  /** the kernel enforces and caches POSIX ACLs from system.posix_acl_* (the filesystem then applies ctx.umask) */
  posixAcl?: boolean
  /** NFS export: the filesystem answers lookups of "." and ".." and keeps `generation` unique */
  exportSupport?: boolean
  /** the kernel leaves the umask to the filesystem (ctx.umask) */
  dontMask?: boolean
  /** let the kernel cache readlink answers */
  cacheSymlinks?: boolean
  /** readdirplus for the first read of a directory only, readdir after (when both are implemented) */
  readdirplusAuto?: boolean
  /**
   * FUSE_CAP_HANDLE_KILLPRIV: the filesystem, not the kernel, clears setuid/setgid on write,
   * chown and truncate (libfuse's default). Default off here: the kernel clears them itself,
   * with a setattr before the write (not atomically with it), as it decides (CAP_FSETID).
   */
  handleKillpriv?: boolean
  /** libfuse's debug output on stderr */
  debug?: boolean
  /** a handler failed with something that is not an errno (answered EIO); default: a line on stderr */
  onError?: (op: string, error: unknown) => void
}

export interface FuseSession {
  /** the absolute path mounted on */
  readonly mountpoint: string
  /** "major:minor" of the mount (its st_dev), which also names its /sys/fs/fuse/connections entry */
  readonly device: string | undefined
  readonly conn: ConnInfo
  /** settles once the session has ended: unmounted, aborted, or failed */
  readonly closed: Promise<void>
  /**
   * Unmounts (umount2 on a worker thread; fusermount3 -u for non-root) and waits for the session
   * to end. Fails with EBUSY while the mount is in use, unless `lazy` (detach now, end when the
   * last user leaves).
   */
  unmount(options?: {lazy?: boolean}): Promise<void>
  /**
   * Drops the kernel's cached data of `ino` from `offset` for `length` bytes (0: to the end)
   * and its attributes; offset -1: attributes only. Resolves true, or false when the kernel held
   * nothing for it or the session has ended.
   *
   * Notifications run on a thread of their own and may wait in the kernel for a request in
   * flight (the directory's lock for an entry, the pages a read fills for an inode). So never
   * await one about the inode or directory a handler is answering for before answering it:
   * that request would wait for the notification and the notification for the request.
   */
  invalidateInode(ino: Ino, offset?: number, length?: number): Promise<boolean>
  /** Drops the kernel's cached entry `name` in `parent` (and a negative entry). */
  invalidateEntry(parent: Ino, name: Buffer): Promise<boolean>
  /** Tells the kernel that `name` in `parent`, which was `child`, is gone (invalidates and unhashes it). */
  notifyDelete(parent: Ino, child: Ino, name: Buffer): Promise<boolean>
  /**
   * Forgets every answer the binding keeps on the filesystem's behalf (the nodes known to have
   * no `security.capability`, answered ENODATA without a call to `getxattr`): for a change the
   * binding cannot see, such as another process writing the image. invalidateInode forgets
   * one node's; a setxattr through this session forgets its node's by itself.
   */
  forgetAnswers(): void
}

/** Mounts `ops` on `mountpoint`; resolves once the kernel has sent INIT. */
export type MountFunction = (mountpoint: string, ops: FuseOps, options?: MountOptions) => Promise<FuseSession>

/** Fails a request with an errno: throw new FuseError(constants.errno.ENOENT) or new FuseError('ENOENT'). */
export class FuseError extends Error {
  readonly errno: number
  readonly code: string
  constructor(errno: number | string, message?: string) {
    const code = typeof errno === 'string' ? errno : errnoName(errno)
    super(message ?? code)
    this.code = code
    this.errno = typeof errno === 'number' ? errno : (ERRNO[errno] ?? ERRNO.EIO!)
    this.name = 'FuseError'
  }
}

const ERRNO: Record<string, number> = constants.errno as unknown as Record<string, number>

function errnoName(n: number): string {
  for (const [k, v] of Object.entries(ERRNO)) if (v === n) return k
  return `errno ${n}`
}

/** renameat2 flags */
export const RENAME_NOREPLACE = 1
export const RENAME_EXCHANGE = 2
export const RENAME_WHITEOUT = 4
/** setxattr flags */
export const XATTR_CREATE = 1
export const XATTR_REPLACE = 2
/** fallocate modes */
export const FALLOC_FL_KEEP_SIZE = 0x01
export const FALLOC_FL_PUNCH_HOLE = 0x02
export const FALLOC_FL_COLLAPSE_RANGE = 0x08
export const FALLOC_FL_ZERO_RANGE = 0x10
export const FALLOC_FL_INSERT_RANGE = 0x20
/**
 * The inode-flag ioctls (lsattr, chattr, xfs_io): the kernel's fileattr calls send the
 * 64-bit numbers with a 4-byte argument (flags) or a 28-byte struct fsxattr.
 */
export const FS_IOC_GETFLAGS = 0x80086601
export const FS_IOC_SETFLAGS = 0x40086602
export const FS_IOC32_GETFLAGS = 0x80046601
export const FS_IOC32_SETFLAGS = 0x40046602
export const FS_IOC_FSGETXATTR = 0x801c581f
export const FS_IOC_FSSETXATTR = 0x401c5820
/** lseek */
export const SEEK_DATA = 3
export const SEEK_HOLE = 4
