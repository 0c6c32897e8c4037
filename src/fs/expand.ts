// Expansion of asynchronous and lazy clones (the Prism paper §3.3, §3.4, §4.1, §4.2).
//
// An async or lazy clone starts as one UNEXPANDED root directory that names its source
// directory (src_fileset, src_ino). Expanding a directory copies its source's entries into it
// exactly as a synchronous clone does (files and symlinks shared, a hard-linked file copied
// once per clone, directories made anew) except that each new subdirectory is itself
// UNEXPANDED, naming its own source. The fileset stays EXPANDING until no UNEXPANDED directory
// is left, and then becomes an ordinary fileset that nothing tells apart from a sync clone.
//
// Two rules keep the clone equal to the source as it was when the clone was made:
//   1. A directory that is UNEXPANDED sits at the path its source had in the source fileset
//      at clone time, and its source has not changed since. So before the source fileset
//      changes anything at a path (a file's content or attributes, a directory's entries),
//      every clone still expanding from it expands the directories along that path first
//      (guardPath). Before a directory of the source is renamed or removed, the part of each
//      clone below it is expanded completely (guardTree).
//   2. A clone that renames one of its own directories expands that directory's subtree
//      completely first, so rule 1's paths stay true (see Namespace.rename).
// The paper's logical timestamps make rule 1 cheap: the superblock's clone_clock is bumped
// for every async clone, the source's clonestart takes its value, and an entry whose lastclone
// equals its fileset's clonestart has already been expanded along in every clone in flight.
//
// Reading never needs write access. On a volume opened read-only (a user who may only read
// the image file, or a command holding the shared lock), expansion runs exactly as it would
// for a writer, but in memory only: a read-only volume never commits (Volume.commit), its
// store never writes (BlockStore.readOnly), and what was expanded is forgotten when the image
// is closed. So a reader sees, through the same code, exactly what expansion will produce;
// only the numbers of the inodes it makes (directories, hard-linked files' copies) are those
// this process picked, which a later expansion may pick differently.
//
// Expansion is part of lookup, so it lives in the filesystem core (src/fs): the namespace
// expands the directories a path reaches, and the floors above (clone, scan, the server's
// background slices) drive the rest. Nothing here imports the namespace layer; Namespace calls in.
import {pushAll} from '../arrays.js'
import {holdXattrs, shareXattrs} from './xattr.js'
import {DIR_PTRS_PER_BLOCK, DT_DIR, FS_ACTIVE, FS_EXPANDING, IF_INLINE, IF_NOCLONE, IF_ORPHAN, IF_UNEXPANDED, INODES_PER_BLOCK, MODE_ASYNC, S_IFDIR, S_IFREG} from '../format/constants.js'
import {
  CLONE_STATE_V2, cloneStateVersion, decodeCloneState, decodeRemap, encodeCloneState, encodeRemapEntry, type CloneSpec,
} from '../format/clonestate.js'
import {nameText} from '../format/name.js'
import {FormatError} from '../format/errors.js'
import {INCOMPAT_CLONES, INCOMPAT_EXCLUDE_RULES, INCOMPAT_EXPANDING} from '../format/superblock.js'
import {PrismError, fail} from '../errors.js'
import {dirAdd, dirCopyLayout, dirForEachRaw, dirForEachRawByInode, dirInit, dirList, dirListByInode, dirLookup} from './dir.js'
import {readData, releaseAll, shareInto, writeData} from './extents.js'
import {anyBuilding, buildingFilesets, expandingFrom, filesetById, filesetCount, saveFileset, type Fileset} from './filesets.js'
import type {Inode} from './inode.js'
import {Volume as VolumeClass, type Volume} from './volume.js'
import {excludeMatcher, type ExcludeMatcher} from './match.js'

/** What expansion needs about one clone, cached per transaction on the volume. */
interface CloneInfo {
  spec: CloneSpec
  match: Pick<ExcludeMatcher, 'test'>
  /** source inode -> [source generation, copy inode, copy generation] for hard-linked files */
  remap: Map<number, [number, number, number]>
  /** the copies the map names */
  copies: Set<number>
}

const DEFAULT_SPEC: CloneSpec = {srcPath: '/', exclude: [], rules: 'gitignore'}

/** Per-transaction state of expansion, dropped with the transaction on abort. */
interface ExpandCache {
  info: Map<number, CloneInfo>
  /** source id -> the clonestart at which every clone in flight had its root expanded (guardPath) */
  rootsDone: Map<number, number>
}

function state(vol: Volume): ExpandCache {
  if (!vol.cloneCache) vol.cloneCache = {info: new Map(), rootsDone: new Map()} satisfies ExpandCache
  return vol.cloneCache as ExpandCache
}

function cache(vol: Volume): Map<number, CloneInfo> {
  return state(vol).info
}

export function isExpanding(f: Fileset): boolean {
  return f.state === FS_EXPANDING
}

/** Filesets still expanding from `srcId`. */
export function clonesInFlight(vol: Volume, srcId: number): Fileset[] {
  return expandingFrom(vol, srcId)
}

function info(vol: Volume, c: Fileset): CloneInfo {
  let ci = cache(vol).get(c.id)
  if (ci) return ci
  let spec = DEFAULT_SPEC
  const remap = new Map<number, [number, number, number]>()
  if (c.stateIno !== 0) {
    const f = vol.iget(c.stateIno)
    const where = `clone-state file of fileset '${c.name}'`
    try {
      if (f.type !== 'file') throw new FormatError(where, 'value', 'is not a regular file')
      const buf = readData(vol, f, 0, f.r.size)
      const d = decodeCloneState(buf, where)
      spec = d.spec
      for (const e of decodeRemap(buf, d.mapOffset, where)) remap.set(e.srcIno, [e.srcGeneration, e.copyIno, e.copyGeneration])
    } catch (e) {
      if (e instanceof FormatError) fail('EBADIMAGE', `${e.message}; run 'prism fsck --repair'`)
      throw e
    }
  }
  // Patterns an older build stored (version 1) keep their old meaning: docs/FORMAT.md §8.5.
  ci = {spec, match: spec.exclude.length ? excludeMatcher(spec.exclude, spec.rules) : {test: () => -1}, remap, copies: new Set([...remap.values()].map((v) => v[1]))}
  cache(vol).set(c.id, ci)
  return ci
}

