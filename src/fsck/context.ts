// The state fsck builds while it runs: the opened volume, the problems found so far, and
// the in-memory maps the passes fill and compare (like e2fsck's block_found_map and
// inode_link_info): per-inode type, flags and counts in typed arrays, per-data-block
// reference counts, and the repairs deferred to the end. It never writes anything by
// itself except through editInode/clearInode, and only when repairing.
import type {FilesetRecord} from '../format/fileset.js'
import {BLOCK_SIZE, DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, INODES_PER_BLOCK, INODE_SIZE, REFCOUNTS_PER_BLOCK, REFCOUNT_MAX} from '../format/constants.js'
import {crc32} from '../format/checksum.js'
import type {Extent} from '../format/extent.js'
import {INODE_CRC_OFF} from '../format/inode.js'
import type {Superblock} from '../format/superblock.js'
import type {Volume} from '../fs/volume.js'
import {makeProblem, type Details, type FsckProblem, type ProblemCode} from './problems.js'
import {checkInterrupt} from '../interrupt.js'

/** Inode kinds in FsckContext.itype. */
export const T_FREE = 0
export const T_REG = 1
export const T_DIR = 2
export const T_LNK = 3
/** special files (FORMAT.md §5.5) */
export const T_CHR = 4
export const T_BLK = 5
export const T_FIFO = 6
export const T_SOCK = 7
/** an attribute inode (FORMAT.md §14): named by xattr_ino fields, never by a directory */
export const T_XATTR = 8

/** The directory-entry type of each inode kind above (0: none, as for an attribute inode). */
export const DT_OF_KIND = [0, DT_REG, DT_DIR, DT_LNK, DT_CHR, DT_BLK, DT_FIFO, DT_SOCK, 0]

/** What claimed a data block (FsckContext.meta). Metadata blocks must have exactly one claim. */
export const CLAIM_DATA = 0
export const CLAIM_NODE = 1
export const CLAIM_DIR = 2

/** reach bits */
export const R_FILESET = 1
export const R_ORPHAN_TREE = 2
export const R_ORPHAN_LIST = 4

/** Bytes per chunk of DirTable's copies of inline directories' areas. */
const AREA_CHUNK = 1 << 20

/**
 * The directory inodes in use, with what pass 2 needs to read them, as typed columns
 * indexed by a directory number (given in the order pass 1 records them) instead of an
 * object and a Map entry per directory: an image of 10,000 clones holds a million
 * directories, and a million small objects cost fsck a second of garbage collection and
 * of Map lookups. `numOf` gives a directory inode's number; the columns are read directly.
 */
export class DirTable {
  /** per inode: 1 + its directory number (0: not a directory in use) */
  private readonly num: Uint32Array
  /** directory numbers given (some may have been deleted since: ino 0) */
  n = 0
  /** directories in use */
  size = 0
  /** per directory number: the inode (0: deleted) */
  ino = new Uint32Array(256)
  /** 1: entries in hashed buckets, 0: inline in the inode */
  hashed = new Uint8Array(256)
  seed = new Uint32Array(256)
  depth = new Uint8Array(256)
  buckets = new Uint32Array(256)
  /** entry count from the inode */
  entries = new Float64Array(256)
  /** inline directories: a copy of the inode area, at areaOff in chunk areaChunk (see area()) */
  areaChunk = new Uint32Array(256)
  areaOff = new Uint32Array(256)
  /** the block map as fsck will leave it (hashed directories): extents extStart.. in the pool */
  extStart = new Uint32Array(256)
  extCount = new Uint32Array(256)
  /** the extent pool, appended to (a map that changes is written again at its end) */
  extL = new Uint32Array(1024)
  extN = new Uint32Array(1024)
  extP = new Float64Array(1024)
  extUsed = 0
  /** extent-tree nodes of the few directories whose map has any, by directory number */
  private readonly nodeLists = new Map<number, number[]>()
  /** the chunks holding inline areas */
  private readonly chunks: Buffer[] = []
  private chunkWords: Uint32Array | null = null
  private chunkUsed = AREA_CHUNK
  /** the last source buffer keepArea copied from, seen as 32-bit words (null: unaligned) */
  private srcBuf: Buffer | null = null
  private srcWords: Uint32Array | null = null

  constructor(inodeCount: number) {
    this.num = new Uint32Array(inodeCount + 1)
  }

