// Space accounting per fileset, as `zfs list -o space` reports it: `referenced` is every
// block the fileset can reach (each counted once), `unique` the blocks that deleting the
// fileset would free: blocks whose every reference comes from this fileset's own inodes.
//
// One pass serves every fileset (`prism fileset list`): each fileset's tree is walked once,
// and what an inode shared by many filesets contributes is worked out once, not once per
// fileset.
//
// A clone still expanding (async or lazy) reaches, through each directory it has not expanded
// yet, the tree that directory shows: its source's, less what the clone leaves out (as `ls`
// shows it, and as expansion will make it). That tree counts in the clone's FILES, DIRS and
// REFER, never in its UNIQUE (deleting the clone frees none of it); and a file shown so is not
// its own fileset's alone either (deleting the source expands such clones first: they keep it).
// Such a tree is worked out once for all the clones that show it (`Shown`): 10,000 lazy
// clones of one fileset cost one walk of it, not 10,000.
//
// Nothing is sized by the image: a block is remembered only when more than one mapping refers
// to it (its reference count is above 1), so the cost is the walk, whatever the image's size
// (a per-block array would cost its size once per fileset).
import {isDamage, type PrismError} from '../errors.js'
import {DT_DIR, FS_EXPANDING, IF_HASHED, IF_INLINE, IF_UNEXPANDED, isSpecial} from '../format/constants.js'
import type {Extent} from '../format/extent.js'
import {INODE_AREA_OFF, INODE_FIELD} from '../format/inode.js'
import {readU64} from '../format/le64.js'
import {nameText, nameTextAt} from '../format/name.js'
import {ReadWindow} from '../journal/store.js'
import {dirForEachRawByInode, hashedDirForEachRaw, inInodeOrder, inlineDirForEachRaw, type RawEntryFn} from './dir.js'
import {linkedShownAs, shownDir, shownListing, type ExpandNode} from './expand.js'
import {extentsInPlace, loadExtents} from './extents.js'
import {listFilesets, type Fileset} from './filesets.js'
import type {Inode} from './inode.js'
import type {Volume} from './volume.js'

export interface FilesetSpace {
  referencedBlocks: number
  uniqueBlocks: number
  files: number
  dirs: number
}

/** What one inode maps: blocks counted once (reference count 1), and the others. */
interface Mapped {
  single: number
  /** blocks with a reference count above 1 */
  shared: number[]
  /** the inode's attribute inode (FORMAT.md §14), 0 = none */
  xattrIno: number
  nlink: number
  share: number
}

/** The blocks `inode` maps (data, extent-tree nodes, directory blocks), split by reference count. */
function mapped(vol: Volume, inode: Inode): Mapped {
  const out: Mapped = {single: 0, shared: [], xattrIno: inode.r.xattrIno, nlink: inode.r.nlink, share: inode.r.share}
  if (inode.r.flags & IF_INLINE || inode.isSpecial) return out
  return countRuns(vol, loadExtents(vol, inode), inode.treeBlocks, out)
}

/** Adds the blocks of `runs` and of `tree` (single blocks) to `out` by their reference counts. */
function countRuns(vol: Volume, runs: Iterable<Extent>, tree: number[], out: Mapped): Mapped {
  const add = (first: number, counts: Uint8Array) => {
    for (let k = 0; k < counts.length; k++) {
      if (counts[k] <= 1) out.single++
      else out.shared.push(first + k)
    }
  }
  for (const e of runs) vol.forEachRefcounts(e.p, e.n, add)
  for (const t of tree) vol.forEachRefcounts(t, 1, add)
  return out
}

