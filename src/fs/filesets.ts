// The fileset table: named filesystems inside the image. Each record names a root
// directory inode; clone bookkeeping (parent, clonestart, mode, progress) rides along.
//
// The table is the fixed region mkfs laid out, then, once every slot of it is used, the
// fileset table file: an inode the superblock names whose blocks hold further records in the
// same layout, one block added per 16 filesets (docs/FORMAT.md §8.7). So the number of
// filesets is limited by the image's space, not by a count chosen at mkfs.
//
// The table is read once per transaction into memory, with indexes by slot, id, name, parent
// and clone source, so that every lookup a command or a clone makes costs the same whether
// the image holds one fileset or a hundred thousand. It must never be changed except through
// saveFileset/addFileset/removeFileset, which keep the indexes and the blocks in step.
import {ExtentMap} from './extentmap.js'
import {FILESETS_PER_BLOCK, FILESET_RECORD_SIZE, FS_ACTIVE, FS_DELETING, FS_EXPANDING, MODE_ASYNC, MODE_NONE, S_IFREG} from '../format/constants.js'
import {decodeFileset, encodeFileset, filesetNameProblem, readFilesetRaw, type FilesetRecord} from '../format/fileset.js'
import {FormatError} from '../format/errors.js'
import {INCOMPAT_FILESET_TABLE} from '../format/superblock.js'
import {fail} from '../errors.js'
import {loadExtents, mapRange} from './extents.js'
import type {Volume} from './volume.js'

export type {FilesetRecord}

export interface Fileset extends FilesetRecord {
  slot: number
}

/**
 * The free slots: a new fileset takes the lowest (FORMAT.md §8.4). Single slots in a min-heap;
 * the runs of a never-written (hole) part of the fixed table as ranges, so that a fixed
 * table of millions of slots costs nothing until they are used.
 */
class SlotHeap {
  private h: number[] = []
  /** increasing, disjoint [start, end) runs of free slots; `r` is the first not used up */
  private runs: Array<[number, number]> = []
  private r = 0

  get size(): number {
    let n = this.h.length
    for (let i = this.r; i < this.runs.length; i++) n += this.runs[i][1] - this.runs[i][0]
    return n
  }

  /** Slots [start, end), free, above every range added before. */
  pushRange(start: number, end: number): void {
    const last = this.runs[this.runs.length - 1]
    if (last && last[1] === start) last[1] = end
    else this.runs.push([start, end])
  }

  /** The lowest free slot, taken. */
  take(): number | undefined {
    while (this.r < this.runs.length && this.runs[this.r][0] >= this.runs[this.r][1]) this.r++
    const run = this.runs[this.r]
    if (run && (this.h.length === 0 || run[0] < this.h[0])) return run[0]++
    return this.pop()
  }

  push(v: number): void {
    const h = this.h
    h.push(v)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (h[p] <= v) break
      h[i] = h[p]
      i = p
    }
    h[i] = v
  }

  pop(): number | undefined {
    const h = this.h
    if (h.length === 0) return undefined
    const top = h[0]
    const last = h.pop()!
    if (h.length > 0) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= h.length) break
        const c = l + 1 < h.length && h[l + 1] < h[l] ? l + 1 : l
        if (h[c] >= last) break
        h[i] = h[c]
        i = c
      }
      h[i] = last
    }
    return top
  }
}

/** Indexes by relation and state, made on first use (most commands need none of them). */
interface Derived {
  /** parent id -> ids of the filesets cloned from it */
  children: Map<number, Set<number>>
  /** source id -> ids of its clones still EXPANDING */
  inFlight: Map<number, Set<number>>
  /** ids of filesets EXPANDING or DELETING (being built or expanded) */
  building: Set<number>
  /** ids of filesets DELETING */
  deleting: Set<number>
  /** ids of EXPANDING filesets made by an async clone */
  asyncExpanding: Set<number>
}

