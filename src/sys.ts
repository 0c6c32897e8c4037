// The system calls Node does not offer, through Prism's own small native addon (native/sys.c,
// built by `npm ci`): one interface, loaded on first use as fs-ext is, so that a command that
// needs none of it never loads it: it catches signals for the CLI, and offers utimensat with
// nanoseconds, mknod, extended attributes of a path without following it, a pipe's buffer
// size, a socket peer's credentials, and fallocate (a range of the image zeroed by the host).
// It must never hold policy: callers decide what a signal means, and what to do when a call
// fails; this only reports (the helpers below for streaming to a pipe, outputFd and
// writeAll, ask for a larger, blocking pipe and accept a refusal; openOutput waits for a
// FIFO's reader between the callers' own signal checks).
// The file calls take paths and names as Buffers (bytes, as names are) and throw errors shaped
// as Node's own (code, errno, syscall, path).
import fs from 'node:fs'
import {createRequire} from 'node:module'
import {crc32} from './format/checksum.js'
import {checkInterrupt} from './interrupt.js'

const require = createRequire(import.meta.url)

export interface Sys {
  /**
   * Installs handlers for SIGINT, SIGTERM and SIGHUP (once; later calls return the same
   * state). Returns shared memory: [0] the first signal caught (0: none), [1] set non-zero by
   * the caller when it has taken the signal and begun to stop, [2] signals caught so far.
   * If the signal is not taken within `graceMs`, or is not over within `afterTakenMs` of
   * being taken, or a second signal comes, the process ends by the signal's default action.
   */
  catchSignals(graceMs: number, afterTakenMs: number): Int32Array
  /** The names of a path's extended attributes (a final symlink not followed), as bytes. */
  llistxattr(path: Buffer): Buffer[]
  /** One attribute's value, or null when the path has none by that name. */
  lgetxattr(path: Buffer, name: Buffer): Buffer | null
  /** Sets an attribute (flags: 1 XATTR_CREATE, 2 XATTR_REPLACE). */
  lsetxattr(path: Buffer, name: Buffer, value: Buffer, flags: number): void
  lremovexattr(path: Buffer, name: Buffer): void
  /** utimensat(2) to the nanosecond; with `nofollow`, a symlink itself. */
  utimensat(path: Buffer, atimeS: number, atimeNs: number, mtimeS: number, mtimeNs: number, nofollow: boolean): void
  futimens(fd: number, atimeS: number, atimeNs: number, mtimeS: number, mtimeNs: number): void
  /** syncfs(2) of the filesystem `fd` is on. */
  syncfs?(fd: number): void
  /** mknod(2): `mode` holds the type (S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK) and permissions. */
  mknod(path: Buffer, mode: number, major: number, minor: number): void
  /** Grows a pipe's buffer to at least `bytes` (fcntl F_SETPIPE_SZ, never shrinking it): its size, or -errno. */
  setPipeSize(fd: number, bytes: number): number
  /** sendfile(2) of at most `count` bytes of inFd from byte `pos` to outFd: the bytes sent, or -errno. */
  sendFile?(outFd: number, inFd: number, pos: number, count: number): number
  /** fallocate(2) of [offset, offset + length) of an open file with `mode` (FALLOC_FL_*): 0, or -errno. */
  fallocate?(fd: number, mode: number, offset: number, length: number): number
  /** The bytes a pipe holds unread (FIONREAD), -EPIPE when it has no reader left, or -errno. */
  pipeUnread?(fd: number): number
  /** The credentials of a connected Unix socket's other end. */
  peerCred(fd: number): {pid: number, uid: number, gid: number}
  /** out[k] = the CRC-32 of buf[k * stride, k * stride + len) for k < count (see crc32Many below). */
  crc32Many?(buf: Uint8Array, count: number, stride: number, len: number, out: Uint32Array): void
  /** The CRC-32 of buf[start, end) continuing from seed (see fastCrc32 below). */
  crc32?(buf: Uint8Array, start: number, end: number, seed: number): number
  /** out[0], out[1] = the seconds and nanoseconds of CLOCK_REALTIME */
  realtime?(out: Float64Array): void
}

let loaded: Sys | null = null

/** Where the addon is (for a worker thread, which loads it for itself). */
export function sysAddonPath(): string {
  // src/sys.ts, dist/sys.js and the bundles dist/fast.cjs and dist/fast-fsck.cjs all sit one level below the root.
  return require.resolve('../native/build/Release/prism_sys.node')
}

