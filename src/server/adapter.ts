// The FUSE adapter: one mount's FuseOps (src/fuse) over the library's Volume and Namespace.
// A mount shows one fileset (or a directory of one), or the whole image: a synthetic root
// directory whose entries are the filesets, each fileset's root directory below it.
//
// Node ids. A Prism inode can be shared by several filesets, and a fileset that writes a
// shared inode gets a private copy with a new number (Namespace.own). So a node id names
// (fileset, inode), not an inode: nodes are counted up from 2 (1 is the mount's root) and
// never reused; the server repoints (fileset, old) to (fileset, new) when a copy is made
// (repoint), so an open file keeps working after its first write makes it private. st_ino is
// the Prism inode number in a one-fileset mount, filesetId * 2^32 + inode in a whole-image
// mount, fixed for the life of the node.
//
// Each node remembers the name and parent it was last looked up through: that is its path,
// which the guards of clones still expanding (src/fs/expand.ts) and copy-on-write need. A
// path made stale by a change the mount did not see (a prism command) is found again by a
// search of the fileset, or, for a file no longer named, handled as an unlinked file.
//
// Permissions are the kernel's (default_permissions): nothing here checks modes or owners.
// What a local filesystem does on create is done here: the caller's uid, the group of a
// setgid directory (and setgid on new directories in it), the umask or the parent's default
// ACL (FUSE_CAP_POSIX_ACL leaves both to us), the setgid bit dropped from a file made in a
// group the caller is not in.
//
// It must never: touch the mount it serves; keep an Inode object across requests (a failed
// command's abort() empties the volume's inode cache, so nodes hold numbers); commit (the
// server decides when, src/server/image.ts); or free an inode the kernel still holds (an
// unlinked file stays readable and writable until its last close and forget: the orphan list
// keeps it, and a crash meanwhile frees it at the next open).
import {constants} from 'node:os'
import {
  type Attr, type AttrReply, type CreateReply, type DirEntry, type DirEntryPlus, type Entry, FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, FS_IOC32_GETFLAGS, FS_IOC32_SETFLAGS, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR,
  FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, type FuseContext, FuseError, type FuseOps, type IoctlReply, LOCK_EX, LOCK_NB, LOCK_UN, type OpenReply, RENAME_EXCHANGE,
  RENAME_NOREPLACE, RENAME_WHITEOUT, SEEK_DATA, SEEK_HOLE, type SetAttr, type StatFs, type Timespec, XATTR_CREATE, XATTR_REPLACE,
} from '../fuse/index.js'
import {BLOCK_SIZE, DT_DIR, IF_INLINE, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, dtOfMode, isSpecial} from '../format/constants.js'
import {decodeRdev} from '../format/inode.js'
import {ACL_ACCESS, ACL_DEFAULT} from '../format/xattr.js'
import {filesetNameProblem} from '../format/fileset.js'
import {PrismError} from '../errors.js'
import {dirCount, dirList, dirListByInode, dirLookup, dirAdd, dirRemove, dirUpdate} from '../fs/dir.js'
import {loadExtents, readData, unmapRange, writeData, writeZeros} from '../fs/extents.js'
import {filesetById, findFileset, listFilesets, type Fileset} from '../fs/filesets.js'
import {createEmptyFileset, renameFileset} from '../fs/image.js'
import {type Inode, atimeDue, now, touch} from '../fs/inode.js'
import {Namespace, type Resolved, SYMLINK_MAX, reapOrphans, symlinkRoom} from '../fs/namespace.js'
import {chmodAcl, getXattr, listXattrs, removeXattr, setXattr} from '../fs/xattr.js'
import {isUnexpanded} from '../fs/expand.js'
import type {Volume} from '../fs/volume.js'
import {inherit} from './acl.js'
import {F_RDLCK, F_UNLCK, F_WRLCK, type LockKind, type LockRequest, type LockTable} from './locks.js'

/** Numbers the mounts of this process, to tell their lock owners apart (LockTable). */
let nextMountId = 1

const E = constants.errno
const O_TRUNC = 0o1000
const O_ACCMODE = 0o3
const O_WRONLY = 0o1
const O_APPEND = 0o2000
const O_EXCL = 0o200
const S_ISUID = 0o4000
const S_ISGID = 0o2000
const S_IXGRP = 0o010
const ROOT_ID = 1
const NAME_MAX = 255
const DOT = Buffer.from('.')
const DOTDOT = Buffer.from('..')
const TRUSTED = Buffer.from('trusted.')
/** A whiteout (RENAME_WHITEOUT; overlayfs's WHITEOUT_MODE and WHITEOUT_DEV): a character device 0:0, mode 0. */
const S_IFCHR = 0o020000
const WHITEOUT_MODE = 0
const WHITEOUT_DEV = {major: 0, minor: 0}
/** copy_file_range: the most one call shares (whole blocks), and the most it copies byte by byte. */
const COPY_SHARE_MAX = 64 * 1024 * 1024
const COPY_BYTES_MAX = 1024 * 1024
/** The name an O_TMPFILE file's node has until a link names it: none a directory can hold. */
const UNNAMED = Buffer.from('/')

const err = (code: string): FuseError => new FuseError(code)

/** The requests that change a fileset (PrismFs.frozenFor). */
const CHANGING = new Set(['setattr', 'mknod', 'mkdir', 'unlink', 'rmdir', 'symlink', 'rename', 'link', 'open', 'write', 'setxattr', 'removexattr', 'create', 'tmpfile', 'fallocate', 'copyFileRange'])

/** What the adapter needs from the server that owns the image. */
export interface AdapterHost {
  readonly vol: Volume
  /**
   * After each request that may have changed the image: commits a large transaction, and tells
   * the other mounts; the promise (if any) settles once their kernels have dropped what changed.
   * `answerWaits` false: the request is answered without waiting for that promise.
   */
  changed(from: PrismFs, answerWaits?: boolean): void | Promise<void>
  /** fsync, fdatasync, fsyncdir: commits now */
  sync(): void
  /** while set, another process has the image: requests wait for the promise (then run) */
  gate(): Promise<void> | null
  /**
   * while set, fileset `fs` is frozen (a clone of it is being made in slices): the requests
   * that would change it wait for the promise (then run); reads go on
   */
  frozen(fs: number): Promise<void> | null
  /** the kernel took (+1) or dropped (-1) its hold on inode `ino` through some mount */
  hold(ino: number, delta: number): void
  /** the image's file locks, shared by all its mounts (locks.ts) */
  readonly locks: LockTable
}

export interface AdapterOptions {
  /** one fileset (and a directory in it), or null for the whole image */
  top: {fileset: string, path: string} | null
  readOnly: boolean
  /** seconds the kernel may keep attributes and entries (changes made elsewhere are invalidated) */
  attrTimeout: number
  entryTimeout: number
  /** owner of the whole-image mount's root (the image file's) */
  rootOwner: {uid: number, gid: number}
}

export interface Node {
  readonly id: number
  /** fileset id; 0 for the whole-image mount's synthetic root */
  fs: number
  ino: number
  /** the directory it was last looked up through (null for the mount's root) */
  parent: Node | null
  name: Buffer
  /** the path of this node from its fileset's root, for a node at the top of a fileset view */
  topNames: Buffer[] | null
  readonly stIno: number
  /** the inode's generation when the node was made (a freed and reused number is another file) */
  gen: number
  nlookup: number
  opens: number
  /** nodes whose parent this is */
  kids: number
  /** no longer its inode's node: the number went to a new file (PrismFs.known) */
  retired?: boolean
}

interface Handle {
  node: Node
  flags: number
  /** a directory listing, taken at the first readdir from offset 0 */
  list?: Array<{name: Buffer, ino: number, mode: number}>
}

/** The time now to the nanosecond (the kernel's clock), for times a request sets to "now". */
function nowSpec(): Timespec {
  const t = now()
  return {sec: t.s, nsec: t.ns}
}

/** The 32-bit device number the kernel's FUSE attributes carry (new_encode_dev). */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0
}

export function decodeDev(dev: number): {major: number, minor: number} {
  return {major: (dev & 0xfff00) >>> 8, minor: ((dev & 0xff) | ((dev >>> 12) & 0xfff00)) >>> 0}
}

function toFuseError(e: unknown): unknown {
  if (e instanceof PrismError) {
    switch (e.code) {
      case 'EUSAGE': return err('EINVAL')
      case 'ENEEDWRITE': return err('EROFS')
      case 'EHOST': return err('EIO')
      default: return e
    }
  }
  return e
}

export class PrismFs {
  readonly ops: FuseOps
  private readonly nodes = new Map<number, Node>()
  /** `${fs}:${ino}` -> node */
  private readonly byKey = new Map<string, Node>()
  /** inode number -> its nodes (in any fileset) */
  private readonly byIno = new Map<number, Set<Node>>()
  /** fileset names the whole-image root showed when last asked (rootNamesChanged) */
  private filesetNames = new Set<string>()
  private readonly handles = new Map<number, Handle>()
  /** files made by tmpfile without O_EXCL, not yet named: link may give them their first name */
  private readonly linkable = new WeakSet<Node>()
  private nextId = 2
  private nextFh = 1
  /** this mount's number in the image's lock table */
  readonly mountId = nextMountId++
  /** fh -> the POSIX lock owners that set a lock through it (released with it, see release) */
  private readonly fhLockOwners = new Map<number, Set<string>>()
  readonly root: Node
  private posixAcl = false
  /** the kernel leaves the umask to us (FUSE_CAP_DONT_MASK): without a default ACL, we apply it */
  private dontMask = false

