// Extended attributes (docs/FORMAT.md §14). An inode's attributes live in an *attribute
// inode* named by its xattr_ino: a small set inline in that inode's area, a larger one in
// data blocks. Attribute inodes are shared copy-on-write, counted by their share count (one
// per inode that names them): a clone, an inode copy-on-write or a copy inside the image
// takes one more reference instead of copying, and an inode whose set changes while others
// hold it gets a new attribute inode that shares the old one's blocks and rewrites only those
// that differ. Identical sets written in one session (an import of a tree labelled for
// SELinux, say) share one attribute inode. Callers own the inode they change (Namespace.own).
// Everything here changes the running transaction only.
import {BLOCK_SIZE, IF_INLINE, IF_XATTR, S_IFREG} from '../format/constants.js'
import {crc32} from '../format/checksum.js'
import {FormatError} from '../format/errors.js'
import {INODE_AREA_SIZE} from '../format/inode.js'
import {INCOMPAT_XATTR} from '../format/superblock.js'
import {
  ACL_ACCESS, ACL_DEFAULT, XATTR_LIST_MAX, XATTR_SET_MAX, XATTR_SIZE_MAX, aclChmod, aclMode, aclProblem, decodeXattrs, encodeXattrs,
  sortXattrs, xattrListSize, xattrNameProblem, xattrSetSize, type Xattr,
} from '../format/xattr.js'
import {fail} from '../errors.js'
import {readData, releaseAll, shareInto, truncateData, writeData} from './extents.js'
import {touch, type Inode} from './inode.js'
import type {Volume} from './volume.js'

export type {Xattr}

/** How setXattr treats an existing name, as setxattr(2)'s flags. */
export interface SetXattrFlags {
  /** XATTR_CREATE: fail with EEXIST if the name exists */
  create?: boolean
  /** XATTR_REPLACE: fail with ENODATA if it does not */
  replace?: boolean
}

/** The largest share count an attribute inode takes before a new reference gets a copy. */
const SHARE_MAX = 0xffff_fff0

interface XattrCache {
  /** decoded sets by attribute inode, valid while its data_version is unchanged */
  sets: Map<number, {dv: number, list: Xattr[]}>
  /** attribute inodes written or read this session, by content (crc:length): identical sets share one */
  byContent: Map<string, number[]>
}

function cache(vol: Volume): XattrCache {
  if (!vol.xattrCache) vol.xattrCache = {sets: new Map(), byContent: new Map()} satisfies XattrCache
  return vol.xattrCache as XattrCache
}

function contentKey(bytes: Buffer): string {
  return `${crc32(bytes, 0, bytes.length)}:${bytes.length}`
}

/** The attribute inode an inode names, or null. A bad reference is damage (fsck repairs it). */
function attrInode(vol: Volume, owner: Inode): Inode | null {
  const ino = owner.r.xattrIno
  if (ino === 0) return null
  const a = vol.tryIget(ino)
  if (!a || !(a.r.flags & IF_XATTR) || !a.isReg) fail('EBADIMAGE', `inode ${owner.ino} names attribute inode ${ino}, which is not one; run 'prism fsck --repair'`)
  return a
}

function readSet(vol: Volume, a: Inode): Xattr[] {
  const c = cache(vol)
  const hit = c.sets.get(a.ino)
  if (hit && hit.dv === a.r.dataVersion) return hit.list
  let list: Xattr[]
  // (a damaged size must not ask for gigabytes before the content is looked at)
  if (a.r.size > XATTR_SET_MAX) fail('EBADIMAGE', `attribute inode ${a.ino}: its size (${a.r.size}) is larger than an attribute set can be; run 'prism fsck --repair'`)
  try {
    list = decodeXattrs(readData(vol, a, 0, a.r.size), `attribute inode ${a.ino}`)
  } catch (e) {
    if (e instanceof FormatError) fail('EBADIMAGE', `${e.message}; run 'prism fsck --repair'`)
    throw e
  }
  c.sets.set(a.ino, {dv: a.r.dataVersion, list})
  return list
}

/** Every attribute of an inode, sorted by name. The caller must not change the list. */
export function listXattrs(vol: Volume, owner: Inode): readonly Xattr[] {
  const a = attrInode(vol, owner)
  return a ? readSet(vol, a) : []
}

