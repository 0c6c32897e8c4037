// fsck pass 1: every slot of the inode table. Checks each inode's checksum, type, flags
// and size, walks its block map (extent tree) and records, in FsckContext's typed arrays,
// what every later pass needs: inode kinds and counts, directory geometry, and how many
// times each data block is claimed. Pass 1b then settles blocks that are claimed as
// metadata and also otherwise. It never follows directory entries (pass 2 does), and it
// changes an inode's block map only by scheduling a rewrite (rebuild.ts).
import {ExtentMap} from '../fs/extentmap.js'
import os from 'node:os'
import {
  BLOCK_SIZE, DIR_PTR_BASE, IF_HASHED, IF_INLINE, IF_KNOWN, IF_NOCLONE, IF_ORPHAN, IF_UNEXPANDED, IF_XATTR, INODE_SIZE, MAX_FILE_SIZE,
  S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
} from '../format/constants.js'
import {crc32, nameHash} from '../format/checksum.js'
import {BUCKET_HDR, BUCKET_MAGIC, DIRENT_FIXED} from '../format/dirent.js'
import {EXT_NODE_MAGIC, EXT_NODE_MAX, EXT_ROOT_MAGIC, EXT_ROOT_MAX, type Extent} from '../format/extent.js'
import {INODE_AREA_OFF, INODE_AREA_SIZE, INODE_CRC_OFF} from '../format/inode.js'
import {unmapRange} from '../fs/extents.js'
import {SYMLINK_MAX} from '../fs/namespace.js'
import {
  CLAIM_DATA, CLAIM_DIR, CLAIM_NODE, T_BLK, T_CHR, T_DIR, T_FIFO, T_FREE, T_LNK, T_REG, T_SOCK, T_XATTR, type FsckContext,
} from './context.js'
import type {FsckProblem} from './problems.js'
import {crc32Many} from '../sys.js'

const CHUNK = 256
const LITTLE_ENDIAN = os.endianness() === 'LE'
/** flags of a file or symlink (an attribute inode's IF_XATTR makes it another kind) */
const FILE_FLAGS = IF_KNOWN & ~(IF_HASHED | IF_UNEXPANDED | IF_XATTR)
/** flags of a special file: no data, so no IF_INLINE */
const SPECIAL_FLAGS = IF_NOCLONE | IF_ORPHAN
/** flags of an attribute inode */
const XATTR_FLAGS = IF_XATTR | IF_INLINE
const ENTRY = 16
const ROOT_HDR = 12
const NODE_HDR = 16
const TWO32 = 0x1_0000_0000

const u64 = (buf: Buffer, o: number): number => buf.readUInt32LE(o) + buf.readUInt32LE(o + 4) * TWO32

export interface MapWalk {
  /** extents kept, sorted by logical block */
  ext: Extent[]
  /** tree node blocks kept */
  nodes: number[]
  /** data-area blocks referenced on disk but dropped (see Rewrite.released) */
  released: Extent[]
  /** the tree on disk differs from what is kept: it must be rewritten */
  dirty: boolean
  problems: FsckProblem[]
}

/**
 * Walks an inode's extent tree and returns the extents and nodes that are sound; bad ones
 * are dropped (and reported when `report`). Pure with respect to the maps: callers claim.
 */
