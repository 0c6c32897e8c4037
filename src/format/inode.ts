// The inode: 256 bytes in the inode table, INODES_PER_BLOCK to a block. Inode n lives in
// table block n / 16 at offset (n % 16) * 256; inode 0 is never used. Pure encode/decode;
// layout in docs/FORMAT.md §5.
import {crc32} from './checksum.js'
import {INODE_SIZE, IF_KNOWN, S_IFDIR, S_IFMT, S_IFREG, knownType} from './constants.js'
import {FormatError} from './errors.js'
import {localityCode} from './locality.js'
import {readI64, readU64, u64Safe, writeI64, writeU64} from './le64.js'

export const INODE_AREA_OFF = 0x70
export const INODE_AREA_SIZE = 0xfc - INODE_AREA_OFF // 140 bytes: extent root or inline data
export const INODE_CRC_OFF = 0xfc

export interface InodeRecord {
  mode: number
  flags: number
  nlink: number
  share: number
  uid: number
  gid: number
  generation: number
  size: number
  blocks: number
  atimeS: number
  mtimeS: number
  ctimeS: number
  atimeNs: number
  mtimeNs: number
  ctimeNs: number
  srcIno: number
  srcFileset: number
  nextOrphan: number
  dataVersion: number
  dirSeed: number
  dirDepth: number
  dirBuckets: number
  /**
   * Regular file or directory: its locality setting (§6.6, a code of format/locality.ts; a
   * directory passes it to what is created in it). 0 = inherit. A compat field: an older
   * build that re-encodes the inode zeroes it (§11.2 item 10).
   */
  locality: number
  /** the attribute inode holding this inode's extended attributes (FORMAT.md §14), 0 = none */
  xattrIno: number
  /** 140 bytes: an extent root (extent.ts), inline data (files, symlinks, small directories), or a special file's device number (§5.5). */
  area: Buffer
}

export function emptyInode(): InodeRecord {
  // The area is a slice of Node's shared 8 KiB pool, as decodeInode's copy is: an ArrayBuffer
  // of its own per inode costs several hundred bytes more (an import makes a million of them).
  return {
    mode: 0, flags: 0, nlink: 0, share: 0, uid: 0, gid: 0, generation: 0, size: 0, blocks: 0,
    atimeS: 0, mtimeS: 0, ctimeS: 0, atimeNs: 0, mtimeNs: 0, ctimeNs: 0, srcIno: 0, srcFileset: 0,
    nextOrphan: 0, dataVersion: 0, dirSeed: 0, dirDepth: 0, dirBuckets: 0, locality: 0, xattrIno: 0, area: Buffer.allocUnsafe(INODE_AREA_SIZE).fill(0),
  }
}

/** A slot is free when its mode is 0 (its share count is then 0 too). */
export function inodeSlotFree(buf: Buffer, off: number): boolean {
  return buf.readUInt16LE(off) === 0
}

export function inodeCrcOk(buf: Buffer, off: number): boolean {
  return buf.readUInt32LE(off + INODE_CRC_OFF) === crc32(buf, off, off + INODE_CRC_OFF)
}

/** A free slot must be all zeros; the checksum of an all-zero slot is not required. */
export function slotIsZero(buf: Buffer, off: number): boolean {
  for (let i = off; i < off + INODE_SIZE; i += 4) if (buf.readUInt32LE(i) !== 0) return false
  return true
}

/** What says whether a file's content, or a directory's entries, changed: see peekVersion. */
export interface InodeVersion {
  /** the inode's file type (mode & S_IFMT) */
  type: number
  size: number
  generation: number
  dataVersion: number
}

/**
 * Reads only the type, size, generation and data_version of the inode at
 * buf[off..off+256) into `out`, for walks over whole trees that decode nothing else.
 * Returns false, and leaves `out` alone, unless the slot is a regular file or a directory
 * whose fields fit (and, with `verify`, whose checksum holds): the caller then decodes it
 * in full, which says what is wrong.
 */
export function peekVersion(buf: Buffer, off: number, out: InodeVersion, verify: boolean): boolean {
  const type = buf.readUInt16LE(off) & S_IFMT
  if ((type !== S_IFREG && type !== S_IFDIR) || !u64Safe(buf, off + 0x18) || !u64Safe(buf, off + 0x58)) return false
  if (verify && !inodeCrcOk(buf, off)) return false
  out.type = type
  out.size = readU64(buf, off + 0x18)
  out.generation = buf.readUInt32LE(off + 0x14)
  out.dataVersion = readU64(buf, off + 0x58)
  return true
}

/**
 * Offsets of the fields a walk over a whole tree reads in place (src/fs/space.ts), after
 * checkInode: the layout of docs/FORMAT.md §5, as decodeInode reads it.
 */
export const INODE_FIELD = {mode: 0x00, flags: 0x02, nlink: 0x04, share: 0x08, size: 0x18, dirBuckets: 0x68, xattrIno: 0x6c} as const

/**
 * Checks the inode at buf[off..off+256) as decodeInode does (checksum first, then the type,
 * flags and the fields a number must hold), throwing the same FormatError; nothing is built.
 */
