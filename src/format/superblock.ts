// The superblock: geometry, counters and state of an image. Block 0 holds the primary
// copy and the image's last block a backup. Pure encode/decode; layout in docs/FORMAT.md §2.
import {crc32} from './checksum.js'
import {BLOCK_SIZE, FORMAT_VERSION, INODE_SIZE, SB_MAGIC, STATE_CLEAN} from './constants.js'
import {FormatError} from './errors.js'
import {localityCode} from './locality.js'

/** Set while some fileset is EXPANDING (FORMAT.md §8.6): a build without async cloning must not open it. */
export const INCOMPAT_EXPANDING = 0x0001
/**
 * Set while some fileset in flight has a version-2 clone-state file (exclude patterns with the
 * .gitignore rules, FORMAT.md §8.5): a build that knows only version 1 would give them another
 * meaning, or drop the file as damaged.
 */
export const INCOMPAT_EXCLUDE_RULES = 0x0002
/** The bits that describe clones in flight, set and cleared with them. */
export const INCOMPAT_CLONES = INCOMPAT_EXPANDING | INCOMPAT_EXCLUDE_RULES
/** Set once an inode has extended attributes (FORMAT.md §14): xattr_ino fields and attribute inodes. */
export const INCOMPAT_XATTR = 0x0004
/** Set once the image holds a device, FIFO or socket inode (FORMAT.md §5.5). */
export const INCOMPAT_SPECIAL = 0x0008
/**
 * Set at mkfs: the reference-count table is not written there, and a refcount block that is
 * all zeros (a hole of the sparse image) reads as 4092 free counters (FORMAT.md §4.1). An
 * older build would take such a block for a damaged one.
 */
export const INCOMPAT_SPARSE_REFCOUNT = 0x0020
/**
 * Set when the fileset table first grows past its fixed slots (FORMAT.md §8.7): the records
 * past them live in the fileset table file the superblock's fileset_ext_ino names. An older
 * build would not see those filesets (and would reap their trees as unreachable). Never
 * cleared: the table never shrinks.
 */
export const INCOMPAT_FILESET_TABLE = 0x0040
/**
 * Set when a file first maps one data block at two places (copy_file_range through a mount
 * shares a range into its own file, or the same range twice; FORMAT.md §4.2). A build before
 * it reads such a file with its pieces misplaced (its scattered read lays them end to end).
 * Never cleared.
 */
export const INCOMPAT_REPEATED_BLOCKS = 0x0080
/** Bits that mark a feature in use from its first use on (never cleared): a backup superblock written before may lack them. */
export const INCOMPAT_STICKY = INCOMPAT_XATTR | INCOMPAT_SPECIAL | INCOMPAT_REPEATED_BLOCKS
/** Incompatible features this build understands: an image with any other bit is refused. */
export const INCOMPAT_SUPPORTED = INCOMPAT_EXPANDING | INCOMPAT_EXCLUDE_RULES | INCOMPAT_XATTR | INCOMPAT_SPECIAL |
  INCOMPAT_SPARSE_REFCOUNT | INCOMPAT_FILESET_TABLE | INCOMPAT_REPEATED_BLOCKS
/**
 * Compatible feature (FORMAT.md §11.2 item 10): locality settings (§6.6) may be stored in the
 * superblock, fileset records and inodes. Informational: an older build keeps the bit but
 * zeroes the settings it re-encodes, and 0 means "inherit" / "the built-in default".
 */
export const COMPAT_LOCALITY = 0x0001
/** Read-only-compatible features this build can write (none yet): others open read-only. */
export const RO_COMPAT_SUPPORTED = 0
export const SB_CRC_OFF = 0xfc

export interface Superblock {
  version: number
  incompat: number
  compat: number
  roCompat: number
  blockCount: number
  inodeCount: number
  filesetSlots: number
  journalStart: number
  journalBlocks: number
  refcountStart: number
  refcountBlocks: number
  inodeTableStart: number
  inodeTableBlocks: number
  filesetTableStart: number
  filesetTableBlocks: number
  dataStart: number
  dataBlocks: number
  freeBlocks: number
  freeInodes: number
  state: number
  cloneClock: number
  orphanHead: number
  nextFilesetId: number
  /** generation number for the next inode allocated (never 0) */
  nextGeneration: number
  /** where the next search for a free inode starts (a hint: a stale value costs only time) */
  inodeHint: number
  /** inode of the scan-results file (§12), 0 = none */
  scanIno: number
  /** inode of the fileset table file (§8.7): the slots past filesetSlots; 0 = none */
  filesetExtIno: number
  /** the image's locality setting (§6.6): 0 = the built-in default */
  localityDefault: number
  created: number
  lastWrite: number
  uuid: Buffer
}

