// The tar archive format, encode and decode: 512-byte headers (ustar, pax, GNU and v7),
// numeric fields (octal and GNU's base-256), pax extended records, GNU long names, the GNU
// sparse maps (old 'S' headers, pax 0.0, 0.1 and 1.0) and the text form of POSIX ACLs that
// GNU tar and bsdtar keep in SCHILY.acl.*. Everything is bytes: names, link targets and
// record values are never decoded as text, so a name that is not UTF-8 or a binary attribute
// value goes through unchanged. Pure: no I/O, no knowledge of the image.
//
// Why not tar-stream or node-tar: both decode names and pax values as UTF-8 text (a binary
// security.capability or a Latin-1 name is damaged), keep times as JavaScript Dates
// (milliseconds), drop pax keywords they do not know (SCHILY.xattr.*) and read no sparse
// file. A faithful copy of a system tree needs all of that, so the codec is ours and is tested
// against GNU tar and bsdtar (test/tar*.test.ts).
import {isUtf8 as nodeIsUtf8} from 'node:buffer'
import {ACL_GROUP, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ, type AclEntry} from '../format/xattr.js'

export const TAR_BLOCK = 512

/** A malformed archive: the import stops and the image is left as it was. */
export class TarFormatError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TarFormatError'
  }
}

export interface Time {
  s: number
  ns: number
}

/** The fields of one 512-byte header block, undecoded where they are names. */
export interface RawHeader {
  name: Buffer
  mode: number
  uid: number
  gid: number
  size: number
  mtime: number
  typeflag: number
  linkname: Buffer
  magic: 'ustar' | 'gnu' | 'v7'
  uname: Buffer
  gname: Buffer
  devmajor: number
  devminor: number
  /** old GNU headers: atime and ctime (0 when absent) */
  atime: number
  ctime: number
  /** old GNU sparse ('S'): the map in the header, whether extension blocks follow, the real size */
  sparse?: SparseRegion[]
  sparseExtended?: boolean
  realSize?: number
}

export interface SparseRegion {
  offset: number
  size: number
}

// ---------------------------------------------------------------- numbers

function cstr(buf: Buffer, off: number, len: number): Buffer {
  const end = buf.indexOf(0, off)
  return Buffer.from(buf.subarray(off, end < 0 || end > off + len ? off + len : end))
}

/** An octal field (leading spaces, ended by NUL or space) or a GNU base-256 one. */
export function decodeNumber(buf: Buffer, off: number, len: number, what: string): number {
  const first = buf[off]
  if (first & 0x80) {
    // Base-256: big-endian two's complement, the marker bit left out of a positive number.
    const negative = first === 0xff
    let v = BigInt(first & (negative ? 0xff : 0x7f))
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(buf[off + i])
    if (negative) v -= 1n << BigInt(8 * len)
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) throw new TarFormatError(`${what} field out of range`)
    return Number(v)
  }
  let i = off
  const end = off + len
  while (i < end && (buf[i] === 0x20 || buf[i] === 0)) {
    if (buf[i] === 0 && i === off) return 0 // an empty field
    i++
  }
  let v = 0
  let digits = 0
  for (; i < end; i++) {
    const c = buf[i]
    if (c === 0 || c === 0x20) break
    if (c < 0x30 || c > 0x37) throw new TarFormatError(`${what} field is not an octal number`)
    v = v * 8 + (c - 0x30)
    digits++
  }
  for (; i < end; i++) if (buf[i] !== 0 && buf[i] !== 0x20) throw new TarFormatError(`${what} field is not an octal number`)
  if (!Number.isSafeInteger(v)) throw new TarFormatError(`${what} field out of range`)
  return digits ? v : 0
}

/** 8 ** (len - 1): the first number an octal field of len bytes cannot hold (the sizes headers use). */
const OCTAL_LIMIT: Record<number, number> = {7: 8 ** 6, 8: 8 ** 7, 12: 8 ** 11}

