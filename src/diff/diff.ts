// prism diff: what changed between two filesets (or subtrees), with zfs diff's codes:
//   -  removed        +  added        M  content modified        R  renamed (old -> new)
//   A  attributes changed (mode, owner, mtime or the noclone flag; content unchanged)
// Both trees are walked in parallel by path. A pair of directories that is one inode, or
// where one side is an unexpanded directory (IF_UNEXPANDED) whose source is the other side's
// directory (or both unexpanded from one source), is unchanged by construction and skipped,
// unless the source's subtree holds a noclone mark that expansion will leave out, or the
// clone holds its own copies of hard-linked files its source changed meanwhile.
// An entry naming the same inode on both sides is unchanged and never read. Renames are
// found by inode number: the same inode under different paths; a directory, whose clone is
// another inode, by its files (renamedDirs). Files with different inodes
// at one path are compared by size, then by their block maps (copy-on-write copies share
// their blocks), and only then by content.
import {DT_DIR, IF_INLINE, IF_NOCLONE, IF_UNEXPANDED, S_IFREG, modeOfDt} from '../format/constants.js'
import {nameText} from '../format/name.js'
import {PrismError, isDamage} from '../errors.js'
import {cloneSpec, hasLinkedCopies} from '../fs/expand.js'
import {byInode, dirForEach, enterDir} from '../fs/dir.js'
import {loadExtents, readData} from '../fs/extents.js'
import {fileTypeOf, type FileType} from '../fs/inode.js'
import {listXattrs} from '../fs/xattr.js'
import {getFileset, type Fileset} from '../fs/filesets.js'
import type {Inode} from '../fs/inode.js'
import {Namespace} from '../fs/namespace.js'
import type {Volume} from '../fs/volume.js'
import {call, runNow, type Frame} from '../frames.js'
import {checkInterrupt} from '../interrupt.js'

export type DiffCode = '-' | '+' | 'M' | 'R' | 'A'
export type EntryType = FileType

export interface DiffEntry {
  code: DiffCode
  type: EntryType
  /** path relative to the compared roots ('/' is the root itself) */
  path: string
  /** R only: the new path */
  to?: string
}

export interface DiffStats {
  dirsWalked: number
  /** directory pairs skipped as unchanged (same inode, or unexpanded from the other side) */
  dirsSkipped: number
  /** entries naming the same inode on both sides (never read) */
  shared: number
  /** inodes whose content was read for a comparison */
  inodesRead: number
  bytesRead: number
  /** every inode whose content was read (tests check no shared inode is among them) */
  readInodes: Set<number>
  /** inodes looked at (not their content) for noclone marks before skipping a subtree */
  inodesScanned: number
}

export interface DiffResult {
  entries: DiffEntry[]
  stats: DiffStats
  /**
   * What the damage of a damaged image kept from being compared (a directory that cannot be
   * listed on either side: its subtree is left out; a file whose inode or data cannot be
   * read): its path on side a (or b) and why. The rest is compared.
   */
  unreadable: Array<{path: string, message: string}>
}

export interface DiffSide {
  fileset: string
  path: string
}

interface Ent {
  ino: number
  type: number
}

interface Side {
  fs: Fileset
  map: Map<string, Ent>
}

const typeName = (t: number): EntryType => fileTypeOf(modeOfDt(t) || S_IFREG)
const join = (rel: string, name: string) => (rel === '/' ? '/' : rel + '/') + name
const byPath = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