  /** Directory inode `ino`'s number, or -1 when it is not a directory in use. */
  numOf(ino: number): number {
    return this.num[ino] - 1
  }

  has(ino: number): boolean {
    return this.num[ino] !== 0
  }

  /** Records directory inode `ino` (no extents, no area yet) and returns its number. */
  add(ino: number, hashed: boolean, seed: number, depth: number, buckets: number, entries: number): number {
    if (this.num[ino] !== 0) this.delete(ino)
    if (this.n === this.ino.length) this.grow()
    const d = this.n++
    this.num[ino] = d + 1
    this.size++
    this.ino[d] = ino
    this.hashed[d] = hashed ? 1 : 0
    this.seed[d] = seed
    this.depth[d] = depth
    this.buckets[d] = buckets
    this.entries[d] = entries
    this.extStart[d] = this.extUsed
    this.extCount[d] = 0
    return d
  }

  /** Forgets directory inode `ino` (its number is not reused). */
  delete(ino: number): void {
    const d = this.num[ino] - 1
    if (d < 0) return
    this.num[ino] = 0
    this.ino[d] = 0
    this.extCount[d] = 0
    this.nodeLists.delete(d)
    this.size--
  }

  /** Appends an extent to the map of directory d, the last one added (maps are built in one go). */
  pushExtent(d: number, l: number, n: number, p: number): void {
    if (this.extUsed === this.extL.length) {
      const cap = this.extL.length * 2
      const l2 = new Uint32Array(cap); l2.set(this.extL); this.extL = l2
      const n2 = new Uint32Array(cap); n2.set(this.extN); this.extN = n2
      const p2 = new Float64Array(cap); p2.set(this.extP); this.extP = p2
    }
    const i = this.extUsed++
    this.extL[i] = l
    this.extN[i] = n
    this.extP[i] = p
    this.extCount[d]++
  }

  /** Sets the block map of directory d (the extents are copied; the nodes list is kept). */
  setMap(d: number, ext: readonly Extent[], nodes: number[]): void {
    this.extStart[d] = this.extUsed
    this.extCount[d] = 0
    for (const e of ext) this.pushExtent(d, e.l, e.n, e.p)
    if (nodes.length > 0) this.nodeLists.set(d, nodes)
    else this.nodeLists.delete(d)
  }

  /** The extents of directory d, as objects (for the rare paths that need a list). */
  extents(d: number): Extent[] {
    const out: Extent[] = []
    for (let i = this.extStart[d], end = i + this.extCount[d]; i < end; i++) out.push({l: this.extL[i], n: this.extN[i], p: this.extP[i]})
    return out
  }

  /** The extent-tree nodes of directory d. */
  nodes(d: number): number[] {
    return this.nodeLists.get(d) ?? []
  }

  /**
   * Copies an inline directory's area, buf[start, start + size), into the shared chunks
   * (one allocation for thousands of small copies, no view made per copy). Whole 32-bit
   * words are copied when buf allows it: a byte loop over a million areas cost a third of
   * a second.
   */
  keepArea(d: number, buf: Buffer, start: number, size: number): void {
    if (this.chunkUsed + size > AREA_CHUNK) {
      const c = Buffer.allocUnsafe(AREA_CHUNK)
      this.chunks.push(c)
      this.chunkWords = c.byteOffset % 4 === 0 ? new Uint32Array(c.buffer, c.byteOffset, AREA_CHUNK / 4) : null
      this.chunkUsed = 0
    }
    const dst = this.chunks[this.chunks.length - 1]
    const at = this.chunkUsed
    if (buf !== this.srcBuf) {
      this.srcBuf = buf
      this.srcWords = buf.byteOffset % 4 === 0 ? new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2) : null
    }
    const sw = this.srcWords
    const dw = this.chunkWords
    if (sw !== null && dw !== null && start % 4 === 0 && size % 4 === 0 && at % 4 === 0) {
      for (let i = start >>> 2, j = at >>> 2, end = (start + size) >>> 2; i < end; i++, j++) dw[j] = sw[i]
    } else {
      for (let i = 0; i < size; i++) dst[at + i] = buf[start + i]
    }
    this.chunkUsed += size
    this.areaChunk[d] = this.chunks.length - 1
    this.areaOff[d] = at
  }

  /** The chunk holding directory d's inline area (at areaOff[d]). */
  area(d: number): Buffer {
    return this.chunks[this.areaChunk[d]]
  }

  private grow(): void {
    const cap = this.ino.length * 2
    const g = <T extends Uint32Array | Uint8Array | Float64Array>(a: T, make: (n: number) => T): T => { const b = make(cap); b.set(a); return b }
    this.ino = g(this.ino, (k) => new Uint32Array(k))
    this.hashed = g(this.hashed, (k) => new Uint8Array(k))
    this.seed = g(this.seed, (k) => new Uint32Array(k))
    this.depth = g(this.depth, (k) => new Uint8Array(k))
    this.buckets = g(this.buckets, (k) => new Uint32Array(k))
    this.entries = g(this.entries, (k) => new Float64Array(k))
    this.areaChunk = g(this.areaChunk, (k) => new Uint32Array(k))
    this.areaOff = g(this.areaOff, (k) => new Uint32Array(k))
    this.extStart = g(this.extStart, (k) => new Uint32Array(k))
    this.extCount = g(this.extCount, (k) => new Uint32Array(k))
  }
}