/** Writes `v` as an octal field of `len` bytes (len-1 digits and a NUL); false if it does not fit (nothing written). */
export function encodeOctal(v: number, buf: Buffer, off: number, len: number): boolean {
  if (!Number.isSafeInteger(v) || v < 0 || v >= (OCTAL_LIMIT[len] ?? 8 ** (len - 1))) return false
  // Digit by digit from the right: no string, no allocation (a header has eight such fields).
  let x = v
  for (let i = off + len - 2; i >= off; i--) {
    buf[i] = 0x30 + (x % 8)
    x = Math.floor(x / 8)
  }
  buf[off + len - 1] = 0
  return true
}

/** Writes `v` in GNU's base-256 form (for numbers an octal field cannot hold). */
export function encodeBase256(v: number, buf: Buffer, off: number, len: number): void {
  let x = BigInt(v)
  if (x < 0n) x += 1n << BigInt(8 * len)
  for (let i = len - 1; i >= 0; i--) {
    buf[off + i] = Number(x & 0xffn)
    x >>= 8n
  }
  if (v >= 0) buf[off] |= 0x80
}

function checksum(buf: Buffer, off: number): {unsigned: number, signed: number} {
  let u = 0
  let s = 0
  for (let i = 0; i < TAR_BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : buf[off + i]
    u += c
    s += c > 127 ? c - 256 : c
  }
  return {unsigned: u, signed: s}
}

/** The unsigned checksum of a header being written (its checksum field counted as spaces). */
function checksumOut(buf: Buffer, off: number): number {
  let u = 0
  for (let i = off; i < off + 148; i++) u += buf[i]
  for (let i = off + 156; i < off + TAR_BLOCK; i++) u += buf[i]
  return u + 8 * 0x20
}

/** Writes the checksum field of the header at `off`: six octal digits, NUL, space (as GNU tar). */
function putChecksum(buf: Buffer, off: number): void {
  encodeOctal(checksumOut(buf, off), buf, off + 148, 7)
  buf[off + 155] = 0x20
}

/** True when the 512 bytes at `off` are all zero (an end-of-archive block). */
export function isZeroBlock(buf: Buffer, off: number): boolean {
  for (let i = 0; i < TAR_BLOCK; i += 8) if (buf.readBigUInt64LE(off + i) !== 0n) return false
  return true
}

// ---------------------------------------------------------------- headers

const USTAR = Buffer.from('ustar\u000000', 'latin1')
const GNU_MAGIC = Buffer.from('ustar  \u0000', 'latin1')

/** Decodes the header block at `off` (not a zero block); a bad checksum or field is a TarFormatError. */
export function decodeHeader(buf: Buffer, off: number): RawHeader {
  const want = decodeNumber(buf, off + 148, 8, 'checksum')
  const sum = checksum(buf, off)
  if (want !== sum.unsigned && want !== sum.signed) throw new TarFormatError('header checksum mismatch')
  const magicBytes = buf.subarray(off + 257, off + 265)
  const magic = magicBytes.subarray(0, 6).equals(USTAR.subarray(0, 6)) ? 'ustar' : magicBytes.equals(GNU_MAGIC) ? 'gnu' : 'v7'
  const typeflag = buf[off + 156]
  const h: RawHeader = {
    name: cstr(buf, off, 100),
    mode: decodeNumber(buf, off + 100, 8, 'mode'),
    uid: decodeNumber(buf, off + 108, 8, 'uid'),
    gid: decodeNumber(buf, off + 116, 8, 'gid'),
    size: decodeNumber(buf, off + 124, 12, 'size'),
    mtime: decodeNumber(buf, off + 136, 12, 'mtime'),
    typeflag,
    linkname: cstr(buf, off + 157, 100),
    magic,
    uname: magic === 'v7' ? Buffer.alloc(0) : cstr(buf, off + 265, 32),
    gname: magic === 'v7' ? Buffer.alloc(0) : cstr(buf, off + 297, 32),
    devmajor: magic === 'v7' ? 0 : decodeNumber(buf, off + 329, 8, 'devmajor'),
    devminor: magic === 'v7' ? 0 : decodeNumber(buf, off + 337, 8, 'devminor'),
    atime: 0,
    ctime: 0,
  }
  if (h.size < 0) throw new TarFormatError('negative size')
  if (magic === 'ustar' && buf[off + 345] !== 0) h.name = Buffer.concat([cstr(buf, off + 345, 155), Buffer.from('/'), h.name])
  if (magic === 'gnu') {
    h.atime = decodeNumber(buf, off + 345, 12, 'atime')
    h.ctime = decodeNumber(buf, off + 357, 12, 'ctime')
    if (typeflag === 0x53 /* S */) {
      h.sparse = decodeSparseEntries(buf, off + 386, 4)
      h.sparseExtended = buf[off + 482] !== 0
      h.realSize = decodeNumber(buf, off + 483, 12, 'realsize')
    }
  }
  return h
}

