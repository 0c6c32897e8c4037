// The locality policy of the write path: copy-on-abundant-write (CoAW) and locality that
// lasts (docs/FORMAT.md §6.6). A file is seen as aligned regions; each region has a *home*,
// the place its blocks would occupy if they were contiguous, and a window around it (the
// home plus the slack left after it). A block written where it cannot go in place (it is
// shared, or committed) goes into its region's window when there is room, so that a cold
// sequential read still reads the region as one stream; only when a region holds "enough"
// runs outside its window is it rewritten as one run (extents.ts rewriteRegion), copying its
// unchanged blocks, shared or not. This module decides; extents.ts moves the data. It never
// changes a block that committed metadata references, and never runs for a file whose
// setting is off (pure block copy-on-write, as before the policy).
import {BLOCK_SIZE, IF_INLINE} from '../format/constants.js'
import type {Extent} from '../format/extent.js'
import {FILESET_LOCALITY_MASK, LOCALITY_INHERIT, LOCALITY_OFF, LOCALITY_ON, localityCode, regionBytesOf, type LocalityCode} from '../format/locality.js'
import {COMPAT_LOCALITY} from '../format/superblock.js'
import type {ExtentMap} from './extentmap.js'
import {loadExtents} from './extents.js'
import {filesetById, saveFileset, type Fileset} from './filesets.js'
import type {Inode} from './inode.js'
import type {Volume} from './volume.js'

export interface LocalityPolicy {
  /** region size in blocks (a power of two, 16 .. 256): the unit a rewrite copies */
  region: number
  /** group size in blocks (a multiple of the region): the unit a sequential read takes at once */
  group: number
  /** blocks of a group's overflow run: where its blocks go that cannot stay in its run */
  overflow: number
  /** free blocks wanted after a region rewritten out of its group's windows */
  regionSlack: number
  /** far runs in one region that make it rewritten */
  threshold: number
  /**
   * the part of a region's mapped blocks this file must use alone (reference count 1: the
   * blocks it has changed) before shared ones are copied for it: the "abundant" of
   * copy-on-abundant-write; a group of one region (a small file) is exempt
   */
  abundance: number
}

/**
 * The policy's constants, chosen by measurement (bench/locality.ts, bench/README.md
 * "Locality benchmark"). Exported so that the benchmark can sweep them, and tests shrink
 * them, in-process; nothing else changes them.
 */
export const localityTuning = {
  /** region size when no setting names one */
  defaultRegionBytes: 256 * 1024,
  /** group size (at least the region): the reader's stream chunk (extents.ts STREAM_CHUNK) */
  groupBytes: 4 * 1024 * 1024,
  /** a group's overflow run holds group / overflowDivisor blocks; a rewritten region wants region / overflowDivisor free after it */
  overflowDivisor: 8,
  /** far runs that trigger a region rewrite (a file of one region: 1) */
  threshold: 2,
  /** part of a region's blocks that must be this file's alone before a rewrite copies shared ones */
  abundance: 0.5,
}

/** The policy for a region size, with the tuned group, overflow and threshold. */
export function policyFor(regionBytes: number): LocalityPolicy {
  const t = localityTuning
  const region = Math.max(1, Math.floor(regionBytes / BLOCK_SIZE))
  const group = Math.max(region, Math.floor(t.groupBytes / BLOCK_SIZE / region) * region)
  const d = Math.max(1, t.overflowDivisor)
  return {region, group, overflow: Math.max(1, Math.floor(group / d)), regionSlack: Math.floor(region / d), threshold: Math.max(1, t.threshold), abundance: t.abundance}
}

/** What decided a file's policy, for `prism stat` and `prism set`. */
export interface EffectiveLocality {
  on: boolean
  regionBytes: number
  /** where on/off came from */
  from: 'file' | 'fileset' | 'image' | 'default'
}

/**
 * The setting in force for a file: the first of the inode's, the fileset's and the image's
 * codes that says on or off decides that (on when none does), and the first that names a
 * region size gives the size (the built-in default when none does).
 */
