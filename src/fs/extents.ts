// File block maps and file data. An inode's extent tree is loaded whole into a sorted list,
// changed in memory, and written back at commit (reusing its node blocks). Data writes
// never overwrite a block in place: new blocks are allocated and the old ones released,
// so an interrupted write leaves the old content, and a block shared with another inode
// (refcount > 1) is never touched: that is the block level of copy-on-write.
import {BLOCK_SIZE, IF_INLINE, MAX_FILE_BLOCKS, MAX_FILE_SIZE} from '../format/constants.js'
import {
  EXT_NODE_MAX, EXT_ROOT_MAX, decodeExtentNode, decodeExtentRoot, encodeExtentNode, encodeExtentRoot,
  type Extent, type ExtentNode,
} from '../format/extent.js'
import {INODE_AREA_SIZE} from '../format/inode.js'
import {FormatError} from '../format/errors.js'
import {fail} from '../errors.js'
import type {Inode} from './inode.js'
import type {Volume} from './volume.js'

/** Largest run allocated or read at once. */
const CHUNK_BLOCKS = 256
const STREAM_CHUNK = CHUNK_BLOCKS * BLOCK_SIZE * 4

/** One reusable read buffer for streaming (allocating 4 MiB per file made GC dominate). */
let scratch: Buffer | null = null
function scratchBuf(bytes: number): Buffer {
  if (!scratch || scratch.length < bytes) scratch = Buffer.allocUnsafe(Math.max(bytes, 64 * 1024))
  return scratch.subarray(0, bytes)
}

function chunkFor(size: number, chunk: number): number {
  return Math.min(chunk, Math.max(BLOCK_SIZE, Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE))
}

// ---------------------------------------------------------------- the map

export function loadExtents(vol: Volume, inode: Inode): Extent[] {
  if (inode.extents) return inode.extents
  const out: Extent[] = []
  const tree: number[] = []
  // A special file's area holds its device number, never a map (FORMAT.md §5.5).
  if (!(inode.r.flags & IF_INLINE) && !inode.isSpecial) {
    try {
      const root = decodeExtentRoot(inode.r.area, `inode ${inode.ino} extent root`)
      walk(vol, inode.ino, root, out, tree, 0)
    } catch (e) {
      if (e instanceof FormatError) fail('EBADIMAGE', `${e.message}; run 'prism fsck'`)
      throw e
    }
  }
  inode.extents = out
  inode.treeBlocks = tree
  return out
}

function walk(vol: Volume, owner: number, node: ExtentNode, out: Extent[], tree: number[], guard: number): void {
  if (guard > 6) throw new FormatError(`inode ${owner}`, 'value', 'extent tree too deep')
  if (node.depth === 0) {
    // A damaged map must not lead reads past the image or writes into the tables.
    const lo = vol.sb.dataStart
    const hi = vol.sb.dataStart + vol.sb.dataBlocks
    for (const e of node.extents) {
      if (e.p < lo || e.p + e.n > hi) throw new FormatError(`inode ${owner}`, 'value', `extent at logical block ${e.l} maps blocks ${e.p}..${e.p + e.n - 1}, outside the data area`)
      out.push({...e})
    }
    return
  }
  for (const x of node.index) {
    if (x.child < vol.sb.dataStart || x.child >= vol.sb.dataStart + vol.sb.dataBlocks) {
      throw new FormatError(`inode ${owner}`, 'value', `extent node pointer ${x.child} out of range`)
    }
    tree.push(x.child)
    const child = decodeExtentNode(vol.store.get(x.child), owner, `inode ${owner} extent node ${x.child}`)
    if (child.depth !== node.depth - 1) throw new FormatError(`inode ${owner}`, 'value', 'extent tree depth inconsistent')
    walk(vol, owner, child, out, tree, guard + 1)
  }
}

