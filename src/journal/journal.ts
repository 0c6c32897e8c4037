// The journal: a JBD-like redo log in a fixed region of the image. A transaction is
// written as descriptor blocks (where each block belongs and its CRC), the block images,
// and a commit record, and is made durable before any of its blocks is written in place.
// Replay applies every complete transaction in sequence order and ignores a torn one.
// Layout and rules: docs/FORMAT.md §3. This layer knows blocks, never what is in them.
import {pushAll} from '../arrays.js'
import fs from 'node:fs'
import type {BlockDevice} from '../device/device.js'
import {crc32} from '../format/checksum.js'
import {BLOCK_SIZE} from '../format/constants.js'
import {FormatError} from '../format/errors.js'
import {PrismError} from '../errors.js'
import {
  TAGS_PER_DESC, decodeCommit, decodeDescriptor, decodeJournalSuper, encodeCommit, encodeDescriptor,
  encodeJournalSuper, txnCrcOf, type Tag,
} from '../format/journal.js'

export interface ReplayResult {
  transactions: number
  /** final image of every logged block, last transaction wins */
  blocks: Map<number, Buffer>
  firstSeq: number
  lastSeq: number
}

/**
 * Debug hook for the competing-process test (test/stress.test.ts): when PRISM_JOURNAL_TRACE
 * names a file, every commit appends `pid seq start end` (wall-clock ms, fractional) to it:
 * from the first log write to the last in-place write of the transaction.
 */
const TRACE = process.env.PRISM_JOURNAL_TRACE || null
/**
 * Failpoint for tests (test/import-atomic.test.ts, test/signal-commits.test.ts):
 * PRISM_KILL_AFTER_COMMITS=N makes the process send itself a signal right after its Nth
 * commit, as kill would at that point: SIGKILL, or PRISM_KILL_SIGNAL (SIGINT, SIGTERM, ...).
 */
const KILL_AFTER = Number(process.env.PRISM_KILL_AFTER_COMMITS) || 0
const KILL_SIGNAL = (process.env.PRISM_KILL_SIGNAL || 'SIGKILL') as NodeJS.Signals
/** Blocks of the log written at once by a commit (4 MiB); a smaller transaction is one write. */
const BODY_CHUNK = 1024
const wallMs = () => performance.timeOrigin + performance.now()

export class Journal {
  /** sequence number of the next transaction */
  seq = 1
  /** next free block offset inside the journal region (block 0 is the journal superblock) */
  private pos = 1
  /** true once a transaction has been logged since the last checkpoint */
  private logged = false
  /** transactions committed by this process (for tests and the no-overlap check) */
  committedSeqs: number[] = []
  /** blocks logged since the last checkpoint: a replay would write their logged image */
  private loggedTargets = new Set<number>()

  constructor(private dev: BlockDevice, readonly start: number, readonly size: number) {}

  /** Blocks a single transaction may hold, descriptors and commit included. */
  get capacity(): number {
    return this.size - 1
  }

  /** Largest number of metadata blocks that fit in one transaction. */
  get maxBlocks(): number {
    const usable = this.capacity - 1
    return usable - Math.ceil(usable / (TAGS_PER_DESC + 1))
  }

  static format(dev: BlockDevice, start: number, size: number): void {
    dev.write(start, encodeJournalSuper({seq: 1, blocks: size}))
  }

  loadSuper(): void {
    const buf = Buffer.alloc(BLOCK_SIZE)
    this.dev.read(this.start, buf)
    const j = decodeJournalSuper(buf)
    if (j.blocks !== this.size) throw new FormatError('journal superblock', 'value', 'journal size disagrees with the superblock')
    this.seq = j.seq
    this.pos = 1
  }

