// Directories. A small directory keeps its entries packed in the inode (IF_INLINE); once
// they outgrow 140 bytes it becomes an extendible hash (IF_HASHED): entries live in 4 KiB
// buckets chosen by the low bits of a per-directory seeded murmur3 of the name, through a
// pointer table of 2^depth bucket numbers. A lookup reads one pointer block and one bucket,
// whatever the directory's size. Buckets at the maximum depth chain to overflow buckets.
// Directory blocks are metadata: they are changed in place through the journal.
import {ExtentMap} from './extentmap.js'
import {
  BLOCK_SIZE, DIR_MAX_DEPTH, DIR_PTRS_PER_BLOCK, DIR_PTR_BASE, IF_HASHED, IF_INLINE,
} from '../format/constants.js'
import {nameHash} from '../format/checksum.js'
import {
  BUCKET_HDR, BUCKET_MAGIC, BUCKET_SPACE, DIRENT_FIXED, bucketCrc, decodeBucket, decodeEntries, decodePtrBlock, encodeBucket, encodeEntries,
  encodePtrBlock, entriesSize, type Dirent,
} from '../format/dirent.js'
import {nameText} from '../format/name.js'
import {INODE_AREA_SIZE} from '../format/inode.js'
import {FormatError} from '../format/errors.js'
import {crc32} from '../format/checksum.js'
import {fail} from '../errors.js'
import {fastCrc32} from '../sys.js'
import {bmap, bmapExt, loadExtents, mapRange} from './extents.js'
import type {Extent} from '../format/extent.js'
import type {ReadWindow} from '../journal/store.js'
import type {Inode} from './inode.js'
import type {Volume} from './volume.js'

export type {Dirent}

/** Makes `dir` an empty inline directory. */
export function dirInit(dir: Inode): void {
  dir.r.dataVersion++ // a new set of entries (§5.6)
  dir.r.flags = (dir.r.flags & ~IF_HASHED) | IF_INLINE
  dir.r.size = 0
  dir.r.area.fill(0)
  dir.r.dirSeed = (Math.random() * 0x1_0000_0000) >>> 0
  dir.r.dirDepth = 0
  dir.r.dirBuckets = 0
  dir.extents = new ExtentMap()
  dir.treeBlocks = []
}

export function dirCount(dir: Inode): number {
  return dir.r.size
}

function hashOf(dir: Inode, name: Buffer): number {
  return nameHash(name, dir.r.dirSeed)
}

function badDir(vol: Volume, dir: Inode, e: unknown): never {
  if (e instanceof FormatError) {
    // (the decoders' messages name the directory already: said once)
    const what = /^directory inode (\d+)[: ]/.exec(e.message)?.[1] === String(dir.ino) ? e.message : `directory inode ${dir.ino}: ${e.message}`
    fail('EBADIMAGE', `${what}; run 'prism fsck'`)
  }
  throw e
}

// ---------------------------------------------------------------- block access

function dirBlock(vol: Volume, dir: Inode, l: number): number {
  const p = bmap(vol, dir, l)
  if (p === 0) missingBlock(dir.ino, l)
  return p
}

function missingBlock(dirIno: number, l: number): never {
  fail('EBADIMAGE', `directory inode ${dirIno} is missing block ${l}; run 'prism fsck'`)
}

/** Whether a bucket's content matches its checksum. */
function bucketSound(buf: Buffer): boolean {
  return buf.readUInt32LE(12) === bucketCrc(buf, fastCrc32)
}

function badBucket(dirIno: number, l: number): never {
  fail('EBADIMAGE', `directory inode ${dirIno} bucket ${l} checksum mismatch; run 'prism fsck'`)
}

function sealBucket(buf: Buffer): void {
  buf.writeUInt32LE(bucketCrc(buf), 12)
}

/** A bucket's block for decoding: changes made in this transaction are sealed first. */
function bucketBlock(vol: Volume, dir: Inode, l: number): Buffer {
  const p = dirBlock(vol, dir, l)
  if (vol.isUnsealed(p)) sealBucket(vol.store.getMut(p))
  return vol.store.get(p)
}

