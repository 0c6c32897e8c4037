// A BlockDevice over an image file: positioned reads and writes, fdatasync, and the image
// lock (flock through fs-ext: shared for readers, exclusive for writers). It never
// interprets the bytes it moves.
import fs from 'node:fs'
import {createRequire} from 'node:module'
import os from 'node:os'
import nodePath from 'node:path'
import util from 'node:util'
import {Worker} from 'node:worker_threads'
import {BLOCK_SIZE} from '../format/constants.js'
import {hostReason, PrismError} from '../errors.js'
import type {BlockDevice} from './device.js'
import {reopen, reopenPaths} from './reopen.js'
import {WriteBehind} from './writebehind.js'
import {checkInterrupt} from '../interrupt.js'
import {sys} from '../sys.js'

// startWriteback's thread, as plain JavaScript evaluated in it: fdatasync on request, on a
// descriptor of its own, of the image file (dev, ino) as reopen() finds it; errors are ignored
// (sync() on the image's descriptor reports them).
const WRITEBACK_SOURCE = `
const fs = require('node:fs')
const {parentPort, workerData} = require('node:worker_threads')
const state = new Int32Array(workerData.state)
let fd = -1
for (const p of workerData.paths) {
  try { fd = fs.openSync(p, 'r') } catch { continue }
  const st = fs.fstatSync(fd)
  if (st.dev === workerData.dev && st.ino === workerData.ino) break
  fs.closeSync(fd)
  fd = -1
}
parentPort.on('message', (m) => {
  if (m === 'close') {
    if (fd >= 0) fs.closeSync(fd)
    fd = -1
    parentPort.close()
    return
  }
  try { if (fd >= 0) fs.fdatasyncSync(fd) } catch {}
  Atomics.store(state, 0, 0)
})
`

/**
 * fs-ext (flock, lseek), loaded with require: importing a CommonJS addon as an ES module
 * first has Node scan its source for exports, a few milliseconds of every command's start.
 */
export const fsExt = createRequire(import.meta.url)('fs-ext') as typeof import('fs-ext')

export interface OpenOptions {
  write: boolean
  /** Seconds to wait for a lock held by another process. */
  wait?: number
  /** Called once if the lock is busy and we start waiting. */
  onWait?: () => void
  /**
   * Read-only, without taking the lock: for a reader of a served image's snapshot, whose
   * server holds the exclusive lock and logs what it overwrites (src/device/snapshot.ts).
   */
  noLock?: boolean
  /** the command has no --wait (mkfs): a busy lock is not called a wait to raise */
  noWaitHint?: boolean
}

const sleeper = new Int32Array(new SharedArrayBuffer(4))
function sleepMs(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms)
}