/** The table in memory, and its indexes. */
interface Table {
  /** id -> slot of every used slot, read raw at load (no record decoded then) */
  byId: Map<number, number>
  /** records decoded so far, by slot: a record is decoded, its checksum checked, on first use */
  recs: Map<number, Fileset>
  /** name -> slot, made when names are searched for often (freeName) */
  byName: Map<string, number> | null
  /** names found by a scan without the index: name -> slot */
  found: Map<string, number>
  /** lookups by name answered by a scan so far */
  scans: number
  /** every block of the table that may hold records: its first slot and its number of slots */
  blocks: Array<{block: number, first: number, count: number}>
  /** the blocks in `blocks` */
  blockSet: Set<number>
  derived: Derived | null
  free: SlotHeap
  /** slots in the fixed table and the table file */
  slots: number
  /** the table file's blocks, by logical block */
  extBlocks: number[]
  /** the records sorted by id, until the next change */
  sorted: Fileset[] | null
  /** base name -> the lowest n for which base-n may be free (freeName) */
  suffixHint: Map<string, number>
}

/** The fields the indexes need, as stored (a record about to be replaced may not be decoded yet). */
type Keyed = Pick<Fileset, 'id' | 'name' | 'parentId' | 'state' | 'mode' | 'srcFileset'>

function addTo(m: Map<number, Set<number>>, k: number, v: number): void {
  let s = m.get(k)
  if (!s) m.set(k, (s = new Set()))
  s.add(v)
}

function dropFrom(m: Map<number, Set<number>>, k: number, v: number): void {
  const s = m.get(k)
  if (!s) return
  s.delete(v)
  if (s.size === 0) m.delete(k)
}

function derive(d: Derived, f: Pick<Fileset, 'id' | 'parentId' | 'state' | 'mode' | 'srcFileset'>): void {
  deriveFields(d, f.id, f.parentId, f.state, f.mode, f.srcFileset)
}

function deriveFields(d: Derived, id: number, parentId: number, state: number, mode: number, srcFileset: number): void {
  if (parentId !== 0) addTo(d.children, parentId, id)
  if (state === FS_EXPANDING) addTo(d.inFlight, srcFileset, id)
  if (state === FS_EXPANDING || state === FS_DELETING) d.building.add(id)
  if (state === FS_DELETING) d.deleting.add(id)
  if (state === FS_EXPANDING && mode === MODE_ASYNC) d.asyncExpanding.add(id)
}

/** True when b holds `want` at `at` (a loop: Buffer.compare costs more for a few bytes). */
function bytesAt(b: Buffer, at: number, want: Buffer): boolean {
  for (let k = 0; k < want.length; k++) if (b[at + k] !== want[k]) return false
  return true
}

/** Calls fn(buf, off, slot) for every used slot, as stored (current content: changes of this transaction included). */
function eachUsed(vol: Volume, t: Table, fn: (b: Buffer, off: number, slot: number) => boolean | void): void {
  for (const {block, first, count} of t.blocks) {
    const b = vol.store.get(block)
    for (let i = 0; i < count; i++) {
      const off = i * FILESET_RECORD_SIZE
      if (b.readUInt32LE(off) !== 0 && fn(b, off, first + i) === true) return
    }
  }
}

/** The derived indexes, made the first time they are asked for from the stored fields (nothing decoded). */
function derived(vol: Volume, t: Table): Derived {
  if (t.derived) return t.derived
  const d: Derived = {children: new Map(), inFlight: new Map(), building: new Set(), deleting: new Set(), asyncExpanding: new Set()}
  eachUsed(vol, t, (b, off) => {
    deriveFields(d, b.readUInt32LE(off), b.readUInt32LE(off + 0x08), b[off + 0x0c], b[off + 0x0d], b.readUInt32LE(off + 0x20))
  })
  t.derived = d
  return d
}

/** The name -> slot index of every fileset (names read as stored). */
function names(vol: Volume, t: Table): Map<string, number> {
  if (t.byName) return t.byName
  const m = new Map<string, number>()
  eachUsed(vol, t, (b, off, slot) => {
    const name = b.toString('utf8', off + 0x30, off + 0x30 + Math.min(b[off + 0x0e], 128))
    if (!m.has(name)) m.set(name, slot)
  })
  t.byName = m
  return m
}

/**
 * The slot of the fileset named `name`, or undefined. Without the index, the stored names
 * are compared byte for byte (no string is made for the others): a command that names one
 * or two filesets pays that, not the index.
 */
