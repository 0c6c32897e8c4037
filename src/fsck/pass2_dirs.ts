// fsck pass 2: the fileset table, then every fileset's tree from its root, iteratively
// (trees can be deep). Reads each reachable directory (inline or extendible hash: bucket
// and pointer checksums, pointer-table layout, entry placement), checks every entry, and
// counts per fileset the names each inode has and the subdirectories of each directory,
// and the names each fileset lost to damage (for lostfound.ts). Bad entries are left out
// of the directory's entry list (an invalid name is renamed instead, never kept), and the
// directory is scheduled for a rebuild (rebuild.ts); this pass itself never changes a
// directory block.
import {
  BLOCK_SIZE, DIR_MAX_DEPTH, DIR_PTRS_PER_BLOCK, DIR_PTR_BASE, DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, FILESETS_PER_BLOCK,
  FILESET_NAME_MAX, FILESET_RECORD_SIZE, FS_ACTIVE, FS_DELETING, FS_EXPANDING, FS_FREE, IF_UNEXPANDED, IF_XATTR, MODE_LAZY, MODE_NONE,
} from '../format/constants.js'
import {crc32, nameHashAt} from '../format/checksum.js'
import {BUCKET_HDR, BUCKET_MAGIC, BUCKET_SPACE, DIRENT_FIXED, nameProblem} from '../format/dirent.js'
import {nameText} from '../format/name.js'
import {encodeFileset, filesetNameProblem, readFilesetRaw} from '../format/fileset.js'
import {INODE_AREA_SIZE} from '../format/inode.js'
import {
  DT_OF_KIND, R_FILESET, R_ORPHAN_LIST, R_ORPHAN_TREE, T_DIR, T_FREE, T_REG, T_XATTR, type DirTable, type FilesetInfo, type FsckContext,
} from './context.js'
import type {FsckProblem, ProblemCode} from './problems.js'
import {tableFileBlocks} from './filesettable.js'
import {fastCrc32} from '../sys.js'

const DT_NAME: Record<number, string> = {
  [DT_REG]: 'file', [DT_DIR]: 'directory', [DT_LNK]: 'symlink', [DT_CHR]: 'character device', [DT_BLK]: 'block device', [DT_FIFO]: 'FIFO', [DT_SOCK]: 'socket',
}

// ---------------------------------------------------------------- the fileset table

function zeroRange(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false
  return true
}

/** The block holding fileset slot `slot` (fixed table or table file, FORMAT.md §8.7) and the record's offset. */
export function slotLocation(ctx: FsckContext, slot: number): {block: number, off: number} {
  const fixed = ctx.sb.filesetSlots
  if (slot < fixed) return {block: ctx.sb.filesetTableStart + Math.floor(slot / FILESETS_PER_BLOCK), off: (slot % FILESETS_PER_BLOCK) * FILESET_RECORD_SIZE}
  return {block: ctx.tableBlocks[Math.floor((slot - fixed) / FILESETS_PER_BLOCK)], off: ((slot - fixed) % FILESETS_PER_BLOCK) * FILESET_RECORD_SIZE}
}

export function writeRecord(ctx: FsckContext, f: FilesetInfo | null, slot: number): void {
  if (!ctx.repair) return
  const {block, off} = slotLocation(ctx, slot)
  encodeFileset(f, ctx.vol.store.getMut(block), off)
  ctx.vol.filesetCache = null
  ctx.maybeCommit()
}

/**
 * Whether the tree under directory `ino` holds a directory UNEXPANDED from fileset `id`:
 * then it is a clone's of that fileset, never that fileset's own. Looks at
 * the first 10,000 directories, breadth first (run only when two records name one root).
 */
function expandsFrom(ctx: FsckContext, ino: number, id: number): boolean {
  if (ctx.itype[ino] !== T_DIR) return false
  const seen = new Set<number>([ino])
  const queue = [ino]
  for (let i = 0; i < queue.length && i < 10_000; i++) {
    const d = queue[i]
    if (ctx.iflags[d] & IF_UNEXPANDED) {
      if (ctx.unexpandedSource(d).fileset === id) return true
      continue
    }
    for (const e of keptEntries(ctx, d)) if (ctx.itype[e.ino] === T_DIR && !seen.has(e.ino)) { seen.add(e.ino); queue.push(e.ino) }
  }
  return false
}

