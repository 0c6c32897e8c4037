// prism fsck, the library entry points: opens the image (read-only unless repairing),
// runs passes 0-4 and the deferred repairs, and returns the problems, statistics and the
// e2fsck exit code (0 clean, 1 all fixed, 4 errors left, 8 operational error). Without
// repair it never writes a byte: the journal is replayed in memory only. It prints
// nothing; the CLI (src/commands/fsck.ts) formats the result.
import {pushAll} from '../arrays.js'
import type {BlockDevice} from '../device/device.js'
import {openImageDevice} from '../device/snapshot.js'
import {FormatError} from '../format/errors.js'
import {PrismError} from '../errors.js'
import '../fs/namespace.js'
import {Volume} from '../fs/volume.js'
import {FsckContext, T_DIR, T_FREE, T_LNK, T_REG, T_XATTR} from './context.js'
import {pass0, pass0Volume} from './pass0_super.js'
import {pass1} from './pass1_inodes.js'
import {pass2} from './pass2_dirs.js'
import {pass3} from './pass3_links.js'
import {checkScanFile} from './scanfile.js'
import {checkTableFile} from './filesettable.js'
import {checkCloneState} from './clonestate.js'
import {pass4} from './pass4_refcounts.js'
import {checkXattrs} from './xattrs.js'
import {applyDeferred} from './rebuild.js'
import type {FsckProblem} from './problems.js'

export type {FsckProblem}
export {PROBLEMS, type ProblemCode} from './problems.js'

export interface FsckStats {
  inodes: number
  files: number
  dirs: number
  symlinks: number
  /** character and block devices, FIFOs and sockets */
  specials: number
  /** attribute inodes (each holds the extended attributes of one or more inodes) */
  xattrSets: number
  filesets: number
  blocksUsed: number
  blocksFree: number
  inodesFree: number
}

export interface FsckResult {
  exitCode: 0 | 1 | 4 | 8
  problems: FsckProblem[]
  stats: FsckStats
  /** journal transactions replayed (in memory only, without repair) */
  replayed: number
  usedBackupSuperblock: boolean
  notes: string[]
}

export interface FsckOptions {
  repair: boolean
  onProgress?: (phase: string, done: number, total: number) => void
}

function emptyStats(): FsckStats {
  return {inodes: 0, files: 0, dirs: 0, symlinks: 0, specials: 0, xattrSets: 0, filesets: 0, blocksUsed: 0, blocksFree: 0, inodesFree: 0}
}

function exitCodeOf(problems: FsckProblem[]): 0 | 1 | 4 {
  if (problems.some((p) => !p.fixed)) return 4
  return problems.length > 0 ? 1 : 0
}

/**
 * Checks (and with `repair`, repairs) the image on `dev`. The device is closed before this
 * returns. Throws PrismError when the image cannot be opened at all (not a Prism image,
 * both superblocks damaged, truncated); an I/O error while checking gives exit code 8.
 */