function slotNamed(vol: Volume, t: Table, name: string): number | undefined {
  if (t.byName) return t.byName.get(name)
  const known = t.found.get(name)
  if (known !== undefined) return known
  // A few lookups by scanning; more (a process making many filesets) pay for the index once.
  if (++t.scans > 4) return names(vol, t).get(name)
  const want = Buffer.from(name, 'utf8')
  let hit: number | undefined
  eachUsed(vol, t, (b, off, slot) => {
    if (b[off + 0x0e] !== want.length || !bytesAt(b, off + 0x30, want)) return false
    hit = slot
    return true
  })
  if (hit !== undefined) t.found.set(name, hit)
  return hit
}

/** The record in `slot` (in use), decoded and checked the first time. */
function rec(vol: Volume, t: Table, slot: number): Fileset {
  const have = t.recs.get(slot)
  if (have) return have
  const {block, off} = slotAt(vol, t, slot)
  let f: Fileset
  try {
    f = decodeFileset(vol.store.get(block), off, slot) as Fileset
  } catch (e) {
    if (e instanceof FormatError) fail('EBADIMAGE', `${e.message}; run 'prism fsck --repair'`)
    throw e
  }
  if (!f) fail('EBADIMAGE', `fileset slot ${slot} changed under its index; run 'prism fsck --repair'`)
  f.slot = slot
  t.recs.set(slot, f)
  return f
}

function index(t: Table, f: Fileset): void {
  t.recs.set(f.slot, f)
  t.byId.set(f.id, f.slot)
  if (t.byName && !t.byName.has(f.name)) t.byName.set(f.name, f.slot)
  t.found.delete(f.name)
  if (t.derived) derive(t.derived, f)
  t.sorted = null
}

function unindex(t: Table, slot: number, f: Keyed): void {
  t.recs.delete(slot)
  if (t.byId.get(f.id) === slot) t.byId.delete(f.id)
  if (t.byName?.get(f.name) === slot) t.byName.delete(f.name)
  t.found.delete(f.name)
  const d = t.derived
  if (d) {
    if (f.parentId !== 0) dropFrom(d.children, f.parentId, f.id)
    if (f.state === FS_EXPANDING) dropFrom(d.inFlight, f.srcFileset, f.id)
    d.building.delete(f.id)
    d.deleting.delete(f.id)
    d.asyncExpanding.delete(f.id)
  }
  t.sorted = null
}

/** What slot `slot` holds now, for the indexes (decoded if it was, else as stored), or null when free. */
function current(vol: Volume, t: Table, slot: number): Keyed | null {
  const f = t.recs.get(slot)
  if (f) return f
  const {block, off} = slotAt(vol, t, slot)
  const b = vol.store.get(block)
  return b.readUInt32LE(off) === 0 ? null : readFilesetRaw(b, off)
}

/** The block holding `slot`, and the record's offset in it. */
function slotAt(vol: Volume, t: Table, slot: number): {block: number, off: number} {
  const fixed = vol.sb.filesetSlots
  if (slot < fixed) return {block: vol.sb.filesetTableStart + Math.floor(slot / FILESETS_PER_BLOCK), off: (slot % FILESETS_PER_BLOCK) * FILESET_RECORD_SIZE}
  const k = Math.floor((slot - fixed) / FILESETS_PER_BLOCK)
  if (k >= t.extBlocks.length) fail('EBADIMAGE', `fileset slot ${slot} is past the fileset table; run 'prism fsck --repair'`)
  return {block: t.extBlocks[k], off: ((slot - fixed) % FILESETS_PER_BLOCK) * FILESET_RECORD_SIZE}
}

/**
 * The blocks of the fileset table file, by logical block (FORMAT.md §8.7): every one mapped,
 * none shared or outside the data area.
 */
export function filesetTableBlocks(vol: Volume): number[] {
  const ino = vol.sb.filesetExtIno
  if (ino === 0) return []
  const f = vol.iget(ino)
  const bad = (why: string): never => fail('EBADIMAGE', `the fileset table file (inode ${ino}) ${why}; run 'prism fsck --repair'`)
  if (!f.isReg) bad('is not a regular file')
  const n = f.r.size / 4096
  if (!Number.isInteger(n)) bad(`has size ${f.r.size}, not a whole number of blocks`)
  const out: number[] = []
  for (const e of loadExtents(vol, f)) {
    if (e.l !== out.length) bad(`has no block ${out.length}`)
    for (let i = 0; i < e.n; i++) out.push(e.p + i)
  }
  if (out.length !== n) bad(`maps ${out.length} blocks for a size of ${n}`)
  return out
}

