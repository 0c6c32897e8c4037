// The ends of `prism import` and `prism export` that touch the host: the archive file or
// stream, its compression, and the temporary spool of an archive read from standard input
// (or a pipe). A spool is written before the image is opened: an import waits for its input
// without holding the image lock, so no other prism command waits for a slow producer
// (docker export | prism import ...). The spool file is unlinked as soon as it is open, so
// nothing is left behind whatever happens. Everything here streams: no archive is held in memory.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {PrismError, hostReason} from '../errors.js'
import {interruptible} from '../interrupt.js'
import {spoolError} from '../ops/spool.js'
import {growPipe, openOutput} from '../sys.js'
import type {Volume} from '../fs/volume.js'
import type {Namespace} from '../fs/namespace.js'
import {compressor, detectCompression, type Compression} from './compress.js'
import {TAR_BLOCK, decodeHeader, isZeroBlock} from './codec.js'
import {exportTar, type ExportOptions, type ExportStats} from './export.js'
import type {ImportOptions, ImportStats, ImportTarget} from './import.js'

/** An archive to import, open for reading from its start. */
export interface ArchiveInput {
  fd: number
  /** how it is named in messages */
  name: string
  /** bytes read from a pipe into the spool (0 for a regular file read in place) */
  spooled: number
  close(): void
}

/**
 * A host file's or stream's error (the archive, standard input or output): exit status 1, as
 * README "Exit codes" gives a host file's errors (6 and 7 are the image's: full, I/O error).
 */
function hostError(e: unknown, what: string): PrismError {
  if (e instanceof PrismError) return e
  const err = e as NodeJS.ErrnoException
  const code = err.code === 'ENOENT' ? 'ENOENT' : err.code === 'EISDIR' ? 'EISDIR' : err.code === 'EACCES' || err.code === 'EPERM' ? 'EACCES' : 'EHOST'
  return new PrismError(code, `${what}: ${hostReason(err)}`)
}

/**
 * Opens the archive to import: a regular file is read where it is; standard input ('-') or
 * any other kind of file (a pipe, a FIFO, a character device) is first copied to a temporary
 * file (in $TMPDIR), which it needs room for (the archive as it came, still compressed).
 */
export async function openArchive(arg: string): Promise<ArchiveInput> {
  if (arg !== '-') {
    let fd: number
    try {
      if (fs.statSync(arg, {throwIfNoEntry: false})?.isFIFO()) {
        // A FIFO is opened without waiting for its writer (open(2) would wait for one where
        // no signal is looked at) and read as a socket-like stream: it waits, Ctrl-C heard,
        // until a writer comes, and ends when the last writer closes (epoll tells no end
        // before a first writer came).
        fd = fs.openSync(arg, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
        if (fs.fstatSync(fd).isFIFO()) return spool(new net.Socket({fd, readable: true, writable: false}), arg)
        fs.closeSync(fd) // (replaced since the stat: opened again as what it is now)
      }
      fd = fs.openSync(arg, fs.constants.O_RDONLY)
      if (fs.fstatSync(fd).isDirectory()) {
        fs.closeSync(fd)
        throw new PrismError('EISDIR', `${arg}: is a directory, not an archive`)
      }
    } catch (e) {
      throw hostError(e, arg)
    }
    if (fs.fstatSync(fd).isFile()) return {fd, name: arg, spooled: 0, close: () => fs.closeSync(fd)}
    return spool(fs.createReadStream('', {fd, autoClose: true}), arg)
  }
  let st: fs.Stats | null = null
  try {
    st = fs.fstatSync(0)
  } catch {
    // (closed: read as an empty input, which the import then names)
  }
  if (st?.isDirectory()) throw new PrismError('EISDIR', 'cannot read standard input: is a directory')
  return spool(process.stdin, 'standard input')
}

/** Whether an archive's first two blocks are all an import needs of it (see spool). */
function readFarEnough(head: Buffer): boolean {
  if (detectCompression(head) !== 'none') return false
  if (isZeroBlock(head, 0)) return isZeroBlock(head, TAR_BLOCK)
  try {
    decodeHeader(head, 0)
    return false
  } catch {
    return true
  }
}

async function spool(src: Readable, name: string): Promise<ArchiveInput> {
  let fd: number
  try {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-import-'))
    const file = path.join(dir, 'archive')
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600)
    // Gone from the directory at once: only the descriptor holds it.
    fs.unlinkSync(file)
    fs.rmdirSync(dir)
  } catch (e) {
    // ($TMPDIR missing, not writable, full: one line, exit 1, as write's spool says it)
    throw spoolError(os.tmpdir(), e)
  }
  let spooled = 0
  // The first two blocks say at once whether the rest is worth reading: a plain tar that ends
  // there (two zero blocks: /dev/zero is an empty archive, as GNU tar reads it) or that does
  // not start with a tar header (`yes |`) is not read to its end, which may never come; the
  // import then reads what was kept and says what it is.
  let head: Buffer | null = Buffer.alloc(0)
  const STOP = new Error('the archive was read far enough')
  try {
    // A signal while the archive is awaited stops the command at once (src/interrupt.ts).
    await interruptible(pipeline(src, new Writable({
      write(chunk: Buffer, _enc, cb) {
        try {
          let o = 0
          while (o < chunk.length) o += fs.writeSync(fd, chunk, o, chunk.length - o)
          spooled += chunk.length
          if (head) {
            head = Buffer.concat([head, chunk.subarray(0, 2 * TAR_BLOCK - head.length)])
            if (head.length === 2 * TAR_BLOCK) {
              const enough = readFarEnough(head)
              head = null
              if (enough) { cb(STOP); return }
            }
          }
          cb()
        } catch (e) {
          cb(e as Error)
        }
      },
    })), () => src.destroy())
  } catch (e) {
    if (e !== STOP) {
      fs.closeSync(fd)
      throw e instanceof PrismError ? e : hostError(e, `reading the archive from ${name} into a temporary file`)
    }
  }
  return {fd, name, spooled, close: () => fs.closeSync(fd)}
}