/** The space of every fileset, in one pass (see the top of this file). */
export function allFilesetSpace(vol: Volume, filesets: Fileset[], onDamage?: (fs: Fileset, e: PrismError) => void): Map<number, FilesetSpace> {
  const w = new Walker(vol)
  // Every fileset's root, read from the inode table in a few large reads rather than one
  // read (of a few blocks) per root as the walk meets them: 10,000 clones' roots lie in
  // several hundred table blocks.
  const roots = new Array<number>(filesets.length)
  for (let i = 0; i < filesets.length; i++) roots[i] = filesets[i].rootIno
  vol.prefetchInodes(roots)
  const done = w.findShown()
  const out = new Map<number, FilesetSpace>()
  for (const fs of filesets) {
    const known = done.get(fs.id)
    if (known) {
      out.set(fs.id, known)
      continue
    }
    if (!onDamage) {
      out.set(fs.id, w.walk(fs))
      continue
    }
    // With onDamage, a fileset whose tree the damage keeps from being walked gets no figures
    // (it is handed there); the others are counted.
    try {
      out.set(fs.id, w.walk(fs))
    } catch (e) {
      if (!isDamage(e)) throw e
      onDamage(fs, e)
    }
  }
  return out
}

export function filesetSpace(vol: Volume, fs: Fileset): FilesetSpace {
  const w = new Walker(vol)
  // (whether another fileset's clones show its files: those are not its alone)
  return w.findShown().get(fs.id) ?? w.walk(fs)
}

/**
 * What a directory not expanded yet shows (its source's blocks, and all below it): worked out once for
 * every directory that shows the same tree (space.ts, top). Hard-linked files are kept apart:
 * which inode each is in a clone (the source's, or the clone's copy) depends on the clone.
 */
interface Shown {
  files: number
  dirs: number
  /** blocks with a reference count of 1 */
  single: number
  /** blocks with a reference count above 1 (repeats allowed) */
  shared: number[]
  /** hard-linked files, as shownListing gives them (repeats allowed) */
  linked: number[]
  /** attribute inodes named */
  attrs: number[]
}

/** Nothing mapped: what an inline or special inode contributes, apart from its attribute inode. */
const NO_BLOCKS: number[] = []

/**
 * The walk of one fileset after another. What it remembers about one fileset is kept in
 * collections it empties for the next (a fileset of a lazy clone not yet expanded is one
 * inline root: making six collections for it cost more than the walk). An inline or special
 * inode (most of a tree of small files, and every unexpanded root), and a hashed directory
 * whose map lies in its inode, is read in place in the inode table (Volume.inodeInTable), with
 * no Inode built, the directory's buckets read uncached through a window (a fileset's lie
 * together); others go through iget.
 */
class Walker {
  /** inodes shared between filesets (share > 1): what they map, worked out once for all filesets */
  private readonly sharedInodes = new Map<number, Mapped>()
  private out: FilesetSpace = {referencedBlocks: 0, uniqueBlocks: 0, files: 0, dirs: 0}
  /** blocks with several references, met in this fileset (each counted once) */
  private readonly seenShared = new Set<number>()
  /** of those, references from this fileset's own inodes */
  private readonly own = new Map<number, number>()
  /** hard-linked inodes met (a name each: counted once) */
  private readonly seenLinked = new Set<number>()
  /** attribute inodes reached (FORMAT.md §14): references from this fileset's own inodes */
  private readonly attrs = new Map<number, number>()
  private readonly stack: number[] = []
  /** directories walked: a damaged tree must not make the walk go round */
  private readonly seenDirs = new Set<number>()
  /** what directories not expanded yet show, by the directory they read through to (Shown) */
  private readonly shown = new Map<number, Shown>()
  /** files some fileset's directories not expanded yet show: never their own fileset's alone */
  private readonly shownFiles = new Set<number>()
  /** attribute inodes of what those show (a directory's too: its expansion will share them) */
  private readonly shownAttrs = new Set<number>()
  /** the fileset being walked, and for one still expanding the paths of the directories on the stack */
  private fs: Fileset | null = null
  private expanding = false
  private readonly paths: string[] = []
  private dirPath = ''
  /** a directory's and a child's record in place (Volume.inodeInTable) */
  private readonly atDir = {buf: NO_BUF, off: 0}
  private readonly atChild = {buf: NO_BUF, off: 0}
  private readonly entry: RawEntryFn
  /** directory buckets, read without caching (BlockStore.getThrough): a fileset's lie together */
  private readonly window = new ReadWindow()