/**
 * The table, read once per transaction: the id of every slot (free or used), nothing more;
 * records are decoded when used. So opening an image of 10,000 filesets to work on one of
 * them reads the table's blocks but decodes one or two records.
 */
function load(vol: Volume): Table {
  if (vol.filesetCache) return vol.filesetCache as Table
  const t: Table = {
    byId: new Map(), recs: new Map(), byName: null, found: new Map(), scans: 0, blocks: [], blockSet: new Set(), derived: null, free: new SlotHeap(),
    slots: vol.sb.filesetSlots, extBlocks: [], sorted: null, suffixHint: new Map(),
  }
  t.extBlocks = filesetTableBlocks(vol)
  t.slots = vol.sb.filesetSlots + t.extBlocks.length * FILESETS_PER_BLOCK
  const fixedBlocks = Math.ceil(vol.sb.filesetSlots / FILESETS_PER_BLOCK)
  // Parts of the fixed table never written are holes of the sparse image: free slots all.
  const withData = new Uint8Array(fixedBlocks)
  for (const [a, b] of vol.dataRunsOf(vol.sb.filesetTableStart, fixedBlocks)) withData.fill(1, a - vol.sb.filesetTableStart, b - vol.sb.filesetTableStart)
  const blocks = t.blocks
  for (let b = 0; b < fixedBlocks; b++) {
    const first = b * FILESETS_PER_BLOCK
    const count = Math.min(FILESETS_PER_BLOCK, vol.sb.filesetSlots - first)
    if (withData[b]) blocks.push({block: vol.sb.filesetTableStart + b, first, count})
    else t.free.pushRange(first, first + count)
  }
  t.extBlocks.forEach((block, k) => blocks.push({block, first: vol.sb.filesetSlots + k * FILESETS_PER_BLOCK, count: FILESETS_PER_BLOCK}))
  for (const b of blocks) t.blockSet.add(b.block)
  for (let i = 0; i < blocks.length;) {
    // Neighbouring blocks in one read.
    let j = i + 1
    while (j < blocks.length && j - i < 256 && blocks[j].block === blocks[j - 1].block + 1) j++
    vol.store.prefetch(blocks[i].block, j - i)
    i = j
  }
  for (const {block, first, count} of blocks) {
    const buf = vol.store.get(block)
    for (let i = 0; i < count; i++) {
      const id = buf.readUInt32LE(i * FILESET_RECORD_SIZE)
      if (id === 0) t.free.push(first + i)
      else if (!t.byId.has(id)) t.byId.set(id, first + i)
      else rec(vol, t, first + i) // two records with one id: damage, refused with the record's own error if it has one
    }
  }
  vol.filesetCache = t
  return t
}

/** Every fileset, by id. */
export function listFilesets(vol: Volume): Fileset[] {
  const t = load(vol)
  t.sorted ??= [...t.byId.values()].map((slot) => rec(vol, t, slot)).sort((a, b) => a.id - b.id)
  return t.sorted.slice()
}

export function filesetCount(vol: Volume): number {
  return load(vol).byId.size
}

/** Slots the table has now (fixed and grown), and how many the fixed table has. */
export function filesetSlots(vol: Volume): {total: number, fixed: number} {
  return {total: load(vol).slots, fixed: vol.sb.filesetSlots}
}

/**
 * The first of base-1, base-2, ... that names no fileset. Where the last search stopped is
 * remembered (and moved back when such a name is freed), so that the 10,000th clone of a
 * fileset does not try 9,999 taken names first.
 */
