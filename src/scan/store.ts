// The scan-results file inside the image (docs/FORMAT.md §12): a regular inode named by no
// directory, reached from the superblock's scan_ino. It is a cache: results are keyed by
// (inode, generation, data_version) under the digest of what scanned them, so a reused
// inode number or changed content never matches. It is rewritten whole, copy-on-write,
// in the running transaction (the caller commits), and pruned of entries whose inode is
// gone or has changed.
import {S_IFREG, S_IFMT} from '../format/constants.js'
import {FormatError} from '../format/errors.js'
import {SCAN_MAX_SETS, decodeScanFile, encodeScanFile, type ScanEntry, type ScanSet} from '../format/scan.js'
import {PrismError} from '../errors.js'
import {readData, truncateData, writeData} from '../fs/extents.js'
import {touch, type Inode} from '../fs/inode.js'
import type {Volume} from '../fs/volume.js'

export type {ScanEntry, ScanSet}

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
 * Every set the image remembers. A missing or damaged file reads as empty (with a notice):
 * it is only a cache, and the next save replaces it.
 */
export function loadScanSets(vol: Volume, notice?: (m: string) => void): ScanSet[] {
  const inode = resultsInode(vol)
  if (!inode) {
    if (vol.sb.scanIno) notice?.(`scan results inode ${vol.sb.scanIno} is unusable; starting afresh (prism fsck --repair drops it)`)
    return []
  }
  try {
    return decodeScanFile(readData(vol, inode, 0, inode.r.size))
  } catch (e) {
    if (e instanceof FormatError || e instanceof PrismError) {
      notice?.(`scan results are damaged (${e.message}); starting afresh`)
      return []
    }
    throw e
  }
}

/** Is the entry still about the same content? (inode in use, same generation and version) */
export function entryCurrent(vol: Volume, e: ScanEntry): boolean {
  if (!vol.validIno(e.ino) || e.ino === vol.sb.scanIno || !vol.inodeSlotUsed(e.ino)) return false
  try {
    const inode = vol.iget(e.ino)
    return inode.isReg && inode.r.generation === e.generation && inode.r.dataVersion === e.dataVersion
  } catch (err) {
    if (err instanceof PrismError) return false
    throw err
  }
}

/**
 * Writes `sets` (the current one first or anywhere), keeping at most SCAN_MAX_SETS most
 * recently used, each pruned of stale entries. Changes the running transaction only.
 */
export function saveScanSets(vol: Volume, sets: ScanSet[]): void {
  const keep = [...sets].sort((a, b) => b.lastUsed - a.lastUsed).slice(0, SCAN_MAX_SETS)
  for (const s of keep) {
    s.entries = s.entries.filter((e) => entryCurrent(vol, e)).sort((a, b) => a.ino - b.ino)
  }
  const data = encodeScanFile(keep)
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
