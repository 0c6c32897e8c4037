// Space accounting per fileset, as `zfs list -o space` reports it: `referenced` is every
// block the fileset can reach (each counted once), `unique` the blocks that deleting the
// fileset would free: blocks whose every reference comes from this fileset's own inodes.
import {IF_INLINE, REFCOUNTS_PER_BLOCK} from '../format/constants.js'
import {dirList} from './dir.js'
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

export function filesetSpace(vol: Volume, fs: Fileset): FilesetSpace {
  const {dataStart, dataBlocks} = vol.sb
  const seenBlock = new Uint8Array(dataBlocks)
  const seenIno = new Set<number>()
  /** references from this fileset's private inodes to blocks that others may share */
  const partial = new Map<number, number>()
  const out: FilesetSpace = {referencedBlocks: 0, uniqueBlocks: 0, files: 0, dirs: 0}
  vol.store.prefetch(vol.sb.refcountStart, Math.ceil(dataBlocks / REFCOUNTS_PER_BLOCK))

  /** attribute inodes reached (FORMAT.md §14): references from this fileset's private inodes */
  const attrs = new Map<number, number>()
  const account = (inode: Inode, priv = inode.r.share <= 1) => {
    if (inode.r.xattrIno !== 0) attrs.set(inode.r.xattrIno, (attrs.get(inode.r.xattrIno) ?? 0) + (inode.r.share <= 1 ? 1 : 0))
    if (inode.r.flags & IF_INLINE || inode.isSpecial) return
    const ext = loadExtents(vol, inode)
    const blocks: Array<[number, number]> = ext.map((e) => [e.p, e.n])
    for (const t of inode.treeBlocks) blocks.push([t, 1])
    for (const [p, n] of blocks) {
      for (let b = p; b < p + n; b++) {
        const i = b - dataStart
        if (!seenBlock[i]) { seenBlock[i] = 1; out.referencedBlocks++ }
        if (!priv) continue
        const rc = vol.refcount(b)
        if (rc === 1) out.uniqueBlocks++
        else partial.set(b, (partial.get(b) ?? 0) + 1)
      }
    }
  }

  const stack = [vol.iget(fs.rootIno)]
  while (stack.length) {
    const dir = stack.pop()!
    out.dirs++
    account(dir)
    for (const e of dirList(vol, dir)) {
      if (seenIno.has(e.ino)) continue
      seenIno.add(e.ino)
      const child = vol.iget(e.ino)
      if (child.isDir) stack.push(child)
      else {
        out.files++
        account(child)
      }
    }
  }
  // An attribute set is this fileset's own when every inode naming it is.
  for (const [ino, privRefs] of attrs) {
    const a = vol.tryIget(ino)
    if (a) account(a, privRefs === a.r.share)
  }
  for (const [b, n] of partial) if (vol.refcount(b) === n) out.uniqueBlocks++
  return out
}