/** `count` (offset, numbytes) pairs of 24 bytes at `off`, up to the first empty one. */
export function decodeSparseEntries(buf: Buffer, off: number, count: number): SparseRegion[] {
  const out: SparseRegion[] = []
  for (let i = 0; i < count; i++) {
    const o = off + i * 24
    if (buf[o] === 0) break
    out.push({offset: decodeNumber(buf, o, 12, 'sparse offset'), size: decodeNumber(buf, o + 12, 12, 'sparse size')})
  }
  return out
}

/** The fields of a header to write. Names are bytes; the caller made them fit (or uses pax/GNU records). */
export interface HeaderFields {
  name: Buffer
  mode: number
  uid: number
  gid: number
  size: number
  mtime: number
  typeflag: number
  linkname?: Buffer
  uname?: Buffer
  gname?: Buffer
  devmajor?: number
  devminor?: number
  /** ustar/pax: the part of a long name before its last fitting '/' */
  prefix?: Buffer
}

/**
 * Encodes one header block. `gnu` writes GNU's magic and base-256 numbers where octal does
 * not fit; otherwise a number that does not fit is an error for the caller (who writes it
 * in a pax record instead and puts a clamped value here).
 */
export function encodeHeader(f: HeaderFields, format: 'ustar' | 'gnu'): Buffer {
  const b = Buffer.allocUnsafe(TAR_BLOCK)
  writeHeader(b, 0, f, format)
  return b
}

/** encodeHeader into `b` at `off`: all 512 bytes are written (zeros where no field is). */
export function writeHeader(b: Buffer, off: number, f: HeaderFields, format: 'ustar' | 'gnu'): void {
  b.fill(0, off, off + TAR_BLOCK)
  f.name.copy(b, off, 0, Math.min(100, f.name.length))
  const num = (v: number, at: number, len: number, what: string) => {
    if (encodeOctal(v, b, off + at, len)) return
    if (format === 'gnu') encodeBase256(v, b, off + at, len)
    else throw new Error(`${what} ${v} does not fit a ustar header`)
  }
  num(f.mode & 0o7777, 100, 8, 'mode')
  num(f.uid, 108, 8, 'uid')
  num(f.gid, 116, 8, 'gid')
  num(f.size, 124, 12, 'size')
  num(f.mtime, 136, 12, 'mtime')
  b[off + 156] = f.typeflag
  if (f.linkname && f.linkname.length > 0) f.linkname.copy(b, off + 157, 0, Math.min(100, f.linkname.length))
  ;(format === 'gnu' ? GNU_MAGIC : USTAR).copy(b, off + 257)
  if (f.uname && f.uname.length > 0) f.uname.copy(b, off + 265, 0, Math.min(31, f.uname.length))
  if (f.gname && f.gname.length > 0) f.gname.copy(b, off + 297, 0, Math.min(31, f.gname.length))
  num(f.devmajor ?? 0, 329, 8, 'devmajor')
  num(f.devminor ?? 0, 337, 8, 'devminor')
  if (f.prefix && f.prefix.length > 0 && format === 'ustar') f.prefix.copy(b, off + 345, 0, Math.min(155, f.prefix.length))
  // The checksum over the bytes that can be other than zero (the rest was just zeroed): for a
  // short name, a third of the block. Base-256 numbers stay inside their fields too.
  const sum = (from: number, to: number) => {
    let u = 0
    for (let i = off + from; i < off + to; i++) u += b[i]
    return u
  }
  const names = sum(0, Math.min(100, f.name.length)) + sum(157, 157 + Math.min(100, f.linkname?.length ?? 0)) +
    sum(265, 265 + Math.min(31, f.uname?.length ?? 0)) + sum(297, 297 + Math.min(31, f.gname?.length ?? 0)) +
    sum(345, format === 'ustar' ? 345 + Math.min(155, f.prefix?.length ?? 0) : 345)
  encodeOctal(names + sum(100, 148) + sum(156, 157) + sum(257, 265) + sum(329, 345) + 8 * 0x20, b, off + 148, 7)
  b[off + 155] = 0x20
}

