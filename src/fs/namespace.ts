// The namespace of one fileset: path resolution (with symlinks, chroot-like: an absolute
// target starts at the fileset's root) and the operations users see (mkdir, create, write,
// unlink, rename, link, symlink, chmod, truncate ...). Each operation changes the running
// transaction only; callers commit. Inodes that lose their last name go on the orphan list
// in the same transaction and are freed by reapOrphans(), so freeing a huge file or tree
// may span transactions without ever exposing a half-deleted state.
import {
  BLOCK_SIZE, DT_DIR, DT_LNK, DT_REG, FS_DELETING, FS_EXPANDING, IF_NOCLONE, IF_INLINE, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, dtOfMode,
  isSpecial, modeOfDt,
} from '../format/constants.js'
import {decodeRdev, encodeRdev, INODE_AREA_SIZE, type Rdev} from '../format/inode.js'
import {INCOMPAT_SPECIAL} from '../format/superblock.js'
import {nameProblem} from '../format/dirent.js'
import {nameBytes, nameText} from '../format/name.js'
import {fail, PrismError} from '../errors.js'
import {interruptPending, uninterrupted} from '../interrupt.js'
import {byInode, dirAdd, dirCount, dirInit, dirList, dirListByInode, dirLookup, dirRemove, dirUpdate, type Dirent} from './dir.js'
import {loadExtents, readData, releaseAll, shareBlocks, shareInto, streamData, streamSpans, truncateData, unmapRange, writeData, type WriteStats} from './extents.js'
import {effectiveLocality, layoutOf, policyFor, resolvePolicy, setInodeLocality, type EffectiveLocality, type Layout, type LocalityPolicy} from './locality.js'
import type {LocalityCode} from '../format/locality.js'
import type {Fileset} from './filesets.js'
import {Inode, fileTypeOf, now, touch, type FileType, type Timestamp} from './inode.js'
import {chmodAcl, dropXattrs, getXattr, holdXattrs, listXattrs, removeXattr, replaceXattrs, setXattr, type SetXattrFlags, type Xattr} from './xattr.js'
import {Volume} from './volume.js'
import {childrenOf, deletingFilesets, filesetById, removeFileset, saveFileset} from './filesets.js'
import {dropCloneState, recountLinks, expandDir, expandTree, guardLinked, guardPath, guardTree, isExpanding, isUnexpanded, releaseSource} from './expand.js'

const MAX_SYMLINK_HOPS = 40
export const SYMLINK_MAX = 4095

export interface StatInfo {
  ino: number
  type: FileType
  mode: number
  perm: number
  nlink: number
  share: number
  uid: number
  gid: number
  size: number
  blocks: number
  atime: Timestamp
  mtime: Timestamp
  ctime: Timestamp
  flags: string[]
  generation: number
  target?: string
  entries?: number
  /** device number of a character or block device */
  rdev?: Rdev
  /** names of its extended attributes */
  xattrs: string[]
}

export interface ListEntry {
  name: string
  ino: number
  type: FileType
}

export interface Resolved {
  inode: Inode
  /** directories from the root down to the inode's parent */
  chain: Inode[]
  /** name of the final component ('' for the root) */
  name: Buffer
  /** the real path from the root (symlinks resolved): names[i] is an entry of chain[i] */
  names: Buffer[]
  /** lastclone of each of those entries (asynchronous cloning, src/fs/expand.ts) */
  stamps: number[]
}

const pathOf = (names: Buffer[]): string => names.map((n) => '/' + nameText(n)).join('')

export function splitPath(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.')
}

function typeName(dt: number): FileType {
  return fileTypeOf(modeOfDt(dt) || S_IFREG)
}

function validName(name: string): Buffer {
  const b = nameBytes(name)
  const p = nameProblem(b)
  if (p) fail(p.startsWith('name longer') ? 'ENAMETOOLONG' : 'EINVAL', `'${name.length > 40 ? name.slice(0, 40) + '...' : name}': ${p}`)
  return b
}

export class Namespace {
  constructor(readonly vol: Volume, readonly fs: Fileset) {}

  get label(): string {
    return this.fs.name
  }

  where(path: string): string {
    return `${this.fs.name}:${path.startsWith('/') ? path : '/' + path}`
  }

  /** The root directory, expanded first if this fileset is an asynchronous clone. */
  root(): Inode {
    return this.expanded(this.vol.iget(this.fs.rootIno), [])
  }

  /** This fileset's record as it is now (expansion updates it during a transaction). */
  record(): Fileset {
    return filesetById(this.vol, this.fs.id) ?? this.fs
  }

  /**
   * On-demand expansion (paper Fig. 5): a directory of an asynchronous or lazy clone that has
   * not been expanded yet gets its entries before anyone looks into it.
   */
  expanded(dir: Inode, names: Buffer[]): Inode {
    if (isUnexpanded(dir)) expandDir(this.vol, this.record(), dir, pathOf(names))
    return dir
  }

  /**
   * Before this fileset changes the object at `r` (its content, attributes or, for a
   * directory, its entries): clones still expanding from this fileset copy what they need.
   */
  guard(r: Resolved): void {
    guardPath(this.vol, this.fs, r.names, r.stamps, (i, v) => dirUpdate(this.vol, r.chain[i], r.names[i], {lastclone: v}))
    guardLinked(this.vol, this.fs, r.inode)
  }

  /**
   * Before directory `r` is renamed or removed: clones expanding from this fileset expand
   * their copy of it completely, and so does this fileset if it is itself still expanding
   * and the directory moves (an UNEXPANDED directory must stay at its source's path).
   */
  guardDirTree(r: Resolved, moving: boolean): void {
    guardTree(this.vol, this.fs, r.names)
    if (moving && isExpanding(this.record())) expandTree(this.vol, this.record(), r.inode, pathOf(r.names))
  }

  /** Fully expands the subtree at `path` if this fileset is still expanding (before a walk). */
  materialize(path: string): void {
    if (!isExpanding(this.record())) return
    const r = this.resolveFull(path, false)
    if (r.inode.isDir) expandTree(this.vol, this.record(), r.inode, pathOf(r.names))
  }

  /** Resolves an existing directory whose entries the caller is about to change. */
  dirForChange(path: string): Inode {
    const r = this.resolveFull(path, true)
    if (!r.inode.isDir) fail('ENOTDIR', `${this.where(path)}: not a directory`)
    this.guard(r)
    return r.inode
  }

  // ---------------------------------------------------------------- resolution