export function cloneSpec(vol: Volume, c: Fileset): CloneSpec {
  return info(vol, c).spec
}

/**
 * Whether clone `c` holds private copies of hard-linked source files its source changed while
 * it was in flight (guardLinked): its unexpanded directories then expand to other inodes than
 * their source directories name, wherever such a file has a name.
 */
export function hasLinkedCopies(vol: Volume, c: Fileset): boolean {
  return info(vol, c).remap.size > 0
}

/** Writes a new clone-state file for `c` (only needed when its spec is not the default). */
export function createCloneState(vol: Volume, spec: CloneSpec): Inode {
  const f = vol.ialloc(S_IFREG | 0o600)
  f.r.nlink = 1
  f.r.dataVersion = 1
  writeData(vol, f, 0, encodeCloneState(spec).bytes)
  vol.idirty(f)
  // An older build must not open an image whose patterns it would read with other rules.
  if (cloneStateVersion(spec) === CLONE_STATE_V2 && !(vol.sb.incompat & INCOMPAT_EXCLUDE_RULES)) {
    vol.sb.incompat |= INCOMPAT_EXCLUDE_RULES
    vol.markSbDirty()
  }
  return f
}

export function needsCloneState(spec: CloneSpec): boolean {
  return spec.srcPath !== '/' || spec.exclude.length > 0
}

/** Remembers that hard-linked source inode `src` has the private copy `copy` in clone `c`. */
function remapPut(vol: Volume, c: Fileset, ci: CloneInfo, src: Inode, copy: Inode): void {
  ci.remap.set(src.ino, [src.r.generation, copy.ino, copy.r.generation])
  ci.copies.add(copy.ino)
  // A read-only volume expands in memory: the map above is all it needs (appending to the
  // clone-state file would only hold blocks it can never commit).
  if (vol.readOnly) return
  let rec = filesetById(vol, c.id)!
  if (rec.stateIno === 0) {
    rec = {...rec, stateIno: createCloneState(vol, ci.spec).ino}
    saveFileset(vol, rec)
  }
  const f = vol.iget(rec.stateIno)
  writeData(vol, f, f.r.size, encodeRemapEntry({srcIno: src.ino, srcGeneration: src.r.generation, copyIno: copy.ino, copyGeneration: copy.r.generation}))
  vol.idirty(f)
}

/** A new directory inode with the attributes of `src`, empty. */
export function newDirLike(vol: Volume, src: Inode): Inode {
  const d = vol.ialloc(S_IFDIR | (src.r.mode & 0o7777))
  dirInit(d)
  d.r.nlink = 2
  d.r.uid = src.r.uid
  d.r.gid = src.r.gid
  d.r.atimeS = src.r.atimeS; d.r.atimeNs = src.r.atimeNs
  d.r.mtimeS = src.r.mtimeS; d.r.mtimeNs = src.r.mtimeNs
  d.r.ctimeS = src.r.ctimeS; d.r.ctimeNs = src.r.ctimeNs
  d.r.dataVersion = 1
  d.r.flags |= src.r.flags & IF_NOCLONE
  d.r.locality = src.r.locality ?? 0 // what new files in it inherit (FORMAT.md §6.6)
  shareXattrs(vol, src, d)
  vol.idirty(d)
  return d
}

/** A new UNEXPANDED directory standing for source directory `src` of fileset `srcFs`. */
export function newUnexpandedDir(vol: Volume, src: Inode, srcFs: number): Inode {
  const d = newDirLike(vol, src)
  d.r.flags |= IF_UNEXPANDED
  d.r.srcIno = src.ino
  d.r.srcFileset = srcFs
  return d
}

/** `path` ('' for the top) of a clone, as a path of its source fileset. */
function sourcePath(spec: CloneSpec, path: string): string {
  return spec.srcPath === '/' ? path : spec.srcPath.replace(/\/+$/, '') + path
}

export function isUnexpanded(d: Inode): boolean {
  return (d.r.flags & IF_UNEXPANDED) !== 0
}

/** The fileset and directory an UNEXPANDED directory `u` of fileset `c` expands from. */
function sourceOf(vol: Volume, c: Fileset, u: Inode): {src: Fileset, from: Inode} {
  const src = filesetById(vol, u.r.srcFileset)
  if (!src) fail('EBADIMAGE', `directory ${u.ino} of fileset '${c.name}' expands from missing fileset ${u.r.srcFileset}; run 'prism fsck --repair'`)
  const from = vol.tryIget(u.r.srcIno)
  if (!from || !from.isDir) fail('EBADIMAGE', `directory ${u.ino} of fileset '${c.name}' expands from inode ${u.r.srcIno}, which is not a directory; run 'prism fsck --repair'`)
  return {src, from}
}

/**
 * Expands UNEXPANDED directory `u` of clone `c`, found at clone path `path` ('' for the
 * root). Returns the subdirectories it made (all UNEXPANDED). Does nothing for a directory
 * that is already expanded.
 *
 * A clone of a clone still expanding reads its source's directory, which may itself be
 * UNEXPANDED, and so on down a chain of clones: the chain is followed in a loop, not by
 * recursion (chains of 10,000 clones are fine), and expanded from its far end, committing
 * between steps when the transaction grows large (each step leaves a consistent image).
 */
export function expandDir(vol: Volume, c: Fileset, u: Inode, path: string): Array<{inode: Inode, path: string}> {
  if (!isUnexpanded(u)) return []
  // Only a clone in flight has directories still to expand: one in a fileset that is not
  // (damage) would be expanded again at every level below it, each showing its source anew,
  // until the inodes ran out. fsck makes it an empty directory (UNEXPANDED_BAD).
  // (the record as it is now: `c` may be a copy taken before a graft made the fileset a clone in flight)
  if (c.state === FS_ACTIVE && filesetById(vol, c.id)?.state === FS_ACTIVE) fail('EBADIMAGE', `${c.name}:${path}: directory inode ${u.ino} is marked unexpanded in a fileset that is not a clone in flight (a damaged image); run 'prism fsck --repair'`)
  try {
    return expandChain(vol, c, u, path)
  } catch (e) {
    // A full image: say what needed the space (reading a lazy clone, or changing its source,
    // makes its directories first), not only that there is none; and which ran out, blocks or
    // inodes (each directory made takes one of each).
    if (e instanceof PrismError && e.code === 'ENOSPC' && !e.message.includes(' to expand ')) {
      const what = /^no free inodes/.test(e.message) ? noInodesLeft(vol) : 'no free blocks left in the image'
      throw noRoom(what, `${c.name}:${path}`)
    }
    throw e
  }
}

