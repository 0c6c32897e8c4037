// The scan-results file (docs/FORMAT.md §12): what `prism scan --incremental` remembers,
// per signature set, about each inode it has scanned, and (version 2) the regular files and
// subdirectories of each directory it walked. Pure encode/decode, no I/O.
import {crc32} from './checksum.js'
import {DT_DIR, DT_REG} from './constants.js'
import {FormatError} from './errors.js'
import {readI64, readU64, writeI64, writeU64} from './le64.js'
import {nameText} from './name.js'

export const SCAN_MAGIC = Buffer.from('PRISMSCN', 'latin1')
/** Written: 2. Read: 1 (no tree section) and 2. */
export const SCAN_VERSION = 2
export const SCAN_HDR = 64
export const SCAN_SET_HDR = 48
export const SCAN_ENTRY = 24
export const SCAN_TREE_DIR = 24
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

/**
 * One set's entries, in increasing inode order, kept as columns: an incremental scan of a
 * large tree reads, checks and rewrites some 100,000 of them, and one object each would cost
 * more in allocation and collection than the rest of the work.
 */
export class ScanEntries {
  length = 0
  ino: Uint32Array
  generation: Uint32Array
  dataVersion: Float64Array
  /** per entry: offset and length of what was found in `names` (length 0: clean) */
  nameOff: Uint32Array
  nameLen: Uint32Array
  names: Buffer
  namesLen = 0

  constructor(capacity = 64) {
    const n = Math.max(1, capacity)
    this.ino = new Uint32Array(n)
    this.generation = new Uint32Array(n)
    this.dataVersion = new Float64Array(n)
    this.nameOff = new Uint32Array(n)
    this.nameLen = new Uint32Array(n)
    this.names = Buffer.alloc(0)
  }

  static from(list: ScanEntry[]): ScanEntries {
    const e = new ScanEntries(list.length)
    for (const x of list) e.push(x.ino, x.generation, x.dataVersion, x.found)
    return e
  }

  private grow(): void {
    const n = this.ino.length * 2
    const widen = <T extends Uint32Array | Float64Array>(a: T, b: T): T => { b.set(a); return b }
    this.ino = widen(this.ino, new Uint32Array(n))
    this.generation = widen(this.generation, new Uint32Array(n))
    this.dataVersion = widen(this.dataVersion, new Float64Array(n))
    this.nameOff = widen(this.nameOff, new Uint32Array(n))
    this.nameLen = widen(this.nameLen, new Uint32Array(n))
  }

  private addNames(bytes: Buffer, from: number, len: number): number {
    if (this.namesLen + len > this.names.length) {
      const b = Buffer.alloc(Math.max(this.namesLen + len, this.names.length * 2, 256))
      this.names.copy(b, 0, 0, this.namesLen)
      this.names = b
    }
    bytes.copy(this.names, this.namesLen, from, from + len)
    this.namesLen += len
    return this.namesLen - len
  }

  /** Appends an entry; its inode must be above the last one's. */
  push(ino: number, generation: number, dataVersion: number, found: string): void {
    if (this.length > 0 && ino <= this.ino[this.length - 1]) throw new Error(`scan entries out of order: ${ino} after ${this.ino[this.length - 1]}`)
    if (this.length === this.ino.length) this.grow()
    const i = this.length++
    this.ino[i] = ino
    this.generation[i] = generation
    this.dataVersion[i] = dataVersion
    if (found === '') {
      this.nameLen[i] = 0
    } else {
      const b = Buffer.from(found, 'utf8')
      this.nameOff[i] = this.addNames(b, 0, b.length)
      this.nameLen[i] = b.length
    }
  }

  /** Appends entry `i` of `src`. */
  pushFrom(src: ScanEntries, i: number): void {
    if (src.nameLen[i] === 0) return this.push(src.ino[i], src.generation[i], src.dataVersion[i], '')
    this.push(src.ino[i], src.generation[i], src.dataVersion[i], '')
    const k = this.length - 1
    this.nameOff[k] = this.addNames(src.names, src.nameOff[i], src.nameLen[i])
    this.nameLen[k] = src.nameLen[i]
  }

  /** What entry `i` found: names separated by "\n", '' when clean. */
  found(i: number): string {
    return this.nameLen[i] === 0 ? '' : this.names.toString('utf8', this.nameOff[i], this.nameOff[i] + this.nameLen[i])
  }

  /** Entry `i` as an object (for tests and tools, not for the scan's loops). */
  at(i: number): ScanEntry {
    return {ino: this.ino[i], generation: this.generation[i], dataVersion: this.dataVersion[i], found: this.found(i)}
  }

