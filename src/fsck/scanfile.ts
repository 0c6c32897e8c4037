// fsck and the scan-results file (docs/FORMAT.md §12): the inode the superblock's scan_ino
// names is in use without any directory naming it. It counts as referenced (one link, share
// 1; pass 1 already claimed its blocks). If it is unusable (out of range, free, not a
// regular file, named by a directory, or its content does not decode) the problem is
// SCAN_RESULTS_BAD and the repair drops it: scan results are only a cache.
import {IF_ORPHAN} from '../format/constants.js'
import {decodeInode} from '../format/inode.js'
import {decodeScanFile} from '../format/scan.js'
import {readData} from '../fs/extents.js'
import {Inode} from '../fs/inode.js'
import {R_FILESET, T_FREE, T_REG, type FsckContext} from './context.js'
import {freeInode} from './pass3_links.js'

/** Runs between pass 2 (names) and pass 3 (counts and reachability). */
export function checkScanFile(ctx: FsckContext): void {
  const sb = ctx.vol.sb
  const ino = sb.scanIno
  if (!ino) return
  let why: string | null = null
  let ours = false
  if (ino > sb.inodeCount) why = `inode number ${ino} is outside the inode table`
  else if (ctx.itype[ino] === T_FREE) why = `inode ${ino} is not in use`
  else if (ctx.itype[ino] !== T_REG) why = `inode ${ino} is not a regular file`
  else if (ctx.reach[ino] !== 0) why = `inode ${ino} is named by a directory`
  else {
    ours = true
    if (ctx.iflags[ino] & IF_ORPHAN) why = `inode ${ino} is on the orphan list`
    else if (ctx.rewrites.has(ino)) why = `inode ${ino} has a damaged block map`
    else {
      try {
        const {buf, off} = ctx.inodeAt(ino)
        const inode = new Inode(ino, decodeInode(buf, off, ino))
        decodeScanFile(readData(ctx.vol, inode, 0, inode.r.size))
      } catch (e) {
        why = (e as Error).message
      }
    }
  }
  if (why === null) {
    ctx.reach[ino] |= R_FILESET
    ctx.trees[ino] = 1
    ctx.filesetTrees[ino] = 1
    ctx.firstCount[ino] = 1
    ctx.totalNames[ino] = 1
    return
  }
  const p = ctx.report('SCAN_RESULTS_BAD', 'superblock scan_ino', {detail: why})
  if (!ctx.repair) {
    // Still referenced until repaired: do not report it unreachable as well.
    if (ours) { ctx.reach[ino] |= R_FILESET; ctx.trees[ino] = 1; ctx.totalNames[ino] = 1; ctx.firstCount[ino] = 1 }
    return
  }
  sb.scanIno = 0
  ctx.vol.markSbDirty()
  if (ours) freeInode(ctx, ino)
  ctx.fixed(p)
}
