// prism import: a tar archive into a fileset, all or nothing. The archive is extracted under
// a detached directory kept on the orphan list and pinned (as a clone is built, src/clone/
// clone.ts): intermediate commits are fine, nothing of it is reachable, and a crash or a
// failure leaves it to the reaper. The last transaction makes it visible: it becomes a new
// fileset (--create), the new directory at the target path, or it is merged into the existing
// target directory as `tar -x` merges into a directory, with GNU tar's replacement rules (a
// non-directory or an empty directory is replaced; a non-empty directory never is).
//
// Never writes outside the target: member names are bytes split at '/', a leading '/' is
// removed (as GNU tar does, with one warning), a name holding '..' is refused, a path that
// goes through a symlink or a non-directory is refused, a hard link must name an entry this
// archive made, and nothing is ever created through a symlink (paths are walked entry by entry,
// never resolved). Each refused entry is named on stderr; the rest is imported and the
// command exits 1. File data goes through the import's pooled buffers and the store's
// write-behind, as `prism cp` does (src/ops/copy.ts).
import {BLOCK_SIZE, DT_DIR, FS_ACTIVE, IF_ORPHAN, MAX_FILE_SIZE, MODE_NONE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, dtOfMode} from '../format/constants.js'
import {nameProblem} from '../format/dirent.js'
import {nameText} from '../format/name.js'
import {ACL_ACCESS, ACL_DEFAULT, XATTR_LIST_MAX, XATTR_SET_MAX, aclProblem, encodeAcl, xattrListSize, xattrSetSize, type Xattr} from '../format/xattr.js'
import {fail, PrismError} from '../errors.js'
import {checkInterrupt, uninterrupted} from '../interrupt.js'
import {DATA_BUFFER_SIZE} from '../journal/store.js'
import {dirAdd, dirCount, dirList, dirRemove, dirUpdate} from '../fs/dir.js'
import {addFileset, findFileset, getFileset, type Fileset} from '../fs/filesets.js'
import {touch, type Inode, type Timestamp} from '../fs/inode.js'
import {SmallFileBuffers} from '../ops/smallfiles.js'
import {Namespace, newDetachedDir, reapOrphans, splitPath} from '../fs/namespace.js'
import {checkXattr, chmodAcl, listXattrs} from '../fs/xattr.js'
import type {Volume} from '../fs/volume.js'
import {guardTree} from '../fs/expand.js'
import {TarFormatError, parseAclText} from './codec.js'
import {TarReader, type TarEntry, type TarSink} from './reader.js'
import {call, runNow, type Frame} from '../frames.js'

export interface ImportTarget {
  fileset: string
  /** the directory to extract into (merged), or a path to create; '/' for a fileset's root */
  path: string
  /** make `fileset` as a new fileset (it must not exist) */
  create?: boolean
}

export interface ImportOptions {
  /** one line per problem: a refused entry, a dropped attribute */
  onWarning?: (msg: string) => void
  onProgress?: (s: ImportStats) => void
  /** called once the transaction that makes the import visible is committed (before what it replaced is freed) */
  onVisible?: () => void
  /** the owner of the directories the archive does not name (the target's root with --create, parents it leaves out): by default this process's */
  owner?: {uid: number, gid: number}
}

/**
 * Bytes of the decompressed archive fed in one step of importSteps (a server's slice ends
 * between two): at most 32 entries (512-byte headers), 1-5 ms of CPU at 2 cores' load 12
 * (32 KiB: up to 20 ms).
 */
const PIECE = 16 * 1024

export interface ImportStats {
  entries: number
  files: number
  dirs: number
  symlinks: number
  hardlinks: number
  special: number
  bytes: number
  /** entries not imported (each named through onWarning) */
  refused: number
  /** attributes or ACLs not imported (each named through onWarning) */
  dropped: number
}

/** An entry refused: named on stderr, the import goes on. */
class Refused extends Error {}

interface DirInfo {
  ino: number
  generation: number
  /** made because a deeper entry needed it, not named by the archive */
  implicit: boolean
}

/** The next file's data, going to pooled buffers and from there to the store without a copy. */
interface Filler {
  inode: Inode
  size: number
  sparse: boolean
  /** a small file: its slice of the shared buffer (whole blocks) */
  slice: Buffer | null
  /** a file of at most 140 bytes (inline in its inode): its bytes */
  tiny: Buffer | null
  /** a large or sparse file: the pooled buffer now being filled, its file offset and bytes held */
  win: Buffer | null
  wStart: number
  fill: number
  /** bytes received */
  got: number
}

const ZEROS = Buffer.alloc(64 * 1024)

function isZero(buf: Buffer, n: number): boolean {
  for (let i = 0; i < n; i += ZEROS.length) {
    const len = Math.min(ZEROS.length, n - i)
    if (buf.compare(ZEROS, 0, len, i, i + len) !== 0) return false
  }
  return true
}

const alignDown = (n: number) => Math.floor(n / BLOCK_SIZE) * BLOCK_SIZE
const alignUp = (n: number) => Math.ceil(n / BLOCK_SIZE) * BLOCK_SIZE
/** A member's name as notices show it (an empty one is named as such). */
const show = (b: Buffer) => (b.length === 0 ? '(an empty name)' : nameText(b))