  /** The index of the entry for `ino`, or -1. */
  indexOf(ino: number): number {
    return search(this.ino, this.length, ino)
  }
}

/**
 * The directories a scan walked, each with its regular files and subdirectories (inode
 * numbers, entry types and names), kept under the directory's (ino, generation,
 * data_version). A directory's data_version changes with every change to its entries
 * (FORMAT.md §5.6), so a match means its children are still these, and the next incremental
 * scan need not read it, nor read it again to name what it found. Columns, as ScanEntries;
 * directories in increasing inode order once sorted (sort()); a directory's children, and
 * their names, stored contiguously.
 */
export class TreeCache {
  dirs = 0
  ino: Uint32Array
  generation: Uint32Array
  dataVersion: Float64Array
  first: Uint32Array
  count: Uint32Array
  children = 0
  child: Uint32Array
  childType: Uint8Array
  /** where each child's name starts in `names`, and its length (1..255 bytes) */
  nameOff: Uint32Array
  nameLen: Uint8Array
  names: Buffer
  namesLen = 0

  constructor(dirCapacity = 64, childCapacity = 256) {
    this.ino = new Uint32Array(Math.max(1, dirCapacity))
    this.generation = new Uint32Array(this.ino.length)
    this.dataVersion = new Float64Array(this.ino.length)
    this.first = new Uint32Array(this.ino.length)
    this.count = new Uint32Array(this.ino.length)
    this.child = new Uint32Array(Math.max(1, childCapacity))
    this.childType = new Uint8Array(this.child.length)
    this.nameOff = new Uint32Array(this.child.length)
    this.nameLen = new Uint8Array(this.child.length)
    this.names = Buffer.alloc(this.child.length * 12)
  }

  /** Starts a directory's record; its children follow with addChild(). Returns its index. */
  addDir(ino: number, generation: number, dataVersion: number): number {
    if (this.dirs === this.ino.length) {
      const n = this.ino.length * 2
      this.ino = grow32(this.ino, n)
      this.generation = grow32(this.generation, n)
      this.first = grow32(this.first, n)
      this.count = grow32(this.count, n)
      const d = new Float64Array(n)
      d.set(this.dataVersion)
      this.dataVersion = d
    }
    const i = this.dirs++
    this.ino[i] = ino
    this.generation[i] = generation
    this.dataVersion[i] = dataVersion
    this.first[i] = this.children
    this.count[i] = 0
    return i
  }

  private room(children: number, nameBytes: number): void {
    if (this.children + children > this.child.length) {
      const n = Math.max(this.child.length * 2, this.children + children)
      this.child = grow32(this.child, n)
      this.nameOff = grow32(this.nameOff, n)
      const t = new Uint8Array(n)
      t.set(this.childType)
      this.childType = t
      const l = new Uint8Array(n)
      l.set(this.nameLen)
      this.nameLen = l
    }
    if (this.namesLen + nameBytes > this.names.length) {
      const b = Buffer.alloc(Math.max(this.names.length * 2, this.namesLen + nameBytes))
      this.names.copy(b, 0, 0, this.namesLen)
      this.names = b
    }
  }

  /** Adds a child, named name[off, off + len), to the directory added last. Returns its index. */
  addChild(ino: number, type: number, name: Buffer, off: number, len: number): number {
    this.room(1, len)
    const c = this.children++
    this.child[c] = ino
    this.childType[c] = type
    this.nameOff[c] = this.namesLen
    this.nameLen[c] = len
    this.namesLen += name.copy(this.names, this.namesLen, off, off + len)
    this.count[this.dirs - 1]++
    return c
  }

  /** Copies directory `i` of `src`, children and names. Returns the index its first child gets. */
  copyDir(src: TreeCache, i: number): number {
    this.addDir(src.ino[i], src.generation[i], src.dataVersion[i])
    const n = src.count[i]
    const from = src.first[i]
    const at = this.children
    if (n === 0) return at
    // The names of a directory's children are contiguous: one copy, then the offsets.
    const nameStart = src.nameOff[from]
    const nameEnd = src.nameOff[from + n - 1] + src.nameLen[from + n - 1]
    this.room(n, nameEnd - nameStart)
    // Plain loops: a directory has a few children, and views would cost more than the copy.
    const shift = this.namesLen - nameStart
    for (let k = 0; k < n; k++) {
      this.child[at + k] = src.child[from + k]
      this.childType[at + k] = src.childType[from + k]
      this.nameLen[at + k] = src.nameLen[from + k]
      this.nameOff[at + k] = src.nameOff[from + k] + shift
    }
    src.names.copy(this.names, this.namesLen, nameStart, nameEnd)
    this.namesLen += nameEnd - nameStart
    this.children += n
    this.count[this.dirs - 1] = n
    return at
  }

