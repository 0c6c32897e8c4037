// An inode's extended attributes, as the bytes its attribute inode holds (docs/FORMAT.md §14):
// a checksummed header, then every attribute sorted by name. Also the rules a name and a
// value must meet, and the POSIX ACL value format Linux uses (system.posix_acl_*). Pure
// encode/decode: no I/O.
import {crc32} from './checksum.js'
import {FormatError} from './errors.js'

export const XATTR_MAGIC = 0x54415850 // "PXAT"
export const XATTR_VERSION = 1
export const XATTR_HDR = 16
/** name_len u8, reserved u8, value_len u32 */
export const XATTR_ENTRY_FIXED = 6
/** Linux's XATTR_NAME_MAX: a whole name, namespace prefix included. */
export const XATTR_NAME_MAX = 255
/** Linux's XATTR_SIZE_MAX: one value. */
export const XATTR_SIZE_MAX = 65536
/** Linux's XATTR_LIST_MAX: the names of one inode, each with its NUL, as listxattr returns them. */
export const XATTR_LIST_MAX = 65536
/** The largest encoded set an inode may have: every name at its longest list and values to fill it. */
export const XATTR_SET_MAX = 1024 * 1024

/** One attribute: its full name (prefix included) and value, as bytes. */
export interface Xattr {
  name: Buffer
  value: Buffer
}

export const ACL_ACCESS = 'system.posix_acl_access'
export const ACL_DEFAULT = 'system.posix_acl_default'

/** The namespaces Linux has; a name must start with one and have more after it (but the two ACL names). */
const PREFIXES = ['user.', 'trusted.', 'security.']

/** Why `name` cannot be an attribute's name, or null. */
export function xattrNameProblem(name: Buffer): string | null {
  if (name.length === 0) return 'empty attribute name'
  if (name.length > XATTR_NAME_MAX) return `attribute name longer than ${XATTR_NAME_MAX} bytes`
  if (name.includes(0)) return 'attribute name contains a NUL byte'
  const text = name.toString('latin1')
  if (text === ACL_ACCESS || text === ACL_DEFAULT) return null
  for (const p of PREFIXES) if (text.startsWith(p)) return text.length > p.length ? null : `attribute name '${text}' has nothing after its namespace`
  return `attribute namespace of '${name.toString()}' is not supported (user., trusted., security., ${ACL_ACCESS}, ${ACL_DEFAULT})`
}

/** Sorts by name bytes, as the encoding stores them. */
export function sortXattrs(list: Xattr[]): Xattr[] {
  return list.sort((a, b) => Buffer.compare(a.name, b.name))
}

/** Bytes the set takes encoded, header included. */
export function xattrSetSize(list: Xattr[]): number {
  let n = XATTR_HDR
  for (const x of list) n += XATTR_ENTRY_FIXED + x.name.length + x.value.length
  return n
}

/** Bytes listxattr returns for these names (each with its NUL). */
export function xattrListSize(list: Xattr[]): number {
  let n = 0
  for (const x of list) n += x.name.length + 1
  return n
}

/** Encodes a set (sorted, unique names, each valid): the whole content of an attribute inode. */
export function encodeXattrs(list: Xattr[]): Buffer {
  const buf = Buffer.alloc(xattrSetSize(list))
  let o = XATTR_HDR
  let prev: Buffer | null = null
  for (const x of list) {
    const p = xattrNameProblem(x.name)
    if (p) throw new Error(p)
    if (x.value.length > XATTR_SIZE_MAX) throw new Error(`attribute value longer than ${XATTR_SIZE_MAX} bytes`)
    if (prev && Buffer.compare(prev, x.name) >= 0) throw new Error('attributes must be sorted and unique')
    buf.writeUInt8(x.name.length, o)
    buf.writeUInt32LE(x.value.length, o + 2)
    x.name.copy(buf, o + XATTR_ENTRY_FIXED)
    x.value.copy(buf, o + XATTR_ENTRY_FIXED + x.name.length)
    o += XATTR_ENTRY_FIXED + x.name.length + x.value.length
    prev = x.name
  }
  buf.writeUInt32LE(XATTR_MAGIC, 0)
  buf.writeUInt16LE(XATTR_VERSION, 4)
  buf.writeUInt16LE(list.length, 6)
  buf.writeUInt32LE(buf.length - XATTR_HDR, 8)
  buf.writeUInt32LE(crc32(buf, XATTR_HDR, buf.length, crc32(buf, 0, 12)), 12)
  return buf
}