/** An inode whose block map must be rewritten (bad extents dropped, claims removed). */
export interface Rewrite {
  ext: Extent[]
  nodes: number[]
  /**
   * Data-area blocks the map on disk references and the new one does not. Until the
   * rewrite they stay counted in the refcount table (pass 4 adds them), so that no
   * committed state ever has a referenced block marked free; the rewrite releases them.
   */
  released: Extent[]
  problems: FsckProblem[]
}

export interface RebuildEntry {
  ino: number
  type: number
  name: Buffer
  lastclone: number
}

/** A directory to be rebuilt from these entries (its structure or some entries were bad). */
export interface Rebuild {
  entries: RebuildEntry[]
  problems: FsckProblem[]
}

export interface FilesetInfo extends FilesetRecord {
  slot: number
  /** root is an in-use directory; false: a new empty root is made when repairing */
  rootOk: boolean
  rootProblem: FsckProblem | null
  /**
   * Names pass 2 found lost in this fileset's tree: entries a damaged directory no longer
   * holds (its entry count less those read) and entries dropped because they named the
   * wrong inode; Infinity when the root itself was lost. A fileset with losses is where
   * unreachable inodes are reconnected first (lostfound.ts).
   */
  lost: number
}

/** An inode named in a fileset's /lost+found by the repair (lostfound.ts, rebuild.ts). */
export interface LostItem {
  ino: number
  type: number
  name: Buffer
  problems: FsckProblem[]
}

/** What the repair adds to one fileset's /lost+found. */
export interface LostPlan {
  fileset: FilesetInfo
  /** the fileset's lost+found directory, 0: make one (mode 0700) */
  lfIno: number
  /** a non-directory named lost+found in the root, moved into the new directory (0: none) */
  moveAside: number
  /** set IF_NOCLONE on a new lost+found (clones of the fileset are in flight) */
  noclone: boolean
  /** no inode is left for a new lost+found: the names go in the fileset's root directory */
  inRoot: boolean
  items: LostItem[]
  /** names lost+found holds or will hold */
  names: Set<string>
}

/** A fileset the repair makes for a directory tree no existing fileset can take. */
export interface NewFileset {
  name: string
  /** the directory that becomes its root (0: a new empty root) */
  rootIno: number
  problems: FsckProblem[]
  /** as the rest of fsck sees it (slot and id are set when it is made) */
  info: FilesetInfo
}

export class FsckContext {
  readonly problems: FsckProblem[] = []
  readonly notes: string[] = []

  // ---- per inode (index = inode number)
  readonly itype: Uint8Array
  readonly iflags: Uint16Array
  readonly nlink: Uint32Array
  readonly share: Uint32Array
  /** xattr_ino of each in-use inode (FORMAT.md §14) */
  readonly xattrOf: Uint32Array
  /** how many inodes name each inode as their attribute inode (counted after pass 1) */
  readonly xattrRefs: Uint32Array
  /** directory inodes in use, with what pass 2 needs to read them */
  readonly dirs: DirTable
  /** how an inode is reached: R_* bits (pass 2 and 3) */
  readonly reach: Uint8Array
  /**
   * Trees naming the inode (or having it as root). A tree is a fileset, or a directory on
   * the orphan list whose entries the reaper has not removed yet (docs/FORMAT.md §5.6).
   */
  readonly trees: Uint16Array
  /** filesets among those trees */
  readonly filesetTrees: Uint16Array
  /** names the inode has in the first tree that names it */
  readonly firstCount: Uint32Array
  /** names in all trees */
  readonly totalNames: Uint32Array
  /** names in the tree being walked */
  readonly curCount: Uint32Array
  /** accepted subdirectory entries of each directory */
  readonly subdirs: Uint32Array
  /** inodes named a different number of times by different trees */
  readonly inconsistent = new Set<number>()