const NO_PREFIX = Buffer.alloc(0)

/**
 * Splits a name for a ustar header: {name (≤ 100 bytes), prefix (≤ 155 bytes)}, split at a
 * '/', or null when it cannot be.
 */
export function splitUstarName(name: Buffer): {name: Buffer, prefix: Buffer} | null {
  if (name.length <= 100) return {name, prefix: NO_PREFIX}
  for (let i = Math.min(155, name.length - 1); i > 0; i--) {
    if (name[i] !== 0x2f) continue
    if (name.length - i - 1 > 100) return null
    if (name.length - i - 1 === 0) continue
    return {prefix: name.subarray(0, i), name: name.subarray(i + 1)}
  }
  return null
}

// ---------------------------------------------------------------- pax records

export interface PaxRecord {
  key: string
  value: Buffer
}

/** Parses the body of a pax extended header ('x' or 'g'): "LEN KEY=VALUE\n" records; keys as latin1 text (one char a byte), values as bytes. */
export function parsePax(body: Buffer): PaxRecord[] {
  const out: PaxRecord[] = []
  let o = 0
  while (o < body.length) {
    // GNU tar pads the body with NULs up to the block; anything after a NUL ends it.
    if (body[o] === 0) break
    let i = o
    let len = 0
    while (i < body.length && body[i] >= 0x30 && body[i] <= 0x39 && i - o < 12) len = len * 10 + body[i++] - 0x30
    if (i === o || body[i] !== 0x20 || len < 5 || o + len > body.length || body[o + len - 1] !== 0x0a) throw new TarFormatError('malformed pax extended header record')
    const eq = body.indexOf(0x3d, i + 1)
    if (eq < 0 || eq >= o + len - 1) throw new TarFormatError('pax record without a keyword=value')
    out.push({key: body.toString('latin1', i + 1, eq), value: Buffer.from(body.subarray(eq + 1, o + len - 1))})
    o += len
  }
  return out
}

/** One pax record: its length counts itself. The key is bytes as latin1 text (keys are ASCII but xattr names). */
export function paxRecord(key: string, value: Buffer | string): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value
  const k = Buffer.from(key, 'latin1')
  const len = paxRecordLength(k.length + v.length + 3) // ' ', '=', '\n'
  return Buffer.concat([Buffer.from(`${len} `, 'latin1'), k, Buffer.from('='), v, Buffer.from('\n')])
}

/** The length of a pax record whose key, value and three separators take `rest` bytes: the length counts its own digits. */
function paxRecordLength(rest: number): number {
  let len = rest + 1
  while (String(len).length + rest !== len) len = String(len).length + rest
  return len
}