/** Reads and checks the fileset table; fills ctx.filesets with the filesets to walk. */
export function checkFilesets(ctx: FsckContext): void {
  const sb = ctx.sb
  const list: FilesetInfo[] = []
  const changed = new Set<FilesetInfo>()
  const rootValid = (ino: number) => ino >= 1 && ino <= sb.inodeCount && ctx.itype[ino] === T_DIR
  ctx.tableBlocks = tableFileBlocks(ctx)
  // The fixed table's blocks that hold anything (the rest are holes: free slots), then the
  // table file's (FORMAT.md §8.7). Slot numbers run on from the fixed table into the file.
  const blocks: Array<{block: number, first: number, limit: number}> = []
  for (const [a, b] of ctx.vol.dataRunsOf(sb.filesetTableStart, sb.filesetTableBlocks)) {
    for (let blk = a; blk < b; blk++) blocks.push({block: blk, first: (blk - sb.filesetTableStart) * FILESETS_PER_BLOCK, limit: sb.filesetSlots})
  }
  ctx.tableBlocks.forEach((block, k) => blocks.push({block, first: sb.filesetSlots + k * FILESETS_PER_BLOCK, limit: Infinity}))
  const rootOwner = new Map<number, FilesetInfo>()
  for (const {block, first, limit} of blocks) {
    const buf = ctx.vol.store.get(block)
    for (let i = 0; i < FILESETS_PER_BLOCK; i++) {
      const slot = first + i
      const off = i * FILESET_RECORD_SIZE
      const where = `fileset slot ${slot}`
      const id = buf.readUInt32LE(off)
      if (id === 0 || slot >= limit) {
        if (!zeroRange(buf, off, off + FILESET_RECORD_SIZE)) {
          const p = ctx.report('FILESET_SLOT_DIRTY', where)
          writeRecord(ctx, null, slot)
          ctx.fixed(p)
        }
        continue
      }
      const nameLen = buf[off + 0x0e]
      // The record with fsck's fields added in place (a spread into a new object cost more
      // than the rest of the check at 10,000 filesets).
      const f = readFilesetRaw(buf, off) as FilesetInfo
      f.slot = slot
      f.rootOk = true
      f.rootProblem = null
      f.lost = 0
      const stateOk = f.state !== FS_FREE && f.state <= FS_DELETING && f.mode <= MODE_LAZY
      const nameOk = nameLen >= 1 && nameLen <= FILESET_NAME_MAX && filesetNameProblem(f.name) === null
      if (buf.readUInt32LE(off + 0xfc) !== fastCrc32(buf, off, off + 0xfc)) {
        if (stateOk && nameOk && rootValid(f.rootIno)) {
          const p = ctx.report('FILESET_CRC', where)
          changed.add(f)
          ctx.fixed(p)
        } else {
          const p = ctx.report('FILESET_BAD', where, {detail: 'checksum mismatch and implausible content; the slot is cleared'})
          writeRecord(ctx, null, slot)
          ctx.fixed(p)
          continue
        }
      }
      if (!stateOk) {
        const p = ctx.report('FILESET_BAD_STATE', where, {state: f.state, mode: f.mode})
        f.state = FS_ACTIVE
        f.mode = MODE_NONE
        changed.add(f)
        ctx.fixed(p)
      }
      if (!nameOk) {
        const p = ctx.report('FILESET_BAD_NAME', where, {name: `"${f.name}"`})
        f.name = `fileset-${f.id}`
        changed.add(f)
        ctx.fixed(p)
      }
      let other = rootOwner.get(f.rootIno)
      if (other && expandsFrom(ctx, f.rootIno, other.id) && !expandsFrom(ctx, f.rootIno, f.id)) {
        // Two records name one root, and the tree there expands from the first: it is a
        // clone's of that fileset, not that fileset's own root (whose record is the damaged one).
        other.rootOk = false
        other.lost = Infinity
        other.rootProblem = ctx.report('FILESET_BAD_ROOT', `fileset ${other.name}`, {
          ino: other.rootIno, detail: `is the root of fileset ${f.name}, whose tree expands from this one`,
        })
        rootOwner.set(f.rootIno, f)
        other = undefined
      }
      if (rootValid(f.rootIno) && !other) rootOwner.set(f.rootIno, f)
      if (!rootValid(f.rootIno) || other) {
        // A directory is never shared, so neither is a root.
        f.rootOk = false
        f.lost = Infinity
        f.rootProblem = ctx.report('FILESET_BAD_ROOT', `fileset ${f.name}`, {
          ino: f.rootIno, detail: other ? `is already the root of fileset ${other.name}` : 'is not a directory in use',
        })
      }
      list.push(f)
    }
  }
  // Ids and names must be unique; parents must exist.
  let maxId = Math.max(0, sb.nextFilesetId - 1)
  for (const f of list) if (f.id > maxId) maxId = f.id
  const ids = new Set<number>()
  for (const f of list) {
    if (ids.has(f.id)) {
      const p = ctx.report('FILESET_DUP_ID', `fileset slot ${f.slot}`, {id: f.id})
      f.id = ++maxId
      changed.add(f)
      ctx.fixed(p)
    }
    ids.add(f.id)
  }
  const names = new Set<string>()
  for (const f of list) {
    if (names.has(f.name)) {
      const p = ctx.report('FILESET_DUP_NAME', `fileset slot ${f.slot}`, {name: f.name})
      let n = `${f.name.slice(0, 100)}-${f.id}`
      for (let k = 2; names.has(n); k++) n = `${f.name.slice(0, 100)}-${f.id}-${k}`
      f.name = n
      changed.add(f)
      ctx.fixed(p)
    }
    names.add(f.name)
  }
  // A parent that is the source of a clone in flight may come back under its id if only its
  // record is lost (clonestate.ts looks for its tree, then settles these parents).
  const sources = new Set(list.filter((f) => f.state === FS_EXPANDING).map((f) => f.srcFileset))
  for (const f of list) {
    if (f.parentId !== 0 && !ids.has(f.parentId) && !sources.has(f.parentId)) {
      const p = ctx.report('FILESET_BAD_PARENT', `fileset ${f.name}`, {parent: f.parentId})
      f.parentId = 0
      changed.add(f)
      ctx.fixed(p)
    }
  }
  for (const f of changed) writeRecord(ctx, f, f.slot)
  if (sb.nextFilesetId <= maxId) {
    const p = ctx.report('SB_NEXT_FILESET_ID', 'superblock', {value: sb.nextFilesetId, max: maxId})
    if (ctx.repair) { sb.nextFilesetId = maxId + 1; ctx.vol.markSbDirty() }
    ctx.fixed(p)
  }
  let maxClone = 0
  for (const f of list) if (f.clonestart > maxClone) maxClone = f.clonestart
  if (sb.cloneClock < maxClone) {
    const p = ctx.report('SB_CLONE_CLOCK', 'superblock', {value: sb.cloneClock, max: maxClone})
    if (ctx.repair) { sb.cloneClock = maxClone; ctx.vol.markSbDirty() }
    ctx.fixed(p)
  }
  ctx.filesets = list
  ctx.maybeCommit()
}

// ---------------------------------------------------------------- reading directories

/** The directory name hash of buf[off, off+len) (format/checksum.ts). */
export function hashAt(buf: Buffer, off: number, len: number, seed: number): number {
  return nameHashAt(buf, off, len, seed)
}

/** The entries of one directory, as parallel arrays reused from one directory to the next. */
class Entries {
  n = 0
  ino = new Uint32Array(256)
  lastclone = new Uint32Array(256)
  hash = new Uint32Array(256)
  /** the hash of the name with this directory's seed */
  chash = new Uint32Array(256)
  type = new Uint8Array(256)
  /** offset of the name in src */
  off = new Uint32Array(256)
  len = new Uint8Array(256)
  /** logical bucket (-1: inline) */
  bucket = new Int32Array(256)
  /** 1: the name may be invalid (it holds '/' or NUL, or starts with '.' in 1 or 2 bytes): nameProblemAt looks */
  odd = new Uint8Array(256)
  src: Buffer[] = []
  /** hash table for finding duplicate names (entry index + 1, 0 = empty) */
  table = new Int32Array(0)

  reset(): void {
    this.n = 0
  }

  private grow(): void {
    const cap = this.ino.length * 2
    const g = <T extends Uint32Array | Uint8Array | Int32Array | Float64Array>(a: T, make: (n: number) => T): T => { const b = make(cap); b.set(a); return b }
    this.ino = g(this.ino, (n) => new Uint32Array(n))
    this.lastclone = g(this.lastclone, (n) => new Uint32Array(n))
    this.hash = g(this.hash, (n) => new Uint32Array(n))
    this.chash = g(this.chash, (n) => new Uint32Array(n))
    this.type = g(this.type, (n) => new Uint8Array(n))
    this.off = g(this.off, (n) => new Uint32Array(n))
    this.len = g(this.len, (n) => new Uint8Array(n))
    this.bucket = g(this.bucket, (n) => new Int32Array(n))
    this.odd = g(this.odd, (n) => new Uint8Array(n))
  }

  /** Adds the entry at buf[o..]; the caller has checked that it fits. */
  push(buf: Buffer, o: number, seed: number, bucket: number): void {
    if (this.n === this.ino.length) this.grow()
    const i = this.n++
    const len = buf[o + 13]
    this.ino[i] = buf.readUInt32LE(o)
    this.lastclone[i] = buf.readUInt32LE(o + 4)
    this.hash[i] = buf.readUInt32LE(o + 8)
    this.type[i] = buf[o + 12]
    this.off[i] = o + DIRENT_FIXED
    this.len[i] = len
    this.chash[i] = hashAt(buf, o + DIRENT_FIXED, len, seed)
    this.bucket[i] = bucket
    this.src[i] = buf
    // Whether a byte of the name is NUL or '/', four at a time (a byte b of word v is 0 when
    // (v - 0x01010101) & ~v has bit 7 of b set, for the lowest such byte: enough to say "some").
    const s = o + DIRENT_FIXED
    const e = s + len
    let odd = len <= 2 && buf[s] === 0x2e ? 1 : 0
    let k = s
    for (; odd === 0 && k + 4 <= e; k += 4) {
      const v = buf[k] | (buf[k + 1] << 8) | (buf[k + 2] << 16) | (buf[k + 3] << 24)
      const x = v ^ 0x2f2f2f2f
      if ((((v - 0x01010101) & ~v) | ((x - 0x01010101) & ~x)) & 0x80808080) odd = 1
    }
    for (; odd === 0 && k < e; k++) if (buf[k] === 0 || buf[k] === 0x2f) odd = 1
    this.odd[i] = odd
  }