  constructor(private readonly vol: Volume) {
    this.entry = (ino, type, buf, off, len) => {
      if (this.expanding && type === DT_DIR) this.paths.push(`${this.dirPath}/${nameTextAt(buf, off, off + len)}`)
      this.child(ino, type)
    }
  }

  /**
   * Walks every fileset of the image still expanding, for the files their unexpanded
   * directories show (shownFiles, shownAttrs): these must be known before their sources are
   * walked. Returns the figures of those walks that stand: of each fileset after whose walk
   * began no walk found another shown file (usually all but the first of many clones of one
   * source); the others must be walked again.
   */
  findShown(): Map<number, FilesetSpace> {
    const shownCount = () => this.shownFiles.size + this.shownAttrs.size
    const walked: Array<{id: number, space: FilesetSpace, mark: number}> = []
    for (const f of listFilesets(this.vol)) {
      if (f.state !== FS_EXPANDING) continue
      const mark = shownCount()
      try {
        walked.push({id: f.id, space: this.walk(f), mark})
      } catch (e) {
        // (damage: the walk proper names it)
        if (!isDamage(e)) throw e
      }
    }
    const end = shownCount()
    const out = new Map<number, FilesetSpace>()
    for (const r of walked) if (r.mark === end) out.set(r.id, r.space)
    return out
  }

  walk(fs: Fileset): FilesetSpace {
    const vol = this.vol
    this.fs = fs
    this.expanding = fs.state === FS_EXPANDING
    this.paths.length = 0
    this.out = {referencedBlocks: 0, uniqueBlocks: 0, files: 0, dirs: 0}
    // (emptied only when used: clear() makes a new table even for an empty one)
    if (this.seenShared.size) this.seenShared.clear()
    if (this.own.size) this.own.clear()
    if (this.seenLinked.size) this.seenLinked.clear()
    if (this.attrs.size) this.attrs.clear()
    if (this.seenDirs.size) this.seenDirs.clear()
    const stack = this.stack
    stack.length = 0
    stack.push(fs.rootIno)
    if (this.expanding) this.paths.push('')
    const at = this.atDir
    while (stack.length) {
      const ino = stack.pop()!
      // (paths are kept only in a fileset still expanding: exclude patterns match them)
      const path = this.expanding ? this.paths.pop()! : ''
      if (this.seenDirs.has(ino)) continue
      this.seenDirs.add(ino)
      this.out.dirs++
      this.dirPath = path
      // A directory is never shared: all it maps is this fileset's own.
      if (vol.inodeInTable(ino, at, isInlineOrHashed)) {
        const {buf, off} = at
        const xattrIno = buf.readUInt32LE(off + INODE_FIELD.xattrIno)
        const flags = buf.readUInt16LE(off + INODE_FIELD.flags)
        if (flags & IF_INLINE) {
          this.account(xattrIno, 0, NO_BLOCKS, true)
          if (flags & IF_UNEXPANDED) { this.addShown({ino}, path); continue }
          inlineDirForEachRaw(ino, buf, off + INODE_AREA_OFF, readU64(buf, off + INODE_FIELD.size), this.entry)
          continue
        }
        // A hashed directory whose map lies in its inode (all but the largest): read in place,
        // its buckets through the walk's window (10,000 sync clones have half a million of
        // them: cached, they cost more in garbage collection than in reading).
        const ext = extentsInPlace(vol, ino, buf, off)
        if (ext) {
          const m = countRuns(vol, ext, NO_BLOCKS, {single: 0, shared: [], xattrIno, nlink: 0, share: 0})
          this.account(xattrIno, m.single, m.shared, true)
          const buckets = buf.readUInt32LE(off + INODE_FIELD.dirBuckets)
          inInodeOrder(readU64(buf, off + INODE_FIELD.size), (f) => hashedDirForEachRaw(vol, ino, buckets, ext, this.window, f), this.entry)
          continue
        }
      }
      const dir = vol.iget(ino)
      const m = mapped(vol, dir)
      this.account(m.xattrIno, m.single, m.shared, true)
      if (dir.r.flags & IF_UNEXPANDED) { this.addShown({ino}, path); continue }
      dirForEachRawByInode(vol, dir, this.entry)
    }
    // An attribute set is this fileset's own when every inode naming it is (an attribute inode
    // names no other, so accounting it adds nothing to attrs while this loop runs).
    if (this.attrs.size > 0) for (const [ino, privRefs] of [...this.attrs]) {
      let m = this.sharedInodes.get(ino)
      if (!m) {
        const a = vol.tryIget(ino)
        if (!a) continue
        m = mapped(vol, a)
        if (m.share > 1) this.sharedInodes.set(ino, m)
      }
      this.account(m.xattrIno, m.single, m.shared, privRefs === m.share && !this.shownAttrs.has(ino))
    }
    for (const [b, n] of this.own) if (vol.refcount(b) === n) this.out.uniqueBlocks++
    return this.out
  }