const O = {
  magic: 0x00, version: 0x08, incompat: 0x0c, compat: 0x10, roCompat: 0x14, blockSize: 0x18, inodeSize: 0x1c,
  blockCount: 0x20, inodeCount: 0x28, filesetSlots: 0x2c, journalStart: 0x30, journalBlocks: 0x38,
  refcountBlocks: 0x3c, refcountStart: 0x40, inodeTableStart: 0x48, inodeTableBlocks: 0x50,
  filesetTableBlocks: 0x54, filesetTableStart: 0x58, dataStart: 0x60, dataBlocks: 0x68, freeBlocks: 0x70,
  freeInodes: 0x78, state: 0x7c, cloneClock: 0x80, orphanHead: 0x84, nextFilesetId: 0x88, nextGeneration: 0x8c,
  created: 0x90, lastWrite: 0x98, uuid: 0xa0, inodeHint: 0xb0, scanIno: 0xb4, filesetExtIno: 0xb8, localityDefault: 0xbc,
} as const

const u64 = (b: Buffer, o: number) => Number(b.readBigUInt64LE(o))
const w64 = (b: Buffer, o: number, v: number) => b.writeBigUInt64LE(BigInt(v), o)

/** True when the block starts with the Prism magic (used to find images in a directory). */
export function hasSbMagic(buf: Buffer): boolean {
  return buf.length >= 8 && buf.subarray(0, 8).equals(SB_MAGIC)
}

/** Checks magic, then version, then checksum, then geometry, each with its own error. */
export function decodeSuperblock(buf: Buffer): Superblock {
  if (!hasSbMagic(buf)) throw new FormatError('superblock', 'magic', 'not a Prism image (bad magic)')
  const version = buf.readUInt32LE(O.version)
  if (version > FORMAT_VERSION) {
    throw new FormatError('superblock', 'version', `format version ${version} is newer than this prism supports (${FORMAT_VERSION})`)
  }
  if (version < 1) throw new FormatError('superblock', 'version', `bad format version ${version}`)
  if (buf.readUInt32LE(SB_CRC_OFF) !== crc32(buf, 0, SB_CRC_OFF)) {
    throw new FormatError('superblock', 'checksum', 'superblock checksum mismatch')
  }
  const sb: Superblock = {
    version,
    incompat: buf.readUInt32LE(O.incompat),
    compat: buf.readUInt32LE(O.compat),
    roCompat: buf.readUInt32LE(O.roCompat),
    blockCount: u64(buf, O.blockCount),
    inodeCount: buf.readUInt32LE(O.inodeCount),
    filesetSlots: buf.readUInt32LE(O.filesetSlots),
    journalStart: u64(buf, O.journalStart),
    journalBlocks: buf.readUInt32LE(O.journalBlocks),
    refcountStart: u64(buf, O.refcountStart),
    refcountBlocks: buf.readUInt32LE(O.refcountBlocks),
    inodeTableStart: u64(buf, O.inodeTableStart),
    inodeTableBlocks: buf.readUInt32LE(O.inodeTableBlocks),
    filesetTableStart: u64(buf, O.filesetTableStart),
    filesetTableBlocks: buf.readUInt32LE(O.filesetTableBlocks),
    dataStart: u64(buf, O.dataStart),
    dataBlocks: u64(buf, O.dataBlocks),
    freeBlocks: u64(buf, O.freeBlocks),
    freeInodes: buf.readUInt32LE(O.freeInodes),
    state: buf.readUInt32LE(O.state),
    cloneClock: buf.readUInt32LE(O.cloneClock),
    orphanHead: buf.readUInt32LE(O.orphanHead),
    nextFilesetId: buf.readUInt32LE(O.nextFilesetId),
    nextGeneration: buf.readUInt32LE(O.nextGeneration) || 1,
    created: Number(buf.readBigInt64LE(O.created)),
    lastWrite: Number(buf.readBigInt64LE(O.lastWrite)),
    uuid: Buffer.from(buf.subarray(O.uuid, O.uuid + 16)),
    inodeHint: buf.readUInt32LE(O.inodeHint),
    scanIno: buf.readUInt32LE(O.scanIno),
    filesetExtIno: buf.readUInt32LE(O.filesetExtIno),
    localityDefault: localityCode(buf.readUInt8(O.localityDefault)),
  }
  if (sb.incompat & ~INCOMPAT_SUPPORTED) {
    throw new FormatError('superblock', 'version', `image uses features this prism does not know (incompat 0x${sb.incompat.toString(16)})`)
  }
  const problem = geometryProblem(sb, buf)
  if (problem) throw new FormatError('superblock', 'value', problem)
  return sb
}