  name(i: number): string {
    return nameText(this.src[i].subarray(this.off[i], this.off[i] + this.len[i]))
  }

  nameBuf(i: number): Buffer {
    return Buffer.from(this.src[i].subarray(this.off[i], this.off[i] + this.len[i]))
  }

  sameName(i: number, j: number): boolean {
    const li = this.len[i]
    if (li !== this.len[j]) return false
    return this.src[i].compare(this.src[j], this.off[j], this.off[j] + li, this.off[i], this.off[i] + li) === 0
  }

  /** Marks in `out` (1) every entry whose name appeared earlier in the directory. */
  duplicates(out: Uint8Array): boolean {
    const n = this.n
    if (n < 2) return false
    const SHIFT = 2 ** 21
    let found = false
    if (n <= 24) {
      // Most directories are small: comparing hashes pairwise beats sorting them.
      const ch = this.chash
      for (let i = 1; i < n; i++) {
        for (let j = 0; j < i; j++) {
          if (ch[i] === ch[j] && !out[j] && this.sameName(i, j)) { out[i] = 1; found = true; break }
        }
      }
      return found
    }
    if (n >= SHIFT) {
      const first = new Map<number, number[]>()
      for (let i = 0; i < n; i++) {
        const l = first.get(this.chash[i])
        if (!l) { first.set(this.chash[i], [i]); continue }
        if (l.some((j) => this.sameName(i, j))) { out[i] = 1; found = true } else l.push(i)
      }
      return found
    }
    // An open-addressing table of the names seen so far, by hash (linear in n: a sort of
    // every directory's hashes cost fsck a fifth of its time over 10,000 clones' trees).
    let cap = 64
    while (cap < 2 * n) cap *= 2
    if (this.table.length < cap) this.table = new Int32Array(cap)
    const table = this.table
    table.fill(0, 0, cap)
    const mask = cap - 1
    const shift = 32 - Math.log2(cap)
    const ch = this.chash
    for (let i = 0; i < n; i++) {
      const h = ch[i]
      for (let k = Math.imul(h, 0x9e3779b1) >>> shift; ; k = (k + 1) & mask) {
        const s = table[k]
        if (s === 0) { table[k] = i + 1; break }
        const j = s - 1
        if (ch[j] === h && this.sameName(i, j)) { out[i] = 1; found = true; break }
      }
    }
    return found
  }
}

// ---------------------------------------------------------------- directory blocks

/**
 * Bytes of buckets pass 2 reads before its walks (DirBlocks). PRISM_FSCK_HELD_BYTES sets it,
 * for the tests (read at each check): 0 reads every bucket in windows as the walk meets it.
 */
function heldBytes(): number {
  const v = process.env.PRISM_FSCK_HELD_BYTES
  return v !== undefined && v !== '' ? Number(v) : 64 * 2 ** 20
}

/** Bytes per segment of DirBlocks' arena (a bucket's bytes never straddle two). */
const SEGMENT = 1 << 24
/** Blocks per window of DirBlocks (the span one read-ahead covers). */
const WINDOW = 256
/** Blocks of the window before the block that missed (a walk may go down the block numbers). */
const BEHIND = 32
/** Runs of listed blocks at most this far apart are read with one call: a few blocks more cost less than a call. */
const GAP = 8

/**
 * The bucket blocks of hashed directories. The first ones, in block order, are read before
 * the walk (as e2fsck's pass 2 reads its sorted directory-block list) and kept compact: each
 * bucket's header and the entries up to its fill, with its checksum verified while the whole
 * block was at hand. Small directories fill a few percent of their 4 KiB bucket, so this holds
 * a few MB where whole blocks would take tens, and the walk in tree order then reads nothing.
 *
 * Past `budget` bytes (an image of thousands of clones holds gigabytes of buckets) the rest
 * are read as the walk meets them, in windows of nearby blocks: a walk meets directories
 * roughly in the order their blocks were allocated (a clone copies its source's tree in walk
 * order), so the window that holds one directory's bucket mostly holds the next ones' too. A
 * bucket is then parsed where it is in the window, valid until the next find().
 *
 * Only blocks mapped once, as a bucket, are listed; the others (pointer blocks, blocks a
 * damaged map gives two roles), and every block when `load` was not called, are read through
 * the block cache.
 */
class DirBlocks {
  /** the blocks listed, in block order */
  private blocks = new Float64Array(0)
  private count = 0
  /** blocks[0, held) are kept: where their bytes are (segment, offset, length), and their checksum's soundness */
  private held = 0
  private seg = new Uint16Array(0)
  private off = new Uint32Array(0)
  private len = new Uint16Array(0)
  private crcOk = new Uint8Array(0)
  private segs: Buffer[] = []
  /** the window: blocks[from, to) are in it, block p at (p - first) * BLOCK_SIZE */
  private win = Buffer.alloc(0)
  private from = 0
  private to = 0
  private first = 0

  /** find()'s answer: the buffer and offset of the bucket, whether its checksum is right, and whether it is in the window */
  buf: Buffer = Buffer.alloc(0)
  base = 0
  ok = false
  windowed = false

