// BlockStore: the block cache and the running transaction. The filesystem reads metadata
// blocks through get(), changes them through getMut() or fresh(), and commit() hands every
// dirty block to the journal at once; abort() forgets them, so a failed operation leaves
// the image as the last commit left it. Data blocks bypass the cache: writeData() queues
// them, and they reach the device just before the commit that makes them reachable
// (ordered mode), so a failed operation never writes even a free block. A queue past
// DATA_QUEUE_MAX is written early (into blocks no committed state references). A device with
// write-behind (FileDevice: O_DIRECT on a second thread) takes the queue and writes it while
// we go on; its pieces stay readable from memory until it says they are written, and the
// commit's sync waits for all of them before the commit record is written.
import type {BlockDevice} from '../device/device.js'
import {BLOCK_SIZE} from '../format/constants.js'
import {writeRuns, type Journal} from './journal.js'
import {fail} from '../errors.js'

/**
 * Queued data written early (into blocks no committed state references). Half of BEHIND_MAX:
 * a queue is handed over while the one before may still be written, so the disk has the
 * next write waiting, and the data in flight stays under 48 MiB.
 */
const DATA_QUEUE_MAX = 16 * 1024 * 1024
/**
 * Clean blocks the cache keeps (64 MiB). With the running transaction (at most
 * Volume's TXN_MAX_BLOCKS) and the data in flight (DATA_QUEUE_MAX + BEHIND_MAX), what an
 * import holds in blocks is bounded at about 200 MiB whatever its size (issue 19: an import
 * of a million files within 512 MiB resident).
 */
const CACHE_BLOCKS = 8192
/** Blocks read on a cache miss. */
const READAHEAD = 8
/** Size of the pooled data buffers handed to writers (dataBuffer). */
export const DATA_BUFFER_SIZE = 8 * 1024 * 1024
/**
 * Data handed to the device's write-behind and not yet written, at most (then we wait). With
 * the queue (DATA_QUEUE_MAX) it bounds the data memory an import holds, which stays resident
 * (the pool keeps what was in use at once; FileDevice's buffers are shared WebAssembly
 * memory): under 48 MiB, where 256 MiB here and a queue of 64 MiB let an import of a million
 * small files reach 700-800 MiB resident (issue 19: at most 512 MiB). A queue is written
 * while the next fills (flushData waits before handing one over, never for the one it
 * handed), which keeps the disk busy while the import works.
 */
const BEHIND_MAX = 32 * 1024 * 1024

/** The most blocks one zeroData() entry covers (its piece of zeroBlocks()). */
const ZEROS_BLOCKS = 4096
let ZEROS: Buffer | null = null
/**
 * ZEROS_BLOCKS blocks of zeros, shared by every queued zero run and by writeZeros
 * (src/fs/extents.ts): read from, never written into.
 */
export function zeroBlocks(): Buffer {
  ZEROS ??= Buffer.alloc(ZEROS_BLOCKS * BLOCK_SIZE)
  return ZEROS
}

/** Queued data writes: first block -> content, and each block -> the first block of its write. */
interface DataQueue {
  data: Map<number, Buffer>
  index: Map<number, number>
  /** lowest and highest block in `index`, to answer most misses without a lookup */
  lo: number
  hi: number
  bytes: number
  /** for a queue handed to write-behind: the device's ticket for its last write */
  ticket: number
  /** first blocks of the runs queued by zeroData: their content is zeroBlocks(), never written into */
  zeros: Set<number>
}

/**
 * A pooled buffer handed out: `queued` counts its pieces waiting in a queue (or being written
 * behind), `done` says the writer will queue no more. It goes back to the pool only when both
 * allow it.
 */
interface Lent {
  buf: Buffer
  queued: number
  done: boolean
}

function emptyQueue(): DataQueue {
  return {data: new Map(), index: new Map(), lo: Infinity, hi: -1, bytes: 0, ticket: 0, zeros: new Set()}
}

function queueHas(q: DataQueue, block: number): boolean {
  return block >= q.lo && block <= q.hi && q.index.has(block)
}

/**
 * Blocks read without caching, an aligned stretch at a time (BlockStore.getThrough): for a
 * walk that reads each of many blocks once, in clusters (a tree's directory blocks, fileset
 * after fileset), where caching them would only push out the rest and leave the garbage
 * collector a buffer per read. A few stretches are kept, the oldest replaced first.
 */