/** Returns a description of the first inconsistency in the layout, or null. */
function geometryProblem(sb: Superblock, buf: Buffer): string | null {
  if (buf.readUInt32LE(O.blockSize) !== BLOCK_SIZE) return `unsupported block size ${buf.readUInt32LE(O.blockSize)}`
  if (buf.readUInt32LE(O.inodeSize) !== INODE_SIZE) return `unsupported inode size ${buf.readUInt32LE(O.inodeSize)}`
  const regions: Array<[string, number, number]> = [
    ['journal', sb.journalStart, sb.journalBlocks],
    ['refcount table', sb.refcountStart, sb.refcountBlocks],
    ['inode table', sb.inodeTableStart, sb.inodeTableBlocks],
    ['fileset table', sb.filesetTableStart, sb.filesetTableBlocks],
  ]
  let next = 1
  for (const [name, start, len] of regions) {
    if (start !== next || len < 1) return `${name} region misplaced`
    next = start + len
  }
  if (sb.dataStart !== next) return 'data area misplaced'
  if (sb.dataBlocks < 1 || sb.dataStart + sb.dataBlocks + 1 !== sb.blockCount) return 'data area size wrong'
  // The tables are exactly as large as their counts need (planGeometry), so a count that
  // disagrees with its table is damage, not a layout: the backup is then used instead.
  const perBlock = BLOCK_SIZE / INODE_SIZE
  if (sb.inodeCount < 2 || Math.ceil((sb.inodeCount + 1) / perBlock) !== sb.inodeTableBlocks) return 'inode count wrong'
  if (sb.filesetSlots < 1 || Math.ceil(sb.filesetSlots / (BLOCK_SIZE / 256)) !== sb.filesetTableBlocks) return 'fileset slot count wrong'
  if (sb.refcountBlocks * (BLOCK_SIZE - 4) < sb.dataBlocks) return 'refcount table too small'
  if (sb.refcountBlocks > 1 && (sb.refcountBlocks - 1) * (BLOCK_SIZE - 4) >= sb.dataBlocks + 1) return 'refcount table too large'
  if (sb.filesetSlots > sb.filesetTableBlocks * (BLOCK_SIZE / 256) || sb.filesetSlots < 1) return 'fileset slots wrong'
  if (sb.journalBlocks < 32) return 'journal too small'
  if (sb.filesetExtIno !== 0 && (sb.filesetExtIno > sb.inodeCount || !(sb.incompat & INCOMPAT_FILESET_TABLE))) return 'fileset table file invalid'
  return null
}

