// Write-behind of file data for FileDevice: a second thread writes data blocks to the image
// with O_DIRECT while this one goes on (reading the next host files, building metadata).
//
// Why: on Linux a buffered write copies every byte into the page cache, and the kernel later
// copies it again to the disk; for a multi-GiB import that copy and its page-cache upkeep
// cost as much CPU as everything else put together. A direct write moves the bytes from our
// memory to the disk, and the second thread overlaps the disk's time with ours.
//
// The contract (BlockDevice.writeBehind): a write handed over is finished when finished()
// reaches its ticket; sync() waits for every one and reports the first error since the last
// report, as fsync reports writeback errors.
//
// Data memory must be memory this module handed out (buffer()). O_DIRECT needs memory aligned
// to the disk's sector, and it is fast only when aligned to the page: memory 512-aligned but
// not page-aligned made 8 MiB writes four times slower here (each page of it straddles two).
// JavaScript cannot ask for an address, but the memory of a WebAssembly.Memory is mapped by
// V8 on its own pages, and a shared one is a SharedArrayBuffer the second thread can see; so
// buffer() carves its buffers, page-aligned, out of shared WebAssembly memories, and checks
// with an O_DIRECT read into the first one that the kernel takes such memory. Anything else,
// and every device where O_DIRECT is refused, is written the ordinary way by the caller.
import fs from 'node:fs'
import {MessageChannel, type MessagePort, receiveMessageOnPort, Worker} from 'node:worker_threads'
import {BLOCK_SIZE} from '../format/constants.js'
import {reopen} from './reopen.js'
import {STALL_MS, waitWhile} from '../wait.js'

/** writes running at once in the thread (each up to a run of the store's, 1 MiB to 64 MiB) */
const DEPTH = 4
/** WebAssembly memory is allocated in pages of 64 KiB; buffers are carved from 64 MiB at once */
const WASM_PAGE = 65536
const CHUNK = 64 * 1024 * 1024
/**
 * Runs shorter than this are refused, and written by the caller through the page cache. A
 * direct write waits for the disk, so many small runs apart from one another (a sparse file's
 * regions of 4 KiB: each an extent, placed at its region's home with the holes kept free)
 * went at the disk's latency, one at a time four deep: 200,000 of them took 15 s of an
 * import's 20 s; through the page cache, which the commit's sync writes sorted, 4.7-7 s. A
 * run this long or longer is a transfer the disk streams, which is what the thread is for.
 */
export const SMALL_RUN = 64 * 1024

// The thread, as plain JavaScript evaluated in it (as src/ops/hostwriter.ts). state[0] is the
// highest ticket n such that tickets 1..n are all finished; state[1] is 1 once a write failed
// (the error itself goes to `errors`, before the flag is set).
const SOURCE = `
const fs = require('node:fs')
const {parentPort, workerData} = require('node:worker_threads')
const {fd, errors} = workerData
const state = new Int32Array(workerData.state)
const memory = new Map()
const queue = []
const finished = new Set()
let next = 1, low = 0, running = 0
parentPort.on('message', (m) => {
  if (m.sab) { memory.set(m.id, m.sab); return }
  m.ticket = next++
  queue.push(m)
  pump()
})
function pump() {
  while (running < ${DEPTH} && queue.length > 0) {
    const m = queue.shift()
    running++
    const views = []
    for (let i = 0; i < m.p.length; i += 3) views.push(new Uint8Array(memory.get(m.p[i]), m.p[i + 1], m.p[i + 2]))
    write(views, m.pos, (err) => {
      running--
      if (err && Atomics.load(state, 1) === 0) {
        errors.postMessage({code: err.code, message: String(err.message)})
        Atomics.store(state, 1, 1)
      }
      finished.add(m.ticket)
      while (finished.delete(low + 1)) low++
      Atomics.store(state, 0, low)
      Atomics.notify(state, 0)
      pump()
    })
  }
}
function write(views, pos, done) {
  fs.writev(fd, views, pos, (err, n) => {
    if (err) return done(err)
    if (n === 0) return done(Object.assign(new Error('no progress writing the image'), {code: 'EIO'}))
    // A short write goes on from where it stopped.
    pos += n
    let i = 0
    while (i < views.length && n >= views[i].length) n -= views[i++].length
    if (i === views.length) return done(null)
    const rest = views.slice(i)
    if (n > 0) rest[0] = rest[0].subarray(n)
    write(rest, pos, done)
  })
}
`

export interface WriteError {
  code?: string
  message: string
}

export class WriteBehind {
  private readonly worker: Worker
  private readonly errors: MessagePort
  /** [0] tickets finished (all up to it), [1] 1 once a write failed */
  private readonly state = new Int32Array(new SharedArrayBuffer(8))
  /** memory buffer() carves from, and its id in the thread */
  private readonly memory = new WeakMap<ArrayBufferLike, number>()
  private nextId = 1
  /** the memory being carved, and how much of it is handed out */
  private chunk: SharedArrayBuffer | null = null
  private used = 0
  private submitted = 0
  /** the first memory passed accepted(); V8 maps every later one the same way */
  private probed = false

