// BlockStore: the block cache and the running transaction. The filesystem reads metadata
// blocks through get(), changes them through getMut() or fresh(), and commit() hands every
// dirty block to the journal at once; abort() forgets them, so a failed operation leaves
// the image as the last commit left it. Data blocks bypass the cache: writeData() queues
// them, and they reach the device just before the commit that makes them reachable
// (ordered mode), so a failed operation never writes even a free block. A queue past
// DATA_QUEUE_MAX is written early (into blocks no committed state references).
import type {BlockDevice} from '../device/device.js'
import {BLOCK_SIZE} from '../format/constants.js'
import type {Journal} from './journal.js'
import {fail} from '../errors.js'

const DATA_QUEUE_MAX = 64 * 1024 * 1024
/** Blocks read on a cache miss. */
const READAHEAD = 8
/** Size of the pooled data buffers handed to writers (dataBuffer). */
export const DATA_BUFFER_SIZE = 8 * 1024 * 1024
const POOL_MAX = DATA_QUEUE_MAX / DATA_BUFFER_SIZE + 2

export class BlockStore {
  /** data writes queued for the running transaction: first block -> content */
  private data = new Map<number, Buffer>()
  /** each queued block -> [first block of its write, index] (read-your-writes) */
  private dataIndex = new Map<number, number>()
  private dataBytes = 0
  /** data buffers ready for reuse: fresh memory costs a page fault per 4 KiB */
  private pool: Buffer[] = []
  /**
   * Pooled buffers handed out: `queued` counts their pieces waiting in the queue, `done` says
   * the writer will queue no more. A buffer goes back to the pool only when both allow it.
   */
  private lent = new Map<ArrayBuffer, {queued: number, done: boolean}>()
  private cache = new Map<number, Buffer>()
  private dirty = new Map<number, Buffer>()
  /** blocks from an unreplayed journal, for read-only opens (never evicted) */
  private overlay = new Map<number, Buffer>()
  stats = {reads: 0, hits: 0, commits: 0}
  /** buffers whose checksum has been verified since they were read (checked once, not per use) */
  private checked = new WeakSet<Buffer>()

  /** Runs `check` on a block's content once per read from the device. */
  verifyOnce(buf: Buffer, check: (buf: Buffer) => boolean): boolean {
    if (this.checked.has(buf)) return true
    if (!check(buf)) return false
    this.checked.add(buf)
    return true
  }

  constructor(readonly dev: BlockDevice, readonly journal: Journal | null, private capacity = 32768) {}

  setOverlay(blocks: Map<number, Buffer>): void {
    this.overlay = blocks
  }

  get dirtyCount(): number {
    return this.dirty.size
  }

  isDirty(block: number): boolean {
    return this.dirty.has(block)
  }