  // ---- per data block (index = block - dataStart), in chunks made on first claim
  readonly claims: BlockClaims
  /** data-block indexes claimed as metadata and also otherwise */
  readonly dups = new Set<number>()

  // ---- repairs made at the end through the library (rebuild.ts)
  readonly rewrites = new Map<number, Rewrite>()
  readonly rebuilds = new Map<number, Rebuild>()
  filesets: FilesetInfo[] = []
  /**
   * Hard-linked copies in clones still expanding: their link count includes names not
   * expanded yet, so it may exceed the names found (src/fs/expand.ts, clonestate.ts).
   */
  readonly pendingLinks = new Set<number>()
  /** UNEXPANDED directories: where pass 2 found them (owner null: in no fileset) */
  readonly unexpanded = new Map<number, {owner: FilesetInfo | null, path: string, count: number}>()
  /**
   * Trees found to be a fileset's own though no record names them as its root (clonestate.ts
   * finds them; lostfound.ts makes each that fileset's root again, or a fileset again under
   * its old id when its record is lost): the top of the tree → the fileset's id, and what
   * says the tree is its: the clones in flight that expand from it, or for a clone's own tree
   * (cloneOf), the name of the source its UNEXPANDED directories expand from.
   */
  readonly lostSources = new Map<number, {id: number, clones: string[], cloneOf?: string}>()
  /** directories pass 2 has read (for progress) */
  dirsWalked = 0
  /** the fileset table file, once found sound (filesettable.ts), else 0 */
  tableIno = 0
  /** what the backup superblock names as the fileset table file (pass 0), 0 if none or unreadable */
  backupExtIno = 0
  /** the fileset table file's blocks, by logical block (filesettable.ts) */
  tableBlocks: number[] = []
  /**
   * 1 + the highest inode number whose table block holds anything: past it the table is a
   * hole of the sparse image (never written), every slot free. Loops over inodes stop here.
   */
  readonly inoEnd: number
  /**
   * The filesets (index into `filesets` + 1) that name each inode: the first and the last
   * to do so (0: none). Exact for inodes named by at most two filesets; lostfound.ts
   * walks the trees again for the rare inode it needs and more name.
   */
  readonly firstFs: Uint32Array
  readonly lastFs: Uint32Array
  /** reconnections to /lost+found, per fileset (lostfound.ts; made by rebuild.ts) */
  readonly lostPlans = new Map<FilesetInfo, LostPlan>()
  /** filesets made for unreachable trees (lostfound.ts; made by rebuild.ts) */
  readonly newFilesets: NewFileset[] = []

  /** blocks of an unreplayed journal (read-only runs): what reads must see */
  overlay: Map<number, Buffer> | null = null
  /** counters as the superblock had them when opened */
  sbFreeBlocks: number
  sbFreeInodes: number
  private lastProgress = 0

  constructor(readonly vol: Volume, readonly repair: boolean, private onProgress?: (phase: string, done: number, total: number) => void) {
    const n = vol.sb.inodeCount + 1
    const runs = vol.dataRunsOf(vol.sb.inodeTableStart, vol.sb.inodeTableBlocks)
    const lastBlock = runs.length ? runs[runs.length - 1][1] - vol.sb.inodeTableStart : 0
    this.inoEnd = Math.min(n, lastBlock * INODES_PER_BLOCK)
    this.itype = new Uint8Array(n)
    this.dirs = new DirTable(vol.sb.inodeCount)
    this.iflags = new Uint16Array(n)
    this.nlink = new Uint32Array(n)
    this.share = new Uint32Array(n)
    this.xattrOf = new Uint32Array(n)
    this.xattrRefs = new Uint32Array(n)
    this.reach = new Uint8Array(n)
    this.trees = new Uint16Array(n)
    this.filesetTrees = new Uint16Array(n)
    this.firstCount = new Uint32Array(n)
    this.totalNames = new Uint32Array(n)
    this.curCount = new Uint32Array(n)
    this.subdirs = new Uint32Array(n)
    this.firstFs = new Uint32Array(n)
    this.lastFs = new Uint32Array(n)
    this.claims = new BlockClaims(vol.sb.dataBlocks)
    this.sbFreeBlocks = vol.sb.freeBlocks
    this.sbFreeInodes = vol.sb.freeInodes
  }