  /** Lists the bucket blocks of the hashed directories in `ctx.dirs` and reads the first `budget` bytes' worth. */
  load(ctx: FsckContext, budget = heldBytes()): void {
    // A block mapped twice (a damaged image) or as anything but a bucket is left to the
    // cache. Every mapped block as 2p + 1 for a bucket and 2p otherwise, sorted: a block is
    // listed when it appears once, as a bucket.
    const dirs = ctx.dirs
    const {extL, extN, extP} = dirs
    let mapped = 0
    for (let d = 0; d < dirs.n; d++) {
      if (dirs.ino[d] === 0 || !dirs.hashed[d]) continue
      for (let i = dirs.extStart[d], end = i + dirs.extCount[d]; i < end; i++) mapped += extN[i]
    }
    const keys = new Float64Array(mapped)
    let m = 0
    for (let d = 0; d < dirs.n; d++) {
      if (dirs.ino[d] === 0 || !dirs.hashed[d]) continue
      const nb = dirs.buckets[d]
      for (let i = dirs.extStart[d], end = i + dirs.extCount[d]; i < end; i++) {
        for (let k = 0, l = extL[i], p = extP[i]; k < extN[i]; k++) keys[m++] = (p + k) * 2 + (l + k < nb ? 1 : 0)
      }
    }
    keys.sort()
    const blocks = new Float64Array(m)
    let n = 0
    for (let a = 0, b = 0; a < m; a = b) {
      const p = Math.floor(keys[a] / 2)
      for (b = a + 1; b < m && Math.floor(keys[b] / 2) === p;) b++
      if (b - a === 1 && keys[a] % 2 === 1 && p < ctx.vol.dev.blocks) blocks[n++] = p
    }
    this.blocks = blocks
    this.count = n
    if (n === 0) return
    this.win = Buffer.allocUnsafe(WINDOW * BLOCK_SIZE)
    this.seg = new Uint16Array(n)
    this.off = new Uint32Array(n)
    this.len = new Uint16Array(n)
    this.crcOk = new Uint8Array(n)
    // Segments of the arena grow from 1 MiB to SEGMENT: no copy when one fills.
    let segBuf = Buffer.allocUnsafe(Math.min(SEGMENT, Math.max(1 << 20, n * 512)))
    this.segs = [segBuf]
    let used = 0
    let total = 0
    const scratch = this.win
    for (let i = 0; i < n;) {
      const start = blocks[i]
      let j = i + 1
      while (j < n && blocks[j] - blocks[j - 1] <= GAP && blocks[j] - start < WINDOW) j++
      ctx.readBlocks(start, blocks[j - 1] - start + 1, scratch)
      for (let k = i; k < j; k++) {
        const bo = (blocks[k] - start) * BLOCK_SIZE
        // The header and the filled part, or the whole block when its fill is out of range.
        const fill = scratch.readUInt16LE(bo + 6)
        const keep = fill <= BUCKET_SPACE ? BUCKET_HDR + fill : BLOCK_SIZE
        if (total + keep > budget) return // the rest: read in windows as the walk meets them
        if (used + keep > segBuf.length) {
          segBuf = Buffer.allocUnsafe(Math.min(SEGMENT, Math.max(segBuf.length * 2, keep)))
          this.segs.push(segBuf)
          used = 0
        }
        scratch.copy(segBuf, used, bo, bo + keep)
        this.seg[k] = this.segs.length - 1
        this.off[k] = used
        this.len[k] = keep
        this.crcOk[k] = scratch.readUInt32LE(bo + 12) === bucketCrcAt(scratch, bo) ? 1 : 0
        this.held = k + 1
        used += keep
        total += keep
      }
      i = j
    }
  }

  /** The index of block p in `blocks`, or -1. */
  private indexOf(p: number): number {
    let lo = 0
    let hi = this.count
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.blocks[mid] < p) lo = mid + 1
      else hi = mid
    }
    return lo < this.count && this.blocks[lo] === p ? lo : -1
  }

  /** Reads into the window the listed blocks not kept around blocks[k] (runs of nearby ones with one read each). */
  private fill(ctx: FsckContext, k: number): void {
    const blocks = this.blocks
    const p = blocks[k]
    let a = k
    while (a > this.held && blocks[a - 1] >= p - BEHIND) a--
    const first = blocks[a]
    let b = k + 1
    while (b < this.count && blocks[b] < first + WINDOW) b++
    for (let i = a; i < b;) {
      let j = i + 1
      while (j < b && blocks[j] - blocks[j - 1] <= GAP) j++
      const start = blocks[i]
      ctx.readBlocks(start, blocks[j - 1] - start + 1, this.win.subarray((start - first) * BLOCK_SIZE))
      i = j
    }
    this.from = a
    this.to = b
    this.first = first
  }

  /**
   * Finds a bucket block: sets buf and base to it (its header and entries, up to its fill),
   * and ok to whether its checksum is right. What it sets may change at the next call.
   */
  find(ctx: FsckContext, p: number): void {
    const k = this.count > 0 ? this.indexOf(p) : -1
    if (k >= 0 && k < this.held) {
      this.buf = this.segs[this.seg[k]]
      this.base = this.off[k]
      this.ok = this.crcOk[k] === 1
      this.windowed = false
      return
    }
    if (k >= 0) {
      if (k < this.from || k >= this.to) this.fill(ctx, k)
      const o = (p - this.first) * BLOCK_SIZE
      this.buf = this.win
      this.base = o
      this.ok = this.win.readUInt32LE(o + 12) === bucketCrcAt(this.win, o)
      this.windowed = true
      return
    }
    const b = ctx.vol.store.get(p)
    this.buf = b
    this.base = 0
    this.ok = b.readUInt32LE(12) === bucketCrcAt(b, 0)
    this.windowed = false
  }
}

/** The checksum a bucket at buf[o..] should carry (format/dirent.ts bucketCrc, without a view). */
function bucketCrcAt(buf: Buffer, o: number): number {
  return fastCrc32(buf, o + BUCKET_HDR, o + BLOCK_SIZE, fastCrc32(buf, o, o + 12, 0))
}

type Rep = (code: ProblemCode, d?: Record<string, string | number>) => void

function scanInline(dirs: DirTable, d: number, ents: Entries, rep: Rep): void {
  const area = dirs.area(d)
  const base = dirs.areaOff[d]
  const size = dirs.entries[d]
  const seed = dirs.seed[d]
  const end = base + INODE_AREA_SIZE
  let o = base
  for (let i = 0; i < size; i++) {
    if (o + DIRENT_FIXED > end || area[o + 13] === 0 || o + DIRENT_FIXED + area[o + 13] > end) {
      rep('DIR_INLINE_CORRUPT', {detail: `entry ${i} of ${size} runs past the inode`})
      return
    }
    ents.push(area, o, seed, -1)
    o += DIRENT_FIXED + area[o + 13]
  }
  if (!zeroRange(area, o, end)) rep('DIR_INLINE_CORRUPT', {detail: 'bytes after the last entry'})
}

/** Parses the bucket at buf[base..] leniently (stops at the first malformed entry); returns what was wrong. */
function parseBucket(buf: Buffer, base: number, l: number, seed: number, ents: Entries): string | null {
  const count = buf.readUInt16LE(base + 4)
  const used = buf.readUInt16LE(base + 6)
  const end = base + BUCKET_HDR + Math.min(used, BUCKET_SPACE)
  let o = base + BUCKET_HDR
  for (let i = 0; i < count; i++) {
    const len = buf[o + 13]
    if (o + DIRENT_FIXED > end || len === 0 || o + DIRENT_FIXED + len > end) return `entry ${i} of ${count} runs past the bucket fill`
    ents.push(buf, o, seed, l)
    o += DIRENT_FIXED + len
  }
  if (used > BUCKET_SPACE) return `fill ${used} out of range`
  if (o !== end) return 'fill does not match the entries'
  return null
}