/** One attribute's value, or null. */
export function getXattr(vol: Volume, owner: Inode, name: Buffer): Buffer | null {
  return listXattrs(vol, owner).find((x) => x.name.equals(name))?.value ?? null
}

/** Checks a name and value as the kernel would before any change (EINVAL, ENAMETOOLONG, E2BIG, ENOTSUP). */
export function checkXattr(name: Buffer, value: Buffer | null): void {
  const p = xattrNameProblem(name)
  if (p) fail(p.includes('not supported') ? 'ENOTSUP' : p.includes('longer') ? 'ENAMETOOLONG' : 'EINVAL', p)
  if (value && value.length > XATTR_SIZE_MAX) fail('E2BIG', `value of ${name.toString()} is longer than ${XATTR_SIZE_MAX} bytes`)
  const text = name.toString('latin1')
  if (value && (text === ACL_ACCESS || text === ACL_DEFAULT)) {
    // (no value, or the header alone, removes the ACL, as setxattr(2) does; a value shorter
    // than the header, or of another version, is EINVAL)
    const q = value.length === 0 || (value.length === 4 && value.readUInt32LE(0) === 2) ? null : aclProblem(value)
    if (q) fail('EINVAL', `${text}: ${q}`)
  }
}

/** As Linux's xattr_permission: user.* attributes only on regular files and directories. */
function checkOwnerKind(owner: Inode, name: Buffer): void {
  if (!owner.isReg && !owner.isDir && name.toString('latin1').startsWith('user.')) {
    fail('EPERM', `${name.toString()}: user attributes are only for regular files and directories`)
  }
}

/**
 * setxattr(2): sets one attribute of `owner` (a directory may have a default ACL; other inodes
 * may not). An access ACL sets the permission bits of the mode too, and one that says no more
 * than they do is not kept, as a local filesystem's posix_acl_update_mode does.
 */
export function setXattr(vol: Volume, owner: Inode, name: Buffer, value: Buffer, flags: SetXattrFlags = {}): void {
  checkXattr(name, value)
  const text = name.toString('latin1')
  if (text === ACL_DEFAULT && !owner.isDir) fail(value.length <= 4 ? 'ENODATA' : 'EACCES', `${text}: only a directory has a default ACL`)
  checkOwnerKind(owner, name)
  const list = [...listXattrs(vol, owner)]
  const i = list.findIndex((x) => x.name.equals(name))
  if (i >= 0 && flags.create) fail('EEXIST', `attribute ${name.toString()} already exists`)
  if (i < 0 && flags.replace) fail('ENODATA', `no attribute ${name.toString()}`)
  let drop = (text === ACL_ACCESS || text === ACL_DEFAULT) && value.length <= 4
  if (text === ACL_ACCESS && !drop) {
    const m = aclMode(value, owner.r.mode)
    if (m.mode !== owner.r.mode) {
      owner.r.mode = m.mode
      vol.idirty(owner)
    }
    drop = m.equiv
  }
  // An ACL of the header alone holds no entry: it removes the ACL, as the kernel does.
  if (drop) {
    if (i >= 0) list.splice(i, 1)
  } else if (i >= 0) list[i] = {name: Buffer.from(name), value: Buffer.from(value)}
  else list.push({name: Buffer.from(name), value: Buffer.from(value)})
  storeXattrs(vol, owner, sortXattrs(list))
}

/**
 * After a chmod of `inode`: its access ACL, if it has one, takes the new permission bits
 * (posix_acl_chmod), so that the mode and the ACL the kernel enforces say the same.
 */
export function chmodAcl(vol: Volume, inode: Inode): void {
  if (inode.r.xattrIno === 0) return
  const v = getXattr(vol, inode, ACL_ACCESS_NAME)
  if (!v || v.length <= 4 || aclProblem(v)) return
  const nv = aclChmod(v, inode.r.mode)
  if (nv.equals(v)) return
  const list = listXattrs(vol, inode).map((x) => (x.name.equals(ACL_ACCESS_NAME) ? {name: x.name, value: nv} : x))
  storeXattrs(vol, inode, list)
}

const ACL_ACCESS_NAME = Buffer.from(ACL_ACCESS)