  constructor(private readonly host: AdapterHost, readonly options: AdapterOptions) {
    const vol = host.vol
    if (options.top) {
      const f = findFileset(vol, options.top.fileset)
      if (!f) throw new PrismError('ENOENT', `no fileset named '${options.top.fileset}' (see 'prism fileset list')`)
      const ns = new Namespace(vol, f)
      const r = ns.resolveFull(options.top.path, true)
      if (!r.inode.isDir) throw new PrismError('ENOTDIR', `${ns.where(options.top.path)}: not a directory`)
      this.root = this.makeNode(ROOT_ID, f.id, r.inode.ino, null, Buffer.alloc(0), r.names)
    } else {
      this.root = this.makeNode(ROOT_ID, 0, 0, null, Buffer.alloc(0), null)
    }
    this.root.nlookup = 1 // the kernel's own reference to the root, never forgotten
    if (!options.top) this.filesetNames = new Set(listFilesets(host.vol).map((f) => f.name))
    this.ops = this.gated(this.buildOps())
  }

  /** Every request waits while the image is lent to another process (AdapterHost.gate), in order. */
  private gated(ops: FuseOps): FuseOps {
    const out: Record<string, unknown> = {}
    for (const [k, f] of Object.entries(ops) as Array<[string, unknown]>) {
      if (typeof f !== 'function' || k === 'init' || k === 'destroy') {
        out[k] = f
        continue
      }
      const fn = f as (...a: unknown[]) => unknown
      const run = (...a: unknown[]): unknown => {
        const g = this.host.gate() ?? this.frozenFor(k, a)
        if (!g) return fn(...a)
        const later = g.then(() => run(...a)) // (asks again: another gate may have come meanwhile)
        if (k === 'forget') later.catch(() => {}) // no answer to give
        return later
      }
      out[k] = run
    }
    return out as FuseOps
  }

  /**
   * What request `op` (arguments `a`, the context first) must wait for, if it would change a
   * frozen fileset (AdapterHost.frozen): the requests that change names, data, attributes or
   * extended attributes (an open only with O_TRUNC), by the fileset of the nodes they name.
   */
  private frozenFor(op: string, a: unknown[]): Promise<void> | null {
    if (!CHANGING.has(op) || (op === 'open' && !((a[2] as number) & O_TRUNC))) return null
    const ids = op === 'symlink' ? [a[2]] : op === 'rename' ? [a[1], a[3]] : op === 'link' ? [a[1], a[2]] : op === 'copyFileRange' ? [a[4]] : [a[1]]
    for (const id of ids) {
      const fs = this.nodes.get(id as number)?.fs
      const p = fs ? this.host.frozen(fs) : null
      if (p) return p
    }
    return null
  }

  private get vol(): Volume {
    return this.host.vol
  }

  private get whole(): boolean {
    return this.options.top === null
  }

  // ---------------------------------------------------------------- nodes

  private makeNode(id: number, fs: number, ino: number, parent: Node | null, name: Buffer, topNames: Buffer[] | null): Node {
    const stIno = fs === 0 ? 1 : this.whole ? fs * 2 ** 32 + ino : ino
    const gen = fs === 0 ? 0 : this.vol.iget(ino).r.generation
    const n: Node = {id, fs, ino, parent, name: Buffer.from(name), topNames, stIno, gen, nlookup: 0, opens: 0, kids: 0}
    this.nodes.set(id, n)
    if (fs !== 0) {
      this.byKey.set(`${fs}:${ino}`, n)
      this.indexIno(n, ino)
    }
    if (parent) parent.kids++
    return n
  }

  /**
   * The node this mount has for inode `ino` of fileset `fs`, if it is still that file. A node
   * the kernel has let go of can outlive its inode while another node hangs under it (a hard
   * link last looked up through it); once the image gives the number to a new file (a new
   * generation), the old node is retired: it keeps its id, so that whatever the kernel still
   * asks of it fails with ESTALE, but it no longer stands for the number, nor holds it.
   */
  /** Whether inode `ino` of fileset `fs` is open through this mount (or still known to the kernel as open). */
  isOpen(fs: number, ino: number): boolean {
    return (this.known(fs, ino)?.opens ?? 0) > 0
  }

  private known(fs: number, ino: number): Node | undefined {
    const n = this.byKey.get(`${fs}:${ino}`)
    if (!n || n === this.root) return n
    if (this.vol.tryIget(ino)?.r.generation === n.gen) return n
    this.retire(n)
    return undefined
  }

  private retire(n: Node): void {
    if (this.byKey.get(`${n.fs}:${n.ino}`) === n) this.byKey.delete(`${n.fs}:${n.ino}`)
    this.unindexIno(n, n.ino)
    if (this.isHeld(n) && !n.retired && n.fs !== 0) this.host.hold(n.ino, -1)
    n.retired = true
  }

  /** The node of `ino` in fileset `fs` reached as `name` in `parent`; one lookup more. */
  private nodeFor(fs: number, ino: number, parent: Node, name: Buffer, top: boolean): Node {
    let n = this.known(fs, ino)
    if (!n) {
      n = this.makeNode(this.nextId++, fs, ino, parent, name, top ? [] : null)
    } else if (n !== this.root && n.parent !== parent) {
      // Looked up through another name (a hard link, or after a rename we did not see).
      n.parent!.kids--
      this.dropIfUnused(n.parent!)
      n.parent = parent
      n.name = Buffer.from(name)
      parent.kids++
    } else if (!n.name.equals(name)) {
      n.name = Buffer.from(name)
    }
    return n
  }

  private node(id: number): Node {
    const n = this.nodes.get(id)
    if (!n) throw err('ESTALE')
    return n
  }

  /** The inode of a node; ESTALE once it is gone (freed by a command, or its number reused). */
  private inodeOf(n: Node): Inode {
    const i = this.vol.tryIget(n.ino)
    if (!i || i.r.generation !== n.gen) throw err('ESTALE')
    return i
  }

  /** Kernel holds: a node with lookups or open handles holds its inode (orphans wait for it). */
  private isHeld(n: Node): boolean {
    return n.nlookup > 0 || n.opens > 0
  }

  private addLookup(n: Node): void {
    if (!this.isHeld(n) && n.fs !== 0 && !n.retired) this.host.hold(n.ino, 1)
    n.nlookup++
  }

  private addOpen(n: Node): void {
    if (!this.isHeld(n) && n.fs !== 0 && !n.retired) this.host.hold(n.ino, 1)
    n.opens++
  }

  private dropIfUnused(n: Node): void {
    if (n === this.root || n.nlookup > 0 || n.opens > 0 || n.kids > 0) return
    this.nodes.delete(n.id)
    if (this.byKey.get(`${n.fs}:${n.ino}`) === n) this.byKey.delete(`${n.fs}:${n.ino}`)
    this.unindexIno(n, n.ino)
    if (n.parent) {
      n.parent.kids--
      this.dropIfUnused(n.parent)
    }
  }

  private unhold(n: Node, lookups: number, opens: number): void {
    const was = this.isHeld(n)
    n.nlookup = Math.max(0, n.nlookup - lookups)
    n.opens = Math.max(0, n.opens - opens)
    if (was && !this.isHeld(n) && n.fs !== 0 && !n.retired) this.host.hold(n.ino, -1)
    this.dropIfUnused(n)
  }

  /** Fileset `fs` made private copy `to` of shared inode `from`: its node follows. */
  repoint(fs: number, from: number, to: number): void {
    const n = this.known(fs, from)
    if (!n) return
    this.byKey.delete(`${fs}:${from}`)
    const other = this.known(fs, to)
    this.unindexIno(n, from)
    this.indexIno(n, to)
    n.ino = to
    n.gen = this.vol.iget(to).r.generation
    if (!other) this.byKey.set(`${fs}:${to}`, n)
    if (this.isHeld(n)) {
      this.host.hold(to, 1)
      this.host.hold(from, -1)
    }
  }

  private indexIno(n: Node, ino: number): void {
    let set = this.byIno.get(ino)
    if (!set) this.byIno.set(ino, set = new Set())
    set.add(n)
  }

  private unindexIno(n: Node, ino: number): void {
    const set = this.byIno.get(ino)
    if (!set) return
    set.delete(n)
    if (set.size === 0) this.byIno.delete(ino)
  }

  /** The nodes this mount has for inode `ino` (in any fileset), for cache invalidation. */
  nodesOfIno(ino: number): Iterable<Node> {
    return this.byIno.get(ino) ?? []
  }

  /** Fileset names that appeared or went since the last call (the whole-image root's entries). */
  rootNamesChanged(): Buffer[] {
    const now = new Set(listFilesets(this.vol).map((f) => f.name))
    const out: Buffer[] = []
    for (const x of now) if (!this.filesetNames.has(x)) out.push(Buffer.from(x))
    for (const x of this.filesetNames) if (!now.has(x)) out.push(Buffer.from(x))
    this.filesetNames = now
    return out
  }