  /** Child `c`'s name. */
  childName(c: number): string {
    return nameText(this.names.subarray(this.nameOff[c], this.nameOff[c] + this.nameLen[c]))
  }

  /** The index of the record of directory `ino` (sorted caches only), or -1. */
  find(ino: number): number {
    return search(this.ino, this.dirs, ino)
  }

  /** Puts the records in increasing inode order, keeping one per inode (the first added). */
  sort(): void {
    const order = Array.from({length: this.dirs}, (_, i) => i).sort((a, b) => this.ino[a] - this.ino[b] || a - b)
    const pick = <T extends Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const out = make(Math.max(1, this.dirs))
      let n = 0
      for (let k = 0; k < order.length; k++) if (k === 0 || this.ino[order[k]] !== this.ino[order[k - 1]]) out[n++] = a[order[k]]
      return out
    }
    const ino = pick(this.ino, (n) => new Uint32Array(n))
    this.generation = pick(this.generation, (n) => new Uint32Array(n))
    this.dataVersion = pick(this.dataVersion, (n) => new Float64Array(n))
    this.first = pick(this.first, (n) => new Uint32Array(n))
    this.count = pick(this.count, (n) => new Uint32Array(n))
    let n = 0
    for (let k = 0; k < order.length; k++) if (k === 0 || this.ino[order[k]] !== this.ino[order[k - 1]]) n++
    this.ino = ino
    this.dirs = n
  }
}

