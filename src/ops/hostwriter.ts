// Writes exported files' data and attributes on a second thread, so that the host kernel's
// work for them (copying into its page cache, allocating its blocks, setting owners and
// times, closing) overlaps reading the image on this one: an export then costs about the
// larger of the two instead of their sum.
//
// The calling thread still creates every name itself, in order (mkdir, open with O_CREAT |
// O_EXCL | O_NOFOLLOW, symlink, link), with all of cp's checks (src/ops/copy.ts), so nothing
// about *where* things are written changes. The worker is handed open file descriptors and
// only writes through them, sets their attributes and closes them. The API is synchronous:
// the caller blocks (Atomics.wait) only when BATCHES_IN_FLIGHT batches are queued, and
// close() returns once every descriptor handed over has been written and closed, or throws
// the first error the worker met (after it has closed every descriptor anyway).
import fs from 'node:fs'
import {MessageChannel, Worker, receiveMessageOnPort, type MessagePort} from 'node:worker_threads'
import {PrismError} from '../errors.js'
import {sys, sysAddonPath} from '../sys.js'
import {waitWhile} from '../wait.js'

/** bytes of file data per message to the worker (a chunk larger than this gets a batch of its own) */
const BATCH_BYTES = 4 * 1024 * 1024
/** batches queued before the caller waits: bounds the memory an export holds */
const BATCHES_IN_FLIGHT = 16
/**
 * files per batch: each holds its descriptor open until the worker closes it, so at most
 * FILES_PER_BATCH x BATCHES_IN_FLIGHT descriptors are open at once
 */
const FILES_PER_BATCH = 32

/** One operation on a descriptor, as the worker reads it (numbers only: cheap to clone). */
const OP_WRITE = 1 // fd, offset in the batch buffer, length, offset in the file
const OP_FINISH = 2 // fd, size to truncate to (-1: none), mode for fchmod (-1), uid (-1: no fchown), gid, atime s, ns, mtime s, ns; then close

export interface FileAttrs {
  /** ftruncate to this size (a file that ends in a hole), or -1 */
  truncate: number
  /** fchmod to this mode (set-id and sticky bits, which open's mode cannot set), or -1 */
  mode: number
  /** fchown to uid/gid, or uid -1 */
  uid: number
  gid: number
  /** to the nanosecond, as futimens takes them */
  atime: {s: number, ns: number}
  mtime: {s: number, ns: number}
}

/**
 * Sets what open() could not: the size of a file that ends in a hole, the owner, then the
 * set-id bits (chown(2) clears them), then the times. The worker does the same for each
 * finished file (WORKER_SOURCE); a small export calls this on its own thread.
 */
export function setAttrs(fd: number, a: FileAttrs): void {
  if (a.truncate >= 0) fs.ftruncateSync(fd, a.truncate)
  if (a.uid >= 0) fs.fchownSync(fd, a.uid, a.gid)
  if (a.mode >= 0) fs.fchmodSync(fd, a.mode)
  sys().futimens(fd, a.atime.s, a.atime.ns, a.mtime.s, a.mtime.ns)
}

interface WorkerError {
  code: string | undefined
  message: string
  path: string
}

// The worker, as plain JavaScript evaluated in the new thread (no module to locate from the
// bundle, the compiled tree or the TypeScript sources). It stops writing at the first error
// but goes on closing descriptors, so that none is leaked.
const WORKER_SOURCE = `
const fs = require('node:fs')
const {parentPort, workerData} = require('node:worker_threads')
const sys = require(workerData.sys)
const state = new Int32Array(workerData.state)
const errors = workerData.errors
let failed = false
parentPort.on('message', (m) => {
  const buf = Buffer.from(m.buf)
  const ops = m.ops
  for (let i = 0; i < ops.length;) {
    const kind = ops[i]
    const fd = ops[i + 1]
    const path = m.paths[ops[i + 2]]
    try {
      if (kind === ${OP_WRITE}) {
        const off = ops[i + 3], len = ops[i + 4], pos = ops[i + 5]
        i += 6
        if (failed) continue
        let done = 0
        while (done < len) done += fs.writeSync(fd, buf, off + done, len - done, pos + done)
      } else {
        const truncate = ops[i + 3], mode = ops[i + 4], uid = ops[i + 5], gid = ops[i + 6]
        const as = ops[i + 7], ans = ops[i + 8], ms = ops[i + 9], mns = ops[i + 10]
        i += 11
        try {
          if (!failed) { // as setAttrs
            if (truncate >= 0) fs.ftruncateSync(fd, truncate)
            if (uid >= 0) fs.fchownSync(fd, uid, gid)
            if (mode >= 0) fs.fchmodSync(fd, mode) // after fchown, which clears set-id bits
            sys.futimens(fd, as, ans, ms, mns)
          }
        } finally {
          fs.closeSync(fd)
        }
      }
    } catch (e) {
      if (!failed) {
        failed = true
        errors.postMessage({code: e.code, message: String(e.message), path})
        Atomics.store(state, 1, 1)
      }
    }
  }
  // The buffer goes back to be filled again: fresh memory costs a page fault per 4 KiB.
  workerData.spare.postMessage(m.buf, [m.buf])
  Atomics.sub(state, 0, 1)
  Atomics.notify(state, 0)
})
`