  private constructor(private readonly fd: number) {
    const errors = new MessageChannel()
    this.errors = errors.port1
    this.worker = new Worker(SOURCE, {
      eval: true, trackUnmanagedFds: false,
      workerData: {fd, state: this.state.buffer, errors: errors.port2},
      transferList: [errors.port2],
    })
    this.worker.unref()
    this.errors.unref()
  }

  /**
   * Opens a second descriptor of the image with O_DIRECT and starts the thread; null where the
   * file system refuses O_DIRECT or the descriptor would not be the same file (the caller then
   * writes everything the ordinary way).
   */
  static open(path: string, imageFd: number): WriteBehind | null {
    const O_DIRECT = fs.constants.O_DIRECT
    if (!O_DIRECT) return null
    const fd = reopen(imageFd, path, fs.constants.O_RDWR | O_DIRECT)
    if (fd === null) return null
    try {
      if (fs.fstatSync(fd).size < BLOCK_SIZE) throw new Error('no superblock')
      return new WriteBehind(fd)
    } catch {
      fs.closeSync(fd)
      return null
    }
  }

  /**
   * Whether the kernel takes `sab` for O_DIRECT: a read of block 0 into it, which changes
   * nothing. Block 0 (the superblock) is never a hole: the kernel checks alignment only
   * where it reads from the disk.
   */
  private accepted(sab: SharedArrayBuffer): boolean {
    try {
      fs.readSync(this.fd, new Uint8Array(sab, 0, BLOCK_SIZE), 0, BLOCK_SIZE, 0)
      return true
    } catch {
      return false
    }
  }

  /**
   * `bytes` (a multiple of BLOCK_SIZE) of page-aligned memory whose whole blocks write()
   * takes as they are, or null when the kernel refuses it (use plain memory).
   */
  buffer(bytes: number): Buffer | null {
    if (!this.chunk || this.used + bytes > this.chunk.byteLength) {
      const size = Math.max(CHUNK, Math.ceil(bytes / WASM_PAGE) * WASM_PAGE)
      const pages = size / WASM_PAGE
      let sab: SharedArrayBuffer
      try {
        sab = new WebAssembly.Memory({initial: pages, maximum: pages, shared: true}).buffer as unknown as SharedArrayBuffer
      } catch {
        return null // no address space for it (a ulimit -v, say): plain memory will do
      }
      // Probed once: the probe is a disk read, and later ones would queue behind the writes
      // in flight (seven of them cost an import of 5 GiB 0.2 to 0.4 s here).
      if (!this.probed) {
        if (!this.accepted(sab)) return null
        this.probed = true
      }
      const id = this.nextId++
      this.memory.set(sab, id)
      this.worker.postMessage({sab, id})
      this.chunk = sab
      this.used = 0
    }
    const buf = Buffer.from(this.chunk, this.used, bytes)
    this.used += Math.ceil(bytes / BLOCK_SIZE) * BLOCK_SIZE
    return buf
  }

  /**
   * Hands `bufs` (to be written one after another from `block`) to the thread and returns
   * their ticket, or 0 when some piece is not whole aligned blocks of buffer() memory, or
   * when the run is shorter than SMALL_RUN (the caller writes it through the page cache).
   */
  write(block: number, bufs: Buffer[]): number {
    const p: number[] = []
    let bytes = 0
    for (const b of bufs) {
      const id = this.memory.get(b.buffer)
      if (id === undefined || b.byteOffset % BLOCK_SIZE !== 0 || b.length % BLOCK_SIZE !== 0) return 0
      p.push(id, b.byteOffset, b.length)
      bytes += b.length
    }
    if (bytes < SMALL_RUN) return 0
    this.worker.postMessage({pos: block * BLOCK_SIZE, p})
    return ++this.submitted
  }

  /** The highest ticket up to which every write has finished. */
  finished(): number {
    return Atomics.load(this.state, 0)
  }

  /** Waits until every write up to `ticket` has finished (whether or not it failed). */
  waitFor(ticket: number): void {
    waitWhile(this.state, 0, (done) => done < ticket,
      () => Object.assign(new Error(`the image's writer thread finished nothing in ${STALL_MS / 1000} s`), {code: 'EIO'}))
  }

  /**
   * Waits for every write handed over, then returns the first error since the last call (and
   * forgets it), or null.
   */
  settle(): WriteError | null {
    this.waitFor(this.submitted)
    if (Atomics.load(this.state, 1) === 0) return null
    const m = receiveMessageOnPort(this.errors)
    Atomics.store(this.state, 1, 0)
    return (m?.message as WriteError | undefined) ?? {code: 'EIO', message: 'a write to the image failed'}
  }

  /** Waits for the writes handed over, then ends the thread and closes the descriptor. */
  close(): void {
    try {
      this.waitFor(this.submitted)
    } finally {
      void this.worker.terminate()
      this.errors.close()
      fs.closeSync(this.fd)
    }
  }
}
