// Directory entries and hashed-directory blocks. A small directory keeps its entries packed
// in the inode's 140-byte area; a larger one is an extendible hash: buckets at logical
// blocks 0.., and a pointer table at logical block DIR_PTR_BASE.. of the directory file.
// Pure encode/decode; layout in docs/FORMAT.md §7.
import {checkCrc, crc32} from './checksum.js'
import {BLOCK_SIZE, DIR_PTRS_PER_BLOCK, NAME_MAX} from './constants.js'
import {FormatError} from './errors.js'

export const BUCKET_MAGIC = 0xd1b0
export const BUCKET_HDR = 16
export const BUCKET_SPACE = BLOCK_SIZE - BUCKET_HDR
/** ino u32, lastclone u32, hash u32, type u8, namelen u8, then the name */
export const DIRENT_FIXED = 14

export interface Dirent {
  ino: number
  lastclone: number
  hash: number
  type: number
  name: Buffer
}

export function direntSize(nameLen: number): number {
  return DIRENT_FIXED + nameLen
}

/** Reads packed entries from buf[off, off+used). Throws on a malformed entry. */
export function decodeEntries(buf: Buffer, off: number, used: number, count: number, where: string): Dirent[] {
  const out: Dirent[] = []
  let o = off
  const end = off + used
  for (let i = 0; i < count; i++) {
    if (o + DIRENT_FIXED > end) throw new FormatError(where, 'value', 'directory entry runs past its block')
    const len = buf.readUInt8(o + 13)
    if (len === 0 || o + DIRENT_FIXED + len > end) throw new FormatError(where, 'value', 'directory entry name length invalid')
    out.push({
      ino: buf.readUInt32LE(o),
      lastclone: buf.readUInt32LE(o + 4),
      hash: buf.readUInt32LE(o + 8),
      type: buf.readUInt8(o + 12),
      name: Buffer.from(buf.subarray(o + DIRENT_FIXED, o + DIRENT_FIXED + len)),
    })
    o += DIRENT_FIXED + len
  }
  if (o !== end) throw new FormatError(where, 'value', 'directory entry bytes do not add up')
  return out
}

/** Packs entries at buf[off..]; returns bytes used. */
export function encodeEntries(entries: Dirent[], buf: Buffer, off: number, limit: number): number {
  let o = off
  for (const e of entries) {
    if (e.name.length === 0 || e.name.length > NAME_MAX) throw new Error('directory entry name length invalid')
    if (o + DIRENT_FIXED + e.name.length > off + limit) throw new Error('directory entries overflow their space')
    buf.writeUInt32LE(e.ino, o)
    buf.writeUInt32LE(e.lastclone >>> 0, o + 4)
    buf.writeUInt32LE(e.hash >>> 0, o + 8)
    buf.writeUInt8(e.type, o + 12)
    buf.writeUInt8(e.name.length, o + 13)
    e.name.copy(buf, o + DIRENT_FIXED)
    o += DIRENT_FIXED + e.name.length
  }
  return o - off
}

export function entriesSize(entries: Dirent[]): number {
  let s = 0
  for (const e of entries) s += DIRENT_FIXED + e.name.length
  return s
}

export interface Bucket {
  localDepth: number
  /** logical block of the next overflow bucket, 0 if none */
  overflow: number
  entries: Dirent[]
}

/**
 * A bucket block's checksum: the header up to its checksum field, then the entry space.
 * `crc` computes crc32 (a caller may pass a faster one of the same function: src/sys.ts fastCrc32).
 */
export function bucketCrc(buf: Buffer, crc: (data: Uint8Array, start: number, end: number, seed: number) => number = crc32): number {
  return crc(buf, BUCKET_HDR, BLOCK_SIZE, crc(buf, 0, 12, 0))
}

export function decodeBucket(buf: Buffer, where: string): Bucket {
  if (buf.readUInt16LE(0) !== BUCKET_MAGIC) throw new FormatError(where, 'magic', 'bad directory bucket magic')
  if (buf.readUInt32LE(12) !== bucketCrc(buf)) throw new FormatError(where, 'checksum', 'directory bucket checksum mismatch')
  const count = buf.readUInt16LE(4)
  const used = buf.readUInt16LE(6)
  if (used > BUCKET_SPACE) throw new FormatError(where, 'value', 'directory bucket fill out of range')
  return {localDepth: buf.readUInt8(2), overflow: buf.readUInt32LE(8), entries: decodeEntries(buf, BUCKET_HDR, used, count, where)}
}

export function encodeBucket(b: Bucket, buf: Buffer): void {
  buf.fill(0)
  buf.writeUInt16LE(BUCKET_MAGIC, 0)
  buf.writeUInt8(b.localDepth, 2)
  buf.writeUInt16LE(b.entries.length, 4)
  const used = encodeEntries(b.entries, buf, BUCKET_HDR, BUCKET_SPACE)
  buf.writeUInt16LE(used, 6)
  buf.writeUInt32LE(b.overflow, 8)
  buf.writeUInt32LE(bucketCrc(buf), 12)
}

/** Pointer-table block: DIR_PTRS_PER_BLOCK u32 bucket numbers, CRC in the last 4 bytes. */
export function decodePtrBlock(buf: Buffer, where: string): Uint32Array {
  if (!checkCrc(buf, 0, BLOCK_SIZE - 4)) throw new FormatError(where, 'checksum', 'directory pointer block checksum mismatch')
  const out = new Uint32Array(DIR_PTRS_PER_BLOCK)
  for (let i = 0; i < DIR_PTRS_PER_BLOCK; i++) out[i] = buf.readUInt32LE(i * 4)
  return out
}

export function encodePtrBlock(ptrs: Uint32Array, buf: Buffer): void {
  buf.fill(0)
  for (let i = 0; i < ptrs.length && i < DIR_PTRS_PER_BLOCK; i++) buf.writeUInt32LE(ptrs[i], i * 4)
  buf.writeUInt32LE(crc32(buf, 0, BLOCK_SIZE - 4), BLOCK_SIZE - 4)
}

/** A name is valid when it has 1..255 bytes, no '/', no NUL, and is not '.' or '..'. */
export function nameProblem(name: Buffer): string | null {
  if (name.length === 0) return 'empty name'
  if (name.length > NAME_MAX) return `name longer than ${NAME_MAX} bytes`
  if (name.includes(0x2f)) return "name contains '/'"
  if (name.includes(0)) return 'name contains NUL'
  if ((name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)) return "name is '.' or '..'"
  return null
}