export function walkMap(ctx: FsckContext, ino: number, kind: number, size: number, buf: Buffer, off: number, report: boolean): MapWalk {
  const res: MapWalk = {ext: [], nodes: [], released: [], dirty: false, problems: []}
  const where = `inode ${ino}`
  const sb = ctx.sb
  const dataEnd = sb.dataStart + sb.dataBlocks
  const limit = kind === T_DIR ? TWO32 : DIR_PTR_BASE
  const eof = kind === T_DIR ? Infinity : Math.ceil(size / BLOCK_SIZE)
  let prevEnd = 0
  const bad = (p: FsckProblem | null) => {
    res.dirty = true
    if (p) res.problems.push(p)
  }
  const rep = (code: Parameters<FsckContext['report']>[0], details: Record<string, string | number>) =>
    (report ? ctx.report(code, where, details) : null)
  const release = (p: number, n: number) => {
    if (n > 0 && p >= sb.dataStart && p + n <= dataEnd) res.released.push({l: -1, n, p})
  }

  const leaf = (b: Buffer, o0: number, count: number) => {
    for (let i = 0; i < count; i++) {
      const o = o0 + i * ENTRY
      const l = b.readUInt32LE(o)
      let n = b.readUInt32LE(o + 4)
      const p = u64(b, o + 8)
      if (n === 0) { bad(rep('EXTENT_EMPTY', {l})); continue }
      if (p < sb.dataStart || p + n > dataEnd) { bad(rep('EXTENT_OUT_OF_RANGE', {l, n, p, last: p + n - 1})); continue }
      if (l + n > limit) { bad(rep('EXTENT_LOGICAL_RANGE', {l, n})); release(p, n); continue }
      if (l < prevEnd) { bad(rep('EXTENT_OVERLAP', {l, n})); release(p, n); continue }
      if (l + n > eof) {
        bad(rep('EXTENT_BEYOND_EOF', {l, n, size}))
        if (l >= eof) { release(p, n); continue }
        release(p + (eof - l), n - (eof - l))
        n = eof - l // keep the part inside the file
      }
      res.ext.push({l, n, p})
      prevEnd = l + n
    }
  }

  const seenNodes = new Set<number>()
  const index = (b: Buffer, o0: number, count: number, depth: number) => {
    for (let i = 0; i < count; i++) {
      const o = o0 + i * ENTRY
      const key = b.readUInt32LE(o)
      const child = u64(b, o + 8)
      if (child < sb.dataStart || child >= dataEnd) { bad(rep('EXTENT_NODE_BAD', {block: child, detail: 'pointer outside the data area'})); continue }
      const badNode = (p: FsckProblem | null) => { bad(p); release(child, 1) }
      if (seenNodes.has(child)) { badNode(rep('EXTENT_NODE_BAD', {block: child, detail: 'referenced twice by the tree'})); continue }
      const nb = ctx.vol.store.get(child)
      if (nb.readUInt16LE(0) !== EXT_NODE_MAGIC) { badNode(rep('EXTENT_NODE_BAD', {block: child, detail: 'bad magic'})); continue }
      if (nb.readUInt32LE(12) !== crc32(nb, NODE_HDR, BLOCK_SIZE, crc32(nb, 0, 12))) { badNode(rep('EXTENT_NODE_CRC', {block: child})); continue }
      const owner = nb.readUInt32LE(8)
      if (owner !== ino) { badNode(rep('EXTENT_NODE_BAD', {block: child, detail: `belongs to inode ${owner}`})); continue }
      const cdepth = nb.readUInt16LE(6)
      const ccount = nb.readUInt16LE(2)
      if (cdepth !== depth - 1) { badNode(rep('EXTENT_NODE_BAD', {block: child, detail: `depth ${cdepth} under depth ${depth}`})); continue }
      if (ccount === 0 || ccount > EXT_NODE_MAX) { badNode(rep('EXTENT_NODE_BAD', {block: child, detail: `${ccount} entries`})); continue }
      const first = nb.readUInt32LE(NODE_HDR)
      if (first !== key) bad(rep('EXTENT_INDEX_KEY', {key, first}))
      res.nodes.push(child)
      seenNodes.add(child)
      if (cdepth === 0) leaf(nb, NODE_HDR, ccount)
      else index(nb, NODE_HDR, ccount, cdepth)
    }
  }

  const a = off + INODE_AREA_OFF
  const magic = buf.readUInt16LE(a)
  const count = buf.readUInt16LE(a + 2)
  if (magic === 0 && count === 0) return res
  const depth = buf.readUInt16LE(a + 6)
  if (magic !== EXT_ROOT_MAGIC || count > EXT_ROOT_MAX || depth > 5) {
    bad(rep('EXTENT_ROOT_BAD', {detail: magic !== EXT_ROOT_MAGIC ? 'bad magic' : `${count} entries at depth ${depth}`}))
    return res
  }
  if (depth === 0) leaf(buf, a + ROOT_HDR, count)
  else index(buf, a + ROOT_HDR, count, depth)
  return res
}

/**
 * How an inode's mapped blocks are claimed: a directory's as directory blocks, the fileset
 * table file's (§8.7) as metadata that no other claim may share (like extent-tree nodes), a
 * file's as data.
 */
function claimKindOf(ctx: FsckContext, ino: number, kind: number): number {
  if (kind === T_DIR) return CLAIM_DIR
  return ino === ctx.sb.filesetExtIno && ino !== 0 ? CLAIM_NODE : CLAIM_DATA
}

/**
 * Why an inode whose checksum is wrong is garbage (its type, flags, counters or size are
 * values no version writes), or null when those fields are sound: its block map and the
 * rest are then checked and repaired as any inode's are, so that it keeps what it can.
 */
function garbageWhy(buf: Buffer, off: number): string | null {
  const flags = buf.readUInt16LE(off + 2)
  const kind = kindOf(buf.readUInt16LE(off), flags)
  if (kind === T_FREE) return 'no valid file type'
  if (flags & ~allowedFlags(kind)) return 'invalid flags'
  const inline = (flags & IF_INLINE) !== 0
  if (kind === T_DIR && inline === ((flags & IF_HASHED) !== 0)) return 'invalid flags'
  const size = u64(buf, off + 0x18)
  if (size > Number.MAX_SAFE_INTEGER || u64(buf, off + 0x20) > Number.MAX_SAFE_INTEGER || u64(buf, off + 0x58) > Number.MAX_SAFE_INTEGER) return 'a counter out of range'
  if (buf.readUInt32LE(off + 4) > 0xfffffff0 || buf.readUInt32LE(off + 8) > 0xfffffff0 || buf.readUInt32LE(off + 8) === 0) return 'a link or share count out of range'
  if (kind === T_LNK && (size < 1 || size > SYMLINK_MAX)) return 'an invalid symlink length'
  if (kind !== T_DIR && !isSpecialKind(kind) && (inline ? size > INODE_AREA_SIZE : size > MAX_FILE_SIZE)) return 'an invalid size'
  return null
}