export function freeName(vol: Volume, base: string): string {
  const t = load(vol)
  if (!t.byName && !t.suffixHint.has(base)) {
    // The first search of this table: one pass over the stored names for base-N (no string
    // made for them), so that a command making one clone does not index every name.
    const prefix = Buffer.from(`${base}-`, 'utf8')
    const taken = new Set<number>()
    eachUsed(vol, t, (b, off) => {
      const len = b[off + 0x0e]
      const at = off + 0x30
      if (len <= prefix.length || len > prefix.length + 9 || !bytesAt(b, at, prefix)) return
      let n = 0
      for (let k = at + prefix.length; k < at + len; k++) {
        const c = b[k]
        if (c < 0x30 || c > 0x39 || (n === 0 && c === 0x30)) return
        n = n * 10 + (c - 0x30)
      }
      taken.add(n)
    })
    let i = 1
    while (taken.has(i)) i++
    t.suffixHint.set(base, i)
    return `${base}-${i}`
  }
  const byName = names(vol, t)
  for (let i = t.suffixHint.get(base) ?? 1; ; i++) {
    const name = `${base}-${i}`
    if (!byName.has(name)) {
      t.suffixHint.set(base, i)
      return name
    }
  }
}

export function findFileset(vol: Volume, name: string): Fileset | null {
  const t = load(vol)
  const slot = slotNamed(vol, t, name)
  if (slot === undefined) return null
  const f = rec(vol, t, slot)
  if (f.name !== name) fail('EBADIMAGE', `fileset slot ${slot} changed under its index; run 'prism fsck --repair'`)
  return f
}

export function getFileset(vol: Volume, name: string): Fileset {
  const f = findFileset(vol, name)
  if (!f) fail('ENOENT', `no fileset named '${name}' (see 'prism fileset list')`)
  return f
}

export function filesetById(vol: Volume, id: number): Fileset | null {
  const t = load(vol)
  const slot = t.byId.get(id)
  return slot === undefined ? null : rec(vol, t, slot)
}

/** The filesets whose parent is `id`. */
export function childrenOf(vol: Volume, id: number): Fileset[] {
  const t = load(vol)
  return [...(derived(vol, t).children.get(id) ?? [])].map((c) => filesetById(vol, c)!).filter(Boolean)
}

/** Filesets still EXPANDING from source `srcId` (its clones in flight). */
export function expandingFrom(vol: Volume, srcId: number): Fileset[] {
  const t = load(vol)
  const ids = derived(vol, t).inFlight.get(srcId)
  if (!ids) return []
  return [...ids].sort((a, b) => a - b).map((c) => filesetById(vol, c)!)
}

/** True when some fileset is EXPANDING (a clone in flight). */
export function anyExpanding(vol: Volume): boolean {
  return derived(vol, load(vol)).inFlight.size > 0
}

/** True when some fileset is EXPANDING or DELETING. */
export function anyBuilding(vol: Volume): boolean {
  return derived(vol, load(vol)).building.size > 0
}

/** Filesets EXPANDING or DELETING. */
export function buildingFilesets(vol: Volume): Fileset[] {
  const t = load(vol)
  return [...derived(vol, t).building].sort((a, b) => a - b).map((id) => filesetById(vol, id)!)
}

/** Filesets DELETING (clones whose building stopped half-way, or is in progress). */
export function deletingFilesets(vol: Volume): Fileset[] {
  const t = load(vol)
  return [...derived(vol, t).deleting].map((id) => filesetById(vol, id)!)
}

/** True when an asynchronous clone is still expanding (its background expander should run). */
export function anyAsyncExpanding(vol: Volume): boolean {
  const t = vol.filesetCache as Table | null
  return !!t && derived(vol, t).asyncExpanding.size > 0
}

/** Writes a record (new or changed) into its slot. */
export function saveFileset(vol: Volume, f: Fileset): void {
  const t = load(vol)
  const {block, off} = slotAt(vol, t, f.slot)
  if (!t.blockSet.has(block)) {
    // A block of the fixed table that was a hole when the table was read gets its first record.
    const first = f.slot - (f.slot % FILESETS_PER_BLOCK)
    t.blocks.push({block, first, count: Math.min(FILESETS_PER_BLOCK, vol.sb.filesetSlots - first)})
    t.blockSet.add(block)
  }
  const old = current(vol, t, f.slot)
  encodeFileset(f, vol.store.getMut(block), off)
  if (old) {
    unindex(t, f.slot, old)
    if (old.name !== f.name) nameFreed(t, old.name)
  }
  index(t, f)
  vol.observer?.filesetsChanged()
}

