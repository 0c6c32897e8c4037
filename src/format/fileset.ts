// Fileset records: the fileset table maps names to root directories, with the clone
// bookkeeping of the Prism paper (parent, clonestart, expansion progress). 256 bytes each,
// 16 to a block; slot i lives in table block i / 16. Pure encode/decode; docs/FORMAT.md §8.
import {crc32} from './checksum.js'
import {FILESET_NAME_MAX, FILESET_RECORD_SIZE, FS_DELETING, FS_FREE, MODE_LAZY} from './constants.js'
import {FormatError} from './errors.js'
import {readU64, writeU64} from './le64.js'
import {nameBytes, nameTextAt} from './name.js'

const CRC_OFF = 0xfc
const NAME_OFF = 0x30

export interface FilesetRecord {
  /** 0 = free slot */
  id: number
  rootIno: number
  parentId: number
  state: number
  mode: number
  flags: number
  created: number
  clonestart: number
  stateIno: number
  srcFileset: number
  dirsDone: number
  dirsTotal: number
  name: string
  /**
   * Copy-on-abundant-write (§6.6): blocks a region rewrite copied that stayed in use elsewhere
   * (the space the policy cost), and regions rewritten. Counters in reserved bytes: an older
   * build that re-encodes the record zeroes them (§11.2 item 10).
   */
  coawCopied: number
  coawRewrites: number
}

export function slotIsFree(buf: Buffer, off: number): boolean {
  return buf.readUInt32LE(off) === 0
}

/** The fields of the record at `off` as stored, without any check (for fsck). */
export function readFilesetRaw(buf: Buffer, off: number): FilesetRecord {
  const nameLen = Math.min(buf.readUInt8(off + 0x0e), CRC_OFF - NAME_OFF)
  return {
    id: buf.readUInt32LE(off),
    rootIno: buf.readUInt32LE(off + 0x04),
    parentId: buf.readUInt32LE(off + 0x08),
    state: buf.readUInt8(off + 0x0c),
    mode: buf.readUInt8(off + 0x0d),
    flags: buf.readUInt8(off + 0x0f),
    created: buf.readUInt32LE(off + 0x10) + buf.readInt32LE(off + 0x14) * 0x1_0000_0000, // i64 ms: exact below 2^53
    clonestart: buf.readUInt32LE(off + 0x18),
    stateIno: buf.readUInt32LE(off + 0x1c),
    srcFileset: buf.readUInt32LE(off + 0x20),
    dirsDone: buf.readUInt32LE(off + 0x24),
    dirsTotal: buf.readUInt32LE(off + 0x28),
    name: nameTextAt(buf, off + NAME_OFF, off + NAME_OFF + nameLen), // a damaged name shows its odd bytes as \xNN
    coawCopied: readU64(buf, off + 0xb0),
    coawRewrites: readU64(buf, off + 0xb8),
  }
}

export function decodeFileset(buf: Buffer, off: number, slot: number): FilesetRecord | null {
  if (buf.readUInt32LE(off) === 0) return null
  if (buf.readUInt32LE(off + CRC_OFF) !== crc32(buf, off, off + CRC_OFF)) throw new FormatError(`fileset slot ${slot}`, 'checksum', 'fileset record checksum mismatch')
  const nameLen = buf[off + 0x0e]
  const state = buf[off + 0x0c]
  const mode = buf[off + 0x0d]
  if (nameLen < 1 || nameLen > FILESET_NAME_MAX) throw new FormatError(`fileset slot ${slot}`, 'value', 'fileset name length invalid')
  if (state === FS_FREE || state > FS_DELETING || mode > MODE_LAZY) throw new FormatError(`fileset slot ${slot}`, 'value', 'fileset state invalid')
  return readFilesetRaw(buf, off)
}

export function encodeFileset(r: FilesetRecord | null, buf: Buffer, off: number): void {
  buf.fill(0, off, off + FILESET_RECORD_SIZE)
  if (!r) return
  const name = nameBytes(r.name)
  if (name.length < 1 || name.length > FILESET_NAME_MAX) throw new Error('fileset name length invalid')
  if (r.id === 0) throw new Error('fileset id 0 is reserved')
  buf.writeUInt32LE(r.id, off)
  buf.writeUInt32LE(r.rootIno, off + 0x04)
  buf.writeUInt32LE(r.parentId, off + 0x08)
  buf.writeUInt8(r.state, off + 0x0c)
  buf.writeUInt8(r.mode, off + 0x0d)
  buf.writeUInt8(name.length, off + 0x0e)
  buf.writeUInt8(r.flags, off + 0x0f)
  buf.writeBigInt64LE(BigInt(Math.trunc(r.created)), off + 0x10)
  buf.writeUInt32LE(r.clonestart >>> 0, off + 0x18)
  buf.writeUInt32LE(r.stateIno, off + 0x1c)
  buf.writeUInt32LE(r.srcFileset, off + 0x20)
  buf.writeUInt32LE(r.dirsDone, off + 0x24)
  buf.writeUInt32LE(r.dirsTotal, off + 0x28)
  name.copy(buf, off + NAME_OFF)
  writeU64(buf, r.coawCopied, off + 0xb0)
  writeU64(buf, r.coawRewrites, off + 0xb8)
  buf.writeUInt32LE(crc32(buf, off, off + CRC_OFF), off + CRC_OFF)
}

/** Fileset names: 1..128 bytes of letters, digits, '.', '_' and '-', not starting with '.' or '-'. */
export function filesetNameProblem(name: string): string | null {
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name)) {
    const first = /^[.-]/.test(name) ? `, not starting with '${name[0]}'` : ''
    return `invalid fileset name '${name}' (use letters, digits, '.', '_', '-'${first})`
  }
  if (Buffer.byteLength(name) > FILESET_NAME_MAX) return `fileset name longer than ${FILESET_NAME_MAX} bytes`
  return null
}