function readBucket(vol: Volume, dir: Inode, l: number): Buffer {
  const p = dirBlock(vol, dir, l)
  const buf = vol.store.get(p)
  // (a bucket changed in this transaction is sealed at commit)
  if (!vol.isUnsealed(p) && !vol.store.verifyOnce(buf, bucketSound)) badBucket(dir.ino, l)
  return buf
}

function writeBucket(vol: Volume, dir: Inode, l: number, localDepth: number, overflow: number, entries: Dirent[]): void {
  encodeBucket({localDepth, overflow, entries}, vol.store.getMut(dirBlock(vol, dir, l)))
}

/** Allocates the block for a new logical block of the directory. */
function addDirBlock(vol: Volume, dir: Inode, l: number): Buffer {
  return mapDirBlock(vol, dir, l, allocDirBlocks(vol, dir, 1)[0])
}

/**
 * Takes `n` blocks for directory `dir` (near its last one), all or none: on ENOSPC the ones
 * already taken are given back. A change that needs blocks takes them all before it changes
 * the directory, so that a full image leaves the directory as it was: a mount's request that
 * fails is committed with the others, whatever it did before failing.
 */
function allocDirBlocks(vol: Volume, dir: Inode, n: number): number[] {
  const ext = loadExtents(vol, dir)
  const last = ext.last()
  let goal = last ? last.p + last.n : undefined
  const got: number[] = []
  try {
    for (let i = 0; i < n; i++) {
      const {p} = vol.allocRun(1, goal, true)
      got.push(p)
      goal = p + 1
    }
  } catch (e) {
    for (const p of got) vol.decRef(p)
    throw e
  }
  return got
}

/** Maps block `p` (taken by allocDirBlocks) as logical block `l` of `dir`; returns it, zeroed. */
function mapDirBlock(vol: Volume, dir: Inode, l: number, p: number): Buffer {
  mapRange(loadExtents(vol, dir), l, 1, p)
  dir.r.blocks++
  dir.extentsDirty = true
  vol.idirty(dir)
  return vol.store.fresh(p)
}

function readPtr(vol: Volume, dir: Inode, idx: number): number {
  const l = DIR_PTR_BASE + Math.floor(idx / DIR_PTRS_PER_BLOCK)
  const buf = vol.store.get(dirBlock(vol, dir, l))
  if (buf.readUInt32LE(BLOCK_SIZE - 4) !== crc32(buf, 0, BLOCK_SIZE - 4)) {
    fail('EBADIMAGE', `directory inode ${dir.ino} pointer block checksum mismatch; run 'prism fsck'`)
  }
  return buf.readUInt32LE((idx % DIR_PTRS_PER_BLOCK) * 4)
}

export function loadPtrs(vol: Volume, dir: Inode): Uint32Array {
  const n = 2 ** dir.r.dirDepth
  const out = new Uint32Array(n)
  if (dir.r.dirDepth === 0) return out
  for (let b = 0; b * DIR_PTRS_PER_BLOCK < n; b++) {
    try {
      const ptrs = decodePtrBlock(vol.store.get(dirBlock(vol, dir, DIR_PTR_BASE + b)), `directory inode ${dir.ino} pointer block ${b}`)
      out.set(ptrs.subarray(0, Math.min(DIR_PTRS_PER_BLOCK, n - b * DIR_PTRS_PER_BLOCK)), b * DIR_PTRS_PER_BLOCK)
    } catch (e) {
      badDir(vol, dir, e)
    }
  }
  return out
}

/** Writes the pointer table; a block it lacks is taken from `fresh` (allocDirBlocks) while any are left. */
function storePtrs(vol: Volume, dir: Inode, ptrs: Uint32Array, fresh: number[] = []): void {
  for (let b = 0; b * DIR_PTRS_PER_BLOCK < ptrs.length; b++) {
    const l = DIR_PTR_BASE + b
    const p = bmap(vol, dir, l)
    const buf = p !== 0 ? vol.store.getMut(p) : fresh.length > 0 ? mapDirBlock(vol, dir, l, fresh.shift()!) : addDirBlock(vol, dir, l)
    encodePtrBlock(ptrs.subarray(b * DIR_PTRS_PER_BLOCK, (b + 1) * DIR_PTRS_PER_BLOCK), buf)
  }
}