  /** The volume's superblock (the object changes when the volume aborts a transaction). */
  get sb(): Superblock {
    return this.vol.sb
  }

  report(code: ProblemCode, where: string, details: Details = {}): FsckProblem {
    const p = makeProblem(code, where, details)
    this.problems.push(p)
    return p
  }

  /** Marks a problem repaired, when repairing (the caller has made the change). */
  fixed(p: FsckProblem | null | undefined): void {
    if (p && this.repair && p.fixable) p.fixed = true
  }

  progress(phase: string, done: number, total: number, force = false): void {
    checkInterrupt()
    if (!this.onProgress) return
    const t = Date.now()
    if (!force && done < total && t - this.lastProgress < 100) return
    this.lastProgress = t
    this.onProgress(phase, done, total)
  }

  // ---------------------------------------------------------------- reading

  /**
   * Reads `n` consecutive metadata blocks into buf with one device read, then lays over
   * them what the device does not hold yet: unreplayed journal blocks and blocks changed
   * in the running transaction.
   */
  readBlocks(start: number, n: number, buf: Buffer): void {
    this.vol.dev.read(start, buf.subarray(0, n * BLOCK_SIZE))
    const store = this.vol.store
    const ov = this.overlay
    for (let i = 0; i < n; i++) {
      const b = start + i
      if (store.isDirty(b)) store.get(b).copy(buf, i * BLOCK_SIZE)
      else if (ov) {
        const o = ov.get(b)
        if (o) o.copy(buf, i * BLOCK_SIZE)
      }
    }
  }

  /** The inode-table block and byte offset of an inode. */
  inodeAt(ino: number): {buf: Buffer, off: number} {
    const {block, off} = this.vol.inodeLocation(ino)
    return {buf: this.vol.store.get(block), off}
  }

  /** What an UNEXPANDED directory stands for: its source directory and fileset (inode 0x4C, 0x50). */
  unexpandedSource(ino: number): {dir: number, fileset: number} {
    const {buf, off} = this.inodeAt(ino)
    return {dir: buf.readUInt32LE(off + 0x4c), fileset: buf.readUInt32LE(off + 0x50)}
  }

  // ---------------------------------------------------------------- writing (repair only)

  /** Changes an inode record in place (through the running transaction) and reseals it. */
  editInode(ino: number, change: (buf: Buffer, off: number) => void): void {
    if (!this.repair) return
    const {block, off} = this.vol.inodeLocation(ino)
    const buf = this.vol.store.getMut(block)
    change(buf, off)
    if (buf.readUInt16LE(off) !== 0) buf.writeUInt32LE(crc32(buf, off, off + INODE_CRC_OFF), off + INODE_CRC_OFF)
    else buf.fill(0, off, off + INODE_SIZE)
    this.maybeCommit()
  }

  /** Zeroes an inode slot (the inode is then free). */
  clearInode(ino: number): void {
    this.editInode(ino, (buf, off) => buf.fill(0, off, off + INODE_SIZE))
  }

  /** Commits the running transaction when it has grown past half the journal. */
  maybeCommit(): void {
    checkInterrupt()
    if (!this.repair) return
    if (this.vol.store.dirtyCount >= this.vol.journal.maxBlocks / 2) this.vol.commit()
  }

  // ---------------------------------------------------------------- block claims

  /** Records that an inode references blocks [p, p+n) (as data, a tree node or a directory block). */
  claim(p: number, n: number, kind: number): void {
    const claims = this.claims
    let i = p - this.sb.dataStart
    const end = i + n
    while (i < end) {
      const c = Math.floor(i / CLAIM_CHUNK)
      const refs = claims.refsOf(c)
      const meta = claims.metaOf(c)
      const base = c * CLAIM_CHUNK
      const stop = Math.min(end, base + CLAIM_CHUNK)
      if (kind === CLAIM_DATA && stop - i >= 64 && claims.unclaimed(c, i - base, stop - base)) {
        // A long run of file data nothing claimed yet (most of a large file): counted at once.
        refs.fill(1, i - base, stop - base)
        claims.used += stop - i
        i = stop
        continue
      }
      let fresh = 0
      let high = false
      for (; i < stop; i++) {
        const k = i - base
        const r = refs[k]
        if (r === 0) fresh++
        else {
          if (meta[k] !== 0 || kind !== CLAIM_DATA) this.dups.add(i)
          if (r >= REFCOUNT_MAX) high = true
        }
        if (r !== 0xffff) refs[k] = r + 1
        if (kind !== CLAIM_DATA) meta[k] = kind
      }
      claims.used += fresh
      if (high) claims.markHigh(c)
    }
  }