function kindOf(mode: number, flags = 0): number {
  switch (mode & S_IFMT) {
    case S_IFREG: return flags & IF_XATTR ? T_XATTR : T_REG
    case S_IFDIR: return T_DIR
    case S_IFLNK: return T_LNK
    case S_IFCHR: return T_CHR
    case S_IFBLK: return T_BLK
    case S_IFIFO: return T_FIFO
    case S_IFSOCK: return T_SOCK
    default: return T_FREE
  }
}

export const KIND_NAME = ['free', 'file', 'directory', 'symlink', 'character device', 'block device', 'FIFO', 'socket', 'attribute inode']

/** A device, FIFO or socket: no data, a device number in its area (FORMAT.md §5.5). */
export function isSpecialKind(kind: number): boolean {
  return kind >= T_CHR && kind <= T_SOCK
}

/** Flags each kind may carry. */
function allowedFlags(kind: number): number {
  if (kind === T_DIR) return IF_KNOWN & ~IF_XATTR
  if (kind === T_XATTR) return XATTR_FLAGS
  if (isSpecialKind(kind)) return SPECIAL_FLAGS
  return FILE_FLAGS
}

function isZero(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i += 4) if (buf.readUInt32LE(i) !== 0) return false
  return true
}

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE)
/** Shared empty maps (never changed: pass 1b and rebuild.ts copy before they change a map). */
const NO_EXTENTS: Extent[] = Object.freeze([]) as unknown as Extent[]
const NO_NODES: number[] = Object.freeze([]) as unknown as number[]

/** Pass 1 over the whole inode table. */
export function pass1(ctx: FsckContext): void {
  const sb = ctx.sb
  const buf = Buffer.allocUnsafe(CHUNK * BLOCK_SIZE)
  const perBlock = BLOCK_SIZE / INODE_SIZE
  // The checksum of every slot of a chunk, computed in one call (src/sys.ts crc32Many).
  const crcs = new Uint32Array(CHUNK * perBlock)
  // Little-endian hosts read the table through 32-bit words (the chunk is 4-byte aligned).
  const words = LITTLE_ENDIAN && buf.byteOffset % 4 === 0 ? new Uint32Array(buf.buffer, buf.byteOffset, buf.length / 4) : null
  const want = tableBlocksToRead(ctx)
  for (let b0 = 0, n = 0; b0 < sb.inodeTableBlocks; b0 += n) {
    // Blocks known to be zero (holes of a sparse image, never written) hold only free,
    // zeroed slots: there is nothing to read or check.
    while (b0 < sb.inodeTableBlocks && !want[b0]) b0++
    if (b0 >= sb.inodeTableBlocks) break
    n = 1
    while (n < CHUNK && b0 + n < sb.inodeTableBlocks && want[b0 + n]) n++
    ctx.readBlocks(sb.inodeTableStart + b0, n, buf)
    crc32Many(buf, n * perBlock, INODE_SIZE, INODE_CRC_OFF, crcs)
    for (let bi = 0; bi < n; bi++) {
      const bo = bi * BLOCK_SIZE
      // A block of free slots only is skipped (one whose first word is not zero is not one).
      if ((words === null || words[bo >>> 2] === 0) && buf.compare(ZERO_BLOCK, 0, BLOCK_SIZE, bo, bo + BLOCK_SIZE) === 0) continue
      for (let s = 0; s < perBlock; s++) {
        const ino = (b0 + bi) * perBlock + s
        const off = bo + s * INODE_SIZE
        const crc = crcs[bi * perBlock + s]
        if (words === null || !fastSlot(ctx, words, buf, off, ino, crc)) checkSlot(ctx, buf, off, ino, crc)
      }
    }
    ctx.progress('pass 1: inodes', Math.min((b0 + n) * perBlock, sb.inodeCount), sb.inodeCount)
  }
  ctx.progress('pass 1: inodes', sb.inodeCount, sb.inodeCount, true)
  if (ctx.dups.size > 0) pass1b(ctx)
  for (let ino = 1; ino < ctx.inoEnd; ino++) { // past inoEnd every inode is free
    const t = ctx.xattrOf[ino]
    if (t !== 0 && t <= sb.inodeCount && ctx.itype[ino] !== T_FREE) ctx.xattrRefs[t]++
  }
}