/** The count of components whose last ends at `at` (`ends` ascending), or -1 when none ends there. */
function endsAt(ends: number[], at: number): number {
  let lo = 0
  let hi = ends.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (ends[mid] === at) return mid + 1
    if (ends[mid] < at) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

/**
 * One import. Push the archive's bytes with write() (decompressed), then end(); on any
 * failure call abort(). Nothing is visible before end() returns.
 */
export class TarImport implements TarSink {
  readonly stats: ImportStats = {entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, special: 0, bytes: 0, refused: 0, dropped: 0}
  private readonly reader = new TarReader(this)
  /** the namespace over the detached tree being built */
  private readonly stage: Namespace
  private readonly root: Inode
  /** the target fileset's namespace (null with --create) */
  private readonly target: Namespace | null
  private readonly dirs = new Map<string, DirInfo>()
  /** directories whose times are set once everything is in (their entries change them) */
  private readonly dirTimes: Array<{ino: number, generation: number, atime: Timestamp, mtime: Timestamp}> = []
  private rootExplicit = false
  private cur: Filler | null = null
  /** the current entry is refused: its data is skipped */
  private skipping = false
  private readonly small: SmallFileBuffers
  private warnedSlash = false
  private lastReport = 0
  private done = false
  private idCache: {user: Map<string, number>, group: Map<string, number>} | null = null
  private readonly owner: {uid: number, gid: number}

  constructor(private readonly vol: Volume, private readonly to: ImportTarget, private readonly opts: ImportOptions = {}) {
    this.small = new SmallFileBuffers(vol.store)
    if (to.create) {
      if (findFileset(vol, to.fileset)) fail('EEXIST', `fileset '${to.fileset}' already exists`)
      this.target = null
    } else {
      this.target = new Namespace(vol, getFileset(vol, to.fileset))
      // The target must be a directory, or a new name in one.
      if (this.target.exists(to.path, true)) {
        if (!this.target.resolve(to.path, true).isDir) fail('ENOTDIR', `${this.target.where(to.path)}: not a directory`)
      } else this.target.resolveParent(to.path)
    }
    this.owner = opts.owner ?? {uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0}
    const root = newDetachedDir(vol, 0o755, this.owner)
    this.root = root
    const rec: Fileset = {
      slot: -1, id: 0, rootIno: root.ino, parentId: 0, state: FS_ACTIVE, mode: MODE_NONE, flags: 0, created: 0, clonestart: 0,
      stateIno: 0, srcFileset: 0, dirsDone: 0, dirsTotal: 0, name: to.fileset, coawCopied: 0, coawRewrites: 0,
    }
    this.stage = new Namespace(vol, rec)
    this.dirs.set('', {ino: root.ino, generation: root.r.generation, implicit: true})
  }

  /** The archive's next bytes (decompressed). */
  write(chunk: Buffer): void {
    try {
      this.reader.push(chunk)
    } catch (e) {
      throw this.archiveError(e)
    }
  }

  private archiveError(e: unknown): unknown {
    if (e instanceof TarFormatError) return new PrismError('EINVAL', `malformed archive: ${e.message}; nothing was imported`)
    return e
  }

  private warn(msg: string): void {
    this.opts.onWarning?.(msg)
  }

  private progress(): void {
    if (!this.opts.onProgress) return
    const t = Date.now()
    if (t - this.lastReport < 100) return
    this.lastReport = t
    this.opts.onProgress(this.stats)
  }

  // ---------------------------------------------------------------- entries

  entry(e: TarEntry): void {
    this.stats.entries++
    this.skipping = false
    try {
      this.place(e)
    } catch (err) {
      if (!(err instanceof Refused)) throw err
      this.stats.refused++
      this.skipping = true
      this.warn(`${show(e.path)}: ${err.message}; not imported`)
    }
  }

  data(chunk: Buffer, offset: number): void {
    if (this.skipping || !this.cur) return
    const f = this.cur
    f.got += chunk.length
    this.stats.bytes += chunk.length
    if (f.slice) chunk.copy(f.slice, offset)
    else if (f.tiny) chunk.copy(f.tiny, offset)
    else this.fillLarge(f, chunk, offset)
  }

  end(): void {
    const f = this.cur
    this.cur = null
    if (!f || this.skipping) {
      this.skipping = false
      return
    }
    const ns = this.stage
    if (f.slice) {
      if (f.size > 0) ns.writeInode(f.inode, 0, f.slice.subarray(0, f.size), true)
    } else if (f.tiny) {
      if (f.size > 0) ns.writeInode(f.inode, 0, f.tiny)
    } else this.flushWindow(f)
    if (f.inode.r.size < f.size) ns.truncateInode(f.inode, f.size)
    this.finishInode(f.inode)
    this.stats.files++
    this.progress()
    this.vol.maybeCommit()
  }

  /** Times and attributes of a file, symlink or special file, after its data. */
  private pending: {atime: Timestamp, mtime: Timestamp, xattrs: Xattr[]} | null = null

  private finishInode(inode: Inode): void {
    const p = this.pending!
    this.pending = null
    if (p.xattrs.length) this.stage.replaceXattrs(inode, p.xattrs)
    this.stage.setTimes(inode, p.atime, p.mtime)
  }

  /** Creates what an entry names in the tree being built; a Refused error names what is wrong. */
  private place(e: TarEntry): void {
    const {comps, parentKey, plainAt, end, ends} = this.split(e.path)
    if (e.unknownType !== undefined) {
      this.stats.dropped++
      this.warn(`${show(e.path)}: unknown entry type '${e.unknownType.replace(/[^\x20-\x7e]/g, '?')}', imported as a regular file`)
    }
    // (4294967295 is (uid_t)-1, which chown(2) takes as "leave it": no file can have it, as
    // `prism chown` refuses it)
    if (!Number.isInteger(e.uid) || e.uid < 0 || e.uid >= 0xffff_ffff || !Number.isInteger(e.gid) || e.gid < 0 || e.gid >= 0xffff_ffff) throw new Refused(`owner ${e.uid}:${e.gid} is out of range`)
    // (refused before anything is made or replaced; its data is passed over)
    if (e.type === 'file' && e.size > MAX_FILE_SIZE) throw new Refused(`its size, ${e.size} bytes, is more than a Prism file holds (${MAX_FILE_SIZE}, 8 TiB)`)
    const attrs = {uid: e.uid, gid: e.gid}
    const atime = e.atime ?? e.mtime
    const xattrs = this.attributes(e)
    const ns = this.stage
    if (comps.length === 0) {
      if (e.type !== 'dir') throw new Refused('names the target directory itself but is not a directory')
      this.root.r.mode = S_IFDIR | e.mode
      ns.chown(this.root, e.uid, e.gid)
      this.mergeXattrs(this.root, xattrs)
      this.rootExplicit = true
      this.dirTimes.push({ino: this.root.ino, generation: this.root.r.generation, atime, mtime: e.mtime})
      return
    }
    const name = comps[comps.length - 1]
    // The archive's own etc/passwd or etc/group, placed now: the names of ACLs are looked up
    // afresh from the next entry on (lookupId).
    if (comps.length === 2 && comps[0].toString('latin1') === 'etc' && /^(passwd|group)$/.test(comps[1].toString('latin1'))) this.idCache = null
    const {dir, key} = this.parentOf(comps, parentKey)
    // The next entry is likely in the same directory: its path is parsed from here on.
    if (parentKey === null && plainAt > 0) this.lastDir = {raw: Buffer.from(e.path.subarray(0, plainAt)), comps: comps.slice(0, -1), ends: ends.slice(0, -1), key}
    const existing = ns.lookupEntry(dir, name)
    const old = existing ? this.vol.iget(existing.ino) : null
    const childKey = key + '/' + name.toString('latin1')
    if (e.type === 'dir') {
      let d: Inode
      if (old?.isDir) {
        // A directory an earlier entry made: as GNU tar, the entry's attributes go over it.
        d = old
        d.r.mode = S_IFDIR | e.mode
        ns.chown(d, e.uid, e.gid)
        this.mergeXattrs(d, xattrs)
      } else {
        if (old) ns.removeChild(dir, name, '/' + comps.slice(0, -1).map(show).join('/'))
        d = ns.createIn(dir, name, S_IFDIR | e.mode, attrs)
        ns.replaceXattrs(d, xattrs)
      }
      this.dirs.set(childKey, {ino: d.ino, generation: d.r.generation, implicit: false})
      // ... or in this one
      this.lastDir = {raw: Buffer.from(e.path.subarray(0, end)), comps, ends, key: childKey}
      this.dirTimes.push({ino: d.ino, generation: d.r.generation, atime, mtime: e.mtime})
      this.stats.dirs++
      return
    }
    if (e.type === 'hardlink') {
      const target = this.linkTarget(e)
      if (old && old.ino === target.ino) return
      this.replaceable(old, dir, name, comps)
      ns.linkInode(target, dir, name)
      this.stats.hardlinks++
      return
    }
    this.replaceable(old, dir, name, comps)
    this.pending = {atime, mtime: e.mtime, xattrs}
    if (e.type === 'symlink') {
      if (e.linkpath.length === 0 || e.linkpath.length > 4095 || e.linkpath.includes(0)) throw new Refused('symbolic link target must be 1 to 4095 bytes')
      const inode = ns.createIn(dir, name, S_IFLNK | 0o777, attrs)
      ns.writeInode(inode, 0, e.linkpath)
      this.finishInode(inode)
      this.stats.symlinks++
      return
    }
    if (e.type === 'chardev' || e.type === 'blockdev' || e.type === 'fifo') {
      const ok = (v: number) => Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff
      if (!ok(e.devmajor) || !ok(e.devminor)) throw new Refused(`device number ${e.devmajor}:${e.devminor} is out of range`)
      const t = e.type === 'chardev' ? S_IFCHR : e.type === 'blockdev' ? S_IFBLK : S_IFIFO
      const inode = ns.createSpecialIn(dir, name, t | e.mode, {major: e.devmajor, minor: e.devminor}, attrs)
      this.finishInode(inode)
      this.stats.special++
      return
    }
    // A regular file: its data follows.
    const inode = ns.createIn(dir, name, S_IFREG | e.mode, attrs)
    const sparse = e.sparse !== null
    const f: Filler = {inode, size: e.size, sparse, slice: null, tiny: null, win: null, wStart: 0, fill: 0, got: 0}
    // Tiny files go inline (collected whole); small ones share pooled buffers; large and
    // sparse ones fill pooled buffers a window at a time.
    if (!sparse && e.size <= 140) f.tiny = Buffer.alloc(e.size)
    else if (!sparse && alignUp(e.size) < DATA_BUFFER_SIZE) f.slice = this.small.take(alignUp(e.size))
    this.cur = f
  }

  /**
   * The last directory path met (an entry's parent, or a directory entry): its bytes as the
   * archive spells them, its components, where each ends in those bytes, and its key in
   * `dirs`. An entry in it or in a directory above it (a tar in name order goes down a deep
   * tree by its directories, then up by their files) has its path parsed from there: parsing
   * the whole path (and looking each level up) for each entry cost an import of a tree N
   * levels deep N^2 components, minutes for 10,000 levels.
   */
  private lastDir: {raw: Buffer, comps: Buffer[], ends: number[], key: string} | null = null

  /**
   * An entry's path as components (components()) and where each ends in `path`, and its
   * parent's key when the parent is lastDir or above it. `plainAt`: where the last component
   * starts (after its '/'), when it is a name (not '.' or '..'), else -1; `end`: where the
   * path ends, trailing slashes left out.
   */
  private split(path: Buffer): {comps: Buffer[], ends: number[], parentKey: string | null, plainAt: number, end: number} {
    let end = path.length
    while (end > 0 && path[end - 1] === 0x2f) end--
    const j = end > 0 ? path.lastIndexOf(0x2f, end - 1) : -1
    const c = path.subarray(j + 1, end)
    const plain = j >= 0 && !(c.length === 1 && c[0] === 0x2e) && !(c.length === 2 && c[0] === 0x2e && c[1] === 0x2e)
    const plainAt = plain ? j : -1
    const last = this.lastDir
    // k: the parent is lastDir's first k components (spelt as lastDir spells them)
    let k = -1
    if (plain && last && j <= last.raw.length && last.raw.compare(path, 0, j, 0, j) === 0) {
      if (j === last.raw.length) k = last.comps.length
      else if (last.raw[j] === 0x2f) k = endsAt(last.ends, j)
    }
    if (k > 0) {
      const p = nameProblem(c)
      if (p) throw new Refused(p)
      const comps = last!.comps.slice(0, k)
      comps.push(Buffer.from(c))
      const ends = last!.ends.slice(0, k)
      ends.push(end)
      let keyLen = 0
      if (k < last!.comps.length) for (let i = 0; i < k; i++) keyLen += 1 + last!.comps[i].length
      return {comps, ends, parentKey: k === last!.comps.length ? last!.key : last!.key.slice(0, keyLen), plainAt, end}
    }
    const ends: number[] = []
    return {comps: this.components(path, ends), ends, parentKey: null, plainAt, end}
  }

  /** The member name as components, after GNU tar's rules (leading '/' removed, '..' refused). */
  private components(path: Buffer, ends?: number[]): Buffer[] {
    let start = 0
    while (start < path.length && path[start] === 0x2f) start++
    if (start > 0 && !this.warnedSlash && start < path.length) {
      this.warnedSlash = true
      this.warn("removing leading '/' from member names")
    }
    const out: Buffer[] = []
    let i = start
    while (i <= path.length) {
      let j = path.indexOf(0x2f, i)
      if (j < 0) j = path.length
      const c = path.subarray(i, j)
      i = j + 1
      if (c.length === 0 || (c.length === 1 && c[0] === 0x2e)) continue
      if (c.length === 2 && c[0] === 0x2e && c[1] === 0x2e) throw new Refused("member name contains '..'")
      const p = nameProblem(c)
      if (p) throw new Refused(p)
      out.push(Buffer.from(c))
      ends?.push(j)
    }
    return out
  }

  /**
   * The directory that holds the last component, made (implicitly) where missing; never through
   * a symlink. The walk starts at the deepest directory of the path already known (the
   * parent itself, for all but the first entry of a directory): from the root, each entry of
   * a tree N levels deep cost N lookups of keys up to N long, and an import of such a tree
   * grew as N^3 (10,000 levels took minutes). A known directory's ancestors are known too,
   * and sound: a directory is removed only empty.
   */
  private parentOf(comps: Buffer[], parentKey: string | null): {dir: Inode, key: string} {
    if (parentKey !== null) {
      const d = this.knownDir(parentKey)
      if (d) return {dir: d, key: parentKey}
    }
    const n = comps.length - 1
    // ends[i]: where the key of comps[0..i] ends in `full`, the parent's key
    const ends: number[] = new Array(n)
    let full = ''
    if (n > 0) {
      const parts = new Array<string>(n)
      let len = 0
      for (let i = 0; i < n; i++) {
        parts[i] = comps[i].toString('latin1')
        len += 1 + parts[i].length
        ends[i] = len
      }
      full = '/' + parts.join('/')
    }
    let dir = this.root
    let start = 0
    for (let i = n - 1; i >= 0; i--) {
      const d = this.knownDir(full.slice(0, ends[i]))
      if (d) {
        dir = d
        start = i + 1
        break
      }
    }
    for (let i = start; i < n; i++) {
      const c = comps[i]
      const key = full.slice(0, ends[i])
      const e = this.stage.lookupEntry(dir, c)
      if (!e) {
        const d = this.stage.createIn(dir, c, S_IFDIR | 0o755, this.owner)
        this.dirs.set(key, {ino: d.ino, generation: d.r.generation, implicit: true})
        dir = d
        continue
      }
      const d = this.vol.iget(e.ino)
      const where = comps.slice(0, i + 1).map(show).join('/')
      if (d.isLnk) throw new Refused(`path goes through the symbolic link '${where}'`)
      if (!d.isDir) throw new Refused(`'${where}' is not a directory`)
      this.dirs.set(key, {ino: d.ino, generation: d.r.generation, implicit: false})
      dir = d
    }
    return {dir, key: full}
  }

  /** The directory made or met at `key` in the tree being built; null when unknown, or gone since (forgotten). */
  private knownDir(key: string): Inode | null {
    const known = this.dirs.get(key)
    if (!known) return null
    const d = this.vol.tryIget(known.ino)
    if (d && d.isDir && d.r.generation === known.generation && !(d.r.flags & IF_ORPHAN)) return d
    this.dirs.delete(key)
    return null
  }

  /** A hard link's target: an entry of this archive, found without following any symlink. */
  private linkTarget(e: TarEntry): Inode {
    let comps: Buffer[]
    try {
      comps = this.components(e.linkpath)
    } catch (err) {
      if (err instanceof Refused) throw new Refused(`hard link to '${show(e.linkpath)}': ${err.message}`)
      throw err
    }
    const notHere = () => new Refused(`hard link to '${show(e.linkpath)}', which is not an entry of this archive`)
    if (comps.length === 0) throw notHere()
    let cur = this.root
    for (let i = 0; i < comps.length; i++) {
      const ent = this.stage.lookupEntry(cur, comps[i])
      if (!ent) throw notHere()
      const next = this.vol.iget(ent.ino)
      if (i < comps.length - 1) {
        if (!next.isDir) throw new Refused(`hard link to '${show(e.linkpath)}', whose path goes through a symbolic link or a file`)
        cur = next
      } else {
        if (next.isDir) throw new Refused(`hard link to the directory '${show(e.linkpath)}'`)
        return next
      }
    }
    throw notHere()
  }

  /** What is at `name` may be replaced by a non-directory: not a non-empty directory (GNU tar's rule). */
  private replaceable(old: Inode | null, dir: Inode, name: Buffer, comps: Buffer[]): void {
    if (!old) return
    if (old.isDir && dirCount(old) > 0) throw new Refused('would replace a non-empty directory')
    this.stage.removeChild(dir, name, '/' + comps.slice(0, -1).map(show).join('/'))
  }

  /** The entry's extended attributes and ACLs, each checked; what cannot be kept is named and dropped. */
  private attributes(e: TarEntry): Xattr[] {
    const out = new Map<string, Xattr>()
    const drop = (what: string, why: string) => {
      this.stats.dropped++
      this.warn(`${show(e.path)}: ${what} not imported: ${why}`)
    }
    for (const x of e.xattrs) {
      try {
        checkXattr(x.name, x.value)
      } catch (err) {
        if (err instanceof PrismError) { drop(`attribute '${nameText(x.name)}'`, err.message); continue }
        throw err
      }
      out.set(x.name.toString('latin1'), {name: x.name, value: x.value})
    }
    const acl = (text: string | null, name: string) => {
      if (text === null || out.has(name)) return
      try {
        const v = encodeAcl(parseAclText(text, (kind, n) => this.lookupId(kind, n)))
        const p = aclProblem(v)
        if (p) throw new Error(p)
        if (v.length > 4) out.set(name, {name: Buffer.from(name), value: v})
      } catch (err) {
        drop(name === ACL_ACCESS ? 'access ACL' : 'default ACL', (err as Error).message)
      }
    }
    acl(e.aclAccess, ACL_ACCESS)
    acl(e.aclDefault, ACL_DEFAULT)
    if (e.type !== 'dir' && out.has(ACL_DEFAULT)) {
      out.delete(ACL_DEFAULT)
      drop('default ACL', 'only a directory has one')
    }
    const list = [...out.values()]
    if (xattrSetSize(list) > XATTR_SET_MAX || xattrListSize(list) > XATTR_LIST_MAX) {
      drop('extended attributes', `they take more than an inode holds (${XATTR_LIST_MAX} bytes of names)`)
      return []
    }
    return list
  }

  /** A user or group name of an ACL: the archive's own /etc/passwd or /etc/group if extracted already, else the target fileset's. */
  private lookupId(kind: 'user' | 'group', name: string): number | null {
    if (!this.idCache) {
      this.idCache = {user: new Map(), group: new Map()}
      for (const ns of [this.target, this.stage]) {
        if (!ns) continue
        for (const [k, file] of [['user', '/etc/passwd'], ['group', '/etc/group']] as const) {
          try {
            const st = ns.stat(file, false)
            if (st.type !== 'file' || st.size > 4 * 1024 * 1024) continue
            for (const line of ns.readFile(file).toString('utf8').split('\n')) {
              const f = line.split(':')
              if (f.length >= 3 && /^\d+$/.test(f[2])) this.idCache[k].set(f[0], Number(f[2]))
            }
          } catch (err) {
            if (!(err instanceof PrismError)) throw err
          }
        }
      }
    }
    return this.idCache[kind].get(name) ?? null
  }

  // ---------------------------------------------------------------- file data

  /**
   * Data of a large or sparse file, at increasing offsets: copied into a pooled buffer for a
   * window of the file, written when full. A gap of whole blocks (a sparse file's hole)
   * stays a hole; a gap inside a block is zeros.
   */
  private fillLarge(f: Filler, chunk: Buffer, off: number): void {
    let c = chunk
    while (c.length > 0) {
      if (f.win) {
        const end = f.wStart + f.fill
        if (off < end) {
          // Regions out of order (a damaged map): written as they come.
          this.flushWindow(f)
          this.stage.writeInode(f.inode, off, Buffer.from(c))
          return
        }
        if (off > end) {
          if (alignDown(off) > alignUp(end) || off - f.wStart >= f.win.length) this.flushWindow(f)
          else {
            f.win.fill(0, f.fill, off - f.wStart)
            f.fill = off - f.wStart
          }
        }
      }
      if (!f.win) {
        f.win = this.vol.store.dataBuffer()
        f.wStart = alignDown(off)
        f.fill = off - f.wStart
        if (f.fill > 0) f.win.fill(0, 0, f.fill)
      }
      const n = Math.min(f.win.length - f.fill, c.length)
      c.copy(f.win, f.fill, 0, n)
      f.fill += n
      off += n
      c = c.subarray(n)
      if (f.fill === f.win.length) this.flushWindow(f)
    }
  }

  /**
   * Writes the window: runs of blocks holding data, straight from the pooled buffer. A block
   * of zeros is left a hole (as a hole of a sparse entry is), so a disk image archived
   * without --sparse takes no more room in the image than the host gave it.
   */
  private flushWindow(f: Filler): void {
    const win = f.win
    if (!win) return
    f.win = null
    try {
      let b = 0
      while (b < f.fill) {
        const zero = (at: number) => isZero(win.subarray(at, Math.min(at + BLOCK_SIZE, f.fill)), Math.min(BLOCK_SIZE, f.fill - at))
        if (zero(b)) { b += BLOCK_SIZE; continue }
        let e = b + BLOCK_SIZE
        while (e < f.fill && !zero(e)) e += BLOCK_SIZE
        const end = Math.min(e, f.fill)
        this.stage.writeInode(f.inode, f.wStart + b, win.subarray(b, end), true)
        b = e
      }
    } finally {
      this.vol.store.doneWith(win)
    }
  }

  // ---------------------------------------------------------------- the end

  /**
   * Ends the import; the archive must be complete. Directory times are set, the tree is committed out of sight, and
   * one more transaction makes it visible. Returns the statistics.
   */
  finish(): ImportStats {
    try {
      this.reader.finish()
    } catch (e) {
      throw this.archiveError(e)
    }
    if (this.cur) throw new PrismError('EINVAL', 'malformed archive: ends inside a file; nothing was imported')
    this.releaseShared()
    for (const t of this.dirTimes) {
      const d = this.vol.tryIget(t.ino)
      if (d && d.isDir && d.r.generation === t.generation) this.stage.setTimes(d, t.atime, t.mtime)
    }
    // Everything built so far is durable, unreachable: the last transaction holds only what makes it visible.
    this.vol.commit()
    const vol = this.vol
    const root = this.root
    if (this.to.create) {
      if (findFileset(vol, this.to.fileset)) fail('EEXIST', `fileset '${this.to.fileset}' already exists`)
      vol.removeOrphan(root)
      addFileset(vol, this.to.fileset, root.ino)
    } else if (!this.target!.exists(this.to.path, true)) {
      const {dir, name} = this.target!.resolveParent(this.to.path)
      if (!this.rootExplicit) touch(root.r, {a: true, m: true, c: true})
      vol.removeOrphan(root)
      root.r.nlink = 2 + dirList(vol, root).filter((e) => e.type === DT_DIR).length
      vol.idirty(root)
      dirAdd(vol, dir, root.ino, DT_DIR, name)
      dir.r.nlink++
      touch(dir.r, {m: true, c: true})
      vol.idirty(dir)
    } else {
      const plan: Step[] = []
      runNow(this.planMerge(root, this.to.path, plan))
      if (this.rootExplicit) plan.push({k: 'attrs', from: root.ino, toPath: this.to.path, to: this.target!.resolve(this.to.path, true).ino})
      this.applyMerge(plan)
    }
    // The last transaction must fit the journal whole, or the import would show in parts.
    if (vol.txnLogged > vol.journal.maxBlocks * 0.9) {
      vol.abort()
      fail('EFBIG', `merging the archive into ${this.target!.where(this.to.path)} changes more metadata than one journal transaction holds (${vol.journal.maxBlocks} blocks); nothing was imported. Import into a new or empty directory, or into a new fileset with --create`)
    }
    // A signal that came before stops the import here, nothing of it shown. After this
    // commit it is done: what follows (freeing what the merge replaced) is not interrupted.
    checkInterrupt()
    vol.commit()
    this.done = true
    this.opts.onVisible?.()
    vol.pinnedOrphans.delete(root.ino)
    // What the merge replaced, and entries it refused, are freed now, out of sight: the import
    // is done, and a signal no longer stops it.
    uninterrupted(() => reapOrphans(vol))
    this.opts.onProgress?.(this.stats)
    return this.stats
  }

  /**
   * After a failure: nothing of the import stays (what it committed is reaped now, or at the
   * next open). `shared`: the running transaction holds others' changes too (a server's), so
   * it is kept, and the tree built so far is only let go of, on the orphan list, for the
   * caller to reap.
   */
  abort(shared = false): void {
    if (this.done) return
    this.done = true
    // (a large file's window goes back to the store's pool: a server goes on using it)
    if (this.cur?.win) this.vol.store.doneWith(this.cur.win)
    this.cur = null
    if (shared) {
      this.releaseShared()
      this.vol.pinnedOrphans.delete(this.root.ino)
      return
    }
    try {
      this.vol.abort()
      reapOrphans(this.vol)
      this.vol.commit()
    } catch {
      // The next writable open reaps it.
    }
  }

  private releaseShared(): void {
    this.small.release()
  }

  // ---------------------------------------------------------------- merge

  /**
   * Pass 1 of a merge: walks the built tree against the target, guarding every target
   * directory that will change (clones still expanding from it copy first; that may commit,
   * which is fine: nothing has changed yet) and lists the steps. Conflicts are refused here.
   */
  private *planMerge(src: Inode, tPath: string, plan: Step[]): Frame {
    const t = this.target!
    const tDir = t.dirForChange(tPath)
    for (const e of dirList(this.vol, src)) {
      const s = this.vol.iget(e.ino)
      const childPath = (tPath.endsWith('/') ? tPath : tPath + '/') + nameText(e.name)
      const te = t.lookupEntry(tDir, e.name)
      if (!te) {
        plan.push({k: 'move', from: src.ino, to: tDir.ino, name: e.name})
        continue
      }
      let tc = this.vol.iget(te.ino)
      if (s.isDir) {
        const implicit = this.isImplicit(s)
        if (tc.isDir) {
          yield* call(this.planMerge(s, childPath, plan))
          if (!implicit) plan.push({k: 'attrs', from: s.ino, to: tc.ino, toPath: childPath})
          continue
        }
        if (implicit) {
          yield* call(this.refuseTree(s, childPath, tc.isLnk ? `path goes through the symbolic link ${t.where(childPath)}` : `${t.where(childPath)} is not a directory`))
          continue
        }
        plan.push({k: 'replace', from: src.ino, to: tDir.ino, name: e.name})
        continue
      }
      if (tc.isDir) {
        tc = t.resolve(childPath, false) // expanded if the target is a clone still expanding
        if (dirCount(tc) > 0) {
          this.refuse(childPath, `would replace the non-empty directory ${t.where(childPath)}`)
          continue
        }
        const at = t.mountedOn(tc.ino)
        if (at) {
          this.refuse(childPath, `would replace ${t.where(childPath)}, which is mounted on ${at}`)
          continue
        }
        guardTree(this.vol, t.fs, t.resolveFull(childPath, false).names)
      }
      plan.push({k: 'replace', from: src.ino, to: tDir.ino, name: e.name})
    }
  }

  /** inode:generation -> implicit, of the first directory of that inode in `dirs` (made for the merge, once the tree is built) */
  private implicitOf: Map<string, boolean> | null = null

  private isImplicit(d: Inode): boolean {
    if (!this.implicitOf) {
      // (one pass over `dirs`: scanning it for each directory merged was quadratic)
      this.implicitOf = new Map()
      for (const info of this.dirs.values()) {
        const k = `${info.ino}:${info.generation}`
        if (!this.implicitOf.has(k)) this.implicitOf.set(k, info.implicit)
      }
    }
    return this.implicitOf.get(`${d.ino}:${d.r.generation}`) ?? false
  }

  private refuse(path: string, why: string): void {
    this.stats.refused++
    this.warn(`${path.replace(/^\//, '')}: ${why}; not imported`)
  }

  /** Names every entry below an implicit directory that cannot be merged. */
  private *refuseTree(d: Inode, path: string, why: string): Frame {
    for (const e of dirList(this.vol, d)) {
      const p = `${path}/${nameText(e.name)}`
      const c = this.vol.iget(e.ino)
      if (c.isDir && this.isImplicit(c)) yield* call(this.refuseTree(c, p, why))
      else this.refuse(p, why)
    }
  }

  /**
   * Sets the attributes a directory entry carries on directory `d` (through `ns`), which may
   * hold some already (an earlier entry for it in this archive, or the target's own directory
   * in a merge): as GNU tar extracts over a directory, the entry's go over those of the same
   * name and the others stay (an SELinux label, a user attribute); an ACL that stays follows
   * the mode the entry gave.
   */
  private mergeXattrs(d: Inode, xattrs: Array<{name: Buffer, value: Buffer}>, ns: Namespace = this.stage): void {
    const merged = new Map(listXattrs(this.vol, d).map((x) => [x.name.toString('latin1'), {name: x.name, value: x.value}]))
    if (merged.size === 0) return ns.replaceXattrs(d, xattrs)
    for (const x of xattrs) merged.set(x.name.toString('latin1'), x)
    ns.replaceXattrs(d, [...merged.values()])
    if (merged.has(ACL_ACCESS) && !xattrs.some((x) => x.name.toString('latin1') === ACL_ACCESS)) chmodAcl(this.vol, d)
  }

  /** Pass 2: the steps, in one transaction; nothing here commits. */
  private applyMerge(plan: Step[]): void {
    const vol = this.vol
    for (const st of plan) {
      if (st.k === 'attrs') {
        const s = vol.iget(st.from)
        const d = vol.iget(st.to)
        d.r.mode = S_IFDIR | (s.r.mode & 0o7777)
        d.r.uid = s.r.uid
        d.r.gid = s.r.gid
        this.mergeXattrs(d, listXattrs(vol, s).map((x) => ({name: x.name, value: x.value})), this.target!)
        this.target!.setTimes(d, {s: s.r.atimeS, ns: s.r.atimeNs}, {s: s.r.mtimeS, ns: s.r.mtimeNs})
        touch(d.r, {c: true})
        vol.idirty(d)
        continue
      }
      const from = vol.iget(st.from)
      const to = vol.iget(st.to)
      const ent = dirRemove(vol, from, st.name)
      const moving = vol.iget(ent.ino)
      if (moving.isDir) from.r.nlink--
      vol.idirty(from)
      if (st.k === 'move') {
        dirAdd(vol, to, ent.ino, ent.type, st.name)
      } else {
        const old = this.target!.lookupEntry(to, st.name)!
        dirUpdate(vol, to, st.name, {ino: ent.ino, type: dtOfMode(moving.r.mode)})
        const gone = vol.iget(old.ino)
        if (gone.isDir) {
          gone.r.nlink = 0
          vol.addOrphan(gone)
          to.r.nlink--
        } else if (gone.r.share > 1) {
          gone.r.share--
          vol.idirty(gone)
        } else {
          gone.r.nlink--
          touch(gone.r, {c: true})
          vol.idirty(gone)
          if (gone.r.nlink === 0) vol.addOrphan(gone)
        }
      }
      if (moving.isDir) to.r.nlink++
      touch(to.r, {m: true, c: true})
      vol.idirty(to)
    }
  }
}

type Step =
  | {k: 'move' | 'replace', from: number, to: number, name: Buffer}
  | {k: 'attrs', from: number, to: number, toPath: string}

/**
 * Imports the archive whose bytes (as stored: compressed or not) `raw` yields; all or
 * nothing: `prism import` alone (src/tar/io.ts importArchive).
 */
export async function importStream(vol: Volume, target: ImportTarget, raw: AsyncIterable<Buffer>, opts: ImportOptions = {}): Promise<ImportStats> {
  const {decompressed} = await import('./compress.js')
  const imp = new TarImport(vol, target, opts)
  try {
    for await (const chunk of decompressed(raw)) imp.write(chunk)
    return imp.finish()
  } catch (e) {
    imp.abort()
    throw e
  }
}

/**
 * The same import as steps, run by a server in slices between its mounts' requests
 * (src/server/import.ts): each step feeds `imp` at most PIECE bytes of the decompressed
 * archive, which `next()` gives: null while none have come (the step waits; the caller
 * resumes the steps once some have), 'end' at its end. On failure the running transaction,
 * which holds the mounts' changes too, is kept: what the import left on the orphan list is
 * the caller's to reap.
 */
export function* importSteps(imp: TarImport, next: () => Buffer | null | 'end'): Generator<void, ImportStats> {
  try {
    for (let chunk = next(); chunk !== 'end'; chunk = next()) {
      if (chunk === null) {
        yield
        continue
      }
      for (let o = 0; o < chunk.length; o += PIECE) {
        imp.write(chunk.length <= PIECE ? chunk : chunk.subarray(o, o + PIECE))
        yield
      }
    }
    return imp.finish()
  } catch (e) {
    imp.abort(true)
    throw e
  }
}

/** Parses a target: `FILESET:/path` (merged into) or, with create, a new fileset's name. */
export function importTargetPath(path: string): string {
  return '/' + splitPath(path).join('/')
}