/** The addon (throws if it was not built: run `npm ci`). */
export function sys(): Sys {
  loaded ??= require(sysAddonPath()) as Sys
  return loaded
}

/** What a command writing a stream to a pipe asks of it: 1 MiB, Linux's default pipe-max-size. */
const PIPE_BYTES = 1 << 20

/**
 * Grows the buffer of the pipe at `fd` (when it is one) so that a command streaming data
 * into it wakes its reader once per megabyte rather than once per 64 KiB page ring: on two
 * cores `prism cat | cat` then runs at memory speed instead of at the speed of context
 * switches. Anything that fails (no pipe, no addon, a user past the pipe limits) leaves the
 * pipe as it was.
 */
export function growPipe(fd: number): void {
  try {
    if (fs.fstatSync(fd).isFIFO()) sys().setPipeSize(fd, PIPE_BYTES)
  } catch {
    // not a pipe we may grow: written as it is
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4))

/**
 * A descriptor to stream output to in place of `fd`, this process's own standard output or
 * error. Node makes a pipe on them non-blocking, and then every full pipe costs a retry:
 * reopening the same pipe through /proc gives a descriptor of its own that blocks, grown to
 * 1 MiB. A socket cannot be reopened, and anything else needs no reopening: `fd` itself is
 * returned. The caller closes a descriptor that differs from `fd`.
 */
export function outputFd(fd: number): number {
  try {
    if (fs.fstatSync(fd).isFIFO()) {
      const own = fs.openSync(`/proc/self/fd/${fd}`, 'w')
      growPipe(own)
      return own
    }
  } catch {
    // not Linux, or no /proc: written as it is
  }
  return fd
}

/** How often an open that waits for a FIFO's reader asks whether a signal came (openOutput). */
const FIFO_POLL_MS = 20

/**
 * Opens host file `p` to write into it: O_WRONLY with `flags` (O_TRUNC, O_CREAT | O_EXCL,
 * ...). A FIFO is waited for until a reader opens it, as `cat > FIFO` waits, but not inside
 * open(2), which would hold the thread until then where no signal is looked at: the open is
 * tried without blocking (ENXIO while there is no reader) every FIFO_POLL_MS, and
 * checkInterrupt() is asked between tries, so Ctrl-C stops the command at once. The
 * descriptor returned blocks on writes as usual. Anything else opens as open(2) opens it.
 */
export function openOutput(p: string | Buffer, flags: number, mode = 0o666): number {
  const {O_WRONLY, O_NONBLOCK} = fs.constants
  let fifo = false
  try {
    fifo = fs.statSync(p).isFIFO()
  } catch {
    // open says why
  }
  if (!fifo) return fs.openSync(p, O_WRONLY | flags, mode)
  for (;;) {
    let fd: number
    try {
      fd = fs.openSync(p, O_WRONLY | O_NONBLOCK | flags, mode)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENXIO') throw e
      checkInterrupt()
      Atomics.wait(sleeper, 0, 0, FIFO_POLL_MS)
      continue
    }
    if (!fs.fstatSync(fd).isFIFO()) return fd // (replaced since the stat: written as it is, writeAll waits out EAGAIN)
    let blocking: number
    try {
      // A reader is there now: the same pipe, opened again through /proc to block (never waits).
      blocking = fs.openSync(`/proc/self/fd/${fd}`, O_WRONLY)
    } catch {
      return fd // (no /proc: the non-blocking descriptor; writeAll waits out EAGAIN)
    }
    fs.closeSync(fd)
    return blocking
  }
}

/**
 * Writes all of `buf` to `fd`, waiting out a full non-blocking pipe or socket (EAGAIN), as a
 * blocking write would. Returns false when the reader is gone (EPIPE); throws anything else.
 */
export function writeAll(fd: number, buf: Uint8Array): boolean {
  let done = 0
  while (done < buf.length) {
    try {
      done += fs.writeSync(fd, buf, done, buf.length - done)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EAGAIN') { Atomics.wait(sleeper, 0, 0, 1); continue }
      if (code === 'EPIPE') return false
      throw e
    }
  }
  return true
}

