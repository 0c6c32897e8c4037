// In-memory inode: the decoded record plus its loaded extent map. Owned by the Volume's
// inode cache; changes reach the inode table when the Volume commits.
//
// The cache is bounded (Volume.trimInodeCache), but callers keep Inode objects across calls,
// and across commits. An object the cache has dropped is marked stale and forwards every use
// to the one live object for its inode (or, when there is none, reads its record again from
// the inode table, which was up to date when it was dropped, and becomes the live one). So
// two objects for one inode never hold diverging changes. What must not be kept across a
// commit is a part of an inode (its `r` record or its `extents` array): take it again.
import {emptyInode, type InodeRecord} from '../format/inode.js'
import {realtimeNow} from '../sys.js'
import type {ExtentMap} from './extentmap.js'
import {forgetExtentChanges, undoExtentChanges, watchExtentChanges} from './extundo.js'
import type {TreeShape} from './extents.js'
import {S_IFBLK, S_IFCHR, S_IFIFO, S_IFMT, S_IFDIR, S_IFLNK, S_IFREG, S_IFSOCK, isSpecial} from '../format/constants.js'

/** Every kind of inode a user sees. */
export type FileType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket'

/** The FileType of a mode's S_IFMT bits. */
export function fileTypeOf(mode: number): FileType {
  switch (mode & S_IFMT) {
    case S_IFDIR: return 'dir'
    case S_IFLNK: return 'symlink'
    case S_IFCHR: return 'chardev'
    case S_IFBLK: return 'blockdev'
    case S_IFIFO: return 'fifo'
    case S_IFSOCK: return 'socket'
    default: return 'file'
  }
}

/** The S_IFMT bits of a FileType. */
export function modeOfType(t: FileType): number {
  return {file: S_IFREG, dir: S_IFDIR, symlink: S_IFLNK, chardev: S_IFCHR, blockdev: S_IFBLK, fifo: S_IFIFO, socket: S_IFSOCK}[t]
}

/** Where a stale Inode finds its live self (the Volume). */
export interface InodeHome {
  /** The live object for `stale.ino`: another one, or `stale` itself made live again. */
  reattach(stale: Inode): Inode
}

/** A changed map of more extents than this is not copied by a savepoint but has its changes recorded (Inode.snapshot). */
const MAP_COPY_MAX = 32

/** Ends what snapshot() started for `s` once its savepoint ends without restore(): the map's changes stand. */
export function forgetSnapshot(s: InodeState): void {
  if (s.ext && s.extWatched) forgetExtentChanges(s.ext)
}

/** What a stale object holds instead of its record (never read: a stale object forwards). */
const DROPPED: InodeRecord = Object.freeze(emptyInode()) as InodeRecord

/**
 * What a running savepoint (Volume.savepoint) needs to hear: each live Inode object, once per
 * savepoint, before its first use in it (any read or change of its record, map, tree or
 * zones). `epoch` tells savepoints apart; `fn` is null while none runs.
 */
export const savepointWatch: {epoch: number, fn: ((inode: Inode) => void) | null} = {epoch: 1, fn: null}

/** An Inode's in-memory state, as a savepoint keeps it (Inode.snapshot). */
export interface InodeState {
  rec: InodeRecord
  /** the map then: a copy, or the map itself with its changes recorded (extundo.ts), or null (read again from its blocks) */
  ext: ExtentMap | null
  extWatched: boolean
  tree: number[]
  extDirty: boolean
  zn: number[] | undefined
}

export class Inode {
  private rec: InodeRecord
  private ext: ExtentMap | null = null
  private tree: number[] = []
  private extDirty = false
  private shp: TreeShape | undefined = undefined
  private zn: number[] | undefined = undefined
  /** the savepoint epoch this object was last reported in (savepointWatch) */
  private seen = 0
  /** set while the volume's cache does not hold this object: uses go through home.reattach */
  home: InodeHome | null = null
  /** the cache's second-chance bit: set by every lookup that finds this object */
  used = true

  constructor(readonly ino: number, r: InodeRecord) {
    this.rec = r
  }

  /** This object, or the live one it stands for. */
  live(): Inode {
    const o = this.home ? this.home.reattach(this) : this
    const w = savepointWatch
    if (w.fn !== null && o.seen !== w.epoch) {
      o.seen = w.epoch
      w.fn(o)
    }
    return o
  }

  /** Drops the payload (the cache let this object go). */
  drop(home: InodeHome): void {
    this.home = home
    this.rec = DROPPED
    this.ext = null
    this.tree = []
    this.extDirty = false
    this.shp = undefined
    this.zn = undefined
    this.seen = 0
  }

  /** Makes a stale object live again with a record read afresh. */
  revive(r: InodeRecord): void {
    this.home = null
    this.rec = r
    this.ext = null
    this.tree = []
    this.extDirty = false
    this.shp = undefined
    this.zn = undefined
    this.used = true
  }