// (what the failed step had taken is given back with it: `df` then shows inodes free, fewer
// than it needed, so the count said is the image's, not "N of N used")
const noInodesLeft = (vol: Volume): string => `no free inodes left in the image (it has ${vol.sb.inodeCount} in all)`

function noRoom(what: string, where: string): PrismError {
  return new PrismError('ENOSPC', `${what} to expand ${where} (a clone's directories are made when first reached, to read them or before its source changes); free some space: delete a fileset or files`)
}

function expandChain(vol: Volume, c: Fileset, u: Inode, path: string): Array<{inode: Inode, path: string}> {
  const chain: Array<{c: Fileset, u: Inode, path: string}> = [{c, u, path}]
  for (;;) {
    const top = chain[chain.length - 1]
    const {src, from} = sourceOf(vol, top.c, top.u)
    if (!isUnexpanded(from)) break
    if (chain.length > filesetCount(vol)) fail('EBADIMAGE', `directory ${u.ino} of fileset '${c.name}' expands from a chain of clones that loops; run 'prism fsck --repair'`)
    chain.push({c: src, u: from, path: sourcePath(info(vol, top.c).spec, top.path)})
  }
  for (let i = chain.length - 1; i > 0; i--) {
    // A step further down may have been expanded meanwhile (a commit's reaper runs nothing here, but be safe).
    const step = chain[i]
    expandOne(vol, filesetById(vol, step.c.id) ?? step.c, step.u, step.path)
    vol.maybeCommit()
  }
  return expandOne(vol, c, u, path)
}

/**
 * What expansion did in one clone, counted as a sync clone counts it (src/clone/clone.ts
 * CloneStats): directories expanded, files shared, hard-linked files copied, entries left out.
 * Counted only for the clones entered in Volume.expandTally.
 */
export interface ExpandTally {
  dirs: number
  shared: number
  copiedHardlinked: number
  excluded: number
}

/** Starts counting the expansion of fileset `id` (see ExpandTally); returns the counts. */
export function tallyExpansion(vol: Volume, id: number): ExpandTally {
  vol.expandTally ??= new Map()
  let t = vol.expandTally.get(id)
  if (!t) vol.expandTally.set(id, t = {dirs: 0, shared: 0, copiedHardlinked: 0, excluded: 0})
  return t
}

const NO_TALLY: ExpandTally = {dirs: 0, shared: 0, copiedHardlinked: 0, excluded: 0}

/** Expands one UNEXPANDED directory whose source directory is expanded. */
function expandOne(vol: Volume, c: Fileset, u: Inode, path: string): Array<{inode: Inode, path: string}> {
  if (!isUnexpanded(u)) return []
  const {src, from} = sourceOf(vol, c, u)
  if (isUnexpanded(from)) fail('EBADIMAGE', `directory ${u.ino} of fileset '${c.name}' expands from a directory that is not expanded; run 'prism fsck --repair'`)
  const ci = info(vol, c)
  const made: Array<{inode: Inode, path: string}> = []
  // Counted apart and added at the end: a directory whose expansion fails counts nothing.
  const t = {...NO_TALLY}
  // Usually every entry is kept: then the directory is the source's, laid out as it is
  // (dirCopyLayout), which costs a block copy per bucket instead of an insertion per entry
  // (a chain of clones expands the same directory once per clone, issue 19). An UNEXPANDED
  // directory holds nothing (the copy needs that; the other path adds to whatever it holds).
  // A directory too large for one transaction is expanded in pieces (expandInPieces).
  const whole = fitsOneStep(vol, from)
  if (whole) needRoom(vol, ci, src, from, `${c.name}:${path}`)
  const kept = whole && u.r.size === 0 && (u.r.flags & IF_INLINE) ? keptEntries(vol, ci, from, path) : null
  if (!whole) {
    expandInPieces(vol, c, ci, src, from, u, path, made, t)
  } else if (kept) {
    const inos = new Array<number>(kept.children.length)
    for (let i = 0; i < inos.length; i++) {
      const child = kept.children[i]
      const name = kept.dirNames[i]
      if (name === undefined) {
        inos[i] = cloneFile(vol, c, ci, src, child, t)
        continue
      }
      const d = newUnexpandedDir(vol, child, src.id)
      made.push({inode: d, path: `${path}/${name}`})
      inos[i] = d.ino
    }
    dirCopyLayout(vol, from, u, inos)
  } else {
    addKeptEntries(vol, c, ci, src, from, u, path, made, t)
  }
  u.r.flags &= ~IF_UNEXPANDED
  u.r.srcIno = 0
  u.r.srcFileset = 0
  u.r.nlink = 2 + made.length
  vol.idirty(u)
  const rec = filesetById(vol, c.id)!
  saveFileset(vol, {...rec, dirsDone: rec.dirsDone + 1, dirsTotal: rec.dirsTotal + made.length})
  if (rec.dirsDone + 1 >= rec.dirsTotal + made.length) expandedAll(vol).add(c.id)
  const tally = vol.expandTally?.get(c.id)
  if (tally) {
    const add = (k: 1 | -1): void => {
      tally.dirs += k
      tally.shared += k * t.shared
      tally.copiedHardlinked += k * t.copiedHardlinked
      tally.excluded += k * t.excluded
    }
    add(1)
    vol.atRollback(() => add(-1)) // (a mount's request that fails is rolled back, this expansion with it)
  }
  return made
}