/** Writes an inode's in-memory map back into its root and node blocks. */
export function storeExtents(vol: Volume, inode: Inode): void {
  const ext = inode.extents ?? []
  const old = inode.treeBlocks
  const fresh: number[] = []
  let reuse = 0
  const nodeBlock = (): number => {
    if (reuse < old.length) return old[reuse++]
    const {p} = vol.allocRun(1, old.length ? old[old.length - 1] + 1 : undefined, true)
    inode.r.blocks++
    fresh.push(p)
    return p
  }
  const writeNode = (node: ExtentNode): {l: number, child: number} => {
    const b = nodeBlock()
    encodeExtentNode(node, inode.ino, vol.store.fresh(b))
    return {l: firstLogical(node), child: b}
  }
  let root: ExtentNode
  if (ext.length <= EXT_ROOT_MAX) {
    root = {depth: 0, extents: ext, index: []}
  } else {
    // Leaves of up to 255 extents, then index levels until at most 8 nodes remain for the root.
    let level: ExtentNode[] = []
    for (let i = 0; i < ext.length; i += EXT_NODE_MAX) level.push({depth: 0, extents: ext.slice(i, i + EXT_NODE_MAX), index: []})
    let depth = 0
    while (level.length > EXT_ROOT_MAX) {
      const next: ExtentNode[] = []
      for (let i = 0; i < level.length; i += EXT_NODE_MAX) {
        next.push({depth: depth + 1, extents: [], index: level.slice(i, i + EXT_NODE_MAX).map(writeNode)})
      }
      level = next
      depth++
    }
    root = {depth: depth + 1, extents: [], index: level.map(writeNode)}
  }
  // Node blocks no longer needed go back to the allocator.
  for (let i = reuse; i < old.length; i++) {
    vol.decRef(old[i])
    inode.r.blocks--
  }
  inode.treeBlocks = [...old.slice(0, reuse), ...fresh]
  if (!(inode.r.flags & IF_INLINE)) encodeExtentRoot(root, inode.r.area)
  inode.extentsDirty = false
  vol.idirty(inode)
}

function firstLogical(n: ExtentNode): number {
  return n.depth === 0 ? n.extents[0].l : n.index[0].l
}

/** Commit hook: writes every changed map. Registered once per volume. */
export function flushExtents(vol: Volume, inodes: Iterable<Inode>): void {
  for (const inode of inodes) if (inode.extentsDirty) storeExtents(vol, inode)
}

/** Index of the extent containing logical block l, or -1. */
export function findExtent(ext: Extent[], l: number): number {
  let lo = 0
  let hi = ext.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const e = ext[mid]
    if (l < e.l) hi = mid - 1
    else if (l >= e.l + e.n) lo = mid + 1
    else return mid
  }
  return -1
}

/** Physical block for logical block l, or 0 for a hole. */
export function bmap(vol: Volume, inode: Inode, l: number): number {
  const ext = loadExtents(vol, inode)
  const i = findExtent(ext, l)
  return i < 0 ? 0 : ext[i].p + (l - ext[i].l)
}

/** Removes the mapping of [l, l+n) and returns the physical runs that were mapped there. */
export function unmapRange(ext: Extent[], l: number, n: number): Extent[] {
  const end = l + n
  const removed: Extent[] = []
  const keep: Extent[] = []
  for (const e of ext) {
    const eEnd = e.l + e.n
    if (eEnd <= l || e.l >= end) { keep.push(e); continue }
    if (e.l < l) keep.push({l: e.l, n: l - e.l, p: e.p})
    const s = Math.max(e.l, l)
    const t = Math.min(eEnd, end)
    removed.push({l: s, n: t - s, p: e.p + (s - e.l)})
    if (eEnd > end) keep.push({l: end, n: eEnd - end, p: e.p + (end - e.l)})
  }
  ext.length = 0
  ext.push(...keep)
  return removed
}

/** Maps [l, l+n) to physical p.. (the range must be unmapped); merges with neighbours. */
export function mapRange(ext: Extent[], l: number, n: number, p: number): void {
  let lo = 0
  let hi = ext.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (ext[mid].l < l) lo = mid + 1
    else hi = mid
  }
  const prev = ext[lo - 1]
  const next = ext[lo]
  if (prev && prev.l + prev.n === l && prev.p + prev.n === p && prev.n + n <= 0xffff_ffff) {
    prev.n += n
    if (next && prev.l + prev.n === next.l && prev.p + prev.n === next.p) {
      prev.n += next.n
      ext.splice(lo, 1)
    }
    return
  }
  if (next && l + n === next.l && p + n === next.p) {
    next.l = l
    next.p = p
    next.n += n
    return
  }
  ext.splice(lo, 0, {l, n, p})
}

// ---------------------------------------------------------------- data

function checkSize(size: number): void {
  if (size > MAX_FILE_SIZE) fail('EFBIG', `file would exceed the largest size (${MAX_FILE_SIZE} bytes)`)
}

