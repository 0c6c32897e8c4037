// Spooling an input stream before the image is locked. A command that writes what it reads
// from a pipe (prism write; later prism import - of a tar archive) must never hold the
// image's lock while it waits for its input: every other reader and writer would wait with
// it. So the input is read to its end first, in memory up to a bound and the rest into an
// unnamed temporary file (O_TMPFILE in the temporary directory, or a file unlinked as soon as
// it is made, so nothing is left behind however the process ends), and replayed in large
// chunks once the lock is held. Host I/O only: this module never sees the image.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {PrismError, fail, hostReason} from '../errors.js'
import {interruptible} from '../interrupt.js'
import {crypto} from '../lazy.js'

/** Input kept in memory before the rest goes to a temporary file. */
export const SPOOL_MEMORY = 64 * 1024 * 1024
/** Bytes per chunk handed back by chunks(): whole blocks, the size of the import's reads. */
export const SPOOL_CHUNK = 8 * 1024 * 1024

/** Linux's O_TMPFILE (__O_TMPFILE | O_DIRECTORY); Node does not export it. */
const O_TMPFILE = 0o20000000 | fs.constants.O_DIRECTORY

export interface SpoolOptions {
  /** bytes kept in memory (default SPOOL_MEMORY) */
  memory?: number
  /** where the temporary file goes (default os.tmpdir(): $TMPDIR) */
  tmpdir?: string
  /**
   * Bytes past which the input cannot be what is asked (`prism write`: more than the whole
   * image holds): reading stops there with ENOSPC, rather than filling $TMPDIR first.
   */
  limit?: number
  /** names what cannot hold more than `limit` bytes, for the error (default 'the image') */
  limitOf?: string
}

export function spoolError(dir: string, e: unknown): PrismError {
  const err = e as NodeJS.ErrnoException
  return new PrismError('EHOST', `cannot spool the input in ${dir} (set TMPDIR to another directory): ${hostReason(err)}`)
}

/** An unnamed file for reading and writing in `dir`. */
function tempFile(dir: string): number {
  if (process.platform === 'linux') {
    try {
      return fs.openSync(dir, O_TMPFILE | fs.constants.O_RDWR, 0o600)
    } catch (e) {
      // A file system without O_TMPFILE: a named file, unlinked at once.
      const code = (e as NodeJS.ErrnoException).code
      if (code !== 'EOPNOTSUPP' && code !== 'EISDIR' && code !== 'EINVAL' && code !== 'ENOTSUP') throw e
    }
  }
  const p = path.join(dir, `.prism-spool-${process.pid}-${crypto().randomBytes(6).toString('hex')}`)
  const fd = fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
  fs.unlinkSync(p)
  return fd
}

export class Spool {
  private mem: Buffer[] = []
  private memBytes = 0
  private fd = -1
  private fileBytes = 0
  private closed = false

  private constructor(private readonly memory: number, private readonly dir: string) {}

  /** Reads `input` to its end. */
  /**
   * Spools standard input. One that cannot be read (a directory: Node's stream would end at
   * once, as if empty, and a write would empty the file) is an error, not empty input.
   */
  static async readStdin(opts: SpoolOptions = {}): Promise<Spool> {
    let st: fs.Stats | null = null
    try {
      st = fs.fstatSync(0)
    } catch {
      // (no descriptor 0 to look at: Node's stream says what reading it gives)
    }
    if (st?.isDirectory()) fail('EISDIR', 'cannot read standard input: is a directory')
    return Spool.read(process.stdin, opts)
  }

  static async read(input: AsyncIterable<Buffer | string>, opts: SpoolOptions = {}): Promise<Spool> {
    const s = new Spool(opts.memory ?? SPOOL_MEMORY, opts.tmpdir ?? os.tmpdir())
    const all = async () => {
      for await (const piece of input) {
        s.add(typeof piece === 'string' ? Buffer.from(piece) : piece)
        if (opts.limit !== undefined && s.size > opts.limit) {
          fail('ENOSPC', `the input is larger than ${opts.limitOf ?? 'the image'} (${opts.limit} bytes): no space for it`)
        }
      }
    }
    try {
      // A signal while the input is awaited stops the command at once (src/interrupt.ts).
      await interruptible(all(), () => (input as {destroy?: () => void}).destroy?.())
    } catch (e) {
      s.close()
      throw e
    }
    return s
  }

  /** Bytes spooled. */
  get size(): number {
    return this.memBytes + this.fileBytes
  }

  /** Bytes that went to the temporary file. */
  get onDisk(): number {
    return this.fileBytes
  }

  private add(buf: Buffer): void {
    if (buf.length === 0) return
    if (this.fd < 0 && this.memBytes + buf.length <= this.memory) {
      this.mem.push(buf)
      this.memBytes += buf.length
      return
    }
    try {
      if (this.fd < 0) this.fd = tempFile(this.dir)
      let done = 0
      while (done < buf.length) done += fs.writeSync(this.fd, buf, done, buf.length - done, this.fileBytes + done)
    } catch (e) {
      throw spoolError(this.dir, e)
    }
    this.fileBytes += buf.length
  }

  /**
   * The input, in order, in chunks of `chunk` bytes (the last one shorter). A chunk's memory
   * is reused for the next one: consume it (or copy it) before asking for more.
   */
  *chunks(chunk = SPOOL_CHUNK): Generator<Buffer> {
    if (this.closed) throw new Error('spool is closed')
    const out = Buffer.allocUnsafe(Math.min(chunk, Math.max(1, this.size)))
    let used = 0
    for (const piece of this.mem) {
      let at = 0
      while (at < piece.length) {
        const n = Math.min(out.length - used, piece.length - at)
        piece.copy(out, used, at, at + n)
        used += n
        at += n
        if (used === out.length) {
          yield out
          used = 0
        }
      }
    }
    for (let pos = 0; pos < this.fileBytes;) {
      let n: number
      try {
        n = fs.readSync(this.fd, out, used, Math.min(out.length - used, this.fileBytes - pos), pos)
      } catch (e) {
        throw spoolError(this.dir, e)
      }
      if (n === 0) throw spoolError(this.dir, new Error('the temporary file is shorter than what was written to it'))
      used += n
      pos += n
      if (used === out.length) {
        yield out
        used = 0
      }
    }
    if (used > 0) yield out.subarray(0, used)
  }

  /** Frees the memory and closes the temporary file (which then disappears). */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.mem = []
    if (this.fd >= 0) fs.closeSync(this.fd)
    this.fd = -1
  }
}