  /** An entry of the directory being walked. */
  private child(ino: number, type: number): void {
    if (type === DT_DIR) { this.stack.push(ino); return }
    const known = this.sharedInodes.get(ino)
    if (known) {
      if (known.nlink > 1) {
        if (this.seenLinked.has(ino)) return
        this.seenLinked.add(ino)
      }
      this.out.files++
      this.account(known.xattrIno, known.single, known.shared, false)
      return
    }
    const at = this.atChild
    if (this.vol.inodeInTable(ino, at, mapsNothing)) {
      // Nothing mapped: its fields are read where they lie.
      const {buf, off} = at
      const nlink = buf.readUInt32LE(off + INODE_FIELD.nlink)
      if (nlink > 1) {
        if (this.seenLinked.has(ino)) return
        this.seenLinked.add(ino)
      }
      this.out.files++
      const share = buf.readUInt32LE(off + INODE_FIELD.share)
      const xattrIno = buf.readUInt32LE(off + INODE_FIELD.xattrIno)
      if (share > 1) this.sharedInodes.set(ino, {single: 0, shared: NO_BLOCKS, xattrIno, nlink, share})
      this.account(xattrIno, 0, NO_BLOCKS, share <= 1 && !this.shownFiles.has(ino))
      return
    }
    const c = this.vol.iget(ino)
    if (c.r.nlink > 1) {
      if (this.seenLinked.has(ino)) return
      this.seenLinked.add(ino)
    }
    this.out.files++
    const m = mapped(this.vol, c)
    if (c.r.share > 1) this.sharedInodes.set(ino, m)
    this.account(m.xattrIno, m.single, m.shared, c.r.share <= 1 && !this.shownFiles.has(ino))
  }

  /** Counts what unexpanded directory `node` (at `path` of the fileset being walked) shows below it. */
  private addShown(node: ExpandNode, path: string): void {
    const s = this.shownBelow(node, path)
    this.out.files += s.files
    this.out.dirs += s.dirs
    this.out.referencedBlocks += s.single
    for (let i = 0; i < s.shared.length; i++) {
      const b = s.shared[i]
      if (!this.seenShared.has(b)) { this.seenShared.add(b); this.out.referencedBlocks++ }
    }
    for (const x of s.attrs) if (!this.attrs.has(x)) this.attrs.set(x, 0)
    for (const shownIno of s.linked) {
      const ino = linkedShownAs(this.vol, this.fs!, shownIno)
      if (this.seenLinked.has(ino)) continue
      this.seenLinked.add(ino)
      this.out.files++
      const c = this.vol.iget(ino)
      const m = mapped(this.vol, c)
      // (the clone's own copy is its alone, unless a clone of it shows it in turn)
      this.account(m.xattrIno, m.single, m.shared, ino !== shownIno && c.r.share <= 1 && !this.shownFiles.has(ino))
    }
  }