/**
 * Which inode-table blocks pass 1 must read (1) and which are known to be zero (0): the
 * holes the device reports (a sparse image file whose never-used inode table was never
 * written), except blocks held in memory (an unreplayed journal read in memory, or changes
 * of this run), which are read as always.
 */
function tableBlocksToRead(ctx: FsckContext): Uint8Array {
  const sb = ctx.sb
  const start = sb.inodeTableStart
  const want = new Uint8Array(sb.inodeTableBlocks)
  for (const [a, b] of ctx.vol.dataRunsOf(start, sb.inodeTableBlocks)) want.fill(1, a - start, b - start)
  if (ctx.overlay) for (const b of ctx.overlay.keys()) if (b >= start && b < start + sb.inodeTableBlocks) want[b - start] = 1
  return want
}

/**
 * The common case, kept small so that it is compiled early: an in-use inode that passes
 * every check, with inline data or an extent root of sound leaf extents. Returns false,
 * having recorded nothing, for anything else: checkSlot then does the full checks.
 */
function fastSlot(ctx: FsckContext, w: Uint32Array, buf: Buffer, off: number, ino: number, crc: number): boolean {
  const b = off >>> 2
  const w0 = w[b]
  const mode = w0 & 0xffff
  if (mode === 0 || ino === 0 || ino > ctx.sb.inodeCount) return false
  if (w[b + 63] !== crc) return false
  const flags = w0 >>> 16
  const kind = kindOf(mode, flags)
  if ((kind !== T_REG && kind !== T_DIR && kind !== T_LNK) || flags & ~allowedFlags(kind)) return false
  const inline = (flags & IF_INLINE) !== 0
  if (w[b + 7] !== 0 || w[b + 9] !== 0) return false // size or block count past 4 GiB blocks: full checks
  const size = w[b + 6]
  if (kind === T_DIR) {
    if (inline === ((flags & IF_HASHED) !== 0)) return false
  } else if ((inline && size > INODE_AREA_SIZE) || (kind === T_LNK && (size < 1 || size > SYMLINK_MAX))) return false
  // A symlink's target holds no NUL: checked here when inline, by checkSlot when in a block.
  if (kind === T_LNK) {
    if (!inline) return false
    const z = buf.indexOf(0, off + INODE_AREA_OFF)
    if (z >= 0 && z < off + INODE_AREA_OFF + size) return false
  }
  let mapped = 0
  if (!inline) {
    const r = b + (INODE_AREA_OFF >>> 2)
    const head = w[r]
    const count = head >>> 16
    if (head !== 0) {
      if ((head & 0xffff) !== EXT_ROOT_MAGIC || count > EXT_ROOT_MAX || w[r + 1] >>> 16 !== 0) return false
      const ds = ctx.sb.dataStart
      const de = ds + ctx.sb.dataBlocks
      const limit = kind === T_DIR ? TWO32 : DIR_PTR_BASE
      const eof = kind === T_DIR ? Infinity : Math.ceil(size / BLOCK_SIZE)
      let prevEnd = 0
      for (let i = 0, e = r + 3; i < count; i++, e += 4) {
        const l = w[e]
        const n = w[e + 1]
        const p = w[e + 2] + w[e + 3] * TWO32
        if (n === 0 || p < ds || p + n > de || l + n > limit || l < prevEnd || l + n > eof) return false
        prevEnd = l + n
        mapped += n
      }
    }
  }
  if (w[b + 8] !== mapped) return false
  // Sound: record it.
  if (mapped > 0) {
    const claimKind = claimKindOf(ctx, ino, kind)
    const r = b + (INODE_AREA_OFF >>> 2)
    for (let i = 0, e = r + 3, count = w[r] >>> 16; i < count; i++, e += 4) ctx.claim(w[e + 2] + w[e + 3] * TWO32, w[e + 1], claimKind)
  }
  ctx.itype[ino] = kind
  ctx.iflags[ino] = flags
  ctx.nlink[ino] = w[b + 1]
  ctx.share[ino] = w[b + 2]
  ctx.xattrOf[ino] = w[b + 27]
  if (kind === T_DIR) {
    // The directory's record, its extents read straight from the words (no objects made).
    const d = recordDir(ctx, buf, off, ino, inline, size)
    if (!inline) {
      const r = b + (INODE_AREA_OFF >>> 2)
      for (let i = 0, e = r + 3, count = w[r] >>> 16; i < count; i++, e += 4) ctx.dirs.pushExtent(d, w[e], w[e + 1], w[e + 2] + w[e + 3] * TWO32)
    }
  }
  return true
}