export function encodeSuperblock(sb: Superblock, buf: Buffer = Buffer.alloc(BLOCK_SIZE)): Buffer {
  buf.fill(0)
  SB_MAGIC.copy(buf, O.magic)
  buf.writeUInt32LE(sb.version, O.version)
  buf.writeUInt32LE(sb.incompat, O.incompat)
  buf.writeUInt32LE(sb.compat, O.compat)
  buf.writeUInt32LE(sb.roCompat, O.roCompat)
  buf.writeUInt32LE(BLOCK_SIZE, O.blockSize)
  buf.writeUInt32LE(INODE_SIZE, O.inodeSize)
  w64(buf, O.blockCount, sb.blockCount)
  buf.writeUInt32LE(sb.inodeCount, O.inodeCount)
  buf.writeUInt32LE(sb.filesetSlots, O.filesetSlots)
  w64(buf, O.journalStart, sb.journalStart)
  buf.writeUInt32LE(sb.journalBlocks, O.journalBlocks)
  buf.writeUInt32LE(sb.refcountBlocks, O.refcountBlocks)
  w64(buf, O.refcountStart, sb.refcountStart)
  w64(buf, O.inodeTableStart, sb.inodeTableStart)
  buf.writeUInt32LE(sb.inodeTableBlocks, O.inodeTableBlocks)
  buf.writeUInt32LE(sb.filesetTableBlocks, O.filesetTableBlocks)
  w64(buf, O.filesetTableStart, sb.filesetTableStart)
  w64(buf, O.dataStart, sb.dataStart)
  w64(buf, O.dataBlocks, sb.dataBlocks)
  if (sb.freeBlocks < 0 || sb.freeBlocks > sb.dataBlocks) throw new Error(`superblock: free block count ${sb.freeBlocks} out of range`)
  w64(buf, O.freeBlocks, sb.freeBlocks)
  buf.writeUInt32LE(sb.freeInodes, O.freeInodes)
  buf.writeUInt32LE(sb.state, O.state)
  buf.writeUInt32LE(sb.cloneClock >>> 0, O.cloneClock)
  buf.writeUInt32LE(sb.orphanHead, O.orphanHead)
  buf.writeUInt32LE(sb.nextFilesetId, O.nextFilesetId)
  buf.writeUInt32LE(sb.nextGeneration >>> 0, O.nextGeneration)
  buf.writeBigInt64LE(BigInt(Math.trunc(sb.created)), O.created)
  buf.writeBigInt64LE(BigInt(Math.trunc(sb.lastWrite)), O.lastWrite)
  sb.uuid.copy(buf, O.uuid, 0, 16)
  buf.writeUInt32LE(sb.inodeHint >>> 0, O.inodeHint)
  buf.writeUInt32LE((sb.scanIno ?? 0) >>> 0, O.scanIno)
  buf.writeUInt32LE((sb.filesetExtIno ?? 0) >>> 0, O.filesetExtIno)
  buf.writeUInt8(sb.localityDefault ?? 0, O.localityDefault)
  buf.writeUInt32LE(crc32(buf, 0, SB_CRC_OFF), SB_CRC_OFF)
  return buf
}

export interface GeometryOptions {
  blockCount: number
  inodeCount?: number
  journalBlocks?: number
  filesetSlots?: number
}

/** Below this, an image is refused whatever its settings (1 MiB). */
const MIN_BLOCKS = 256
/** The largest image mkfs makes: 1 PiB (block numbers stay far inside what the code can count). */
export const MAX_IMAGE_BLOCKS = 2 ** 38
/** Fileset slots mkfs gives the fixed table at most: the table grows past them as filesets are made (§8.7). */
export const MAX_FILESET_SLOTS = 65536
/** The largest journal: 1 GiB (a transaction may take half of it, held in memory until it commits). */
export const MAX_JOURNAL_BLOCKS = 262144
/** The default inode count stops here (a billion); more can be asked for. */
const DEFAULT_INODES_MAX = 2 ** 30
/** Inodes per byte of image at most: one per KiB, mke2fs's smallest inode ratio (the table is then a quarter of the image). */
const MIN_INODE_RATIO = 1024

/** Lays out a new image: superblock, journal, refcount table, inode table, fileset table, data, backup. */
export function planGeometry(opts: GeometryOptions): Superblock {
  const total = opts.blockCount
  if (!Number.isSafeInteger(total) || total < 0) throw new Error(`invalid image size (${total} blocks)`)
  if (total > MAX_IMAGE_BLOCKS) throw new Error(`image too large: at most ${(MAX_IMAGE_BLOCKS * BLOCK_SIZE) / 2 ** 50} PiB`)
  const sb = layout(opts)
  if (sb === null) {
    // One message whatever the cause, with the real minimum for these settings.
    const min = minimumBlocks(opts)
    const inodes = opts.inodeCount !== undefined && opts.inodeCount > inodeLimit(total)
      ? ` (too many inodes for this size: at most ${inodeLimit(total)}, one per KiB)` : ''
    throw new Error(`image too small: at least ${min % 256 === 0 ? `${min / 256} MiB` : `${min * 4} KiB`}${opts.journalBlocks || opts.inodeCount || (opts.filesetSlots ?? 4096) !== 4096 ? ' with these settings' : ''}${inodes}`)
  }
  return sb
}

/** The smallest image (in blocks) that planGeometry accepts with these settings. */
export function minimumBlocks(opts: Omit<GeometryOptions, 'blockCount'>): number {
  let hi = MIN_BLOCKS
  while (layout({...opts, blockCount: hi}) === null) {
    if (hi > 2 ** 40) throw new Error('these settings fit no image size')
    hi *= 2
  }
  let lo = Math.max(MIN_BLOCKS, hi / 2)
  if (layout({...opts, blockCount: lo}) !== null) return lo
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2)
    if (layout({...opts, blockCount: mid}) === null) lo = mid
    else hi = mid
  }
  return hi
}