function bucketOf(vol: Volume, dir: Inode, hash: number): number {
  if (dir.r.dirDepth === 0) return 0
  return readPtr(vol, dir, hash & (2 ** dir.r.dirDepth - 1))
}

// ---------------------------------------------------------------- lookup

interface Found {
  /** logical bucket, or -1 for inline */
  bucket: number
  off: number
  entry: Dirent
}

function scan(buf: Buffer, start: number, count: number, name: Buffer, hash: number): {off: number, entry: Dirent} | null {
  let o = start
  for (let i = 0; i < count; i++) {
    // (a count past what the storage holds is damage: what is there is looked through; a
    // change to the directory then says so, dirAdd)
    if (o + DIRENT_FIXED > buf.length || o + DIRENT_FIXED + buf[o + 13] > buf.length) break
    const len = buf[o + 13]
    if (buf.readUInt32LE(o + 8) === hash && len === name.length && buf.compare(name, 0, len, o + DIRENT_FIXED, o + DIRENT_FIXED + len) === 0) {
      return {off: o, entry: {ino: buf.readUInt32LE(o), lastclone: buf.readUInt32LE(o + 4), hash, type: buf[o + 12], name: Buffer.from(name)}}
    }
    o += DIRENT_FIXED + len
  }
  return null
}

function find(vol: Volume, dir: Inode, name: Buffer): Found | null {
  const hash = hashOf(dir, name)
  if (dir.r.flags & IF_INLINE) {
    const f = scan(dir.r.area, 0, dir.r.size, name, hash)
    return f ? {bucket: -1, ...f} : null
  }
  if (!(dir.r.flags & IF_HASHED)) fail('EBADIMAGE', `directory inode ${dir.ino} has no entry format; run 'prism fsck'`)
  let l = bucketOf(vol, dir, hash)
  for (let guard = 0; guard <= dir.r.dirBuckets; guard++) {
    const buf = readBucket(vol, dir, l)
    const f = scan(buf, BUCKET_HDR, buf.readUInt16LE(4), name, hash)
    if (f) return {bucket: l, ...f}
    l = buf.readUInt32LE(8)
    if (l === 0) return null
  }
  fail('EBADIMAGE', `directory inode ${dir.ino} overflow chain loops; run 'prism fsck'`)
}

export function dirLookup(vol: Volume, dir: Inode, name: Buffer): Dirent | null {
  return find(vol, dir, name)?.entry ?? null
}

// ---------------------------------------------------------------- listing

export function dirList(vol: Volume, dir: Inode): Dirent[] {
  try {
    if (dir.r.flags & IF_INLINE) return decodeEntries(dir.r.area, 0, usedInline(dir), dir.r.size, `directory inode ${dir.ino}`)
    const out: Dirent[] = []
    for (let l = 0; l < dir.r.dirBuckets; l++) out.push(...decodeBucket(bucketBlock(vol, dir, l), `directory inode ${dir.ino} bucket ${l}`).entries)
    return out
  } catch (e) {
    badDir(vol, dir, e)
  }
}

/**
 * Calls fn for every entry without copying: `name` is a view into the directory's storage,
 * valid only during the call, and fn must not change this directory.
 */
export function dirForEach(vol: Volume, dir: Inode, fn: (ino: number, type: number, name: Buffer) => void): void {
  dirForEachRaw(vol, dir, (ino, type, buf, off, len) => fn(ino, type, buf.subarray(off, off + len)))
}

/**
 * dirForEach without making a view per name: the name is buf[off, off + len), valid only
 * during the call. For walks over whole trees that need few of the names.
 */
export function dirForEachRaw(vol: Volume, dir: Inode, fn: RawEntryFn): void {
  if (dir.r.flags & IF_INLINE) return walkEntries(dir.ino, dir.r.area, 0, dir.r.area.length, dir.r.size, fn)
  for (let l = 0; l < dir.r.dirBuckets; l++) {
    const buf = readBucket(vol, dir, l)
    walkEntries(dir.ino, buf, BUCKET_HDR, buf.length, buf.readUInt16LE(4), fn)
  }
}

export type RawEntryFn = (ino: number, type: number, buf: Buffer, off: number, len: number) => void

