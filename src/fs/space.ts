// Space accounting per fileset, as `zfs list -o space` reports it: `referenced` is every
// block the fileset can reach (each counted once), `unique` the blocks that deleting the
// fileset would free: blocks whose every reference comes from this fileset's own inodes.
//
// One pass serves every fileset (`prism fileset list`): each fileset's tree is walked once,
// and what an inode shared by many filesets contributes is worked out once, not once per
// fileset. Nothing is sized by the image: a block is remembered only when more than one
// mapping refers to it (its reference count is above 1), so the cost is the walk, whatever
// the image's size (a per-block array would cost its size once per fileset).
import {DT_DIR, IF_INLINE, REFCOUNTS_PER_BLOCK} from '../format/constants.js'
import {dirForEachRaw} from './dir.js'
import {loadExtents} from './extents.js'
import type {Fileset} from './filesets.js'
import type {Inode} from './inode.js'
import type {Volume} from './volume.js'

export interface FilesetSpace {
  referencedBlocks: number
  uniqueBlocks: number
  files: number
  dirs: number
}

/** What one inode maps: blocks counted once (reference count 1), and the others. */
interface Mapped {
  single: number
  /** blocks with a reference count above 1 */
  shared: number[]
  /** the inode's attribute inode (FORMAT.md §14), 0 = none */
  xattrIno: number
  nlink: number
  share: number
}

/** The blocks `inode` maps (data, extent-tree nodes, directory blocks), split by reference count. */
function mapped(vol: Volume, inode: Inode): Mapped {
  const out: Mapped = {single: 0, shared: [], xattrIno: inode.r.xattrIno, nlink: inode.r.nlink, share: inode.r.share}
  if (inode.r.flags & IF_INLINE || inode.isSpecial) return out
  const runs: Array<[number, number]> = loadExtents(vol, inode).map((e) => [e.p, e.n])
  for (const t of inode.treeBlocks) runs.push([t, 1])
  for (const [p, n] of runs) {
    // Reference counts a table block at a time.
    let b = p
    while (b < p + n) {
      const i = b - vol.sb.dataStart
      const lim = Math.min(p + n, b + (REFCOUNTS_PER_BLOCK - (i % REFCOUNTS_PER_BLOCK)))
      const counts = vol.refcountsOf(b, lim - b)
      for (let k = 0; k < counts.length; k++) {
        if (counts[k] <= 1) out.single++
        else out.shared.push(b + k)
      }
      b = lim
    }
  }
  return out
}

/** The space of every fileset, in one pass (see the top of this file). */
export function allFilesetSpace(vol: Volume, filesets: Fileset[]): Map<number, FilesetSpace> {
  // Inodes shared between filesets (share > 1): what they map, worked out once.
  const sharedInodes = new Map<number, Mapped>()
  const out = new Map<number, FilesetSpace>()
  for (const fs of filesets) out.set(fs.id, walkOne(vol, fs, sharedInodes))
  return out
}

export function filesetSpace(vol: Volume, fs: Fileset): FilesetSpace {
  return walkOne(vol, fs, new Map())
}

function walkOne(vol: Volume, fs: Fileset, sharedInodes: Map<number, Mapped>): FilesetSpace {
  const out: FilesetSpace = {referencedBlocks: 0, uniqueBlocks: 0, files: 0, dirs: 0}
  /** blocks with several references, met in this fileset (each counted once) */
  const seenShared = new Set<number>()
  /** of those, references from this fileset's own inodes */
  const own = new Map<number, number>()
  /** hard-linked inodes met (a name each: counted once) */
  const seenLinked = new Set<number>()
  /** attribute inodes reached (FORMAT.md §14): references from this fileset's own inodes */
  const attrs = new Map<number, number>()

  const account = (m: Mapped, priv: boolean) => {
    if (m.xattrIno !== 0) attrs.set(m.xattrIno, (attrs.get(m.xattrIno) ?? 0) + (priv ? 1 : 0))
    out.referencedBlocks += m.single
    if (priv) out.uniqueBlocks += m.single
    for (const b of m.shared) {
      if (!seenShared.has(b)) { seenShared.add(b); out.referencedBlocks++ }
      if (priv) own.set(b, (own.get(b) ?? 0) + 1)
    }
  }

  const stack: number[] = [fs.rootIno]
  const seenDirs = new Set<number>() // a damaged tree must not make the walk go round
  while (stack.length) {
    const ino = stack.pop()!
    if (seenDirs.has(ino)) continue
    seenDirs.add(ino)
    const dir = vol.iget(ino)
    out.dirs++
    account(mapped(vol, dir), true) // a directory is never shared
    dirForEachRaw(vol, dir, (ino, type) => {
      if (type === DT_DIR) { stack.push(ino); return }
      const known = sharedInodes.get(ino)
      if (known) {
        if (known.nlink > 1) {
          if (seenLinked.has(ino)) return
          seenLinked.add(ino)
        }
        out.files++
        account(known, false)
        return
      }
      const child = vol.iget(ino)
      if (child.r.nlink > 1) {
        if (seenLinked.has(ino)) return
        seenLinked.add(ino)
      }
      out.files++
      const m = mapped(vol, child)
      const priv = child.r.share <= 1
      if (!priv) sharedInodes.set(ino, m)
      account(m, priv)
    })
  }
  // An attribute set is this fileset's own when every inode naming it is (an attribute inode
  // names no other, so accounting it adds nothing to attrs while this loop runs).
  for (const [ino, privRefs] of [...attrs]) {
    let m = sharedInodes.get(ino)
    if (!m) {
      const a = vol.tryIget(ino)
      if (!a) continue
      m = mapped(vol, a)
      if (m.share > 1) sharedInodes.set(ino, m)
    }
    account(m, privRefs === m.share)
  }
  for (const [b, n] of own) if (vol.refcount(b) === n) out.uniqueBlocks++
  return out
}