  /**
   * A deep copy of this live object's state, for a savepoint to restore (restore). The map
   * matters only when it has changes its blocks do not hold yet (otherwise restore() leaves it
   * to be read again from them): a small one is copied, a large one has its changes recorded
   * from now on (extundo.ts), so that a file of thousands of extents written by many requests
   * is not copied whole for each. The savepoint ends that recording (forget).
   */
  snapshot(): InodeState {
    const r = this.rec
    const ext = this.ext && this.extDirty ? this.ext : null
    const watched = ext !== null && ext.length > MAP_COPY_MAX
    if (watched) watchExtentChanges(ext)
    return {
      rec: {...r, area: Buffer.from(r.area)},
      ext: ext && !watched ? ext.clone() : ext,
      extWatched: watched,
      tree: this.tree.slice(),
      extDirty: this.extDirty,
      zn: this.zn?.slice(),
    }
  }

  /**
   * Puts back a snapshot's state. The tree's cached shape goes (the next storeExtents builds
   * it again from the restored map).
   */
  restore(s: InodeState): void {
    this.rec = s.rec
    if (s.ext && s.extWatched) undoExtentChanges(s.ext)
    this.ext = s.ext
    this.tree = s.tree
    this.extDirty = s.extDirty
    this.shp = undefined
    this.zn = s.zn
  }

  get r(): InodeRecord { return this.live().rec }
  set r(v: InodeRecord) { this.live().rec = v }

  /** the file's mapping, sorted by logical block; loaded on first use */
  get extents(): ExtentMap | null { return this.live().ext }
  set extents(v: ExtentMap | null) { this.live().ext = v }

  /** extent-tree node blocks currently holding the mapping (reused when it is rewritten) */
  get treeBlocks(): number[] { return this.live().tree }
  set treeBlocks(v: number[]) { this.live().tree = v }

  get extentsDirty(): boolean { return this.live().extDirty }
  set extentsDirty(v: boolean) { this.live().extDirty = v }

  /** the node blocks as storeExtents last wrote them, which its next write patches (extents.ts) */
  get treeShape(): TreeShape | undefined { return this.live().shp }
  set treeShape(v: TreeShape | undefined) { this.live().shp = v }

  /**
   * Locality policy (fs/locality.ts): where this file's overflow zones start (group g's window
   * in zone z is at z + g * overflow); undefined until first needed. A cache of what the map
   * says (zonesOf), never stored.
   */
  get zones(): number[] | undefined { return this.live().zn }
  set zones(v: number[] | undefined) { this.live().zn = v }

  get isDir(): boolean { return (this.r.mode & S_IFMT) === S_IFDIR }
  get isReg(): boolean { return (this.r.mode & S_IFMT) === S_IFREG }
  get isLnk(): boolean { return (this.r.mode & S_IFMT) === S_IFLNK }
  /** a device, FIFO or socket: no data, a device number (FORMAT.md §5.5) */
  get isSpecial(): boolean { return isSpecial(this.r.mode) }
  get type(): FileType {
    return fileTypeOf(this.r.mode)
  }
}

export interface Timestamp {
  s: number
  ns: number
}

/** The time now, to the nanosecond (the kernel's clock: src/sys.ts realtimeNow). */
export function now(): Timestamp {
  return realtimeNow()
}

/**
 * A time in nanoseconds since the epoch (a host stat's atimeNs, mtimeNs) as seconds and a
 * nanosecond part in [0, 1e9): before 1970 the seconds are negative and the part still
 * counts forward (-0.5 s is -1 s + 500,000,000 ns).
 */
export function timestampOfNs(t: bigint): Timestamp {
  const G = 1_000_000_000n
  const ns = ((t % G) + G) % G
  return {s: Number((t - ns) / G), ns: Number(ns)}
}

export function touch(r: InodeRecord, which: {a?: boolean, m?: boolean, c?: boolean}, t: Timestamp = now()): void {
  if (which.a) { r.atimeS = t.s; r.atimeNs = t.ns }
  if (which.m) { r.mtimeS = t.s; r.mtimeNs = t.ns }
  if (which.c) { r.ctimeS = t.s; r.ctimeNs = t.ns }
}

/**
 * relatime, Linux's default for mounts: whether an access (a read, a directory listing) at `t`
 * moves atime. It does when atime is not later than mtime or ctime (the first access after a
 * change), or is a day old.
 */
export function atimeDue(r: InodeRecord, t: Timestamp): boolean {
  const before = (s: number, ns: number, s2: number, ns2: number): boolean => s < s2 || (s === s2 && ns <= ns2)
  return before(r.atimeS, r.atimeNs, r.mtimeS, r.mtimeNs) || before(r.atimeS, r.atimeNs, r.ctimeS, r.ctimeNs) ||
    t.s - r.atimeS >= 24 * 3600
}
