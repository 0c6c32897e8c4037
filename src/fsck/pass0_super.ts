// fsck pass 0: the superblock, its backup in the image's last block, and the journal
// superblock, checked from raw blocks before the volume is opened (opening needs a
// readable journal superblock). Without repair nothing is written: a damaged journal
// superblock is replaced in memory only, through a patched read-only device.
import type {BlockDevice} from '../device/device.js'
import {BLOCK_SIZE, JSB_MAGIC, STATE_CLEAN, STATE_DIRTY} from '../format/constants.js'
import {crc32} from '../format/checksum.js'
import {FormatError} from '../format/errors.js'
import {COMMIT_MAGIC, DESC_MAGIC, decodeJournalSuper, encodeJournalSuper} from '../format/journal.js'
import {INCOMPAT_CLONES, INCOMPAT_STICKY, decodeSuperblock, type Superblock} from '../format/superblock.js'
import {PrismError} from '../errors.js'
import {Journal} from '../journal/journal.js'
import type {FsckContext} from './context.js'
import {makeProblem, type FsckProblem} from './problems.js'

/** A read-only view of a device with some blocks replaced (never writes). */
export class PatchedDevice implements BlockDevice {
  readonly blocks: number
  readonly readOnly = true

  constructor(private inner: BlockDevice, private patches: Map<number, Buffer>) {
    this.blocks = inner.blocks
  }

  read(block: number, buf: Buffer): void {
    this.inner.read(block, buf)
    const n = buf.length / BLOCK_SIZE
    for (const [b, data] of this.patches) if (b >= block && b < block + n) data.copy(buf, (b - block) * BLOCK_SIZE)
  }

  write(): void {
    throw new PrismError('EROFS', 'fsck without --repair never writes')
  }

  sync(): void {}

  close(): void {
    this.inner.close()
  }

  dataRuns(start: number, count: number): Array<[number, number]> {
    const runs = this.inner.dataRuns?.(start, count) ?? [[start, start + count]]
    // A patched block holds data whatever the file has there.
    for (const b of this.patches.keys()) if (b >= start && b < start + count) runs.push([b, b + 1])
    runs.sort((x, y) => x[0] - y[0])
    const out: Array<[number, number]> = []
    for (const [a, b] of runs) {
      const last = out[out.length - 1]
      if (last && a <= last[1]) last[1] = Math.max(last[1], b)
      else out.push([a, b])
    }
    return out
  }
}

export interface Pass0Result {
  /** the device to open the volume on */
  dev: BlockDevice
  problems: FsckProblem[]
  notes: string[]
  /** the superblock copies must be rewritten (backup damaged or different) */
  rewriteSb: boolean
  /** problems fixed once the volume closes cleanly (superblock copies rewritten) */
  fixedOnClose: FsckProblem[]
  /** the fileset table file the backup superblock names (0: none, or no readable backup) */
  backupExtIno: number
}

/** Fields that never change after mkfs: primary and backup must agree on them. */
const STATIC_FIELDS: Array<keyof Superblock> = [
  'version', 'incompat', 'compat', 'roCompat', 'blockCount', 'inodeCount', 'filesetSlots', 'journalStart',
  'journalBlocks', 'refcountStart', 'refcountBlocks', 'inodeTableStart', 'inodeTableBlocks', 'filesetTableStart',
  'filesetTableBlocks', 'dataStart', 'dataBlocks', 'created', 'filesetExtIno',
]

function tryDecode(buf: Buffer): {sb: Superblock | null, err: string | null} {
  try {
    return {sb: decodeSuperblock(buf), err: null}
  } catch (e) {
    if (e instanceof FormatError) return {sb: null, err: e.message}
    throw e
  }
}