export function diff(vol: Volume, a: DiffSide, b: DiffSide): DiffResult {
  const sa: Side = {fs: getFileset(vol, a.fileset), map: new Map()}
  const sb: Side = {fs: getFileset(vol, b.fileset), map: new Map()}
  const rootA = new Namespace(vol, sa.fs).resolve(a.path, true)
  const rootB = new Namespace(vol, sb.fs).resolve(b.path, true)
  if (!rootA.isDir) throw new PrismError('ENOTDIR', `${a.fileset}:${a.path}: not a directory`)
  if (!rootB.isDir) throw new PrismError('ENOTDIR', `${b.fileset}:${b.path}: not a directory`)
  const stats: DiffStats = {dirsWalked: 0, dirsSkipped: 0, shared: 0, inodesRead: 0, bytesRead: 0, readInodes: new Set(), inodesScanned: 0}
  const out: DiffEntry[] = []
  const unreadable: DiffResult['unreadable'] = []
  /** `fn`, or null with `rel` recorded as unreadable when the damage keeps it from being read. */
  const readable = <T>(rel: string, fn: () => T): T | null => {
    try {
      return fn()
    } catch (e) {
      if (!isDamage(e)) throw e
      unreadable.push({path: rel, message: e.message})
      return null
    }
  }

  /**
   * The entries a user of the directory sees. An unexpanded directory whose pair differs is
   * expanded first, through the namespace (which applies its clone's excludes).
   */
  const view = (dir: Inode, side: 'a' | 'b', rel: string): Map<string, Ent> => {
    let d = dir
    if (d.r.flags & IF_UNEXPANDED) {
      const at = side === 'a' ? a.path : b.path
      const full = rel === '/' ? at : (at.endsWith('/') ? at.slice(0, -1) : at) + rel
      d = new Namespace(vol, side === 'a' ? sa.fs : sb.fs).resolve(full || '/', true)
    }
    const m = new Map<string, Ent>()
    dirForEach(vol, d, (ino, type, name) => { m.set(nameText(name), {ino, type}) })
    return m
  }
  // An unexpanded directory stands for its source only in a clone without --exclude (one
  // with excludes leaves parts out, so it is expanded and compared instead), without private
  // copies of hard-linked files its source changed since (expansion gives those names the
  // copies, not what the source directory names: hasLinkedCopies), and only when the
  // source's subtree holds no inode marked noclone (expansion leaves those out too).
  const plain = (f: Fileset): boolean => cloneSpec(vol, f).exclude.length === 0 && !hasLinkedCopies(vol, f)
  const source = (d: Inode): string | null => (d.r.flags & IF_UNEXPANDED ? `${d.r.srcFileset}:${d.r.srcIno}` : null)
  const unchanged = (da: Inode, db: Inode): boolean => {
    if (da.ino === db.ino) return true
    const x = plain(sa.fs) ? source(da) : null
    const y = plain(sb.fs) ? source(db) : null
    if (x !== null && x === y) return true // both will show one source, filtered alike
    if (x === `${sb.fs.id}:${db.ino}`) return !holdsNoclone(db)
    if (y === `${sa.fs.id}:${da.ino}`) return !holdsNoclone(da)
    return false
  }
  /**
   * Whether directory `top`'s subtree holds an inode marked noclone. Every inode under it is
   * read (not its data). Unexpanded directories inside are not entered: their expansion leaves
   * out what is marked in their source, and nothing in them can be marked before they expand.
   */
  const holdsNoclone = (top: Inode): boolean => {
    const stack = [top]
    let found = false
    while (stack.length > 0 && !found) {
      const d = stack.pop()!
      if (d.r.flags & IF_UNEXPANDED) continue
      dirForEach(vol, d, (ino, type) => {
        const c = vol.iget(ino)
        stats.inodesScanned++
        if (c.r.flags & IF_NOCLONE) found = true
        else if (type === DT_DIR) stack.push(c)
      })
    }
    return found
  }

  const seenA = new Set<number>([rootA.ino])
  const seenB = new Set<number>([rootB.ino])
  // (a frame per directory level, run off the JavaScript stack: src/frames.ts)
  function* walk(da: Inode | null, db: Inode | null, rel: string): Frame {
    checkInterrupt() // (Ctrl-C: a directory at a time)
    if (da && db) {
      const same = readable(rel, () => unchanged(da, db))
      if (same === null) return // (recorded: left out)
      if (same) { stats.dirsSkipped++; return }
    }
    stats.dirsWalked++
    if (da && db && readable(rel, () => attrsDiffer(vol, da, db, false))) out.push({code: 'A', type: 'dir', path: rel})
    // A directory that cannot be listed on either side: its subtree is left out on both.
    const ea = da ? readable(rel, () => view(da, 'a', rel)) : new Map<string, Ent>()
    const eb = ea && db ? readable(rel, () => view(db, 'b', rel)) : new Map<string, Ent>()
    if (!ea || !eb) return
    const names = new Set([...ea.keys(), ...eb.keys()])
    for (const name of names) {
      const x = ea.get(name)
      const y = eb.get(name)
      const p = join(rel, name)
      if (x) sa.map.set(p, x)
      if (y) sb.map.set(p, y)
      const xd = x?.type === DT_DIR ? x : null
      const yd = y?.type === DT_DIR ? y : null
      if (xd || yd) {
        // (a directory met twice on one side is a loop in a damaged image: named, left out)
        const dirs = readable(p, () => {
          if (xd) enterDir(seenA, xd.ino, `${a.fileset}:${p}`)
          if (yd) enterDir(seenB, yd.ino, `${b.fileset}:${p}`)
          return [xd ? vol.iget(xd.ino) : null, yd ? vol.iget(yd.ino) : null] as const
        })
        if (!dirs) {
          // (nothing of it is compared: not even as added or removed)
          sa.map.delete(p)
          sb.map.delete(p)
          continue
        }
        yield* call(walk(dirs[0], dirs[1], p))
      }
    }
  }
  runNow(walk(rootA, rootB, '/'))

  // Directories renamed (see renamedDirs): side a's entries under each are compared as if
  // they stood at its new path; what is left is matched as below, by path and by inode.
  // Same inode at the same path: unchanged (goneA, goneB). Same inode elsewhere: renamed.
  const goneA = new Set<string>()
  const goneB = new Set<string>()
  let renames = renamesByIno(sa.map, sb.map, goneA, goneB)
  const moved = renamedDirs(sa.map, sb.map, renames)
  let ta = sa.map // side a, by its path in b's terms
  const origin = new Map<string, string>() // such a path -> its path in a, where they differ
  if (moved.size > 0) {
    ta = new Map()
    for (const [p, x] of sa.map) {
      const to = translate(p, moved)
      ta.set(to, x)
      if (to !== p) origin.set(to, p)
    }
    // (matched again in b's terms: a file of a renamed directory is now at its own path)
    goneA.clear()
    goneB.clear()
    renames = renamesByIno(ta, sb.map, goneA, goneB)
  }
  const inA = (t: string) => origin.get(t) ?? t
  for (const [from, to] of moved) out.push({code: 'R', type: 'dir', path: from, to})
  stats.shared += goneA.size // (so far: one inode at one path, never read)
  for (const [pa, pb] of renames.values()) {
    out.push({code: 'R', type: typeName(ta.get(pa)!.type), path: inA(pa), to: pb})
    goneA.add(pa)
    goneB.add(pb)
  }
  // What is left: removed, added, or at one path on both sides with different inodes. (In
  // the order of side a's inode numbers for a large tree: byInode; the output is sorted below.)
  for (const {p, x} of byInode([...ta].map(([p, x]) => ({p, x, ino: x.ino})))) {
    if (goneA.has(p)) continue
    const y = goneB.has(p) ? undefined : sb.map.get(p)
    if (x.type === DT_DIR) {
      if (y?.type === DT_DIR) {
        // A pair walked together had its attributes compared there; one inside a renamed
        // directory (or the renamed directory itself, shown as R) was not walked as a pair.
        if (origin.has(p) && !moved.has(origin.get(p)!) && readable(p, () => attrsDiffer(vol, vol.iget(x.ino), vol.iget(y.ino), false))) out.push({code: 'A', type: 'dir', path: p})
        continue
      }
      out.push({code: '-', type: 'dir', path: inA(p)})
      continue
    }
    if (!y || y.type !== x.type) {
      out.push({code: '-', type: typeName(x.type), path: inA(p)})
      continue
    }
    goneB.add(p)
    const code = readable(p, () => {
      const ia = vol.iget(x.ino)
      const ib = vol.iget(y.ino)
      return !sameContent(vol, ia, ib, stats) ? 'M' : attrsDiffer(vol, ia, ib, true) ? 'A' : ''
    })
    if (code) out.push({code, type: typeName(x.type), path: p})
  }
  for (const [p, y] of sb.map) {
    if (goneB.has(p)) continue
    const x = ta.get(p)
    if (x && x.type === DT_DIR && y.type === DT_DIR) continue
    out.push({code: '+', type: typeName(y.type), path: p})
  }
  out.sort((u, v) => byPath(u.path, v.path) || byPath(u.code, v.code))
  unreadable.sort((u, v) => byPath(u.path, v.path))
  return {entries: out, stats, unreadable}
}