/**
 * From this many entries, a walk over a directory visits them in the order of their inode
 * numbers (byInode, dirForEachRawByInode) rather than in hash order. Hash order puts each
 * entry's inode at a random place in the inode table: once a directory's inodes outgrow the
 * block cache (32 MiB, about 130,000 inodes) every entry costs a read and, for a walk that
 * changes them, a journaled block of its own, so the walk grew with the square of the
 * directory. In inode order the table is read (and written) once, block after block.
 */
export const INODE_ORDER_MIN = 4096

/** `entries`, sorted by inode number when there are at least INODE_ORDER_MIN of them. */
export function byInode<T extends {ino: number}>(entries: T[]): T[] {
  return entries.length < INODE_ORDER_MIN ? entries : entries.slice().sort((a, b) => a.ino - b.ino)
}

/**
 * Calls fn for each entry `walk` gives; when `count` (the directory's entry count) is at
 * least INODE_ORDER_MIN, in inode-number order: the entries are gathered first (their names
 * packed in one buffer), so fn may then change the directory.
 */
export function inInodeOrder(count: number, walk: (fn: RawEntryFn) => void, fn: RawEntryFn): void {
  if (count < INODE_ORDER_MIN) return walk(fn)
  const inos: number[] = []
  const types: number[] = []
  const offs: number[] = []
  let names = Buffer.allocUnsafe(Math.min(count, 1 << 20) * 24)
  let used = 0
  walk((ino, type, buf, off, len) => {
    if (used + len > names.length) {
      const grown = Buffer.allocUnsafe(Math.max(names.length * 2, used + len))
      names.copy(grown, 0, 0, used)
      names = grown
    }
    buf.copy(names, used, off, off + len)
    inos.push(ino)
    types.push(type)
    offs.push(used)
    used += len
  })
  offs.push(used)
  const order = Uint32Array.from({length: inos.length}, (_, i) => i).sort((a, b) => inos[a] - inos[b] || a - b)
  for (let k = 0; k < order.length; k++) {
    const i = order[k]
    fn(inos[i], types[i], names, offs[i], offs[i + 1] - offs[i])
  }
}

/** dirList, in inode-number order for a large directory (byInode): for walks whose order does not show. */
export function dirListByInode(vol: Volume, dir: Inode): Dirent[] {
  return byInode(dirList(vol, dir))
}

/** dirForEachRaw, in inode-number order for a large directory (inInodeOrder). */
export function dirForEachRawByInode(vol: Volume, dir: Inode, fn: RawEntryFn): void {
  inInodeOrder(dir.r.size, (f) => dirForEachRaw(vol, dir, f), fn)
}

/**
 * dirForEachRaw of a hashed directory `dirIno` of `buckets` buckets mapped by `ext` (read in
 * place: extents.ts extentsInPlace), its buckets read through `w` without caching them
 * (BlockStore.getThrough), each checked as readBucket checks it: for walks over many trees
 * (src/fs/space.ts), with no Inode built and no block cached.
 */
export function hashedDirForEachRaw(vol: Volume, dirIno: number, buckets: number, ext: readonly Extent[], w: ReadWindow, fn: RawEntryFn): void {
  for (let l = 0; l < buckets; l++) {
    // (a map held in the inode: a few extents, looked through in order)
    let p = 0
    for (const e of ext) if (l >= e.l && l < e.l + e.n) { p = e.p + (l - e.l); break }
    if (p === 0) missingBlock(dirIno, l)
    const buf = vol.store.getThrough(p, w)
    if (!vol.isUnsealed(p) && !bucketSound(buf)) badBucket(dirIno, l)
    walkEntries(dirIno, buf, BUCKET_HDR, buf.length, buf.readUInt16LE(4), fn)
  }
}

/**
 * dirForEachRaw of an inline directory whose 140-byte area is buf[area, area + 140) and that
 * holds `count` entries: a record read in place in the inode table (Volume.inodeInTable),
 * with no Inode built for it.
 */
export function inlineDirForEachRaw(dirIno: number, buf: Buffer, area: number, count: number, fn: RawEntryFn): void {
  walkEntries(dirIno, buf, area, area + INODE_AREA_SIZE, count, fn)
}