/** removexattr(2). */
export function removeXattr(vol: Volume, owner: Inode, name: Buffer): void {
  checkXattr(name, null)
  const list = [...listXattrs(vol, owner)]
  const i = list.findIndex((x) => x.name.equals(name))
  if (i < 0) fail('ENODATA', `no attribute ${name.toString()}`)
  list.splice(i, 1)
  storeXattrs(vol, owner, list)
}

/** Replaces an inode's whole set (an import or a copy brings its attributes). */
export function replaceXattrs(vol: Volume, owner: Inode, list: Xattr[]): void {
  const seen = new Set<string>()
  for (const x of list) {
    checkXattr(x.name, x.value)
    checkOwnerKind(owner, x.name)
    const k = x.name.toString('latin1')
    if (seen.has(k)) fail('EINVAL', `attribute ${x.name.toString()} given twice`)
    seen.add(k)
  }
  storeXattrs(vol, owner, sortXattrs(list.map((x) => ({name: Buffer.from(x.name), value: Buffer.from(x.value)}))))
}

/**
 * Makes `owner` name the attribute set `list` (sorted, unique, valid): its own attribute inode
 * rewritten where only it holds one, else an identical set of this session, else a new
 * attribute inode sharing the old one's blocks. The owner's ctime changes.
 */
function storeXattrs(vol: Volume, owner: Inode, list: Xattr[]): void {
  if (xattrSetSize(list) > XATTR_SET_MAX) fail('E2BIG', `the attributes of inode ${owner.ino} would take more than ${XATTR_SET_MAX} bytes`)
  if (xattrListSize(list) > XATTR_LIST_MAX) fail('E2BIG', `the attribute names of inode ${owner.ino} would take more than ${XATTR_LIST_MAX} bytes`)
  const old = attrInode(vol, owner)
  touch(owner.r, {c: true})
  vol.idirty(owner)
  if (list.length === 0) {
    if (old) dropXattrs(vol, owner)
    return
  }
  const bytes = encodeXattrs(list)
  const same = findSame(vol, bytes)
  if (same) {
    if (same === old) return
    same.r.share++
    vol.idirty(same)
    if (old) release(vol, old)
    owner.r.xattrIno = same.ino
    return
  }
  if (old && old.r.share === 1) {
    forget(vol, old)
    writeContent(vol, old, bytes)
    remember(vol, old, bytes, list)
    return
  }
  const a = vol.ialloc(S_IFREG | 0o600, owner.ino + 1)
  a.r.flags |= IF_XATTR
  a.r.nlink = 1
  a.r.dataVersion = 1
  touch(a.r, {a: true, m: true, c: true})
  if (old) {
    // Copy-on-write of a shared set: share the old blocks, rewrite only those that differ.
    shareInto(vol, old, a)
    old.r.share--
    vol.idirty(old)
  }
  writeContent(vol, a, bytes)
  remember(vol, a, bytes, list)
  owner.r.xattrIno = a.ino
  vol.sb.incompat |= INCOMPAT_XATTR
  vol.markSbDirty()
}

/** Writes an attribute inode's content: inline when it fits, else the blocks that differ. */
function writeContent(vol: Volume, a: Inode, bytes: Buffer): void {
  a.r.dataVersion++
  touch(a.r, {m: true, c: true})
  if (bytes.length <= INODE_AREA_SIZE) {
    releaseAll(vol, a)
    a.r.size = 0
    writeData(vol, a, 0, bytes)
    vol.idirty(a)
    return
  }
  const cur = a.r.flags & IF_INLINE ? null : readData(vol, a, 0, a.r.size)
  if (a.r.flags & IF_INLINE) {
    releaseAll(vol, a)
    a.r.size = 0
  }
  const blocks = Math.ceil(bytes.length / BLOCK_SIZE)
  for (let b = 0; b < blocks;) {
    // Runs of blocks whose bytes differ from what is there (or are new) are written anew.
    const differs = (k: number) => !cur || k * BLOCK_SIZE >= cur.length ||
      bytes.compare(cur, k * BLOCK_SIZE, Math.min(cur.length, (k + 1) * BLOCK_SIZE), k * BLOCK_SIZE, Math.min(bytes.length, (k + 1) * BLOCK_SIZE)) !== 0
    if (!differs(b)) { b++; continue }
    let e = b + 1
    while (e < blocks && differs(e)) e++
    const end = Math.min(bytes.length, e * BLOCK_SIZE)
    // A last block is written whole (zero-padded) so no byte of the old content stays past the end.
    const chunk = Buffer.alloc(e * BLOCK_SIZE - b * BLOCK_SIZE)
    bytes.copy(chunk, 0, b * BLOCK_SIZE, end)
    writeData(vol, a, b * BLOCK_SIZE, chunk)
    b = e
  }
  truncateData(vol, a, bytes.length)
  vol.idirty(a)
}