export class ReadWindow {
  readonly starts: number[]
  readonly ends: number[]
  readonly bufs: Buffer[]
  private next = 0

  constructor(readonly blocks = 64, count = 2) {
    this.starts = new Array(count).fill(0)
    this.ends = new Array(count).fill(0)
    this.bufs = Array.from({length: count}, () => Buffer.allocUnsafeSlow(blocks * BLOCK_SIZE))
  }

  /** The stretch holding `block`, or -1. */
  find(block: number): number {
    for (let i = 0; i < this.starts.length; i++) if (block >= this.starts[i] && block < this.ends[i]) return i
    return -1
  }

  /** The stretch to fill next (emptied: a failed read leaves nothing held). */
  take(): number {
    const i = this.next
    this.next = (i + 1) % this.starts.length
    this.ends[i] = this.starts[i] = 0
    return i
  }
}

export class BlockStore {
  /** data writes queued for the running transaction (read-your-writes through its index) */
  private queue = emptyQueue()
  /** queues handed to the device's write-behind, oldest first, until it has written them */
  private behind: DataQueue[] = []
  private behindBytes = 0
  /** data buffers ready for reuse: fresh memory costs a page fault per 4 KiB */
  private pool: Buffer[] = []
  /** pooled buffers handed out, by their memory and their place in it */
  private lent = new Map<ArrayBufferLike, Map<number, Lent>>()
  private cache = new Map<number, Buffer>()
  private dirty = new Map<number, Buffer>()
  /** blocks from an unreplayed journal, for read-only opens (never evicted) */
  private overlay = new Map<number, Buffer>()
  stats = {reads: 0, hits: 0, commits: 0}
  /**
   * Set for a volume opened read-only: its transaction is never committed (a reader of a clone
   * still expanding expands it in memory, src/fs/expand.ts), so data queued for it stays
   * here, readable, and nothing is ever written to the device.
   */
  readOnly = false
  /**
   * Set by the volume: true for a block no committed state references (allocated in the
   * running transaction). commit() writes such a metadata block in place, as ordered data,
   * instead of logging it, unless the log holds an image of it (docs/FORMAT.md §3.6 step 2).
   */
  unreferenced: ((block: number) => boolean) | null = null
  /** dirty blocks that were unreferenced and not held by the log when they became dirty */
  private inPlace = 0
  /** buffers whose checksum has been verified since they were read (checked once, not per use) */
  private checked = new WeakSet<Buffer>()

  /** Runs `check` on a block's content once per read from the device. */
  verifyOnce(buf: Buffer, check: (buf: Buffer) => boolean): boolean {
    if (this.checked.has(buf)) return true
    if (!check(buf)) return false
    this.checked.add(buf)
    return true
  }

  constructor(readonly dev: BlockDevice, readonly journal: Journal | null, private capacity = CACHE_BLOCKS) {}

  setOverlay(blocks: Map<number, Buffer>): void {
    this.overlay = blocks
  }

  get dirtyCount(): number {
    return this.dirty.size
  }

  isDirty(block: number): boolean {
    return this.dirty.has(block)
  }

  private checkInImage(block: number): void {
    if (!(block >= 0 && block < this.dev.blocks)) fail('EBADIMAGE', `block ${block} is outside the image (${this.dev.blocks} blocks); run 'prism fsck'`)
  }

  /** The current content of a block. Callers must not modify it: use getMut(). */
  get(block: number): Buffer {
    this.checkInImage(block)
    const d = this.dirty.get(block)
    if (d) return d
    const c = this.cache.get(block)
    if (c) {
      this.stats.hits++
      return c
    }
    const o = this.overlay.get(block)
    if (o) return o
    // Metadata tends to sit together (a table, a directory's blocks): read a little ahead.
    this.prefetch(block, Math.min(READAHEAD, this.dev.blocks - block))
    return this.cache.get(block)!
  }

