// The scan-results file (docs/FORMAT.md §12): what `prism scan --incremental` remembers,
// per signature set, about each inode it has scanned. Pure encode/decode, no I/O.
import {crc32} from './checksum.js'
import {FormatError} from './errors.js'

export const SCAN_MAGIC = Buffer.from('PRISMSCN', 'latin1')
export const SCAN_VERSION = 1
export const SCAN_HDR = 64
export const SCAN_SET_HDR = 48
export const SCAN_ENTRY = 24
/** name_off of an entry whose content was clean */
export const SCAN_CLEAN = 0xffff_ffff
/** Sets kept: the least recently used beyond this are dropped on rewrite. */
export const SCAN_MAX_SETS = 8

export interface ScanEntry {
  ino: number
  generation: number
  dataVersion: number
  /** names of what was found, '' when clean */
  found: string
}

export interface ScanSet {
  /** 32 bytes: sha256 of the identity of the signature set, --exec command or clamd */
  key: Buffer
  lastUsed: number
  /** sorted by inode number, one entry per inode */
  entries: ScanEntry[]
}

/**
 * header (64): magic[8] version u32 set_count u32 body_bytes u64 body_crc u32 reserved[28]
 * header_crc u32 (of 0x00-0x3B). Body: sets, each key[32] last_used i64 entry_count u32
 * names_bytes u32, entries (ino u32, generation u32, data_version u64, name_off u32,
 * name_len u32), then names_bytes of UTF-8 names.
 */
export function encodeScanFile(sets: ScanSet[]): Buffer {
  const parts: Buffer[] = []
  for (const s of sets) {
    const names: Buffer[] = []
    let namesLen = 0
    const ent = Buffer.alloc(s.entries.length * SCAN_ENTRY)
    s.entries.forEach((e, i) => {
      const o = i * SCAN_ENTRY
      ent.writeUInt32LE(e.ino, o)
      ent.writeUInt32LE(e.generation >>> 0, o + 4)
      ent.writeBigUInt64LE(BigInt(e.dataVersion), o + 8)
      if (e.found === '') {
        ent.writeUInt32LE(SCAN_CLEAN, o + 16)
      } else {
        const nb = Buffer.from(e.found, 'utf8')
        ent.writeUInt32LE(namesLen, o + 16)
        ent.writeUInt32LE(nb.length, o + 20)
        names.push(nb)
        namesLen += nb.length
      }
    })
    const hdr = Buffer.alloc(SCAN_SET_HDR)
    s.key.copy(hdr, 0, 0, 32)
    hdr.writeBigInt64LE(BigInt(Math.trunc(s.lastUsed)), 32)
    hdr.writeUInt32LE(s.entries.length, 40)
    hdr.writeUInt32LE(namesLen, 44)
    parts.push(hdr, ent, ...names)
  }
  const body = Buffer.concat(parts)
  const head = Buffer.alloc(SCAN_HDR)
  SCAN_MAGIC.copy(head, 0)
  head.writeUInt32LE(SCAN_VERSION, 8)
  head.writeUInt32LE(sets.length, 12)
  head.writeBigUInt64LE(BigInt(body.length), 16)
  head.writeUInt32LE(crc32(body), 24)
  head.writeUInt32LE(crc32(head, 0, 0x3c), 0x3c)
  return Buffer.concat([head, body])
}

/** Decodes and checks a whole scan-results file; throws FormatError naming what is wrong. */
export function decodeScanFile(buf: Buffer): ScanSet[] {
  const bad = (msg: string): never => { throw new FormatError('scan results', 'value', msg) }
  if (buf.length < SCAN_HDR) bad(`file too short (${buf.length} bytes)`)
  if (!buf.subarray(0, 8).equals(SCAN_MAGIC)) bad('bad magic')
  if (buf.readUInt32LE(0x3c) !== crc32(buf, 0, 0x3c)) bad('header checksum mismatch')
  if (buf.readUInt32LE(8) !== SCAN_VERSION) bad(`unknown version ${buf.readUInt32LE(8)}`)
  const count = buf.readUInt32LE(12)
  const bodyLen = Number(buf.readBigUInt64LE(16))
  if (SCAN_HDR + bodyLen !== buf.length) bad(`body is ${buf.length - SCAN_HDR} bytes, header says ${bodyLen}`)
  if (crc32(buf, SCAN_HDR) !== buf.readUInt32LE(24)) bad('body checksum mismatch')
  const sets: ScanSet[] = []
  let o = SCAN_HDR
  for (let i = 0; i < count; i++) {
    if (o + SCAN_SET_HDR > buf.length) bad(`set ${i} runs past the end`)
    const key = Buffer.from(buf.subarray(o, o + 32))
    const lastUsed = Number(buf.readBigInt64LE(o + 32))
    const n = buf.readUInt32LE(o + 40)
    const namesLen = buf.readUInt32LE(o + 44)
    const entStart = o + SCAN_SET_HDR
    const namesStart = entStart + n * SCAN_ENTRY
    if (namesStart + namesLen > buf.length) bad(`set ${i} runs past the end`)
    const entries: ScanEntry[] = []
    let prev = 0
    for (let k = 0; k < n; k++) {
      const e = entStart + k * SCAN_ENTRY
      const ino = buf.readUInt32LE(e)
      if (ino <= prev) bad(`set ${i}: entries not in increasing inode order at inode ${ino}`)
      prev = ino
      const off = buf.readUInt32LE(e + 16)
      const len = buf.readUInt32LE(e + 20)
      let found = ''
      if (off !== SCAN_CLEAN) {
        if (len === 0 || off + len > namesLen) bad(`set ${i}: inode ${ino} names bytes outside the names area`)
        found = buf.toString('utf8', namesStart + off, namesStart + off + len)
      }
      entries.push({ino, generation: buf.readUInt32LE(e + 4), dataVersion: Number(buf.readBigUInt64LE(e + 8)), found})
    }
    sets.push({key, lastUsed, entries})
    o = namesStart + namesLen
  }
  if (o !== buf.length) bad(`${buf.length - o} bytes after the last set`)
  return sets
}