/** Calls fn for `count` packed entries from buf[start], none reaching past `end`. */
function walkEntries(dirIno: number, buf: Buffer, start: number, end: number, count: number, fn: RawEntryFn): void {
  let o = start
  for (let i = 0; i < count; i++) {
    // (an entry count past what the space holds is damage too, not a read beyond it)
    const len = o + DIRENT_FIXED <= end ? buf[o + 13] : 0
    if (len === 0 || o + DIRENT_FIXED + len > end) fail('EBADIMAGE', `directory inode ${dirIno} has a damaged entry; run 'prism fsck'`)
    fn(buf.readUInt32LE(o), buf[o + 12], buf, o + DIRENT_FIXED, len)
    o += DIRENT_FIXED + len
  }
}

function usedInline(dir: Inode): number {
  let o = 0
  for (let i = 0; i < dir.r.size; i++) {
    if (o + DIRENT_FIXED > INODE_AREA_SIZE) break
    o += DIRENT_FIXED + dir.r.area[o + 13]
  }
  return Math.min(o, INODE_AREA_SIZE) || 0
}

// ---------------------------------------------------------------- changes

/** Adds an entry; the caller has checked that the name is absent and valid. */
export function dirAdd(vol: Volume, dir: Inode, ino: number, type: number, name: Buffer, lastclone = 0): void {
  vol.observer?.entryChanged(dir.ino, name)
  const e: Dirent = {ino, type, name, lastclone, hash: hashOf(dir, name)}
  if (dir.r.flags & IF_INLINE) {
    const used = usedInline(dir)
    // (its entries as a reader checks them: a damaged count or entry is said as damage, exit
    // 5, rather than written past, which was an internal error)
    try {
      decodeEntries(dir.r.area, 0, used, dir.r.size, `directory inode ${dir.ino}`)
    } catch (err) {
      badDir(vol, dir, err)
    }
    if (used + DIRENT_FIXED + name.length <= INODE_AREA_SIZE) {
      encodeEntries([e], dir.r.area, used, INODE_AREA_SIZE - used)
      dir.r.size++
      dir.r.dataVersion++
      vol.idirty(dir)
      return
    }
    toHashed(vol, dir)
  }
  insertHashed(vol, dir, e)
  dir.r.size++
  dir.r.dataVersion++
  vol.idirty(dir)
}

function toHashed(vol: Volume, dir: Inode): void {
  const entries = dirList(vol, dir)
  const [p] = allocDirBlocks(vol, dir, 1) // (first: a full image leaves the directory inline)
  dir.r.flags = (dir.r.flags & ~IF_INLINE) | IF_HASHED
  dir.r.area.fill(0)
  dir.extents = new ExtentMap()
  dir.treeBlocks = []
  dir.r.dirDepth = 0
  dir.r.dirBuckets = 1
  encodeBucket({localDepth: 0, overflow: 0, entries}, mapDirBlock(vol, dir, 0, p))
}

function insertHashed(vol: Volume, dir: Inode, e: Dirent): void {
  const size = DIRENT_FIXED + e.name.length
  for (let attempt = 0; attempt < 64; attempt++) {
    const l = bucketOf(vol, dir, e.hash)
    const buf = readBucket(vol, dir, l)
    const used = buf.readUInt16LE(6)
    if (used + size <= BUCKET_SPACE) {
      appendRaw(vol, dir, l, e)
      return
    }
    const localDepth = buf[2]
    if (localDepth >= DIR_MAX_DEPTH) {
      insertOverflow(vol, dir, l, e)
      return
    }
    split(vol, dir, l, localDepth, e.hash)
  }
  insertOverflow(vol, dir, bucketOf(vol, dir, e.hash), e)
}

function appendRaw(vol: Volume, dir: Inode, l: number, e: Dirent): void {
  const p = dirBlock(vol, dir, l)
  const buf = vol.store.getMut(p)
  const used = buf.readUInt16LE(6)
  encodeEntries([e], buf, BUCKET_HDR + used, BUCKET_SPACE - used)
  buf.writeUInt16LE(buf.readUInt16LE(4) + 1, 4)
  buf.writeUInt16LE(used + DIRENT_FIXED + e.name.length, 6)
  // Many appends to one bucket in a transaction: checksum it once, at commit.
  vol.sealAtCommit(p, sealBucket)
}