function scanHashed(ctx: FsckContext, d: number, ents: Entries, rep: Rep, held: DirBlocks): void {
  const store = ctx.vol.store
  const dirs = ctx.dirs
  const depth = dirs.depth[d]
  const buckets = dirs.buckets[d]
  const seed = dirs.seed[d]
  const e0 = dirs.extStart[d]
  const eEnd = e0 + dirs.extCount[d]
  const {extL, extN, extP} = dirs
  // The common case, a directory of one bucket mapped by one extent: no pointer table, no
  // chains, and every entry belongs in bucket 0.
  if (depth === 0 && buckets === 1 && eEnd - e0 === 1 && extL[e0] === 0 && extN[e0] === 1) {
    held.find(ctx, extP[e0])
    const b = held.buf
    const o = held.base
    if (b.readUInt16LE(o) === BUCKET_MAGIC && held.ok && b[o + 2] === 0 && b.readUInt32LE(o + 8) === 0) {
      const n = ents.n
      if (parseBucket(b, o, 0, seed, ents) === null) return
      ents.n = n // anything wrong: start again, the long way, to report it
    }
  }
  let mappedBlocks = 0
  for (let i = e0; i < eEnd; i++) mappedBlocks += extN[i]

  if (buckets < 1 || buckets > mappedBlocks || depth > DIR_MAX_DEPTH) {
    rep('DIR_BAD_GEOMETRY', {detail: `${buckets} buckets, depth ${depth}, ${mappedBlocks} blocks mapped`})
    // Salvage whatever bucket-shaped blocks the map holds.
    for (let i = e0; i < eEnd; i++) {
      for (let k = 0; k < extN[i] && extL[i] + k < DIR_PTR_BASE; k++) {
        const b = store.get(extP[i] + k)
        if (b.readUInt16LE(0) === BUCKET_MAGIC) parseBucket(b, 0, extL[i] + k, seed, ents)
      }
    }
    return
  }

  const nPtr = depth > 0 ? 2 ** depth : 0
  const nPtrBlocks = Math.ceil(nPtr / DIR_PTRS_PER_BLOCK)
  const bucketPhys = new Float64Array(buckets)
  const ptrPhys = new Float64Array(nPtrBlocks)
  for (let i = e0; i < eEnd; i++) {
    let extra = 0
    let extraAt = -1
    for (let k = 0; k < extN[i]; k++) {
      const l = extL[i] + k
      if (l < buckets) bucketPhys[l] = extP[i] + k
      else if (l >= DIR_PTR_BASE && l < DIR_PTR_BASE + nPtrBlocks) ptrPhys[l - DIR_PTR_BASE] = extP[i] + k
      else {
        if (extraAt < 0) extraAt = l
        extra++
      }
    }
    if (extra > 0) rep('DIR_EXTRA_BLOCK', {l: extraAt, n: extra})
  }
  for (let l = 0; l < buckets; l++) if (bucketPhys[l] === 0) rep('DIR_MISSING_BLOCK', {l})

  // The pointer table.
  let ptrs: Uint32Array | null = null
  if (depth > 0) {
    let ok = true
    for (let j = 0; j < nPtrBlocks; j++) if (ptrPhys[j] === 0) { rep('DIR_MISSING_BLOCK', {l: DIR_PTR_BASE + j}); ok = false }
    if (ok) {
      ptrs = new Uint32Array(nPtr)
      for (let j = 0; j < nPtrBlocks && ok; j++) {
        const pb = store.get(ptrPhys[j])
        if (pb.readUInt32LE(BLOCK_SIZE - 4) !== crc32(pb, 0, BLOCK_SIZE - 4)) { rep('DIR_PTR_CRC', {index: j}); ok = false; break }
        const n = Math.min(DIR_PTRS_PER_BLOCK, nPtr - j * DIR_PTRS_PER_BLOCK)
        for (let i = 0; i < n; i++) ptrs[j * DIR_PTRS_PER_BLOCK + i] = pb.readUInt32LE(i * 4)
      }
      if (ok) {
        for (let i = 0; i < nPtr; i++) {
          if (ptrs[i] >= buckets) { rep('DIR_PTR_BAD', {detail: `pointer ${i} names bucket ${ptrs[i]} of ${buckets}`}); ok = false; break }
        }
      }
      if (!ok) ptrs = null
    }
  }

  // The buckets.
  const ld = new Uint8Array(buckets)
  const ovf = new Uint32Array(buckets)
  let sound = true
  for (let l = 0; l < buckets; l++) {
    if (bucketPhys[l] === 0) { sound = false; continue }
    held.find(ctx, bucketPhys[l])
    // Another bucket of this directory may take the window's place: one read into the window
    // is copied out (its entries are read until the directory is done).
    const b = held.windowed ? Buffer.from(held.buf.subarray(held.base, held.base + BLOCK_SIZE)) : held.buf
    const base = held.windowed ? 0 : held.base
    if (b.readUInt16LE(base) !== BUCKET_MAGIC) { rep('DIR_BUCKET_CRC', {l, detail: 'has a bad magic number'}); sound = false; continue }
    if (!held.ok) { rep('DIR_BUCKET_CRC', {l, detail: 'checksum mismatch'}); sound = false }
    const bad = parseBucket(b, base, l, seed, ents)
    if (bad) { rep('DIR_BUCKET_CORRUPT', {l, detail: bad}); sound = false }
    ld[l] = b[base + 2]
    if (ld[l] > depth) { rep('DIR_BUCKET_CORRUPT', {l, detail: `local depth ${ld[l]} exceeds the directory depth ${depth}`}); sound = false }
    const o = b.readUInt32LE(base + 8)
    if (o !== 0 && (o >= buckets || o === l)) { rep('DIR_BUCKET_CORRUPT', {l, detail: `overflow link ${o} is invalid`}); sound = false }
    else ovf[l] = o
  }
  if (!sound || (depth > 0 && !ptrs)) return

  // Layout: every bucket the pointer table names is pointed to by exactly the indexes whose
  // low local-depth bits agree; overflow buckets hang off exactly one chain.
  const heads: number[] = []
  if (depth === 0) heads.push(0)
  else {
    const refc = new Uint32Array(buckets)
    for (let i = 0; i < nPtr; i++) {
      const p = ptrs![i]
      if (ptrs![i & ((1 << ld[p]) - 1)] !== p) { rep('DIR_PTR_BAD', {detail: `pointer ${i} breaks the hash layout`}); return }
      refc[p]++
    }
    for (let p = 0; p < buckets; p++) {
      if (refc[p] === 0) continue
      if (refc[p] !== 2 ** (depth - ld[p])) { rep('DIR_PTR_BAD', {detail: `bucket ${p} has ${refc[p]} pointers for local depth ${ld[p]}`}); return }
      heads.push(p)
    }
  }
  const chainHead = new Int32Array(buckets).fill(-1)
  for (const h of heads) {
    for (let l = h, guard = 0; guard <= buckets; guard++) {
      if (chainHead[l] !== -1) { rep('DIR_BUCKET_CORRUPT', {l, detail: 'overflow chains loop or merge'}); return }
      chainHead[l] = h
      l = ovf[l]
      if (l === 0) break
    }
  }
  for (let l = 0; l < buckets; l++) if (chainHead[l] === -1) rep('DIR_BUCKET_UNREFERENCED', {l})
  const mask = nPtr - 1
  for (let i = 0; i < ents.n; i++) {
    const h = chainHead[ents.bucket[i]]
    if (h < 0) continue
    const want = depth === 0 ? 0 : ptrs![ents.chash[i] & mask]
    if (want !== h) rep('DIR_HASH_MISPLACED', {name: `"${ents.name(i)}"`, hash: ents.chash[i].toString(16)})
  }
}