/**
 * Fails with ENOSPC, before anything changes, when the image lacks the inodes or blocks that
 * expanding source directory `from` in one step takes: an inode for each subdirectory (made
 * UNEXPANDED) and for each hard-linked file the clone has no copy of yet, and the directory's
 * blocks. Without this an expansion that ran out part way left what it had made so far: the
 * CLI drops its transaction then, but a mount's request does not, and a lookup through a mount
 * of a nearly full image left an unnamed directory inode behind at each try (fsck:
 * INODE_UNREACHABLE). Counting every entry that might need one errs on the side of refusing.
 */
function needRoom(vol: Volume, ci: CloneInfo, src: Fileset, from: Inode, where: string): void {
  let inodes = 0
  const copies = isExpanding(src) ? info(vol, src).copies : null
  dirForEachRawByInode(vol, from, (ino, type) => {
    if (type === DT_DIR) {
      inodes++
      return
    }
    const child = vol.iget(ino)
    if ((child.r.nlink > 1 || copies?.has(child.ino)) && !copyOf(vol, ci, child)) inodes++
  })
  const free = vol.sb.freeInodes
  if (inodes > free) throw noRoom(free === 0 ? noInodesLeft(vol) : `too few free inodes left in the image (${inodes} needed, ${free} free)`, where)
  const blocks = dirBlocksOf(from)
  if (blocks > vol.sb.freeBlocks) throw noRoom(vol.sb.freeBlocks === 0 ? 'no free blocks left in the image' : `too few free blocks left in the image (${blocks} needed, ${vol.sb.freeBlocks} free)`, where)
}

/**
 * Adds to directory `dir`, one by one, the entries of source directory `from` (at clone path
 * `path`) that expansion keeps (excluded paths and IF_NOCLONE inodes are left out): a new
 * UNEXPANDED directory for each directory (listed in `made`, counted in `dir`'s links), the
 * shared inode or the clone's copy for anything else. `each` runs after each entry added.
 */
function addKeptEntries(vol: Volume, c: Fileset, ci: CloneInfo, src: Fileset, from: Inode, dir: Inode, path: string, made: Array<{inode: Inode, path: string}>, t: ExpandTally, each: () => void = () => {}): void {
  for (const e of dirListByInode(vol, from)) {
    const childPath = `${path}/${nameText(e.name)}`
    if (ci.match.test(childPath, e.type === DT_DIR) >= 0) { t.excluded++; continue }
    const child = vol.iget(e.ino)
    if (child.r.flags & IF_NOCLONE) { t.excluded++; continue }
    if (child.isDir) {
      const sub = newUnexpandedDir(vol, child, src.id)
      dirAdd(vol, dir, sub.ino, DT_DIR, e.name, 0)
      dir.r.nlink++
      vol.idirty(dir)
      made.push({inode: sub, path: childPath})
    } else {
      dirAdd(vol, dir, cloneFile(vol, c, ci, src, child, t), e.type, e.name, 0)
    }
    each()
  }
}

/** The blocks directory `from` holds (buckets and pointer table; none inline): a copy takes as many. */
function dirBlocksOf(from: Inode): number {
  return from.r.flags & IF_INLINE ? 0 : from.r.dirBuckets + Math.ceil(2 ** from.r.dirDepth / DIR_PTRS_PER_BLOCK)
}

/**
 * Whether a copy of source directory `from` (as expansion or a sync clone makes one) fits one
 * step: the blocks it changes (each entry's inode-table block, for a share count or a copy; a
 * new inode per subdirectory; the new directory's blocks; 16 more for the directory's own
 * inode, the fileset table and reference counts) within a quarter of the journal. A step
 * starts with at most half of it used (maybeCommit), so the step never outgrows it.
 */
export function fitsOneStep(vol: Volume, from: Inode): boolean {
  const room = vol.journal.maxBlocks / 4
  const dirBlocks = dirBlocksOf(from)
  if (2 * from.r.size + dirBlocks + 16 <= room) return true
  const blocks = new Set<number>()
  let subdirs = 0
  dirForEachRaw(vol, from, (ino, type) => {
    blocks.add(Math.floor(ino / INODES_PER_BLOCK))
    if (type === DT_DIR) subdirs++
  })
  return blocks.size + subdirs + dirBlocks + 16 <= room
}

/**
 * Expands UNEXPANDED directory `u` from source directory `from` when that does not fit one
 * transaction (fitsOneStep): its entries are made in a new directory on the orphan list,
 * pinned, committing between pieces (Volume.maybeCommit) as a sync clone builds its tree;
 * the last step copies that directory's layout into `u` (its entries keep the share counts
 * the pieces gave them) and frees it. A crash before the last step leaves `u` as it was and
 * an orphan the next writable open reaps, giving back every share and copy it held.
 */
function expandInPieces(vol: Volume, c: Fileset, ci: CloneInfo, src: Fileset, from: Inode, u: Inode, path: string, made: Array<{inode: Inode, path: string}>, t: ExpandTally): void {
  if (u.r.size !== 0 || !(u.r.flags & IF_INLINE)) fail('EBADIMAGE', `directory ${u.ino} of fileset '${c.name}' is UNEXPANDED but holds entries; run 'prism fsck --repair'`)
  const d = vol.ialloc(S_IFDIR | 0o700)
  dirInit(d)
  d.r.nlink = 2
  vol.addOrphan(d)
  vol.pinnedOrphans.add(d.ino)
  try {
    // Entries a piece: a piece changes at most an inode-table block and a few directory
    // blocks per entry, and a commit comes when the transaction reaches half the journal.
    const piece = Math.max(1, Math.min(64, Math.floor(vol.journal.maxBlocks / 16)))
    let n = 0
    addKeptEntries(vol, c, ci, src, from, d, path, made, t, () => { if (++n % piece === 0) vol.maybeCommit() })
    // The last step: `u` takes the entries, `d` goes.
    const inos: number[] = []
    dirForEachRaw(vol, d, (ino) => { inos.push(ino) })
    dirCopyLayout(vol, d, u, inos)
    vol.removeOrphan(d)
    releaseAll(vol, d)
    vol.ifree(d)
  } finally {
    vol.pinnedOrphans.delete(d.ino)
  }
}