  /**
   * Resolves a path; `follow` decides whether a final symlink is followed. Components are
   * consumed from a queue, and a symlink's target is pushed in front of what remains. A
   * trailing slash (or '/.') names a directory, as in POSIX: a final symlink is then followed,
   * and anything but a directory is ENOTDIR.
   */
  resolveFull(path: string, follow = true): Resolved {
    let hops = 0
    const queue = splitPath(path)
    const dirOnly = queue.length > 0 && /\/\.?\/*$/.test(path)
    if (dirOnly) follow = true
    let chain: Inode[] = []
    let names: Buffer[] = []
    let stamps: number[] = []
    let cur = this.root()
    let name = Buffer.alloc(0)
    while (queue.length > 0) {
      const c = queue.shift()!
      if (c === '..') {
        if (chain.length > 0) {
          cur = chain.pop()!
          names.pop()
          stamps.pop()
        }
        name = Buffer.alloc(0)
        continue
      }
      if (!cur.isDir) fail('ENOTDIR', `${this.where(path)}: '${nameText(name)}' is not a directory`)
      const nb = nameBytes(c)
      if (nb.length > 255) fail('ENAMETOOLONG', `${this.where(path)}: name longer than 255 bytes`)
      const e = this.lookupEntry(cur, nb)
      if (!e) fail('ENOENT', `${this.where(path)}: no such file or directory`)
      const next = this.vol.iget(e.ino)
      if (next.isLnk && (queue.length > 0 || follow)) {
        if (++hops > MAX_SYMLINK_HOPS) fail('ELOOP', `${this.where(path)}: too many levels of symbolic links`)
        const target = this.readlinkInode(next)
        if (target.startsWith('/')) {
          chain = []
          names = []
          stamps = []
          cur = this.root()
        }
        queue.unshift(...splitPath(target))
        name = Buffer.alloc(0)
        continue
      }
      chain.push(cur)
      names.push(nb)
      stamps.push(e.lastclone)
      cur = this.expanded(next, names)
      name = nb
    }
    if (dirOnly && !cur.isDir) fail('ENOTDIR', `${this.where(path)}: not a directory`)
    return {inode: cur, chain, name, names, stamps}
  }

  /**
   * The directory at `path` if it is still inode `ino`, taken again (a walk that yields lets
   * others change the image between its steps), or null when it is gone or was replaced.
   */
  dirIfStill(path: string, ino: number): Inode | null {
    try {
      const x = this.resolve(path, false)
      return x.ino === ino && x.isDir ? x : null
    } catch (e) {
      if (e instanceof PrismError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return null
      throw e
    }
  }

  resolve(path: string, follow = true): Inode {
    return this.resolveFull(path, follow).inode
  }

  /**
   * Resolves a path given as the names of real entries from the root, as a server's nodes
   * know them (no symlink is followed, no '.' or '..'), expanding every directory reached as
   * resolveFull does. The result serves guard() and own() for a change at that path.
   */
  resolveNames(names: readonly Buffer[]): Resolved {
    const chain: Inode[] = []
    const stamps: number[] = []
    let cur = this.root()
    for (let i = 0; i < names.length; i++) {
      const where = () => this.where(pathOf(names.slice(0, i + 1)))
      if (!cur.isDir) fail('ENOTDIR', `${where()}: not a directory`)
      const e = this.lookupEntry(cur, names[i])
      if (!e) fail('ENOENT', `${where()}: no such file or directory`)
      chain.push(cur)
      stamps.push(e.lastclone)
      cur = this.expanded(this.vol.iget(e.ino), names.slice(0, i + 1))
    }
    return {inode: cur, chain, name: names.length ? names[names.length - 1] : Buffer.alloc(0), names: [...names], stamps}
  }

  /** Resolves a path to an inode this fileset may change (see own()). */
  resolveOwned(path: string, follow = true): Inode {
    return this.own(this.resolveFull(path, follow))
  }

  /**
   * The inode-level copy-on-write of the Prism paper (§3.2, §3.5): an inode shared with other
   * filesets (share > 1) is copied before this fileset changes it. The copy shares every data
   * block through the reference-count table, so no data is copied. Shared inodes always have
   * exactly one name in each fileset (a hard-linked file is never shared, see clone.ts), so
   * the entry we came through is the only one to point at the copy.
   */
  own(r: Resolved): Inode {
    this.guard(r)
    const x = r.inode
    if (x.r.share <= 1) return x
    const parent = r.chain[r.chain.length - 1]
    if (x.isDir || !parent) fail('EBADIMAGE', `directory inode ${x.ino} is shared; run 'prism fsck'`)
    if (x.r.nlink !== 1) fail('EBADIMAGE', `shared inode ${x.ino} has ${x.r.nlink} links; run 'prism fsck'`)
    const copy = this.vol.ialloc(x.r.mode, x.ino + 1)
    const generation = copy.r.generation
    copy.r = {...x.r, area: Buffer.alloc(x.r.area.length), share: 1, nlink: 1, generation, nextOrphan: 0}
    shareInto(this.vol, x, copy)
    holdXattrs(this.vol, copy)
    x.r.share--
    this.vol.idirty(x)
    dirUpdate(this.vol, parent, r.name, {ino: copy.ino})
    this.vol.observer?.inodeCopied(this.fs.id, x.ino, copy.ino)
    return copy
  }

  /**
   * Parent directory and final name of a path whose last component is to be created or removed.
   * A trailing slash says the name is a directory's, as in POSIX: an existing entry that is not
   * a directory (a symlink included: it is not followed here) is ENOTDIR, and so is a new name
   * for anything but a directory (`creating` 'other'). A final '.' or '..' names no entry.
   */
  resolveParent(path: string, creating?: 'dir' | 'other'): {dir: Inode, name: Buffer, chain: Inode[], names: Buffer[], dirOnly: boolean} {
    const comps = splitPath(path)
    if (comps.length === 0) fail('EBUSY', `${this.where(path)}: is the fileset's root`)
    const last = comps[comps.length - 1]
    if (last === '..') fail('EINVAL', `${this.where(path)}: cannot use '..' as a name`)
    if (/(^|\/)\.\/*$/.test(path)) fail('EINVAL', `${this.where(path)}: cannot use '.' as a name`)
    const dirOnly = /\/+$/.test(path)
    const parentPath = '/' + comps.slice(0, -1).join('/')
    const r = this.resolveFull(parentPath, true)
    if (!r.inode.isDir) fail('ENOTDIR', `${this.where(parentPath)}: not a directory`)
    const name = validName(last)
    if (dirOnly) {
      const e = this.lookupEntry(r.inode, name)
      if (e ? e.type !== DT_DIR : creating === 'other') fail('ENOTDIR', `${this.where(path)}: not a directory`)
    }
    // Every caller goes on to change this directory's entries.
    this.guard(r)
    return {dir: r.inode, name, chain: [...r.chain, r.inode], names: [...r.names, name], dirOnly}
  }

  /**
   * Guards removing, replacing or moving the directory named `names` (an entry of the guarded
   * `dir`): refused (EBUSY) when a `FILESET:/path` mount shows it or a directory below it.
   */
  beforeDirGoes(names: Buffer[], dir: Inode, moving: boolean): void {
    const e = this.lookupEntry(dir, names[names.length - 1])
    if (!e) return
    this.refuseMounted(e.ino, () => this.where('/' + names.map(nameText).join('/')))
    const inode = this.vol.iget(e.ino)
    if (inode.isDir) this.guardDirTree({inode, chain: [], name: names[names.length - 1], names, stamps: []}, moving)
  }

  /** Where a `FILESET:/path` mount shows directory `ino` of this fileset, or one below it; else null. */
  mountedOn(ino: number): string | null {
    for (const m of this.vol.mountedDirs?.() ?? []) if (m.fs === this.fs.id && m.chain.includes(ino)) return m.at
    return null
  }

  /** EBUSY when directory `ino` (named `what()`) may not go: see mountedOn. */
  refuseMounted(ino: number, what: () => string): void {
    const at = this.mountedOn(ino)
    if (at) fail('EBUSY', `${what()} is mounted on ${at}: unmount it first (prism umount ${at})`)
  }

  lookupEntry(dir: Inode, name: Buffer): Dirent | null {
    return dirLookup(this.vol, dir, name)
  }

  exists(path: string, follow = false): boolean {
    try {
      this.resolve(path, follow)
      return true
    } catch (e) {
      if (e instanceof PrismError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return false
      throw e
    }
  }

  // ---------------------------------------------------------------- reading

  statInode(inode: Inode): StatInfo {
    const r = inode.r
    const flags: string[] = []
    if (r.flags & IF_NOCLONE) flags.push('noclone')
    if (r.flags & IF_INLINE) flags.push('inline')
    const st: StatInfo = {
      ino: inode.ino, type: inode.type, mode: r.mode, perm: r.mode & 0o7777, nlink: r.nlink, share: r.share,
      uid: r.uid, gid: r.gid, size: inode.isDir ? Math.max(1, r.blocks) * BLOCK_SIZE : r.size, blocks: r.blocks,
      atime: {s: r.atimeS, ns: r.atimeNs}, mtime: {s: r.mtimeS, ns: r.mtimeNs}, ctime: {s: r.ctimeS, ns: r.ctimeNs},
      flags, generation: r.generation, xattrs: listXattrs(this.vol, inode).map((x) => nameText(x.name)),
    }
    if (inode.isLnk) st.target = this.readlinkInode(inode)
    if (inode.isDir) st.entries = dirCount(inode)
    if (inode.isSpecial) st.rdev = decodeRdev(r.area)
    return st
  }

  stat(path: string, follow = false): StatInfo {
    return this.statInode(this.resolve(path, follow))
  }

  /** Lists a directory reached through resolve() (which expanded it if needed). */
  readdirInode(dir: Inode): ListEntry[] {
    if (isUnexpanded(dir)) fail('ENEEDWRITE', `${this.fs.name}: directory ${dir.ino} is not expanded yet`)
    return dirList(this.vol, dir)
      .map((e) => ({name: nameText(e.name), ino: e.ino, type: typeName(e.type)}))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  readdir(path: string): ListEntry[] {
    const dir = this.resolve(path, true)
    if (!dir.isDir) fail('ENOTDIR', `${this.where(path)}: not a directory`)
    return this.readdirInode(dir)
  }

  /**
   * A directory's entries, each with what stat shows of it (a symlink itself, not followed).
   * An entry that is a directory of a clone not expanded yet is expanded first, as stat of
   * its path would: its link count, size and flags are then those expansion gives it, not
   * those of the placeholder that stands for it.
   */
  readdirStat(path: string): Array<ListEntry & {st: StatInfo}> {
    const r = this.resolveFull(path, true)
    if (!r.inode.isDir) fail('ENOTDIR', `${this.where(path)}: not a directory`)
    const list = this.readdirInode(r.inode)
    const out = new Array<ListEntry & {st: StatInfo}>(list.length)
    // (read in inode order for a large directory, src/fs/dir.ts byInode; given in the directory's)
    for (const {e, i} of byInode(list.map((e, i) => ({e, i, ino: e.ino})))) {
      const inode = this.vol.iget(e.ino)
      out[i] = {...e, st: this.statInode(isUnexpanded(inode) ? this.expanded(inode, [...r.names, nameBytes(e.name)]) : inode)}
    }
    return out
  }

  readFile(path: string): Buffer {
    const inode = this.resolve(path, true)
    if (inode.isDir) fail('EISDIR', `${this.where(path)}: is a directory`)
    if (inode.isSpecial) return Buffer.alloc(0)
    return readData(this.vol, inode, 0, inode.r.size)
  }

  /** Streams a file's content to `sink` in large chunks. */
  stream(path: string, sink: (buf: Buffer) => boolean | void, chunk?: number): Inode {
    const inode = this.resolve(path, true)
    if (inode.isDir) fail('EISDIR', `${this.where(path)}: is a directory`)
    if (!inode.isSpecial) streamData(this.vol, inode, sink, chunk)
    return inode
  }

  /** stream, with data sent from the image file in place where it can be (extents.ts streamSpans). */
  streamSpans(path: string, span: (fd: number, pos: number, bytes: number) => number, sink: (buf: Buffer) => boolean | void, chunk?: number): Inode {
    const inode = this.resolve(path, true)
    if (inode.isDir) fail('EISDIR', `${this.where(path)}: is a directory`)
    if (!inode.isSpecial) streamSpans(this.vol, inode, span, sink, chunk)
    return inode
  }

  /** A symlink's target; EBADIMAGE for one holding a NUL byte (a damaged image: fsck reports it, SYMLINK_NUL). */
  readlinkInode(inode: Inode): string {
    const target = readData(this.vol, inode, 0, inode.r.size)
    if (target.includes(0)) fail('EBADIMAGE', `symlink inode ${inode.ino}: its target holds a NUL byte (a damaged image; run 'prism fsck --repair')`)
    return nameText(target)
  }

  readlink(path: string): string {
    const inode = this.resolve(path, false)
    if (!inode.isLnk) fail('EINVAL', `${this.where(path)}: not a symbolic link`)
    return this.readlinkInode(inode)
  }

  // ---------------------------------------------------------------- creating

  /** Allocates an inode and names it in `dir`. The caller checked the name is free. */
  createIn(dir: Inode, name: Buffer, mode: number, attrs: {uid?: number, gid?: number} = {}): Inode {
    const inode = this.vol.ialloc(mode, dir.ino + 1)
    const r = inode.r
    r.uid = attrs.uid ?? this.vol.creator?.uid ?? process.getuid?.() ?? 0
    r.gid = attrs.gid ?? this.vol.creator?.gid ?? process.getgid?.() ?? 0
    touch(r, {a: true, m: true, c: true})
    if ((mode & S_IFMT) === S_IFDIR) {
      dirInit(inode)
      r.nlink = 2
      dir.r.nlink++
    } else {
      r.nlink = 1
    }
    r.dataVersion = 1
    // A directory's locality setting passes to what is made in it (FORMAT.md §6.6).
    if ((mode & S_IFMT) !== S_IFLNK) r.locality = dir.r.locality ?? 0
    try {
      dirAdd(this.vol, dir, inode.ino, dtOfMode(mode), name)
    } catch (e) {
      // (the directory had no room: a full image) Nothing of the new inode stays, since a
      // mount's request commits with the others whatever it did before it failed.
      if ((mode & S_IFMT) === S_IFDIR) dir.r.nlink--
      this.vol.ifree(inode)
      throw e
    }
    touch(dir.r, {m: true, c: true})
    this.vol.idirty(dir)
    this.vol.idirty(inode)
    return inode
  }

  mkdir(path: string, opts: {mode?: number, parents?: boolean, uid?: number, gid?: number} = {}): Inode {
    const mode = S_IFDIR | ((opts.mode ?? 0o755) & 0o7777)
    if (opts.parents) {
      let cur = this.root()
      const comps = splitPath(path)
      let sofar = ''
      for (const c of comps) {
        sofar += '/' + c
        if (c === '..') { cur = this.resolve(sofar); continue }
        const nb = validName(c)
        const e = this.lookupEntry(cur, nb)
        if (e) {
          const next = this.resolve(sofar, true)
          if (!next.isDir) fail('ENOTDIR', `${this.where(sofar)}: exists and is not a directory`)
          cur = next
        } else {
          cur = this.mkdir(sofar, {...opts, parents: false})
        }
      }
      return cur
    }
    const {dir, name} = this.resolveParent(path)
    if (this.lookupEntry(dir, name)) fail('EEXIST', `${this.where(path)}: already exists`)
    return this.createIn(dir, name, mode, opts)
  }

  /**
   * Opens a regular file for writing, creating it if absent. An existing file keeps its
   * inode (hard links keep sharing it); `truncate` empties it first.
   */
  openForWrite(path: string, opts: {mode?: number, truncate?: boolean, exclusive?: boolean, uid?: number, gid?: number} = {}): Inode {
    let {dir, name} = this.resolveParent(path, 'other')
    let e = this.lookupEntry(dir, name)
    // A final symlink is followed, as open(2) with O_CREAT does: a dangling one names the file
    // to create (inside this fileset: an absolute target starts at its root).
    for (let hops = 0; e && e.type === DT_LNK && !opts.exclusive; hops++) {
      if (hops >= MAX_SYMLINK_HOPS) fail('ELOOP', `${this.where(path)}: too many levels of symbolic links`)
      const target = this.readlinkInode(this.vol.iget(e.ino))
      path = target.startsWith('/') ? target : '/' + [...splitPath(path).slice(0, -1), target].join('/')
      ;({dir, name} = this.resolveParent(path))
      e = this.lookupEntry(dir, name)
    }
    if (e) {
      if (opts.exclusive) fail('EEXIST', `${this.where(path)}: already exists`)
      const inode = this.resolveOwned(path, true)
      if (inode.isDir) fail('EISDIR', `${this.where(path)}: is a directory`)
      if (inode.isSpecial) fail('EINVAL', `${this.where(path)}: is a ${inode.type}, which holds no data`)
      if (opts.truncate && inode.r.size > 0) this.truncateInode(inode, 0)
      return inode
    }
    return this.createIn(dir, name, S_IFREG | ((opts.mode ?? 0o644) & 0o7777), opts)
  }

  /** The locality policy writes to `inode` follow here (FORMAT.md §6.6), or null when it is off. */
  policyOf(inode: Inode): LocalityPolicy | null {
    return resolvePolicy(this.vol, this.record().flags, inode)
  }

  /** Adds what a write's region rewrites cost to this fileset's counters (FORMAT.md §6.6). */
  private account(s: WriteStats): void {
    if (s.rewrites === 0) return
    const rec = this.record()
    if (rec.slot < 0) return // a draft or staging tree (clone, tar import): no record of its own to count in
    saveFileset(this.vol, {...rec, coawCopied: rec.coawCopied + s.copiedShared, coawRewrites: rec.coawRewrites + s.rewrites})
  }

  /** Writes data at `off`; with `owned`, the caller gives `data` away (it may be queued as is: extents.ts writeData). */
  writeInode(inode: Inode, off: number, data: Buffer, owned = false): void {
    if (inode.isDir || inode.isSpecial) fail(inode.isDir ? 'EISDIR' : 'EINVAL', `cannot write data into a ${inode.type}`)
    this.account(writeData(this.vol, inode, off, data, owned, this.policyOf(inode)))
    inode.r.dataVersion++
    touch(inode.r, {m: true, c: true})
    this.vol.idirty(inode)
  }

  /**
   * copy_file_range: `len` bytes of file `src` from `srcOff` into file `dst` (owned by the
   * caller) at `dstOff`, fewer only where `src` ends; returns how many. Where both offsets are
   * equally placed in their blocks, the whole blocks are shared, not copied (shareBlocks: a
   * reflink of the range, no data written, a hole stays one), and so is src's last block when
   * the range and both files end there; only the other bytes before the first and after the
   * last whole block are copied. Otherwise every byte is.
   */
  copyRange(src: Inode, srcOff: number, dst: Inode, dstOff: number, len: number): number {
    if (!src.isReg || !dst.isReg) fail('EINVAL', 'copy_file_range copies between regular files')
    len = Math.min(len, Math.max(0, src.r.size - srcOff))
    if (len <= 0) return 0
    if (src.ino === dst.ino && srcOff < dstOff + len && dstOff < srcOff + len) fail('EINVAL', 'the ranges overlap')
    let done = 0
    const copyBytes = (n: number): void => {
      this.writeInode(dst, dstOff + done, readData(this.vol, src, srcOff + done, n))
      done += n
    }
    // n blocks of src from `done` on, shared (not written: dst's times and version move here)
    const shareFrom = (n: number): void => {
      shareBlocks(this.vol, src, (srcOff + done) / BLOCK_SIZE, dst, (dstOff + done) / BLOCK_SIZE, n)
      dst.r.dataVersion++
      touch(dst.r, {m: true, c: true})
      this.vol.idirty(dst)
    }
    if (srcOff % BLOCK_SIZE !== dstOff % BLOCK_SIZE || (src.r.flags & IF_INLINE)) {
      copyBytes(len)
      return len
    }
    const head = Math.min(len, (BLOCK_SIZE - srcOff % BLOCK_SIZE) % BLOCK_SIZE)
    if (head > 0) copyBytes(head)
    const whole = Math.floor((len - done) / BLOCK_SIZE)
    if (whole > 0) {
      shareFrom(whole)
      done += whole * BLOCK_SIZE
    }
    const tail = len - done
    if (tail > 0 && srcOff + len === src.r.size && dstOff + len >= dst.r.size) {
      // The range ends where src ends, and dst will end there too: src's last block is
      // shared as well (what follows the end in it reads as zeros, §6.5), so a whole file
      // copied takes no block at all.
      shareFrom(1) // (dst marked changed there)
      dst.r.size = dstOff + len
    } else if (tail > 0) {
      copyBytes(tail)
    }
    return len
  }

  /** Replaces (or appends to) a file's content. */
  writeFile(path: string, data: Buffer, opts: {append?: boolean, mode?: number} = {}): Inode {
    const inode = this.openForWrite(path, {mode: opts.mode, truncate: !opts.append})
    this.writeInode(inode, opts.append ? inode.r.size : 0, data)
    return inode
  }

  truncateInode(inode: Inode, size: number): void {
    if (inode.isDir) fail('EISDIR', 'cannot truncate a directory')
    if (inode.isSpecial) fail('EINVAL', `cannot truncate a ${inode.type}`)
    truncateData(this.vol, inode, size, this.policyOf(inode))
    inode.r.dataVersion++
    touch(inode.r, {m: true, c: true})
    this.vol.idirty(inode)
  }

  truncate(path: string, size: number, opts: {create?: boolean} = {}): Inode {
    if (!Number.isSafeInteger(size) || size < 0) fail('EINVAL', `invalid size ${size}`)
    const inode = opts.create ? this.openForWrite(path) : this.resolveOwned(path, true)
    this.truncateInode(inode, size)
    return inode
  }

  /** Makes a symlink; with `force` (ln -sf) an existing file or symlink there is replaced. */
  symlink(target: string, path: string, attrs: {uid?: number, gid?: number, force?: boolean} = {}): Inode {
    const t = nameBytes(target)
    if (t.length === 0 || t.length > SYMLINK_MAX) fail('ENAMETOOLONG', `symlink target must be 1..${SYMLINK_MAX} bytes`)
    const {dir, name} = this.resolveParent(path, 'other')
    symlinkRoom(this.vol, t)
    const replaced = this.clearForLink(dir, name, path, !!attrs.force)
    const inode = this.createIn(dir, name, S_IFLNK | 0o777, attrs)
    writeData(this.vol, inode, 0, t)
    if (replaced) reapOrphans(this.vol)
    return inode
  }

  /**
   * Makes a character or block device, a FIFO or a socket (mknod(2)). A device number is kept
   * for devices only; FIFOs and sockets have none.
   */
  mknod(path: string, mode: number, rdev: Rdev = {major: 0, minor: 0}, attrs: {uid?: number, gid?: number} = {}): Inode {
    if (!isSpecial(mode)) fail('EINVAL', `${this.where(path)}: mknod makes devices, FIFOs and sockets`)
    const {dir, name} = this.resolveParent(path, 'other')
    if (this.lookupEntry(dir, name)) fail('EEXIST', `${this.where(path)}: already exists`)
    return this.createSpecialIn(dir, name, mode, rdev, attrs)
  }

  /** mknod in a resolved directory; the caller checked the name is free. */
  createSpecialIn(dir: Inode, name: Buffer, mode: number, rdev: Rdev, attrs: {uid?: number, gid?: number} = {}): Inode {
    const ok = (v: number) => Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff
    if (!ok(rdev.major) || !ok(rdev.minor)) fail('EINVAL', `device number ${rdev.major}:${rdev.minor} out of range`)
    const inode = this.createIn(dir, name, mode, attrs)
    const t = mode & S_IFMT
    encodeRdev(t === 0o020000 || t === 0o060000 ? rdev : {major: 0, minor: 0}, inode.r.area)
    this.vol.sb.incompat |= INCOMPAT_SPECIAL
    this.vol.markSbDirty()
    return inode
  }

  /** Adds a name for an existing file or symlink; with `force` (ln -f) an existing file or symlink there is replaced. */
  link(existing: string, path: string, opts: {force?: boolean} = {}): Inode {
    const inode = this.resolveOwned(existing, false)
    if (inode.isDir) fail('EISDIR', `${this.where(existing)}: hard links to directories are not allowed`)
    const {dir, name} = this.resolveParent(path, 'other')
    if (opts.force && this.lookupEntry(dir, name)?.ino === inode.ino) fail('EINVAL', `'${this.where(existing)}' and '${this.where(path)}' are the same file`)
    const replaced = this.clearForLink(dir, name, path, !!opts.force)
    this.linkInode(inode, dir, name)
    if (replaced) reapOrphans(this.vol)
    return inode
  }

  /**
   * Before a link is made as `name` of `dir`: without `force` the name must be free; with it
   * (ln -f) a file or symlink there loses that name, but never a directory (as ln). Returns
   * true when a name was dropped (the caller reaps once the link is made).
   */
  private clearForLink(dir: Inode, name: Buffer, path: string, force: boolean): boolean {
    const e = this.lookupEntry(dir, name)
    if (!e) return false
    if (e.type === DT_DIR) fail(force ? 'EISDIR' : 'EEXIST', force ? `${this.where(path)}: cannot overwrite directory` : `${this.where(path)}: already exists`)
    if (!force) fail('EEXIST', `${this.where(path)}: already exists`)
    dirRemove(this.vol, dir, name)
    touch(dir.r, {m: true, c: true})
    this.vol.idirty(dir)
    this.dropName(this.vol.iget(e.ino))
    return true
  }

  /**
   * A new regular file named by no directory, as `createIn` would make it in `dir` (open with
   * O_TMPFILE): nlink 0 and on the orphan list, so that it goes at its last close (whoever
   * holds it open keeps the reaper off, Volume.orphanHeld) or at the next open after a crash,
   * unless `linkInode` names it first.
   */
  createUnnamed(dir: Inode, mode: number, attrs: {uid?: number, gid?: number} = {}): Inode {
    if ((mode & S_IFMT) !== S_IFREG) fail('EINVAL', 'only a regular file can be made without a name')
    const inode = this.vol.ialloc(mode, dir.ino + 1)
    const r = inode.r
    r.uid = attrs.uid ?? this.vol.creator?.uid ?? process.getuid?.() ?? 0
    r.gid = attrs.gid ?? this.vol.creator?.gid ?? process.getgid?.() ?? 0
    touch(r, {a: true, m: true, c: true})
    r.nlink = 0
    r.dataVersion = 1
    r.locality = dir.r.locality ?? 0
    this.vol.idirty(inode)
    this.vol.addOrphan(inode)
    return inode
  }

  /** Gives `inode` one name more; a file with none yet (createUnnamed) leaves the orphan list. */
  linkInode(inode: Inode, dir: Inode, name: Buffer): Inode {
    if (inode.r.nlink >= 0xffff_fff0) fail('EINVAL', 'too many links')
    dirAdd(this.vol, dir, inode.ino, dtOfMode(inode.r.mode), name)
    if (inode.r.nlink === 0) this.vol.removeOrphan(inode)
    inode.r.nlink++
    touch(inode.r, {c: true})
    touch(dir.r, {m: true, c: true})
    this.vol.idirty(inode)
    this.vol.idirty(dir)
    return inode
  }

  // ---------------------------------------------------------------- attributes

  chmod(path: string, perm: number): Inode {
    const inode = this.resolveOwned(path, true)
    inode.r.mode = (inode.r.mode & S_IFMT) | (perm & 0o7777)
    touch(inode.r, {c: true})
    this.vol.idirty(inode)
    chmodAcl(this.vol, inode)
    return inode
  }

  chown(inode: Inode, uid: number, gid: number): void {
    inode.r.uid = uid
    inode.r.gid = gid
    touch(inode.r, {c: true})
    this.vol.idirty(inode)
  }

  setTimes(inode: Inode, atime: Timestamp, mtime: Timestamp): void {
    inode.r.atimeS = atime.s
    inode.r.atimeNs = atime.ns
    inode.r.mtimeS = mtime.s
    inode.r.mtimeNs = mtime.ns
    this.vol.idirty(inode)
  }

  /** Sets the locality setting of a file or directory (FORMAT.md §6.6; a directory passes it to what is made in it). */
  setLocality(path: string, code: LocalityCode): Inode {
    const inode = this.resolveOwned(path, true)
    // Only files and directories have data the policy places (a symlink's target, a device's number are not data).
    if (!inode.isReg && !inode.isDir) fail('EINVAL', `${this.where(path)}: a ${inode.isLnk ? 'symbolic link' : inode.type} has no locality setting`)
    setInodeLocality(this.vol, inode, code)
    touch(inode.r, {c: true})
    return inode
  }

  /** The locality setting in force for an inode of this fileset (null: the fileset's own). */
  locality(inode: Inode | null): EffectiveLocality {
    return effectiveLocality(this.vol, this.record().flags, inode)
  }

  /** What `prism stat` shows of a file's layout: extents, shared blocks, far runs. */
  layout(inode: Inode): Layout {
    return layoutOf(this.vol, inode, policyFor(this.locality(inode).regionBytes))
  }

  setFlag(path: string, flag: number, on: boolean): Inode {
    const inode = this.resolveOwned(path, false)
    inode.r.flags = on ? inode.r.flags | flag : inode.r.flags & ~flag
    touch(inode.r, {c: true})
    this.vol.idirty(inode)
    return inode
  }

  // ---------------------------------------------------------------- extended attributes

  /** The attributes of the inode at `path` (a final symlink followed with `follow`). */
  listXattrs(path: string, follow = false): readonly Xattr[] {
    return listXattrs(this.vol, this.resolve(path, follow))
  }

  getXattr(path: string, name: Buffer, follow = false): Buffer | null {
    return getXattr(this.vol, this.resolve(path, follow), name)
  }

  setXattr(path: string, name: Buffer, value: Buffer, flags: SetXattrFlags = {}, follow = false): Inode {
    const inode = this.resolveOwned(path, follow)
    setXattr(this.vol, inode, name, value, flags)
    return inode
  }

  removeXattr(path: string, name: Buffer, follow = false): Inode {
    const inode = this.resolveOwned(path, follow)
    removeXattr(this.vol, inode, name)
    return inode
  }

  /** setXattr on an inode this fileset owns (one it made, or got from resolveOwned). */
  setXattrOf(inode: Inode, name: Buffer, value: Buffer, flags: SetXattrFlags = {}): void {
    setXattr(this.vol, inode, name, value, flags)
  }

  /** Replaces every attribute of an inode this fileset owns (an import or a copy). */
  replaceXattrs(inode: Inode, list: Xattr[]): void {
    replaceXattrs(this.vol, inode, list)
  }

  // ---------------------------------------------------------------- removing

  /** Drops one name of `inode` (already removed from its directory). */
  /**
   * This fileset's private, unnamed copy of shared inode `x` (an orphan, sharing x's blocks):
   * for a file open in another process (a server's mount) whose name in this fileset goes,
   * so that its writes stay this fileset's and never reach the filesets that keep `x`. The
   * observer is told, so that the holder follows the copy.
   */
  keepUnnamedCopy(x: Inode): Inode {
    const vol = this.vol
    const copy = vol.ialloc(x.r.mode, x.ino + 1)
    const generation = copy.r.generation
    copy.r = {...x.r, area: Buffer.alloc(x.r.area.length), share: 1, nlink: 0, generation, nextOrphan: 0}
    shareInto(vol, x, copy)
    holdXattrs(vol, copy)
    x.r.share--
    vol.idirty(x)
    vol.addOrphan(copy)
    vol.observer?.inodeCopied(this.fs.id, x.ino, copy.ino)
    return copy
  }

  dropName(inode: Inode): void {
    if (inode.isDir) {
      inode.r.nlink = 0
      this.vol.addOrphan(inode)
      return
    }
    if (inode.r.share > 1 && this.vol.openElsewhere?.(this.fs.id, inode.ino)) {
      // Open in this fileset through a server's mount: the open file becomes this fileset's
      // unnamed copy. In the server, the mount's node follows it (the observer) and holds it
      // (orphanHeld); a process the server lent the image to leaves it for the server to free.
      const copy = this.keepUnnamedCopy(inode)
      if (!this.vol.orphanHeld?.(copy.ino)) this.vol.keepOrphan(copy.ino)
      return
    }
    if (inode.r.share > 1) {
      // Shared with other filesets: this fileset just lets go of it.
      inode.r.share--
      this.vol.idirty(inode)
      return
    }
    inode.r.nlink--
    touch(inode.r, {c: true})
    this.vol.idirty(inode)
    if (inode.r.nlink === 0) this.vol.addOrphan(inode)
  }

  unlink(path: string): void {
    const {dir, name} = this.resolveParent(path)
    const e = this.lookupEntry(dir, name)
    if (!e) fail('ENOENT', `${this.where(path)}: no such file or directory`)
    if (e.type === DT_DIR) fail('EISDIR', `${this.where(path)}: is a directory (use rm -r)`)
    dirRemove(this.vol, dir, name)
    touch(dir.r, {m: true, c: true})
    this.dropName(this.vol.iget(e.ino))
    reapOrphans(this.vol)
  }

  rmdir(path: string): void {
    this.remove(path, {dirOnly: true})
  }

  /** rm [-r]: files and symlinks, and directories when recursive (or empty with dirOnly). */
  remove(path: string, opts: {recursive?: boolean, dirOnly?: boolean} = {}): void {
    const {dir, name, names} = this.resolveParent(path)
    const e = this.lookupEntry(dir, name)
    if (!e) fail('ENOENT', `${this.where(path)}: no such file or directory`)
    const inode = this.expanded(this.vol.iget(e.ino), names)
    if (inode.isDir) {
      if (!opts.recursive && !opts.dirOnly) fail('EISDIR', `${this.where(path)}: is a directory (use rm -r)`)
      if (!opts.recursive && dirCount(inode) > 0) fail('ENOTEMPTY', `${this.where(path)}: directory not empty`)
      this.beforeDirGoes(names, dir, false)
      dir.r.nlink--
    } else if (opts.dirOnly) {
      fail('ENOTDIR', `${this.where(path)}: not a directory`)
    }
    dirRemove(this.vol, dir, name)
    touch(dir.r, {m: true, c: true})
    this.vol.idirty(dir)
    this.dropName(inode)
    reapOrphans(this.vol)
  }

  /**
   * Removes the entry `name` of `dir` (recursively for a directory). `dir` must come from
   * resolveParent() or dirForChange() of path `dirPath`, which guarded it.
   */
  removeChild(dir: Inode, name: Buffer, dirPath: string): void {
    this.detachChild(dir, name, dirPath)
    reapOrphans(this.vol)
  }

  /**
   * removeChild without the reaping: the entry goes, and what lost its last name waits on the
   * orphan list, so that nothing is committed between this and the caller's next change
   * (a staged tree published in one transaction, src/ops/stage.ts).
   */
  detachChild(dir: Inode, name: Buffer, dirPath: string): void {
    const e = this.lookupEntry(dir, name)
    if (!e) return
    const inode = this.vol.iget(e.ino)
    if (inode.isDir) {
      this.beforeDirGoes([...this.resolveFull(dirPath, true).names, name], dir, false)
      dir.r.nlink--
    }
    dirRemove(this.vol, dir, name)
    touch(dir.r, {m: true, c: true})
    this.vol.idirty(dir)
    this.dropName(inode)
  }

  /** Renames within this fileset, replacing a compatible target as rename(2) does. */
  rename(from: string, to: string): void {
    const src = this.resolveParent(from)
    const se = this.lookupEntry(src.dir, src.name)
    if (!se) fail('ENOENT', `${this.where(from)}: no such file or directory`)
    const dst = this.resolveParent(to, se.type === DT_DIR ? 'dir' : 'other')
    const moving = this.vol.iget(se.ino)
    if (moving.isDir && dst.chain.some((d) => d.ino === moving.ino)) {
      fail('EINVAL', `cannot move ${this.where(from)} into itself`)
    }
    const de = this.lookupEntry(dst.dir, dst.name)
    if (de && de.ino === se.ino) return // same file: nothing to do, as rename(2)
    if (de) {
      // rename(2)'s rules, in GNU mv's words.
      const target = this.expanded(this.vol.iget(de.ino), dst.names)
      if (moving.isDir && !target.isDir) fail('ENOTDIR', `cannot overwrite non-directory '${this.where(to)}' with directory '${this.where(from)}'`)
      if (!moving.isDir && target.isDir) fail('EISDIR', `cannot overwrite directory '${this.where(to)}' with non-directory '${this.where(from)}'`)
      if (target.isDir && dirCount(target) > 0) fail('ENOTEMPTY', `cannot move '${this.where(from)}' to '${this.where(to)}': directory not empty`)
    }
    // Source and clones in flight: the moved directory's subtree stops depending on paths.
    if (moving.isDir) this.beforeDirGoes(src.names, src.dir, true)
    // The new name is made before the old one goes, and a target's entry is repointed in
    // place: a directory with no room for the name (a full image) fails the rename before
    // anything changed, never with the file named nowhere.
    if (de) {
      const target = this.vol.iget(de.ino)
      if (target.isDir) this.beforeDirGoes(dst.names, dst.dir, false)
      dirUpdate(this.vol, dst.dir, dst.name, {ino: se.ino, type: se.type, lastclone: se.lastclone})
      if (target.isDir) dst.dir.r.nlink--
      this.dropName(target)
    } else {
      dirAdd(this.vol, dst.dir, se.ino, se.type, dst.name, se.lastclone)
    }
    dirRemove(this.vol, src.dir, src.name)
    if (moving.isDir && src.dir !== dst.dir) {
      src.dir.r.nlink--
      dst.dir.r.nlink++
    }
    const t = now()
    touch(src.dir.r, {m: true, c: true}, t)
    touch(dst.dir.r, {m: true, c: true}, t)
    if (moving.r.share <= 1) touch(moving.r, {c: true}, t) // a shared inode is not copied for its ctime
    this.vol.idirty(src.dir)
    this.vol.idirty(dst.dir)
    this.vol.idirty(moving)
    reapOrphans(this.vol)
  }
}

/**
 * A new, empty directory named by no directory, kept on the orphan list and pinned for this
 * process: where a tree is built out of sight (a clone, a staged copy, a tar import) until one
 * transaction links it in. A crash before that leaves it to the next writable open's reaper;
 * whoever made it unpins it (Volume.pinnedOrphans) when done or failed. Owner: the caller's.
 */
export function newDetachedDir(vol: Volume, perm: number, owner: {uid: number, gid: number} = vol.creator ?? {uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0}): Inode {
  const d = vol.ialloc(S_IFDIR | perm)
  dirInit(d)
  d.r.nlink = 2
  d.r.uid = owner.uid
  d.r.gid = owner.gid
  d.r.dataVersion = 1
  touch(d.r, {a: true, m: true, c: true})
  vol.idirty(d)
  vol.addOrphan(d)
  vol.pinnedOrphans.add(d.ino)
  return d
}

/**
 * Fails with ENOSPC, before anything is made, when a symlink's target needs a block of its own
 * (longer than the inode holds) and none is free: made first, its inode and name would stay,
 * the target unwritten, in a mount's request (committed with the others though it failed).
 */
export function symlinkRoom(vol: Volume, target: Buffer): void {
  if (target.length > INODE_AREA_SIZE && vol.sb.freeBlocks === 0) fail('ENOSPC', 'no free blocks left in the image')
}

/**
 * Frees what the orphan list holds: directories are emptied entry by entry (subdirectories
 * join the list), files lose their blocks in steps, and the transaction may be committed
 * between steps because every step leaves the image consistent.
 *
 * A signal stops it ('EINTR') only until its first commit: the running transaction, with the
 * change that orphaned what it frees (an rm, a replaced file, a deleted fileset), is then
 * dropped. Its first commit commits that change too; after it, stopping would report
 * "interrupted" for work that is done, so on a signal it ends early instead, the rest left on
 * the (durable) list for the next writable open or reap (src/interrupt.ts).
 */
export function reapOrphans(vol: Volume): void {
  // Work that yields to a server's requests in the middle of a reap (Volume.yieldPoint) must
  // not start a second reap of the same list: the one running goes on until the list is empty.
  if (vol.reaping) return
  vol.reaping = true
  try {
    const first = vol.journal.seq
    const steps = reapSteps(vol)
    for (;;) {
      if (vol.journal.seq === first) {
        if (steps.next().done) return
      } else {
        if (interruptPending()) return
        if (uninterrupted(() => steps.next()).done) return
      }
    }
  } finally {
    vol.reaping = false
  }
}

/**
 * The reap of reapOrphans in steps: it yields after each step, where the image is consistent
 * (a server frees a deleted tree in slices between its mounts' requests, src/server/image.ts
 * reapSliced). The caller sets vol.reaping for the whole walk, so that no other reap starts
 * in between; Inode objects are taken again after each yield (the caller may commit there).
 */
export function* reapSteps(vol: Volume): Generator<void, void> {
  // A clone whose building stopped half-way (a crash) is dropped like a deleted fileset.
  for (const f of deletingFilesets(vol)) if (!vol.pinnedOrphans.has(f.rootIno)) dropFileset(vol, f)
  for (let guard = 0; ; guard++) {
    if (guard > vol.sb.inodeCount * 4) fail('EBADIMAGE', 'orphan list does not end; run prism fsck --repair')
    const ino = nextReapable(vol)
    if (ino === 0) return
    let inode = vol.iget(ino)
    if (inode.isDir && dirCount(inode) > 0) {
      for (const e of dirListByInode(vol, inode)) {
        inode = vol.iget(ino)
        dirRemove(vol, inode, e.name)
        const child = vol.iget(e.ino)
        if (child.isDir) {
          // An orphaned directory already has nlink 0 (dropName); it must not go negative,
          // as it is encoded whenever a commit falls between these steps.
          if (inode.r.nlink > 0) inode.r.nlink--
          child.r.nlink = 0
          vol.addOrphan(child)
        } else if (child.r.share > 1) {
          child.r.share-- // shared with other filesets: only this reference goes
          vol.idirty(child)
        } else {
          child.r.nlink--
          vol.idirty(child)
          if (child.r.nlink === 0) vol.addOrphan(child)
        }
        vol.maybeCommit()
        yield
      }
      continue
    }
    if (!inode.isDir && !(inode.r.flags & IF_INLINE)) {
      // Large files: release extents from the end in steps. The map is taken again after
      // each commit (an Inode's parts are not kept across one: fs/inode.ts).
      for (let ext = loadExtents(vol, inode); ext.length > 64; ext = loadExtents(vol, inode)) {
        const cut = ext.get(ext.length - 64).l
        for (const old of unmapRange(ext, cut, 0x8000_0000 - cut)) {
          vol.decRefRun(old.p, old.n)
          inode.r.blocks -= old.n
        }
        inode.extentsDirty = true
        vol.idirty(inode)
        vol.maybeCommit()
        yield
        inode = vol.iget(ino)
      }
    }
    inode.r.share--
    vol.removeOrphan(inode)
    if (inode.r.share <= 0) {
      releaseAll(vol, inode)
      dropXattrs(vol, inode)
      vol.ifree(inode)
    }
    vol.maybeCommit()
    yield
  }
}

/** Removes a fileset's record and orphans its tree (and an expanding clone's state file). */
export function dropFileset(vol: Volume, f: Fileset): void {
  // An expanding clone's hard-linked copies may count names it never expanded.
  if (f.state === FS_EXPANDING || f.state === FS_DELETING) recountLinks(vol, f)
  const root = vol.iget(f.rootIno)
  // Clones are independent of their parent; they inherit its parent as their origin.
  // Thousands of clones of it: their records change in as many transactions as need be (a
  // clone whose parent is already its grandparent is as consistent as one still pointing here).
  for (const child of childrenOf(vol, f.id)) {
    saveFileset(vol, {...child, parentId: f.parentId})
    vol.maybeCommit()
  }
  removeFileset(vol, f)
  if (f.stateIno !== 0) dropCloneState(vol, f.stateIno)
  if (f.srcFileset !== 0) releaseSource(vol, f.srcFileset)
  root.r.nlink = 0
  vol.idirty(root)
  vol.addOrphan(root)
}

/** The first orphan not pinned by a clone this process is building (nor held open by a server), or 0. */
function nextReapable(vol: Volume): number {
  let ino = vol.sb.orphanHead
  for (let guard = 0; ino !== 0 && (vol.pinnedOrphans.has(ino) || vol.orphanHeld?.(ino) || vol.keptOrphans.has(ino)); guard++) {
    if (guard > vol.sb.inodeCount) fail('EBADIMAGE', 'orphan list does not end; run prism fsck --repair')
    ino = vol.iget(ino).r.nextOrphan
  }
  return ino
}

Volume.defaultReaper = reapOrphans

export {DT_DIR, DT_LNK, DT_REG}