/** Every name of a directory's entries (latin1 strings: one character per byte). */
function namesOf(ents: Entries): Set<string> {
  const out = new Set<string>()
  for (let i = 0; i < ents.n; i++) out.add(ents.src[i].toString('latin1', ents.off[i], ents.off[i] + ents.len[i]))
  return out
}

/**
 * A valid name for an entry whose name is not: its bytes with '/' and NUL replaced by '.',
 * or, if that is still invalid or taken, `#INO` (then `#INO.2`, ...). Adds it to `taken`.
 */
function safeName(raw: Buffer, ino: number, taken: Set<string>): Buffer {
  let name = Buffer.from(raw.map((c) => (c === 0x2f || c === 0 ? 0x2e : c)))
  if (nameProblem(name) !== null || taken.has(name.toString('latin1'))) {
    name = Buffer.from(`#${ino}`)
    for (let k = 2; taken.has(name.toString('latin1')); k++) name = Buffer.from(`#${ino}.${k}`)
  }
  taken.add(name.toString('latin1'))
  return name
}

/** nameProblem (format/dirent.ts) over a range of a block: null when the name is valid. */
function nameProblemAt(ents: Entries, i: number): string | null {
  if (ents.odd[i] === 0) return null // no NUL, no '/', not '.' or '..' (Entries.push)
  const buf = ents.src[i]
  const off = ents.off[i]
  const len = ents.len[i]
  for (let k = off; k < off + len; k++) {
    const c = buf[k]
    if (c === 0x2f || c === 0) return nameProblem(buf.subarray(off, off + len))
  }
  if (buf[off] === 0x2e && (len === 1 || (len === 2 && buf[off + 1] === 0x2e))) return nameProblem(buf.subarray(off, off + len))
  return null
}

// ---------------------------------------------------------------- walking trees

/** One walk: a fileset's tree, or an orphaned directory's. */
interface Walk {
  /** prefix of every `where`: 'fileset root:' or 'orphan inode 12:' */
  prefix: string
  orphan: boolean
  /** per directory: 0 unseen, 1 queued, 2 being walked (an ancestor), 3 done */
  state: Uint8Array
  paths: Paths
  /** inodes named in this walk (fileset walks) */
  touched: InoList
  ents: Entries
  dups: Uint8Array
  /** the fileset walked (null for an orphan tree) */
  owner: FilesetInfo | null
  /** its index in ctx.filesets + 1 (0: none) */
  fsIndex: number
  /** bucket blocks read ahead (pass 2's; orphan trees read through the block cache) */
  held: DirBlocks
  /** the directory being expanded, and its problems so far (null: none) */
  dir: number
  probs: FsckProblem[] | null
  /** its entries to keep, by index (null: all so far), and the names it lost */
  keep: Uint8Array | null
  lost: number
  /** reports a problem of the directory being expanded */
  rep: Rep
}

/**
 * A list of inode numbers in a typed array that doubles as it fills: a walk names every inode
 * of its tree once, and a plain array of a million numbers is reallocated in the collected
 * heap on the way (each copy a full collection's worth of old-space growth).
 */
export class InoList {
  items = new Uint32Array(1024)
  length = 0

  push(ino: number): void {
    if (this.length === this.items.length) {
      const bigger = new Uint32Array(this.items.length * 2)
      bigger.set(this.items)
      this.items = bigger
    }
    this.items[this.length++] = ino
  }

  /** The inodes listed (a view: valid until the next push). */
  view(): Uint32Array {
    return this.items.subarray(0, this.length)
  }
}

function childPath(path: string, name: string): string {
  return path === '/' ? '/' + name : path + '/' + name
}

/**
 * Where each directory of a walk sits, kept as its parent and the bytes of its name, and
 * spelled out only when a problem is reported there: a clean walk builds no path strings.
 */
class Paths {
  /** per inode: 1 + the directory's index in the lists below (0: not in this walk) */
  private readonly index: Uint32Array
  readonly inos: number[] = []
  private readonly parent: number[] = []
  /** the names, copied (the block they were read from is not kept) */
  private names = Buffer.allocUnsafe(4096)
  private namesLen = 0
  private readonly off: number[] = []
  private readonly len: number[] = []

  constructor(inodeCount: number) {
    this.index = new Uint32Array(inodeCount + 1)
  }

  /** Records a directory of the walk, named src[off, off+len) in its parent; the root has parent 0. */
  add(ino: number, parent: number, src: Buffer, off: number, len: number): void {
    this.inos.push(ino)
    this.parent.push(parent === 0 ? -1 : this.index[parent] - 1)
    if (this.namesLen + len > this.names.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.names.length * 2, this.namesLen + len))
      this.names.copy(bigger, 0, 0, this.namesLen)
      this.names = bigger
    }
    // A byte loop: names are short, and Buffer.prototype.copy makes a view per call.
    const names = this.names
    const at = this.namesLen
    for (let i = 0; i < len; i++) names[at + i] = src[off + i]
    this.namesLen += len
    this.off.push(at)
    this.len.push(len)
    this.index[ino] = this.inos.length
  }

  /** The path of a directory of this walk ('/' for its root), or undefined. */
  of(ino: number): string | undefined {
    let k = this.index[ino] - 1
    if (k < 0) return undefined
    const names: string[] = []
    for (; this.parent[k] >= 0; k = this.parent[k]) names.push(nameText(this.names.subarray(this.off[k], this.off[k] + this.len[k])))
    return '/' + names.reverse().join('/')
  }

  clear(): void {
    for (const ino of this.inos) this.index[ino] = 0
    this.inos.length = this.parent.length = this.off.length = this.len.length = 0
    this.namesLen = 0
  }
}

const NO_NAME = Buffer.alloc(0)

function walkTree(ctx: FsckContext, w: Walk, root: number): void {
  const stack: number[] = [root]
  w.state[root] = 1
  w.paths.add(root, 0, NO_NAME, 0, 0)
  while (stack.length > 0) {
    const x = stack.pop()!
    if (x < 0) { w.state[-x] = 3; continue }
    w.state[x] = 2
    stack.push(-x)
    expand(ctx, w, x, stack)
    if ((++ctx.dirsWalked & 0xff) === 0) ctx.progress('pass 2: directories', ctx.dirsWalked, ctx.dirs.size)
  }
  // Where each UNEXPANDED directory sits, for the clone-state checks (clonestate.ts): of the
  // directories this walk met, not of every unexpanded one (the cost of many filesets stays linear).
  if (w.owner && ctx.unexpanded.size) {
    for (const ino of w.paths.inos) {
      const u = ctx.unexpanded.get(ino)
      if (u) { u.owner = w.owner; u.path = w.paths.of(ino)! }
    }
  }
  for (const d of w.paths.inos) w.state[d] = 0
  w.paths.clear()
}

/** Records a problem of the directory being expanded (its rebuild will carry it). */
function note(w: Walk, p: FsckProblem): void {
  (w.probs ??= []).push(p)
}