/** The most inodes an image of `total` blocks may have: one per KiB (at least 256). */
function inodeLimit(total: number): number {
  return Math.max(256, Math.min(0xffff_fff0, Math.floor((total * BLOCK_SIZE) / MIN_INODE_RATIO)))
}

/** The layout of an image of opts.blockCount blocks, or null if it is too small for it. */
function layout(opts: GeometryOptions): Superblock | null {
  const total = opts.blockCount
  if (total < MIN_BLOCKS) return null
  // 1/128 of the image, at least 4 MiB (but no more than 1/8 of an image under 32 MiB), at most 128 MiB.
  const journalBlocks = opts.journalBlocks ?? Math.min(32768, Math.max(Math.min(1024, Math.floor(total / 8)), Math.floor(total / 128)))
  // One inode per 16 KiB, as mke2fs's default inode ratio.
  const maxInodes = Math.min(0xffff_fff0, Math.floor((total * BLOCK_SIZE) / MIN_INODE_RATIO))
  const inodeCount = opts.inodeCount ?? Math.max(256, Math.min(DEFAULT_INODES_MAX, maxInodes, Math.floor((total * BLOCK_SIZE) / 16384)))
  const filesetSlots = opts.filesetSlots ?? 4096
  if (journalBlocks < 32) throw new Error('journal must be at least 32 blocks (128 KiB)')
  if (journalBlocks > MAX_JOURNAL_BLOCKS) throw new Error(`journal too large: at most ${MAX_JOURNAL_BLOCKS / 256} MiB`)
  if (!Number.isSafeInteger(inodeCount) || inodeCount < 2) throw new Error('at least 2 inodes are needed')
  if (inodeCount > inodeLimit(total)) return null // at most one inode per KiB: too small for this many
  if (!Number.isSafeInteger(filesetSlots) || filesetSlots < 1) throw new Error('at least 1 fileset slot is needed')
  if (filesetSlots > MAX_FILESET_SLOTS) throw new Error(`at most ${MAX_FILESET_SLOTS} fileset slots at mkfs (the fileset table grows past them as filesets are created)`)
  const inodeTableBlocks = Math.ceil((inodeCount + 1) / (BLOCK_SIZE / INODE_SIZE))
  const filesetTableBlocks = Math.ceil(filesetSlots / (BLOCK_SIZE / 256))
  const journalStart = 1
  const fixed = 1 + journalBlocks + inodeTableBlocks + filesetTableBlocks + 1
  // Refcount blocks cover the data area, which is what remains after them.
  let refcountBlocks = Math.ceil((total - fixed) / (BLOCK_SIZE - 4))
  let dataBlocks = total - fixed - refcountBlocks
  while (refcountBlocks > 1 && (refcountBlocks - 1) * (BLOCK_SIZE - 4) >= dataBlocks + 1) { refcountBlocks--; dataBlocks++ }
  if (dataBlocks < 64) return null
  const refcountStart = journalStart + journalBlocks
  const inodeTableStart = refcountStart + refcountBlocks
  const filesetTableStart = inodeTableStart + inodeTableBlocks
  const dataStart = filesetTableStart + filesetTableBlocks
  return {
    // Every new image leaves its reference-count table unwritten (holes read as free).
    version: FORMAT_VERSION, incompat: INCOMPAT_SPARSE_REFCOUNT, compat: 0, roCompat: 0,
    blockCount: total, inodeCount: Math.min(inodeCount, inodeTableBlocks * (BLOCK_SIZE / INODE_SIZE) - 1),
    filesetSlots, journalStart, journalBlocks, refcountStart, refcountBlocks, inodeTableStart, inodeTableBlocks,
    filesetTableStart, filesetTableBlocks, dataStart, dataBlocks, freeBlocks: dataBlocks,
    freeInodes: 0, state: STATE_CLEAN, cloneClock: 0, orphanHead: 0, nextFilesetId: 1, nextGeneration: 1,
    created: Date.now(), lastWrite: Date.now(), uuid: Buffer.alloc(16), inodeHint: 1, scanIno: 0, filesetExtIno: 0, localityDefault: 0,
  }
}