/** Releases every block the inode maps (data and tree nodes); leaves an empty map. */
export function releaseAll(vol: Volume, inode: Inode): void {
  if (inode.r.flags & IF_INLINE) {
    inode.r.area.fill(0)
    inode.r.flags &= ~IF_INLINE
  } else if (inode.isSpecial) {
    inode.r.area.fill(0)
  } else {
    const ext = loadExtents(vol, inode)
    for (const e of ext) vol.decRefRun(e.p, e.n)
    for (const b of inode.treeBlocks) vol.decRef(b)
    inode.r.area.fill(0)
  }
  inode.extents = []
  inode.treeBlocks = []
  inode.extentsDirty = false
  inode.r.blocks = 0
  vol.idirty(inode)
}

/** Reads [off, off+len) of a file into a buffer (holes read as zeros). */
export function readData(vol: Volume, inode: Inode, off: number, len: number): Buffer {
  const size = inode.r.size
  if (off >= size) return Buffer.alloc(0)
  len = Math.min(len, size - off)
  if (inode.r.flags & IF_INLINE) return Buffer.from(inode.r.area.subarray(off, off + len))
  const out = Buffer.alloc(len)
  const ext = loadExtents(vol, inode)
  const first = Math.floor(off / BLOCK_SIZE)
  const last = Math.floor((off + len - 1) / BLOCK_SIZE)
  let i = findFirstAtOrAfter(ext, first)
  for (; i < ext.length && ext[i].l <= last; i++) {
    const e = ext[i]
    const s = Math.max(e.l, first)
    const t = Math.min(e.l + e.n - 1, last)
    const buf = Buffer.allocUnsafe((t - s + 1) * BLOCK_SIZE)
    vol.store.readData(e.p + (s - e.l), buf)
    const srcStart = s === first ? off - first * BLOCK_SIZE : 0
    const dst = s * BLOCK_SIZE + srcStart - off
    const n = Math.min(buf.length - srcStart, len - dst)
    buf.copy(out, dst, srcStart, srcStart + n)
  }
  return out
}

