// File block maps and file data. An inode's extent tree is loaded whole into a sorted list,
// changed in memory, and written back at commit (reusing its node blocks). Data writes
// never overwrite a block in place: new blocks are allocated and the old ones released,
// so an interrupted write leaves the old content, and a block shared with another inode
// (refcount > 1) is never touched: that is the block level of copy-on-write.
import {ExtentMap} from './extentmap.js'
import {noteExtentChange} from './extundo.js'
import {BLOCK_SIZE, IF_INLINE, MAX_FILE_BLOCKS, MAX_FILE_SIZE} from '../format/constants.js'
import {
  EXT_NODE_MAX, EXT_ROOT_MAX, decodeExtentNode, decodeExtentRoot, encodeExtentNode, encodeExtentRoot,
  type Extent, type ExtentNode,
} from '../format/extent.js'
import {INODE_AREA_OFF, INODE_AREA_SIZE} from '../format/inode.js'
import {FormatError} from '../format/errors.js'
import {INCOMPAT_REPEATED_BLOCKS} from '../format/superblock.js'
import {fail} from '../errors.js'
import type {Inode} from './inode.js'
import type {Volume} from './volume.js'
import {zeroBlocks} from '../journal/store.js'
import {MAX_ZONES, farRunsKept, fileZones, groupView, isNear, naturalPlace, regionView, zoneBlocks, type GroupView, type LocalityPolicy, type RegionView} from './locality.js'

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

export function loadExtents(vol: Volume, inode: Inode): ExtentMap {
  if (inode.extents) return inode.extents
  const out = new ExtentMap()
  const tree: number[] = []
  // A special file's area holds its device number, never a map (FORMAT.md §5.5).
  if (!(inode.r.flags & IF_INLINE) && !inode.isSpecial) readMap(vol, inode.ino, inode.r.area, out, tree)
  inode.extents = out
  inode.treeBlocks = tree
  // (its changes are recorded from now on: the first commit patches the tree read here)
  if (tree.length) CHANGED.set(out, new Changes())
  return out
}

/**
 * The extent map of inode `ino` read in place in the inode table (Volume.inodeInTable: the
 * record at buf[off]), when all of it lies in the inode's own area (a tree of depth 0, as a
 * directory of a few blocks has); null when it has tree blocks (loadExtents reads those).
 * Checked as loadExtents checks a map.
 */
export function extentsInPlace(vol: Volume, ino: number, buf: Buffer, off: number): Extent[] | null {
  const out: Extent[] = []
  return readMap(vol, ino, buf.subarray(off + INODE_AREA_OFF, off + INODE_AREA_OFF + INODE_AREA_SIZE), out, null) ? out : null
}

/** Where a map being read goes: an ExtentMap, or an array. */
interface ExtentSink {
  push(e: Extent): unknown
}

/**
 * Reads the map whose root is `area` (inode `ino`'s) into `out`, its tree's node blocks into
 * `tree`; with `tree` null, only a root that holds the whole map (depth 0), returning false
 * for a deeper one. A damaged map fails with EBADIMAGE.
 */
function readMap(vol: Volume, ino: number, area: Buffer, out: ExtentSink, tree: number[] | null): boolean {
  try {
    const root = decodeExtentRoot(area, `inode ${ino} extent root`)
    if (tree === null && root.depth !== 0) return false
    walk(vol, ino, root, out, tree ?? [], 0)
    return true
  } catch (e) {
    if (e instanceof FormatError) fail('EBADIMAGE', `${e.message}; run 'prism fsck'`)
    throw e
  }
}