export function effectiveLocality(vol: Volume, filesetFlags: number, inode: Inode | null): EffectiveLocality {
  const levels: Array<[EffectiveLocality['from'], LocalityCode]> = [
    ['file', inode ? localityCode(inode.r.locality ?? 0) : LOCALITY_INHERIT],
    ['fileset', localityCode(filesetFlags & FILESET_LOCALITY_MASK)],
    ['image', vol.sb.localityDefault],
  ]
  let on: boolean | null = null
  let from: EffectiveLocality['from'] = 'default'
  let regionBytes = 0
  for (const [where, code] of levels) {
    if (code === LOCALITY_INHERIT) continue
    if (on === null) {
      on = code !== LOCALITY_OFF
      from = where
    }
    if (!regionBytes && regionBytesOf(code)) regionBytes = regionBytesOf(code)
  }
  return {on: on ?? true, regionBytes: regionBytes || localityTuning.defaultRegionBytes, from}
}

/** The policy a write to `inode` in a fileset with `filesetFlags` follows, or null when off. */
export function resolvePolicy(vol: Volume, filesetFlags: number, inode: Inode): LocalityPolicy | null {
  if (!inode.isReg) return null
  const e = effectiveLocality(vol, filesetFlags, inode)
  return e.on ? policyFor(e.regionBytes) : null
}

export {LOCALITY_INHERIT, LOCALITY_OFF, LOCALITY_ON}

// ---------------------------------------------------------------- regions and groups

/**
 * The pieces of the extents inside logical [lo, lo+n), and their *home*: the physical block
 * where lo sits for the most mapped blocks (each piece implies one: p - (l - lo)), so that a
 * base run split by many moved blocks stays the home against any single run moved whole.
 */
function piecesOf(ext: ExtentMap, lo: number, n: number): {pieces: Extent[], mapped: number, home: number} {
  const hi = lo + n
  const pieces: Extent[] = []
  let mapped = 0
  for (let i = ext.firstEndingAfter(lo); i < ext.length && ext.get(i).l < hi; i++) {
    const e = ext.get(i)
    const s = Math.max(e.l, lo)
    const t = Math.min(e.l + e.n, hi)
    pieces.push({l: s, n: t - s, p: e.p + (s - e.l)})
    mapped += t - s
  }
  return {pieces, mapped, home: homeOf(pieces, lo, mapped)}
}

/**
 * Where logical block `lo` sits for the most of `mapped` blocks of `pieces` (each implies a
 * place: p - (l - lo)), the lowest of equals; -1 for none. This runs for every write the
 * policy places: a weighted majority vote finds the answer without a table whenever one place
 * holds more than half of the blocks (a base run and what moved out of it), and a table
 * counts the rest.
 */
export function homeOf(pieces: Extent[], lo: number, mapped: number): number {
  if (pieces.length === 0) return -1
  let cand = -1
  let lead = 0
  for (const x of pieces) {
    const h = x.p - (x.l - lo)
    if (h === cand) lead += x.n
    else if (lead >= x.n) lead -= x.n
    else { cand = h; lead = x.n - lead }
  }
  let held = 0
  for (const x of pieces) if (x.p - (x.l - lo) === cand) held += x.n
  if (2 * held > mapped) return cand
  const votes = new Map<number, number>()
  let home = -1
  let best = 0
  for (const x of pieces) {
    const h = x.p - (x.l - lo)
    const v = (votes.get(h) ?? 0) + x.n
    votes.set(h, v)
    if (v > best || (v === best && h < home)) { best = v; home = h }
  }
  return home
}

/** Zones of overflow runs a file may have: each takes up to an eighth of a group per group. */
export const MAX_ZONES = 3

/**
 * One group of a file's map: its *base* (the run most of its mapped blocks belong to: where
 * they sit while nothing moved them) and its *overflow windows*, one in each of the file's
 * overflow zones (`overflow` blocks at zone + g * pol.overflow): a sequential read of the
 * group takes the base and each window in one sweep each. A group that is the whole of a file
 * shorter than a group has windows to its size, and none of overflow if it is one region.
 */
export interface GroupView {
  g: number
  lo: number
  pieces: Extent[]
  /** where the group's first logical block sits in its base run; -1 when it maps nothing */
  home: number
  /** blocks of the base window: the group, or the file's part of it rounded up to regions */
  window: number
  /** blocks of each overflow window (0: none) */
  overflow: number
  /** the first block of its window in each of the file's zones */
  ov: number[]
}