  /** Every node, for the server's invalidation index. */
  allNodes(): IterableIterator<Node> {
    return this.nodes.values()
  }

  // ---------------------------------------------------------------- filesets and paths

  private fileset(id: number): Fileset {
    const f = filesetById(this.vol, id)
    if (!f) throw err('ESTALE')
    return f
  }

  private ns(fs: number): Namespace {
    return new Namespace(this.vol, this.fileset(fs))
  }

  /** The names of node `n` from its fileset's root. */
  private namesOf(n: Node): Buffer[] {
    const out: Buffer[] = []
    let x: Node | null = n
    while (x && x.topNames === null) {
      out.push(x.name)
      x = x.parent
    }
    if (!x) throw err('ESTALE')
    return [...x.topNames!, ...out.reverse()]
  }

  /**
   * `n` resolved by its path, for guards and copy-on-write; a path made stale by a change this
   * mount did not see is searched for; null when the inode has no name in its fileset.
   */
  private resolvedOf(n: Node): Resolved | null {
    const ns = this.ns(n.fs)
    try {
      const r = ns.resolveNames(this.namesOf(n))
      if (r.inode.ino === n.ino) return r
    } catch (e) {
      if (!(e instanceof PrismError) || (e.code !== 'ENOENT' && e.code !== 'ENOTDIR')) throw e
    }
    const names = this.search(ns, n.ino)
    return names ? ns.resolveNames(names) : null
  }

  /** A name of `ino` in the expanded part of a fileset, by a walk of the whole tree (rare). */
  private search(ns: Namespace, ino: number): Buffer[] | null {
    const root = ns.root()
    if (root.ino === ino) return []
    const stack: Array<{dir: Inode, names: Buffer[]}> = [{dir: root, names: []}]
    while (stack.length) {
      const {dir, names} = stack.pop()!
      if (isUnexpanded(dir)) continue
      for (const e of dirList(this.vol, dir)) {
        if (e.ino === ino) return [...names, e.name]
        if (e.type === DT_DIR) stack.push({dir: this.vol.iget(e.ino), names: [...names, e.name]})
      }
    }
    return null
  }

  /** The directory of node `n`, expanded, to read. */
  private dirOf(n: Node): Inode {
    const d = this.inodeOf(n)
    if (!d.isDir) throw err('ENOTDIR')
    if (isUnexpanded(d)) {
      const r = this.resolvedOf(n)
      if (!r) throw err('ESTALE')
      return r.inode
    }
    return d
  }

  /** The directory of node `n`, guarded, to change its entries (clones still expanding copy first). */
  private dirForChange(n: Node): {dir: Inode, ns: Namespace, r: () => Resolved} {
    if (this.options.readOnly) throw err('EROFS')
    const f = this.fileset(n.fs)
    const ns = new Namespace(this.vol, f)
    let cached: Resolved | null = null
    const r = (): Resolved => {
      if (!cached) {
        cached = this.resolvedOf(n)
        if (!cached) throw err('ENOENT') // a directory removed meanwhile
      }
      return cached
    }
    let dir = this.dirOf(n)
    if (f.clonestart !== 0) {
      ns.guard(r())
      dir = r().inode
    }
    if (dir.r.nlink === 0) throw err('ENOENT') // removed: nothing can be made in it
    return {dir, ns, r}
  }

  /** The inode of node `n`, ready to be changed by its fileset: guarded, and copied if shared. */
  private owned(n: Node): Inode {
    if (this.options.readOnly) throw err('EROFS')
    const vol = this.vol
    const inode = this.inodeOf(n)
    const f = this.fileset(n.fs)
    if (inode.r.share <= 1 && (f.clonestart === 0 || inode.r.nlink === 0)) return inode
    const r = this.resolvedOf(n)
    if (r) return new Namespace(vol, f).own(r) // own() tells the server of a copy: n follows
    if (inode.r.share <= 1) return inode
    // Shared, and no longer named in this fileset (its name went while it was open here):
    // this fileset's open file gets a private, unnamed copy (n follows it).
    return new Namespace(vol, f).keepUnnamedCopy(inode)
  }

  // ---------------------------------------------------------------- attributes

  private attrOf(n: Node, inode?: Inode): Attr {
    if (n.fs === 0) return this.rootAttr()
    const i = inode ?? this.inodeOf(n)
    const r = i.r
    let rdev = 0
    if (i.isSpecial) {
      const d = decodeRdev(r.area)
      rdev = encodeDev(d.major, d.minor)
    }
    const size = i.isDir ? Math.max(1, r.blocks) * BLOCK_SIZE : r.size
    return {
      ino: n.stIno, mode: r.mode, nlink: r.nlink, uid: r.uid, gid: r.gid, rdev, size,
      blocks: i.isDir ? Math.max(1, r.blocks) * 8 : r.blocks * 8, blksize: 65536,
      atime: {sec: r.atimeS, nsec: r.atimeNs}, mtime: {sec: r.mtimeS, nsec: r.mtimeNs}, ctime: {sec: r.ctimeS, nsec: r.ctimeNs},
    }
  }

  private rootAttr(): Attr {
    const sb = this.vol.sb
    const t = {sec: Math.floor(sb.lastWrite / 1000), nsec: (sb.lastWrite % 1000) * 1e6}
    return {
      ino: 1, mode: S_IFDIR | 0o755, nlink: 2 + listFilesets(this.vol).length, uid: this.options.rootOwner.uid, gid: this.options.rootOwner.gid,
      rdev: 0, size: BLOCK_SIZE, blocks: 8, blksize: 65536, atime: t, mtime: t, ctime: t,
    }
  }

  private entryOf(n: Node, inode?: Inode): Entry & {attr: Attr} {
    this.addLookup(n)
    const i = n.fs === 0 ? undefined : inode ?? this.inodeOf(n)
    // no attribute at all, so no security.capability: the binding answers the kernel's
    // question before each write by itself (a setxattr through any mount tells it otherwise)
    return {ino: n.id, attr: this.attrOf(n, i), attrTimeout: this.options.attrTimeout, entryTimeout: this.options.entryTimeout,
      noCapability: i !== undefined && i.r.xattrIno === 0}
  }

  // ---------------------------------------------------------------- creating

  /**
   * Makes a new inode named `name` in directory node `p`: owner from the caller, group and
   * setgid from a setgid parent, mode and ACLs from the umask or the parent's default ACL.
   * With `name` null, a regular file named by no directory (O_TMPFILE), made as if in `p`.
   */
  private create(ctx: FuseContext, p: Node, name: Buffer | null, mode: number, opts: {rdev?: {major: number, minor: number}, init?: (inode: Inode) => void} = {}): Node {
    if (p.fs === 0) throw err('EPERM')
    if (name) this.checkName(name)
    const {dir, ns} = this.dirForChange(p)
    if (name && dirLookup(this.vol, dir, name)) throw err('EEXIST')
    const type = mode & S_IFMT
    let gid = ctx.gid
    if (dir.r.mode & S_ISGID) {
      gid = dir.r.gid
      if (type === S_IFDIR) mode |= S_ISGID
    }
    let access: Buffer | null = null
    let dflt: Buffer | null = null
    if (type !== S_IFLNK) {
      if (this.posixAcl) {
        const inh = inherit(mode, ctx.umask, getXattr(this.vol, dir, Buffer.from(ACL_DEFAULT)))
        mode = inh.mode
        access = inh.access
        dflt = inh.default
      } else if (this.dontMask) {
        mode &= ~(ctx.umask & 0o777)
      }
      // As inode_init_owner: a file made in a group its maker is not in loses setgid.
      if (type !== S_IFDIR && (mode & S_ISGID) && ctx.uid !== 0 && gid !== ctx.gid && !ctx.groups().includes(gid)) mode &= ~S_ISGID
    }
    const inode = name === null
      ? ns.createUnnamed(dir, mode, {uid: ctx.uid, gid})
      : isSpecial(mode)
        ? ns.createSpecialIn(dir, name, mode, opts.rdev ?? {major: 0, minor: 0}, {uid: ctx.uid, gid})
        : ns.createIn(dir, name, mode, {uid: ctx.uid, gid})
    opts.init?.(inode)
    if (access) setXattr(this.vol, inode, Buffer.from(ACL_ACCESS), access)
    if (dflt) setXattr(this.vol, inode, Buffer.from(ACL_DEFAULT), dflt)
    return this.nodeFor(p.fs, inode.ino, p, name ?? UNNAMED, false)
  }

  /**
   * What the kernel's setattr_should_drop_sgid decides and its FUSE setattr leaves out (that
   * clears setgid only with group execute): a write, truncate or fallocate by a caller that is
   * neither root nor in the file's group clears the setgid bit of a file without group execute
   * too, as on ext4. Setuid, and setgid with group execute, the kernel clears itself first.
   */
  private dropSgid(ctx: FuseContext, inode: Inode): void {
    const r = inode.r
    if (!inode.isReg || ctx.uid === 0 || !(r.mode & S_ISGID) || (r.mode & S_IXGRP) || this.inGroup(ctx, r.gid)) return
    this.setMode(inode, r.mode & ~S_ISGID)
  }