function walk(vol: Volume, owner: number, node: ExtentNode, out: ExtentSink, tree: number[], guard: number): void {
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

/**
 * Extents per leaf, and entries per index node, when a tree is built whole (FORMAT.md §6.4):
 * a quarter of each node is left free, so that the changes of later transactions patch the
 * few nodes they touch (patchTree) instead of rebuilding the tree.
 */
export const BUILD_FILL = 192

/**
 * The tree as storeExtents last wrote it, kept on the cached Inode: the next write compares
 * the map with it and rewrites only the nodes whose entries changed. A random write into a
 * file of 250,000 extents, committed on its own (an fsync through a mount), then journals a
 * leaf and the root instead of a thousand nodes.
 */
export interface TreeShape {
  /** inode.treeBlocks as storeExtents left it: another array means the tree changed elsewhere */
  blocks: number[]
  /** the node blocks level by level, leaves first; the root (in the inode) is not among them */
  levels: ShapeNode[][]
  /** the map written (inode.extents), whose changes since then CHANGED records */
  ext: ExtentMap
}

/**
 * Where a map changed since storeExtents wrote it: ranges of logical blocks holding the first
 * block of every extent added, removed or changed (mapRange and unmapRange record them; a
 * leaf holds the extents whose first block lies between its key and the next leaf's). A map
 * not listed here (one assigned whole) is compared leaf by leaf.
 */
const CHANGED = new WeakMap<ExtentMap, Changes>()

class Changes {
  private readonly lo: number[] = []
  private readonly hi: number[] = []
  /** too many ranges to keep: every leaf is compared */
  private all = false

  /** Records that extents starting in [a, b) changed. */
  add(a: number, b: number): void {
    if (this.all) return
    for (let i = 0; i < this.lo.length; i++) {
      if (a <= this.hi[i] && b >= this.lo[i]) {
        if (a < this.lo[i]) this.lo[i] = a
        if (b > this.hi[i]) this.hi[i] = b
        return
      }
    }
    if (this.lo.length >= 64) { this.all = true; return }
    this.lo.push(a)
    this.hi.push(b)
  }

  /** Whether an extent starting in [a, b) may have changed. */
  touches(a: number, b: number): boolean {
    if (this.all) return true
    for (let i = 0; i < this.lo.length; i++) if (a < this.hi[i] && b > this.lo[i]) return true
    return false
  }
}

interface ShapeNode {
  block: number
  /** the first logical block under the node: its key in the parent */
  key: number
  /** what the block holds: a leaf's l, n, p per extent; an index node's key, child per entry */
  entries: Float64Array
  /** the parent's index in the next level up; -1 under the root */
  parent: number
}

/** Writes an inode's in-memory map back into its root and node blocks. */
export function storeExtents(vol: Volume, inode: Inode): void {
  const ext = inode.extents ?? new ExtentMap()
  const shape = ext.length > EXT_ROOT_MAX ? inode.treeShape ?? shapeOnDisk(vol, inode, ext) : undefined
  if (!(shape && ext.length > EXT_ROOT_MAX && shape.blocks === inode.treeBlocks && patchTree(vol, inode, ext, shape))) buildTree(vol, inode, ext)
  inode.extentsDirty = false
  vol.idirty(inode)
}

/**
 * The shape of the tree the inode's root (not yet rewritten) and node blocks hold, for a map
 * loaded from them: undefined where it is not a tree of node blocks exactly `treeBlocks`,
 * keyed in order by each child's first entry (which is then built whole).
 */
function shapeOnDisk(vol: Volume, inode: Inode, ext: ExtentMap): TreeShape | undefined {
  const tree = inode.treeBlocks
  if (tree.length === 0 || inode.r.flags & IF_INLINE || !CHANGED.has(ext)) return undefined
  let root: ExtentNode
  try {
    root = decodeExtentRoot(inode.r.area, `inode ${inode.ino} extent root`)
  } catch {
    return undefined
  }
  if (root.depth === 0) return undefined
  const levels: ShapeNode[][] = Array.from({length: root.depth}, () => [])
  const seen = new Set<number>()
  const visit = (key: number, block: number, depth: number, parent: number): boolean => {
    if (seen.has(block)) return false
    seen.add(block)
    let node: ExtentNode
    try {
      node = decodeExtentNode(vol.store.get(block), inode.ino, `inode ${inode.ino} extent node ${block}`)
    } catch {
      return false
    }
    const first = node.depth === 0 ? node.extents[0]?.l : node.index[0]?.l
    const level = levels[depth]
    if (node.depth !== depth || first !== key || (level.length > 0 && level[level.length - 1].key >= key)) return false
    const me = level.length
    level.push({block, key, entries: depth === 0 ? leafEntries(ExtentMap.of(node.extents), 0, node.extents.length) : indexEntries(node.index.map((x) => ({key: x.l, block: x.child}))), parent})
    if (depth > 0) for (const x of node.index) if (!visit(x.l, x.child, depth - 1, me)) return false
    return true
  }
  for (const x of root.index) if (!visit(x.l, x.child, root.depth - 1, -1)) return undefined
  if (seen.size !== tree.length || tree.some((b) => !seen.has(b))) return undefined
  return {blocks: tree, levels, ext}
}

/** Builds the whole tree (FORMAT.md §6.4), reusing the inode's node blocks first. */
function buildTree(vol: Volume, inode: Inode, ext: ExtentMap): void {
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
  let root: ExtentNode
  const levels: ShapeNode[][] = []
  if (ext.length <= EXT_ROOT_MAX) {
    root = {depth: 0, extents: ext.toArray(), index: []}
  } else {
    // Leaves of BUILD_FILL extents, then index levels of BUILD_FILL entries until at most 8
    // nodes remain for the root.
    let level: ShapeNode[] = []
    for (let i = 0; i < ext.length; i += BUILD_FILL) {
      const part = ext.slice(i, i + BUILD_FILL)
      const b = nodeBlock()
      encodeExtentNode({depth: 0, extents: part, index: []}, inode.ino, vol.store.fresh(b))
      level.push({block: b, key: part[0].l, entries: leafEntries(ext, i, i + part.length), parent: -1})
    }
    levels.push(level)
    while (level.length > EXT_ROOT_MAX) {
      const next: ShapeNode[] = []
      for (let i = 0; i < level.length; i += BUILD_FILL) {
        const kids = level.slice(i, i + BUILD_FILL)
        for (const k of kids) k.parent = next.length
        const b = nodeBlock()
        const node: ShapeNode = {block: b, key: kids[0].key, entries: indexEntries(kids), parent: -1}
        writeIndexNode(vol, inode, node, levels.length)
        next.push(node)
      }
      levels.push(next)
      level = next
    }
    root = {depth: levels.length, extents: [], index: level.map((n) => ({l: n.key, child: n.block}))}
  }
  // Node blocks no longer needed go back to the allocator.
  for (let i = reuse; i < old.length; i++) {
    vol.decRef(old[i])
    inode.r.blocks--
  }
  inode.treeBlocks = [...old.slice(0, reuse), ...fresh]
  inode.treeShape = levels.length ? {blocks: inode.treeBlocks, levels, ext} : undefined
  if (levels.length) CHANGED.set(ext, new Changes())
  if (!(inode.r.flags & IF_INLINE)) encodeExtentRoot(root, inode.r.area)
}

/**
 * Brings the tree `shape` describes up to the map `ext`, rewriting only the nodes whose
 * entries change: each leaf takes the extents from its key to the next leaf's; a leaf that
 * grows past 255 is split, its new halves going under the same parent. Returns false, having
 * changed nothing, where that does not fit (a leaf left empty, a parent or the root that would
 * overflow): the caller then builds the tree whole.
 */
function patchTree(vol: Volume, inode: Inode, ext: ExtentMap, shape: TreeShape): boolean {
  const leaves = shape.levels[0]
  const changes = shape.ext === ext ? CHANGED.get(ext) : undefined
  // The new leaves: [from, to) of ext each, with the block they go in (-1: a new block).
  const from: number[] = []
  const block: number[] = []
  const parent: number[] = []
  const changed: boolean[] = []
  /** the leaf of `shape` each new one comes from */
  const orig: number[] = []
  let fresh = 0
  let next = 0
  for (let i = 0; i < leaves.length; i++) {
    const a = next
    const b = i + 1 < leaves.length ? lowerBound(ext, leaves[i + 1].key, a) : ext.length
    next = b
    const count = b - a
    if (count <= 0) return false
    const leaf = leaves[i]
    const touched = !changes || changes.touches(i === 0 ? -Infinity : leaf.key, i + 1 < leaves.length ? leaves[i + 1].key : Infinity)
    if (!touched || sameLeaf(ext, a, b, leaf.entries)) {
      from.push(a); block.push(leaf.block); parent.push(leaf.parent); changed.push(false); orig.push(i)
      continue
    }
    const pieces = count <= EXT_NODE_MAX ? 1 : Math.ceil(count / BUILD_FILL)
    for (let k = 0; k < pieces; k++) {
      from.push(a + Math.floor((count * k) / pieces))
      block.push(k === 0 ? leaf.block : -1)
      parent.push(leaf.parent)
      changed.push(true)
      orig.push(i)
    }
    fresh += pieces - 1
  }
  from.push(ext.length)
  const n = block.length
  // Room for the new leaves: under the root (at most 8), or in their parents (at most 255).
  if (fresh > 0) {
    if (shape.levels.length === 1) {
      if (n > EXT_ROOT_MAX) return false
    } else {
      const kids = new Uint32Array(shape.levels[1].length)
      for (let i = 0; i < n; i++) if (++kids[parent[i]] > EXT_NODE_MAX) return false
    }
  }
  // It fits: new blocks next to the last node, then the leaves that changed.
  const blocks = fresh > 0 ? [...inode.treeBlocks] : inode.treeBlocks
  for (let i = 0; i < n; i++) {
    if (block[i] !== -1) continue
    const {p} = vol.allocRun(1, blocks[blocks.length - 1] + 1, true)
    inode.r.blocks++
    blocks.push(p)
    block[i] = p
  }
  const level: ShapeNode[] = []
  for (let i = 0; i < n; i++) {
    const a = from[i]
    const b = from[i + 1]
    if (!changed[i]) {
      level.push({block: block[i], key: ext.get(a).l, entries: leaves[orig[i]].entries, parent: parent[i]})
      continue
    }
    encodeExtentNode({depth: 0, extents: ext.slice(a, b), index: []}, inode.ino, vol.store.fresh(block[i]))
    level.push({block: block[i], key: ext.get(a).l, entries: leafEntries(ext, a, b), parent: parent[i]})
  }
  const levels: ShapeNode[][] = [level]
  // The index levels: the same nodes, with the entries of their children as they now are;
  // a node whose entries differ is written again.
  for (let d = 1; d < shape.levels.length; d++) {
    const below = levels[d - 1]
    const up = shape.levels[d].map((x): ShapeNode => ({block: x.block, key: 0, entries: x.entries, parent: x.parent}))
    const groups: ShapeNode[][] = up.map(() => [])
    for (const c of below) groups[c.parent].push(c)
    for (let j = 0; j < up.length; j++) {
      const kids = groups[j]
      const entries = indexEntries(kids)
      up[j].key = kids[0].key
      if (!sameEntries(entries, up[j].entries)) {
        up[j].entries = entries
        writeIndexNode(vol, inode, up[j], d)
      }
    }
    levels.push(up)
  }
  const top = levels[levels.length - 1]
  encodeExtentRoot({depth: levels.length, extents: [], index: top.map((x) => ({l: x.key, child: x.block}))}, inode.r.area)
  inode.treeBlocks = blocks
  inode.treeShape = {blocks, levels, ext}
  CHANGED.set(ext, new Changes())
  return true
}

/** The first index at or after `from` whose extent starts at or after logical block l. */
function lowerBound(ext: ExtentMap, l: number, from: number): number {
  let lo = from
  let hi = ext.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (ext.get(mid).l < l) lo = mid + 1
    else hi = mid
  }
  return lo
}