/**
 * The body of a pax extended header, built record by record as paxRecord would make them but
 * without a Buffer per record: records with text values (times, numbers: ASCII) join one
 * string; a byte value (a name, an attribute's value) is kept as the caller's Buffer, not
 * copied. `bytes` is the body's length; write() puts it into a buffer at an offset.
 */
export class PaxBody {
  private parts: Array<string | Buffer> = []
  private text = ''
  /** the body's length in bytes */
  bytes = 0
  /** records added */
  count = 0

  /** Adds a record. The key is bytes as latin1 text; a text value is written as UTF-8 (as paxRecord). */
  add(key: string, value: string | Buffer): void {
    if (typeof value === 'string' && !/^[\x20-\x7e\n]*$/.test(value)) value = Buffer.from(value, 'utf8')
    const len = paxRecordLength(key.length + value.length + 3)
    this.count++
    this.bytes += len
    if (typeof value === 'string') {
      this.text += `${len} ${key}=${value}\n`
      return
    }
    this.text += `${len} ${key}=`
    this.parts.push(this.text, value)
    this.text = '\n'
  }

  /** Writes the body at `off` of `b` (which has room for it); returns the bytes written. */
  write(b: Buffer, off: number): number {
    let at = off
    for (const p of this.parts) at += typeof p === 'string' ? b.write(p, at, 'latin1') : p.copy(b, at)
    at += b.write(this.text, at, 'latin1')
    return at - off
  }
}

/** A pax time ("-12.5", "1700000000.123456789") as seconds and nanoseconds (floor). */
export function parsePaxTime(v: Buffer, what: string): Time {
  const m = /^(-?)(\d{1,19})(?:\.(\d*))?$/.exec(v.toString('latin1'))
  if (!m) throw new TarFormatError(`pax ${what} '${v.toString('latin1').slice(0, 40)}' is not a time`)
  let s = Number(m[2])
  let ns = Number(((m[3] ?? '') + '000000000').slice(0, 9))
  if (!Number.isSafeInteger(s)) throw new TarFormatError(`pax ${what} out of range`)
  if (m[1]) {
    s = -s
    if (ns > 0) { s -= 1; ns = 1_000_000_000 - ns }
  }
  return {s, ns}
}

export function formatPaxTime(t: Time): string {
  if (t.s >= 0 || t.ns === 0) return t.ns ? `${t.s}.${String(t.ns).padStart(9, '0')}` : `${t.s}`
  // A negative time with a fraction: -(|s| - 1).(1e9 - ns)
  return `-${-t.s - 1}.${String(1_000_000_000 - t.ns).padStart(9, '0')}`
}

/** A decimal pax number (size, uid, ...). */
export function parsePaxNumber(v: Buffer, what: string): number {
  const s = v.toString('latin1')
  if (!/^\d{1,16}$/.test(s) || !Number.isSafeInteger(Number(s))) throw new TarFormatError(`pax ${what} '${s.slice(0, 40)}' is not a number`)
  return Number(s)
}

// ---------------------------------------------------------------- sparse maps

/** Checks a sparse map against the file's real size and the bytes stored. */
export function checkSparseMap(map: SparseRegion[], realSize: number, stored: number): void {
  let end = 0
  let total = 0
  for (const r of map) {
    if (!Number.isSafeInteger(r.offset) || !Number.isSafeInteger(r.size) || r.offset < end || r.size < 0 || r.offset + r.size > realSize) {
      throw new TarFormatError('sparse map regions overlap, are out of order or pass the file size')
    }
    end = r.offset + r.size
    total += r.size
  }
  if (total !== stored) throw new TarFormatError(`sparse map holds ${total} bytes but the archive stores ${stored}`)
}

