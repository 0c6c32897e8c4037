// The scan-results file inside the image (docs/FORMAT.md §12): a regular inode named by no
// directory, reached from the superblock's scan_ino. It is a cache: results are keyed by
// (inode, generation, data_version) under the digest of what scanned them, so a reused
// inode number or changed content never matches. It is rewritten whole, copy-on-write,
// in the running transaction (the caller commits). The scan that used a set replaces or
// drops the entries of the files it covered; other entries stay as they are (§12.2).
import {S_IFREG, S_IFMT} from '../format/constants.js'
import {FormatError} from '../format/errors.js'
import {SCAN_MAX_SETS, decodeScanFile, encodeScanFile, ScanEntries, TreeCache, type ScanEntry, type ScanFile, type ScanSet} from '../format/scan.js'
import {PrismError} from '../errors.js'
import {readData, truncateData, writeData} from '../fs/extents.js'
import {touch, type Inode} from '../fs/inode.js'
import type {Volume} from '../fs/volume.js'

export {ScanEntries, TreeCache}
export type {ScanEntry, ScanFile, ScanSet}

/** The results file's inode, or null when there is none (or scan_ino is unusable). */
function resultsInode(vol: Volume): Inode | null {
  const ino = vol.sb.scanIno
  if (!ino) return null
  try {
    if (!vol.validIno(ino) || !vol.inodeSlotUsed(ino)) return null
    const inode = vol.iget(ino)
    return (inode.r.mode & S_IFMT) === S_IFREG ? inode : null
  } catch (e) {
    if (e instanceof PrismError) return null
    throw e
  }
}

/**
 * What the image remembers. A missing or damaged file reads as empty (with a notice): it is
 * only a cache, and the next save replaces it.
 */
export function loadScanFile(vol: Volume, notice?: (m: string) => void): ScanFile {
  const empty = (): ScanFile => ({sets: [], tree: new TreeCache()})
  const inode = resultsInode(vol)
  if (!inode) {
    if (vol.sb.scanIno) notice?.(`scan results inode ${vol.sb.scanIno} is unusable; starting afresh (prism fsck --repair drops it)`)
    return empty()
  }
  try {
    return decodeScanFile(readData(vol, inode, 0, inode.r.size))
  } catch (e) {
    if (e instanceof FormatError || e instanceof PrismError) {
      notice?.(`scan results are damaged (${e.message}); starting afresh`)
      return empty()
    }
    throw e
  }
}

/** The remembered result sets (loadScanFile without the tree). */
export function loadScanSets(vol: Volume, notice?: (m: string) => void): ScanSet[] {
  return loadScanFile(vol, notice).sets
}

/**
 * Writes the results, keeping at most SCAN_MAX_SETS sets, the most recently used. Each set's
 * entries must be in increasing inode order, and the tree sorted. The caller prunes the set
 * it used and the tree (the scan knows which of its entries are current without looking
 * again); the other sets are pruned when next used, as a stale entry can never match
 * (§12.2). Changes the running transaction only.
 */
export function saveScanFile(vol: Volume, file: ScanFile): void {
  const sets = [...file.sets].sort((a, b) => b.lastUsed - a.lastUsed).slice(0, SCAN_MAX_SETS)
  const data = encodeScanFile({sets, tree: file.tree})
  let inode = resultsInode(vol)
  if (!inode) {
    if (vol.sb.scanIno) vol.sb.scanIno = 0 // an unusable one is left to fsck
    inode = vol.ialloc(S_IFREG | 0o600)
    inode.r.nlink = 1
    inode.r.dataVersion = 1
    touch(inode.r, {a: true, m: true, c: true})
    vol.sb.scanIno = inode.ino
    vol.markSbDirty()
  } else {
    truncateData(vol, inode, 0)
    inode.r.dataVersion++
    touch(inode.r, {m: true, c: true})
  }
  writeData(vol, inode, 0, data)
  vol.idirty(inode)
}