function leafEntries(ext: ExtentMap, a: number, b: number): Float64Array {
  const out = new Float64Array((b - a) * 3)
  for (let i = a, o = 0; i < b; i++, o += 3) {
    const e = ext.get(i)
    out[o] = e.l
    out[o + 1] = e.n
    out[o + 2] = e.p
  }
  return out
}

function sameLeaf(ext: ExtentMap, a: number, b: number, entries: Float64Array): boolean {
  if ((b - a) * 3 !== entries.length) return false
  for (let i = a, o = 0; i < b; i++, o += 3) {
    const e = ext.get(i)
    if (entries[o] !== e.l || entries[o + 1] !== e.n || entries[o + 2] !== e.p) return false
  }
  return true
}

function indexEntries(kids: ReadonlyArray<{key: number, block: number}>): Float64Array {
  const out = new Float64Array(kids.length * 2)
  for (let i = 0; i < kids.length; i++) {
    out[2 * i] = kids[i].key
    out[2 * i + 1] = kids[i].block
  }
  return out
}

function sameEntries(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function writeIndexNode(vol: Volume, inode: Inode, node: ShapeNode, depth: number): void {
  const index = []
  for (let i = 0; i < node.entries.length; i += 2) index.push({l: node.entries[i], child: node.entries[i + 1]})
  encodeExtentNode({depth, extents: [], index}, inode.ino, vol.store.fresh(node.block))
}

/** Commit hook: writes every changed map. Registered once per volume. */
export function flushExtents(vol: Volume, inodes: Iterable<Inode>): void {
  for (const inode of inodes) if (inode.extentsDirty) storeExtents(vol, inode)
}

/** Index of the extent containing logical block l, or -1. */
export function findExtent(ext: ExtentMap, l: number): number {
  let lo = 0
  let hi = ext.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const e = ext.get(mid)
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
  return i < 0 ? 0 : ext.get(i).p + (l - ext.get(i).l)
}

/** Removes the mapping of [l, l+n) and returns the physical runs that were mapped there. */
export function unmapRange(ext: ExtentMap, l: number, n: number): Extent[] {
  const end = l + n
  const removed: Extent[] = []
  const keep: Extent[] = []
  // Only the extents that overlap the range change: found by binary search, replaced in place
  // (a random write into a file of 50,000 extents must not rebuild the whole list).
  const i = ext.firstEndingAfter(l)
  let j = i
  for (; j < ext.length && ext.get(j).l < end; j++) {
    const e = ext.get(j)
    const eEnd = e.l + e.n
    if (e.l < l) keep.push({l: e.l, n: l - e.l, p: e.p})
    const s = Math.max(e.l, l)
    const t = Math.min(eEnd, end)
    removed.push({l: s, n: t - s, p: e.p + (s - e.l)})
    if (eEnd > end) keep.push({l: end, n: eEnd - end, p: e.p + (end - e.l)})
  }
  if (j > i) {
    CHANGED.get(ext)?.add(Math.min(ext.get(i).l, l), end + 1)
    noteExtentChange(ext, i, j - i, keep.length)
    ext.splice(i, j - i, keep)
  }
  return removed
}

/** Maps [l, l+n) to physical p.. (the range must be unmapped); merges with neighbours. */
export function mapRange(ext: ExtentMap, l: number, n: number, p: number): void {
  const lo = lowerBound(ext, l, 0)
  const prev = ext.at(lo - 1)
  const next = ext.at(lo)
  CHANGED.get(ext)?.add(prev ? prev.l : l, next ? next.l + 1 : l + 1)
  if (prev && prev.l + prev.n === l && prev.p + prev.n === p && prev.n + n <= 0xffff_ffff) {
    const joins = next !== undefined && prev.l + prev.n + n === next.l && prev.p + prev.n + n === next.p
    noteExtentChange(ext, lo - 1, joins ? 2 : 1, 1)
    prev.n += n
    if (next && prev.l + prev.n === next.l && prev.p + prev.n === next.p) {
      prev.n += next.n
      ext.splice(lo, 1)
    }
    return
  }
  if (next && l + n === next.l && p + n === next.p) {
    noteExtentChange(ext, lo, 1, 1)
    next.l = l
    next.p = p
    next.n += n
    return
  }
  noteExtentChange(ext, lo, 0, 1)
  ext.splice(lo, 0, [{l, n, p}])
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
  inode.extents = new ExtentMap()
  inode.treeBlocks = []
  inode.extentsDirty = false
  inode.r.blocks = 0
  vol.idirty(inode)
}

/** Free or foreign blocks a read goes through rather than seek past (FORMAT.md §6.6: a region's slack). */
const READ_THROUGH = 128
/**
 * The longest gap after the end of a stream's last read that its next read starts early to
 * read through (blocks): longer ones are skipped, the read staying on that stream's
 * descriptor, unless most of the gap is in use (bench/README.md "Skipping an overflow
 * window's free rest").
 */
const BRIDGE_MAX = 32
/** Largest span read at once by readBlocks beyond the blocks it needs (blocks). */
const SPAN_MAX = CHUNK_BLOCKS * 24

let spanScratch: Buffer | null = null

/**
 * Fills `out` with logical blocks [l, l + out.length/4096) of a file (holes as zeros). The
 * blocks are read in physical order, and runs no more than READ_THROUGH blocks apart are
 * read as one span (the blocks between them read and dropped): a region whose blocks sit
 * in and around its home, as the locality policy places them, is then one sequential read
 * of the image, which the host's readahead serves at full speed, where reading each run
 * on its own, skipping the gaps, breaks the readahead into small synchronous reads.
 * `cursor` (a stream's) carries where its last reads ended, so that a read starts at one
 * of those ends when the gap is small: the reads of each stream (a file's base runs, its
 * overflow zone) then follow one another.
 */
export function readBlocks(vol: Volume, ext: ExtentMap, l: number, out: Buffer, cursor?: ReadCursor): void {
  const n = out.length / BLOCK_SIZE
  const end = l + n
  const pieces: Extent[] = []
  let covered = 0
  for (let i = ext.firstEndingAfter(l); i < ext.length && ext.get(i).l < end; i++) {
    const e = ext.get(i)
    const s = Math.max(e.l, l)
    const t = Math.min(e.l + e.n, end)
    pieces.push({l: s, n: t - s, p: e.p + (s - e.l)})
    covered += t - s
  }
  if (covered < n) out.fill(0)
  if (pieces.length > 1) pieces.sort((a, b) => a.p - b.p)
  let i = 0
  while (i < pieces.length) {
    let ps = pieces[i].p
    let pe = ps + pieces[i].n
    let useful = pieces[i].n
    let j = i + 1
    // A gap is read through when it is short, and when what the span reads in gaps stays
    // below what it needs (pure block copy-on-write scatters blocks over areas of others).
    // A piece that starts before the span's end ends it: a file may map one block at several
    // places (copy_file_range shares a range into its own file, or one source range twice),
    // and one scattered read lays its pieces end to end.
    for (; j < pieces.length && j - i < 400; j++) {
      const x = pieces[j]
      const end = Math.max(pe, x.p + x.n)
      if (x.p < pe || x.p > pe + READ_THROUGH || end - ps > SPAN_MAX || end - ps > 2 * (useful + x.n) + 16) break
      pe = end
      useful += x.n
    }
    // Just after where one of the stream's reads ended: read the gap too, and read through
    // that stream's descriptor (FileDevice.readv), whose readahead follows it.
    let stream = 0
    if (cursor) {
      // Gaps read through stay under an eighth of what the stream needed: a layout that
      // scatters single blocks (pure block copy-on-write) is read block by block instead.
      // A longer gap (past BRIDGE_MAX) is read through only when most of it holds data: a
      // layout that scatters blocks (pure block copy-on-write) has this file's other blocks
      // there, which a later read then finds in the host's cache; free space is skipped (an
      // unshared file's overflow windows hold a few blocks each, and reading the rest of each
      // window cost a third of the whole read).
      cursor.useful += useful
      let k = cursor.ends.findIndex((e) => ps >= e && ps - e <= READ_THROUGH && cursor.bridged + (ps - e) <= cursor.useful / 8)
      if (k >= 0) {
        const gap = ps - cursor.ends[k]
        if (gap <= BRIDGE_MAX || inUse(vol, cursor.ends[k], gap) * 2 >= gap) {
          cursor.bridged += gap
          ps = cursor.ends[k]
        }
      } else {
        k = cursor.ends.length < 4 ? cursor.ends.length : cursor.oldest
        cursor.oldest = (k + 1) % 4
      }
      cursor.ends[k] = pe
      stream = k
    }
    if (j === i + 1 && ps === pieces[i].p && stream === 0) {
      const x = pieces[i]
      vol.store.readData(x.p, out.subarray((x.l - l) * BLOCK_SIZE, (x.l - l + x.n) * BLOCK_SIZE))
    } else {
      // One scattered read: each piece straight to its place, the gaps into scratch memory.
      const bufs: Buffer[] = []
      let at = ps
      for (let k = i; k < j; k++) {
        const x = pieces[k]
        if (x.p > at) bufs.push(gapBuf(x.p - at))
        bufs.push(out.subarray((x.l - l) * BLOCK_SIZE, (x.l - l + x.n) * BLOCK_SIZE))
        at = x.p + x.n
      }
      vol.store.readDataV(ps, bufs, stream)
    }
    i = j
  }
}

/** Blocks in use (reference count above 0) in [p, p + n). */
function inUse(vol: Volume, p: number, n: number): number {
  let used = 0
  vol.forEachRefcounts(p, n, (_first, counts) => {
    for (let i = 0; i < counts.length; i++) if (counts[i] > 0) used++
  })
  return used
}

/** Where the recent reads of a stream ended (up to four: a file read as a few sequential streams). */
export interface ReadCursor {
  ends: number[]
  oldest: number
  /** blocks read that were needed, and blocks of gaps read through to join streams */
  useful: number
  bridged: number
}

/** Memory the gaps of a scattered read land in (never looked at; shared by every gap). */
function gapBuf(blocks: number): Buffer {
  const bytes = blocks * BLOCK_SIZE
  if (!spanScratch || spanScratch.length < bytes) spanScratch = Buffer.allocUnsafe(Math.max(bytes, (READ_THROUGH + 1) * BLOCK_SIZE))
  return spanScratch.subarray(0, bytes)
}

/**
 * Where a file's data starts in the image: the physical block of its first mapped extent; 0
 * for a file that maps none (inline data, holes only, not a regular file). A reader of many
 * files (an export of a tree) takes them in this order: a clone's rewritten files lie where
 * each write put them, so a tree read in name order seeks between most two files, and read in
 * this order sweeps the image once (FORMAT.md §6.6 "Reading").
 */
export function firstBlock(vol: Volume, inode: Inode): number {
  if (!inode.isReg || inode.r.flags & IF_INLINE || inode.r.size === 0) return 0
  const ext = loadExtents(vol, inode)
  return ext.length ? ext.get(0).p : 0
}

/** Reads [off, off+len) of a file into a buffer (holes read as zeros). */
export function readData(vol: Volume, inode: Inode, off: number, len: number): Buffer {
  const size = inode.r.size
  if (off >= size) return Buffer.alloc(0)
  len = Math.min(len, size - off)
  if (inode.r.flags & IF_INLINE) return Buffer.from(inode.r.area.subarray(off, off + len))
  const ext = loadExtents(vol, inode)
  const first = Math.floor(off / BLOCK_SIZE)
  const last = Math.floor((off + len - 1) / BLOCK_SIZE)
  if (first * BLOCK_SIZE === off && len === (last - first + 1) * BLOCK_SIZE) {
    const out = Buffer.allocUnsafe(len)
    readBlocks(vol, ext, first, out)
    return out
  }
  const buf = Buffer.allocUnsafe((last - first + 1) * BLOCK_SIZE)
  readBlocks(vol, ext, first, buf)
  return Buffer.from(buf.subarray(off - first * BLOCK_SIZE, off - first * BLOCK_SIZE + len))
}

/**
 * How much of a file streamData reads at once, whatever the size of the pieces it hands
 * out: a group of the locality policy (FORMAT.md §6.6), so that the blocks of a group that
 * sit in its overflow run are read in the same pass as its base run.
 */
export const streamTuning = {ioBytes: 4 * 1024 * 1024}

/** What streamData and streamSparse read with: the map, the sizes, the buffer and the read cursor. */
interface Stream {
  ext: ExtentMap
  /** the most a sink is handed at once */
  chunk: number
  /** the most read at once, in blocks */
  ioBlocks: number
  buf: Buffer
  cursor: ReadCursor
}

/** A stream of `inode`'s data; null for an empty file, and for inline data, handed to `sink` whole here. */
function openStream(vol: Volume, inode: Inode, sink: (buf: Buffer) => boolean | void, chunk: number): Stream | null {
  const size = inode.r.size
  if (size === 0) return null
  if (inode.r.flags & IF_INLINE) { sink(inode.r.area.subarray(0, size)); return null }
  chunk = chunkFor(size, chunk)
  const io = chunkFor(size, Math.max(chunk, streamTuning.ioBytes))
  return {ext: loadExtents(vol, inode), chunk, ioBlocks: io / BLOCK_SIZE, buf: scratchBuf(io), cursor: {ends: [], oldest: 0, useful: 0, bridged: 0}}
}

/**
 * Reads the file's bytes [pos, end) (`pos` at a block's start), a read of up to `ioBlocks` at a
 * time (holes as zeros), and hands them to `sink` in pieces of up to `chunk`; false when the
 * sink stopped the stream.
 */
function streamRange(vol: Volume, s: Stream, pos: number, end: number, sink: (buf: Buffer) => boolean | void): boolean {
  while (pos < end) {
    const n = Math.min(Math.ceil((end - pos) / BLOCK_SIZE), s.ioBlocks)
    readBlocks(vol, s.ext, pos / BLOCK_SIZE, s.buf.subarray(0, n * BLOCK_SIZE), s.cursor)
    const bytes = Math.min(n * BLOCK_SIZE, end - pos)
    for (let at = 0; at < bytes; at += s.chunk) {
      if (sink(s.buf.subarray(at, Math.min(at + s.chunk, bytes))) === false) return false
    }
    pos += bytes
  }
  return true
}

/**
 * Streams a whole file in chunks of at most `chunk` bytes, in order. Holes come as zeros.
 * The callback must consume the buffer before returning (it is reused); returning false
 * stops the stream (the reader went away).
 */
export function streamData(vol: Volume, inode: Inode, sink: (buf: Buffer) => boolean | void, chunk = STREAM_CHUNK): void {
  const s = openStream(vol, inode, sink, chunk)
  if (s) streamRange(vol, s, 0, inode.r.size, sink)
}

/**
 * streamData for a reader that need not see a hole's zeros one by one (a signature matcher):
 * mapped data comes in file order as buffers to `sink` (at most `chunk` bytes, reused: consume
 * before returning), and each hole, between mapped runs and after the last one up to the
 * size, as `hole(bytes)`, without reading or zero-filling anything: a hole of terabytes costs
 * one call. Either returning false stops the stream.
 */
export function streamSparse(vol: Volume, inode: Inode, sink: (buf: Buffer) => boolean | void, hole: (bytes: number) => boolean | void, chunk = STREAM_CHUNK): void {
  const s = openStream(vol, inode, sink, chunk)
  if (!s) return
  const size = inode.r.size
  let pos = 0 // byte position in the file: everything before it went out
  for (const e of s.ext) {
    const start = e.l * BLOCK_SIZE
    if (start >= size) break
    if (start > pos) {
      if (hole(start - pos) === false) return
      pos = start
    }
    const end = Math.min((e.l + e.n) * BLOCK_SIZE, size)
    if (!streamRange(vol, s, pos, end, sink)) return
    pos = end
  }
  if (pos < size) hole(size - pos)
}

/** Zeros for the holes streamSpans hands out (never written to). */
let zeroChunk: Buffer | null = null

/**
 * streamData for a caller that can send data straight from the image file (sendfile to a
 * pipe), in file order: each piece of a mapped run whose blocks hold their content in place
 * in the host file (BlockStore.hostSpan) comes as `span(fd, pos, bytes)`, and the caller
 * sends those bytes of that descriptor and returns how many it sent; the rest (holes as
 * zeros, inline data, data not yet written back, and whatever a span did not send) comes as
 * buffers to `sink`, which must consume each before returning. A span returning -1, or the
 * sink returning false, stops the stream (the reader went away).
 */
export function streamSpans(vol: Volume, inode: Inode, span: (fd: number, pos: number, bytes: number) => number, sink: (buf: Buffer) => boolean | void, chunk = STREAM_CHUNK): void {
  const size = inode.r.size
  if (size === 0) return
  if (inode.r.flags & IF_INLINE) { sink(inode.r.area.subarray(0, size)); return }
  chunk = chunkFor(size, chunk)
  const chunkBlocks = chunk / BLOCK_SIZE
  const zeros = (zeroChunk ??= Buffer.alloc(STREAM_CHUNK)).subarray(0, chunk)
  let pos = 0 // byte position in the file: everything before it went out
  const holeTo = (end: number): boolean => {
    for (; pos < end; pos += Math.min(chunk, end - pos)) if (sink(zeros.subarray(0, Math.min(chunk, end - pos))) === false) return false
    return true
  }
  for (const e of loadExtents(vol, inode)) {
    if (e.l * BLOCK_SIZE >= size) break
    if (!holeTo(e.l * BLOCK_SIZE)) return
    for (let i = 0; i < e.n && pos < size; i += chunkBlocks) {
      const n = Math.min(chunkBlocks, e.n - i)
      const bytes = Math.min(n * BLOCK_SIZE, size - pos)
      const at = vol.store.hostSpan(e.p + i, n)
      let sent = 0
      if (at) {
        sent = span(at.fd, at.pos, bytes)
        if (sent < 0) return
      }
      if (sent < bytes) {
        // The rest of the piece, read (from its first block not sent whole).
        const skip = Math.floor(sent / BLOCK_SIZE)
        const buf = scratchBuf(chunk).subarray(0, (n - skip) * BLOCK_SIZE)
        vol.store.readData(e.p + i + skip, buf)
        if (sink(buf.subarray(sent - skip * BLOCK_SIZE, bytes - skip * BLOCK_SIZE)) === false) return
      }
      pos += bytes
    }
  }
  holeTo(size)
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
  inode.extents = new ExtentMap()
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

/** What a write did beyond writing its own bytes: the locality policy's region rewrites. */
export interface WriteStats {
  /** regions rewritten as one run (FORMAT.md §6.6) */
  rewrites: number
  /** blocks those rewrites copied (unchanged blocks moved next to the changed ones) */
  copied: number
  /** of those, blocks still in use elsewhere after the copy: the space the policy cost */
  copiedShared: number
}

const NO_STATS: WriteStats = Object.freeze({rewrites: 0, copied: 0, copiedShared: 0}) as WriteStats

/** A write in progress: its bytes and where they go. */
interface Write {
  vol: Volume
  inode: Inode
  ext: ExtentMap
  off: number
  end: number
  data: Buffer
  owned: boolean
  first: number
  last: number
  /** old bytes kept at the start of the first block and the end of the last */
  headKeep: number
  tailKeep: number
  stats: WriteStats
  /** `data` is all zeros (writeZeros): whole blocks are queued as zeros (BlockStore.zeroData) */
  zeros: boolean
}

/**
 * Writes `data` at byte offset `off`. Every block written is a new block: the old one (if
 * any) loses a reference. Small files (and symlink targets) stay inline in the inode.
 * `owned`: the caller gives away data's memory, up to the end of the block that holds its
 * last byte (that block's rest may be zeroed in place), so whole blocks are queued as they are.
 * With a locality policy (locality.ts, FORMAT.md §6.6) the new blocks are placed in their
 * region's window, a block allocated in this same transaction is written again where it is,
 * and a region left with enough runs outside its window is rewritten as one run.
 */
export function writeData(vol: Volume, inode: Inode, off: number, data: Buffer, owned = false, pol: LocalityPolicy | null = null): WriteStats {
  return writeAt(vol, inode, off, data, owned, pol, false)
}

/**
 * Writes zeros over [off, off + len) of a file, as writeData of a buffer of zeros would, but
 * the new blocks are not written where the device can zero them (fallocate(2) of a file's
 * holes: a gigabyte asked for costs a system call on the image file, not a gigabyte written).
 */
export function writeZeros(vol: Volume, inode: Inode, off: number, len: number, pol: LocalityPolicy | null = null): WriteStats {
  // (the store's own zeros: writeAt reads them, and queues whole blocks as zeros)
  const zeros = zeroBlocks()
  const stats: WriteStats = {rewrites: 0, copied: 0, copiedShared: 0}
  for (let p = off; p < off + len;) {
    const k = Math.min(off + len - p, zeros.length)
    const s = writeAt(vol, inode, p, zeros.subarray(0, k), false, pol, true)
    stats.rewrites += s.rewrites
    stats.copied += s.copied
    stats.copiedShared += s.copiedShared
    p += k
  }
  return stats
}

function writeAt(vol: Volume, inode: Inode, off: number, data: Buffer, owned: boolean, pol: LocalityPolicy | null, zeros: boolean): WriteStats {
  const end = off + data.length
  checkSize(end)
  if (data.length === 0) return NO_STATS
  const newSize = Math.max(inode.r.size, end)
  if ((inode.r.flags & IF_INLINE || (inode.r.size === 0 && (inode.extents?.length ?? loadExtents(vol, inode).length) === 0)) && newSize <= INODE_AREA_SIZE) {
    if (!(inode.r.flags & IF_INLINE)) {
      // A map emptied in this transaction (a truncate to 0) may still hold tree node blocks,
      // freed by storeExtents at the commit: an inline inode has no map, so they go now.
      dropTree(vol, inode)
      inode.r.flags |= IF_INLINE
      inode.r.area.fill(0)
      inode.extents = new ExtentMap()
    }
    data.copy(inode.r.area, off)
    inode.r.size = newSize
    vol.idirty(inode)
    return NO_STATS
  }
  uninline(vol, inode)
  const ext = loadExtents(vol, inode)
  const first = Math.floor(off / BLOCK_SIZE)
  const last = Math.floor((end - 1) / BLOCK_SIZE)
  const w: Write = {
    vol, inode, ext, off, end, data, owned, first, last,
    // Old content of partially written edge blocks, merged into the new blocks.
    headKeep: off - first * BLOCK_SIZE,
    tailKeep: (last + 1) * BLOCK_SIZE - end,
    stats: {rewrites: 0, copied: 0, copiedShared: 0},
    zeros,
  }
  if (pol) writeLocal(w, pol)
  else {
    // Pure block copy-on-write: each run goes after the block before it if that is free,
    // else where the allocator's running hint is.
    let l = first
    let goal = l > 0 ? bmap(vol, inode, l - 1) + 1 || undefined : undefined
    while (l <= last) {
      const {p, n} = vol.allocRun(Math.min(last - l + 1, CHUNK_BLOCKS * 4), goal)
      put(w, p, l, n, false)
      l += n
      goal = p + n
    }
  }
  inode.r.size = newSize
  inode.extentsDirty = true
  vol.idirty(inode)
  return w.stats
}

/** Writes the blocks [l, l+n) of a write to physical p.. and maps them there (unless `inPlace`: they are mapped there already). */
function put(w: Write, p: number, l: number, n: number, inPlace: boolean): void {
  const {vol, inode, ext, off, end, data, first, last} = w
  const from = Math.max(0, l * BLOCK_SIZE - off)
  const to = Math.min(data.length, (l + n) * BLOCK_SIZE - off)
  const whole = n * BLOCK_SIZE
  const full = to - from === whole
  // Blocks of memory the caller gave away are queued without a copy: whole ones, and a
  // last one the data ends inside, at or past the end of the file, its rest zeroed in place.
  // Whole blocks of zeros are queued as such, with no memory.
  if (w.zeros && full) vol.store.zeroData(p, n)
  else if (w.owned && l * BLOCK_SIZE >= off && (full || (end >= inode.r.size && data.byteOffset + from + whole <= data.buffer.byteLength))) {
    vol.store.writeData(p, full ? data.subarray(from, to) : Buffer.from(data.buffer, data.byteOffset + from, whole).fill(0, to - from))
  } else {
    const buf = Buffer.alloc(whole)
    if (l === first && w.headKeep > 0) copyOld(vol, inode, first, buf, 0, 0, w.headKeep)
    if (l + n - 1 === last && w.tailKeep > 0) {
      const at = (last - l) * BLOCK_SIZE + (BLOCK_SIZE - w.tailKeep)
      copyOld(vol, inode, last, buf, at, BLOCK_SIZE - w.tailKeep, BLOCK_SIZE)
    }
    data.copy(buf, Math.max(0, off - l * BLOCK_SIZE), from, to)
    vol.store.writeData(p, buf)
  }
  if (inPlace) return
  for (const old of unmapRange(ext, l, n)) {
    vol.decRefRun(old.p, old.n)
    inode.r.blocks -= old.n
  }
  mapRange(ext, l, n, p)
  inode.r.blocks += n
}

/** The write loop under a locality policy (FORMAT.md §6.6), one region at a time. */
function writeLocal(w: Write, pol: LocalityPolicy): void {
  const {vol, ext} = w
  let l = w.first
  while (l <= w.last) {
    const r = Math.floor(l / pol.region)
    const segEnd = Math.min(w.last, r * pol.region + pol.region - 1)
    // Blocks this transaction allocated, mapped here alone: nothing committed refers to
    // them, so they are written again where they are (an append that ends inside a block,
    // then another, keeps one run).
    const k = inPlaceRun(vol, ext, l, segEnd)
    if (k > 0) {
      put(w, bmapExt(ext, l), l, k, true)
      l += k
      continue
    }
    let want = 1
    while (l + want <= segEnd && inPlaceRun(vol, ext, l + want, l + want) === 0) want++
    const run = placeLocal(w, pol, r, l, want, segEnd)
    if (run === null) {
      l = segEnd + 1 // the region was rewritten, this segment with it
      continue
    }
    put(w, run.p, l, run.n, false)
    l += run.n
  }
}

/** The physical block of logical block l in a loaded map, or 0 for a hole. */
export function bmapExt(ext: ExtentMap, l: number): number {
  const i = findExtent(ext, l)
  return i < 0 ? 0 : ext.get(i).p + (l - ext.get(i).l)
}

/** How many blocks from logical l (up to `to`) are mapped contiguously to blocks allocated in this transaction and used by nothing else. */
function inPlaceRun(vol: Volume, ext: ExtentMap, l: number, to: number): number {
  const i = findExtent(ext, l)
  if (i < 0) return 0
  const e = ext.get(i)
  const lim = Math.min(to, e.l + e.n - 1)
  let k = 0
  for (let x = l; x <= lim; x++) {
    const p = e.p + (x - e.l)
    if (!vol.allocatedNow(p) || vol.refcount(p) !== 1) break
    k++
  }
  return k
}

/**
 * Where the next run of new blocks [l, l+want) of region r goes (FORMAT.md §6.6): its
 * place in its group's run; after the block before it; a hole in its group's base window;
 * its group's window in one of the file's overflow zones (a new zone, up to MAX_ZONES, when
 * those are full); the room around a region rewritten out of its group. Else, when the
 * region would hold `threshold` runs outside those windows (one, for a group of one region)
 * and is abundant (half its blocks this file's own, the written ones included; a group of one
 * region need not be), the region is rewritten (null is returned); else anywhere.
 */
function placeLocal(w: Write, pol: LocalityPolicy, r: number, l: number, want: number, segEnd: number): {p: number, n: number} | null {
  const {vol, ext} = w
  const fileBlocks = Math.ceil(Math.max(w.inode.r.size, w.end) / BLOCK_SIZE)
  const zones = fileZones(w.inode, ext, pol, fileBlocks, vol.sb.dataStart)
  const v = regionView(ext, r, pol, fileBlocks, zones)
  const gv = v.group
  const roomy = Math.min(want, pol.group) + pol.overflow
  const nat = naturalPlace(ext, l, pol, gv)
  if (nat !== undefined && vol.allocatable(nat)) return vol.allocRun(want, nat)
  if (l > v.lo) {
    const prev = bmapExt(ext, l - 1)
    if (prev && vol.allocatable(prev + 1)) return vol.allocRun(want, prev + 1)
  }
  if (gv.home < 0) return vol.allocRun(want, undefined, false, roomy)
  const hole = vol.allocIn(gv.home, gv.home + gv.window, want)
  if (hole) return hole
  if (gv.overflow > 0) {
    for (const at of gv.ov) {
      const ov = vol.allocIn(at, at + gv.overflow, want)
      if (ov) return ov
    }
    const z = newZone(w, pol, fileBlocks)
    if (z >= 0) {
      const at = z + gv.g * pol.overflow
      if (vol.allocatable(at)) return vol.allocRun(Math.min(want, gv.overflow), at)
    }
  }
  // A region rewritten out of its group: the room left after it.
  if (v.home >= 0 && !inGroupWindows(gv, v.home, pol.region)) {
    const own = vol.allocIn(v.home - pol.regionSlack, v.home + pol.region + pol.regionSlack, want)
    if (own) return own
  }
  const threshold = gv.overflow > 0 ? pol.threshold : 1
  if (farRunsKept(v, l, segEnd, pol) + 1 >= threshold && (gv.overflow === 0 || abundant(vol, v, l, segEnd, pol)) && rewriteRegion(w, pol, v, l, segEnd)) return null
  return vol.allocRun(want, undefined, false, roomy)
}

/** Whether a region's home run [home, home+region) lies in its group's windows. */
function inGroupWindows(gv: GroupView, home: number, region: number): boolean {
  return isNear(gv, home, region)
}

/**
 * Starts another overflow zone for the file (FORMAT.md §6.6), up to MAX_ZONES: a stretch of
 * free blocks at the top of the free space, on a multiple of the group size, with a window
 * per group in group order. Returns its first block, or -1 (none left to start, or no room).
 */
function newZone(w: Write, pol: LocalityPolicy, fileBlocks: number): number {
  const {vol, inode} = w
  const zones = inode.zones!
  if (zones.length >= MAX_ZONES) return -1
  const a = pol.group
  const at = vol.freeStretchFromTop(zoneBlocks(fileBlocks, pol) + a)
  if (at < 0) return -1
  const z = vol.sb.dataStart + Math.ceil((at - vol.sb.dataStart) / a) * a
  zones.push(z)
  return z
}

/**
 * Whether enough of region v is this file's alone (the blocks of [a, b] the write is about to
 * make its own included) for a rewrite to copy the rest: copy-on-abundant-write.
 */
function abundant(vol: Volume, v: RegionView, a: number, b: number, pol: LocalityPolicy): boolean {
  let own = 0
  let mapped = 0
  for (const x of v.pieces) {
    for (let i = 0; i < x.n; i++) {
      const l = x.l + i
      mapped++
      if ((l >= a && l <= b) || vol.refcount(x.p + i) === 1) own++
    }
  }
  for (let l = a; l <= b; l++) if (!v.pieces.some((x) => l >= x.l && l < x.l + x.n)) { own++; mapped++ }
  return own >= pol.abundance * mapped
}

/**
 * Copy-on-abundant-write: rewrites region v as one run holding its mapped blocks and the
 * new data of logical blocks [a, b] (part of the write `w`), each at its offset: in its
 * group's overflow window if a run fits there, else elsewhere with slack after it. Unchanged
 * blocks are copied, and every old block loses this file's reference (a block another file
 * or fileset uses stays theirs). Holes stay holes. False, with nothing changed, when no free
 * run is long enough.
 */
function rewriteRegion(w: Write, pol: LocalityPolicy, v: RegionView, a: number, b: number): boolean {
  const lo = Math.min(v.pieces.length ? v.pieces[0].l : a, a)
  const lastPiece = v.pieces[v.pieces.length - 1]
  const hi = Math.max(lastPiece ? lastPiece.l + lastPiece.n - 1 : b, b)
  const p = regionRun(w.vol, pol, v, hi - lo + 1)
  if (p === null) return false
  relocate(w.vol, w.inode, w.ext, lo, hi, p, w.stats, {a, b, off: w.off, end: w.end, data: w.data})
  return true
}

/** A free run of n blocks for a rewritten region: in its group's overflow window, else anywhere with slack after it. */
function regionRun(vol: Volume, pol: LocalityPolicy, v: RegionView, n: number): number | null {
  for (const w of v.group.ov) {
    const at = vol.allocIn(w, w + v.group.overflow, n, n)
    if (at) return at.p
  }
  return vol.allocExact(n, undefined, pol.regionSlack)
}

/** New bytes that a relocation writes over logical blocks [a, b] (the rest of a write). */
interface Pending {
  a: number
  b: number
  off: number
  end: number
  data: Buffer
}

/**
 * Moves the mapped blocks of logical [lo, hi] into the run at p (allocated, hi - lo + 1
 * blocks), each at its offset, with `pending` bytes written over theirs; holes stay holes
 * (their blocks of the run go back). The old blocks lose this file's reference.
 */
function relocate(vol: Volume, inode: Inode, ext: ExtentMap, lo: number, hi: number, p: number, stats: WriteStats, pending?: Pending): void {
  const n = hi - lo + 1
  const buf = Buffer.alloc(n * BLOCK_SIZE)
  const mapped = new Uint8Array(n)
  // Blocks the write itself covers are written by it (block copy-on-write would too): not a copy the policy made.
  const written = (l: number) => pending !== undefined && l >= pending.a && l <= pending.b
  for (let i = ext.firstEndingAfter(lo); i < ext.length && ext.get(i).l <= hi; i++) {
    const e = ext.get(i)
    const s = Math.max(e.l, lo)
    const t = Math.min(e.l + e.n - 1, hi)
    vol.store.readData(e.p + (s - e.l), buf.subarray((s - lo) * BLOCK_SIZE, (t - lo + 1) * BLOCK_SIZE))
    for (let l = s; l <= t; l++) {
      mapped[l - lo] = 1
      if (written(l)) continue
      stats.copied++
      if (vol.refcount(e.p + (l - e.l)) > 1) stats.copiedShared++
    }
  }
  if (pending) {
    // The write's bytes for [a, b], over the old content.
    const from = Math.max(pending.off, pending.a * BLOCK_SIZE)
    const to = Math.min(pending.end, (pending.b + 1) * BLOCK_SIZE)
    pending.data.copy(buf, from - lo * BLOCK_SIZE, from - pending.off, to - pending.off)
    for (let l = pending.a; l <= pending.b; l++) mapped[l - lo] = 1
  }
  vol.store.writeData(p, buf)
  for (const old of unmapRange(ext, lo, n)) {
    vol.decRefRun(old.p, old.n)
    inode.r.blocks -= old.n
  }
  for (let i = 0; i < n;) {
    if (!mapped[i]) {
      vol.decRef(p + i) // a hole stays a hole: its block of the new run goes back
      i++
      continue
    }
    let j = i
    while (j < n && mapped[j]) j++
    mapRange(ext, lo + i, j - i, p + i)
    inode.r.blocks += j - i
    i = j
  }
  stats.rewrites++
  inode.extentsDirty = true
  vol.idirty(inode)
}

/**
 * `prism defrag` for one file (FORMAT.md §6.6): a group whose blocks no other file uses and
 * that is not one run is rewritten as one run, after the group before it when there is room
 * (as e4defrag would); in a group that shares blocks, only the regions the policy itself
 * would rewrite are: threshold far runs or more, and abundant (mostly this file's own
 * blocks), so no sharing the policy keeps is broken. Commits between groups when
 * the transaction grows large. Returns what it moved.
 */
export function defragInode(vol: Volume, inode: Inode, pol: LocalityPolicy): WriteStats {
  const stats: WriteStats = {rewrites: 0, copied: 0, copiedShared: 0}
  if (!inode.isReg || inode.r.flags & IF_INLINE) return stats
  const ext = loadExtents(vol, inode)
  const fileBlocks = Math.ceil(inode.r.size / BLOCK_SIZE)
  const groups = Math.ceil(fileBlocks / pol.group)
  const zones = fileZones(inode, ext, pol, fileBlocks, vol.sb.dataStart)
  for (let g = 0; g < groups; g++) {
    const gv = groupView(ext, g, pol, fileBlocks, zones)
    if (gv.pieces.length === 0) continue
    let unshared = true
    let jumps = 0
    for (let k = 0; k < gv.pieces.length; k++) {
      const x = gv.pieces[k]
      for (let i = 0; i < x.n && unshared; i++) if (vol.refcount(x.p + i) !== 1) unshared = false
      // (a piece as far from the one before on disk as in the file is in place: the holes of
      // a sparse file keep their blocks free, as relocate leaves them, and are not jumps)
      if (k > 0 && x.p - gv.pieces[k - 1].p !== x.l - gv.pieces[k - 1].l) jumps++
    }
    if (unshared) {
      if (jumps === 0) continue
      const lo = gv.pieces[0].l
      const last = gv.pieces[gv.pieces.length - 1]
      const hi = last.l + last.n - 1
      const prev = g > 0 ? groupView(ext, g - 1, pol, fileBlocks).home : -1
      const p = vol.allocExact(hi - lo + 1, prev >= 0 ? prev + pol.group + (lo - gv.lo) : undefined, 0)
      if (p !== null) relocate(vol, inode, ext, lo, hi, p, stats)
    } else {
      const regions = Math.ceil(Math.min(pol.group, fileBlocks - gv.lo) / pol.region)
      for (let k = 0; k < regions; k++) {
        const v = regionView(ext, gv.lo / pol.region + k, pol, fileBlocks, zones)
        if (v.farRuns === 0 || v.farRuns < (v.group.overflow > 0 ? pol.threshold : 1)) continue
        if (v.group.overflow > 0 && !abundant(vol, v, 1, 0, pol)) continue // mostly shared: kept, as a write would keep it
        const first = v.pieces[0].l
        const last = v.pieces[v.pieces.length - 1]
        const hi = last.l + last.n - 1
        const p = regionRun(vol, pol, v, hi - first + 1)
        if (p !== null) relocate(vol, inode, ext, first, hi, p, stats)
      }
    }
    vol.maybeCommit()
  }
  return stats
}

function copyOld(vol: Volume, inode: Inode, l: number, dst: Buffer, dstOff: number, from: number, to: number): void {
  const p = bmap(vol, inode, l)
  if (p === 0) return // hole: zeros
  const blk = Buffer.allocUnsafe(BLOCK_SIZE)
  vol.store.readData(p, blk)
  blk.copy(dst, dstOff, from, to)
}

/**
 * Sets the file size: shrinking releases whole blocks past the end, growing leaves a hole.
 * With a locality policy, the last block that must be copied (to zero its tail) is placed,
 * or rewritten where it is, as a write would (FORMAT.md §6.6).
 */
export function truncateData(vol: Volume, inode: Inode, size: number, pol: LocalityPolicy | null = null): void {
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
    if (tail !== 0 && pol && bmap(vol, inode, keepBlocks - 1) !== 0) {
      writeData(vol, inode, size, Buffer.alloc(BLOCK_SIZE - tail), false, pol)
    } else if (tail !== 0 && bmap(vol, inode, keepBlocks - 1) !== 0) {
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

/**
 * Hands the data blocks `src` maps over to `dst`, which keeps its own blocks below logical
 * block `from`, drops the rest and takes src's size: no block is copied or gains a reference,
 * so a large write staged out of sight is published in one short step (a server's `prism
 * write`, src/server/servedattrs.ts). `src` must map nothing below `from`; it is left empty.
 */
export function moveData(vol: Volume, src: Inode, dst: Inode, from: number): void {
  if (src.r.flags & IF_INLINE || src.isSpecial || dst.isSpecial) fail('EINVAL', 'only the blocks of regular files can move')
  const size = src.r.size
  checkSize(size)
  if (dst.r.flags & IF_INLINE) {
    // (inline data fits in the first block: `from` is 0, and all of it goes)
    if (from !== 0) uninline(vol, dst)
    else {
      dst.r.flags &= ~IF_INLINE
      dst.r.area.fill(0)
      dst.extents = new ExtentMap()
      dropTree(vol, dst)
    }
  }
  const ext = loadExtents(vol, dst)
  for (const old of unmapRange(ext, from, MAX_FILE_BLOCKS - from)) {
    vol.decRefRun(old.p, old.n)
    dst.r.blocks -= old.n
  }
  for (const e of loadExtents(vol, src)) {
    if (e.l < from) fail('EINVAL', `inode ${src.ino} maps block ${e.l}, below ${from}`)
    mapRange(ext, e.l, e.n, e.p)
    dst.r.blocks += e.n
    src.r.blocks -= e.n
  }
  // (src's tree node blocks go back as its empty map is stored)
  src.extents = new ExtentMap()
  src.r.size = 0
  src.extentsDirty = true
  vol.idirty(src)
  dst.r.size = size
  dst.extentsDirty = true
  vol.idirty(dst)
}

/**
 * Makes `dst` map, from logical block `dl`, the `n` blocks `src` maps from `sl` (a reflink of
 * a block range: the whole blocks of copy_file_range). Each block gains a reference (one whose
 * counter is full is copied, as in shareInto), a hole in `src` leaves a hole, and the blocks
 * `dst` mapped there lose theirs (after the new ones gained theirs). `dst` grows to the end of
 * the range if it ended before (the tail of its last block already reads as zeros). The
 * caller makes sure `src` and `dst` are not the same range of one file. Returns the number of
 * blocks copied.
 */
export function shareBlocks(vol: Volume, src: Inode, sl: number, dst: Inode, dl: number, n: number): number {
  if (src.r.flags & IF_INLINE || !src.isReg || !dst.isReg) fail('EINVAL', 'only the blocks of regular files can be shared')
  if (n <= 0) return 0
  const end = (dl + n) * BLOCK_SIZE
  checkSize(end)
  const pieces: Extent[] = []
  const se = loadExtents(vol, src)
  for (const e of se.from(se.firstEndingAfter(sl))) {
    if (e.l >= sl + n) break
    const a = Math.max(e.l, sl)
    const b = Math.min(e.l + e.n, sl + n)
    pieces.push({l: dl + (a - sl), n: b - a, p: e.p + (a - e.l)})
  }
  if (dst.r.flags & IF_INLINE) uninline(vol, dst)
  const ext = loadExtents(vol, dst)
  const old = unmapRange(ext, dl, n)
  // A block dst maps elsewhere (its own range copied, or one range twice): a file then maps
  // it at two places, which builds before this one misread (INCOMPAT_REPEATED_BLOCKS).
  if (!(vol.sb.incompat & INCOMPAT_REPEATED_BLOCKS) && pieces.length > 0 && mayRepeat(vol, src, dst, pieces) && mapsAnyOf(ext, pieces)) {
    vol.sb.incompat |= INCOMPAT_REPEATED_BLOCKS
    vol.markSbDirty()
  }
  let copied = 0
  for (const e of pieces) {
    mapRange(ext, e.l, e.n, e.p)
    copied += shareRun(vol, ext, e)
    dst.r.blocks += e.n
  }
  for (const o of old) {
    vol.decRefRun(o.p, o.n)
    dst.r.blocks -= o.n
  }
  if (end > dst.r.size) dst.r.size = end
  dst.extentsDirty = true
  vol.idirty(dst)
  return copied
}

/**
 * Gives each block of run `e`, which `ext` now maps, one reference more; a block whose counter
 * is full (the paper's overflow rule, §3.5) is copied to a new block, which `ext` maps instead.
 * Returns the number of blocks copied.
 */
function shareRun(vol: Volume, ext: ExtentMap, e: Extent): number {
  let copied = 0
  for (const p of vol.incRefRun(e.p, e.n)) {
    const buf = Buffer.allocUnsafe(BLOCK_SIZE)
    vol.store.readData(p, buf)
    const {p: np} = vol.allocRun(1, p)
    vol.store.writeData(np, buf)
    const l = e.l + (p - e.p)
    unmapRange(ext, l, 1)
    mapRange(ext, l, 1, np)
    copied++
  }
  return copied
}

/**
 * Whether `dst` may already map a block of `pieces` (src's, about to be shared into it): when
 * it is src, or when one of them has a reference besides src's (a count above 1). A block
 * only src uses is none of dst's: most calls (a copy_file_range between two files of one
 * fileset) are answered without looking through dst's map.
 */
function mayRepeat(vol: Volume, src: Inode, dst: Inode, pieces: Extent[]): boolean {
  if (src === dst || src.ino === dst.ino) return true
  let shared = false
  for (const x of pieces) {
    vol.forEachRefcounts(x.p, x.n, (_first, counts) => {
      for (let i = 0; i < counts.length && !shared; i++) if (counts[i] > 1) shared = true
    })
    if (shared) return true
  }
  return false
}

/**
 * Whether `ext` maps any block of `pieces` (by physical number): one pass over the map, each
 * extent looked up among the pieces sorted by physical block.
 */
function mapsAnyOf(ext: ExtentMap, pieces: Extent[]): boolean {
  const byP = pieces.slice().sort((a, b) => a.p - b.p)
  for (const e of ext) {
    // the first piece that ends after e starts
    let lo = 0
    let hi = byP.length
    while (lo < hi) {
      const m = (lo + hi) >> 1
      if (byP[m].p + byP[m].n <= e.p) lo = m + 1
      else hi = m
    }
    if (lo < byP.length && byP[lo].p < e.p + e.n) return true
  }
  return false
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
  dst.extents = new ExtentMap()
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
  const out = new ExtentMap()
  let copied = 0
  for (const e of loadExtents(vol, src)) {
    out.push({...e})
    copied += shareRun(vol, out, e)
    dst.r.blocks += e.n
  }
  dst.extents = out
  dst.extentsDirty = true
  vol.idirty(dst)
  return copied
}