/**
 * The entries of source directory `from` (at clone path `path`) when expansion keeps every
 * one of them: each one's inode, in dirForEachRaw's order, and for a directory its name.
 * Null when an entry is left out (an exclude pattern, the noclone flag).
 */
function keptEntries(vol: Volume, ci: CloneInfo, from: Inode, path: string): {children: Inode[], dirNames: Array<string | undefined>} | null {
  const patterns = ci.spec.exclude.length > 0
  const children: Inode[] = []
  const dirNames: Array<string | undefined> = []
  let all = true
  dirForEachRaw(vol, from, (ino, type, buf, off, len) => {
    if (!all) return
    const child = vol.iget(ino)
    const name = child.isDir || patterns ? nameText(buf.subarray(off, off + len)) : undefined
    // (an entry whose type is not its inode's is left to the entry-by-entry path, as before)
    if ((child.r.flags & IF_NOCLONE) || child.isDir !== (type === DT_DIR) || (patterns && ci.match.test(`${path}/${name}`, type === DT_DIR) >= 0)) {
      all = false
      return
    }
    children.push(child)
    dirNames.push(child.isDir ? name : undefined)
  })
  return all ? {children, dirNames} : null
}

/**
 * What file or symlink `child` of source `src` becomes in clone `c`, counted in `t`: the
 * same inode, shared; or for a file hard-linked at clone time, the clone's private copy.
 *
 * The copy is made when its first name is expanded, with the source's link count: the
 * clone's names still to be expanded count already, as they must for stat and for the rule
 * that a linked file is never shared. (Names the clone leaves out, through --exclude, noclone
 * or a subtree clone, are taken off by recountLinks when expansion ends.) The map is asked
 * first: the source may have dropped names since this clone expanded them. A copy the source
 * (itself still expanding) made of a hard-linked file may count links it has not expanded
 * yet: it counts as hard-linked too, so it is never shared while its count can still be
 * corrected (recountLinks).
 */
function cloneFile(vol: Volume, c: Fileset, ci: CloneInfo, src: Fileset, child: Inode, t: ExpandTally): number {
  let cp = copyOf(vol, ci, child)
  if (cp || child.r.nlink > 1 || (isExpanding(src) && info(vol, src).copies.has(child.ino))) {
    if (!cp) t.copiedHardlinked++
    cp ??= linkedCopy(vol, c, ci, child)
    return cp.ino
  }
  child.r.share++
  vol.idirty(child)
  t.shared++
  return child.ino
}

/**
 * A directory of a fileset as expansion would make it: `{ino}` a directory inode of its own
 * (expanded or UNEXPANDED), `{src, from}` one not made yet, which would stand for directory
 * `from` of fileset `src`.
 */
export type ExpandNode = {ino: number} | {src: Fileset, from: ExpandNode}

export interface ExpandedEntry {
  name: Buffer
  type: number
  /** the inode the entry shows: for one not expanded yet, the source's (flags are the same) */
  ino: number
  /** for a directory, how to list it in turn */
  node: ExpandNode | null
}

/**
 * The entries directory `node` of fileset `f` shows at path `path` of `f` ('' for its root),
 * read without writing anything: its own entries, or for a directory not expanded yet those
 * its expansion would make, following a chain of clones still expanding as expandDir does.
 * Only an unexpanded directory costs more than its own blocks: the inodes of its source's
 * entries are read for their noclone flag, as expansion reads them. A hard-linked file the
 * clone already has a private copy of (its clone-state map) is given as the source's inode,
 * not the copy: callers use the names, types and flags (the same on both), not the content.
 */
export function entriesAsExpanded(vol: Volume, f: Fileset, node: ExpandNode, path: string): ExpandedEntry[] {
  return shownListing(vol, f, node, path).entries
}

/** entriesAsExpanded, and the directory whose entries they are (shownDir's). */
export function shownListing(vol: Volume, f: Fileset, node: ExpandNode, path: string): {dir: Inode, entries: ExpandedEntry[]} {
  const {levels, dir} = shownLevels(vol, f, node, path)
  let out: ExpandedEntry[] = dirList(vol, dir).map((e) => ({name: e.name, type: e.type, ino: e.ino, node: e.type === DT_DIR ? {ino: e.ino} : null}))
  for (let i = levels.length - 1; i >= 0; i--) {
    const {f: lf, path: lpath, src} = levels[i]
    const ci = info(vol, lf)
    const next: ExpandedEntry[] = []
    for (const e of out) {
      if (ci.match.test(`${lpath}/${nameText(e.name)}`, e.type === DT_DIR) >= 0) continue
      if (vol.iget(e.ino).r.flags & IF_NOCLONE) continue
      next.push({...e, node: e.node ? {src, from: e.node} : null})
    }
    out = next
  }
  return {dir, entries: out}
}

/** One clone of the chain an unexpanded directory is read through: the clone, the directory's path in it, its source. */
interface ShownLevel {
  f: Fileset
  path: string
  src: Fileset
}

/**
 * Down the chain of clones from directory `node` of fileset `f` (at `path`) to the directory
 * that has its own entries (a loop: chains may be thousands deep): the clones passed through,
 * nearest first, and that directory.
 */
function shownLevels(vol: Volume, f: Fileset, node: ExpandNode, path: string): {levels: ShownLevel[], dir: Inode} {
  const levels: ShownLevel[] = []
  let cf = f
  let cnode = node
  let cpath = path
  for (;;) {
    let src: Fileset
    let from: ExpandNode
    if ('ino' in cnode) {
      const d = vol.iget(cnode.ino)
      if (!isUnexpanded(d)) return {levels, dir: d}
      const s = sourceOf(vol, cf, d)
      src = s.src
      from = {ino: s.from.ino}
    } else {
      src = cnode.src
      from = cnode.from
    }
    if (levels.length > filesetCount(vol)) fail('EBADIMAGE', `fileset '${f.name}' expands from a chain of clones that loops; run 'prism fsck --repair'`)
    levels.push({f: cf, path: cpath, src})
    cpath = sourcePath(info(vol, cf).spec, cpath)
    cf = src
    cnode = from
  }
}