  /** Reads every complete transaction from block 1 on, without applying anything. */
  scan(): ReplayResult {
    const res: ReplayResult = {transactions: 0, blocks: new Map(), firstSeq: this.seq, lastSeq: this.seq - 1}
    let pos = 1
    let seq = this.seq
    const buf = Buffer.alloc(BLOCK_SIZE)
    for (;;) {
      const txn = this.readTxn(pos, seq, buf)
      if (!txn) break
      for (const [target, data] of txn.blocks) res.blocks.set(target, data)
      res.transactions++
      res.lastSeq = seq
      pos = txn.next
      seq++
    }
    return res
  }

  private readTxn(pos: number, seq: number, buf: Buffer): {blocks: Array<[number, Buffer]>, next: number} | null {
    const blocks: Array<[number, Buffer]> = []
    const tags: Tag[] = []
    for (;;) {
      if (pos >= this.size) return null
      this.dev.read(this.start + pos, buf)
      const commit = decodeCommit(buf, seq)
      if (commit) {
        if (commit.nblocks !== blocks.length || blocks.length === 0 || commit.txnCrc !== txnCrcOf(tags)) return null
        return {blocks, next: pos + 1}
      }
      const t = decodeDescriptor(buf, seq)
      if (!t) return null
      pos++
      if (pos + t.length > this.size) return null
      const data = Buffer.alloc(t.length * BLOCK_SIZE)
      this.dev.read(this.start + pos, data)
      for (let i = 0; i < t.length; i++) {
        const b = data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)
        if (crc32(b) !== t[i].crc) return null // torn: this transaction never committed
        blocks.push([t[i].target, b])
        tags.push(t[i])
      }
      pos += t.length
    }
  }

  /** Applies committed transactions in place, makes them durable, and empties the journal. */
  replay(): ReplayResult {
    const res = this.scan()
    if (res.transactions === 0) return res
    writeRuns(this.dev, res.blocks)
    this.dev.sync()
    this.seq = res.lastSeq + 1
    this.writeSuper()
    this.dev.sync()
    return res
  }

  /**
   * Logs `blocks` as one transaction and writes them in place. Ordered mode: the caller has
   * already written the data blocks this transaction makes reachable; the first sync below
   * makes them durable together with the log, before the commit record is written.
   * `onCommitted` runs once the commit record is durable, before any home write.
   */
  commit(blocks: Map<number, Buffer>, onCommitted?: () => void): void {
    const n = blocks.size
    if (n === 0) return
    const ndesc = Math.ceil(n / TAGS_PER_DESC)
    const total = n + ndesc + 1
    if (total > this.capacity) {
      // Long operations commit in steps (maybeCommit): only one change that cannot be split
      // gets here, and it changes nothing (the transaction is dropped by the caller's abort).
      throw new PrismError('ENOSPC', `this change needs ${n} metadata blocks at once, more than the journal holds (${this.maxBlocks}); make the image with a larger --journal-size`)
    }
    const t0 = TRACE ? wallMs() : 0
    if (this.pos + total > this.size) this.checkpoint()

    const targets = [...blocks.keys()]
    // Room on the host for every home write first (a never-written part of the sparse image
    // takes new host blocks): once the commit record is down the change is made, and a home
    // write failing for want of space would leave it made beside a command that said it failed.
    if (this.dev.reserve) forRuns(targets, (b, n) => this.dev.reserve!(b, n))
    // The log is written through one buffer of at most BODY_CHUNK blocks, reused: a
    // transaction of half a 128 MiB journal no longer allocates a second 64 MiB copy of itself.
    const body = Buffer.alloc(Math.min(n + ndesc, BODY_CHUNK) * BLOCK_SIZE)
    const allTags: Tag[] = []
    let o = 0
    let at = this.start + this.pos
    const spill = (): void => {
      this.dev.write(at, o === body.length ? body : body.subarray(0, o))
      at += o / BLOCK_SIZE
      o = 0
    }
    for (let d = 0; d < ndesc; d++) {
      const chunk = targets.slice(d * TAGS_PER_DESC, (d + 1) * TAGS_PER_DESC)
      const tags = chunk.map((t) => ({target: t, crc: crc32(blocks.get(t)!)}))
      if (o === body.length) spill()
      encodeDescriptor(this.seq, tags, body.subarray(o, o + BLOCK_SIZE))
      o += BLOCK_SIZE
      for (const t of chunk) {
        if (o === body.length) spill()
        blocks.get(t)!.copy(body, o)
        o += BLOCK_SIZE
      }
      pushAll(allTags, tags)
    }
    if (o > 0) spill()
    this.dev.sync()
    const commit = Buffer.alloc(BLOCK_SIZE)
    encodeCommit({seq: this.seq, nblocks: n, txnCrc: txnCrcOf(allTags), time: Date.now()}, commit)
    this.dev.write(this.start + this.pos + n + ndesc, commit)
    this.dev.sync()
    // Durable from here on: replay would redo the rest.
    this.committedSeqs.push(this.seq)
    for (const t of targets) this.loggedTargets.add(t)
    this.pos += total
    this.seq++
    this.logged = true
    onCommitted?.()
    writeRuns(this.dev, blocks)
    if (TRACE) fs.appendFileSync(TRACE, `${process.pid} ${this.seq - 1} ${t0.toFixed(3)} ${wallMs().toFixed(3)}\n`)
    if (KILL_AFTER > 0 && this.committedSeqs.length === KILL_AFTER) process.kill(process.pid, KILL_SIGNAL)
  }

  /** True when transactions were logged since the last checkpoint (checkpoint() has work to do). */
  get hasLog(): boolean {
    return this.logged
  }

  /**
   * Makes in-place writes durable, then marks the log empty so it can be reused from block 1.
   * The new journal superblock is made durable before the log is reused (syncSuper): were
   * it lost while new transactions overwrote the log's start, a replay from the old sequence
   * could re-apply the first old transactions without the later ones and roll blocks back.
   * close() passes false because its own superblock write is synced right after.
   */
  checkpoint(syncSuper = true): void {
    if (!this.logged) return
    this.dev.sync()
    this.writeSuper()
    if (syncSuper) this.dev.sync()
    this.pos = 1
    this.logged = false
    this.loggedTargets.clear()
  }

  /**
   * True when a block of [block, block+n) has an image in the log that replay would write
   * in place: such a block (metadata since freed) must not receive unlogged data before a
   * checkpoint, or a replay after a crash would overwrite that data (what JBD's revoke
   * records prevent).
   */
  holds(block: number, n = 1): boolean {
    if (this.loggedTargets.size === 0) return false
    for (let b = block; b < block + n; b++) if (this.loggedTargets.has(b)) return true
    return false
  }

  private writeSuper(): void {
    this.dev.write(this.start, encodeJournalSuper({seq: this.seq, blocks: this.size}))
  }
}

/**
 * Calls `fn` for each run of consecutive block numbers in `blocks` (any order), ascending, of
 * at most `max` blocks.
 */
function forRuns(blocks: number[], fn: (block: number, count: number) => void, max = Infinity): void {
  const sorted = [...blocks].sort((a, b) => a - b)
  for (let i = 0; i < sorted.length;) {
    let j = i + 1
    while (j < sorted.length && sorted[j] === sorted[j - 1] + 1 && j - i < max) j++
    fn(sorted[i], j - i)
    i = j
  }
}

/** Writes blocks in place, coalescing runs of consecutive block numbers into one write. */
export function writeRuns(dev: BlockDevice, blocks: Map<number, Buffer>): void {
  forRuns([...blocks.keys()], (b, n) => {
    if (n === 1) dev.write(b, blocks.get(b)!)
    else {
      const bufs = Array.from({length: n}, (_, k) => blocks.get(b + k)!)
      if (dev.writev) dev.writev(b, bufs)
      else dev.write(b, Buffer.concat(bufs))
    }
  }, 256)
}