/** Records a directory in ctx.dirs (an inline one with a copy of its area); returns its number. */
function recordDir(ctx: FsckContext, buf: Buffer, off: number, ino: number, inline: boolean, size: number): number {
  const d = ctx.dirs.add(ino, !inline, buf.readUInt32LE(off + 0x60), buf[off + 0x64], buf.readUInt32LE(off + 0x68), size)
  if (inline) ctx.dirs.keepArea(d, buf, off + INODE_AREA_OFF, INODE_AREA_SIZE)
  return d
}

function checkSlot(ctx: FsckContext, buf: Buffer, off: number, ino: number, crc: number): void {
  if (ino === 0 || ino > ctx.sb.inodeCount) {
    if (!isZero(buf, off, off + INODE_SIZE)) {
      const p = ctx.report('INODE_RESERVED', `inode slot ${ino}`)
      ctx.clearInode(ino)
      ctx.fixed(p)
    }
    return
  }
  const mode = buf.readUInt16LE(off)
  if (mode === 0) {
    if (!isZero(buf, off, off + INODE_SIZE)) {
      const p = ctx.report('INODE_FREE_DIRTY', `inode ${ino}`)
      ctx.clearInode(ino)
      ctx.fixed(p)
    }
    return
  }
  if (buf.readUInt32LE(off + INODE_CRC_OFF) !== crc) {
    // As e2fsck ("inode passes checks, but checksum does not match inode. Fix?"): an inode
    // whose fields are sound keeps what it holds and gets its checksum rewritten (its map
    // is checked next, as any inode's); one with values no version writes is garbage and
    // is cleared.
    const why = garbageWhy(buf, off)
    const p = ctx.report('INODE_CRC', `inode ${ino}`, {fix: why ? `the inode is cleared: ${why}` : 'its type, flags and counts are plausible: it is kept, its checksum is rewritten, and it is checked further as any inode'})
    if (why) {
      ctx.clearInode(ino)
      ctx.fixed(p)
      return
    }
    ctx.editInode(ino, () => {}) // reseals it
    ctx.fixed(p)
  }
  let flags = buf.readUInt16LE(off + 2)
  const kind = kindOf(mode, flags)
  if (kind === T_FREE) {
    const p = ctx.report('INODE_BAD_TYPE', `inode ${ino}`, {mode: mode.toString(8)})
    ctx.clearInode(ino)
    ctx.fixed(p)
    return
  }
  let size = u64(buf, off + 0x18)
  let blocks = u64(buf, off + 0x20)
  // Counters past 2^53 do not decode (FORMAT.md §5.2): reset them here, the later checks recount.
  if (blocks > Number.MAX_SAFE_INTEGER) {
    ctx.editInode(ino, (b, o) => b.writeBigUInt64LE(0n, o + 0x20))
    blocks = 0
    if (!ctx.repair) blocks = -1 // still reported below as a wrong count
  }
  if (u64(buf, off + 0x58) > Number.MAX_SAFE_INTEGER) ctx.editInode(ino, (b, o) => b.writeBigUInt64LE(1n, o + 0x58))
  if (kind === T_DIR && size > Number.MAX_SAFE_INTEGER) {
    const p = ctx.report('INODE_BAD_SIZE', `inode ${ino}`, {size, detail: 'a directory holds fewer entries'})
    ctx.editInode(ino, (b, o) => b.writeBigUInt64LE(0n, o + 0x18))
    size = 0
    ctx.fixed(p)
  }

  // Flags: unknown bits and directory-only bits on files are dropped; a directory must be
  // exactly one of inline and hashed, or it cannot be read at all.
  if (kind === T_DIR && ((flags & IF_INLINE) !== 0) === ((flags & IF_HASHED) !== 0)) {
    const p = ctx.report('INODE_BAD_FLAGS', `inode ${ino}`, {flags: flags.toString(16), kind: 'directory (inline and hashed are exclusive)'})
    ctx.clearInode(ino)
    ctx.fixed(p)
    return
  }
  const allowed = allowedFlags(kind)
  if (flags & ~allowed) {
    const p = ctx.report('INODE_BAD_FLAGS', `inode ${ino}`, {flags: flags.toString(16), kind: KIND_NAME[kind]})
    flags &= allowed
    const f = flags
    ctx.editInode(ino, (b, o) => b.writeUInt16LE(f, o + 2))
    ctx.fixed(p)
  }
  const inline = (flags & IF_INLINE) !== 0

  if (isSpecialKind(kind)) {
    checkSpecial(ctx, buf, off, ino, kind, size, blocks)
    ctx.itype[ino] = kind
    ctx.iflags[ino] = flags
    ctx.nlink[ino] = buf.readUInt32LE(off + 0x04)
    ctx.share[ino] = buf.readUInt32LE(off + 0x08)
    ctx.xattrOf[ino] = buf.readUInt32LE(off + 0x6c)
    return
  }

  // Sizes.
  if (kind !== T_DIR) {
    let want = size
    let why = ''
    if (kind === T_LNK && (size < 1 || size > SYMLINK_MAX)) {
      const p = ctx.report('INODE_BAD_SIZE', `inode ${ino}`, {size, detail: `a symlink target has 1..${SYMLINK_MAX} bytes`})
      ctx.clearInode(ino)
      ctx.fixed(p)
      return
    }
    if (inline && size > INODE_AREA_SIZE) { want = INODE_AREA_SIZE; why = `inline data holds at most ${INODE_AREA_SIZE} bytes` }
    if (!inline && size > MAX_FILE_SIZE) { want = MAX_FILE_SIZE; why = 'larger than the largest file' }
    if (want !== size) {
      const p = ctx.report('INODE_BAD_SIZE', `inode ${ino}`, {size, detail: why})
      const v = want
      ctx.editInode(ino, (b, o) => b.writeBigUInt64LE(BigInt(v), o + 0x18))
      ctx.fixed(p)
      size = want
    }
  }

  if (kind === T_LNK && !checkSymlinkTarget(ctx, buf, off, ino, inline, size)) return

  // The block map.
  let ext = NO_EXTENTS
  let nodes = NO_NODES
  let mapped = 0
  let rewrite = false
  const quick = inline ? 0 : quickMap(ctx, buf, off, kind, size, claimKindOf(ctx, ino, kind))
  if (quick >= 0) {
    mapped = quick
    if (kind === T_DIR && !inline) ext = rootExtents(buf, off)
  } else {
    const m = walkMap(ctx, ino, kind, size, buf, off, true)
    ext = m.ext
    nodes = m.nodes
    const claimKind = claimKindOf(ctx, ino, kind)
    for (const e of ext) {
      ctx.claim(e.p, e.n, claimKind)
      mapped += e.n
    }
    for (const b of nodes) ctx.claim(b, 1, CLAIM_NODE)
    if (m.dirty) {
      ctx.rewrites.set(ino, {ext, nodes, released: m.released, problems: m.problems})
      rewrite = true
    }
  }
  const wantBlocks = mapped + nodes.length
  if (blocks !== wantBlocks && !rewrite) {
    const p = ctx.report('INODE_BLOCKS_COUNT', `inode ${ino}`, {have: blocks, want: wantBlocks})
    ctx.editInode(ino, (b, o) => b.writeBigUInt64LE(BigInt(wantBlocks), o + 0x20))
    ctx.fixed(p)
  }

  ctx.itype[ino] = kind
  ctx.iflags[ino] = flags
  ctx.nlink[ino] = buf.readUInt32LE(off + 0x04)
  ctx.share[ino] = buf.readUInt32LE(off + 0x08)
  ctx.xattrOf[ino] = buf.readUInt32LE(off + 0x6c)
  if (kind === T_DIR) ctx.dirs.setMap(recordDir(ctx, buf, off, ino, inline, size), ext, nodes)
}