function remember(vol: Volume, a: Inode, bytes: Buffer, list: Xattr[]): void {
  const c = cache(vol)
  c.sets.set(a.ino, {dv: a.r.dataVersion, list})
  const k = contentKey(bytes)
  const l = c.byContent.get(k)
  if (l) { if (!l.includes(a.ino)) l.push(a.ino) } else c.byContent.set(k, [a.ino])
}

function forget(vol: Volume, a: Inode): void {
  const c = cache(vol)
  c.sets.delete(a.ino)
  for (const [k, l] of c.byContent) {
    const i = l.indexOf(a.ino)
    if (i >= 0) {
      l.splice(i, 1)
      if (l.length === 0) c.byContent.delete(k)
    }
  }
}

/** An attribute inode of this session holding exactly `bytes`, with room for one more reference. */
function findSame(vol: Volume, bytes: Buffer): Inode | null {
  for (const ino of cache(vol).byContent.get(contentKey(bytes)) ?? []) {
    const a = vol.tryIget(ino)
    if (!a || !(a.r.flags & IF_XATTR) || a.r.size !== bytes.length || a.r.share >= SHARE_MAX) continue
    if (readData(vol, a, 0, a.r.size).equals(bytes)) return a
  }
  return null
}

/** Drops one reference to an attribute inode, freeing it with the last. */
function release(vol: Volume, a: Inode): void {
  a.r.share--
  vol.idirty(a)
  if (a.r.share > 0) return
  forget(vol, a)
  releaseAll(vol, a)
  vol.ifree(a)
}

/** `owner` names no attribute set any more (it is being freed, or its last attribute went). */
export function dropXattrs(vol: Volume, owner: Inode): void {
  const a = attrInode(vol, owner)
  owner.r.xattrIno = 0
  vol.idirty(owner)
  if (a) release(vol, a)
}

/**
 * `to` names the same attributes as `from` (a clone's directory, a copy made inside the
 * image): one more reference, no copy. What `to` named before is let go.
 */
export function shareXattrs(vol: Volume, from: Inode, to: Inode): void {
  if (to === from) return
  const ino = from.r.xattrIno
  if (ino !== 0) attrInode(vol, from) // a bad reference is damage: say so now
  if (to.r.xattrIno !== 0 && to.r.xattrIno !== ino) dropXattrs(vol, to)
  to.r.xattrIno = 0
  hold(vol, to, ino)
}

/**
 * An inode record was copied into `to` with its xattr_ino (an inode copy-on-write, a clone's
 * private copy of a hard-linked file): the copy takes a reference of its own.
 */
export function holdXattrs(vol: Volume, to: Inode): void {
  const ino = to.r.xattrIno
  to.r.xattrIno = 0
  hold(vol, to, ino)
}

/** Makes `to` (naming nothing) name attribute inode `ino` (0: nothing), taking a reference. */
function hold(vol: Volume, to: Inode, ino: number): void {
  vol.idirty(to)
  if (ino === 0) return
  const a = vol.tryIget(ino)
  if (!a || !(a.r.flags & IF_XATTR)) return // never carry a bad reference into a copy (fsck reports the original)
  if (a.r.share >= SHARE_MAX) {
    // Practically unreachable (4 billion references): a copy keeps the counter in range.
    storeXattrs(vol, to, readSet(vol, a).slice())
    return
  }
  a.r.share++
  vol.idirty(a)
  to.r.xattrIno = ino
}

/** Bytes an inode's attributes take in its attribute inode's data blocks (0 when inline), for space reports. */
export function xattrBlocks(vol: Volume, owner: Inode): number {
  const a = owner.r.xattrIno ? vol.tryIget(owner.r.xattrIno) : null
  return a && a.r.flags & IF_XATTR ? a.r.blocks : 0
}