/**
 * Removes the entry at byte `off` of bucket `l` in place (find read the bucket and found it
 * there): the entries after it move down, the space they leave is zeroed, as encodeBucket of
 * the others would leave it. Not decoded and encoded whole: an rm -r removes every entry of a
 * bucket one by one, and a bucket holds up to a few hundred. Checksummed at commit.
 */
function removeRaw(vol: Volume, dir: Inode, l: number, off: number): void {
  const p = dirBlock(vol, dir, l)
  const buf = vol.store.getMut(p)
  const end = BUCKET_HDR + buf.readUInt16LE(6)
  const size = DIRENT_FIXED + buf[off + 13]
  if (end > BLOCK_SIZE || off + size > end) fail('EBADIMAGE', `directory inode ${dir.ino} bucket ${l} has a damaged entry; run 'prism fsck'`)
  buf.copyWithin(off, off + size, end)
  buf.fill(0, end - size, end)
  buf.writeUInt16LE(buf.readUInt16LE(4) - 1, 4)
  buf.writeUInt16LE(end - size - BUCKET_HDR, 6)
  vol.sealAtCommit(p, sealBucket)
}

function insertOverflow(vol: Volume, dir: Inode, l: number, e: Dirent): void {
  const size = DIRENT_FIXED + e.name.length
  for (let guard = 0; guard <= dir.r.dirBuckets; guard++) {
    const buf = readBucket(vol, dir, l)
    if (buf.readUInt16LE(6) + size <= BUCKET_SPACE) { appendRaw(vol, dir, l, e); return }
    const next = buf.readUInt32LE(8)
    if (next === 0) {
      const [fresh] = allocDirBlocks(vol, dir, 1) // (before anything changes)
      const nl = dir.r.dirBuckets++
      encodeBucket({localDepth: buf[2], overflow: 0, entries: [e]}, mapDirBlock(vol, dir, nl, fresh))
      const p = dirBlock(vol, dir, l)
      vol.store.getMut(p).writeUInt32LE(nl, 8)
      vol.sealAtCommit(p, sealBucket)
      return
    }
    l = next
  }
  fail('EBADIMAGE', `directory inode ${dir.ino} overflow chain loops; run 'prism fsck'`)
}

/**
 * Splits bucket `l` (local depth `ld`), the bucket of `hash`, in two by hash bit `ld`. When the
 * table must double (ld is its depth) it is read, doubled and written whole, which happens once
 * per doubling; otherwise only the pointers that change are rewritten: those to `l` with bit
 * `ld` set, every 2^(ld+1)-th from the bucket's pattern (rewriting the whole table at every
 * split cost the square of the buckets: 200,000 entries of 252-byte names took 32 s to add).
 */
function split(vol: Volume, dir: Inode, l: number, ld: number, hash: number): void {
  const bucket = decodeBucket(bucketBlock(vol, dir, l), `directory inode ${dir.ino} bucket ${l}`)
  // Every block the split needs is taken before anything changes (allocDirBlocks): the new
  // bucket, and the pointer blocks a doubled table lacks.
  const doubling = ld === dir.r.dirDepth
  const slots = 2 ** dir.r.dirDepth * (doubling ? 2 : 1)
  let ptrBlocks = 0
  for (let b = 0; b * DIR_PTRS_PER_BLOCK < slots; b++) if (bmap(vol, dir, DIR_PTR_BASE + b) === 0) ptrBlocks++
  const fresh = allocDirBlocks(vol, dir, 1 + ptrBlocks)
  const bucketBlockNo = fresh.shift()!
  let ptrs: Uint32Array | null = null
  if (doubling || ptrBlocks > 0) {
    ptrs = loadPtrs(vol, dir)
    if (doubling) {
      const doubled = new Uint32Array(ptrs.length * 2)
      doubled.set(ptrs)
      doubled.set(ptrs, ptrs.length)
      ptrs = doubled
      dir.r.dirDepth++
    }
  }
  const nl = dir.r.dirBuckets++
  const stay: Dirent[] = []
  const move: Dirent[] = []
  for (const e of bucket.entries) ((e.hash >>> ld) & 1 ? move : stay).push(e)
  mapDirBlock(vol, dir, nl, bucketBlockNo)
  writeBucket(vol, dir, l, ld + 1, bucket.overflow, stay)
  writeBucket(vol, dir, nl, ld + 1, 0, move)
  if (ptrs) {
    for (let i = 0; i < ptrs.length; i++) if (ptrs[i] === l && (i >>> ld) & 1) ptrs[i] = nl
    storePtrs(vol, dir, ptrs, fresh)
  } else repoint(vol, dir, l, nl, ((hash >>> 0) % 2 ** ld) + 2 ** ld, 2 ** (ld + 1))
  vol.idirty(dir)
}