/**
 * The directory whose entries directory `node` of fileset `f` shows (itself, or for one not
 * expanded yet the source directory down the chain of clones), and whether what it shows
 * depends on `f` and the path: true when a clone of the chain leaves paths out by pattern.
 * Otherwise every directory that reads through to `dir` shows the same tree: the entries
 * with the noclone flag left out, at every depth (src/fs/space.ts counts such a tree once).
 */
export function shownDir(vol: Volume, f: Fileset, node: ExpandNode, path: string): {dir: Inode, byPath: boolean} {
  const {levels, dir} = shownLevels(vol, f, node, path)
  let byPath = false
  for (const l of levels) if (info(vol, l.f).spec.exclude.length > 0) byPath = true
  return {dir, byPath}
}

/**
 * The inode that hard-linked file `ino` (as entriesAsExpanded gives it: the inode at the far
 * end of the chain of clones) is in fileset `f`, for a name of it in a directory of `f` not
 * expanded yet: where expanding another of its names made `f` a private copy, that copy;
 * through a chain of clones still expanding, the copy each made of the one below.
 */
export function linkedShownAs(vol: Volume, f: Fileset, ino: number): number {
  const chain: Fileset[] = []
  for (let c: Fileset | undefined = f; c && isExpanding(c) && chain.length <= filesetCount(vol); c = c.parentId ? filesetById(vol, c.parentId) ?? undefined : undefined) chain.push(c)
  let cur = ino
  for (let i = chain.length - 1; i >= 0; i--) {
    const at = vol.tryIget(cur)
    const cp = at && copyOf(vol, info(vol, chain[i]), at)
    if (cp) cur = cp.ino
  }
  return cur
}

/**
 * In clone `c`, expands the directories along `names` (a path of the clone, as components)
 * as far as the path exists, including its last component when that is a directory.
 */
export function expandAlong(vol: Volume, c: Fileset, names: Buffer[]): void {
  let cur = vol.iget(c.rootIno)
  let path = ''
  expandDir(vol, c, cur, path)
  for (const n of names) {
    const e = dirLookup(vol, cur, n)
    if (!e || e.type !== DT_DIR) return
    cur = vol.iget(e.ino)
    path += '/' + nameText(n)
    expandDir(vol, c, cur, path)
  }
}

/** Expands everything below directory `top` (at clone path `path`) of clone `c`. */
export function expandTree(vol: Volume, c: Fileset, top: Inode, path: string, onDir?: () => void): void {
  const stack: Array<{inode: Inode, path: string}> = [{inode: top, path}]
  while (stack.length) {
    const job = stack.pop()!
    if (isUnexpanded(job.inode)) {
      pushAll(stack, expandDir(vol, c, job.inode, job.path))
      onDir?.()
      vol.maybeCommit()
      continue
    }
    for (const e of dirList(vol, job.inode)) {
      if (e.type === DT_DIR) stack.push({inode: vol.iget(e.ino), path: `${job.path}/${nameText(e.name)}`})
    }
  }
}

/** The components of source path `names` relative to clone `c`'s top, or null if outside it. */
function relativeToClone(vol: Volume, c: Fileset, names: Buffer[]): Buffer[] | null {
  const top = info(vol, c).spec.srcPath.split('/').filter(Boolean)
  if (names.length < top.length) return null
  for (let i = 0; i < top.length; i++) if (nameText(names[i]) !== top[i]) return null
  return names.slice(top.length)
}

/** True if source path `names` is above (or is) clone `c`'s top. */
function coversClone(vol: Volume, c: Fileset, names: Buffer[]): boolean {
  const top = info(vol, c).spec.srcPath.split('/').filter(Boolean)
  return names.length <= top.length && names.every((n, i) => nameText(n) === top[i])
}

/**
 * Rule 1, for a change at `names` (directories from the root, then the object) in fileset
 * `s`: every clone in flight from `s` expands along the path first. `stamps` are the
 * lastclone values of the path's entries and `stamp(i, v)` rewrites entry i's; entries whose
 * stamp equals s.clonestart are known expanded along, which makes a repeated change free.
 */
export function guardPath(vol: Volume, s: Fileset, names: Buffer[], stamps: number[], stamp: (i: number, v: number) => void): void {
  const rec = filesetById(vol, s.id)
  if (!rec || rec.clonestart === 0) return
  // Entries stamped with this clonestart were expanded along in every clone in flight (and
  // so was every such clone's root, the first step of each path): a repeated change costs
  // nothing, however many clones there are. The root directory has no entry to stamp: that
  // the guard ran for it at this clonestart is remembered for the transaction instead.
  const fresh = stamps.every((v) => v === rec.clonestart)
  if (fresh && (names.length > 0 || state(vol).rootsDone.get(s.id) === rec.clonestart)) return
  const clones = clonesInFlight(vol, s.id)
  if (clones.length === 0) return
  for (const c of clones) {
    const rel = relativeToClone(vol, c, names)
    if (rel) expandAlong(vol, c, rel)
    // Each clone expanded is a consistent step: thousands of clones never make one
    // transaction larger than the journal.
    vol.maybeCommit()
  }
  state(vol).rootsDone.set(s.id, rec.clonestart)
  stamps.forEach((v, i) => { if (v !== rec.clonestart) stamp(i, rec.clonestart) })
}

/**
 * Rule 1 for a hard-linked file of `s` about to change: its other names may sit in
 * directories a clone has not expanded, which no path leads to. So each clone in flight
 * that has no copy of it yet makes one now (its hard-link map then hands that copy to every
 * name it expands later; a copy no name ever reaches is freed when expansion ends).
 */
export function guardLinked(vol: Volume, s: Fileset, file: Inode): void {
  if (file.isDir || file.r.nlink <= 1) return
  const rec = filesetById(vol, s.id)
  if (!rec || rec.clonestart === 0) return
  for (const c of clonesInFlight(vol, s.id)) {
    const ci = info(vol, c)
    if (!copyOf(vol, ci, file)) linkedCopy(vol, c, ci, file)
    vol.maybeCommit()
  }
}