export class HostWriter {
  private readonly worker: Worker
  private readonly errors: MessagePort
  /** batch buffers the worker has finished with */
  private readonly spare: MessagePort
  /** [0] batches queued and not yet done, [1] 1 once the worker has failed */
  private readonly state = new Int32Array(new SharedArrayBuffer(8))
  private buf = new ArrayBuffer(BATCH_BYTES)
  private used = 0
  private ops: number[] = []
  private paths: string[] = []
  /** files finished in the batch being filled */
  private files = 0
  /** where the last buffer() handed out starts, so that write() of it needs no copy */
  private lent = -1
  private closed = false

  constructor() {
    const errors = new MessageChannel()
    const spare = new MessageChannel()
    this.errors = errors.port1
    this.spare = spare.port1
    // trackUnmanagedFds off: the worker closes descriptors this thread opened.
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true, trackUnmanagedFds: false,
      workerData: {state: this.state.buffer, errors: errors.port2, spare: spare.port2, sys: sysAddonPath()}, transferList: [errors.port2, spare.port2],
    })
    // It must not keep the process alive, nor outlive close().
    this.worker.unref()
  }

  /** A buffer of n bytes in the batch being filled, to read file data into for write(). */
  buffer(n: number): Buffer {
    if (this.used + n > this.buf.byteLength) this.flush(n)
    this.lent = this.used
    return Buffer.from(this.buf, this.used, n)
  }

  /** Queues writing data at `pos` of the file open as fd (data: from buffer(), or copied). */
  write(fd: number, path: string, data: Buffer, pos: number): void {
    if (data.length === 0) return
    let off: number
    if (data.buffer === this.buf && data.byteOffset === this.lent && this.lent === this.used) {
      off = this.used
    } else {
      const into = this.buffer(data.length)
      data.copy(into)
      off = this.used
    }
    this.used += data.length
    this.lent = -1
    this.ops.push(OP_WRITE, fd, this.pathIndex(path), off, data.length, pos)
  }

  /** Queues the attributes and the close of fd: the descriptor belongs to the writer from now on. */
  finish(fd: number, path: string, a: FileAttrs): void {
    this.ops.push(OP_FINISH, fd, this.pathIndex(path), a.truncate, a.mode, a.uid, a.gid, a.atime.s, a.atime.ns, a.mtime.s, a.mtime.ns)
    if (++this.files >= FILES_PER_BATCH) this.flush(0)
  }

  /** Throws the worker's first error, if it has met one. */
  check(onError: (e: NodeJS.ErrnoException, path: string) => Error): void {
    if (Atomics.load(this.state, 1) === 0) return
    const m = receiveMessageOnPort(this.errors)?.message as WorkerError | undefined
    const e = Object.assign(new Error(m?.message ?? 'write failed'), {code: m?.code}) as NodeJS.ErrnoException
    throw onError(e, m?.path ?? '(export)')
  }

  /**
   * Sends everything queued, waits until the worker has written and closed it all, and stops
   * the worker. Throws (through onError) the first error the worker met.
   */
  close(onError: (e: NodeJS.ErrnoException, path: string) => Error): void {
    if (this.closed) return
    this.closed = true
    try {
      this.send()
      this.waitBelow(1)
    } finally {
      void this.worker.terminate()
    }
    this.check(onError)
  }

  /** Waits until fewer than `n` batches are queued (a worker that stops is an I/O error). */
  private waitBelow(n: number): void {
    waitWhile(this.state, 0, (v) => v >= n, () => new PrismError('EIO', 'the thread writing exported files stopped responding'))
  }

  private pathIndex(path: string): number {
    const last = this.paths.length - 1
    if (last >= 0 && this.paths[last] === path) return last
    this.paths.push(path)
    return last + 1
  }

  /** Sends the batch, waiting first while too many are queued; the next holds at least `need` bytes. */
  private flush(need: number): void {
    this.send()
    const back = need <= BATCH_BYTES ? receiveMessageOnPort(this.spare)?.message as ArrayBuffer | undefined : undefined
    this.buf = back ?? new ArrayBuffer(Math.max(BATCH_BYTES, need))
  }

  private send(): void {
    if (this.ops.length === 0) return
    this.waitBelow(BATCHES_IN_FLIGHT)
    Atomics.add(this.state, 0, 1)
    const buf = this.buf
    this.worker.postMessage({ops: this.ops, paths: this.paths, buf}, [buf])
    this.ops = []
    this.paths = []
    this.files = 0
    this.used = 0
    this.lent = -1
  }
}