/** Points at bucket `nl` the table's pointers to bucket `l` from index `first` on, every `step`-th (one pointer block rewritten at a time). */
function repoint(vol: Volume, dir: Inode, l: number, nl: number, first: number, step: number): void {
  const n = 2 ** dir.r.dirDepth
  for (let i = first; i < n;) {
    const b = Math.floor(i / DIR_PTRS_PER_BLOCK)
    const at = dirBlock(vol, dir, DIR_PTR_BASE + b)
    let ptrs: Uint32Array
    try {
      ptrs = decodePtrBlock(vol.store.get(at), `directory inode ${dir.ino} pointer block ${b}`)
    } catch (e) {
      badDir(vol, dir, e)
    }
    for (; i < n && Math.floor(i / DIR_PTRS_PER_BLOCK) === b; i += step) if (ptrs[i % DIR_PTRS_PER_BLOCK] === l) ptrs[i % DIR_PTRS_PER_BLOCK] = nl
    encodePtrBlock(ptrs, vol.store.getMut(at))
  }
}

/**
 * Fills empty directory `dst` with the entries of directory `src`, laid out exactly as in
 * `src`: the same dir_seed, hence the same hashes, buckets and pointer table, copied block for
 * block instead of inserted one by one. Entry i (in dirForEachRaw's order over `src`) names
 * inode `inos[i]` in `dst`, and every lastclone is 0, as for any entry a clone makes (§7.1).
 * This is what expanding a directory writes (src/fs/expand.ts); `src` must not change in
 * between. `dst`'s data_version rises by one per entry, as if they had been added one by one.
 */
export function dirCopyLayout(vol: Volume, src: Inode, dst: Inode, inos: ArrayLike<number>): void {
  if (dst.r.size !== 0 || !(dst.r.flags & IF_INLINE)) throw new Error(`dirCopyLayout: directory inode ${dst.ino} is not empty`)
  if (inos.length !== src.r.size) throw new Error(`dirCopyLayout: ${inos.length} inodes for ${src.r.size} entries`)
  let i = 0
  /** Repoints the `count` entries packed from buf[start] (none past `end`); returns their bytes. */
  const repoint = (buf: Buffer, start: number, end: number, count: number): number => {
    let bytes = 0
    walkEntries(src.ino, buf, start, end, count, (_ino, _type, b, off, len) => {
      const o = off - DIRENT_FIXED
      b.writeUInt32LE(inos[i++], o)
      b.writeUInt32LE(0, o + 4)
      bytes += DIRENT_FIXED + len
      vol.observer?.entryChanged(dst.ino, b.subarray(off, off + len))
    })
    return bytes
  }
  if (src.r.flags & IF_INLINE) {
    src.r.area.copy(dst.r.area)
    repoint(dst.r.area, 0, INODE_AREA_SIZE, src.r.size)
  } else {
    if (!(src.r.flags & IF_HASHED)) fail('EBADIMAGE', `directory inode ${src.ino} has no entry format; run 'prism fsck'`)
    dst.r.flags = (dst.r.flags & ~IF_INLINE) | IF_HASHED
    dst.r.area.fill(0) // the extent root, written at commit
    dst.extents = new ExtentMap()
    dst.treeBlocks = []
    for (let l = 0; l < src.r.dirBuckets; l++) {
      const from = readBucket(vol, src, l)
      if (from.readUInt16LE(0) !== BUCKET_MAGIC) fail('EBADIMAGE', `directory inode ${src.ino} bucket ${l} has a bad magic; run 'prism fsck'`)
      const to = addDirBlock(vol, dst, l)
      from.copy(to)
      if (repoint(to, BUCKET_HDR, BLOCK_SIZE, to.readUInt16LE(4)) !== to.readUInt16LE(6)) {
        fail('EBADIMAGE', `directory inode ${src.ino} bucket ${l} has a damaged entry; run 'prism fsck'`)
      }
      vol.sealAtCommit(dirBlock(vol, dst, l), sealBucket)
    }
    // The pointer table names logical buckets, the same in the copy: its blocks are copied as they are.
    for (let b = 0; b * DIR_PTRS_PER_BLOCK < 2 ** src.r.dirDepth && src.r.dirDepth > 0; b++) {
      const from = vol.store.get(dirBlock(vol, src, DIR_PTR_BASE + b))
      if (from.readUInt32LE(BLOCK_SIZE - 4) !== crc32(from, 0, BLOCK_SIZE - 4)) {
        fail('EBADIMAGE', `directory inode ${src.ino} pointer block checksum mismatch; run 'prism fsck'`)
      }
      from.copy(addDirBlock(vol, dst, DIR_PTR_BASE + b))
    }
  }
  if (i !== src.r.size) fail('EBADIMAGE', `directory inode ${src.ino} holds ${i} entries, not ${src.r.size}; run 'prism fsck'`)
  dst.r.dirSeed = src.r.dirSeed
  dst.r.dirDepth = src.r.dirDepth
  dst.r.dirBuckets = src.r.dirBuckets
  dst.r.size = src.r.size
  dst.r.dataVersion += src.r.size
  vol.idirty(dst)
}