/**
 * A symlink's target is a path: it holds no NUL byte (a size grown past the target, or a
 * damaged block, reads as zeros, which no host can make a symlink of: export, tar and the
 * mount would fail on it). Repaired as the part before the NUL, as the target most likely was;
 * a target that starts with a NUL is cleared, as e2fsck clears an invalid symlink. False when
 * the inode was cleared.
 */
function checkSymlinkTarget(ctx: FsckContext, buf: Buffer, off: number, ino: number, inline: boolean, size: number): boolean {
  let at: number
  if (inline) {
    at = buf.subarray(off + INODE_AREA_OFF, off + INODE_AREA_OFF + size).indexOf(0)
  } else {
    // The target's one block, when the root maps it soundly (a damaged map is the block map's
    // check to report, below).
    const a = off + INODE_AREA_OFF
    const magic = buf.readUInt16LE(a)
    if (magic !== EXT_ROOT_MAGIC && !(magic === 0 && buf.readUInt16LE(a + 2) === 0)) return true
    const first = magic === 0 ? undefined : rootExtents(buf, off).find((e) => e.l === 0)
    if (first === undefined) {
      at = 0 // a hole: zeros
    } else {
      if (first.p < ctx.sb.dataStart || first.p >= ctx.sb.dataStart + ctx.sb.dataBlocks) return true
      const block = Buffer.alloc(BLOCK_SIZE)
      ctx.readBlocks(first.p, 1, block)
      at = block.subarray(0, size).indexOf(0)
    }
  }
  if (at < 0) return true
  const p = ctx.report('SYMLINK_NUL', `inode ${ino}`, {size, at, fix: at > 0 ? `cut to its first ${at} bytes` : 'cleared'})
  if (at === 0) {
    ctx.clearInode(ino)
    ctx.fixed(p)
    return false
  }
  ctx.editInode(ino, (b, o) => b.writeBigUInt64LE(BigInt(at), o + 0x18))
  ctx.fixed(p)
  return true
}