export function checkInode(buf: Buffer, off: number, ino: number): void {
  if (!inodeCrcOk(buf, off)) throw new FormatError(`inode ${ino}`, 'checksum', 'inode checksum mismatch')
  const mode = buf.readUInt16LE(off)
  if (!knownType(mode)) throw new FormatError(`inode ${ino}`, 'value', `bad file type 0o${(mode & S_IFMT).toString(8)}`)
  const flags = buf.readUInt16LE(off + 0x02)
  if (flags & ~IF_KNOWN) throw new FormatError(`inode ${ino}`, 'value', `unknown flags 0x${flags.toString(16)}`)
  // Sizes and counts are kept in JavaScript numbers (FORMAT.md §1.1): one past 2^53 could not be written back.
  for (let k = 0; k < 3; k++) {
    const at = k === 0 ? 0x18 : k === 1 ? 0x20 : 0x58
    if (!u64Safe(buf, off + at)) throw new FormatError(`inode ${ino}`, 'value', `field at 0x${at.toString(16)} is too large`)
  }
  // Counters near 2^32 would overflow the next increment (a link, a clone): never written, so damage.
  if (buf.readUInt32LE(off + 0x04) > 0xfffffff0 || buf.readUInt32LE(off + 0x08) > 0xfffffff0) throw new FormatError(`inode ${ino}`, 'value', 'link or share count out of range')
}

/** Decodes the inode at buf[off..off+256): checksum first, then the type. */
export function decodeInode(buf: Buffer, off: number, ino: number): InodeRecord {
  checkInode(buf, off, ino)
  return {
    mode: buf.readUInt16LE(off),
    flags: buf.readUInt16LE(off + 0x02),
    nlink: buf.readUInt32LE(off + 0x04),
    share: buf.readUInt32LE(off + 0x08),
    uid: buf.readUInt32LE(off + 0x0c),
    gid: buf.readUInt32LE(off + 0x10),
    generation: buf.readUInt32LE(off + 0x14),
    size: readU64(buf, off + 0x18),
    blocks: readU64(buf, off + 0x20),
    atimeS: readI64(buf, off + 0x28),
    mtimeS: readI64(buf, off + 0x30),
    ctimeS: readI64(buf, off + 0x38),
    atimeNs: buf.readUInt32LE(off + 0x40),
    mtimeNs: buf.readUInt32LE(off + 0x44),
    ctimeNs: buf.readUInt32LE(off + 0x48),
    srcIno: buf.readUInt32LE(off + 0x4c),
    srcFileset: buf.readUInt32LE(off + 0x50),
    nextOrphan: buf.readUInt32LE(off + 0x54),
    dataVersion: readU64(buf, off + 0x58),
    dirSeed: buf.readUInt32LE(off + 0x60),
    dirDepth: buf.readUInt8(off + 0x64),
    dirBuckets: buf.readUInt32LE(off + 0x68),
    locality: localityCode(buf.readUInt8(off + 0x65)),
    xattrIno: buf.readUInt32LE(off + 0x6c),
    area: areaCopy(buf, off),
  }
}

/** A copy of the inode's area (one buffer made, no view of the table's block in between). */
function areaCopy(buf: Buffer, off: number): Buffer {
  const area = Buffer.allocUnsafe(INODE_AREA_SIZE)
  buf.copy(area, 0, off + INODE_AREA_OFF, off + INODE_AREA_OFF + INODE_AREA_SIZE)
  return area
}

export function encodeInode(r: InodeRecord, buf: Buffer, off: number): void {
  if (r.mode === 0) {
    buf.fill(0, off, off + INODE_SIZE)
    return
  }
  if (r.area.length !== INODE_AREA_SIZE) throw new Error('inode area must be 140 bytes')
  if (r.size < 0 || !Number.isSafeInteger(r.size)) throw new Error(`inode size ${r.size} invalid`)
  buf.writeUInt16LE(r.mode, off)
  buf.writeUInt16LE(r.flags, off + 0x02)
  buf.writeUInt32LE(r.nlink, off + 0x04)
  buf.writeUInt32LE(r.share, off + 0x08)
  buf.writeUInt32LE(r.uid >>> 0, off + 0x0c)
  buf.writeUInt32LE(r.gid >>> 0, off + 0x10)
  buf.writeUInt32LE(r.generation >>> 0, off + 0x14)
  writeU64(buf, r.size, off + 0x18)
  writeU64(buf, r.blocks, off + 0x20)
  writeI64(buf, r.atimeS, off + 0x28)
  writeI64(buf, r.mtimeS, off + 0x30)
  writeI64(buf, r.ctimeS, off + 0x38)
  buf.writeUInt32LE(r.atimeNs, off + 0x40)
  buf.writeUInt32LE(r.mtimeNs, off + 0x44)
  buf.writeUInt32LE(r.ctimeNs, off + 0x48)
  buf.writeUInt32LE(r.srcIno, off + 0x4c)
  buf.writeUInt32LE(r.srcFileset, off + 0x50)
  buf.writeUInt32LE(r.nextOrphan, off + 0x54)
  writeU64(buf, r.dataVersion, off + 0x58)
  buf.writeUInt32LE(r.dirSeed >>> 0, off + 0x60)
  buf.writeUInt8(r.dirDepth, off + 0x64)
  buf.writeUInt8(r.locality, off + 0x65)
  buf.fill(0, off + 0x66, off + 0x68)
  buf.writeUInt32LE(r.dirBuckets, off + 0x68)
  buf.writeUInt32LE(r.xattrIno >>> 0, off + 0x6c)
  r.area.copy(buf, off + INODE_AREA_OFF)
  buf.writeUInt32LE(crc32(buf, off, off + INODE_CRC_OFF), off + INODE_CRC_OFF)
}

/** A special file's device number (FORMAT.md §5.5): major and minor, as Linux's 32-bit dev_t halves. */
export interface Rdev {
  major: number
  minor: number
}

export function decodeRdev(area: Buffer): Rdev {
  return {major: area.readUInt32LE(0), minor: area.readUInt32LE(4)}
}

/** A special file's area: the device number, then zeros. */
export function encodeRdev(rdev: Rdev, area: Buffer): void {
  area.fill(0)
  area.writeUInt32LE(rdev.major >>> 0, 0)
  area.writeUInt32LE(rdev.minor >>> 0, 4)
}