/**
 * Decodes an attribute inode's content: magic, version, length, checksum, then each entry
 * (valid name, value within bounds, names strictly increasing), each failure its own error.
 */
export function decodeXattrs(buf: Buffer, where: string): Xattr[] {
  if (buf.length < XATTR_HDR || buf.readUInt32LE(0) !== XATTR_MAGIC) throw new FormatError(where, 'magic', 'not an attribute set (bad magic)')
  if (buf.readUInt16LE(4) !== XATTR_VERSION) throw new FormatError(where, 'version', `attribute set version ${buf.readUInt16LE(4)} is not supported`)
  const body = buf.readUInt32LE(8)
  if (XATTR_HDR + body !== buf.length) throw new FormatError(where, 'value', `attribute set length ${body} does not match its ${buf.length - XATTR_HDR} bytes`)
  if (buf.readUInt32LE(12) !== crc32(buf, XATTR_HDR, buf.length, crc32(buf, 0, 12))) throw new FormatError(where, 'checksum', 'attribute set checksum mismatch')
  const count = buf.readUInt16LE(6)
  const out: Xattr[] = []
  let o = XATTR_HDR
  for (let i = 0; i < count; i++) {
    if (o + XATTR_ENTRY_FIXED > buf.length) throw new FormatError(where, 'value', 'attribute entry runs past the set')
    const nl = buf.readUInt8(o)
    const vl = buf.readUInt32LE(o + 2)
    if (buf.readUInt8(o + 1) !== 0) throw new FormatError(where, 'value', 'attribute entry reserved byte is not zero')
    if (vl > XATTR_SIZE_MAX || o + XATTR_ENTRY_FIXED + nl + vl > buf.length) throw new FormatError(where, 'value', 'attribute value length invalid')
    const name = buf.subarray(o + XATTR_ENTRY_FIXED, o + XATTR_ENTRY_FIXED + nl)
    const p = xattrNameProblem(name)
    if (p) throw new FormatError(where, 'value', p)
    if (out.length && Buffer.compare(out[out.length - 1].name, name) >= 0) throw new FormatError(where, 'value', 'attribute names out of order or repeated')
    out.push({name: Buffer.from(name), value: Buffer.from(buf.subarray(o + XATTR_ENTRY_FIXED + nl, o + XATTR_ENTRY_FIXED + nl + vl))})
    o += XATTR_ENTRY_FIXED + nl + vl
  }
  if (o !== buf.length) throw new FormatError(where, 'value', 'attribute set has bytes after its last entry')
  return out
}

// ---------------------------------------------------------------- POSIX ACLs

/** Tags of Linux's posix_acl_xattr entries. */
export const ACL_USER_OBJ = 0x01
export const ACL_USER = 0x02
export const ACL_GROUP_OBJ = 0x04
export const ACL_GROUP = 0x08
export const ACL_MASK = 0x10
export const ACL_OTHER = 0x20
const ACL_XATTR_VERSION = 2
const ACL_UNDEFINED_ID = 0xffffffff

export interface AclEntry {
  tag: number
  perm: number
  /** uid or gid for ACL_USER / ACL_GROUP, else undefined */
  id?: number
}