  /**
   * The kernel's whole rule (setattr_should_drop_suidgid), for open with O_TRUNC, where the
   * kernel sends no setattr: unless the caller is root, setuid goes, and setgid goes when the
   * group may execute or the caller is not in the file's group.
   */
  private killPriv(ctx: FuseContext, inode: Inode): void {
    const r = inode.r
    if (!inode.isReg || ctx.uid === 0) return
    let mode = r.mode & ~S_ISUID
    if ((mode & S_ISGID) && ((mode & S_IXGRP) || !this.inGroup(ctx, r.gid))) mode &= ~S_ISGID
    if (mode !== r.mode) this.setMode(inode, mode)
  }

  private inGroup(ctx: FuseContext, gid: number): boolean {
    return ctx.gid === gid || ctx.groups().includes(gid)
  }

  private setMode(inode: Inode, mode: number): void {
    const before = inode.r.mode
    inode.r.mode = mode
    touch(inode.r, {c: true})
    this.vol.idirty(inode)
    if ((before ^ mode) & 0o777) chmodAcl(this.vol, inode)
  }

  /**
   * A read or a listing from the start: atime moves as on a relatime mount (atimeDue). Not on a
   * read-only mount, and not for an inode shared with other filesets (a read must not copy it).
   */
  private accessed(n: Node): void {
    if (this.options.readOnly || n.fs === 0) return
    const inode = this.inodeOf(n)
    const t = nowSpec()
    if (!this.atimeWouldMove(n, inode, t)) return
    inode.r.atimeS = t.sec
    inode.r.atimeNs = t.nsec
    this.vol.idirty(inode, true)
    void this.host.changed(this, false)
  }

  /** True when a read of `inode` (node `n`) now would move its atime (relatime; never on a read-only mount, nor of a file shared with a clone: a read must not copy it). */
  private atimeWouldMove(n: Node, inode: Inode, t = nowSpec()): boolean {
    if (this.options.readOnly || n.fs === 0 || inode.r.share > 1) return false
    return atimeDue(inode.r, {s: t.sec, ns: t.nsec})
  }

  private checkName(name: Buffer): void {
    if (name.length > NAME_MAX) throw err('ENAMETOOLONG')
    if (name.length === 0 || name.includes(0x2f) || name.includes(0) || name.equals(DOT) || name.equals(DOTDOT)) throw err('EINVAL')
  }

  // ---------------------------------------------------------------- removing

  /**
   * Removes entry `name` of directory node `p` (a directory only with `isDir`, which must be
   * empty). What loses its last name goes on the orphan list, freed at once unless the kernel
   * still holds it (then when it lets go: AdapterHost.hold).
   */
  private remove(p: Node, name: Buffer, isDir: boolean): void {
    if (p.fs === 0) throw err(isDir ? 'EPERM' : 'EISDIR')
    const {dir, ns, r} = this.dirForChange(p)
    const e = dirLookup(this.vol, dir, name)
    if (!e) throw err('ENOENT')
    let victim = this.vol.iget(e.ino)
    if (isDir) {
      if (!victim.isDir) throw err('ENOTDIR')
      victim = ns.expanded(victim, [...r().names, name])
      if (dirCount(victim) > 0) throw err('ENOTEMPTY')
      ns.beforeDirGoes([...r().names, name], dir, false)
      dir.r.nlink--
    } else if (victim.isDir) {
      throw err('EISDIR')
    } else if (victim.r.share > 1 && (this.known(p.fs, victim.ino)?.opens ?? 0) > 0) {
      // Shared with other filesets and still open or known here: this fileset's copy is what
      // its open files must keep (the other filesets keep theirs).
      victim = ns.own({...r(), inode: victim, chain: [...r().chain, r().inode], name, names: [...r().names, name], stamps: [...r().stamps, e.lastclone]})
    }
    dirRemove(this.vol, dir, name)
    touch(dir.r, {m: true, c: true})
    this.vol.idirty(dir)
    ns.dropName(victim)
    reapOrphans(this.vol)
  }

  // ---------------------------------------------------------------- the operations