function ioError(path: string, e: unknown): PrismError {
  const err = e as NodeJS.ErrnoException
  if (err.code === 'ENOENT') return new PrismError('ENOENT', `${path}: no such image file`)
  if (err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS') return new PrismError('EROFS', `${path}: image file is read-only`)
  if (err.code === 'ENOSPC') return new PrismError('ENOSPC', `${path}: host file system is full`)
  if (err.code === 'EISDIR') return new PrismError('EBADIMAGE', `${path}: is a directory, not an image`)
  // A path that leads nowhere (a loop of symlinks, a file where a directory should be): the
  // user's path, not the image's I/O (exit 1, as for a missing file).
  if (err.code === 'ELOOP') return new PrismError('ENOENT', `${path}: too many levels of symbolic links (a loop)`)
  if (err.code === 'ENOTDIR') return new PrismError('ENOENT', `${path}: a part of the path is not a directory`)
  if (err.code === 'ENAMETOOLONG') return new PrismError('ENOENT', `${path}: file name too long`)
  return new PrismError('EIO', `${path}: ${hostReason(err)}`)
}

/** An error creating a new image file, said of what the user can change. */
function createError(path: string, e: unknown, size: number): PrismError {
  const err = e as NodeJS.ErrnoException
  const dir = nodePath.dirname(path)
  if (err.code === 'ENOENT') return new PrismError('ENOENT', `${path}: directory ${dir} does not exist`)
  if (err.code === 'ENOTDIR') return new PrismError('ENOTDIR', `${path}: ${dir} is not a directory`)
  if (err.code === 'EACCES' || err.code === 'EPERM') return new PrismError('EROFS', `${path}: cannot create the image file (permission denied)`)
  if (err.code === 'EROFS') return new PrismError('EROFS', `${path}: cannot create the image file (read-only file system)`)
  if (err.code === 'EFBIG') {
    return new PrismError('EFBIG', `${path}: the host file system cannot hold a file of ${bytesText(size)}; choose a smaller --size`)
  }
  return ioError(path, e)
}

/** 100 TiB, 1.5 GiB, 4096 bytes. */
function bytesText(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB']
  let v = n
  let u = 0
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++ }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`
}

function removeQuietly(path: string): void {
  try {
    fs.unlinkSync(path)
  } catch {
    // already gone
  }
}

const SEEK_DATA = 3
const SEEK_HOLE = 4
/** fallocate(2) modes (<linux/falloc.h>) */
const FALLOC_FL_KEEP_SIZE = 0x01
const FALLOC_FL_ZERO_RANGE = 0x10

export class FileDevice implements BlockDevice {
  readonly blocks: number
  private closed = false
  beforeWrite: ((block: number, count: number) => void) | null = null

  /**
   * `createdZero`: a new sparse file (its unwritten blocks read as zeros). `createdFile`: this
   * process created the file (no file was there before): discard() removes it.
   */
  private constructor(private fd: number, readonly path: string, readonly readOnly: boolean, size: number, readonly createdZero = false, readonly createdFile = false) {
    this.blocks = Math.floor(size / BLOCK_SIZE)
  }

  /** Opens and locks an existing image file. */
  static open(path: string, opts: OpenOptions): FileDevice {
    let fd: number
    try {
      // (O_NONBLOCK: a FIFO put in the image's place meanwhile is refused below, not waited
      // on for a writer; it changes nothing for a regular file)
      fd = fs.openSync(path, (opts.write ? fs.constants.O_RDWR : fs.constants.O_RDONLY) | fs.constants.O_NONBLOCK)
    } catch (e) {
      throw ioError(path, e)
    }
    try {
      const st = fs.fstatSync(fd)
      if (!st.isFile()) throw new PrismError('EBADIMAGE', `${path}: not a regular file`)
      if (!(opts.noLock && !opts.write)) lock(fd, path, opts)
      return new FileDevice(fd, path, !opts.write, st.size)
    } catch (e) {
      fs.closeSync(fd)
      throw e
    }
  }

  /**
   * Creates (or, with force, overwrites) an image file of `blocks` blocks, sparse, locked. A
   * file it creates is removed again if this fails; an existing file is never removed, and is
   * grown to the new size first so that a size the host cannot hold (EFBIG) fails before
   * anything of it is lost.
   */
  static create(path: string, blocks: number, force: boolean): FileDevice {
    const size = blocks * BLOCK_SIZE
    let fd: number
    let created = true
    try {
      fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw createError(path, e, size)
      if (!force) throw new PrismError('EEXIST', `${path} exists (use --force to overwrite it)`)
      created = false
      try {
        fd = fs.openSync(path, fs.constants.O_RDWR)
      } catch (e2) {
        throw ioError(path, e2)
      }
    }
    try {
      if (!created) {
        const st = fs.fstatSync(fd)
        if (!st.isFile()) throw new PrismError('EBADIMAGE', `${path}: not a regular file`)
        lock(fd, path, {write: true, wait: 0, noWaitHint: true})
        if (st.size < size) fs.ftruncateSync(fd, size)
      } else {
        lock(fd, path, {write: true, wait: 0, noWaitHint: true})
      }
      fs.ftruncateSync(fd, 0)
      fs.ftruncateSync(fd, size)
      return new FileDevice(fd, path, false, size, true, created)
    } catch (e) {
      fs.closeSync(fd)
      if (created) removeQuietly(path)
      throw e instanceof PrismError ? e : createError(path, e, size)
    }
  }

  /** After a failed mkfs: closes, and removes the file if this process created it. */
  discard(): void {
    this.close()
    if (this.createdFile) removeQuietly(this.path)
  }

  hostSpan(block: number): {fd: number, pos: number} {
    return {fd: this.fd, pos: block * BLOCK_SIZE}
  }

  read(block: number, buf: Buffer): void {
    let done = 0
    try {
      while (done < buf.length) {
        const n = fs.readSync(this.fd, buf, done, buf.length - done, block * BLOCK_SIZE + done)
        if (n === 0) { buf.fill(0, done); return } // past the end of a short file: zeros
        done += n
      }
    } catch (e) {
      throw ioError(this.path, e)
    }
  }

  /** read-only descriptors of the image for a reader's streams 1..3 (readv), opened when first used */
  private streams: number[] = []

  private streamFd(stream: number): number {
    if (stream <= 0 || stream > 3) return this.fd
    let fd = this.streams[stream]
    if (fd === undefined) {
      fd = reopen(this.fd, this.path, fs.constants.O_RDONLY) ?? this.fd
      this.streams[stream] = fd
    }
    return fd
  }

  readv(block: number, bufs: Buffer[], stream = 0): void {
    let pos = block * BLOCK_SIZE
    let total = 0
    for (const b of bufs) total += b.length
    try {
      const fd = this.streamFd(stream)
      let done = fs.readvSync(fd, bufs, pos)
      if (done === total) return
      // A short read goes on piece by piece (past the end of a short file: zeros).
      let skip = done
      pos += done
      for (const b of bufs) {
        if (skip >= b.length) { skip -= b.length; continue }
        const rest = b.subarray(skip)
        skip = 0
        let r = 0
        while (r < rest.length) {
          const n = fs.readSync(fd, rest, r, rest.length - r, pos + r)
          if (n === 0) { rest.fill(0, r); break }
          r += n
        }
        pos += rest.length
      }
    } catch (e) {
      throw ioError(this.path, e)
    }
  }

  /**
   * lseek(SEEK_DATA / SEEK_HOLE) over the range. A file system without them (EINVAL) is taken
   * to have no holes; a file system that does not track holes reports the file as all data.
   */
  dataRuns(start: number, count: number): Array<[number, number]> {
    const end = start + count
    const runs: Array<[number, number]> = []
    let b = start
    try {
      while (b < end) {
        let d: number
        try {
          d = Math.floor(fsExt.seekSync(this.fd, b * BLOCK_SIZE, SEEK_DATA) / BLOCK_SIZE)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENXIO') break // no data past b
          throw e
        }
        if (d >= end) break
        const h = Math.ceil(fsExt.seekSync(this.fd, d * BLOCK_SIZE, SEEK_HOLE) / BLOCK_SIZE)
        runs.push([Math.max(d, start), Math.min(h, end)])
        b = Math.max(h, d + 1)
      }
    } catch {
      return [[start, end]]
    }
    return runs
  }

  write(block: number, buf: Buffer): void {
    if (this.readOnly) throw new PrismError('EROFS', `${this.path}: opened read-only`)
    this.beforeWrite?.(block, buf.length / BLOCK_SIZE)
    let done = 0
    try {
      while (done < buf.length) done += fs.writeSync(this.fd, buf, done, buf.length - done, block * BLOCK_SIZE + done)
    } catch (e) {
      throw ioError(this.path, e)
    }
  }

  writev(block: number, bufs: Buffer[]): void {
    if (this.readOnly) throw new PrismError('EROFS', `${this.path}: opened read-only`)
    let pos = block * BLOCK_SIZE
    let total = 0
    for (const b of bufs) total += b.length
    this.beforeWrite?.(block, total / BLOCK_SIZE)
    try {
      let done = fs.writevSync(this.fd, bufs, pos)
      // A short vectored write is finished piece by piece.
      if (done < total) {
        let skip = done
        pos += done
        for (const b of bufs) {
          if (skip >= b.length) { skip -= b.length; continue }
          const rest = b.subarray(skip)
          skip = 0
          let w = 0
          while (w < rest.length) w += fs.writeSync(this.fd, rest, w, rest.length - w, pos + w)
          pos += rest.length
        }
      }
    } catch (e) {
      throw ioError(this.path, e)
    }
  }

  /** false once the host said it cannot zero a range (the store then writes zeros) */
  private zeroRange = true

  zero(block: number, count: number): boolean {
    if (this.readOnly) throw new PrismError('EROFS', `${this.path}: opened read-only`)
    const s = sys()
    if (!this.zeroRange || !s.fallocate) return (this.zeroRange = false)
    // What is being written behind lands first (the store hands over no write of a block it
    // then zeroes, but the order must not rest on that).
    const err = this.behind?.settle()
    if (err) throw ioError(this.path, err)
    this.beforeWrite?.(block, count)
    const rc = s.fallocate(this.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, block * BLOCK_SIZE, count * BLOCK_SIZE)
    if (rc === 0) return true
    // A host file system without zero ranges (tmpfs, NFS, older ones): written as zeros.
    if (rc === -os.constants.errno.EOPNOTSUPP || rc === -os.constants.errno.EINVAL || rc === -os.constants.errno.ENOSYS) return (this.zeroRange = false)
    const code = util.getSystemErrorName(rc)
    throw ioError(this.path, Object.assign(new Error(`${code}: zeroing blocks failed, fallocate`), {code, errno: rc, syscall: 'fallocate'}))
  }

  /** false once the host said it cannot allocate a range */
  private allocRange = true
  /**
   * Blocks reserved on the host in this session, a bit each, by page of 2^15 blocks: nothing
   * here gives host blocks back (a zeroed range keeps its allocation), so each block is
   * reserved once, and a commit of blocks reserved before costs no call.
   */
  private readonly reserved = new Map<number, Uint8Array>()

  private isReserved(b: number): boolean {
    const page = this.reserved.get(Math.floor(b / 32768))
    const i = b % 32768
    return page !== undefined && (page[i >> 3] & (1 << (i & 7))) !== 0
  }

  private markReserved(from: number, to: number): void {
    for (let b = from; b < to; b++) {
      const k = Math.floor(b / 32768)
      let page = this.reserved.get(k)
      if (!page) this.reserved.set(k, page = new Uint8Array(4096))
      const i = b % 32768
      page[i >> 3] |= 1 << (i & 7)
    }
  }

  reserve(block: number, count: number): void {
    if (this.readOnly || !this.allocRange) return
    const s = sys()
    if (!s.fallocate) return void (this.allocRange = false)
    const end = block + count
    for (let b = block; b < end;) {
      while (b < end && this.isReserved(b)) b++
      if (b === end) break
      let e = b + 1
      while (e < end && !this.isReserved(e)) e++
      const rc = s.fallocate(this.fd, FALLOC_FL_KEEP_SIZE, b * BLOCK_SIZE, (e - b) * BLOCK_SIZE)
      if (rc !== 0) {
        if (rc === -os.constants.errno.EOPNOTSUPP || rc === -os.constants.errno.EINVAL || rc === -os.constants.errno.ENOSYS) return void (this.allocRange = false)
        const code = util.getSystemErrorName(rc)
        throw ioError(this.path, Object.assign(new Error(`${code}: reserving blocks failed, fallocate`), {code, errno: rc, syscall: 'fallocate'}))
      }
      this.markReserved(b, e)
      b = e
    }
  }

  identity(): {dev: bigint, ino: bigint} {
    const st = fs.fstatSync(this.fd, {bigint: true})
    return {dev: st.dev, ino: st.ino}
  }

  sync(): void {
    if (this.readOnly) return
    const err = this.behind?.settle()
    if (err) throw ioError(this.path, err)
    try {
      fs.fdatasyncSync(this.fd)
    } catch (e) {
      throw ioError(this.path, e)
    }
  }

  /** the O_DIRECT writer of file data (writebehind.ts); undefined until first asked for */
  private behind: WriteBehind | null | undefined

  dataBuffer(bytes: number): Buffer {
    if (this.behind === undefined) this.behind = this.readOnly || this.closed ? null : WriteBehind.open(this.path, this.fd)
    return this.behind?.buffer(bytes) ?? Buffer.allocUnsafeSlow(bytes)
  }

  writeBehind(block: number, bufs: Buffer[]): number {
    if (!this.behind) return 0
    if (this.beforeWrite) {
      // (Told again if the thread refuses the buffers and the caller writes them itself: a
      // pre-image is logged once, so that costs nothing.)
      let total = 0
      for (const b of bufs) total += b.length
      this.beforeWrite(block, total / BLOCK_SIZE)
    }
    return this.behind.write(block, bufs)
  }

  finished(): number {
    return this.behind?.finished() ?? 0
  }

  waitFinished(ticket: number): void {
    try {
      this.behind?.waitFor(ticket)
    } catch (e) {
      throw ioError(this.path, e)
    }
  }

  settle(): void {
    this.behind?.settle()
  }

  /** the thread that runs startWriteback's fdatasync, once started; state[0] is 1 while one runs */
  private hint: {worker: Worker, state: Int32Array} | null = null

  /**
   * Has a second thread fdatasync the image, at most one at a time, and returns at once: the
   * disk then writes file data while this thread prepares more, instead of all of it at the
   * next commit (the kernel starts writing back on its own only once a tenth or so of memory
   * is dirty). The thread uses a descriptor of its own: a write error is reported once per
   * open file, and that one's is ignored, so the error still reaches sync() on this one.
   */
  startWriteback(): void {
    if (this.readOnly || this.closed) return
    if (!this.hint) {
      const {dev, ino} = fs.fstatSync(this.fd)
      const state = new Int32Array(new SharedArrayBuffer(4))
      const worker = new Worker(WRITEBACK_SOURCE, {eval: true, workerData: {paths: reopenPaths(this.fd, this.path), dev, ino, state: state.buffer}})
      worker.unref()
      this.hint = {worker, state}
    }
    if (Atomics.compareExchange(this.hint.state, 0, 0, 1) !== 0) return // one is running
    this.hint.worker.postMessage('sync')
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    try {
      this.behind?.close() // its writes end before the lock is released
    } finally {
      this.behind = null
      for (const fd of this.streams) if (fd !== undefined && fd !== this.fd) fs.closeSync(fd)
      this.streams = []
      fs.closeSync(this.fd) // closing the descriptor releases the flock
    }
    // The writeback thread closes its descriptor and ends after any fdatasync it is running.
    this.hint?.worker.postMessage('close')
    this.hint = null
  }
}

/**
 * Files next to an image's lock, in the temporary directory, named after the image's device
 * and inode: 'expand' is held by the image's background expander for its lifetime, 'wait'
 * (shared) by every process waiting for the image lock, so that the expander can tell that
 * someone waits and let go within a few milliseconds (src/clone/background.ts).
 */
export function sidecarPath(fd: number, kind: 'expand' | 'wait'): string {
  const st = fs.fstatSync(fd)
  return `${os.tmpdir()}/prism-${kind}-${st.dev}-${st.ino}.lock`
}

/**
 * Opens the sidecar lock file of `kind` for the image open as `fd` (a flock needs only a
 * descriptor, so it is opened read-only): made if missing, readable and writable by everyone
 * whatever the umask, since users who share an image share its sidecars. Null when this
 * process may not open it: one another user left in a sticky /tmp that this one cannot read
 * or (protected_regular) open with O_CREAT. Sidecars only coordinate; their absence is never
 * an error.
 */
export function openSidecar(fd: number, kind: 'expand' | 'wait'): number | null {
  const p = sidecarPath(fd, kind)
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return null
    }
    try {
      const made = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o666)
      try {
        fs.fchmodSync(made, 0o666)
      } catch {
        // a file system without modes: it is ours anyway
      }
      return made
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return null
    }
  }
  return null
}

/** Takes a flock without waiting; false if another process holds a conflicting one. */
export function tryFlock(fd: number, how: 'exnb' | 'shnb'): boolean {
  try {
    fsExt.flockSync(fd, how)
    return true
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return false
    throw e
  }
}

function lock(fd: number, path: string, opts: OpenOptions): void {
  const how = opts.write ? 'exnb' : 'shnb'
  const deadline = Date.now() + Math.max(0, opts.wait ?? 5) * 1000
  let told = false
  let announce: number | null = null
  try {
    for (;;) {
      try {
        if (tryFlock(fd, how)) return
      } catch (e) {
        throw ioError(path, e)
      }
      checkInterrupt()
      if (Date.now() >= deadline) {
        // (mkfs never waits: it would make a new image under a process using the old one)
        throw new PrismError('ELOCKED', opts.noWaitHint
          ? `${path} is locked by another prism process: let it end first`
          : `${path} is locked by another prism process (waited ${opts.wait ?? 5}s; raise --wait to wait longer)`)
      }
      if (!told) { told = true; opts.onWait?.() }
      // Say that we wait (a shared lock on the 'wait' file): a background expander checks it
      // between directories and ends its slice. Best effort: without it we still get in
      // between two slices.
      if (announce === null) {
        try {
          announce = openSidecar(fd, 'wait')
          if (announce !== null && !tryFlock(announce, 'shnb')) { fs.closeSync(announce); announce = null }
        } catch {
          announce = null
        }
      }
      sleepMs(5)
    }
  } finally {
    if (announce !== null) fs.closeSync(announce)
  }
}
