// Extent trees: how a file's logical blocks map to physical blocks. The root lives in the
// inode's 140-byte area (up to 8 entries); deeper levels live in node blocks of 255 entries.
// Leaf entries are extents, index entries point at child nodes. Pure encode/decode;
// layout in docs/FORMAT.md §6.
import {crc32} from './checksum.js'
import {BLOCK_SIZE} from './constants.js'
import {FormatError} from './errors.js'
import {readU64, writeU64} from './le64.js'

export const EXT_ROOT_MAGIC = 0xf30a
export const EXT_NODE_MAGIC = 0xe7e7
export const EXT_ROOT_MAX = 8
export const EXT_NODE_MAX = 255
const ENTRY = 16
const ROOT_HDR = 12
const NODE_HDR = 16

export interface Extent {
  /** first logical block */
  l: number
  /** number of blocks */
  n: number
  /** first physical block */
  p: number
}

export interface IndexEntry {
  l: number
  child: number
}

export interface ExtentNode {
  depth: number
  /** depth 0: extents; depth > 0: index entries */
  extents: Extent[]
  index: IndexEntry[]
}

function readEntries(buf: Buffer, off: number, count: number, depth: number, node: ExtentNode): void {
  for (let i = 0; i < count; i++) {
    const o = off + i * ENTRY
    const l = buf.readUInt32LE(o)
    if (depth === 0) node.extents.push({l, n: buf.readUInt32LE(o + 4), p: readU64(buf, o + 8)})
    else node.index.push({l, child: readU64(buf, o + 8)})
  }
}

function writeEntries(buf: Buffer, off: number, node: ExtentNode): number {
  const list = node.depth === 0 ? node.extents : node.index
  for (let i = 0; i < list.length; i++) {
    const o = off + i * ENTRY
    if (node.depth === 0) {
      const e = node.extents[i]
      buf.writeUInt32LE(e.l, o)
      buf.writeUInt32LE(e.n, o + 4)
      writeU64(buf, e.p, o + 8)
    } else {
      const x = node.index[i]
      buf.writeUInt32LE(x.l, o)
      buf.writeUInt32LE(0, o + 4)
      writeU64(buf, x.child, o + 8)
    }
  }
  return list.length
}

/** The root in an inode area. An all-zero area is an empty tree (a file with no blocks). */
export function decodeExtentRoot(area: Buffer, where: string): ExtentNode {
  const magic = area.readUInt16LE(0)
  const node: ExtentNode = {depth: 0, extents: [], index: []}
  if (magic === 0 && area.readUInt16LE(2) === 0) return node
  if (magic !== EXT_ROOT_MAGIC) throw new FormatError(where, 'magic', 'bad extent root magic')
  const count = area.readUInt16LE(2)
  node.depth = area.readUInt16LE(6)
  if (count > EXT_ROOT_MAX || node.depth > 5) throw new FormatError(where, 'value', 'extent root header out of range')
  readEntries(area, ROOT_HDR, count, node.depth, node)
  return node
}

export function encodeExtentRoot(node: ExtentNode, area: Buffer): void {
  area.fill(0)
  const count = node.depth === 0 ? node.extents.length : node.index.length
  if (count > EXT_ROOT_MAX) throw new Error('extent root overflow')
  if (count === 0 && node.depth === 0) return
  area.writeUInt16LE(EXT_ROOT_MAGIC, 0)
  area.writeUInt16LE(count, 2)
  area.writeUInt16LE(EXT_ROOT_MAX, 4)
  area.writeUInt16LE(node.depth, 6)
  writeEntries(area, ROOT_HDR, node)
}

function nodeCrc(buf: Buffer): number {
  return crc32(buf, NODE_HDR, BLOCK_SIZE, crc32(buf, 0, 12))
}

/** A node block: magic, then checksum, then owner, each checked in turn. */
export function decodeExtentNode(buf: Buffer, owner: number, where: string): ExtentNode {
  if (buf.readUInt16LE(0) !== EXT_NODE_MAGIC) throw new FormatError(where, 'magic', 'bad extent node magic')
  if (buf.readUInt32LE(12) !== nodeCrc(buf)) throw new FormatError(where, 'checksum', 'extent node checksum mismatch')
  if (buf.readUInt32LE(8) !== owner) throw new FormatError(where, 'value', `extent node belongs to inode ${buf.readUInt32LE(8)}`)
  const count = buf.readUInt16LE(2)
  const node: ExtentNode = {depth: buf.readUInt16LE(6), extents: [], index: []}
  if (count > EXT_NODE_MAX || node.depth > 5) throw new FormatError(where, 'value', 'extent node header out of range')
  readEntries(buf, NODE_HDR, count, node.depth, node)
  return node
}

export function encodeExtentNode(node: ExtentNode, owner: number, buf: Buffer): void {
  buf.fill(0)
  const count = node.depth === 0 ? node.extents.length : node.index.length
  if (count > EXT_NODE_MAX) throw new Error('extent node overflow')
  buf.writeUInt16LE(EXT_NODE_MAGIC, 0)
  buf.writeUInt16LE(count, 2)
  buf.writeUInt16LE(EXT_NODE_MAX, 4)
  buf.writeUInt16LE(node.depth, 6)
  buf.writeUInt32LE(owner, 8)
  writeEntries(buf, NODE_HDR, node)
  buf.writeUInt32LE(nodeCrc(buf), 12)
}