  private buildOps(): FuseOps {
    const wrap = <A extends unknown[], T>(f: (...a: A) => T) => (...a: A): T => {
      try {
        return f(...a)
      } catch (e) {
        throw toFuseError(e)
      }
    }
    // After a change, the other mounts of the image are told (their kernels drop what they
    // cached of it) before the request is answered, so that no process sees stale data through
    // another mount once its call returned. Notifications go to other mounts only (never about
    // what this request holds), and the thread stays free meanwhile. A request of another mount
    // may hold what a notification needs there while its own answer waits on this mount: the
    // host then does not wait on that mount (ServedImage.notify), which would deadlock both.
    //
    // A request runs inside a savepoint of the running transaction (Volume.savepoint), which it
    // shares with every other request until the next commit: one that fails part way (out of
    // space or inodes, a limit met late) is rolled back, so that nothing of it is committed.
    // Out of space while blocks freed in the transaction wait for its commit to be reused, it
    // is run again once, after that commit: as if it had come after it.
    const once = <A extends unknown[], T>(f: (...a: A) => T, a: A): {out: T} | {error: unknown, undone: boolean} => {
      const sp = this.vol.savepoint()
      try {
        const out = f(...a)
        sp?.release()
        return {out}
      } catch (e) {
        return {error: e, undone: sp?.rollback() ?? false}
      }
    }
    const mutating = <A extends unknown[], T>(f: (...a: A) => T) => (...a: A): T | Promise<T> => {
      let r = once(f, a)
      if ('error' in r && r.undone && (r.error as {code?: string}).code === 'ENOSPC' && this.vol.freedInTxn > 0) {
        try {
          this.host.sync()
          r = once(f, a)
        } catch (e) {
          r = {error: e, undone: false}
        }
      }
      if ('error' in r) {
        void this.host.changed(this, false)
        throw toFuseError(r.error)
      }
      const out = r.out
      const told = this.host.changed(this)
      return told ? told.then(() => out) : out
    }
    return {
      init: (conn) => {
        this.posixAcl = conn.posixAcl
        this.dontMask = conn.dontMask
      },
      lookup: mutating((_ctx, parent, name) => this.lookup(parent, name)),
      forget: (id, nlookup) => {
        const n = this.nodes.get(id)
        if (n) this.unhold(n, nlookup, 0)
      },
      getattr: wrap((_ctx, id): AttrReply => ({attr: this.attrOf(this.node(id)), timeout: this.options.attrTimeout})),
      setattr: mutating((ctx, id, s) => this.setattr(ctx, this.node(id), s)),
      readlink: wrap((_ctx, id) => {
        const i = this.inodeOf(this.node(id))
        if (!i.isLnk) throw err('EINVAL')
        return readData(this.vol, i, 0, i.r.size)
      }),
      mknod: mutating((ctx, parent, name, mode, rdev) => {
        const type = mode & S_IFMT
        if (type === S_IFREG) return this.entryOf(this.create(ctx, this.node(parent), name, mode))
        if (!isSpecial(mode)) throw err('EINVAL')
        return this.entryOf(this.create(ctx, this.node(parent), name, mode, {rdev: decodeDev(rdev)}))
      }),
      mkdir: mutating((ctx, parent, name, mode) => {
        const p = this.node(parent)
        if (p.fs === 0) return this.mkFileset(name)
        return this.entryOf(this.create(ctx, p, name, S_IFDIR | (mode & 0o7777)))
      }),
      unlink: mutating((_ctx, parent, name) => this.remove(this.node(parent), name, false)),
      rmdir: mutating((_ctx, parent, name) => this.remove(this.node(parent), name, true)),
      symlink: mutating((ctx, target, parent, name) => {
        if (target.length === 0) throw err('ENOENT')
        if (target.length > SYMLINK_MAX) throw err('ENAMETOOLONG')
        symlinkRoom(this.vol, target)
        const n = this.create(ctx, this.node(parent), name, S_IFLNK | 0o777, {init: (inode) => writeData(this.vol, inode, 0, target)})
        return this.entryOf(n)
      }),
      rename: mutating((ctx, parent, name, newParent, newName, flags) => this.rename(ctx, this.node(parent), name, this.node(newParent), newName, flags)),
      link: mutating((_ctx, id, newParent, newName) => this.link(this.node(id), this.node(newParent), newName)),
      open: mutating((ctx, id, flags): OpenReply => {
        const n = this.node(id)
        if (n.fs === 0) throw err('EISDIR')
        let inode = this.inodeOf(n)
        if (inode.isDir) throw err('EISDIR')
        // O_TRUNC truncates whatever the access mode (the kernel asked for write permission, as
        // for O_RDONLY|O_TRUNC on ext4). With atomic O_TRUNC the kernel sends no setattr, so the
        // setuid and setgid bits are cleared here, as its truncate would.
        if ((flags & O_TRUNC) && inode.isReg) {
          inode = this.owned(n)
          this.killPriv(ctx, inode)
          this.ns(n.fs).truncateInode(inode, 0) // mtime and ctime change even when it was empty (POSIX)
        }
        const fh = this.nextFh++
        this.handles.set(fh, {node: n, flags})
        this.addOpen(n)
        // Flush only releases POSIX locks here (a close releases its process's locks). It is
        // asked for on every open file, since a lock may be taken after the open (then a close
        // of any descriptor of the file, by the lock's process, must release it); the binding
        // answers it alone while no POSIX lock was ever asked for through the mount.
        //
        // What the kernel cached of the file stays cached across opens (a program run again
        // reads its binary from memory): every change made otherwise than through this mount's
        // kernel is sent to it (ImageHost.notify, invalidateAll). Except when a read would move
        // atime (relatime): FUSE leaves atime to us, so the next read must reach us, and the
        // kernel drops what it cached of the file.
        return {fh, keepCache: (flags & O_ACCMODE) === O_WRONLY || !this.atimeWouldMove(n, inode)}
      }),
      read: wrap((_ctx, id, fh, off, size) => {
        const n = this.handleNode(id, fh)
        const i = this.inodeOf(n)
        if (!i.isReg) throw err('EINVAL')
        const data = readData(this.vol, i, off, size)
        this.accessed(n)
        return data
      }),
      write: mutating((ctx, id, fh, off, data, info) => {
        const h = this.handles.get(fh)
        const n = this.handleNode(id, fh)
        const inode = this.owned(n)
        if (!inode.isReg) throw err('EINVAL')
        // O_APPEND: at the end of the file as it is here (another process or mount may have
        // grown it since this kernel last looked); the kernel's copy is then dropped.
        if (((h?.flags ?? info.flags) & O_APPEND) && off !== inode.r.size) off = inode.r.size
        if (off + data.length > 2 ** 43) throw err('EFBIG')
        this.reserve(Math.ceil(data.length / BLOCK_SIZE) + 2)
        this.dropSgid(ctx, inode)
        this.ns(n.fs).writeInode(inode, off, data, true)
        return data.length
      }),
      flush: (_ctx, id, fh, lockOwner) => {
        const n = this.handles.get(fh)?.node ?? this.nodes.get(id)
        if (n) this.host.locks.releasePosix(this.lockFile(n), this.lockOwner(lockOwner))
      },
      release: mutating((_ctx, id, fh, _flags, flockOwner) => {
        const h = this.handles.get(fh)
        this.handles.delete(fh)
        const n = h?.node ?? this.nodes.get(id)
        this.releaseLocks(n, fh, flockOwner)
        if (n) this.unhold(n, 0, 1)
      }),
      fsync: mutating(() => this.host.sync()),
      opendir: wrap((_ctx, id, flags): OpenReply => {
        const n = this.node(id)
        if (n.fs !== 0 && !this.inodeOf(n).isDir) throw err('ENOTDIR')
        const fh = this.nextFh++
        this.handles.set(fh, {node: n, flags})
        this.addOpen(n)
        return {fh}
      }),
      readdir: mutating((_ctx, id, fh, offset): Iterable<DirEntry> => {
        const list = this.listing(id, fh, offset)
        if (offset === 0) this.accessed(this.handles.get(fh)?.node ?? this.node(id))
        return (function* () {
          for (let i = offset; i < list.length; i++) yield {name: list[i].name, ino: list[i].ino, mode: list[i].mode, offset: i + 1}
        })()
      }),
      readdirplus: mutating((_ctx, id, fh, offset) => this.readdirplus(id, fh, offset)),
      releasedir: wrap((_ctx, id, fh) => {
        const h = this.handles.get(fh)
        this.handles.delete(fh)
        const n = h?.node ?? this.nodes.get(id)
        if (n) this.unhold(n, 0, 1)
      }),
      getlk: wrap((_ctx, id, fh, owner, lock) => {
        const hit = this.host.locks.test(this.lockRequest(this.handleNode(id, fh), 'posix', owner, lock.type, lock.start, lock.end, lock.pid))
        return hit ? {type: hit.type, start: hit.start, end: hit.end === Infinity ? -1 : hit.end - 1, pid: hit.pid} : {...lock, type: F_UNLCK}
      }),
      setlk: (_ctx, id, fh, owner, lock, sleep, signal) => {
        const r = this.lockRequest(this.handleNode(id, fh), 'posix', owner, lock.type, lock.start, lock.end, lock.pid)
        if (lock.type !== F_UNLCK) {
          let set = this.fhLockOwners.get(fh)
          if (!set) this.fhLockOwners.set(fh, set = new Set())
          set.add(r.owner)
        }
        return this.takeLock(r, sleep, signal)
      },
      flock: (ctx, id, fh, owner, op, signal) => {
        const type = op & LOCK_UN ? F_UNLCK : op & LOCK_EX ? F_WRLCK : F_RDLCK
        return this.takeLock(this.lockRequest(this.handleNode(id, fh), 'flock', owner, type, 0, -1, ctx.pid), !(op & LOCK_NB) && type !== F_UNLCK, signal)
      },
      fsyncdir: mutating(() => this.host.sync()),
      statfs: wrap((): StatFs => {
        const sb = this.vol.sb
        return {
          bsize: BLOCK_SIZE, frsize: BLOCK_SIZE, blocks: sb.dataBlocks, bfree: sb.freeBlocks, bavail: sb.freeBlocks,
          files: sb.inodeCount, ffree: sb.freeInodes, favail: sb.freeInodes, fsid: 0, flag: 0, namemax: NAME_MAX,
        }
      }),
      setxattr: mutating((ctx, id, name, value, flags) => {
        const n = this.node(id)
        if (n.fs === 0) throw err('EPERM')
        const inode = this.owned(n)
        setXattr(this.vol, inode, name, value, {create: (flags & XATTR_CREATE) !== 0, replace: (flags & XATTR_REPLACE) !== 0})
        // An access ACL set by someone outside the file's group, without CAP_FSETID, drops
        // setgid, as posix_acl_update_mode (the kernel's FUSE_SETXATTR_ACL_KILL_SGID).
        if ((inode.r.mode & S_ISGID) && ctx.uid !== 0 && name.toString('latin1') === ACL_ACCESS && !this.inGroup(ctx, inode.r.gid)) {
          inode.r.mode &= ~S_ISGID
          this.vol.idirty(inode)
        }
      }),
      getxattr: wrap((_ctx, id, name) => {
        const n = this.node(id)
        if (n.fs === 0) throw err('ENODATA')
        const v = getXattr(this.vol, this.inodeOf(n), name)
        if (!v) throw err('ENODATA')
        return v
      }),
      listxattr: wrap((ctx, id) => {
        const n = this.node(id)
        if (n.fs === 0) return []
        // As ext4: trusted.* names are listed to root only (the kernel refuses everyone else
        // their values, but leaves listing to the filesystem).
        const names = listXattrs(this.vol, this.inodeOf(n)).map((x) => x.name)
        return ctx.uid === 0 ? names : names.filter((x) => !x.subarray(0, TRUSTED.length).equals(TRUSTED))
      }),
      removexattr: mutating((_ctx, id, name) => {
        const n = this.node(id)
        if (n.fs === 0) throw err('ENODATA')
        if (!getXattr(this.vol, this.inodeOf(n), name)) throw err('ENODATA') // (before a shared file is copied)
        removeXattr(this.vol, this.owned(n), name)
      }),
      create: mutating((ctx, parent, name, mode, flags): CreateReply => this.createOpen(ctx, this.node(parent), name, mode, flags)),
      tmpfile: mutating((ctx, parent, mode, flags): CreateReply => this.createOpen(ctx, this.node(parent), null, mode, flags)),
      fallocate: mutating((ctx, id, fh, mode, off, len) => this.fallocate(ctx, this.handleNode(id, fh), mode, off, len)),
      copyFileRange: mutating((ctx, inId, inFh, inOff, outId, outFh, outOff, len, flags) => this.copyFileRange(ctx, this.handleNode(inId, inFh), inOff, this.handleNode(outId, outFh), outOff, len, flags)),
      lseek: wrap((_ctx, id, fh, off, whence) => this.lseek(this.handleNode(id, fh), off, whence)),
      ioctl: wrap((_ctx, id, fh, cmd, _flags, input, outSize) => this.ioctl(this.handleNode(id, fh), cmd, input, outSize)),
    }
  }

  // ---------------------------------------------------------------- locks

  /** The name of node `n`'s file in the image's lock table: the same through every mount. */
  private lockFile(n: Node): string {
    return `${n.fs}:${n.ino}`
  }

  private lockOwner(owner: string): string {
    return `${this.mountId}/${owner}`
  }

  private lockRequest(n: Node, kind: LockKind, owner: string, type: number, start: number, end: number, pid: number): LockRequest {
    return {file: this.lockFile(n), kind, owner: this.lockOwner(owner), mount: this.mountId, type, start, end: end < 0 ? Infinity : end + 1, pid}
  }

