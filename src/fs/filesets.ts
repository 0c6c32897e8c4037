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
import {FILESETS_PER_BLOCK, FILESET_RECORD_SIZE, FS_ACTIVE, FS_DELETING, FS_EXPANDING, MODE_NONE, S_IFREG} from '../format/constants.js'
import {decodeFileset, encodeFileset, filesetNameProblem, type FilesetRecord} from '../format/fileset.js'
import {FormatError} from '../format/errors.js'
import {INCOMPAT_FILESET_TABLE} from '../format/superblock.js'
import {fail} from '../errors.js'
import {loadExtents, mapRange} from './extents.js'
import type {Volume} from './volume.js'

export type {FilesetRecord}

export interface Fileset extends FilesetRecord {
  slot: number
}

/** A min-heap of free slot numbers: a new fileset takes the lowest (FORMAT.md §8.4). */
class SlotHeap {
  private h: number[] = []

  get size(): number {
    return this.h.length
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

/** The table in memory, and its indexes. */
interface Table {
  bySlot: Map<number, Fileset>
  byId: Map<number, Fileset>
  byName: Map<string, Fileset>
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

function index(t: Table, f: Fileset): void {
  t.bySlot.set(f.slot, f)
  t.byId.set(f.id, f)
  if (!t.byName.has(f.name)) t.byName.set(f.name, f)
  if (f.parentId !== 0) addTo(t.children, f.parentId, f.id)
  if (f.state === FS_EXPANDING) addTo(t.inFlight, f.srcFileset, f.id)
  if (f.state === FS_EXPANDING || f.state === FS_DELETING) t.building.add(f.id)
  if (f.state === FS_DELETING) t.deleting.add(f.id)
  if (f.state === FS_EXPANDING && f.mode === 2) t.asyncExpanding.add(f.id)
  t.sorted = null
}

function unindex(t: Table, f: Fileset): void {
  t.bySlot.delete(f.slot)
  if (t.byId.get(f.id) === f) t.byId.delete(f.id)
  if (t.byName.get(f.name) === f) t.byName.delete(f.name)
  if (f.parentId !== 0) dropFrom(t.children, f.parentId, f.id)
  if (f.state === FS_EXPANDING) dropFrom(t.inFlight, f.srcFileset, f.id)
  t.building.delete(f.id)
  t.deleting.delete(f.id)
  t.asyncExpanding.delete(f.id)
  t.sorted = null
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

function load(vol: Volume): Table {
  if (vol.filesetCache) return vol.filesetCache as Table
  const t: Table = {
    bySlot: new Map(), byId: new Map(), byName: new Map(), children: new Map(), inFlight: new Map(), building: new Set(),
    deleting: new Set(), asyncExpanding: new Set(), free: new SlotHeap(), slots: vol.sb.filesetSlots, extBlocks: [], sorted: null,
    suffixHint: new Map(),
  }
  t.extBlocks = filesetTableBlocks(vol)
  t.slots = vol.sb.filesetSlots + t.extBlocks.length * FILESETS_PER_BLOCK
  const fixedBlocks = Math.ceil(vol.sb.filesetSlots / FILESETS_PER_BLOCK)
  // Parts of the fixed table never written are holes of the sparse image: free slots all.
  const withData = new Uint8Array(fixedBlocks)
  for (const [a, b] of vol.dataRunsOf(vol.sb.filesetTableStart, fixedBlocks)) withData.fill(1, a - vol.sb.filesetTableStart, b - vol.sb.filesetTableStart)
  const blocks: Array<{block: number, first: number, count: number}> = []
  for (let b = 0; b < fixedBlocks; b++) {
    const first = b * FILESETS_PER_BLOCK
    const count = Math.min(FILESETS_PER_BLOCK, vol.sb.filesetSlots - first)
    if (withData[b]) blocks.push({block: vol.sb.filesetTableStart + b, first, count})
    else for (let i = 0; i < count; i++) t.free.push(first + i)
  }
  t.extBlocks.forEach((block, k) => blocks.push({block, first: vol.sb.filesetSlots + k * FILESETS_PER_BLOCK, count: FILESETS_PER_BLOCK}))
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
      const slot = first + i
      try {
        const r = decodeFileset(buf, i * FILESET_RECORD_SIZE, slot)
        if (r) index(t, {...r, slot})
        else t.free.push(slot)
      } catch (e) {
        if (e instanceof FormatError) fail('EBADIMAGE', `${e.message}; run 'prism fsck --repair'`)
        throw e
      }
    }
  }
  vol.filesetCache = t
  return t
}

/** Every fileset, by id. */
export function listFilesets(vol: Volume): Fileset[] {
  const t = load(vol)
  t.sorted ??= [...t.byId.values()].sort((a, b) => a.id - b.id)
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
  for (let i = t.suffixHint.get(base) ?? 1; ; i++) {
    const name = `${base}-${i}`
    if (!t.byName.has(name)) {
      t.suffixHint.set(base, i)
      return name
    }
  }
}

export function findFileset(vol: Volume, name: string): Fileset | null {
  return load(vol).byName.get(name) ?? null
}

export function getFileset(vol: Volume, name: string): Fileset {
  const f = findFileset(vol, name)
  if (!f) fail('ENOENT', `no fileset named '${name}' (see 'prism fileset list')`)
  return f
}

export function filesetById(vol: Volume, id: number): Fileset | null {
  return load(vol).byId.get(id) ?? null
}

/** The filesets whose parent is `id`. */
export function childrenOf(vol: Volume, id: number): Fileset[] {
  const t = load(vol)
  return [...(t.children.get(id) ?? [])].map((c) => t.byId.get(c)!).filter(Boolean)
}

/** Filesets still EXPANDING from source `srcId` (its clones in flight). */
export function expandingFrom(vol: Volume, srcId: number): Fileset[] {
  const t = load(vol)
  const ids = t.inFlight.get(srcId)
  if (!ids) return []
  return [...ids].sort((a, b) => a - b).map((c) => t.byId.get(c)!)
}

/** True when some fileset is EXPANDING or DELETING. */
export function anyBuilding(vol: Volume): boolean {
  return load(vol).building.size > 0
}

/** Filesets EXPANDING or DELETING. */
export function buildingFilesets(vol: Volume): Fileset[] {
  const t = load(vol)
  return [...t.building].sort((a, b) => a - b).map((id) => t.byId.get(id)!)
}

/** Filesets DELETING (clones whose building stopped half-way, or is in progress). */
export function deletingFilesets(vol: Volume): Fileset[] {
  const t = load(vol)
  return [...t.deleting].map((id) => t.byId.get(id)!)
}

/** True when an asynchronous clone is still expanding (its background expander should run). */
export function anyAsyncExpanding(vol: Volume): boolean {
  const t = vol.filesetCache as Table | null
  return !!t && t.asyncExpanding.size > 0
}

/** Writes a record (new or changed) into its slot. */
export function saveFileset(vol: Volume, f: Fileset): void {
  const t = load(vol)
  const {block, off} = slotAt(vol, t, f.slot)
  encodeFileset(f, vol.store.getMut(block), off)
  const old = t.bySlot.get(f.slot)
  if (old) {
    unindex(t, old)
    if (old.name !== f.name) nameFreed(t, old.name)
  }
  index(t, f)
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
    file.extents = []
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
  for (let i = 0; i < FILESETS_PER_BLOCK; i++) t.free.push(first + i)
  t.slots += FILESETS_PER_BLOCK
}

export function addFileset(vol: Volume, name: string, rootIno: number, extra: Partial<FilesetRecord> = {}): Fileset {
  const problem = filesetNameProblem(name)
  if (problem) fail('EINVAL', problem)
  if (findFileset(vol, name)) fail('EEXIST', `fileset '${name}' already exists`)
  // Ids are u32 and never reused (FORMAT.md §8.4): a damaged counter at the top ends here.
  if (vol.sb.nextFilesetId >= 0xffffffff) fail('ENOSPC', 'no fileset id is left (the next id is at its largest value)')
  const t = load(vol)
  if (t.free.size === 0) growTable(vol, t)
  const slot = t.free.pop()!
  const f: Fileset = {
    slot, id: vol.sb.nextFilesetId, rootIno, parentId: 0, state: FS_ACTIVE, mode: MODE_NONE, flags: 0,
    created: Date.now(), clonestart: 0, stateIno: 0, srcFileset: 0, dirsDone: 0, dirsTotal: 0, name, ...extra,
  }
  vol.sb.nextFilesetId++
  vol.markSbDirty()
  saveFileset(vol, f)
  return f
}

export function removeFileset(vol: Volume, f: Fileset): void {
  const t = load(vol)
  const {block, off} = slotAt(vol, t, f.slot)
  encodeFileset(null, vol.store.getMut(block), off)
  const old = t.bySlot.get(f.slot)
  if (old) {
    unindex(t, old)
    t.free.push(f.slot)
    nameFreed(t, old.name)
  }
}