/** The addon, or null where it is not built (an older build may also lack a newer call). */
function sysIfBuilt(): Sys | null {
  try {
    return sys()
  } catch {
    return null
  }
}

const EAGAIN = 11
const EPIPE = 32

/**
 * Sends `count` bytes of `inFd` from byte `pos` to `outFd` with sendfile(2), without copying
 * them through memory, waiting out a full non-blocking output. Returns the bytes sent: all of
 * them; fewer where sendfile cannot go on (not supported between these descriptors, or the
 * end of inFd): the caller writes the rest itself; or -1 when the reader is gone (EPIPE).
 * Throws on an I/O error. A pipe then holds references to the page cache of inFd, not
 * copies: see drainPipe.
 */
export function sendAll(outFd: number, inFd: number, pos: number, count: number): number {
  const s = sysIfBuilt()
  if (typeof s?.sendFile !== 'function') return 0
  let done = 0
  while (done < count) {
    const n = s.sendFile(outFd, inFd, pos + done, count - done)
    if (n > 0) { done += n; continue }
    if (n === 0) break // the end of inFd
    if (n === -EAGAIN) { Atomics.wait(sleeper, 0, 0, 1); continue }
    if (n === -EPIPE) return -1
    if (n === -22 || n === -38 || n === -95) break // EINVAL, ENOSYS, EOPNOTSUPP: not between these
    throw Object.assign(new Error(`sendfile failed: errno ${-n}`), {errno: n, code: n === -5 ? 'EIO' : `E${-n}`, syscall: 'sendfile'})
  }
  return done
}

/**
 * Waits until the pipe at `fd` holds nothing unread (or its reader is gone). What sendfile put
 * in a pipe are references to the page cache of the file it came from, so a process that sent
 * data of the image this way keeps the image until the reader has taken it: otherwise a later
 * write to a block the pipe still names (a freed block given to another file) would change
 * what the reader gets.
 */
export function drainPipe(fd: number): void {
  const s = sysIfBuilt()
  if (typeof s?.pipeUnread !== 'function') return
  for (let wait = 0; s.pipeUnread(fd) > 0; wait = Math.min(wait + 1, 20)) Atomics.wait(sleeper, 0, 0, wait)
}

/**
 * The CRC-32 (as format/checksum.ts crc32) of `count` records of `len` bytes, `stride` bytes
 * apart from the start of `buf`, into out[0, count): the checksums of an inode table's slots.
 * The addon computes them all in one call (a call from JavaScript per 252-byte record costs
 * more than its checksum); without it, one call each.
 */
export function crc32Many(buf: Uint8Array, count: number, stride: number, len: number, out: Uint32Array): void {
  const s = sysIfBuilt()
  if (typeof s?.crc32Many === 'function') return s.crc32Many(buf, count, stride, len, out)
  for (let k = 0; k < count; k++) out[k] = crc32(buf, k * stride, k * stride + len)
}

/**
 * format/checksum.ts crc32, through the addon where it is built: a 4 KiB block (a directory
 * bucket) takes a quarter of the time (carry-less multiplication; zlib as Node links it
 * does not use it).
 */
export function fastCrc32(buf: Uint8Array, start = 0, end = buf.length, seed = 0): number {
  crcOf ??= sysIfBuilt()?.crc32 ?? crc32
  return crcOf(buf, start, end, seed)
}

/**
 * The time now to the nanosecond, as the kernel stamps files (CLOCK_REALTIME): a file's times
 * set by Prism and by the kernel (a mount's setattr) then never go backwards between them, as
 * a stamp of Date.now()'s whole milliseconds could. Without the addon: Date.now()'s
 * milliseconds, with the monotonic clock's digits below them.
 */
export function realtimeNow(): {s: number, ns: number} {
  if (realtimeOf === undefined) realtimeOf = sysIfBuilt()?.realtime ?? null
  if (realtimeOf) {
    realtimeOf(clockOut)
    return {s: clockOut[0], ns: clockOut[1]}
  }
  const ms = Date.now()
  return {s: Math.floor(ms / 1000), ns: (ms % 1000) * 1_000_000 + Number(process.hrtime.bigint() % 1_000_000n)}
}

let realtimeOf: ((out: Float64Array) => void) | null | undefined
const clockOut = new Float64Array(2)

let crcOf: ((buf: Uint8Array, start: number, end: number, seed: number) => number) | null = null