/**
 * A special file has size 0, maps no block and holds only its device number in its area
 * (a FIFO or socket none). Anything else there is reset: a special file has no data to lose.
 */
function checkSpecial(ctx: FsckContext, buf: Buffer, off: number, ino: number, kind: number, size: number, blocks: number): void {
  const a = off + INODE_AREA_OFF
  const device = kind === T_CHR || kind === T_BLK
  const problems: string[] = []
  if (size !== 0) problems.push(`a size of ${size}`)
  if (blocks !== 0) problems.push(`a block count of ${blocks}`)
  if (!isZero(buf, a + (device ? 8 : 0), a + INODE_AREA_SIZE)) problems.push(device ? 'bytes after its device number' : 'a device number or other bytes in its area')
  if (problems.length === 0) return
  const p = ctx.report('SPECIAL_BAD', `inode ${ino}`, {kind: KIND_NAME[kind], detail: problems.join(', ')})
  ctx.editInode(ino, (b, o) => {
    b.writeBigUInt64LE(0n, o + 0x18)
    b.writeBigUInt64LE(0n, o + 0x20)
    b.fill(0, o + INODE_AREA_OFF + (device ? 8 : 0), o + INODE_AREA_OFF + INODE_AREA_SIZE)
  })
  ctx.fixed(p)
}

/**
 * The common case without allocation: an extent root holding only sound leaf extents.
 * Claims them and returns the number of blocks mapped, or -1 (nothing claimed) when the
 * map needs the full walk.
 */
function quickMap(ctx: FsckContext, buf: Buffer, off: number, kind: number, size: number, claimKind: number): number {
  const a = off + INODE_AREA_OFF
  const magic = buf.readUInt16LE(a)
  const count = buf.readUInt16LE(a + 2)
  if (magic === 0 && count === 0) return 0
  if (magic !== EXT_ROOT_MAGIC || count > EXT_ROOT_MAX || buf.readUInt16LE(a + 6) !== 0) return -1
  const ds = ctx.sb.dataStart
  const de = ds + ctx.sb.dataBlocks
  const limit = kind === T_DIR ? TWO32 : DIR_PTR_BASE
  const eof = kind === T_DIR ? Infinity : Math.ceil(size / BLOCK_SIZE)
  let prevEnd = 0
  for (let i = 0, o = a + ROOT_HDR; i < count; i++, o += ENTRY) {
    const l = buf.readUInt32LE(o)
    const n = buf.readUInt32LE(o + 4)
    const p = u64(buf, o + 8)
    if (n === 0 || p < ds || p + n > de || l + n > limit || l < prevEnd || l + n > eof) return -1
    prevEnd = l + n
  }
  let mapped = 0
  for (let i = 0, o = a + ROOT_HDR; i < count; i++, o += ENTRY) {
    const n = buf.readUInt32LE(o + 4)
    ctx.claim(u64(buf, o + 8), n, claimKind)
    mapped += n
  }
  return mapped
}

function rootExtents(buf: Buffer, off: number): Extent[] {
  const a = off + INODE_AREA_OFF
  const count = buf.readUInt16LE(a) === 0 ? 0 : buf.readUInt16LE(a + 2)
  const out: Extent[] = []
  for (let i = 0, o = a + ROOT_HDR; i < count; i++, o += ENTRY) out.push({l: buf.readUInt32LE(o), n: buf.readUInt32LE(o + 4), p: u64(buf, o + 8)})
  return out
}

/** The block map fsck keeps for an in-use inode (re-walked from the table when not stored). */
export function keptMap(ctx: FsckContext, ino: number): {ext: Extent[], nodes: number[]} {
  const rw = ctx.rewrites.get(ino)
  if (rw) return rw
  const d = ctx.dirs.numOf(ino)
  if (d >= 0) return {ext: ctx.dirs.extents(d), nodes: ctx.dirs.nodes(d)}
  if (ctx.iflags[ino] & IF_INLINE || isSpecialKind(ctx.itype[ino])) return {ext: [], nodes: []}
  const {buf, off} = ctx.inodeAt(ino)
  const m = walkMap(ctx, ino, ctx.itype[ino], u64(buf, off + 0x18), buf, off, false)
  return m
}

/** A block whose content is a sound directory bucket or pointer block. */
function looksLikeDirBlock(buf: Buffer): boolean {
  if (buf.readUInt16LE(0) === BUCKET_MAGIC && buf.readUInt32LE(12) === crc32(buf, BUCKET_HDR, BLOCK_SIZE, crc32(buf, 0, 12))) return true
  return buf.readUInt32LE(BLOCK_SIZE - 4) === crc32(buf, 0, BLOCK_SIZE - 4)
}

/**
 * Of several directories claiming a sound bucket, the one whose hash seed produced the
 * entries' stored hashes (each directory has its own seed); the first on a tie.
 */