/**
 * Files (not directories) that are one inode at different paths, as [path in a, path in b]
 * pairs keyed by the path in a. One inode at the same path on both sides is unchanged: added
 * to `goneA` and `goneB` when given, and never a rename. A file with several names on a side
 * (hard links) pairs its names in path order.
 */
function renamesByIno(ma: Map<string, Ent>, mb: Map<string, Ent>, goneA = new Set<string>(), goneB = new Set<string>()): Map<string, [string, string]> {
  const byInoA = new Map<number, string[]>()
  for (const [p, x] of ma) {
    if (x.type === DT_DIR) continue
    if (mb.get(p)?.ino === x.ino) { goneA.add(p); goneB.add(p); continue }
    const l = byInoA.get(x.ino)
    if (l) l.push(p)
    else byInoA.set(x.ino, [p])
  }
  const byInoB = new Map<number, string[]>()
  for (const [p, y] of mb) {
    if (goneB.has(p) || y.type === DT_DIR || !byInoA.has(y.ino)) continue
    const l = byInoB.get(y.ino)
    if (l) l.push(p)
    else byInoB.set(y.ino, [p])
  }
  const out = new Map<string, [string, string]>()
  for (const [ino, pb] of byInoB) {
    const pa = byInoA.get(ino)!.sort(byPath)
    pb.sort(byPath)
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) out.set(pa[i], [pa[i], pb[i]])
  }
  return out
}