  /** Sets a lock now (EAGAIN when in the way), or once granted when `sleep` (EINTR on `signal`). */
  private takeLock(r: LockRequest, sleep: boolean, signal: AbortSignal): void | Promise<void> {
    const locks = this.host.locks
    if (!sleep) {
      const res = locks.set(r)
      if (!res.ok) throw err(res.code)
      return
    }
    if (signal.aborted) throw err('EINTR')
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        if (res.waiter && locks.cancel(res.waiter)) reject(err('EINTR'))
      }
      const res = locks.wait(r, () => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }, (code) => {
        signal.removeEventListener('abort', onAbort)
        reject(err(code))
      })
      if (res.ok) return
      if (!res.waiter) {
        reject(err(res.code))
        return
      }
      signal.addEventListener('abort', onAbort, {once: true})
    })
  }

  /**
   * The last close of open file `fh`: its flock lock goes (FUSE_RELEASE_FLOCK_UNLOCK), and so do
   * the POSIX locks set through it: each of their owners has closed a descriptor of the file
   * (which releases them; the flush saying so may not have come, an open answered noflush).
   */
  private releaseLocks(n: Node | undefined, fh: number, flockOwner: string | undefined): void {
    const owners = this.fhLockOwners.get(fh)
    this.fhLockOwners.delete(fh)
    if (!n) return
    const file = this.lockFile(n)
    if (flockOwner !== undefined) this.host.locks.releaseFlock(file, this.lockOwner(flockOwner))
    for (const o of owners ?? []) this.host.locks.releasePosix(file, o)
  }

  private handleNode(id: number, fh: number): Node {
    const h = this.handles.get(fh)
    if (h) return h.node
    return this.node(id)
  }

  private lookup(parentId: number, name: Buffer): Entry {
    const p = this.node(parentId)
    if (name.length > NAME_MAX) throw err('ENAMETOOLONG')
    if (p.fs === 0) {
      if (name.equals(DOT) || name.equals(DOTDOT)) return this.entryOf(p)
      const f = findFileset(this.vol, name.toString('latin1'))
      if (!f || !Buffer.from(f.name).equals(name)) return {ino: 0, attrTimeout: 0, entryTimeout: 0}
      const root = new Namespace(this.vol, f).root()
      return this.entryOf(this.nodeFor(f.id, root.ino, p, name, true), root)
    }
    if (name.equals(DOT)) return this.entryOf(p)
    if (name.equals(DOTDOT)) return this.entryOf(p.parent ?? p)
    const dir = this.dirOf(p)
    const e = dirLookup(this.vol, dir, name)
    if (!e) return {ino: 0, attrTimeout: 0, entryTimeout: 0}
    let inode = this.vol.iget(e.ino)
    // On-demand expansion (paper Fig. 5): a directory gets its entries before anyone looks in.
    if (inode.isDir && isUnexpanded(inode)) inode = this.ns(p.fs).expanded(inode, [...this.namesOf(p), name])
    return this.entryOf(this.nodeFor(p.fs, inode.ino, p, name, false), inode)
  }

  private listing(id: number, fh: number, offset: number): Array<{name: Buffer, ino: number, mode: number}> {
    const h = this.handles.get(fh)
    const n = h?.node ?? this.node(id)
    if (h && h.list && offset !== 0) return h.list
    const list: Array<{name: Buffer, ino: number, mode: number}> = []
    if (n.fs === 0) {
      list.push({name: DOT, ino: 1, mode: S_IFDIR}, {name: DOTDOT, ino: 1, mode: S_IFDIR})
      for (const f of listFilesets(this.vol).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
        list.push({name: Buffer.from(f.name), ino: f.id * 2 ** 32 + f.rootIno, mode: S_IFDIR})
      }
    } else {
      const dir = this.dirOf(n)
      const parentSt = n.parent ? n.parent.stIno : n.stIno
      list.push({name: DOT, ino: n.stIno, mode: S_IFDIR}, {name: DOTDOT, ino: parentSt, mode: S_IFDIR})
      // (a large directory in inode order, dirListByInode: READDIRPLUS looks each entry up,
      // and in hash order every one would read the inode table at a random place)
      for (const e of dirListByInode(this.vol, dir)) {
        const known = this.byKey.get(`${n.fs}:${e.ino}`)
        const ino = known ? known.stIno : this.whole ? n.fs * 2 ** 32 + e.ino : e.ino
        list.push({name: e.name, ino, mode: e.type === DT_DIR ? S_IFDIR : modeOfDt(e.type)})
      }
    }
    if (h) h.list = list
    return list
  }

  /** Entries from `offset`, each looked up as it is taken: the binding stops when the kernel's buffer is full. */
  private readdirplus(id: number, fh: number, offset: number): Iterable<DirEntryPlus> {
    const list = this.listing(id, fh, offset)
    const n = this.handles.get(fh)?.node ?? this.node(id)
    if (offset === 0) this.accessed(n)
    const dotAttr = this.attrOf(n)
    const self = this
    return (function* () {
      for (let i = offset; i < list.length; i++) {
        const x = list[i]
        if (x.name.equals(DOT) || x.name.equals(DOTDOT)) {
          yield {name: x.name, offset: i + 1, entry: {ino: 0, attr: {...dotAttr, ino: x.ino, mode: x.mode}, attrTimeout: 0, entryTimeout: 0}}
          continue
        }
        let e: Entry
        try {
          e = self.lookup(n.id, x.name)
        } catch (ex) {
          if (ex instanceof PrismError && (ex.code === 'ENOENT' || ex.code === 'ENOTDIR')) continue
          throw toFuseError(ex)
        }
        if (e.ino === 0) continue // gone since the listing was taken
        yield {name: x.name, offset: i + 1, entry: e as Entry & {attr: Attr}}
      }
    })()
  }

  private setattr(ctx: FuseContext, n: Node, s: SetAttr): AttrReply {
    if (n.fs === 0) throw err('EPERM')
    if (s.size !== undefined) {
      // What is refused is refused before a shared file gets its own copy (which needs room).
      const seen = this.inodeOf(n)
      if (seen.isDir) throw err('EISDIR')
      if (!seen.isReg) throw err('EINVAL')
      if (s.size > 2 ** 43) throw err('EFBIG')
    }
    const inode = this.owned(n)
    const r = inode.r
    const t = nowSpec()
    if (s.size !== undefined) {
      if (s.size > r.size) this.reserve(2)
      this.ns(n.fs).truncateInode(inode, s.size)
      if (s.mtime === undefined && !s.mtimeNow) {
        r.mtimeS = t.sec
        r.mtimeNs = t.nsec
      }
    }
    if (s.mode !== undefined) {
      const before = r.mode
      r.mode = (r.mode & S_IFMT) | (s.mode & 0o7777)
      // (the kernel forgets its cached ACL after a chmod: the ACL stored must follow the mode)
      if ((before ^ r.mode) & 0o777) chmodAcl(this.vol, inode)
    }
    if (s.size !== undefined) this.dropSgid(ctx, inode) // after the mode the kernel's own clearing sent
    if (s.uid !== undefined) r.uid = s.uid
    if (s.gid !== undefined) r.gid = s.gid
    if (s.atimeNow) {
      r.atimeS = t.sec
      r.atimeNs = t.nsec
    } else if (s.atime) {
      r.atimeS = s.atime.sec
      r.atimeNs = s.atime.nsec
    }
    if (s.mtimeNow) {
      r.mtimeS = t.sec
      r.mtimeNs = t.nsec
    } else if (s.mtime) {
      r.mtimeS = s.mtime.sec
      r.mtimeNs = s.mtime.nsec
    }
    const c = s.ctime ?? t
    r.ctimeS = c.sec
    r.ctimeNs = c.nsec
    this.vol.idirty(inode)
    return {attr: this.attrOf(n, inode), timeout: this.options.attrTimeout}
  }

  /** create, and tmpfile (`name` null): a new regular file, opened. */
  private createOpen(ctx: FuseContext, p: Node, name: Buffer | null, mode: number, flags: number): CreateReply {
    const n = this.create(ctx, p, name, S_IFREG | (mode & 0o7777))
    if (name === null && !(flags & O_EXCL)) this.linkable.add(n)
    const entry = this.entryOf(n)
    const fh = this.nextFh++
    this.handles.set(fh, {node: n, flags})
    this.addOpen(n)
    return {entry, open: {fh}} // (flush: as open's)
  }

  private link(n: Node, p: Node, name: Buffer): Entry {
    if (p.fs === 0 || n.fs === 0) throw err('EPERM')
    if (n.fs !== p.fs) throw err('EXDEV')
    this.checkName(name)
    const inode0 = this.inodeOf(n)
    if (inode0.isDir) throw err('EPERM')
    // No name left: only a file made by tmpfile without O_EXCL takes one (the kernel asks for
    // no other, but another mount's kernel may still count a name this one has removed).
    if (inode0.r.nlink === 0 && !this.linkable.has(n)) throw err('ENOENT')
    const {dir, ns} = this.dirForChange(p)
    if (dirLookup(this.vol, dir, name)) throw err('EEXIST')
    // A file shared with other filesets has one name in each: this fileset's copy gets the new one.
    const inode = this.owned(n)
    if (inode.r.nlink >= 0xffff_fff0) throw err('EMLINK')
    ns.linkInode(inode, dir, name)
    this.linkable.delete(n)
    return this.entryOf(this.nodeFor(p.fs, inode.ino, p, name, false), inode)
  }

  /**
   * rename(2), and renameat2's flags: RENAME_NOREPLACE, RENAME_EXCHANGE, and RENAME_WHITEOUT
   * (overlayfs needs it of an upper layer), which leaves at the old name, in the same request,
   * a whiteout: a character device 0:0 of mode 0, owned as a new file (by any caller: Linux
   * asks no privilege for whiteouts since 5.8).
   */
  private rename(ctx: FuseContext, p: Node, name: Buffer, q: Node, newName: Buffer, flags: number): void {
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) throw err('EINVAL')
    if ((flags & RENAME_EXCHANGE) && (flags & (RENAME_NOREPLACE | RENAME_WHITEOUT))) throw err('EINVAL')
    if (p.fs === 0 || q.fs === 0) {
      if (p.fs === 0 && q.fs === 0 && flags === 0) return this.renameFileset(name, newName)
      throw err(p.fs === 0 && q.fs === 0 ? 'EINVAL' : 'EXDEV')
    }
    if (p.fs !== q.fs) throw err('EXDEV')
    this.checkName(newName)
    const vol = this.vol
    const src = this.dirForChange(p)
    const dst = p === q ? src : this.dirForChange(q)
    const se = dirLookup(vol, src.dir, name)
    if (!se) throw err('ENOENT')
    const de = dirLookup(vol, dst.dir, newName)
    if (de && (flags & RENAME_NOREPLACE)) throw err('EEXIST')
    if (!de && (flags & RENAME_EXCHANGE)) throw err('ENOENT')
    if (de && de.ino === se.ino) return // two names of one file: nothing to do, as rename(2)
    // (the whiteout's inode, checked for before anything changes)
    if ((flags & RENAME_WHITEOUT) && vol.sb.freeInodes === 0) throw err('ENOSPC')
    const ns = src.ns
    const srcNames = [...src.r().names, name]
    const dstNames = [...dst.r().names, newName]
    let moving = vol.iget(se.ino)
    let target = de ? vol.iget(de.ino) : null
    if (moving.isDir && dstNames.length > srcNames.length && srcNames.every((x, i) => x.equals(dstNames[i]))) throw err('EINVAL')
    if (target && moving.isDir && !(flags & RENAME_EXCHANGE) && target.isDir === false) throw err('ENOTDIR')
    if (target && !moving.isDir && target.isDir && !(flags & RENAME_EXCHANGE)) throw err('EISDIR')
    if (target?.isDir && !(flags & RENAME_EXCHANGE)) {
      target = ns.expanded(target, dstNames)
      if (dirCount(target) > 0) throw err('ENOTEMPTY')
    }
    if (flags & RENAME_EXCHANGE) {
      if (target!.isDir && srcNames.length > dstNames.length && dstNames.every((x, i) => x.equals(srcNames[i]))) throw err('EINVAL')
      if (moving.isDir) ns.beforeDirGoes(srcNames, src.dir, true)
      if (target!.isDir) ns.beforeDirGoes(dstNames, dst.dir, true)
      // (each entry repointed in place: no room needed, nothing half done on a full image)
      dirUpdate(vol, dst.dir, newName, {ino: se.ino, type: se.type, lastclone: se.lastclone})
      dirUpdate(vol, src.dir, name, {ino: de!.ino, type: de!.type, lastclone: de!.lastclone})
      if (src.dir !== dst.dir && moving.isDir !== target!.isDir) {
        if (moving.isDir) { src.dir.r.nlink--; dst.dir.r.nlink++ } else { src.dir.r.nlink++; dst.dir.r.nlink-- }
      }
      const t = nowSpec()
      for (const d of [src.dir, dst.dir, moving, target!]) {
        if (d.r.share <= 1) {
          d.r.ctimeS = t.sec
          d.r.ctimeNs = t.nsec
        }
        vol.idirty(d)
      }
      for (const d of [src.dir, dst.dir]) {
        d.r.mtimeS = t.sec
        d.r.mtimeNs = t.nsec
      }
      this.moved(p.fs, se.ino, q, newName)
      this.moved(p.fs, de!.ino, p, name)
      return
    }
    if (moving.isDir) ns.beforeDirGoes(srcNames, src.dir, true)
    if (target) {
      if (target.isDir) ns.beforeDirGoes(dstNames, dst.dir, false)
      else if (target.r.share > 1 && (this.known(q.fs, target.ino)?.opens ?? 0) > 0) {
        const r = dst.r()
        target = ns.own({inode: target, chain: [...r.chain, r.inode], name: newName, names: dstNames, stamps: [...r.stamps, de!.lastclone]})
      }
    }
    // the source entry may have moved when the destination's guard expanded (same directory)
    const se2 = dirLookup(vol, src.dir, name) ?? se
    // The new name is made before the old one goes, and a target's entry is repointed in
    // place: a directory with no room for the name (a full image) fails the rename before
    // anything changed. (This request is committed with the others even when it fails.)
    if (target) {
      dirUpdate(vol, dst.dir, newName, {ino: se2.ino, type: se2.type, lastclone: se2.lastclone})
      if (target.isDir) dst.dir.r.nlink--
      ns.dropName(target)
    } else {
      dirAdd(vol, dst.dir, se2.ino, se2.type, newName, se2.lastclone)
    }
    dirRemove(vol, src.dir, name)
    if (flags & RENAME_WHITEOUT) {
      // (in the slot the old name left; before the nodes move, so that a failure here leaves
      // them as the request's rollback leaves the image)
      const gid = src.dir.r.mode & S_ISGID ? src.dir.r.gid : ctx.gid
      ns.createSpecialIn(src.dir, name, S_IFCHR | WHITEOUT_MODE, WHITEOUT_DEV, {uid: ctx.uid, gid})
    }
    moving = vol.iget(se2.ino)
    if (moving.isDir && src.dir !== dst.dir) {
      src.dir.r.nlink--
      dst.dir.r.nlink++
    }
    const t = nowSpec()
    for (const d of [src.dir, dst.dir]) {
      d.r.mtimeS = d.r.ctimeS = t.sec
      d.r.mtimeNs = d.r.ctimeNs = t.nsec
      vol.idirty(d)
    }
    this.moved(p.fs, se2.ino, q, newName)
    // The renamed file's ctime changes, as on ext4: a file still shared with other filesets
    // gets this fileset's own copy first (the node follows it), a directory never is shared.
    if (moving.r.share > 1 && !moving.isDir) {
      const r = dst.r()
      moving = ns.own({inode: moving, chain: [...r.chain, r.inode], name: newName, names: dstNames, stamps: [...r.stamps, se2.lastclone]})
    }
    if (moving.r.share <= 1) {
      moving.r.ctimeS = t.sec
      moving.r.ctimeNs = t.nsec
      vol.idirty(moving)
    }
    reapOrphans(vol)
  }

  /** A node's inode now has name `name` in directory node `p`. */
  private moved(fs: number, ino: number, p: Node, name: Buffer): void {
    const n = this.known(fs, ino)
    if (!n || n === this.root || n.topNames !== null) return
    if (n.parent !== p) {
      n.parent!.kids--
      const old = n.parent!
      n.parent = p
      p.kids++
      this.dropIfUnused(old)
    }
    n.name = Buffer.from(name)
  }

  private mkFileset(name: Buffer): Entry {
    if (this.options.readOnly) throw err('EROFS')
    const text = name.toString('latin1')
    if (filesetNameProblem(text) || !Buffer.from(text).equals(name)) throw err('EINVAL')
    if (findFileset(this.vol, text)) throw err('EEXIST')
    const f = createEmptyFileset(this.vol, text)
    const root = this.vol.iget(f.rootIno)
    return this.entryOf(this.nodeFor(f.id, root.ino, this.root, name, true), root)
  }

  private renameFileset(from: Buffer, to: Buffer): void {
    if (this.options.readOnly) throw err('EROFS')
    const a = from.toString('latin1')
    const b = to.toString('latin1')
    if (!findFileset(this.vol, a)) throw err('ENOENT')
    if (findFileset(this.vol, b)) throw err('EEXIST')
    if (filesetNameProblem(b) || !Buffer.from(b).equals(to)) throw err('EINVAL')
    renameFileset(this.vol, a, b)
    const f = findFileset(this.vol, b)!
    const n = this.known(f.id, f.rootIno)
    if (n) n.name = Buffer.from(to)
  }

  /**
   * Fails with ENOSPC before a change that needs about `blocks` free blocks (nothing is
   * changed). Blocks freed in this transaction come back with its commit: the request is then
   * run again after one (buildOps, mutating).
   */
  /**
   * copy_file_range(2) (GNU cp's way to copy since coreutils 9): whole blocks equally placed in
   * both files are shared, not copied (Namespace.copyRange), so a copy in a fileset, or from
   * one fileset to another, takes no space until either side is written. At most
   * COPY_SHARE_MAX bytes a call when they are shared, COPY_BYTES_MAX when they are copied
   * (the caller asks again for the rest, as copy_file_range allows).
   */
  private copyFileRange(ctx: FuseContext, sn: Node, inOff: number, dn: Node, outOff: number, len: number, flags: number): number {
    if (flags !== 0) throw err('EINVAL')
    if (sn.fs === 0 || dn.fs === 0) throw err('EISDIR')
    const dst = this.owned(dn)
    const src = this.inodeOf(sn)
    if (!src.isReg || !dst.isReg) throw err('EINVAL')
    const same = inOff % BLOCK_SIZE === outOff % BLOCK_SIZE && !(src.r.flags & IF_INLINE)
    const n = Math.min(len, same ? COPY_SHARE_MAX : COPY_BYTES_MAX, Math.max(0, src.r.size - inOff))
    if (n === 0) return 0
    if (outOff + n > 2 ** 43) throw err('EFBIG')
    // (shared blocks take none: only the edges copied do, and a node of the map if it grows one)
    const edges = (inOff % BLOCK_SIZE ? 1 : 0) + ((inOff + n) % BLOCK_SIZE ? 1 : 0)
    this.reserve(same ? edges : Math.ceil(n / BLOCK_SIZE) + 2)
    this.dropSgid(ctx, dst)
    const done = this.ns(dn.fs).copyRange(src, inOff, dst, outOff, n)
    this.accessed(sn)
    return done
  }

  private reserve(blocks: number): void {
    const vol = this.vol
    if (blocks === 0) return
    if (vol.sb.freeBlocks - vol.freedInTxn < blocks + 16) throw err('ENOSPC')
  }

  private fallocate(ctx: FuseContext, n: Node, mode: number, off: number, len: number): void {
    if (n.fs === 0) throw err('EISDIR')
    if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) throw err('EOPNOTSUPP')
    if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) throw err('EOPNOTSUPP')
    if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE)) throw err('EOPNOTSUPP')
    if (off < 0 || len <= 0) throw err('EINVAL')
    if (off + len > 2 ** 43) throw err('EFBIG')
    const seen = this.inodeOf(n)
    if (seen.isDir) throw err('EISDIR')
    if (!seen.isReg) throw err('ENODEV')
    const inode = this.owned(n)
    this.dropSgid(ctx, inode)
    const ns = this.ns(n.fs)
    const keep = (mode & FALLOC_FL_KEEP_SIZE) !== 0
    const size = inode.r.size
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) this.punch(inode, off, Math.min(off + len, size) - off)
    if (mode & FALLOC_FL_PUNCH_HOLE) {
      touch(inode.r, {m: true, c: true})
      inode.r.dataVersion++
      this.vol.idirty(inode)
      return
    }
    // Allocation: Prism has no unwritten extents, so the holes in range (within the file) get
    // blocks of zeros (writeZeros: zeroed by the host, not written, where it can); past the
    // end of the file (KEEP_SIZE) there is only the check for room.
    const end = keep ? Math.min(off + len, size) : off + len
    let need = 0
    const holes = end > off ? this.holes(inode, off, end) : []
    for (const [a, b] of holes) need += Math.ceil(b / BLOCK_SIZE) - Math.floor(a / BLOCK_SIZE)
    const beyond = keep && off + len > size ? Math.ceil((off + len - Math.max(off, size)) / BLOCK_SIZE) : 0
    this.reserve(need + beyond + 2)
    // (zeroed on the image file by fallocate where the host can: no gigabyte of zeros written)
    for (const [a, b] of holes) writeZeros(this.vol, inode, a, b - a)
    if (!keep && off + len > inode.r.size) ns.truncateInode(inode, off + len)
    touch(inode.r, {c: true})
    if (!keep) touch(inode.r, {m: true})
    inode.r.dataVersion++
    this.vol.idirty(inode)
  }

  /** Byte ranges of [off, end) not mapped to a block (block-aligned, clipped to the range). */
  private holes(inode: Inode, off: number, end: number): Array<[number, number]> {
    if (inode.r.flags & IF_INLINE) {
      return inode.r.size < end ? [[Math.max(off, inode.r.size), end]] : []
    }
    const ext = loadExtents(this.vol, inode)
    const out: Array<[number, number]> = []
    let pos = Math.floor(off / BLOCK_SIZE)
    const last = Math.ceil(end / BLOCK_SIZE)
    // (from the first extent that reaches the range: a map may hold hundreds of thousands)
    for (const e of ext.from(ext.firstEndingAfter(pos))) {
      if (e.l >= last) break
      if (e.l > pos) out.push([pos * BLOCK_SIZE, e.l * BLOCK_SIZE])
      pos = e.l + e.n
    }
    if (pos < last) out.push([pos * BLOCK_SIZE, last * BLOCK_SIZE])
    return out.map(([a, b]) => [Math.max(a, off), Math.min(b, end)] as [number, number]).filter(([a, b]) => b > a)
  }

  /** Makes [off, off+len) of a file read as zeros: whole blocks unmapped, edges rewritten. */
  private punch(inode: Inode, off: number, len: number): void {
    if (len <= 0) return
    const end = off + len
    if (inode.r.flags & IF_INLINE) {
      inode.r.area.fill(0, off, end)
      this.vol.idirty(inode)
      return
    }
    const firstFull = Math.ceil(off / BLOCK_SIZE)
    const lastFull = Math.floor(end / BLOCK_SIZE) // exclusive
    if (lastFull > firstFull) {
      const ext = loadExtents(this.vol, inode)
      for (const old of unmapRange(ext, firstFull, lastFull - firstFull)) {
        this.vol.decRefRun(old.p, old.n)
        inode.r.blocks -= old.n
      }
      inode.extentsDirty = true
      this.vol.idirty(inode)
    }
    const edges: Array<[number, number]> = []
    if (lastFull > firstFull) {
      if (off < firstFull * BLOCK_SIZE) edges.push([off, firstFull * BLOCK_SIZE])
      if (end > lastFull * BLOCK_SIZE) edges.push([lastFull * BLOCK_SIZE, end])
    } else {
      edges.push([off, end])
    }
    for (const [a, b] of edges) {
      if (this.holes(inode, a, b).some(([x, y]) => x === a && y === b)) continue // a hole already
      writeData(this.vol, inode, a, Buffer.alloc(b - a))
    }
  }

  /**
   * lsattr and chattr (FS_IOC_GETFLAGS, FS_IOC_SETFLAGS), and xfs_io's FS_IOC_FSGETXATTR and
   * FS_IOC_FSSETXATTR. Prism keeps no inode flags (immutable, append-only, nodump, noatime
   * ...): every file shows none, setting any is EOPNOTSUPP, and setting none (chattr -i) does
   * nothing, successfully. fsxattr shows the extent count of a regular file. Any other
   * ioctl is ENOTTY.
   */
  private ioctl(n: Node, cmd: number, input: Buffer, outSize: number): IoctlReply {
    const inode = n.fs === 0 ? null : this.inodeOf(n)
    switch (cmd >>> 0) {
      case FS_IOC_GETFLAGS:
      case FS_IOC32_GETFLAGS:
        return {result: 0, data: Buffer.alloc(Math.min(outSize, 8))}
      case FS_IOC_SETFLAGS:
      case FS_IOC32_SETFLAGS:
        if (input.some((b) => b !== 0)) throw err('EOPNOTSUPP')
        return {result: 0}
      case FS_IOC_FSGETXATTR: {
        // struct fsxattr: xflags, extsize, nextents, projid, cowextsize, 8 bytes of padding
        const out = Buffer.alloc(Math.min(outSize, 28))
        const extents = inode && inode.isReg && !(inode.r.flags & IF_INLINE) ? loadExtents(this.vol, inode).length : 0
        if (out.length >= 12) out.writeUInt32LE(extents, 8)
        return {result: 0, data: out}
      }
      case FS_IOC_FSSETXATTR:
        if (input.subarray(0, 20).some((b) => b !== 0)) throw err('EOPNOTSUPP')
        return {result: 0}
      default:
        throw err('ENOTTY')
    }
  }

  private lseek(n: Node, off: number, whence: number): number {
    const inode = this.inodeOf(n)
    const size = inode.r.size
    if (off >= size) throw err('ENXIO')
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw err('EINVAL')
    if (inode.r.flags & IF_INLINE || !inode.isReg) return whence === SEEK_DATA ? off : size
    const ext = loadExtents(this.vol, inode)
    const l = Math.floor(off / BLOCK_SIZE)
    // (from the first extent that ends after l: a sparse file walked with SEEK_DATA and
    // SEEK_HOLE in turn asks once per extent)
    const from = ext.firstEndingAfter(l)
    if (whence === SEEK_DATA) {
      for (const e of ext.from(from)) {
        const at = Math.max(off, e.l * BLOCK_SIZE)
        if (at >= size) break
        return at
      }
      throw err('ENXIO')
    }
    let pos = l
    for (const e of ext.from(from)) {
      if (e.l > pos) break
      pos = e.l + e.n
    }
    return Math.min(size, Math.max(off, pos * BLOCK_SIZE))
  }
}

function modeOfDt(dt: number): number {
  switch (dt) {
    case 2: return S_IFDIR
    case 7: return S_IFLNK
    case 3: return 0o020000
    case 4: return 0o060000
    case 5: return 0o010000
    case 6: return 0o140000
    default: return S_IFREG
  }
}

export {dtOfMode}
