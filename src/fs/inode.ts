// In-memory inode: the decoded record plus its loaded extent map. Owned by the Volume's
// inode cache; changes reach the inode table when the Volume commits.
import type {InodeRecord} from '../format/inode.js'
import type {Extent} from '../format/extent.js'
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

export class Inode {
  /** the file's mapping, sorted by logical block; loaded on first use */
  extents: Extent[] | null = null
  /** extent-tree node blocks currently holding the mapping (reused when it is rewritten) */
  treeBlocks: number[] = []
  extentsDirty = false
  /**
   * Locality policy (fs/locality.ts): where this file's overflow zones start (group g's window
   * in zone z is at z + g * overflow); undefined until first needed. A cache of what the map
   * says (zonesOf), never stored.
   */
  zones?: number[]

  constructor(readonly ino: number, public r: InodeRecord) {}

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

export function now(): Timestamp {
  const ms = Date.now()
  return {s: Math.floor(ms / 1000), ns: (ms % 1000) * 1e6}
}

export function touch(r: InodeRecord, which: {a?: boolean, m?: boolean, c?: boolean}, t: Timestamp = now()): void {
  if (which.a) { r.atimeS = t.s; r.atimeNs = t.ns }
  if (which.m) { r.mtimeS = t.s; r.mtimeNs = t.ns }
  if (which.c) { r.ctimeS = t.s; r.ctimeNs = t.ns }
}