/** Why `value` is not a valid system.posix_acl_* value, or null (as the kernel's posix_acl_from_xattr checks it). */
export function aclProblem(value: Buffer): string | null {
  if (value.length < 4 || (value.length - 4) % 8 !== 0) return 'ACL value has a bad length'
  if (value.readUInt32LE(0) !== ACL_XATTR_VERSION) return `ACL version ${value.readUInt32LE(0)} is not 2`
  let seen = 0
  let prevTag = 0
  let prevId = 0
  for (let o = 4; o < value.length; o += 8) {
    const tag = value.readUInt16LE(o)
    const perm = value.readUInt16LE(o + 2)
    if (perm & ~7) return 'ACL entry has permission bits other than rwx'
    if (![ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER].includes(tag)) return `ACL entry tag 0x${tag.toString(16)} is unknown`
    if (tag < prevTag) return 'ACL entries are not in order'
    const id = value.readUInt32LE(o + 4)
    if (tag === prevTag) {
      if (tag !== ACL_USER && tag !== ACL_GROUP) return 'ACL entry repeated'
      if (id <= prevId) return 'ACL entries are not in order'
    }
    prevId = id
    seen |= tag
    prevTag = tag
  }
  const named = seen & (ACL_USER | ACL_GROUP)
  if ((seen & (ACL_USER_OBJ | ACL_GROUP_OBJ | ACL_OTHER)) !== (ACL_USER_OBJ | ACL_GROUP_OBJ | ACL_OTHER)) return 'ACL lacks an owner, group or other entry'
  if (named && !(seen & ACL_MASK)) return 'ACL with named entries lacks a mask entry'
  return null
}

/**
 * The permission bits an access ACL gives a file, as the kernel's posix_acl_equiv_mode finds
 * them: the owner entry's, the mask's (the group entry's when there is no mask), the other
 * entry's, in place of `mode`'s 0o777. `equiv`: the ACL says no more than those bits (no
 * named entry, no mask), so it is not kept. `value` must be valid (aclProblem).
 */
export function aclMode(value: Buffer, mode: number): {mode: number, equiv: boolean} {
  let bits = 0
  let group = -1
  let mask = -1
  let equiv = true
  for (const e of decodeAcl(value)) {
    switch (e.tag) {
      case ACL_USER_OBJ: bits |= e.perm << 6; break
      case ACL_GROUP_OBJ: group = e.perm; break
      case ACL_MASK: mask = e.perm; equiv = false; break
      case ACL_OTHER: bits |= e.perm; break
      default: equiv = false
    }
  }
  bits |= (mask >= 0 ? mask : Math.max(group, 0)) << 3
  return {mode: (mode & ~0o777) | bits, equiv}
}

/**
 * An access ACL after chmod to `mode` (the kernel's posix_acl_chmod): the owner entry, the
 * mask (or the group entry when there is no mask) and the other entry take its bits.
 */
export function aclChmod(value: Buffer, mode: number): Buffer {
  const entries = decodeAcl(value)
  const masked = entries.some((e) => e.tag === ACL_MASK)
  for (const e of entries) {
    if (e.tag === ACL_USER_OBJ) e.perm = (mode >> 6) & 7
    else if (e.tag === ACL_MASK || (e.tag === ACL_GROUP_OBJ && !masked)) e.perm = (mode >> 3) & 7
    else if (e.tag === ACL_OTHER) e.perm = mode & 7
  }
  return encodeAcl(entries)
}

export function decodeAcl(value: Buffer): AclEntry[] {
  const out: AclEntry[] = []
  for (let o = 4; o + 8 <= value.length; o += 8) {
    const tag = value.readUInt16LE(o)
    const e: AclEntry = {tag, perm: value.readUInt16LE(o + 2)}
    if (tag === ACL_USER || tag === ACL_GROUP) e.id = value.readUInt32LE(o + 4)
    out.push(e)
  }
  return out
}

/** Encodes entries (sorted as the kernel wants them: by tag, then id). */
export function encodeAcl(entries: AclEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => a.tag - b.tag || (a.id ?? 0) - (b.id ?? 0))
  const buf = Buffer.alloc(4 + 8 * sorted.length)
  buf.writeUInt32LE(ACL_XATTR_VERSION, 0)
  sorted.forEach((e, i) => {
    buf.writeUInt16LE(e.tag, 4 + 8 * i)
    buf.writeUInt16LE(e.perm, 6 + 8 * i)
    buf.writeUInt32LE(e.tag === ACL_USER || e.tag === ACL_GROUP ? e.id! >>> 0 : ACL_UNDEFINED_ID, 8 + 8 * i)
  })
  return buf
}