/** The superblock as a replay of the journal's complete transactions would write it, if one logs it. */
function journaledPrimary(dev: BlockDevice, sb: Superblock): Superblock | null {
  try {
    const j = new Journal(dev, sb.journalStart, sb.journalBlocks)
    j.loadSuper()
    const b0 = j.scan().blocks.get(0)
    return b0 ? tryDecode(b0).sb : null
  } catch (e) {
    if (e instanceof FormatError || e instanceof PrismError) return null // a damaged journal is reported below
    throw e
  }
}

/** Checks both superblock copies and the journal superblock; may repair the latter in place. */
export function pass0(dev: BlockDevice, repair: boolean): Pass0Result {
  const res: Pass0Result = {dev, problems: [], notes: [], rewriteSb: false, fixedOnClose: [], backupExtIno: 0}
  const patches = new Map<number, Buffer>()
  // (a file shorter than one block cannot hold a superblock: empty or not, it is no image)
  if (dev.blocks < 1) throw new PrismError('EBADIMAGE', 'not a Prism image (smaller than one 4 KiB block)')
  const b0 = Buffer.alloc(BLOCK_SIZE)
  dev.read(0, b0)
  const primary = tryDecode(b0)
  const backupAt = primary.sb ? primary.sb.blockCount - 1 : dev.blocks - 1
  let backup: {sb: Superblock | null, err: string | null} = {sb: null, err: 'past the end of the image'}
  if (backupAt >= 1 && backupAt < dev.blocks) {
    const bb = Buffer.alloc(BLOCK_SIZE)
    dev.read(backupAt, bb)
    backup = tryDecode(bb)
  }
  res.backupExtIno = backup.sb?.filesetExtIno ?? 0
  // Neither copy readable: leave the message to Volume.openDevice (an operational error).
  const sb = primary.sb ?? backup.sb
  if (!sb) {
    if (!repair && !dev.readOnly) res.dev = new PatchedDevice(dev, patches)
    return res
  }

  if (!primary.sb) {
    const p = makeProblem('SB_PRIMARY_BAD', 'superblock', {detail: primary.err ?? 'unreadable'})
    res.problems.push(p)
    res.fixedOnClose.push(p)
  } else if (!backup.sb) {
    const p = makeProblem('SB_BACKUP_BAD', `backup superblock (block ${backupAt})`, {detail: backup.err ?? 'unreadable'})
    res.problems.push(p)
    res.fixedOnClose.push(p)
    res.rewriteSb = true
  } else {
    // The expanding-clones bits change with async clones (FORMAT.md §2.4): the backup,
    // written only at a clean close, may be behind on them; pass 2 checks the primary's. A
    // feature bit set on first use (§11.2) may be missing from a backup written before.
    const incompatDiffers = (a: number, b: number) => ((a ^ b) & ~INCOMPAT_CLONES & ~(a & INCOMPAT_STICKY)) !== 0
    const differs = (p: Superblock, b: Superblock): string[] => {
      const d = STATIC_FIELDS.filter((f) => f === 'incompat' ? incompatDiffers(p.incompat, b.incompat) : p[f] !== b[f])
      if (!p.uuid.equals(b.uuid)) d.push('uuid')
      return d
    }
    let diff = differs(primary.sb, backup.sb)
    // A commit that changes a field the backup must not lack rewrites the backup once its
    // commit record is durable, before the primary's home write (Volume.backupAfterCommit):
    // a crash in between leaves the backup equal to the primary that replay will write.
    if (diff.length > 0) {
      const replayed = journaledPrimary(dev, primary.sb)
      if (replayed && differs(replayed, backup.sb).length === 0) diff = []
    }
    if (diff.length > 0) {
      const p = makeProblem('SB_BACKUP_MISMATCH', `backup superblock (block ${backupAt})`, {detail: `differs in ${diff.join(', ')}`})
      res.problems.push(p)
      res.fixedOnClose.push(p)
      res.rewriteSb = true
    }
  }

  // The journal superblock.
  const jb = Buffer.alloc(BLOCK_SIZE)
  dev.read(sb.journalStart, jb)
  let jerr: string | null = null
  try {
    const j = decodeJournalSuper(jb)
    if (j.blocks !== sb.journalBlocks) jerr = `journal size ${j.blocks} disagrees with the superblock (${sb.journalBlocks})`
  } catch (e) {
    if (!(e instanceof FormatError)) throw e
    jerr = e.message
  }
  if (jerr) {
    const seq = chooseJournalSeq(dev, sb, jb)
    const p = makeProblem('JOURNAL_SUPER', 'journal superblock', {detail: jerr})
    res.problems.push(p)
    const fresh = encodeJournalSuper({seq: seq.seq, blocks: sb.journalBlocks})
    res.notes.push(seq.note)
    if (repair) {
      dev.write(sb.journalStart, fresh)
      dev.sync()
      p.fixed = true
    } else {
      patches.set(sb.journalStart, fresh)
    }
  }
  // Without repair the volume is opened on a view that cannot write, whatever the device.
  if (!repair && (patches.size > 0 || !dev.readOnly)) res.dev = new PatchedDevice(dev, patches)
  return res
}

