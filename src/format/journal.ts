// Journal records: the journal superblock (first journal block), descriptor blocks that
// name where each logged block belongs, and the commit record that seals a transaction.
// Pure encode/decode; layout and replay rules in docs/FORMAT.md §3.
import {crc32} from './checksum.js'
import {BLOCK_SIZE, JSB_MAGIC} from './constants.js'
import {FormatError} from './errors.js'

export const DESC_MAGIC = 0x5344_4a50 // 'PJDS'
export const COMMIT_MAGIC = 0x4d43_4a50 // 'PJCM'
export const TAG_SIZE = 12
export const DESC_HDR = 16
export const TAGS_PER_DESC = Math.floor((BLOCK_SIZE - DESC_HDR - 4) / TAG_SIZE)
const CRC_OFF = BLOCK_SIZE - 4
/**
 * The journal superblock also carries a CRC of its first 508 bytes in the last 4 bytes of
 * its first 512-byte sector, which holds every field, so that a torn rewrite (old and new
 * sectors mixed) still decodes as the old or the new copy (the superblock keeps its CRC in
 * its first sector for the same reason). Images without it decode by the whole-block CRC.
 */
export const JSB_SECTOR_CRC_OFF = 0x1fc

export interface JournalSuper {
  /** Sequence number the next replay expects at journal block 1. */
  seq: number
  blocks: number
}

export interface Tag {
  /** where the logged block belongs */
  target: number
  /** CRC-32 of the logged block's content */
  crc: number
}

export function encodeJournalSuper(j: JournalSuper, buf: Buffer = Buffer.alloc(BLOCK_SIZE)): Buffer {
  buf.fill(0)
  JSB_MAGIC.copy(buf, 0)
  buf.writeUInt32LE(1, 8)
  buf.writeUInt32LE(j.blocks, 12)
  buf.writeBigUInt64LE(BigInt(j.seq), 16)
  buf.writeUInt32LE(crc32(buf, 0, JSB_SECTOR_CRC_OFF), JSB_SECTOR_CRC_OFF)
  buf.writeUInt32LE(crc32(buf, 0, CRC_OFF), CRC_OFF)
  return buf
}

export function decodeJournalSuper(buf: Buffer): JournalSuper {
  if (!buf.subarray(0, 8).equals(JSB_MAGIC)) throw new FormatError('journal superblock', 'magic', 'bad journal magic')
  if (buf.readUInt32LE(8) !== 1) throw new FormatError('journal superblock', 'version', 'unknown journal version')
  // Either checksum will do: a power loss while the block is rewritten in place can tear it
  // at a sector boundary, and then only the first sector (all the fields) is one whole copy.
  const whole = buf.readUInt32LE(CRC_OFF) === crc32(buf, 0, CRC_OFF)
  if (!whole && buf.readUInt32LE(JSB_SECTOR_CRC_OFF) !== crc32(buf, 0, JSB_SECTOR_CRC_OFF)) {
    throw new FormatError('journal superblock', 'checksum', 'journal superblock checksum mismatch')
  }
  return {blocks: buf.readUInt32LE(12), seq: Number(buf.readBigUInt64LE(16))}
}

export function encodeDescriptor(seq: number, tags: Tag[], buf: Buffer): void {
  if (tags.length > TAGS_PER_DESC) throw new Error('too many tags for one descriptor')
  buf.fill(0)
  buf.writeUInt32LE(DESC_MAGIC, 0)
  buf.writeUInt32LE(tags.length, 4)
  buf.writeBigUInt64LE(BigInt(seq), 8)
  let o = DESC_HDR
  for (const t of tags) {
    buf.writeBigUInt64LE(BigInt(t.target), o)
    buf.writeUInt32LE(t.crc >>> 0, o + 8)
    o += TAG_SIZE
  }
  buf.writeUInt32LE(crc32(buf, 0, CRC_OFF), CRC_OFF)
}

/** Returns the tags of a valid descriptor for `seq`, or null when the block is anything else. */
export function decodeDescriptor(buf: Buffer, seq: number): Tag[] | null {
  if (buf.readUInt32LE(0) !== DESC_MAGIC) return null
  if (Number(buf.readBigUInt64LE(8)) !== seq) return null
  if (buf.readUInt32LE(CRC_OFF) !== crc32(buf, 0, CRC_OFF)) return null
  const n = buf.readUInt32LE(4)
  if (n < 1 || n > TAGS_PER_DESC) return null
  const tags: Tag[] = []
  for (let i = 0, o = DESC_HDR; i < n; i++, o += TAG_SIZE) {
    tags.push({target: Number(buf.readBigUInt64LE(o)), crc: buf.readUInt32LE(o + 8)})
  }
  return tags
}

export interface Commit {
  seq: number
  nblocks: number
  /** CRC-32 over every tag's content CRC, in order */
  txnCrc: number
  time: number
}

export function encodeCommit(c: Commit, buf: Buffer): void {
  buf.fill(0)
  buf.writeUInt32LE(COMMIT_MAGIC, 0)
  buf.writeUInt32LE(c.nblocks, 4)
  buf.writeBigUInt64LE(BigInt(c.seq), 8)
  buf.writeUInt32LE(c.txnCrc >>> 0, 16)
  buf.writeBigInt64LE(BigInt(Math.trunc(c.time)), 20)
  buf.writeUInt32LE(crc32(buf, 0, CRC_OFF), CRC_OFF)
}

export function decodeCommit(buf: Buffer, seq: number): Commit | null {
  if (buf.readUInt32LE(0) !== COMMIT_MAGIC) return null
  if (Number(buf.readBigUInt64LE(8)) !== seq) return null
  if (buf.readUInt32LE(CRC_OFF) !== crc32(buf, 0, CRC_OFF)) return null
  return {seq, nblocks: buf.readUInt32LE(4), txnCrc: buf.readUInt32LE(16), time: Number(buf.readBigInt64LE(20))}
}

/** The transaction checksum: CRC-32 of the concatenated little-endian tag CRCs. */
export function txnCrcOf(tags: Tag[]): number {
  const b = Buffer.alloc(tags.length * 4)
  tags.forEach((t, i) => b.writeUInt32LE(t.crc >>> 0, i * 4))
  return crc32(b)
}