  /** The current content of a block. Callers must not modify it: use getMut(). */
  get(block: number): Buffer {
    if (!(block >= 0 && block < this.dev.blocks)) fail('EBADIMAGE', `block ${block} is outside the image (${this.dev.blocks} blocks); run 'prism fsck'`)
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

  /** Reads `count` consecutive blocks into the cache with one device read. */
  prefetch(block: number, count: number): void {
    let start = block
    const end = block + count
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
      if (this.cache.has(b) || this.dirty.has(b) || this.overlay.has(b)) continue
      // A view, not a copy: cached blocks are never changed in place (getMut copies).
      this.remember(b, big.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE))
    }
    if (start + n < end) this.prefetch(start + n, end - start - n)
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
    if (d) return d
    const buf = Buffer.from(this.get(block))
    this.cache.delete(block)
    this.dirty.set(block, buf)
    return buf
  }

  /** A zeroed block that will be written whole in this transaction (nothing is read). */
  fresh(block: number): Buffer {
    const buf = Buffer.alloc(BLOCK_SIZE)
    this.cache.delete(block)
    this.dirty.set(block, buf)
    return buf
  }

  /**
   * Queues file data for the device; it is written before this transaction's commit.
   * The store keeps `data` (the caller must not reuse it).
   */
  writeData(block: number, data: Buffer): void {
    const n = data.length / BLOCK_SIZE
    for (let i = 0; i < n; i++) {
      this.cache.delete(block + i)
      // Writes target blocks allocated in this transaction, so they never overlap; if one
      // ever did, writing the queue first keeps the newer content last.
      if (this.dataIndex.has(block + i)) this.flushData()
    }
    this.data.set(block, data)
    const l = this.lent.get(data.buffer as ArrayBuffer)
    if (l) l.queued++
    for (let i = 0; i < n; i++) this.dataIndex.set(block + i, block)
    this.dataBytes += data.length
    if (this.dataBytes > DATA_QUEUE_MAX) {
      this.flushData()
      // A large write: the commit will wait for all of it to be on disk, so have the disk
      // start on what is written now (a hint; the commit's sync is what counts).
      this.dev.startWriteback?.()
    }
  }

  /**
   * A DATA_BUFFER_SIZE buffer for file data that will be given to writeData: once the
   * queue holding it is written, it comes back here for the next writer.
   */
  dataBuffer(): Buffer {
    const b = this.pool.pop() ?? Buffer.allocUnsafeSlow(DATA_BUFFER_SIZE)
    this.lent.set(b.buffer as ArrayBuffer, {queued: 0, done: false})
    return b
  }

  /** The writer of a dataBuffer() will queue nothing more from it. */
  doneWith(buf: Buffer): void {
    const ab = buf.buffer as ArrayBuffer
    const l = this.lent.get(ab)
    if (!l) return
    l.done = true
    if (l.queued === 0) this.giveBack(ab)
  }

  private giveBack(ab: ArrayBuffer): void {
    this.lent.delete(ab)
    if (this.pool.length < POOL_MAX) this.pool.push(Buffer.from(ab, 0, DATA_BUFFER_SIZE))
  }

  /** After queued data is written: pieces of lent buffers are no longer needed. */
  private written(queued: Iterable<Buffer>): void {
    for (const d of queued) {
      const ab = d.buffer as ArrayBuffer
      const l = this.lent.get(ab)
      if (!l) continue
      l.queued--
      if (l.queued === 0 && l.done) this.giveBack(ab)
    }
  }

  readData(block: number, buf: Buffer): void {
    this.dev.read(block, buf)
    if (this.dataIndex.size === 0) return
    const n = buf.length / BLOCK_SIZE
    for (let i = 0; i < n; i++) {
      const start = this.dataIndex.get(block + i)
      if (start === undefined) continue
      const src = this.data.get(start)!
      const at = (block + i - start) * BLOCK_SIZE
      src.copy(buf, i * BLOCK_SIZE, at, at + BLOCK_SIZE)
    }
  }

  /** Writes queued data to the device, coalescing adjacent writes. */
  flushData(): void {
    if (this.data.size === 0) return
    const starts = [...this.data.keys()].sort((a, b) => a - b)
    // A block freed since the last checkpoint may still have a metadata image in the log;
    // checkpoint first, so that no replay writes that image over the new data.
    if (this.journal && starts.some((s) => this.journal!.holds(s, this.data.get(s)!.length / BLOCK_SIZE))) this.journal.checkpoint()
    let i = 0
    while (i < starts.length) {
      const run = [this.data.get(starts[i])!]
      let next = starts[i] + run[0].length / BLOCK_SIZE
      let j = i + 1
      while (j < starts.length && starts[j] === next && run.length < 256) {
        const d = this.data.get(starts[j])!
        run.push(d)
        next += d.length / BLOCK_SIZE
        j++
      }
      if (run.length === 1) this.dev.write(starts[i], run[0])
      else if (this.dev.writev) this.dev.writev(starts[i], run)
      else this.dev.write(starts[i], Buffer.concat(run))
      i = j
    }
    this.written(this.data.values())
    this.data = new Map()
    this.dataIndex = new Map()
    this.dataBytes = 0
  }

  /** Logs every dirty block as one transaction, then writes them in place. */
  commit(): void {
    this.flushData()
    if (this.dirty.size === 0) return
    if (!this.journal) throw new Error('commit on a store without a journal')
    this.journal.commit(this.dirty)
    for (const [b, buf] of this.dirty) this.remember(b, buf)
    this.dirty = new Map()
    this.stats.commits++
  }

  /** Forgets every change since the last commit. */
  abort(): void {
    this.dirty = new Map()
    this.lent.clear() // what was lent is left to the garbage collector
    this.data = new Map()
    this.dataIndex = new Map()
    this.dataBytes = 0
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