/** The copy the clone's hard-link map gives for `src`, if it is still there. */
function copyOf(vol: Volume, ci: CloneInfo, src: Inode): Inode | null {
  const known = ci.remap.get(src.ino)
  if (!known || known[0] !== src.r.generation) return null
  const cp = vol.tryIget(known[1])
  return cp && cp.r.generation === known[2] && !(cp.r.flags & IF_ORPHAN) ? cp : null
}

/** The clone's private copy of hard-linked source file `src`, with the source's link count. */
function linkedCopy(vol: Volume, c: Fileset, ci: CloneInfo, src: Inode): Inode {
  const cp = vol.ialloc(src.r.mode, src.ino + 1)
  const generation = cp.r.generation
  cp.r = {...src.r, area: Buffer.alloc(src.r.area.length), share: 1, generation, nextOrphan: 0}
  holdXattrs(vol, cp)
  shareInto(vol, src, cp)
  vol.idirty(cp)
  remapPut(vol, c, ci, src, cp)
  return cp
}

/**
 * Rule 1, for a directory of `s` about to be renamed or removed: the part of each clone in
 * flight that stands for it is expanded completely (the whole clone if the directory is
 * the clone's top or above it).
 */
export function guardTree(vol: Volume, s: Fileset, names: Buffer[]): void {
  const rec = filesetById(vol, s.id)
  if (!rec || rec.clonestart === 0) return
  for (const c of clonesInFlight(vol, s.id)) {
    if (coversClone(vol, c, names)) {
      expandAll(vol, c)
      continue
    }
    const rel = relativeToClone(vol, c, names)
    if (!rel) continue
    expandAlong(vol, c, rel.slice(0, -1))
    let cur = vol.iget(c.rootIno)
    for (const n of rel.slice(0, -1)) {
      const e = dirLookup(vol, cur, n)
      if (!e || e.type !== DT_DIR) { cur = null as unknown as Inode; break }
      cur = vol.iget(e.ino)
    }
    if (!cur) continue
    const e = dirLookup(vol, cur, rel[rel.length - 1])
    if (!e || e.type !== DT_DIR) continue
    expandTree(vol, c, vol.iget(e.ino), '/' + rel.map(nameText).join('/'))
    vol.maybeCommit()
  }
}

/** Expands clone `c` completely and makes it an ordinary fileset. */
export function expandAll(vol: Volume, c: Fileset, onDir?: () => void): void {
  const rec = filesetById(vol, c.id)
  if (!rec || !isExpanding(rec)) return
  expandTree(vol, rec, vol.iget(rec.rootIno), '', onDir)
  finishExpansion(vol, rec)
}

/** Clones whose counters said, after an expansion on demand, that every directory known is expanded. */
const maybeDone = new WeakMap<Volume, Set<number>>()
function expandedAll(vol: Volume): Set<number> {
  let s = maybeDone.get(vol)
  if (!s) maybeDone.set(vol, s = new Set())
  return s
}

/**
 * Ends the expansion of each clone that reads and writes (not `prism expand`) have expanded
 * whole: it becomes an ordinary fileset, as `prism expand` leaves it, rather than staying
 * "expanding N/N", its source guarded, until then. Its counters only say when to look (they
 * may over-count: an UNEXPANDED directory removed is not subtracted): the clone's tree is
 * walked, and a clone with an UNEXPANDED directory left is not finished. Called at the end
 * of a writable session (fs/image.ts) and by a server between requests; returns the names
 * of the clones finished.
 */
export function finishExpanded(vol: Volume): string[] {
  if (!mayFinishExpanded(vol)) return []
  const ids = expandedAll(vol)
  // What was done before is committed first (a failure to is thrown): a failure below drops
  // only the finishing (the clone then stays expanding, as before, for `prism expand` to finish
  // and report).
  vol.commit()
  const done: string[] = []
  try {
    for (const id of [...ids]) {
      ids.delete(id)
      const c = filesetById(vol, id)
      if (!c || !isExpanding(c) || c.dirsDone < c.dirsTotal) continue
      const left = unexpandedIn(vol, c)
      if (left > 0) {
        // Counters behind the tree (a build that kept them otherwise): set right, so that
        // the next session does not walk it again, and the progress shown is true.
        saveFileset(vol, {...c, dirsTotal: c.dirsDone + left})
        continue
      }
      finishExpansion(vol, c)
      done.push(c.name)
    }
    vol.commit()
  } catch (e) {
    vol.abort()
    if (!(e instanceof PrismError) || e.code === 'EINTR') throw e
    return []
  }
  return done
}

/**
 * Whether finishExpanded has a clone to look at: one whose counters reached the end in this
 * session, or, looked for once per session, in an earlier one that did not end it (a
 * session that crashed, or that a build before this kept).
 */
export function mayFinishExpanded(vol: Volume): boolean {
  if (vol.readOnly) return false
  if (!seeded.has(vol)) {
    seeded.add(vol)
    if (vol.sb.incompat & INCOMPAT_EXPANDING) {
      for (const f of buildingFilesets(vol)) if (f.state === FS_EXPANDING && f.dirsDone >= f.dirsTotal) expandedAll(vol).add(f.id)
    }
  }
  return (maybeDone.get(vol)?.size ?? 0) > 0
}
const seeded = new WeakSet<Volume>()

/** The UNEXPANDED directories of clone `c`. */
function unexpandedIn(vol: Volume, c: Fileset): number {
  const stack = [c.rootIno]
  let n = 0
  while (stack.length > 0) {
    const d = vol.iget(stack.pop()!)
    if (isUnexpanded(d)) { n++; continue }
    for (const e of dirList(vol, d)) if (e.type === DT_DIR) stack.push(e.ino)
  }
  return n
}

/** Called once no UNEXPANDED directory is left in `c`. */
export function finishExpansion(vol: Volume, c: Fileset): void {
  const rec = filesetById(vol, c.id)!
  recountLinks(vol, rec)
  if (rec.stateIno !== 0) dropCloneState(vol, rec.stateIno)
  saveFileset(vol, {...rec, state: FS_ACTIVE, srcFileset: 0, stateIno: 0, dirsTotal: rec.dirsDone})
  cache(vol).delete(c.id)
  releaseSource(vol, rec.srcFileset)
  // Free the state file (and any unused hard-link copy) now rather than at the next open.
  VolumeClass.defaultReaper?.(vol)
}