/** Where entry i of the directory being expanded is, for a report. */
function entryWhere(w: Walk, i: number): string {
  return w.prefix + childPath(w.paths.of(w.dir)!, w.ents.name(i))
}

/** Leaves entry i of the directory being expanded out of it, reporting why. */
function drop(ctx: FsckContext, w: Walk, i: number, code: ProblemCode, d: Record<string, string | number> = {}): void {
  note(w, ctx.report(code, entryWhere(w, i), d))
  if (!w.keep) w.keep = new Uint8Array(w.ents.n).fill(1)
  w.keep[i] = 0
  // The entry named something else once: that name is lost (ORPHAN_LINKED drops a name the
  // inode has elsewhere).
  if (code !== 'ORPHAN_LINKED') w.lost++
}

function expand(ctx: FsckContext, w: Walk, dirIno: number, stack: number[]): void {
  const dirs = ctx.dirs
  const d = dirs.numOf(dirIno)
  const hashed = dirs.hashed[d] === 1
  const size = dirs.entries[d]
  w.dir = dirIno
  w.probs = null
  const ents = w.ents
  ents.reset()
  if (hashed) scanHashed(ctx, d, ents, w.rep, w.held)
  else scanInline(dirs, d, ents, w.rep)
  const n = ents.n
  // A damaged directory block loses the entries it held: the directory's entry count says
  // how many (lostfound.ts reconnects what they named in the filesets that lost names).
  w.lost = w.probs !== null ? Math.max(0, size - n) : 0
  w.keep = null
  if (hashed && n !== size && w.probs === null) w.rep('DIR_COUNT', {have: size, want: n})
  if (w.dups.length < n) w.dups = new Uint8Array(Math.max(n, w.dups.length * 2))
  const dups = w.dups
  dups.fill(0, 0, n)
  const anyDup = ents.duplicates(dups)
  // Entries whose name is not a valid name keep their inode under a safe name.
  let renamed: Map<number, Buffer> | null = null
  let taken: Set<string> | null = null
  let subdirs = 0
  const inodeCount = ctx.sb.inodeCount
  const clock = ctx.sb.cloneClock
  const {itype, curCount, trees, reach} = ctx
  const {state, touched, orphan} = w
  const {ino: eIno, lastclone: eClone, hash: eHash, chash: eChash, type: eType} = ents
  for (let i = 0; i < n; i++) {
    const ino = eIno[i]
    const np = nameProblemAt(ents, i)
    if (ino < 1 || ino > inodeCount) { drop(ctx, w, i, 'DIRENT_BAD_INODE', {ino}); continue }
    let kind = itype[ino]
    if (kind === T_FREE) { drop(ctx, w, i, 'DIRENT_DANGLING', {ino}); continue }
    if (kind === T_XATTR) {
      // An attribute inode some inode names: no directory may name it. One that no inode
      // names but a directory does is a file whose IF_XATTR flag is the damage: it stays a file.
      if (ctx.xattrRefs[ino] > 0) { drop(ctx, w, i, 'DIRENT_ATTR_INODE', {ino}); continue }
      const p = ctx.report('INODE_BAD_FLAGS', `inode ${ino}`, {flags: ctx.iflags[ino].toString(16), kind: 'file a directory names (IF_XATTR dropped)'})
      ctx.editInode(ino, (b, o) => b.writeUInt16LE(b.readUInt16LE(o + 2) & ~IF_XATTR, o + 2))
      ctx.iflags[ino] &= ~IF_XATTR
      itype[ino] = kind = T_REG
      ctx.fixed(p)
    }
    if (anyDup && dups[i]) { drop(ctx, w, i, 'DIRENT_DUP_NAME'); continue }
    if (orphan && reach[ino] & R_ORPHAN_LIST) { drop(ctx, w, i, 'ORPHAN_LINKED'); continue }
    if (kind === T_DIR) {
      const st = state[ino]
      if (st === 2) { drop(ctx, w, i, 'DIR_LOOP', {ino}); continue }
      // Directories are never shared: one name, in one tree.
      if (st !== 0 || trees[ino] > 0) {
        drop(ctx, w, i, 'DIR_MULTIPLE_PARENTS', {ino, other: st !== 0 ? w.prefix + w.paths.of(ino) : 'another tree'})
        continue
      }
    }
    if (eClone[i] > clock) {
      // A stamp from the future would make the write guard skip a clone (src/fs/expand.ts).
      note(w, ctx.report('LASTCLONE_AHEAD', entryWhere(w, i), {value: eClone[i], clock}))
      eClone[i] = 0
    }
    if (eHash[i] !== eChash[i] && !np) { // a renamed entry gets the new name's hash
      note(w, ctx.report('DIRENT_BAD_HASH', entryWhere(w, i), {have: eHash[i].toString(16), want: eChash[i].toString(16)}))
    }
    const want = DT_OF_KIND[kind]
    if (eType[i] !== want) {
      note(w, ctx.report('DIRENT_TYPE_MISMATCH', entryWhere(w, i), {have: DT_NAME[eType[i]] ?? `code ${eType[i]}`, ino, want: DT_NAME[want]}))
      eType[i] = want
    }
    let name: Buffer | null = null
    if (np) {
      // As e2fsck ("Entry has illegal characters in its name"): '/' and NUL become '.';
      // a name that is then still invalid, or taken, becomes #INO as in lost+found.
      taken ??= namesOf(ents)
      name = safeName(ents.nameBuf(i), ino, taken)
      note(w, ctx.report('DIRENT_BAD_NAME', entryWhere(w, i), {name: `"${ents.name(i)}"`, detail: np, new: `"${nameText(name)}"`}))
      ;(renamed ??= new Map()).set(i, name)
    }
    if (kind === T_DIR) {
      subdirs++
      state[ino] = 1
      if (name) w.paths.add(ino, dirIno, name, 0, name.length)
      else w.paths.add(ino, dirIno, ents.src[i], ents.off[i], ents.len[i])
      stack.push(ino)
    }
    // Count the name.
    if (curCount[ino] === 0) touched.push(ino)
    curCount[ino]++
  }
  ctx.subdirs[dirIno] = subdirs
  if (w.lost > 0 && w.owner && w.fsIndex) w.owner.lost += w.lost
  const probs = w.probs as FsckProblem[] | null
  if (probs !== null && !ctx.rebuilds.has(dirIno)) {
    const entries = []
    const k = w.keep
    const rn = renamed as Map<number, Buffer> | null
    for (let i = 0; i < n; i++) {
      if (k && !k[i]) continue
      entries.push({ino: eIno[i], type: eType[i], lastclone: eClone[i], name: rn?.get(i) ?? ents.nameBuf(i)})
    }
    ctx.rebuilds.set(dirIno, {entries, problems: probs})
  }
}

function newWalk(ctx: FsckContext, prefix: string, orphan: boolean, state: Uint8Array, paths: Paths, ents: Entries, held: DirBlocks, touched = new InoList(), dups: Uint8Array = new Uint8Array(256)): Walk {
  const w: Walk = {prefix, orphan, state, paths, touched, ents, dups, owner: null, fsIndex: 0, held, dir: 0, probs: null, keep: null, lost: 0, rep: () => {}}
  w.rep = (code, d = {}) => note(w, ctx.report(code, w.prefix + w.paths.of(w.dir)!, d))
  return w
}