export function groupView(ext: ExtentMap, g: number, pol: LocalityPolicy, fileBlocks = 0, zones: number[] = []): GroupView {
  const lo = g * pol.group
  const {pieces, home} = piecesOf(ext, lo, pol.group)
  const last = pieces.length ? pieces[pieces.length - 1].l + pieces[pieces.length - 1].n : lo
  const span = Math.max(last, Math.min(fileBlocks, lo + pol.group)) - lo
  const window = Math.min(pol.group, Math.max(pol.region, Math.ceil(span / pol.region) * pol.region))
  const overflow = window > pol.region ? Math.max(1, Math.floor(window * pol.overflow / pol.group)) : 0
  return {g, lo, pieces, home, window, overflow, ov: overflow > 0 ? zones.map((z) => z + g * pol.overflow) : []}
}

function inBase(v: GroupView, p: number, n: number): boolean {
  return v.home >= 0 && p >= v.home && p + n <= v.home + v.window
}

/** Whether run [p, p+n) lies in the group's base or one of its overflow windows (a sequential read of the group takes it). */
export function isNear(v: GroupView, p: number, n: number): boolean {
  if (inBase(v, p, n)) return true
  for (const w of v.ov) if (p >= w && p + n <= w + v.overflow) return true
  return false
}

/**
 * The overflow zones of a file, as its map shows them. A zone starts on a multiple of the
 * group size (from the data area's start), and group g's window in it is `overflow` blocks
 * at zone + g * overflow: so a piece of group g names the zone zone = g*overflow below it,
 * rounded down to the group size, when it lies in that window. A zone is one that at least
 * two blocks name (blocks that landed there by chance rarely do); at most MAX_ZONES, the
 * most used first.
 */
export function zonesOf(ext: ExtentMap, pol: LocalityPolicy, fileBlocks: number, dataStart: number): number[] {
  const o = pol.overflow
  const a = pol.group
  const groups = Math.ceil(fileBlocks / pol.group)
  const blocks = new Map<number, number>()
  for (let g = 0; g < groups; g++) {
    const gv = groupView(ext, g, pol, fileBlocks)
    if (gv.overflow === 0) continue
    for (const x of gv.pieces) {
      if (inBase(gv, x.p, x.n)) continue
      const rel = x.p - dataStart - g * o
      if (rel < 0) continue
      const z = Math.floor(rel / a) * a
      if (rel - z + x.n > o) continue // not inside a window of a zone
      blocks.set(dataStart + z, (blocks.get(dataStart + z) ?? 0) + x.n)
    }
  }
  return [...blocks].filter(([, n]) => n >= 2).sort((x, y) => y[1] - x[1] || x[0] - y[0]).slice(0, MAX_ZONES).map(([z]) => z)
}

/** The file's zones: cached on the inode, found from its map the first time. */
export function fileZones(inode: Inode, ext: ExtentMap, pol: LocalityPolicy, fileBlocks: number, dataStart: number): number[] {
  if (!inode.zones) inode.zones = zonesOf(ext, pol, fileBlocks, dataStart)
  return inode.zones
}

/**
 * Region r of a file's map: its pieces, its own home (as a group's, from its pieces: a region
 * rewritten out of its group lives there), and the runs of it outside its group's windows and
 * its own window (its home, the region, and R/8 blocks either side: the room a rewrite leaves
 * after it).
 */
export interface RegionView {
  r: number
  lo: number
  pieces: Extent[]
  mapped: number
  home: number
  group: GroupView
  farRuns: number
  farBlocks: number
}

export function regionView(ext: ExtentMap, r: number, pol: LocalityPolicy, fileBlocks = 0, zones: number[] = []): RegionView {
  const lo = r * pol.region
  const group = groupView(ext, Math.floor(lo / pol.group), pol, fileBlocks, zones)
  const v: RegionView = {r, lo, pieces: [], mapped: 0, home: -1, group, farRuns: 0, farBlocks: 0}
  for (const x of group.pieces) {
    if (x.l + x.n <= lo || x.l >= lo + pol.region) continue
    const s = Math.max(x.l, lo)
    const t = Math.min(x.l + x.n, lo + pol.region)
    v.pieces.push({l: s, n: t - s, p: x.p + (s - x.l)})
    v.mapped += t - s
  }
  v.home = homeOf(v.pieces, lo, v.mapped)
  for (const x of v.pieces) {
    if (!nearRegion(v, x.p, x.n, pol)) {
      v.farRuns++
      v.farBlocks += x.n
    }
  }
  return v
}