/** A name no longer used: freeName may hand it out again. */
function nameFreed(t: Table, name: string): void {
  const m = /^(.+)-([1-9][0-9]{0,8})$/.exec(name)
  if (m && (t.suffixHint.get(m[1]) ?? 1) > Number(m[2])) t.suffixHint.set(m[1], Number(m[2]))
}

/**
 * One more block of slots in the fileset table file (FORMAT.md §8.7), made in the running
 * transaction: the first one makes the file, names it in the superblock and sets the
 * feature bit that keeps older builds away.
 */
function growTable(vol: Volume, t: Table): void {
  let file = vol.sb.filesetExtIno ? vol.iget(vol.sb.filesetExtIno) : null
  if (!file) {
    file = vol.ialloc(S_IFREG | 0o600)
    file.r.nlink = 1
    file.r.dataVersion = 1
    file.extents = new ExtentMap()
    file.treeBlocks = []
    vol.sb.filesetExtIno = file.ino
    vol.sb.incompat |= INCOMPAT_FILESET_TABLE
    vol.markSbDirty()
    vol.backupAfterCommit()
  }
  const ext = loadExtents(vol, file)
  const last = t.extBlocks[t.extBlocks.length - 1]
  const {p} = vol.allocRun(1, last !== undefined ? last + 1 : undefined, true)
  vol.store.fresh(p) // a block of free (zero) slots, written through the journal
  const k = t.extBlocks.length
  mapRange(ext, k, 1, p)
  file.extentsDirty = true
  file.r.blocks++
  file.r.size += 4096
  vol.idirty(file)
  t.extBlocks.push(p)
  const first = vol.sb.filesetSlots + k * FILESETS_PER_BLOCK
  t.blocks.push({block: p, first, count: FILESETS_PER_BLOCK})
  t.blockSet.add(p)
  for (let i = 0; i < FILESETS_PER_BLOCK; i++) t.free.push(first + i)
  t.slots += FILESETS_PER_BLOCK
}

export function addFileset(vol: Volume, name: string, rootIno: number, extra: Partial<FilesetRecord> = {}): Fileset {
  const problem = filesetNameProblem(name)
  if (problem) fail('EUSAGE', problem) // a name the user chose: a bad argument
  if (findFileset(vol, name)) fail('EEXIST', `fileset '${name}' already exists`)
  // Ids are u32 and never reused (FORMAT.md §8.4): a damaged counter at the top ends here.
  if (vol.sb.nextFilesetId >= 0xffffffff) fail('ENOSPC', 'no fileset id is left (the next id is at its largest value)')
  const t = load(vol)
  // A damaged counter (its checksum sound) that names 0 or an id in use would make a second
  // fileset with that id: refused, nothing written (fsck repairs it: SB_NEXT_FILESET_ID).
  const id = vol.sb.nextFilesetId
  if (id === 0 || t.byId.has(id)) fail('EBADIMAGE', `the superblock's next fileset id (${id}) is ${id === 0 ? 'reserved' : 'already in use'}: the image is damaged; run 'prism fsck --repair'`)
  let slot = t.free.take()
  if (slot === undefined) {
    growTable(vol, t)
    slot = t.free.take()!
  }
  const f: Fileset = {
    slot, id: vol.sb.nextFilesetId, rootIno, parentId: 0, state: FS_ACTIVE, mode: MODE_NONE, flags: 0,
    created: Date.now(), clonestart: 0, stateIno: 0, srcFileset: 0, dirsDone: 0, dirsTotal: 0, name, coawCopied: 0, coawRewrites: 0, ...extra,
  }
  vol.sb.nextFilesetId++
  vol.markSbDirty()
  saveFileset(vol, f)
  return f
}

export function removeFileset(vol: Volume, f: Fileset): void {
  const t = load(vol)
  const {block, off} = slotAt(vol, t, f.slot)
  const old = current(vol, t, f.slot)
  encodeFileset(null, vol.store.getMut(block), off)
  if (old) {
    unindex(t, f.slot, old)
    t.free.push(f.slot)
    nameFreed(t, old.name)
  }
  vol.observer?.filesetsChanged()
}