/** Pass 2: the fileset table, then each fileset's tree. */
export function pass2(ctx: FsckContext): void {
  checkFilesets(ctx)
  const held = new DirBlocks()
  held.load(ctx)
  const state = new Uint8Array(ctx.sb.inodeCount + 1)
  const paths = new Paths(ctx.sb.inodeCount)
  const ents = new Entries()
  const dirs = ctx.dirs
  for (let d = 0; d < dirs.n; d++) {
    const ino = dirs.ino[d]
    if (ino !== 0 && ctx.iflags[ino] & IF_UNEXPANDED) ctx.unexpanded.set(ino, {owner: null, path: '', count: dirs.entries[d]})
  }
  // One list of the inodes each walk names, emptied for the next (foldTree reads it first),
  // and one array of duplicate marks (as large as the largest directory so far).
  const touched = new InoList()
  let dups: Uint8Array = new Uint8Array(256)
  for (let k = 0; k < ctx.filesets.length; k++) {
    const f = ctx.filesets[k]
    if (!f.rootOk) continue
    touched.length = 0
    const w = newWalk(ctx, `fileset ${f.name}:`, false, state, paths, ents, held, touched, dups)
    w.owner = f
    w.fsIndex = k + 1
    w.touched.push(f.rootIno)
    walkTree(ctx, w, f.rootIno)
    foldTree(ctx, w)
    dups = w.dups
  }
  ctx.progress('pass 2: directories', ctx.dirs.size, ctx.dirs.size, true)
}

/** Adds a walked tree's name counts to the totals. */
function foldTree(ctx: FsckContext, w: Walk): void {
  const bit = w.orphan ? R_ORPHAN_TREE : R_FILESET
  const touched = w.touched.items
  for (let t = 0; t < w.touched.length; t++) {
    const ino = touched[t]
    const c = ctx.curCount[ino]
    if (w.fsIndex) {
      if (ctx.filesetTrees[ino] === 0) ctx.firstFs[ino] = w.fsIndex
      ctx.lastFs[ino] = w.fsIndex
    }
    if (ctx.trees[ino] === 0) ctx.firstCount[ino] = c
    else if (ctx.firstCount[ino] !== c) ctx.inconsistent.add(ino)
    if (ctx.trees[ino] < 0xffff) ctx.trees[ino]++
    if (!w.orphan && ctx.filesetTrees[ino] < 0xffff) ctx.filesetTrees[ino]++
    ctx.totalNames[ino] += c
    ctx.reach[ino] |= bit
    ctx.curCount[ino] = 0
  }
}

/**
 * Pass 2 for the directories on the orphan list: each is the root of a tree whose entries
 * still name inodes (an interrupted rm -r, a deleted fileset, a clone being built).
 */
export function walkOrphanTrees(ctx: FsckContext, roots: number[]): void {
  const state = new Uint8Array(ctx.sb.inodeCount + 1)
  const paths = new Paths(ctx.sb.inodeCount)
  const ents = new Entries()
  const held = new DirBlocks()
  for (const ino of roots) {
    if (ctx.itype[ino] !== T_DIR) continue
    const w = newWalk(ctx, `orphan inode ${ino}:`, true, state, paths, ents, held)
    walkTree(ctx, w, ino)
    // The root itself is on the list, not named by this tree.
    ctx.curCount[ino] = 0
    foldTree(ctx, w)
  }
}

// ---------------------------------------------------------------- for lost+found (lostfound.ts)

/** An entry as a listing returns it. */
export interface ListedEntry {
  ino: number
  type: number
  name: Buffer
}

/**
 * The entries of a directory, read without reporting anything: those a rebuild keeps if
 * pass 2 scheduled one, else whatever the directory's blocks hold that names an inode in
 * use (lenient, as pass 2 reads them).
 */
export function keptEntries(ctx: FsckContext, dirIno: number, ents = new Entries(), held = new DirBlocks()): ListedEntry[] {
  const rb = ctx.rebuilds.get(dirIno)
  if (rb) return rb.entries
  const d = ctx.dirs.numOf(dirIno)
  if (d < 0) return []
  ents.reset()
  if (ctx.dirs.hashed[d]) scanHashed(ctx, d, ents, () => {}, held)
  else scanInline(ctx.dirs, d, ents, () => {})
  const out: ListedEntry[] = []
  for (let i = 0; i < ents.n; i++) {
    const ino = ents.ino[i]
    if (ino < 1 || ino > ctx.sb.inodeCount || ctx.itype[ino] === T_FREE) continue
    out.push({ino, type: ents.type[i], name: ents.nameBuf(i)})
  }
  return out
}

/**
 * Which filesets (indexes into ctx.filesets) name each of `inos`, found by walking every
 * fileset's tree again as pass 2 left it (only needed for inodes more than two filesets
 * name: ctx.firstFs and ctx.lastFs answer for the others).
 */
export function filesetsNaming(ctx: FsckContext, inos: Set<number>): Map<number, number[]> {
  const out = new Map<number, number[]>()
  const ents = new Entries()
  const held = new DirBlocks()
  const seen = new Uint8Array(ctx.sb.inodeCount + 1)
  ctx.filesets.forEach((f, k) => {
    if (!f.rootOk) return
    const stack = [f.rootIno]
    const visited: number[] = []
    seen[f.rootIno] = 1
    while (stack.length > 0) {
      const d = stack.pop()!
      visited.push(d)
      for (const e of keptEntries(ctx, d, ents, held)) {
        if (inos.has(e.ino)) {
          const l = out.get(e.ino)
          if (!l) out.set(e.ino, [k])
          else if (l[l.length - 1] !== k) l.push(k)
        }
        if (ctx.itype[e.ino] === T_DIR && !seen[e.ino]) { seen[e.ino] = 1; stack.push(e.ino) }
      }
    }
    for (const d of visited) seen[d] = 0
  })
  return out
}

/**
 * Walks trees that no fileset reaches, as pass 2 walks a fileset's tree (every entry is
 * checked and counted, damaged directories are scheduled for a rebuild), each as part of
 * the fileset that takes it. Returns, per walk, the inodes it named: their names in the
 * walk are in ctx.curCount, which the caller folds into the totals and resets.
 */
export class LostWalker {
  private readonly state: Uint8Array
  private readonly paths: Paths
  private readonly ents = new Entries()
  private readonly held = new DirBlocks()

  constructor(private readonly ctx: FsckContext) {
    this.state = new Uint8Array(ctx.sb.inodeCount + 1)
    this.paths = new Paths(ctx.sb.inodeCount)
  }

  walk(root: number, owner: FilesetInfo, prefix: string): Uint32Array {
    const w = newWalk(this.ctx, prefix, false, this.state, this.paths, this.ents, this.held)
    w.owner = owner
    w.touched.push(root)
    walkTree(this.ctx, w, root)
    return w.touched.view()
  }
}