  /** Drops references recorded by claim(). */
  unclaim(p: number, n: number): void {
    const start = p - this.sb.dataStart
    for (let i = start; i < start + n; i++) {
      const r = this.claims.ref(i)
      if (r !== 0 && r !== 0xffff) this.claims.setRef(i, r - 1)
    }
  }
}

/** Data blocks per chunk of BlockClaims: the counters of 16 refcount-table blocks. */
export const CLAIM_CHUNK = REFCOUNTS_PER_BLOCK * 16

/** A chunk's counts, all zero, as bytes. */
const NO_CLAIMS = Buffer.alloc(2 * CLAIM_CHUNK)

/**
 * What fsck counts per data block (the references found, and what kind of metadata claimed
 * it), in chunks of CLAIM_CHUNK blocks made when a block of theirs is first claimed. An image
 * of any size costs memory only where blocks are in use, and no array ever comes near the
 * 2^32 elements a typed array can hold (an image past 16 TiB has more data blocks than that).
 */
export class BlockClaims {
  private readonly refChunks: Array<Uint16Array | undefined>
  private readonly metaChunks: Array<Uint8Array | undefined>
  /** per chunk: 1 once a count in it has gone past REFCOUNT_MAX (what one table byte holds) */
  private readonly highChunks: Uint8Array
  /** the counts of each chunk seen as bytes (for unclaimed) */
  private readonly refBytes: Array<Buffer | undefined>
  /** blocks whose count is not zero */
  used = 0

  constructor(readonly blocks: number) {
    const n = Math.ceil(blocks / CLAIM_CHUNK)
    this.refChunks = new Array(n)
    this.metaChunks = new Array(n)
    this.highChunks = new Uint8Array(n)
    this.refBytes = new Array(n)
  }

  /** Whether no block of chunk c from index a to b is claimed (compared as bytes, in one call). */
  unclaimed(c: number, a: number, b: number): boolean {
    const refs = this.refsOf(c)
    const bytes = this.refBytes[c] ??= Buffer.from(refs.buffer, refs.byteOffset, refs.byteLength)
    return bytes.compare(NO_CLAIMS, 0, 2 * (b - a), 2 * a, 2 * b) === 0
  }

  markHigh(c: number): void {
    this.highChunks[c] = 1
  }

  /** Whether a count in chunk c has been past REFCOUNT_MAX (it may have come down since). */
  high(c: number): boolean {
    return this.highChunks[c] === 1
  }

  /** The reference counts of chunk c (made, all zero, if it has none yet). */
  refsOf(c: number): Uint16Array {
    return this.refChunks[c] ??= new Uint16Array(CLAIM_CHUNK)
  }

  metaOf(c: number): Uint8Array {
    return this.metaChunks[c] ??= new Uint8Array(CLAIM_CHUNK)
  }

  /** Chunk c's counts if any block in it is claimed, else undefined (all zero). */
  peek(c: number): Uint16Array | undefined {
    return this.refChunks[c]
  }

  ref(i: number): number {
    const r = this.refChunks[Math.floor(i / CLAIM_CHUNK)]
    return r ? r[i % CLAIM_CHUNK] : 0
  }

  setRef(i: number, v: number): void {
    const c = Math.floor(i / CLAIM_CHUNK)
    const refs = this.refsOf(c)
    const old = refs[i % CLAIM_CHUNK]
    if (old === 0 && v !== 0) this.used++
    else if (old !== 0 && v === 0) this.used--
    if (v > REFCOUNT_MAX) this.highChunks[c] = 1
    refs[i % CLAIM_CHUNK] = v
  }

  meta(i: number): number {
    const m = this.metaChunks[Math.floor(i / CLAIM_CHUNK)]
    return m ? m[i % CLAIM_CHUNK] : 0
  }

  setMeta(i: number, v: number): void {
    this.metaOf(Math.floor(i / CLAIM_CHUNK))[i % CLAIM_CHUNK] = v
  }
}