export function fsckDevice(dev: BlockDevice, opts: FsckOptions): FsckResult {
  const repair = opts.repair && !dev.readOnly
  let p0
  try {
    p0 = pass0(dev, repair)
  } catch (e) {
    dev.close()
    throw e
  }
  let vol: Volume
  try {
    vol = Volume.openDevice(p0.dev, {write: repair, noOrphans: true})
  } catch (e) {
    p0.dev.close()
    if (e instanceof FormatError) throw new PrismError('EBADIMAGE', e.message)
    throw e
  }
  if (repair && vol.usedBackupSb) {
    // Opening on the backup recounted the counters and rechained the orphan list through
    // the volume's inode cache: commit that, and drop the cache, before editing raw blocks.
    vol.commit()
    vol.abort()
  }
  const ctx = new FsckContext(vol, repair, opts.onProgress)
  ctx.backupExtIno = p0.backupExtIno
  pushAll(ctx.problems, p0.problems)
  pushAll(ctx.notes, p0.notes)
  if (opts.repair && !repair) ctx.notes.push('the device is read-only: checking without repairing')
  if (vol.replayed > 0) {
    ctx.notes.push(repair ? `replayed ${vol.replayed} journal transaction(s)` : `${vol.replayed} journal transaction(s) not yet replayed were read in memory`)
    if (!repair) ctx.overlay = vol.journal.scan().blocks
  }
  let counts: {freeBlocks: number, freeInodes: number}
  try {
    pass0Volume(ctx, p0)
    pass1(ctx)
    pass2(ctx)
    checkScanFile(ctx)
    checkTableFile(ctx)
    checkCloneState(ctx)
    pass3(ctx)
    checkXattrs(ctx)
    counts = pass4(ctx)
    applyDeferred(ctx)
    if (repair) vol.commit()
  } catch (e) {
    try {
      vol.closeAbort()
    } catch {
      // The first error is the one to report.
    }
    p0.dev.close()
    if (e instanceof PrismError && (e.code === 'EIO' || e.code === 'EBADIMAGE')) {
      ctx.notes.push(`fsck stopped: ${e.message}`)
      return {exitCode: 8, problems: ctx.problems, stats: emptyStats(), replayed: vol.replayed, usedBackupSuperblock: vol.usedBackupSb, notes: ctx.notes}
    }
    throw e
  }
  try {
    vol.close()
  } catch (e) {
    p0.dev.close()
    if (e instanceof PrismError) {
      ctx.notes.push(`could not close the image: ${e.message}`)
      return {exitCode: 8, problems: ctx.problems, stats: emptyStats(), replayed: vol.replayed, usedBackupSuperblock: vol.usedBackupSb, notes: ctx.notes}
    }
    throw e
  }
  if (repair) for (const p of p0.fixedOnClose) p.fixed = true
  return {
    exitCode: exitCodeOf(ctx.problems),
    problems: ctx.problems,
    stats: statsOf(ctx, counts),
    replayed: vol.replayed,
    usedBackupSuperblock: vol.usedBackupSb,
    notes: ctx.notes,
  }
}

function statsOf(ctx: FsckContext, counts: {freeBlocks: number, freeInodes: number}): FsckStats {
  const s = emptyStats()
  for (let ino = 1; ino < ctx.inoEnd; ino++) {
    switch (ctx.itype[ino]) {
      case T_FREE: continue
      case T_REG: s.files++; break
      case T_DIR: s.dirs++; break
      case T_LNK: s.symlinks++; break
      case T_XATTR: s.xattrSets++; break
      default: s.specials++
    }
    s.inodes++
  }
  s.filesets = ctx.filesets.length + ctx.newFilesets.filter((f) => f.info.slot >= 0).length
  if (ctx.repair) {
    // The deferred repairs allocated and freed through the volume, which kept the counters.
    s.blocksFree = ctx.vol.sb.freeBlocks
    s.inodesFree = ctx.vol.sb.freeInodes
    const newRoots = counts.freeInodes - s.inodesFree
    s.inodes += newRoots
    s.dirs += newRoots
  } else {
    s.blocksFree = counts.freeBlocks
    s.inodesFree = counts.freeInodes
  }
  s.blocksUsed = ctx.sb.dataBlocks - s.blocksFree
  return s
}

/**
 * Opens the image file (an exclusive lock when repairing, a shared one otherwise) and
 * checks it. Failures to open (no such file, lock busy, not a Prism image) are thrown as
 * PrismError; the CLI maps them to exit status 8.
 */
export function fsckImage(path: string, opts: FsckOptions & {wait?: number}): FsckResult {
  const dev = openImageDevice(path, {write: opts.repair, wait: opts.wait})
  try {
    return fsckDevice(dev, opts)
  } catch (e) {
    if (e instanceof PrismError && e.code !== 'EINTR') throw new PrismError(e.code, e.message.startsWith(path) ? e.message : `${path}: ${e.message}`)
    throw e
  }
}