/**
 * The sequence number for a re-initialised journal superblock. The old one is kept when
 * its magic survived and the log's first block is a transaction with that number (the
 * transaction is then replayed as usual); otherwise the number is set past every record
 * still in the log, so that no stale transaction can ever be replayed.
 */
function chooseJournalSeq(dev: BlockDevice, sb: Superblock, jb: Buffer): {seq: number, note: string} {
  const oldSeq = jb.subarray(0, 8).equals(JSB_MAGIC) ? Number(jb.readBigUInt64LE(16)) : 0
  let maxSeq = 0
  let firstSeq = -1
  const chunk = Buffer.alloc(256 * BLOCK_SIZE)
  for (let b = 1; b < sb.journalBlocks; b += 256) {
    const n = Math.min(256, sb.journalBlocks - b)
    dev.read(sb.journalStart + b, chunk.subarray(0, n * BLOCK_SIZE))
    for (let i = 0; i < n; i++) {
      const o = i * BLOCK_SIZE
      const magic = chunk.readUInt32LE(o)
      if (magic !== DESC_MAGIC && magic !== COMMIT_MAGIC) continue
      if (chunk.readUInt32LE(o + BLOCK_SIZE - 4) !== crc32(chunk, o, o + BLOCK_SIZE - 4)) continue
      const s = Number(chunk.readBigUInt64LE(o + 8))
      if (b + i === 1 && magic === DESC_MAGIC) firstSeq = s
      if (s > maxSeq) maxSeq = s
    }
  }
  if (oldSeq > 0 && firstSeq === oldSeq) {
    return {seq: oldSeq, note: `journal superblock re-initialised with its sequence number ${oldSeq}; the log is kept`}
  }
  const seq = Math.max(oldSeq, maxSeq + 1, 1)
  return {seq, note: `journal superblock re-initialised at sequence ${seq}; nothing left in the log will be replayed`}
}

/** After the volume is open: counters that would break encoding, and the state field. */
export function pass0Volume(ctx: FsckContext, p0: Pass0Result): void {
  const sb = ctx.vol.sb
  if (sb.freeBlocks > sb.dataBlocks || sb.freeBlocks < 0) sb.freeBlocks = sb.dataBlocks // corrected in pass 4
  if (sb.freeInodes > sb.inodeCount) sb.freeInodes = sb.inodeCount
  if (sb.state !== STATE_CLEAN && sb.state !== STATE_DIRTY) {
    const p = ctx.report('SB_BAD_STATE', 'superblock', {value: sb.state})
    if (ctx.repair) {
      sb.state = STATE_DIRTY
      ctx.vol.markSbDirty()
      ctx.fixed(p)
    }
  }
  if (p0.rewriteSb && ctx.repair) ctx.vol.markSbDirty() // close() then writes both copies
}