function findFirstAtOrAfter(ext: Extent[], l: number): number {
  let lo = 0
  let hi = ext.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (ext[mid].l + ext[mid].n <= l) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * Streams a whole file in chunks of at most `chunk` bytes, in order. Holes come as zeros.
 * The callback must consume the buffer before returning (it is reused); returning false
 * stops the stream (the reader went away).
 */
export function streamData(vol: Volume, inode: Inode, sink: (buf: Buffer) => boolean | void, chunk = STREAM_CHUNK): void {
  const size = inode.r.size
  if (size === 0) return
  if (inode.r.flags & IF_INLINE) { sink(inode.r.area.subarray(0, size)); return }
  const ext = loadExtents(vol, inode)
  chunk = chunkFor(size, chunk)
  const buf = scratchBuf(chunk)
  const chunkBlocks = chunk / BLOCK_SIZE
  let pos = 0 // byte position in the file
  let i = 0
  while (pos < size) {
    const l = pos / BLOCK_SIZE
    while (i < ext.length && ext[i].l + ext[i].n <= l) i++
    let n: number
    if (i < ext.length && ext[i].l <= l) {
      const e = ext[i]
      n = Math.min(e.l + e.n - l, chunkBlocks)
      vol.store.readData(e.p + (l - e.l), buf.subarray(0, n * BLOCK_SIZE))
    } else {
      const holeEnd = i < ext.length ? ext[i].l : Math.ceil(size / BLOCK_SIZE)
      n = Math.min(holeEnd - l, chunkBlocks)
      buf.fill(0, 0, n * BLOCK_SIZE)
    }
    const bytes = Math.min(n * BLOCK_SIZE, size - pos)
    if (sink(buf.subarray(0, bytes)) === false) return
    pos += bytes
  }
}

/**
 * Calls `sink(offset, buf)` for each mapped run of the file, in order, in chunks of at most
 * `chunk` bytes; holes are skipped (for sparse copies). The buffer is reused, unless
 * `bufFor(bytes)` is given to provide one for each chunk (a buffer the sink keeps).
 */
export function forEachRun(vol: Volume, inode: Inode, sink: (off: number, buf: Buffer) => void, chunk = STREAM_CHUNK, bufFor?: (bytes: number) => Buffer): void {
  const size = inode.r.size
  if (size === 0) return
  if (inode.r.flags & IF_INLINE) { sink(0, inode.r.area.subarray(0, size)); return }
  chunk = chunkFor(size, chunk)
  const scratch = bufFor ? null : scratchBuf(chunk)
  const chunkBlocks = chunk / BLOCK_SIZE
  for (const e of loadExtents(vol, inode)) {
    for (let i = 0; i < e.n; i += chunkBlocks) {
      const off = (e.l + i) * BLOCK_SIZE
      if (off >= size) return
      const n = Math.min(chunkBlocks, e.n - i)
      const buf = scratch ?? bufFor!(n * BLOCK_SIZE)
      vol.store.readData(e.p + i, buf.subarray(0, n * BLOCK_SIZE))
      sink(off, buf.subarray(0, Math.min(n * BLOCK_SIZE, size - off)))
    }
  }
}

/** Frees the extent-tree node blocks an inode still holds (its map is empty or going inline). */
function dropTree(vol: Volume, inode: Inode): void {
  for (const b of inode.treeBlocks) {
    vol.decRef(b)
    inode.r.blocks--
  }
  inode.treeBlocks = []
}

/** Moves inline data out to a block so the file can grow past the inode. */
function uninline(vol: Volume, inode: Inode): void {
  if (!(inode.r.flags & IF_INLINE)) return
  const data = Buffer.from(inode.r.area.subarray(0, inode.r.size))
  inode.r.flags &= ~IF_INLINE
  inode.r.area.fill(0)
  inode.extents = []
  dropTree(vol, inode)
  if (data.length > 0) {
    const {p} = vol.allocRun(1)
    const blk = Buffer.alloc(BLOCK_SIZE)
    data.copy(blk)
    vol.store.writeData(p, blk)
    mapRange(inode.extents, 0, 1, p)
    inode.r.blocks++
  }
  inode.extentsDirty = true
  vol.idirty(inode)
}

/**
 * Writes `data` at byte offset `off`. Every block written is a new block: the old one (if
 * any) loses a reference. Small files (and symlink targets) stay inline in the inode.
 * `owned`: the caller gives away data's memory, up to the end of the block that holds its
 * last byte (that block's rest may be zeroed in place), so whole blocks are queued as they are.
 */
export function writeData(vol: Volume, inode: Inode, off: number, data: Buffer, owned = false): void {
  const end = off + data.length
  checkSize(end)
  if (data.length === 0) return
  const newSize = Math.max(inode.r.size, end)
  if ((inode.r.flags & IF_INLINE || (inode.r.size === 0 && (inode.extents?.length ?? loadExtents(vol, inode).length) === 0)) && newSize <= INODE_AREA_SIZE) {
    if (!(inode.r.flags & IF_INLINE)) {
      // A map emptied in this transaction (a truncate to 0) may still hold tree node blocks,
      // freed by storeExtents at the commit: an inline inode has no map, so they go now.
      dropTree(vol, inode)
      inode.r.flags |= IF_INLINE
      inode.r.area.fill(0)
      inode.extents = []
    }
    data.copy(inode.r.area, off)
    inode.r.size = newSize
    vol.idirty(inode)
    return
  }
  uninline(vol, inode)
  const ext = loadExtents(vol, inode)
  const first = Math.floor(off / BLOCK_SIZE)
  const last = Math.floor((end - 1) / BLOCK_SIZE)
  // Old content of partially written edge blocks, merged into the new blocks.
  const headKeep = off - first * BLOCK_SIZE
  const tailKeep = (last + 1) * BLOCK_SIZE - end
  let l = first
  let goal = l > 0 ? bmap(vol, inode, l - 1) + 1 || undefined : undefined
  while (l <= last) {
    const {p, n} = vol.allocRun(Math.min(last - l + 1, CHUNK_BLOCKS * 4), goal)
    const from = Math.max(0, l * BLOCK_SIZE - off)
    const to = Math.min(data.length, (l + n) * BLOCK_SIZE - off)
    const whole = n * BLOCK_SIZE
    const full = to - from === whole
    // Blocks of memory the caller gave away are queued without a copy: whole ones, and a
    // last one the data ends inside, at or past the end of the file, its rest zeroed in place.
    if (owned && l * BLOCK_SIZE >= off && (full || (end >= inode.r.size && data.byteOffset + from + whole <= data.buffer.byteLength))) {
      vol.store.writeData(p, full ? data.subarray(from, to) : Buffer.from(data.buffer, data.byteOffset + from, whole).fill(0, to - from))
    } else {
      const buf = Buffer.alloc(n * BLOCK_SIZE)
      if (l === first && headKeep > 0) copyOld(vol, inode, first, buf, 0, 0, headKeep)
      if (l + n - 1 === last && tailKeep > 0) {
        const at = (last - l) * BLOCK_SIZE + (BLOCK_SIZE - tailKeep)
        copyOld(vol, inode, last, buf, at, BLOCK_SIZE - tailKeep, BLOCK_SIZE)
      }
      data.copy(buf, Math.max(0, off - l * BLOCK_SIZE), from, to)
      vol.store.writeData(p, buf)
    }
    for (const old of unmapRange(ext, l, n)) {
      vol.decRefRun(old.p, old.n)
      inode.r.blocks -= old.n
    }
    mapRange(ext, l, n, p)
    inode.r.blocks += n
    l += n
    goal = p + n
  }
  inode.r.size = newSize
  inode.extentsDirty = true
  vol.idirty(inode)
}

function copyOld(vol: Volume, inode: Inode, l: number, dst: Buffer, dstOff: number, from: number, to: number): void {
  const p = bmap(vol, inode, l)
  if (p === 0) return // hole: zeros
  const blk = Buffer.allocUnsafe(BLOCK_SIZE)
  vol.store.readData(p, blk)
  blk.copy(dst, dstOff, from, to)
}

/** Sets the file size: shrinking releases whole blocks past the end, growing leaves a hole. */
export function truncateData(vol: Volume, inode: Inode, size: number): void {
  checkSize(size)
  if (size === inode.r.size) return
  if (inode.r.flags & IF_INLINE) {
    if (size <= INODE_AREA_SIZE) {
      if (size < inode.r.size) inode.r.area.fill(0, size)
      inode.r.size = size
      vol.idirty(inode)
      return
    }
    uninline(vol, inode)
  }
  const ext = loadExtents(vol, inode)
  if (size < inode.r.size) {
    const keepBlocks = Math.ceil(size / BLOCK_SIZE)
    for (const old of unmapRange(ext, keepBlocks, MAX_FILE_BLOCKS - keepBlocks)) {
      vol.decRefRun(old.p, old.n)
      inode.r.blocks -= old.n
    }
    // The tail of the last kept block must read as zeros if the file grows again.
    const tail = size % BLOCK_SIZE
    if (tail !== 0 && bmap(vol, inode, keepBlocks - 1) !== 0) {
      const l = keepBlocks - 1
      const blk = Buffer.alloc(BLOCK_SIZE)
      copyOld(vol, inode, l, blk, 0, 0, tail)
      const {p} = vol.allocRun(1, bmap(vol, inode, l))
      vol.store.writeData(p, blk)
      for (const old of unmapRange(ext, l, 1)) vol.decRefRun(old.p, old.n)
      mapRange(ext, l, 1, p)
    }
  }
  inode.r.size = size
  inode.extentsDirty = true
  vol.idirty(inode)
}

/** Number of data blocks mapped (not counting tree nodes). */
export function mappedBlocks(vol: Volume, inode: Inode): number {
  if (inode.r.flags & IF_INLINE) return 0
  let n = 0
  for (const e of loadExtents(vol, inode)) n += e.n
  return n
}

export {CHUNK_BLOCKS}

/**
 * Makes `dst` map the same blocks as `src` (a reflink): every block gains a reference.
 * A block whose counter is full is copied instead (the paper's overflow rule, §3.5).
 * Returns the number of blocks that had to be copied.
 */
export function shareData(vol: Volume, src: Inode, dst: Inode): number {
  releaseAll(vol, dst)
  return shareInto(vol, src, dst)
}

/** shareData for a `dst` that maps nothing yet (a fresh inode or a copy being made). */
export function shareInto(vol: Volume, src: Inode, dst: Inode): number {
  dst.r.size = src.r.size
  dst.r.area.fill(0)
  dst.extents = []
  dst.treeBlocks = []
  dst.r.blocks = 0
  if (src.r.flags & IF_INLINE || src.isSpecial) {
    // Inline data, or a special file's device number: the area is copied byte for byte.
    if (src.r.flags & IF_INLINE) dst.r.flags |= IF_INLINE
    src.r.area.copy(dst.r.area)
    vol.idirty(dst)
    return 0
  }
  dst.r.flags &= ~IF_INLINE
  const out: Extent[] = []
  let copied = 0
  for (const e of loadExtents(vol, src)) {
    out.push({...e})
    for (const p of vol.incRefRun(e.p, e.n)) {
      const buf = Buffer.allocUnsafe(BLOCK_SIZE)
      vol.store.readData(p, buf)
      const {p: np} = vol.allocRun(1, p)
      vol.store.writeData(np, buf)
      const l = e.l + (p - e.p)
      unmapRange(out, l, 1)
      mapRange(out, l, 1, np)
      copied++
    }
    dst.r.blocks += e.n
  }
  dst.extents = out
  dst.extentsDirty = true
  vol.idirty(dst)
  return copied
}