/** Whether run [p, p+n) lies in the group's windows or the region's own. */
export function nearRegion(v: RegionView, p: number, n: number, pol: LocalityPolicy): boolean {
  if (isNear(v.group, p, n)) return true
  return v.home >= 0 && p >= v.home - pol.regionSlack && p + n <= v.home + pol.region + pol.regionSlack
}

/** Far runs the region would keep if logical blocks [a, b] were written elsewhere. */
export function farRunsKept(v: RegionView, a: number, b: number, pol: LocalityPolicy): number {
  let n = 0
  for (const x of v.pieces) {
    if (nearRegion(v, x.p, x.n, pol)) continue
    if (x.l >= a && x.l + x.n - 1 <= b) continue // overwritten whole
    n++
  }
  return n
}

/**
 * Where logical block l belongs while its group's run is whole: its place in the group's
 * base, or, for a group that maps nothing, right after the previous group's; undefined
 * when neither maps anything.
 */
export function naturalPlace(ext: ExtentMap, l: number, pol: LocalityPolicy, gv?: GroupView): number | undefined {
  const g = Math.floor(l / pol.group)
  const h = gv && gv.g === g ? gv.home : groupView(ext, g, pol).home
  if (h >= 0) return h + (l - g * pol.group)
  if (g === 0) return undefined
  const prev = groupView(ext, g - 1, pol).home
  return prev < 0 ? undefined : prev + pol.group + (l - g * pol.group)
}

/** Blocks of one overflow zone of a file of `fileBlocks` blocks: a window per group. */
export function zoneBlocks(fileBlocks: number, pol: LocalityPolicy): number {
  return Math.ceil(fileBlocks / pol.group) * pol.overflow
}

// ---------------------------------------------------------------- settings and reports

/** Records that locality settings may be stored in the image (the compat bit, FORMAT.md §11.2). */
function markCompat(vol: Volume): void {
  if (vol.sb.compat & COMPAT_LOCALITY) return
  vol.sb.compat |= COMPAT_LOCALITY
  vol.markSbDirty()
}

/** Sets a fileset's locality code (its record's flags, low five bits). */
export function setFilesetLocality(vol: Volume, fs: Fileset, code: LocalityCode): Fileset {
  const rec = filesetById(vol, fs.id) ?? fs
  const next = {...rec, flags: (rec.flags & ~FILESET_LOCALITY_MASK) | code}
  saveFileset(vol, next)
  markCompat(vol)
  return next
}

/** Sets an inode's locality code (the caller resolved it for a change: inode copy-on-write done). */
export function setInodeLocality(vol: Volume, inode: Inode, code: LocalityCode): void {
  inode.r.locality = code
  vol.idirty(inode)
  markCompat(vol)
}

/** Sets the image's default locality code (superblock 0x0B8). */
export function setImageLocality(vol: Volume, code: LocalityCode): void {
  vol.sb.localityDefault = code
  vol.markSbDirty()
  markCompat(vol)
}

/** What `prism stat` says about a file's layout. */
export interface Layout {
  /** extents of the map (0 for inline data) */
  extents: number
  /**
   * mapped blocks that something else also uses, as `prism du` counts them: another file (a
   * reference count above 1), or another fileset (an inode clones share: all its blocks)
   */
  sharedBlocks: number
  /** runs outside their group's base and overflow windows (what a cold sequential read seeks to) */
  farRuns: number
}

export function layoutOf(vol: Volume, inode: Inode, pol: LocalityPolicy): Layout {
  const out: Layout = {extents: 0, sharedBlocks: 0, farRuns: 0}
  if ((inode.r.flags & IF_INLINE) || !(inode.isReg || inode.isDir)) return out // a special file's area holds its device number
  const ext = loadExtents(vol, inode)
  out.extents = ext.length
  if (inode.r.share > 1) for (const e of ext) out.sharedBlocks += e.n
  else for (const e of ext) for (let i = 0; i < e.n; i++) if (vol.refcount(e.p + i) > 1) out.sharedBlocks++
  if (inode.isDir) return out
  const fileBlocks = Math.ceil(inode.r.size / BLOCK_SIZE)
  const regions = Math.ceil(fileBlocks / pol.region)
  const zones = zonesOf(ext, pol, fileBlocks, vol.sb.dataStart)
  for (let r = 0; r < regions; r++) out.farRuns += regionView(ext, r, pol, fileBlocks, zones).farRuns
  return out
}