/**
 * Directories renamed from a to b, old path -> new path. A clone's directories are its own
 * copies (a directory renamed in a clone is another inode than its source's), so a directory
 * is known by its files, which are shared: a directory only in a and one only in b are one
 * renamed when at least half the files under each are the same inodes at the same paths
 * below them (git's rule of half, for trees). Each file renamed votes for the pair of
 * directories where its two paths part (`/a/s/f -> /b/s/f`: `/a` and `/b`). Renamed
 * directories are never nested on either side: one inside another renamed one shows as it
 * did before (`-` and `+`, its files as R), at its parent's new path.
 */
function renamedDirs(ma: Map<string, Ent>, mb: Map<string, Ent>, renames: Map<string, [string, string]>): Map<string, string> {
  const votes = new Map<string, {from: string, to: string, n: number}>()
  for (const [pa, pb] of renames.values()) {
    let i = pa.length
    let j = pb.length
    // (back over the last path components the two paths share)
    while (i > 0 && j > 0) {
      const a = pa.lastIndexOf('/', i - 1)
      const b = pb.lastIndexOf('/', j - 1)
      if (a <= 0 || b <= 0 || pa.slice(a, i) !== pb.slice(b, j)) break
      i = a
      j = b
    }
    if (i === pa.length) continue // (the names differ: a file's own rename)
    const from = pa.slice(0, i)
    const to = pb.slice(0, j)
    if (ma.get(from)?.type !== DT_DIR || mb.get(to)?.type !== DT_DIR || mb.has(from) || ma.has(to)) continue
    const k = from + '\0' + to
    const v = votes.get(k)
    if (v) v.n++
    else votes.set(k, {from, to, n: 1})
  }
  const out = new Map<string, string>()
  if (votes.size === 0) return out
  const filesUnder = (m: Map<string, Ent>, dirs: Set<string>): Map<string, number> => {
    const n = new Map<string, number>()
    for (const [p, e] of m) {
      if (e.type === DT_DIR) continue
      for (let k = p.lastIndexOf('/'); k > 0; k = p.lastIndexOf('/', k - 1)) {
        const d = p.slice(0, k)
        if (dirs.has(d)) n.set(d, (n.get(d) ?? 0) + 1)
      }
    }
    return n
  }
  const cands = [...votes.values()].sort((x, y) => y.n - x.n || byPath(x.from, y.from) || byPath(x.to, y.to))
  const filesA = filesUnder(ma, new Set(cands.map((c) => c.from)))
  const filesB = filesUnder(mb, new Set(cands.map((c) => c.to)))
  const within = (p: string, d: string) => p === d || p.startsWith(d + '/')
  const taken: Array<{from: string, to: string}> = []
  for (const c of cands) {
    if (2 * c.n < filesA.get(c.from)! || 2 * c.n < filesB.get(c.to)!) continue
    if (taken.some((t) => within(c.from, t.from) || within(t.from, c.from) || within(c.to, t.to) || within(t.to, c.to))) continue
    taken.push(c)
    out.set(c.from, c.to)
  }
  return out
}

