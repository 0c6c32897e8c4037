// The state fsck builds while it runs: the opened volume, the problems found so far, and
// the in-memory maps the passes fill and compare (like e2fsck's block_found_map and
// inode_link_info): per-inode type, flags and counts in typed arrays, per-data-block
// reference counts, and the repairs deferred to the end. It never writes anything by
// itself except through editInode/clearInode, and only when repairing.
import type {FilesetRecord} from '../format/fileset.js'
import {BLOCK_SIZE, INODES_PER_BLOCK, INODE_SIZE, REFCOUNTS_PER_BLOCK} from '../format/constants.js'
import {crc32} from '../format/checksum.js'
import type {Extent} from '../format/extent.js'
import {INODE_CRC_OFF} from '../format/inode.js'
import type {Superblock} from '../format/superblock.js'
import type {Volume} from '../fs/volume.js'
import {makeProblem, type Details, type FsckProblem, type ProblemCode} from './problems.js'

/** Inode kinds in FsckContext.itype. */
export const T_FREE = 0
export const T_REG = 1
export const T_DIR = 2
export const T_LNK = 3

/** What claimed a data block (FsckContext.meta). Metadata blocks must have exactly one claim. */
export const CLAIM_DATA = 0
export const CLAIM_NODE = 1
export const CLAIM_DIR = 2

/** reach bits */
export const R_FILESET = 1
export const R_ORPHAN_TREE = 2
export const R_ORPHAN_LIST = 4

export interface DirMeta {
  hashed: boolean
  seed: number
  depth: number
  buckets: number
  /** entry count from the inode */
  size: number
  /** inline entries (a copy of the inode area) */
  area: Buffer | null
  /** the block map as fsck will leave it (hashed directories) */
  ext: Extent[]
  nodes: number[]
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
}

export class FsckContext {
  readonly problems: FsckProblem[] = []
  readonly notes: string[] = []

  // ---- per inode (index = inode number)
  readonly itype: Uint8Array
  readonly iflags: Uint16Array
  readonly nlink: Uint32Array
  readonly share: Uint32Array
  /** directory inodes in use, with what pass 2 needs to read them */
  readonly dirs = new Map<number, DirMeta>()
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
   * expanded yet, so it may exceed the names found (src/clone/expand.ts, clonestate.ts).
   */
  readonly pendingLinks = new Set<number>()
  /** UNEXPANDED directories: where pass 2 found them (owner null: in no fileset) */
  readonly unexpanded = new Map<number, {owner: FilesetInfo | null, path: string, count: number}>()
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
    this.iflags = new Uint16Array(n)
    this.nlink = new Uint32Array(n)
    this.share = new Uint32Array(n)
    this.reach = new Uint8Array(n)
    this.trees = new Uint16Array(n)
    this.filesetTrees = new Uint16Array(n)
    this.firstCount = new Uint32Array(n)
    this.totalNames = new Uint32Array(n)
    this.curCount = new Uint32Array(n)
    this.subdirs = new Uint32Array(n)
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

  private areaChunk = Buffer.alloc(0)
  private areaUsed = 0

  /**
   * A copy of buf[start, end) that outlives the read buffer (an inline directory's entries):
   * carved from shared 1 MiB chunks, one allocation for thousands of small copies.
   */
  keepCopy(buf: Buffer, start: number, end: number): Buffer {
    const n = end - start
    if (this.areaUsed + n > this.areaChunk.length) {
      this.areaChunk = Buffer.allocUnsafe(Math.max(n, 1 << 20))
      this.areaUsed = 0
    }
    const at = this.areaUsed
    buf.copy(this.areaChunk, at, start, end)
    this.areaUsed += n
    return this.areaChunk.subarray(at, at + n)
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
      for (; i < stop; i++) {
        const k = i - base
        const r = refs[k]
        if (r !== 0 && (meta[k] !== 0 || kind !== CLAIM_DATA)) this.dups.add(i)
        if (r !== 0xffff) refs[k] = r + 1
        if (kind !== CLAIM_DATA) meta[k] = kind
      }
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

/**
 * What fsck counts per data block (the references found, and what kind of metadata claimed
 * it), in chunks of CLAIM_CHUNK blocks made when a block of theirs is first claimed. An image
 * of any size costs memory only where blocks are in use, and no array ever comes near the
 * 2^32 elements a typed array can hold (an image past 16 TiB has more data blocks than that).
 */
export class BlockClaims {
  private readonly refChunks: Array<Uint16Array | undefined>
  private readonly metaChunks: Array<Uint8Array | undefined>

  constructor(readonly blocks: number) {
    const n = Math.ceil(blocks / CLAIM_CHUNK)
    this.refChunks = new Array(n)
    this.metaChunks = new Array(n)
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
    this.refsOf(Math.floor(i / CLAIM_CHUNK))[i % CLAIM_CHUNK] = v
  }

  meta(i: number): number {
    const m = this.metaChunks[Math.floor(i / CLAIM_CHUNK)]
    return m ? m[i % CLAIM_CHUNK] : 0
  }

  setMeta(i: number, v: number): void {
    this.metaOf(Math.floor(i / CLAIM_CHUNK))[i % CLAIM_CHUNK] = v
  }
}