  /**
   * The content of a block as get() gives it, without caching it: a block held in memory
   * (changed in this transaction, cached, or in an unreplayed journal) as it is held, any
   * other read with the aligned stretch of `w.blocks` blocks around it into `w`. The buffer
   * is valid until the next call with `w`; callers must not change it.
   */
  getThrough(block: number, w: ReadWindow): Buffer {
    this.checkInImage(block)
    const held = this.dirty.get(block) ?? this.cache.get(block) ?? this.overlay.get(block)
    if (held) return held
    let i = w.find(block)
    if (i < 0) {
      i = w.take()
      const start = block - (block % w.blocks)
      const n = Math.min(w.blocks, this.dev.blocks - start)
      this.dev.read(start, w.bufs[i].subarray(0, n * BLOCK_SIZE))
      this.stats.reads++
      w.starts[i] = start
      w.ends[i] = start + n
    }
    const o = (block - w.starts[i]) * BLOCK_SIZE
    return w.bufs[i].subarray(o, o + BLOCK_SIZE)
  }

  /**
   * Reads `count` consecutive blocks into the cache, one device read per run of blocks not
   * held yet (at most 256 at once). A loop, not recursion: a table of millions of blocks is
   * read in as many steps, never as deep a call stack.
   */
  prefetch(block: number, count: number): void {
    if (!(block >= 0 && count >= 0 && block + count <= this.dev.blocks)) {
      fail('EBADIMAGE', `blocks ${block}+${count} are outside the image (${this.dev.blocks} blocks); run 'prism fsck'`)
    }
    let start = block
    const end = block + count
    for (;;) {
      while (start < end && (this.cache.has(start) || this.dirty.has(start))) start++
      if (start >= end) return
      // Read up to the next block already held, at most 256 at once.
      let n = 1
      while (n < Math.min(end - start, 256) && !this.cache.has(start + n) && !this.dirty.has(start + n) && !this.overlay.has(start + n)) n++
      const big = Buffer.allocUnsafe(n * BLOCK_SIZE)
      this.dev.read(start, big)
      this.stats.reads++
      for (let i = 0; i < n; i++) {
        const b = start + i
        if (this.cache.has(b) || this.dirty.has(b) || this.overlay.has(b) || this.behindHas(b)) continue
        // A view, not a copy: cached blocks are never changed in place (getMut copies).
        this.remember(b, big.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE))
      }
      start += n
    }
  }

  /** Blocks in [start, end) whose content is held in memory only: changed in this transaction, or from an unreplayed journal. */
  heldIn(start: number, end: number): number[] {
    const out: number[] = []
    for (const m of [this.dirty, this.overlay]) for (const b of m.keys()) if (b >= start && b < end) out.push(b)
    return out
  }

  /**
   * Calls fn(block, content) for each of `count` blocks from `start`, in order, as get()
   * would see them, but reads the ones not held in memory with one device read per run and
   * does not cache them: for a pass over a whole table (an incremental scan reading 100,000
   * inodes' versions) that would otherwise push everything else out of the cache. `scratch`
   * is reused across calls; `content` is valid only during the call.
   */
  readRun(start: number, count: number, scratch: Buffer, fn: (block: number, content: Buffer) => void): void {
    if (!(start >= 0 && start + count <= this.dev.blocks)) fail('EBADIMAGE', `blocks ${start}+${count} are outside the image (${this.dev.blocks} blocks); run 'prism fsck'`)
    const held = (b: number) => this.dirty.get(b) ?? this.cache.get(b) ?? this.overlay.get(b)
    const per = Math.floor(scratch.length / BLOCK_SIZE)
    let b = start
    const end = start + count
    while (b < end) {
      const h = held(b)
      if (h) { fn(b, h); b++; continue }
      let n = 1
      while (n < per && b + n < end && !held(b + n)) n++
      const view = scratch.subarray(0, n * BLOCK_SIZE)
      this.dev.read(b, view)
      this.stats.reads++
      for (let i = 0; i < n; i++) fn(b + i, view.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE))
      b += n
    }
  }

  /** The block, to be changed in this transaction. */
  getMut(block: number): Buffer {
    const d = this.dirty.get(block)
    if (d) {
      if (this.undo && !this.undo.has(block)) this.undo.set(block, {buf: d, copy: this.undoCopy(d)})
      return d
    }
    const buf = Buffer.from(this.get(block))
    this.cache.delete(block)
    this.setDirty(block, buf)
    return buf
  }

  /** A zeroed block that will be written whole in this transaction (nothing is read). */
  fresh(block: number): Buffer {
    const d = this.dirty.get(block)
    if (this.undo && !this.undo.has(block)) this.undo.set(block, d ? {buf: d, copy: this.undoCopy(d)} : null)
    const buf = Buffer.alloc(BLOCK_SIZE)
    this.cache.delete(block)
    this.setDirty(block, buf)
    return buf
  }

  private setDirty(block: number, buf: Buffer): void {
    if (this.undo && !this.undo.has(block)) this.undo.set(block, null)
    if (!this.dirty.has(block) && this.unreferenced?.(block) && !this.journal?.holds(block)) this.inPlace++
    this.dirty.set(block, buf)
  }

  /**
   * Dirty blocks the commit will log (at most; see inPlaceFirst): what counts against the
   * journal's size. A block counted as written in place stays so: the set of blocks the log
   * holds only shrinks until the commit (a checkpoint empties it).
   */
  get loggedCount(): number {
    return this.dirty.size - this.inPlace
  }

  /**
   * Queues file data for the device; it is written before this transaction's commit.
   * The store keeps `data` (the caller must not reuse it).
   */
  writeData(block: number, data: Buffer): void {
    const n = data.length / BLOCK_SIZE
    // Blocks written again in one transaction (the locality policy rewrites blocks it
    // allocated in this transaction where they are, FORMAT.md §6.6): still queued, their new
    // content replaces the old in the queue, without writing anything out.
    if (this.replaceQueued(block, data, n)) return
    this.enqueue(block, data, n, false)
  }

  /**
   * Queues blocks [block, block + n) to read as zeros, as writeData would queue zeros, but
   * without the memory or the writes where the device can zero a range (BlockDevice.zero:
   * fallocate's FALLOC_FL_ZERO_RANGE). A gigabyte that `fallocate` asks for then costs a
   * system call, not a gigabyte written.
   */
  zeroData(block: number, n: number): void {
    for (let done = 0; done < n;) {
      const k = Math.min(n - done, ZEROS_BLOCKS)
      this.enqueue(block + done, zeroBlocks().subarray(0, k * BLOCK_SIZE), k, true)
      done += k
    }
  }

  /** Adds a write of `n` blocks at `block` to the queue (written out past DATA_QUEUE_MAX). */
  private enqueue(block: number, data: Buffer, n: number, zero: boolean): void {
    for (let i = 0; i < n; i++) {
      this.cache.delete(block + i)
      // Writes target blocks allocated in this transaction, so they never overlap; if one
      // ever did, writing the queue (and what is being written behind) first keeps the newer
      // content last.
      if (queueHas(this.queue, block + i)) this.flushData()
      if (this.behindHas(block + i)) this.waitBehind(0)
    }
    const q = this.queue
    q.data.set(block, data)
    if (zero) q.zeros.add(block)
    if (this.undo) this.undoData.push(block)
    const l = zero ? undefined : this.lentOf(data)
    if (l) l.queued++
    for (let i = 0; i < n; i++) q.index.set(block + i, block)
    if (block < q.lo) q.lo = block
    if (block + n - 1 > q.hi) q.hi = block + n - 1
    q.bytes += data.length
    if (q.bytes > DATA_QUEUE_MAX) this.flushData()
  }

  /** Copies `data` over blocks [block, block+n) when every one of them waits in the queue. */
  private replaceQueued(block: number, data: Buffer, n: number): boolean {
    const q = this.queue
    if (block < q.lo || block + n - 1 > q.hi) return false
    for (let i = 0; i < n; i++) if (!q.index.has(block + i) || q.zeros.has(q.index.get(block + i)!)) return false
    for (let i = 0; i < n; i++) {
      const start = q.index.get(block + i)!
      const into = q.data.get(start)!
      const at = (block + i - start) * BLOCK_SIZE
      if (this.undo) this.undoReplaced.push({block: block + i, start, was: Buffer.from(into.subarray(at, at + BLOCK_SIZE))})
      data.copy(into, at, i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)
    }
    return true
  }

  /**
   * A DATA_BUFFER_SIZE buffer for file data that will be given to writeData: once the
   * queue holding it is written, it comes back here for the next writer.
   */
  dataBuffer(): Buffer {
    this.reap()
    const b = this.pool.pop() ?? this.dev.dataBuffer?.(DATA_BUFFER_SIZE) ?? Buffer.allocUnsafeSlow(DATA_BUFFER_SIZE)
    // One ArrayBuffer may hold several pooled buffers (the device carves them from larger
    // memory), each at a multiple of DATA_BUFFER_SIZE: a piece is known by both.
    if (b.byteOffset % DATA_BUFFER_SIZE === 0) {
      let m = this.lent.get(b.buffer)
      if (!m) this.lent.set(b.buffer, m = new Map())
      m.set(b.byteOffset / DATA_BUFFER_SIZE, {buf: b, queued: 0, done: false})
    }
    return b
  }

  /** The pooled buffer lent out that `piece` is part of. */
  private lentOf(piece: Buffer): Lent | undefined {
    return this.lent.get(piece.buffer)?.get(Math.floor(piece.byteOffset / DATA_BUFFER_SIZE))
  }

  /** The writer of a dataBuffer() will queue nothing more from it. */
  doneWith(buf: Buffer): void {
    const l = this.lentOf(buf)
    if (!l) return
    l.done = true
    if (l.queued === 0) this.giveBack(l)
  }

  private giveBack(l: Lent): void {
    const m = this.lent.get(l.buf.buffer)!
    m.delete(l.buf.byteOffset / DATA_BUFFER_SIZE)
    if (m.size === 0) this.lent.delete(l.buf.buffer)
    // Kept for the next writer: the pool only grows when every buffer is lent, so it never
    // holds more than an import had in use at once (the queue and the write-behind limit),
    // and write-behind memory, known to the device's thread, is never thrown away.
    this.pool.push(l.buf)
  }

  /** After queued data is written: pieces of lent buffers are no longer needed. */
  private written(queued: Iterable<Buffer>): void {
    for (const d of queued) {
      const l = this.lentOf(d)
      if (!l) continue
      l.queued--
      if (l.queued === 0 && l.done) this.giveBack(l)
    }
  }

  /**
   * Reads consecutive blocks from `block` into `bufs`, one after another (each a multiple
   * of BLOCK_SIZE), with one device call where the device scatters (readv).
   */
  readDataV(block: number, bufs: Buffer[], stream = 0): void {
    if (this.dev.readv) this.dev.readv(block, bufs, stream)
    else {
      let b = block
      for (const buf of bufs) {
        this.dev.read(b, buf)
        b += buf.length / BLOCK_SIZE
      }
    }
    let b = block
    for (const buf of bufs) {
      for (const q of this.behind) overlayQueue(q, b, buf)
      overlayQueue(this.queue, b, buf)
      b += buf.length / BLOCK_SIZE
    }
  }

  readData(block: number, buf: Buffer): void {
    this.dev.read(block, buf)
    // What is being written behind, oldest first, then the queue: the newest content last.
    for (const q of this.behind) overlayQueue(q, block, buf)
    overlayQueue(this.queue, block, buf)
  }

  /**
   * Where data blocks [block, block+n) lie in the host file, when what lies there is their
   * content: none of them is queued or being written behind (BlockDevice.hostSpan). Null
   * otherwise: the caller reads them (readData), which sees the newer content.
   */
  hostSpan(block: number, n: number): {fd: number, pos: number} | null {
    if (!this.dev.hostSpan || !(block >= 0 && block + n <= this.dev.blocks)) return null
    for (const q of [this.queue, ...this.behind]) {
      if (q.index.size === 0 || block > q.hi || block + n - 1 < q.lo) continue
      for (let i = 0; i < n; i++) if (queueHas(q, block + i)) return null
    }
    return this.dev.hostSpan(block)
  }

  private behindHas(block: number): boolean {
    for (const q of this.behind) if (queueHas(q, block)) return true
    return false
  }

  /** Forgets the write-behind queues the device has finished. */
  private reap(): void {
    if (this.behind.length === 0) return
    const done = this.dev.finished!()
    while (this.behind.length > 0 && this.behind[0].ticket <= done) {
      const q = this.behind.shift()!
      this.behindBytes -= q.bytes
      this.written(q.data.values())
    }
  }

  /** Waits until at most `bytes` are being written behind (0: until all is written). */
  private waitBehind(bytes: number): void {
    while (this.behind.length > 0 && this.behindBytes > bytes) {
      this.dev.waitFinished!(this.behind[0].ticket)
      this.reap()
    }
  }

  /** Writes queued data to the device, coalescing adjacent writes. */
  flushData(): void {
    const q = this.queue
    if (q.data.size === 0 || this.readOnly) return
    if (this.undo) this.undoFlushed = true
    const starts = [...q.data.keys()].sort((a, b) => a - b)
    // A block freed since the last checkpoint may still have a metadata image in the log;
    // checkpoint first, so that no replay writes that image over the new data.
    if (this.journal && starts.some((s) => this.journal!.holds(s, q.data.get(s)!.length / BLOCK_SIZE))) this.journal.checkpoint()
    // Room for this queue behind: older writes finish first, until this one fits under
    // BEHIND_MAX, and this one is written while the next queue fills. Waiting after handing it over
    // instead would wait for this queue itself, and the disk would idle while we work.
    if (this.dev.writeBehind) {
      this.reap()
      this.waitBehind(BEHIND_MAX - q.bytes)
    }
    let buffered = 0
    let i = 0
    while (i < starts.length) {
      if (q.zeros.has(starts[i])) {
        // A run of zeros: zeroed by the device where it can, else written as zeros.
        const z = q.data.get(starts[i])!
        if (!this.dev.zero?.(starts[i], z.length / BLOCK_SIZE)) {
          this.dev.write(starts[i], z)
          buffered += z.length
        }
        i++
        continue
      }
      const run = [q.data.get(starts[i])!]
      let next = starts[i] + run[0].length / BLOCK_SIZE
      let j = i + 1
      while (j < starts.length && starts[j] === next && run.length < 256 && !q.zeros.has(starts[j])) {
        const d = q.data.get(starts[j])!
        run.push(d)
        next += d.length / BLOCK_SIZE
        j++
      }
      const ticket = this.dev.writeBehind?.(starts[i], run) ?? 0
      if (ticket > 0) q.ticket = ticket
      else {
        if (run.length === 1) this.dev.write(starts[i], run[0])
        else if (this.dev.writev) this.dev.writev(starts[i], run)
        else this.dev.write(starts[i], Buffer.concat(run))
        for (const d of run) buffered += d.length
      }
      i = j
    }
    this.queue = emptyQueue()
    if (q.ticket > 0) {
      // Kept, readable, until the device has written it.
      this.behind.push(q)
      this.behindBytes += q.bytes
    } else this.written(q.data.values())
    // Much written through the page cache: the commit will wait for all of it to be on disk,
    // so have the disk start on it now (a hint; the commit's sync is what counts).
    if (buffered >= DATA_QUEUE_MAX) this.dev.startWriteback?.()
  }

  /**
   * Logs every dirty block as one transaction, then writes them in place; `onCommitted` runs
   * once the transaction is durable, before those home writes (Journal.commit).
   */
  commit(onCommitted?: () => void): void {
    this.flushData()
    if (this.dirty.size === 0) {
      if (this.behind.length > 0) {
        // Data without metadata (a rewrite in place) is done when its writes are.
        this.dev.sync()
        this.reap()
      }
      return
    }
    if (!this.journal) throw new Error('commit on a store without a journal')
    this.journal.commit(this.inPlaceFirst(), onCommitted) // its first sync waits for the writes behind (and those of inPlaceFirst)
    this.reap()
    for (const [b, buf] of this.dirty) this.remember(b, buf)
    this.dirty = new Map()
    this.inPlace = 0
    this.stats.commits++
  }

  /**
   * Writes in place the dirty blocks no committed state references (new directory blocks,
   * extent-tree nodes, ...) that the log holds no image of, and returns the others, to be
   * logged. Those writes are ordered like file data: the journal's first sync makes them
   * durable before the commit record exists, and until then nothing committed reads them.
   * So a new block costs one write instead of two (the log, then its home), and the log
   * only the blocks that committed state already has.
   */
  private inPlaceFirst(): Map<number, Buffer> {
    const unreferenced = this.unreferenced
    if (!unreferenced) return this.dirty
    const logged = new Map<number, Buffer>()
    const fresh = new Map<number, Buffer>()
    for (const [b, buf] of this.dirty) (unreferenced(b) && !this.journal!.holds(b) ? fresh : logged).set(b, buf)
    if (fresh.size > 0) writeRuns(this.dev, fresh)
    return logged
  }

  // ---------------------------------------------------------------- savepoints (Volume.savepoint)

  /**
   * Blocks changed since mark(): the dirty buffer each had then and a copy of its content
   * then, or null when it was not dirty (its content then is the device's, or the cache's)
   */
  private undo: Map<number, {buf: Buffer, copy: Buffer} | null> | null = null
  private undoInPlace = 0
  /** data queued since mark(), by its first block */
  private undoData: number[] = []
  /** queued data overwritten in the queue since mark(): where, and what it held (newest last) */
  private undoReplaced: Array<{block: number, start: number, was: Buffer}> = []
  /** queued data went to the device since mark() */
  private undoFlushed = false

  /** copies of blocks for undo, kept for the next savepoint (a request copies a few blocks: no garbage for each) */
  private undoSpare: Buffer[] = []

  private undoCopy(d: Buffer): Buffer {
    const c = this.undoSpare.pop() ?? Buffer.allocUnsafeSlow(BLOCK_SIZE)
    d.copy(c)
    return c
  }

  /** Gives the copies of `undo` back for reuse, at most 64. */
  private spare(undo: Map<number, {buf: Buffer, copy: Buffer} | null>): void {
    for (const u of undo.values()) {
      if (u === null) continue
      if (this.undoSpare.length >= 64) break
      this.undoSpare.push(u.copy)
    }
  }

  /** Starts recording what changes, for rollback(). */
  mark(): void {
    this.undo = new Map()
    this.undoInPlace = this.inPlace
    this.undoData = []
    this.undoReplaced = []
    this.undoFlushed = false
  }

  /** Stops recording (what changed stays). */
  unmark(): void {
    if (this.undo) this.spare(this.undo)
    this.undo = null
    this.undoData = []
    this.undoReplaced = []
  }

  /**
   * Puts the dirty blocks back as they were at mark(), in the same buffers, and drops the
   * data queued since: its blocks are free again. Data already handed to the device went to
   * blocks no state references; it is waited for, as abort() does, so that a later write of
   * those blocks lands after it. Not after a commit (the volume knows: it does not call this
   * then).
   */
  rollback(): void {
    const undo = this.undo
    if (!undo) return
    this.undo = null
    for (const [block, u] of undo) {
      this.cache.delete(block)
      if (u === null) this.dirty.delete(block)
      else {
        u.copy.copy(u.buf)
        this.dirty.set(block, u.buf)
      }
    }
    this.spare(undo)
    this.inPlace = this.undoInPlace
    const q = this.queue
    for (const start of this.undoData) {
      const data = q.data.get(start)
      if (!data) continue
      q.data.delete(start)
      q.zeros.delete(start)
      const n = data.length / BLOCK_SIZE
      for (let i = 0; i < n; i++) if (q.index.get(start + i) === start) q.index.delete(start + i)
      q.bytes -= data.length
      this.written([data])
    }
    if (this.undoFlushed) {
      this.dev.settle?.()
      this.reap()
    }
    // Data queued before the savepoint and written again in it (FORMAT.md §6.6) gets its
    // content back: in the queue, or queued again if it went to the device meanwhile. The
    // oldest content goes last. (What was queued in the savepoint itself is gone already.)
    const mine = new Set(this.undoData)
    for (let i = this.undoReplaced.length - 1; i >= 0; i--) {
      const r = this.undoReplaced[i]
      if (!mine.has(r.start)) this.writeData(r.block, r.was)
    }
    this.undoData = []
    this.undoReplaced = []
  }

  /** Forgets every change since the last commit. */
  abort(): void {
    this.undo = null
    this.undoData = []
    this.undoReplaced = []
    this.dirty = new Map()
    this.inPlace = 0
    // Data written behind for the abandoned operation went to free blocks: wait for it (a
    // later write of the same blocks must land after it), and drop its errors.
    this.dev.settle?.()
    this.reap()
    this.lent.clear() // what was lent is left to the garbage collector
    this.queue = emptyQueue()
  }

  private remember(block: number, buf: Buffer): void {
    if (this.cache.size >= this.capacity) {
      // Evict the oldest eighth; Map iteration order is insertion order.
      let n = this.capacity >> 3
      for (const k of this.cache.keys()) {
        this.cache.delete(k)
        if (--n <= 0) break
      }
    }
    this.cache.set(block, buf)
  }
}

/** Copies into buf (blocks from `block`) what queue `q` holds for those blocks. */
function overlayQueue(q: DataQueue, block: number, buf: Buffer): void {
  const n = buf.length / BLOCK_SIZE
  if (q.index.size === 0 || block > q.hi || block + n - 1 < q.lo) return
  for (let i = 0; i < n; i++) {
    const start = q.index.get(block + i)
    if (start === undefined) continue
    const src = q.data.get(start)!
    const at = (block + i - start) * BLOCK_SIZE
    src.copy(buf, i * BLOCK_SIZE, at, at + BLOCK_SIZE)
  }
}
