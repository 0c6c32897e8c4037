// `prism defrag FILESET[:/path]`: rewrites fragmented files on demand, as e4defrag or
// `btrfs filesystem defragment` do, but without breaking sharing that the locality policy
// keeps (docs/FORMAT.md §6.6): a group of blocks no other file uses is rewritten as one
// run; in a group that shares blocks, only the regions the policy itself would rewrite are.
// The content of every file stays exactly what it was: no data_version, mtime or ctime
// changes, and an inode shared between filesets stays shared (its blocks move for all of
// them). It never copies a block that no policy rule asks for.
import {IF_INLINE} from '../format/constants.js'
import {nameBytes} from '../format/name.js'
import {defragInode, loadExtents} from '../fs/extents.js'
import {saveFileset} from '../fs/filesets.js'
import type {Inode} from '../fs/inode.js'
import {policyFor} from '../fs/locality.js'
import type {Namespace} from '../fs/namespace.js'

export interface DefragStats {
  /** regular files looked at */
  files: number
  /** files whose layout changed */
  changed: number
  /** runs rewritten (groups of unshared blocks, or regions) */
  rewrites: number
  /** blocks copied */
  copied: number
  /** of those, blocks still used elsewhere: the space it cost */
  copiedShared: number
  /** extents and far runs of the files looked at, before and after */
  extentsBefore: number
  extentsAfter: number
  farRunsBefore: number
  farRunsAfter: number
}

/** Defragments the file at `path`, or every regular file under it. */
export function defrag(ns: Namespace, path: string, onFile?: (path: string, stats: DefragStats) => void): DefragStats {
  const steps = defragSteps(ns, path, onFile)
  for (;;) {
    const r = steps.next()
    if (r.done) return r.value
  }
}

/**
 * defrag() in steps: it yields after each file (each is rewritten within one step), so that
 * a server can answer its mounts between them (src/server/sliced.ts). `changes` moves
 * whenever they may have changed the image meanwhile: each entry of a directory listed before
 * is then looked up again, and one that has gone is passed over.
 */
export function* defragSteps(ns: Namespace, path: string, onFile?: (path: string, stats: DefragStats) => void, changes?: () => number): Generator<void, DefragStats> {
  const vol = ns.vol
  const out: DefragStats = {files: 0, changed: 0, rewrites: 0, copied: 0, copiedShared: 0, extentsBefore: 0, extentsAfter: 0, farRunsBefore: 0, farRunsAfter: 0}
  ns.materialize(path)
  const top = ns.resolve(path, true)
  const one = (inode: Inode, at: string) => {
    if (!inode.isReg) return
    out.files++
    // Inline data or one run: nothing to do, and no far run (its one run is its home).
    const runs = inode.r.flags & IF_INLINE ? 0 : loadExtents(vol, inode).length
    if (runs <= 1) {
      out.extentsBefore += runs
      out.extentsAfter += runs
      return
    }
    const before = ns.layout(inode)
    const s = defragInode(vol, inode, policyFor(ns.locality(inode).regionBytes))
    const after = ns.layout(inode)
    out.extentsBefore += before.extents
    out.extentsAfter += after.extents
    out.farRunsBefore += before.farRuns
    out.farRunsAfter += after.farRuns
    if (s.rewrites > 0) {
      out.changed++
      out.rewrites += s.rewrites
      out.copied += s.copied
      out.copiedShared += s.copiedShared
      const rec = ns.record()
      saveFileset(vol, {...rec, coawCopied: rec.coawCopied + s.copiedShared, coawRewrites: rec.coawRewrites + s.rewrites})
    }
    onFile?.(at, out)
    vol.maybeCommit()
  }
  if (!top.isDir) {
    one(top, path)
    return out
  }
  // Depth first, iteratively; each directory is listed once (a hard link is looked at once per name).
  const seen = new Set<number>()
  const stack: Array<{ino: number, at: string}> = [{ino: top.ino, at: path === '/' ? '' : path.replace(/\/+$/, '')}]
  let known = changes?.() ?? 0
  while (stack.length) {
    const {ino, at} = stack.pop()!
    let dir: Inode | null = vol.iget(ino)
    const list = ns.readdirInode(dir)
    for (const e of list) {
      if (changes && changes() !== known) {
        // Others changed the image since the listing: the directory and the entry are taken again.
        known = changes()
        dir = ns.dirIfStill(at || '/', ino)
      }
      if (changes && (dir === null || ns.lookupEntry(dir, nameBytes(e.name))?.ino !== e.ino)) continue
      const child = vol.iget(e.ino)
      const p = `${at}/${e.name}`
      if (child.isDir) stack.push({ino: child.ino, at: p})
      else if (!seen.has(child.ino)) {
        seen.add(child.ino)
        one(child, p)
        yield
      }
    }
  }
  return out
}