/** GNU.sparse.map (pax 0.1): "offset,size,offset,size,...". */
export function parseSparseMapText(v: Buffer): SparseRegion[] {
  const s = v.toString('latin1')
  if (s === '') return []
  const parts = s.split(',')
  if (parts.length % 2 !== 0 || parts.some((p) => !/^\d{1,16}$/.test(p))) throw new TarFormatError('malformed GNU.sparse.map')
  const out: SparseRegion[] = []
  for (let i = 0; i < parts.length; i += 2) out.push({offset: Number(parts[i]), size: Number(parts[i + 1])})
  return out
}

/**
 * Reads the map at the start of a sparse 1.0 entry's data as it comes, each byte once: decimal
 * numbers, one a line (the count, then offset and size of each region), padded with NULs to a
 * block. `feed` takes the data's next bytes and returns null while the map goes on, then the
 * map and the bytes it takes (whole blocks, which may run past what was fed).
 */
export class Sparse10MapReader {
  private readonly nums: number[] = []
  private want = -1
  /** the start of a line not yet ended */
  private partial = ''
  /** bytes of the map's text read so far */
  private text = 0

  feed(data: Buffer): {map: SparseRegion[], bytes: number} | null {
    let o = 0
    while (this.want < 0 || this.nums.length < this.want) {
      const nl = data.indexOf(0x0a, o)
      if (nl < 0) {
        this.partial += data.toString('latin1', o)
        this.text += data.length - o
        if (this.partial.length > 20) throw new TarFormatError('malformed sparse map')
        return null
      }
      const s = this.partial + data.toString('latin1', o, nl)
      this.partial = ''
      if (!/^\d{1,16}$/.test(s)) throw new TarFormatError('malformed sparse map')
      const n = Number(s)
      if (this.want < 0) {
        if (n > 1_000_000) throw new TarFormatError('sparse map too large')
        this.want = 1 + 2 * n
      }
      this.nums.push(n)
      this.text += nl + 1 - o
      o = nl + 1
    }
    const map: SparseRegion[] = []
    for (let i = 1; i < this.nums.length; i += 2) map.push({offset: this.nums[i], size: this.nums[i + 1]})
    return {map, bytes: Math.ceil(this.text / TAR_BLOCK) * TAR_BLOCK}
  }
}

/** The sparse 1.0 map, as GNU tar writes it at the start of the data (padded to a block). */
export function encodeSparse10Map(map: SparseRegion[]): Buffer {
  const text = [String(map.length), ...map.flatMap((r) => [String(r.offset), String(r.size)])].join('\n') + '\n'
  const out = Buffer.alloc(Math.ceil(text.length / TAR_BLOCK) * TAR_BLOCK)
  out.write(text, 0, 'latin1')
  return out
}

// ---------------------------------------------------------------- ACL text

/**
 * Parses the text of an ACL (SCHILY.acl.access or .default) as GNU tar writes it (acl_to_text:
 * one entry a line, "user:NAME:rw-", comments after '#') or bsdtar (entries separated by
 * commas, an id appended: "user:alice:r--:1000"). A qualifier that is neither a number nor
 * followed by an id is a name, resolved by `lookup` (null: unknown, and the ACL is refused).
 */