/**
 * A bzip2-compressed archive, decoded into a temporary file (a plain tar, read as an archive
 * spooled from a pipe), or null for any other. For a served image: the decoder is JavaScript,
 * which holds its thread up to a fifth of a second per block, so the command decodes, not the
 * server, whose mounts would wait meanwhile (src/cli/servedimport.ts).
 */
export async function bunzipped(input: ArchiveInput): Promise<ArchiveInput | null> {
  const head = Buffer.alloc(6)
  const n = fs.readSync(input.fd, head, 0, head.length, 0)
  if (detectCompression(head.subarray(0, n)) !== 'bzip2') return null
  const {decompressed} = await import('./compress.js')
  return spool(Readable.from(decompressed(fileChunks(input.fd))), input.name)
}

/**
 * The file's bytes from its start, 1 MiB at a time, to its end or `size` bytes (the descriptor
 * stays open: the caller closes it).
 */
export async function* fileChunks(fd: number, size = Infinity): AsyncGenerator<Buffer> {
  let pos = 0
  while (pos < size) {
    const buf = Buffer.allocUnsafe(Math.min(1024 * 1024, size - pos))
    const bytesRead = await new Promise<number>((resolve, reject) => fs.read(fd, buf, 0, buf.length, pos, (e, n) => (e ? reject(e) : resolve(n))))
    if (bytesRead === 0) return
    pos += bytesRead
    yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead)
  }
}

/** Imports an opened archive; all or nothing (src/tar/import.ts importStream). */
export async function importArchive(vol: Volume, target: ImportTarget, input: ArchiveInput, opts: ImportOptions = {}): Promise<ImportStats> {
  // Loaded here: an export needs none of the importer.
  const {importStream} = await import('./import.js')
  return importStream(vol, target, fileChunks(input.fd), opts)
}

/** Where an export goes: a file (created or truncated), or standard output. */
export interface ArchiveOutput {
  arg: string
  compression: Compression
}

/**
 * Writes the archive of `path` of `ns`. A file is written through its descriptor (written
 * whole, or removed if the export fails and made it); standard output is a stream, with
 * back-pressure.
 */
