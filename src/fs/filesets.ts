// The fileset table: named filesystems inside the image. Each record names a root
// directory inode; clone bookkeeping (parent, clonestart, mode, progress) rides along.
import {FILESETS_PER_BLOCK, FILESET_RECORD_SIZE, FS_ACTIVE, MODE_NONE} from '../format/constants.js'
import {decodeFileset, encodeFileset, filesetNameProblem, type FilesetRecord} from '../format/fileset.js'
import {FormatError} from '../format/errors.js'
import {fail} from '../errors.js'
import type {Volume} from './volume.js'

export type {FilesetRecord}

export interface Fileset extends FilesetRecord {
  slot: number
}

function load(vol: Volume): Fileset[] {
  if (vol.filesetCache) return vol.filesetCache as Fileset[]
  const out: Fileset[] = []
  vol.store.prefetch(vol.sb.filesetTableStart, vol.sb.filesetTableBlocks)
  for (let b = 0; b < vol.sb.filesetTableBlocks; b++) {
    const buf = vol.store.get(vol.sb.filesetTableStart + b)
    for (let i = 0; i < FILESETS_PER_BLOCK; i++) {
      const slot = b * FILESETS_PER_BLOCK + i
      if (slot >= vol.sb.filesetSlots) break
      try {
        const r = decodeFileset(buf, i * FILESET_RECORD_SIZE, slot)
        if (r) out.push({...r, slot})
      } catch (e) {
        if (e instanceof FormatError) fail('EBADIMAGE', `${e.message}; run 'prism fsck --repair'`)
        throw e
      }
    }
  }
  vol.filesetCache = out
  return out
}

export function listFilesets(vol: Volume): Fileset[] {
  return load(vol).slice().sort((a, b) => a.id - b.id)
}

export function findFileset(vol: Volume, name: string): Fileset | null {
  return load(vol).find((f) => f.name === name) ?? null
}

export function getFileset(vol: Volume, name: string): Fileset {
  const f = findFileset(vol, name)
  if (!f) fail('ENOENT', `no fileset named '${name}' (see 'prism fileset list')`)
  return f
}

export function filesetById(vol: Volume, id: number): Fileset | null {
  return load(vol).find((f) => f.id === id) ?? null
}

/** Writes a record (new or changed) into its slot. */
export function saveFileset(vol: Volume, f: Fileset): void {
  const block = vol.sb.filesetTableStart + Math.floor(f.slot / FILESETS_PER_BLOCK)
  encodeFileset(f, vol.store.getMut(block), (f.slot % FILESETS_PER_BLOCK) * FILESET_RECORD_SIZE)
  const list = load(vol)
  const i = list.findIndex((x) => x.slot === f.slot)
  if (i >= 0) list[i] = f
  else list.push(f)
  vol.observer?.filesetsChanged()
}

export function addFileset(vol: Volume, name: string, rootIno: number, extra: Partial<FilesetRecord> = {}): Fileset {
  const problem = filesetNameProblem(name)
  if (problem) fail('EUSAGE', problem) // a name the user chose: a bad argument
  if (findFileset(vol, name)) fail('EEXIST', `fileset '${name}' already exists`)
  const used = new Set(load(vol).map((f) => f.slot))
  let slot = -1
  for (let s = 0; s < vol.sb.filesetSlots; s++) if (!used.has(s)) { slot = s; break }
  if (slot < 0) fail('ENOSPC', `the fileset table is full (${vol.sb.filesetSlots} filesets)`)
  // Ids are u32 and never reused (FORMAT.md §8.4): a damaged counter at the top ends here.
  if (vol.sb.nextFilesetId >= 0xffffffff) fail('ENOSPC', 'no fileset id is left (the next id is at its largest value)')
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
  const block = vol.sb.filesetTableStart + Math.floor(f.slot / FILESETS_PER_BLOCK)
  encodeFileset(null, vol.store.getMut(block), (f.slot % FILESETS_PER_BLOCK) * FILESET_RECORD_SIZE)
  const list = load(vol)
  const i = list.findIndex((x) => x.slot === f.slot)
  if (i >= 0) list.splice(i, 1)
  vol.observer?.filesetsChanged()
}