/** Removes the entry `name` and returns it. */
export function dirRemove(vol: Volume, dir: Inode, name: Buffer): Dirent {
  const f = find(vol, dir, name)
  if (!f) fail('ENOENT', `no entry '${nameText(name)}'`)
  vol.observer?.entryChanged(dir.ino, name)
  if (f.bucket < 0) {
    const entries = dirList(vol, dir).filter((e) => !e.name.equals(name))
    dir.r.area.fill(0)
    encodeEntries(entries, dir.r.area, 0, INODE_AREA_SIZE)
  } else {
    removeRaw(vol, dir, f.bucket, f.off)
  }
  dir.r.size--
  dir.r.dataVersion++
  vol.idirty(dir)
  return f.entry
}

/** Changes the inode, type or lastclone stamp of an existing entry in place. */
export function dirUpdate(vol: Volume, dir: Inode, name: Buffer, change: {ino?: number, type?: number, lastclone?: number}): void {
  const f = find(vol, dir, name)
  if (!f) fail('ENOENT', `no entry '${nameText(name)}'`)
  const buf = f.bucket < 0 ? dir.r.area : vol.store.getMut(dirBlock(vol, dir, f.bucket))
  if (change.ino !== undefined) buf.writeUInt32LE(change.ino, f.off)
  if (change.lastclone !== undefined) buf.writeUInt32LE(change.lastclone >>> 0, f.off + 4)
  if (change.type !== undefined) buf[f.off + 12] = change.type
  if (f.bucket >= 0) vol.sealAtCommit(dirBlock(vol, dir, f.bucket), sealBucket)
  // A new lastclone stamp alone leaves what the directory holds unchanged (§5.6).
  if (change.ino !== undefined || change.type !== undefined) {
    dir.r.dataVersion++
    vol.observer?.entryChanged(dir.ino, name)
  }
  vol.idirty(dir)
}

/** Bytes a directory with these entries needs inline, for sizing decisions. */
export function inlineFits(entries: Dirent[]): boolean {
  return entriesSize(entries) <= INODE_AREA_SIZE
}

/**
 * For tree walks (ls -R, cp -r, clone): records that directory `ino` is entered, and fails
 * if it already was. A directory has exactly one name (FORMAT.md §7.10), so meeting one twice
 * means a damaged image (a loop, or two parents) that would otherwise be walked forever.
 */
export function enterDir(seen: Set<number>, ino: number, where: string): void {
  if (seen.has(ino)) fail('EBADIMAGE', `${where}: directory inode ${ino} is reached twice (a loop in a damaged image); run 'prism fsck --repair'`)
  seen.add(ino)
}