export async function exportArchive(ns: Namespace, srcPath: string, out: ArchiveOutput, opts: ExportOptions = {}): Promise<ExportStats> {
  const toStdout = out.arg === '-'
  const comp = compressor(out.compression)
  // Plain tar into a file: each chunk is written before the next is asked for, so the
  // export fills one buffer over and over. A stream may hold on to a chunk: new memory each.
  const gen = exportTar(ns, srcPath, {...opts, reuseChunks: !comp && !toStdout})
  let fd = -1
  // A new file, or a regular file of one name, is written beside its name (`.NAME.prism-…`)
  // and renamed over it once whole: a failure or a signal leaves what was there before (or
  // nothing), never part of an archive, and removes only what the export made. A device
  // (/dev/null), a FIFO, a symlink or a file with other names is written into, and never removed.
  let temp: string | null = null
  if (!toStdout) {
    let st: fs.BigIntStats | undefined
    let lst: fs.BigIntStats | undefined
    try {
      st = fs.statSync(out.arg, {bigint: true, throwIfNoEntry: false})
      lst = fs.lstatSync(out.arg, {bigint: true, throwIfNoEntry: false})
    } catch {
      st = lst = undefined // open says why
    }
    if (st && ns.vol.isImageFile(st)) throw new PrismError('EUSAGE', `${out.arg}: that is the image itself; write the archive elsewhere`)
    try {
      if (!lst || (lst.isFile() && lst.nlink === 1n)) {
        const t = path.join(path.dirname(out.arg), `.${path.basename(out.arg)}.prism-${process.pid}-${Math.random().toString(36).slice(2, 8)}`)
        try {
          fd = fs.openSync(t, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644)
          temp = t
        } catch (e) {
          // (a directory the user may not create in, though the file is writable: written in place)
          if (!lst || !['EACCES', 'EPERM', 'EROFS'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e
        }
        if (temp && lst) {
          // It takes the place of the file: with its mode, and its owner where allowed.
          fs.fchmodSync(fd, Number(lst.mode & 0o7777n))
          try { fs.fchownSync(fd, Number(lst.uid), Number(lst.gid)) } catch { /* not ours to give */ }
        }
      }
      if (fd < 0) fd = openOutput(out.arg, fs.constants.O_TRUNC) // (a FIFO: waits for its reader, Ctrl-C heard)
    } catch (e) {
      throw hostError(e, out.arg)
    }
  }
  if (toStdout) growPipe(1)
  let stats: ExportStats | null = null
  try {
    if (!comp && !toStdout) {
      for (;;) {
        const r = gen.next()
        if (r.done) { stats = r.value; break }
        writeAll(fd, r.value, out.arg)
      }
    } else {
      const src = Readable.from((function* () {
        const r = yield* gen
        stats = r
      })(), {objectMode: false, highWaterMark: 4 * 1024 * 1024})
      const sink = toStdout ? process.stdout : fdSink(fd)
      if (comp) await pipeline(src, comp, sink, {end: !toStdout})
      else await pipeline(src, sink, {end: !toStdout})
    }
    if (temp) {
      fs.closeSync(fd)
      fd = -1
      fs.renameSync(temp, out.arg)
      temp = null
    }
  } catch (e) {
    if (toStdout && (e as NodeJS.ErrnoException).code === 'EPIPE') throw new PrismError('EHOST', 'standard output was closed before the archive was written')
    throw e instanceof PrismError ? e : hostError(e, toStdout ? 'standard output' : out.arg)
  } finally {
    if (fd >= 0) fs.closeSync(fd)
    if (temp) try { fs.unlinkSync(temp) } catch { /* already gone */ }
  }
  return stats!
}

/**
 * A stream that writes to `fd` and never closes it: the export closes what it opened, once.
 * (fs.WriteStream closes its descriptor when destroyed, autoClose or not, and a pipeline
 * destroys its streams when one fails, as a write to a pipe whose reader has gone does.)
 */
function fdSink(fd: number): Writable {
  return new Writable({
    highWaterMark: 4 * 1024 * 1024,
    write(chunk: Buffer, _enc, cb): void {
      const from = (o: number): void => {
        fs.write(fd, chunk, o, chunk.length - o, null, (e, n) => {
          if (e) cb(e)
          else if (o + n < chunk.length) from(o + n)
          else cb()
        })
      }
      from(0)
    },
  })
}

function writeAll(fd: number, buf: Buffer, name: string): void {
  try {
    for (let o = 0; o < buf.length;) o += fs.writeSync(fd, buf, o, buf.length - o)
  } catch (e) {
    throw hostError(e, name)
  }
}