/** Binary search of the first `n` values of an increasing array: the index of `v`, or -1. */
function search(a: Uint32Array, n: number, v: number): number {
  let lo = 0
  let hi = n - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (a[mid] === v) return mid
    if (a[mid] < v) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

function grow32(a: Uint32Array, n: number): Uint32Array {
  const b = new Uint32Array(n)
  b.set(a)
  return b
}

export interface ScanFile {
  sets: ScanSet[]
  /** sorted; empty in a version 1 file */
  tree: TreeCache
}

export interface ScanSet {
  /** 32 bytes: sha256 of the identity of the signature set, --exec command or clamd */
  key: Buffer
  lastUsed: number
  /** one entry per inode, in increasing inode order */
  entries: ScanEntries
}

/**
 * header (64): magic[8] version u32 set_count u32 body_bytes u64 body_crc u32 tree_dirs u32
 * tree_children u32 reserved[20] header_crc u32 (of 0x00-0x3B). Body: sets, each key[32]
 * last_used i64 entry_count u32 names_bytes u32, entries (ino u32, generation u32,
 * data_version u64, name_off u32, name_len u32), then names_bytes of UTF-8 names; then the
 * tree: tree_dirs records (ino u32, generation u32, data_version u64, first u32, count u32),
 * tree_children child inode numbers (u32), child types (u8), name lengths (u8), then the
 * names.
 */
export function encodeScanFile(file: ScanFile): Buffer {
  const {sets, tree} = file
  let children = 0
  let nameBytes = 0
  for (let d = 0; d < tree.dirs; d++) {
    children += tree.count[d]
    if (tree.count[d] > 0) {
      const last = tree.first[d] + tree.count[d] - 1
      nameBytes += tree.nameOff[last] + tree.nameLen[last] - tree.nameOff[tree.first[d]]
    }
  }
  let total = SCAN_HDR + tree.dirs * SCAN_TREE_DIR + children * 6 + nameBytes
  for (const s of sets) total += SCAN_SET_HDR + s.entries.length * SCAN_ENTRY + s.entries.namesLen
  const out = Buffer.alloc(total)
  // A DataView writes 100,000 entries several times faster than Buffer's methods.
  const dv = new DataView(out.buffer, out.byteOffset, out.length)
  let o = SCAN_HDR
  for (const s of sets) {
    const e = s.entries
    s.key.copy(out, o, 0, 32)
    writeI64(out, Math.trunc(s.lastUsed), o + 32)
    out.writeUInt32LE(e.length, o + 40)
    out.writeUInt32LE(e.namesLen, o + 44)
    o += SCAN_SET_HDR
    o = encodeEntries(e, dv, o)
    o += e.names.copy(out, o, 0, e.namesLen)
  }
  encodeTree(tree, out, dv, o, children)
  SCAN_MAGIC.copy(out, 0)
  out.writeUInt32LE(SCAN_VERSION, 8)
  out.writeUInt32LE(sets.length, 12)
  writeU64(out, total - SCAN_HDR, 16)
  out.writeUInt32LE(crc32(out, SCAN_HDR), 24)
  out.writeUInt32LE(tree.dirs, 0x1c)
  out.writeUInt32LE(children, 0x20)
  out.writeUInt32LE(crc32(out, 0, 0x3c), 0x3c)
  return out
}

/** Writes `v` as a u64 at `o`; false (nothing written) unless it is an integer in 0..2^53-1. */
function setU64(dv: DataView, o: number, v: number): boolean {
  const hi = Math.floor(v / 0x1_0000_0000)
  if (!(v >= 0 && hi <= 0x1f_ffff && v === Math.floor(v))) return false
  dv.setUint32(o, v - hi * 0x1_0000_0000, true)
  dv.setUint32(o + 4, hi, true)
  return true
}

/**
 * Writes a set's entries at `o` and returns the offset after them. A function of its own,
 * with no closure in its loop: it runs once per process over 100,000 entries, and V8
 * optimizes a small loop much sooner.
 */
function encodeEntries(e: ScanEntries, dv: DataView, o: number): number {
  const {ino, generation, dataVersion, nameOff, nameLen} = e
  for (let i = 0; i < e.length; i++, o += SCAN_ENTRY) {
    dv.setUint32(o, ino[i], true)
    dv.setUint32(o + 4, generation[i], true)
    if (!setU64(dv, o + 8, dataVersion[i])) throw new RangeError(`scan entry ${ino[i]} data_version: ${dataVersion[i]} is not a u64 this code can write`)
    const clean = nameLen[i] === 0
    dv.setUint32(o + 16, clean ? SCAN_CLEAN : nameOff[i], true)
    dv.setUint32(o + 20, clean ? 0 : nameLen[i], true)
  }
  return o
}

/**
 * Writes the tree at `o`: the records, then the children compacted in record order (inode
 * numbers, types, name lengths, names). Plain loops, as encodeEntries.
 */
function encodeTree(tree: TreeCache, out: Buffer, dv: DataView, o: number, children: number): void {
  const {ino, generation, dataVersion, first, count, child, childType, nameOff, nameLen, names} = tree
  const childAt = o + tree.dirs * SCAN_TREE_DIR
  const typeAt = childAt + children * 4
  const lenAt = typeAt + children
  let nameAt = lenAt + children
  let c = 0
  for (let d = 0; d < tree.dirs; d++, o += SCAN_TREE_DIR) {
    if (d > 0 && ino[d] <= ino[d - 1]) throw new Error('tree cache not sorted')
    dv.setUint32(o, ino[d], true)
    dv.setUint32(o + 4, generation[d], true)
    if (!setU64(dv, o + 8, dataVersion[d])) throw new RangeError(`tree directory ${ino[d]} data_version: ${dataVersion[d]} is not a u64 this code can write`)
    dv.setUint32(o + 16, c, true)
    dv.setUint32(o + 20, count[d], true)
    const end = first[d] + count[d]
    for (let k = first[d]; k < end; k++, c++) {
      dv.setUint32(childAt + c * 4, child[k], true)
      out[typeAt + c] = childType[k]
      const len = nameLen[k]
      out[lenAt + c] = len
      for (let b = nameOff[k], e = b + len; b < e; b++) out[nameAt++] = names[b]
    }
  }
}

/** Decodes and checks a whole scan-results file; throws FormatError naming what is wrong. */
export function decodeScanFile(buf: Buffer): ScanFile {
  const bad = (msg: string): never => { throw new FormatError('scan results', 'value', msg) }
  if (buf.length < SCAN_HDR) bad(`file too short (${buf.length} bytes)`)
  if (!buf.subarray(0, 8).equals(SCAN_MAGIC)) bad('bad magic')
  if (buf.readUInt32LE(0x3c) !== crc32(buf, 0, 0x3c)) bad('header checksum mismatch')
  const version = buf.readUInt32LE(8)
  if (version !== 1 && version !== 2) bad(`unknown version ${version}`)
  const count = buf.readUInt32LE(12)
  const bodyLen = readU64(buf, 16)
  if (SCAN_HDR + bodyLen !== buf.length) bad(`body is ${buf.length - SCAN_HDR} bytes, header says ${bodyLen}`)
  if (crc32(buf, SCAN_HDR) !== buf.readUInt32LE(24)) bad('body checksum mismatch')
  const sets: ScanSet[] = []
  let o = SCAN_HDR
  for (let i = 0; i < count; i++) {
    if (o + SCAN_SET_HDR > buf.length) bad(`set ${i} runs past the end`)
    const key = Buffer.from(buf.subarray(o, o + 32))
    const lastUsed = readI64(buf, o + 32)
    const n = buf.readUInt32LE(o + 40)
    const namesLen = buf.readUInt32LE(o + 44)
    const entStart = o + SCAN_SET_HDR
    const namesStart = entStart + n * SCAN_ENTRY
    if (namesStart + namesLen > buf.length) bad(`set ${i} runs past the end`)
    const entries = new ScanEntries(n)
    entries.names = Buffer.from(buf.subarray(namesStart, namesStart + namesLen))
    entries.namesLen = namesLen
    let prev = 0
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length)
    for (let k = 0; k < n; k++) {
      const e = entStart + k * SCAN_ENTRY
      const ino = dv.getUint32(e, true)
      if (ino <= prev) bad(`set ${i}: entries not in increasing inode order at inode ${ino}`)
      prev = ino
      const off = dv.getUint32(e + 16, true)
      const len = dv.getUint32(e + 20, true)
      if (off !== SCAN_CLEAN && (len === 0 || off + len > namesLen)) bad(`set ${i}: inode ${ino} names bytes outside the names area`)
      const hi = dv.getUint32(e + 12, true)
      if (hi > 0x1f_ffff) bad(`set ${i}: inode ${ino} data_version is too large`)
      entries.ino[k] = ino
      entries.generation[k] = dv.getUint32(e + 4, true)
      entries.dataVersion[k] = hi * 0x1_0000_0000 + dv.getUint32(e + 8, true)
      entries.nameOff[k] = off === SCAN_CLEAN ? 0 : off
      entries.nameLen[k] = off === SCAN_CLEAN ? 0 : len
    }
    entries.length = n
    sets.push({key, lastUsed, entries})
    o = namesStart + namesLen
  }
  const tree = version === 1 ? new TreeCache() : decodeTree(buf, o, bad)
  if (version === 2) o += tree.dirs * SCAN_TREE_DIR + tree.children * 6 + tree.namesLen
  if (o !== buf.length) bad(`${buf.length - o} bytes after the ${version === 1 ? 'last set' : 'tree'}`)
  return {sets, tree}
}