export function parseAclText(text: string, lookup: (kind: 'user' | 'group', name: string) => number | null): AclEntry[] {
  const out: AclEntry[] = []
  for (let raw of text.split(/[\n,]/)) {
    const hash = raw.indexOf('#')
    if (hash >= 0) raw = raw.slice(0, hash)
    const line = raw.replace(/[\t ]/g, '')
    if (line === '') continue
    const f = line.split(':')
    if (f.length < 3 || f.length > 4) throw new Error(`ACL entry '${line}' is not TAG:QUALIFIER:PERMS`)
    const tagText = f[0] === 'u' ? 'user' : f[0] === 'g' ? 'group' : f[0] === 'm' ? 'mask' : f[0] === 'o' ? 'other' : f[0]
    const perms = f[2]
    let perm = 0
    if (/^[0-7]$/.test(perms)) perm = Number(perms)
    else {
      if (!/^[r-]?[w-]?[x-]?$/.test(perms) || perms.length === 0) throw new Error(`ACL entry '${line}' has bad permissions`)
      if (perms.includes('r')) perm |= 4
      if (perms.includes('w')) perm |= 2
      if (perms.includes('x')) perm |= 1
    }
    const q = f[1]
    if (tagText === 'mask' || tagText === 'other') {
      if (q !== '') throw new Error(`ACL entry '${line}' has a qualifier`)
      out.push({tag: tagText === 'mask' ? ACL_MASK : ACL_OTHER, perm})
      continue
    }
    if (tagText !== 'user' && tagText !== 'group') throw new Error(`ACL entry '${line}' has an unknown tag`)
    if (q === '') {
      out.push({tag: tagText === 'user' ? ACL_USER_OBJ : ACL_GROUP_OBJ, perm})
      continue
    }
    let id: number | null = null
    if (f.length === 4 && /^\d{1,10}$/.test(f[3])) id = Number(f[3])
    else if (/^\d{1,10}$/.test(q)) id = Number(q)
    else id = lookup(tagText, q)
    if (id === null || id > 0xffff_fffe) throw new Error(`ACL names ${tagText} '${q}', which is not known`)
    out.push({tag: tagText === 'user' ? ACL_USER : ACL_GROUP, perm, id})
  }
  return out
}

/** An ACL as GNU tar's acl_to_text writes it, with numeric ids: one entry a line. */
export function formatAclText(entries: AclEntry[]): string {
  const p = (perm: number) => (perm & 4 ? 'r' : '-') + (perm & 2 ? 'w' : '-') + (perm & 1 ? 'x' : '-')
  const line = (e: AclEntry) => {
    switch (e.tag) {
      case ACL_USER_OBJ: return `user::${p(e.perm)}`
      case ACL_USER: return `user:${e.id}:${p(e.perm)}`
      case ACL_GROUP_OBJ: return `group::${p(e.perm)}`
      case ACL_GROUP: return `group:${e.id}:${p(e.perm)}`
      case ACL_MASK: return `mask::${p(e.perm)}`
      default: return `other::${p(e.perm)}`
    }
  }
  return entries.map(line).join('\n') + '\n'
}

// ---------------------------------------------------------------- xattr keywords

/** GNU tar's SCHILY.xattr name encoding: '%' and '=' are escaped (a keyword ends at '='). */
export function encodeXattrKey(name: Buffer): string {
  let s = ''
  for (const c of name) s += c === 0x25 ? '%25' : c === 0x3d ? '%3D' : String.fromCharCode(c)
  return s
}

/** The bytes of a name escaped with %XX (libarchive escapes every byte outside 0x21..0x7e, GNU only % and =). */
export function decodeXattrKey(key: string, all: boolean): Buffer {
  const b = Buffer.from(key, 'latin1')
  const out: number[] = []
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x25 && i + 2 < b.length) {
      const hex = b.toString('latin1', i + 1, i + 3)
      if (/^[0-9A-Fa-f]{2}$/.test(hex) && (all || hex === '25' || hex.toUpperCase() === '3D')) {
        out.push(parseInt(hex, 16))
        i += 2
        continue
      }
    }
    out.push(b[i])
  }
  return Buffer.from(out)
}

/** Recomputes a header block's checksum after a field was patched. */
export function sealHeader(b: Buffer): void {
  putChecksum(b, 0)
}

/** True when `b` is well-formed UTF-8 (a pax path may then be read as text). */
export function isUtf8(b: Buffer): boolean {
  return nodeIsUtf8(b)
}

/** A pax time as GNU tar writes it: the fraction without trailing zeros. */
export function gnuPaxTime(t: Time): string {
  if (t.ns === 0) return String(t.s)
  // A fraction that is not zero: nine digits, at least one of them not 0.
  const full = formatPaxTime(t)
  let end = full.length
  while (full.charCodeAt(end - 1) === 0x30) end--
  return full.slice(0, end)
}