function bestDirClaim(ctx: FsckContext, dirs: Claim[], buf: Buffer): Claim {
  if (buf.readUInt16LE(0) !== BUCKET_MAGIC || dirs.length === 1) return dirs[0]
  let best = dirs[0]
  let bestScore = -1
  for (const c of dirs) {
    const d = ctx.dirs.numOf(c.ino)
    const seed = d >= 0 ? ctx.dirs.seed[d] : 0
    let score = 0
    const count = buf.readUInt16LE(4)
    const end = BUCKET_HDR + Math.min(buf.readUInt16LE(6), BLOCK_SIZE - BUCKET_HDR)
    for (let i = 0, o = BUCKET_HDR; i < count && o + DIRENT_FIXED <= end; i++) {
      const len = buf[o + 13]
      if (len === 0 || o + DIRENT_FIXED + len > end) break
      if (buf.readUInt32LE(o + 8) === nameHash(buf.subarray(o + DIRENT_FIXED, o + DIRENT_FIXED + len), seed)) score++
      o += DIRENT_FIXED + len
    }
    if (score > bestScore) { best = c; bestScore = score }
  }
  return best
}

interface Claim {
  ino: number
  kind: number
  /** logical block (data and directory claims) */
  l: number
}

/**
 * Pass 1b: blocks claimed as a tree node or directory block and also by something else.
 * A tree node (its owner was verified) keeps its block; else a directory keeps a block that
 * holds sound directory content; else the file data claims keep it. Every other claim is
 * removed from its inode's map (a directory then misses a block and pass 2 rebuilds it).
 */
function pass1b(ctx: FsckContext): void {
  const claims = new Map<number, Claim[]>()
  const ds = ctx.sb.dataStart
  for (let ino = 1; ino < ctx.inoEnd; ino++) {
    const t = ctx.itype[ino]
    if (t === T_FREE || ctx.iflags[ino] & IF_INLINE) continue
    const {ext, nodes} = keptMap(ctx, ino)
    for (const b of nodes) if (ctx.dups.has(b - ds)) push(claims, b - ds, {ino, kind: CLAIM_NODE, l: -1})
    const kind = claimKindOf(ctx, ino, t)
    for (const e of ext) {
      for (let k = 0; k < e.n; k++) if (ctx.dups.has(e.p - ds + k)) push(claims, e.p - ds + k, {ino, kind, l: e.l + k})
    }
  }
  for (const [idx, list] of [...claims].sort((x, y) => x[0] - y[0])) {
    const block = ds + idx
    const node = list.filter((c) => c.kind === CLAIM_NODE)
    const dir = list.filter((c) => c.kind === CLAIM_DIR)
    const data = list.filter((c) => c.kind === CLAIM_DATA)
    let keep: Claim[]
    const content = ctx.vol.store.get(block)
    if (node.length > 0) keep = [node[0]]
    else if (dir.length > 0 && looksLikeDirBlock(content)) keep = [bestDirClaim(ctx, dir, content)]
    else if (data.length > 0) keep = data
    else keep = [dir[0]]
    const describe = (c: Claim) => `inode ${c.ino} (${c.kind === CLAIM_NODE ? (c.l >= 0 ? `fileset table block ${c.l}` : 'extent tree node') : c.kind === CLAIM_DIR ? `directory block ${c.l}` : `data block ${c.l}`})`
    const p = ctx.report('BLOCK_MULTIPLY_CLAIMED', `block ${block}`, {
      claims: list.map(describe).join(', '),
      keeper: keep.length === 1 ? `inode ${keep[0].ino}` : 'the file data',
    })
    let losers = 0
    for (const c of list) {
      if (keep.includes(c) || c.kind === CLAIM_NODE) continue
      losers++
      let rw = ctx.rewrites.get(c.ino)
      if (!rw) {
        const m = keptMap(ctx, c.ino)
        rw = {ext: m.ext, nodes: m.nodes, released: [], problems: []}
        ctx.rewrites.set(c.ino, rw)
      }
      // (the core's map type, for the core's unmapRange)
      const map = ExtentMap.of(rw.ext)
      unmapRange(map, c.l, 1)
      rw.ext = map.toArray()
      const d = ctx.dirs.numOf(c.ino)
      if (d >= 0) ctx.dirs.setMap(d, rw.ext, rw.nodes)
      rw.problems.push(p)
      ctx.unclaim(block, 1)
      rw.released.push({l: c.l, n: 1, p: block})
    }
    if (losers === 0) ctx.fixed(p) // nothing to take away (the rewrites mark the others fixed)
    if (ctx.claims.meta(idx) !== 0 && keep[0].kind === CLAIM_DATA) ctx.claims.setMeta(idx, 0)
  }
}

function push(m: Map<number, Claim[]>, k: number, c: Claim): void {
  const l = m.get(k)
  if (l) l.push(c)
  else m.set(k, [c])
}