function decodeTree(buf: Buffer, o: number, bad: (msg: string) => never): TreeCache {
  const dirs = buf.readUInt32LE(0x1c)
  const children = buf.readUInt32LE(0x20)
  if (o + dirs * SCAN_TREE_DIR + children * 6 > buf.length) bad('tree runs past the end')
  const t = new TreeCache(dirs, children)
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length)
  const childAt = o + dirs * SCAN_TREE_DIR
  const typeAt = childAt + children * 4
  const lenAt = typeAt + children
  const namesAt = lenAt + children
  let next = 0
  for (let d = 0; d < dirs; d++, o += SCAN_TREE_DIR) {
    const ino = dv.getUint32(o, true)
    if (ino === 0 || (d > 0 && ino <= t.ino[d - 1])) bad(`tree: directories not in increasing inode order at inode ${ino}`)
    const hi = dv.getUint32(o + 12, true)
    if (hi > 0x1f_ffff) bad(`tree: directory ${ino} data_version is too large`)
    const first = dv.getUint32(o + 16, true)
    const count = dv.getUint32(o + 20, true)
    if (first !== next || first + count > children) bad(`tree: directory ${ino} children out of place`)
    next += count
    t.ino[d] = ino
    t.generation[d] = dv.getUint32(o + 4, true)
    t.dataVersion[d] = hi * 0x1_0000_0000 + dv.getUint32(o + 8, true)
    t.first[d] = first
    t.count[d] = count
  }
  if (next !== children) bad(`tree: ${children - next} children belong to no directory`)
  let nameOff = 0
  for (let c = 0; c < children; c++) {
    const ino = dv.getUint32(childAt + c * 4, true)
    const type = buf[typeAt + c]
    const len = buf[lenAt + c]
    if (ino === 0 || (type !== DT_REG && type !== DT_DIR) || len === 0) bad(`tree: child ${c} is inode ${ino} of type ${type}, name of ${len} bytes`)
    t.child[c] = ino
    t.childType[c] = type
    t.nameLen[c] = len
    t.nameOff[c] = nameOff
    nameOff += len
  }
  if (namesAt + nameOff > buf.length) bad('tree names run past the end')
  t.names = Buffer.from(buf.subarray(namesAt, namesAt + nameOff))
  t.namesLen = nameOff
  t.dirs = dirs
  t.children = children
  return t
}