/**
 * Sets each hard-linked copy's link count to the names it really has in clone `c` (its
 * expanded part), freeing a copy left with none. Run when expansion ends and before an
 * expanding clone is deleted: names the clone left out, or dropped while still unexpanded,
 * were counted when the copy was made.
 */
export function recountLinks(vol: Volume, c: Fileset): void {
  const ci = info(vol, c)
  if (ci.remap.size === 0) return
  const count = new Map<number, number>()
  const gens = new Map<number, number>()
  for (const [, [, copy, gen]] of ci.remap) { count.set(copy, 0); gens.set(copy, gen) }
  const stack = [vol.iget(c.rootIno)]
  while (stack.length) {
    const d = stack.pop()!
    for (const e of dirList(vol, d)) {
      if (e.type === DT_DIR) stack.push(vol.iget(e.ino))
      else if (count.has(e.ino)) count.set(e.ino, count.get(e.ino)! + 1)
    }
  }
  for (const [ino, n] of count) {
    const f = vol.tryIget(ino)
    if (!f || f.isDir || f.r.generation !== gens.get(ino) || (f.r.flags & IF_ORPHAN) || f.r.nlink === n) continue
    f.r.nlink = n
    vol.idirty(f)
    if (n === 0) vol.addOrphan(f)
  }
}

/** A fileset with no clone in flight any more forgets its clonestart. */
export function releaseSource(vol: Volume, srcId: number): void {
  const src = filesetById(vol, srcId)
  if (src && src.clonestart !== 0 && clonesInFlight(vol, srcId).length === 0) saveFileset(vol, {...src, clonestart: 0})
  // The last clone in flight anywhere: the image no longer needs a build that knows them.
  if ((vol.sb.incompat & INCOMPAT_CLONES) && !anyBuilding(vol)) {
    vol.sb.incompat &= ~INCOMPAT_CLONES
    vol.markSbDirty()
  }
}

/** Frees a clone-state file (through the orphan list, like any file that lost its name). */
export function dropCloneState(vol: Volume, ino: number): void {
  const f = vol.tryIget(ino)
  if (!f) return
  f.r.nlink = 0
  vol.idirty(f)
  vol.addOrphan(f)
}

export interface ExpandProgress {
  done: number
  total: number
}

/**
 * Background expansion in slices: the walk (a stack of directories still to visit) lives in
 * this object between slices, while the image is closed and others may change it. Each entry
 * carries its inode's generation, so a directory deleted (and its number reused) meanwhile is
 * skipped; one expanded by someone else is walked instead. A new UNEXPANDED directory only
 * ever appears inside a directory being expanded, so one walk from the root finds them all.
 */
/** A background slice commits once its transaction holds this many blocks (about 30 ms of writes). */
export const SLICE_TXN_BLOCKS = 2048

export class Expander {
  private stack: Array<{ino: number, gen: number, path: string}> | null = null

  constructor(readonly filesetId: number) {}

  /**
   * Works for about `budgetMs`, or until the transaction holds `maxTxnBlocks`, leaving the caller to commit. Returns 'done' when the clone
   * became an ordinary fileset, 'gone' if it no longer exists or is not expanding, else 'more'.
   */
  slice(vol: Volume, budgetMs: number, maxDirs = Infinity, yieldNow: () => boolean = () => false, maxTxnBlocks = SLICE_TXN_BLOCKS): 'done' | 'more' | 'gone' {
    const c = filesetById(vol, this.filesetId)
    if (!c || !isExpanding(c)) return 'gone'
    if (!this.stack) {
      const root = vol.iget(c.rootIno)
      this.stack = [{ino: root.ino, gen: root.r.generation, path: ''}]
    }
    const stack = this.stack
    const end = Date.now() + budgetMs
    let dirs = 0
    while (stack.length) {
      // The commit that ends a slice must stay short too (a waiter waits for it).
      if (Date.now() >= end || vol.txnFull || vol.txnBlocks >= maxTxnBlocks || dirs >= maxDirs || yieldNow()) return 'more'
      const job = stack.pop()!
      dirs++
      const d = vol.tryIget(job.ino)
      if (!d || !d.isDir || d.r.generation !== job.gen) continue
      if (isUnexpanded(d)) {
        for (const m of expandDir(vol, c, d, job.path)) stack.push({ino: m.inode.ino, gen: m.inode.r.generation, path: m.path})
        continue
      }
      for (const e of dirList(vol, d)) {
        if (e.type !== DT_DIR) continue
        const child = vol.iget(e.ino)
        stack.push({ino: child.ino, gen: child.r.generation, path: `${job.path}/${nameText(e.name)}`})
      }
    }
    finishExpansion(vol, c)
    this.stack = null
    return 'done'
  }
}

/** Directories expanded and known so far, for progress displays. */
export function progressOf(f: Fileset): ExpandProgress {
  return {done: f.dirsDone, total: Math.max(f.dirsTotal, f.dirsDone)}
}

export interface ExpansionStatus {
  fileset: string
  mode: 'async' | 'lazy'
  source: string
  /** directories expanded so far */
  done: number
  /** directories known so far (expanded + known still to expand); grows as expansion finds more */
  known: number
  /** ms since the clone was made */
  elapsedMs: number
  /** estimated ms left at the rate so far (async only; null when unknown) */
  etaMs: number | null
}

/** Every clone still expanding, with its progress (`prism status`, `prism fileset list`). */
export function expansionStatus(vol: Volume, now = Date.now()): ExpansionStatus[] {
  return buildingFilesets(vol).filter(isExpanding).map((f) => {
    const {done, total} = progressOf(f)
    const elapsedMs = Math.max(0, now - f.created)
    const async = f.mode === MODE_ASYNC
    const etaMs = async && done > 0 && elapsedMs > 0 ? Math.round((total - done) * (elapsedMs / done)) : null
    return {
      fileset: f.name, mode: async ? 'async' : 'lazy', source: filesetById(vol, f.srcFileset)?.name ?? `#${f.srcFileset}`,
      done, known: total, elapsedMs, etaMs,
    }
  })
}