  /**
   * What unexpanded directory `top` of the fileset being walked, at `topPath`, shows: the
   * directories it reads through to, and everything below them. Worked out once for every
   * directory that shows the same tree (shownDir).
   */
  private shownBelow(top: ExpandNode, topPath: string): Shown {
    const vol = this.vol
    const f = this.fs!
    const {dir, byPath} = shownDir(vol, f, top, topPath)
    const known = byPath ? undefined : this.shown.get(dir.ino)
    if (known) return known
    const s: Shown = {files: 0, dirs: 0, single: 0, shared: [], linked: [], attrs: []}
    const add = (m: Mapped) => {
      s.single += m.single
      for (let i = 0; i < m.shared.length; i++) s.shared.push(m.shared[i])
      if (m.xattrIno !== 0) { s.attrs.push(m.xattrIno); this.shownAttrs.add(m.xattrIno) }
    }
    const todo: Array<{node: ExpandNode, path: string}> = [{node: top, path: topPath}]
    // (a damaged tree must not make the walk go round: each directory is read through once)
    const seen = new Set<number>()
    while (todo.length) {
      const {node, path} = todo.pop()!
      const {dir: shows, entries} = shownListing(vol, f, node, path)
      if (seen.has(shows.ino)) continue
      seen.add(shows.ino)
      // The blocks of the directory shown: the clone's own when expanded will be as many.
      add(mapped(vol, shows))
      for (const e of entries) {
        if (e.type === DT_DIR) {
          s.dirs++
          todo.push({node: e.node!, path: `${path}/${nameText(e.name)}`})
          continue
        }
        this.shownFiles.add(e.ino)
        let m = this.sharedInodes.get(e.ino)
        if (!m) {
          m = mapped(vol, vol.iget(e.ino))
          if (m.share > 1) this.sharedInodes.set(e.ino, m)
        }
        if (m.nlink > 1) { s.linked.push(e.ino); continue }
        s.files++
        add(m)
      }
    }
    if (!byPath) this.shown.set(dir.ino, s)
    return s
  }

  /** Counts what one inode maps: `single` blocks of reference count 1, and `shared` ones. */
  private account(xattrIno: number, single: number, shared: number[], priv: boolean): void {
    if (xattrIno !== 0) this.attrs.set(xattrIno, (this.attrs.get(xattrIno) ?? 0) + (priv ? 1 : 0))
    this.out.referencedBlocks += single
    if (priv) this.out.uniqueBlocks += single
    for (let i = 0; i < shared.length; i++) {
      const b = shared[i]
      if (!this.seenShared.has(b)) { this.seenShared.add(b); this.out.referencedBlocks++ }
      if (priv) this.own.set(b, (this.own.get(b) ?? 0) + 1)
    }
  }
}

const NO_BUF = Buffer.alloc(0)

/** An inline directory: its entries are read in place. */
function isInline(buf: Buffer, off: number): boolean {
  return (buf.readUInt16LE(off + INODE_FIELD.flags) & IF_INLINE) !== 0
}

/** A directory with an entry format: inline, or hashed (its entries in buckets). */
function isInlineOrHashed(buf: Buffer, off: number): boolean {
  return (buf.readUInt16LE(off + INODE_FIELD.flags) & (IF_INLINE | IF_HASHED)) !== 0
}

/** An inline file or symlink, or a special file: no blocks, so its fields are all the walk needs. */
function mapsNothing(buf: Buffer, off: number): boolean {
  return isInline(buf, off) || isSpecial(buf.readUInt16LE(off + INODE_FIELD.mode))
}