/** `p` at its new path if it lies in a directory renamed (`moved`: never nested), else `p`. */
function translate(p: string, moved: Map<string, string>): string {
  for (let k = p.length; k > 0; k = p.lastIndexOf('/', k - 1)) {
    const to = moved.get(p.slice(0, k))
    if (to !== undefined) return to + p.slice(k)
  }
  return p
}

/** Mode, owner, noclone mark, extended attributes (FORMAT.md §14) and, for files, mtime. */
function attrsDiffer(vol: Volume, a: Inode, b: Inode, withMtime: boolean): boolean {
  const x = a.r
  const y = b.r
  return x.mode !== y.mode || x.uid !== y.uid || x.gid !== y.gid || (x.flags & IF_NOCLONE) !== (y.flags & IF_NOCLONE) ||
    (withMtime && (x.mtimeS !== y.mtimeS || x.mtimeNs !== y.mtimeNs)) || xattrsDiffer(vol, a, b)
}

/** One attribute inode (the common case of a clone) is the same set without reading it. */
function xattrsDiffer(vol: Volume, a: Inode, b: Inode): boolean {
  if (a.r.xattrIno === b.r.xattrIno) return false
  const la = listXattrs(vol, a)
  const lb = listXattrs(vol, b)
  return la.length !== lb.length || la.some((e, i) => !e.name.equals(lb[i].name) || !e.value.equals(lb[i].value))
}

const CMP_CHUNK = 1024 * 1024

/** Same bytes? Size first, then the block maps, and only then the content. */
function sameContent(vol: Volume, a: Inode, b: Inode, stats: DiffStats): boolean {
  // A device's content is its number (a FIFO's and a socket's are zeros).
  if (a.isSpecial || b.isSpecial) return a.isSpecial === b.isSpecial && a.r.area.equals(b.r.area)
  if (a.r.size !== b.r.size) return false
  const size = a.r.size
  if (size === 0) return true
  // Inline data lives in the inode record itself: comparing it reads no data.
  if (a.r.flags & IF_INLINE && b.r.flags & IF_INLINE) return a.r.area.subarray(0, size).equals(b.r.area.subarray(0, size))
  if (!(a.r.flags & IF_INLINE) && !(b.r.flags & IF_INLINE)) {
    const ea = loadExtents(vol, a)
    const eb = loadExtents(vol, b)
    if (ea.equals(eb)) return true
  }
  stats.inodesRead += 2
  stats.readInodes.add(a.ino)
  stats.readInodes.add(b.ino)
  for (let off = 0; off < size; off += CMP_CHUNK) {
    const n = Math.min(CMP_CHUNK, size - off)
    const x = readData(vol, a, off, n)
    const y = readData(vol, b, off, n)
    stats.bytesRead += 2 * n
    if (!x.equals(y)) return false
  }
  return true
}

