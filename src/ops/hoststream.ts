// A host tree as a stream, for a copy into a served image (prism cp -r HOST FILESET:/ while
// the image is mounted): the CLI reads the host (hostFrames: it has the caller's permissions)
// and sends what a copy asks of the host, path by path, over the image's socket; the server
// answers the copy's questions from it (StreamSource, a HostSource: src/ops/hostsource.ts).
//
// The stream is frames: u32 LE payload length, u8 type, payload.
//   'H' a path's record, JSON: its lstat (or the error), and what the copy may ask next of it:
//       a directory's attributes and names, a symlink's target and attributes, a file's
//       attributes, its open error or the byte ranges the copy reads (dataPlan);
//   'D' file data of the record before: f64 LE file offset, then the bytes;
//   'E' the end of that file's data, JSON: the read error that ended it, if any;
//   'Z' the end of the stream.
// Records come in the order the copy walks the tree (each directory before its entries, names
// in byte order, as the copy reads them), one for every path under each source, so that the
// copy's questions are a subsequence: a record it does not ask for (a subtree it skips) is
// passed over. Byte strings (paths, names, targets, attributes) are base64.
import fs from 'node:fs'
import {BLOCK_SIZE} from '../format/constants.js'
import {nameBytes, nameText} from '../format/name.js'
import type {Xattr} from '../format/xattr.js'
import {PrismError} from '../errors.js'
import {checkInterrupt} from '../interrupt.js'
import {dataPlan, joinHost, localSource, type HostSource, type HostStat} from './hostsource.js'
import {call, run, type Frame as WalkFrame} from '../frames.js'

/** A host call's failure, as Node threw it. */
interface ErrInfo {
  code?: string
  errno?: number
  syscall?: string
  message: string
}

interface Record {
  p: string
  st?: {[k in StatField]: string}
  se?: ErrInfo
  x?: Array<[string, string]>
  xe?: ErrInfo
  names?: string[]
  ne?: ErrInfo
  link?: string
  le?: ErrInfo
  oe?: ErrInfo
  ranges?: Array<[number, number]>
}

const STAT_FIELDS = ['dev', 'ino', 'mode', 'nlink', 'uid', 'gid', 'rdev', 'size', 'blocks', 'atimeNs', 'mtimeNs'] as const
type StatField = typeof STAT_FIELDS[number]

/** A source argument of the copy, as the CLI saw it (HostSource.isDir, baseName). */
export interface StreamedSource {
  path: string
  isDir: boolean
  base: string
}

const H = 0x48
const D = 0x44
const E = 0x45
const Z = 0x5a

function frame(type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(5)
  head.writeUInt32LE(payload.length, 0)
  head[4] = type
  return Buffer.concat([head, payload])
}

const json = (type: number, v: unknown) => frame(type, Buffer.from(JSON.stringify(v)))
const b64 = (b: Buffer) => b.toString('base64')

function errInfo(e: unknown): ErrInfo {
  const err = e as NodeJS.ErrnoException
  return {code: err.code, errno: err.errno, syscall: err.syscall, message: err.message}
}

function toError(i: ErrInfo): Error {
  return Object.assign(new Error(i.message), {code: i.code, errno: i.errno, syscall: i.syscall})
}

/** The last frame of a stream. */
export const END_FRAME = frame(Z, Buffer.alloc(0))

/** The sources of a copy as the CLI sees them, for the server's HostSource. */
export function streamedSources(paths: string[]): StreamedSource[] {
  return paths.map((p) => ({path: p, isDir: localSource.isDir(p), base: localSource.baseName(p)}))
}

/** The bytes of file data a D frame carries at most. */
const CHUNK = 1024 * 1024

/**
 * The frames of the host trees at `paths` (without the end frame), read by this process.
 * A directory's entries are read only when `recursive` (the copy enters none otherwise).
 */
export function* hostFrames(paths: string[], recursive: boolean): Generator<Buffer, void> {
  // (a frame per directory level, run off the JavaScript stack: src/frames.ts)
  for (const p of paths) yield* run(pathFrames(nameBytes(p), recursive))
}

function* pathFrames(p: Buffer, recursive: boolean): WalkFrame<void, Buffer> {
  checkInterrupt()
  const rec: Record = {p: b64(p)}
  let st: fs.BigIntStats
  try {
    st = fs.lstatSync(p, {bigint: true})
  } catch (e) {
    rec.se = errInfo(e)
    yield json(H, rec)
    return
  }
  rec.st = Object.fromEntries(STAT_FIELDS.map((k) => [k, String(st[k])])) as Record['st']
  try {
    rec.x = localSource.xattrs(p).map((x) => [b64(x.name), b64(x.value)])
  } catch (e) {
    rec.xe = errInfo(e)
  }
  if (st.isDirectory()) {
    let names: Buffer[] = []
    if (recursive) {
      try {
        names = localSource.names(p)
        rec.names = names.map(b64)
      } catch (e) {
        rec.ne = errInfo(e)
      }
    }
    yield json(H, rec)
    for (const n of names) yield* call(pathFrames(joinHost(p, n), recursive))
    return
  }
  if (st.isSymbolicLink()) {
    try {
      rec.link = b64(localSource.readlink(p))
    } catch (e) {
      rec.le = errInfo(e)
    }
    yield json(H, rec)
    return
  }
  if (!st.isFile()) {
    yield json(H, rec)
    return
  }
  let fd: number
  try {
    fd = localSource.open(p)
  } catch (e) {
    rec.oe = errInfo(e)
    yield json(H, rec)
    return
  }
  try {
    const size = Number(st.size)
    rec.ranges = dataPlan(fd, size, Number(st.blocks) * 512)
    yield json(H, rec)
    // The bytes the copy reads (src/ops/copy.ts importFileData): each range from its block.
    let end: ErrInfo | undefined
    try {
      reading: for (const [from, to] of rec.ranges) {
        let off = from - (from % BLOCK_SIZE)
        const stop = Math.min(size, Math.ceil(to / BLOCK_SIZE) * BLOCK_SIZE)
        while (off < stop) {
          const buf = Buffer.allocUnsafe(8 + Math.min(CHUNK, stop - off))
          const n = fs.readSync(fd, buf, 8, buf.length - 8, off)
          if (n === 0) break reading
          buf.writeDoubleLE(off, 0)
          yield frame(D, buf.subarray(0, 8 + n))
          off += n
        }
      }
    } catch (e) {
      end = errInfo(e)
    }
    yield json(E, end ? {err: end} : {})
  } finally {
    fs.closeSync(fd)
  }
}

/** A frame received; `size`: its bytes on the wire. */
type Body = {t: 'H', rec: Record, p: Buffer} | {t: 'D', pos: number, data: Buffer} | {t: 'E', err?: ErrInfo} | {t: 'Z'}
type Frame = Body & {size: number}

/** A file the copy opened: its record. */
interface Open {
  rec: Record
}

function statOf(s: NonNullable<Record['st']>): HostStat {
  const v = Object.fromEntries(STAT_FIELDS.map((k) => [k, BigInt(s[k])])) as {[k in StatField]: bigint}
  const type = v.mode & 0o170000n
  return {
    ...v,
    isDirectory: () => type === 0o040000n,
    isFile: () => type === 0o100000n,
    isSymbolicLink: () => type === 0o120000n,
  }
}

function protocol(message: string): never {
  throw new PrismError('EIO', `the copy's stream from the command is malformed: ${message}`)
}

/**
 * The host as the CLI sent it (push() the socket's bytes as they come). ready() and
 * readable() are false while what the copy asks for next has not arrived (`starved`), and
 * once `deadline` (performance.now()) has passed: the copy then yields.
 */
export class StreamSource implements HostSource<Open> {
  private parts: Buffer[] = []
  private partsLen = 0
  private frames: Frame[] = []
  private head = 0
  private cur: Record | null = null
  private curPath: Buffer | null = null
  /** within the first D frame at the head: bytes already read */
  private dataOff = 0
  /** bytes received and not yet given to the copy (flow control) */
  queued = 0
  /** bytes of file data given to the copy */
  dataRead = 0
  /** the last false answer was for want of bytes (not the deadline) */
  starved = false
  /** the copy yields at its next question after this time (performance.now()) */
  deadline = Infinity
  /** the copy yields at its next question when this says so (requests waiting for the server) */
  yieldNow: () => boolean = () => false
  private readonly sources: Map<string, StreamedSource>

  constructor(sources: StreamedSource[]) {
    this.sources = new Map(sources.map((s) => [s.path, s]))
  }

  push(chunk: Buffer): void {
    this.parts.push(chunk)
    this.partsLen += chunk.length
    this.queued += chunk.length
    for (;;) {
      if (this.partsLen < 5) return
      if (this.parts[0].length < 5) this.parts = [Buffer.concat(this.parts)]
      const len = this.parts[0].readUInt32LE(0)
      if (this.partsLen < 5 + len) return
      const all = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts)
      const type = all[4]
      const body = all.subarray(5, 5 + len)
      const rest = all.subarray(5 + len)
      this.parts = rest.length ? [rest] : []
      this.partsLen = rest.length
      this.frames.push(Object.assign(this.parse(type, body), {size: 5 + len}))
    }
  }

  private parse(type: number, body: Buffer): Body {
    if (type === H) {
      const rec = JSON.parse(body.toString('utf8')) as Record
      return {t: 'H', rec, p: Buffer.from(rec.p, 'base64')}
    }
    if (type === D) return {t: 'D', pos: body.readDoubleLE(0), data: body.subarray(8)}
    if (type === E) return {t: 'E', err: (JSON.parse(body.toString('utf8')) as {err?: ErrInfo}).err}
    if (type === Z) return {t: 'Z'}
    return protocol(`unknown frame type ${type}`)
  }

  private shift(): void {
    this.queued -= this.frames[this.head].size
    this.head++
    this.dataOff = 0
    if (this.head > 1024) {
      this.frames = this.frames.slice(this.head)
      this.head = 0
    }
  }

  private late(): boolean {
    if (performance.now() < this.deadline && !this.yieldNow()) return false
    this.starved = false
    return true
  }

  ready(p: Buffer): boolean {
    if (this.curPath?.equals(p)) return true
    if (this.late()) return false
    for (;;) {
      const f = this.frames[this.head]
      if (!f) {
        this.starved = true
        return false
      }
      if (f.t === 'Z') protocol(`it ended before '${nameText(p)}'`)
      this.shift()
      // (a record the copy passes over, or what is left of the data of one it read)
      if (f.t === 'H' && f.p.equals(p)) {
        this.cur = f.rec
        this.curPath = f.p
        return true
      }
    }
  }

  private record(p: Buffer): Record {
    if (!this.cur || !this.curPath!.equals(p)) protocol(`no record for '${nameText(p)}' where the copy needs it`)
    return this.cur
  }

  isDir(p: string): boolean {
    return this.sources.get(p)?.isDir ?? false
  }

  baseName(p: string): string {
    const s = this.sources.get(p)
    if (!s) protocol(`'${p}' is not one of its sources`)
    return s.base
  }

  lstat(p: Buffer): HostStat {
    const r = this.record(p)
    if (r.se) throw toError(r.se)
    return statOf(r.st!)
  }

  names(p: Buffer): Buffer[] {
    const r = this.record(p)
    if (r.ne) throw toError(r.ne)
    return (r.names ?? []).map((n) => Buffer.from(n, 'base64'))
  }

  readlink(p: Buffer): Buffer {
    const r = this.record(p)
    if (r.le) throw toError(r.le)
    return Buffer.from(r.link ?? '', 'base64')
  }

  xattrs(p: Buffer): Xattr[] {
    const r = this.record(p)
    if (r.xe) throw toError(r.xe)
    return (r.x ?? []).map(([n, v]) => ({name: Buffer.from(n, 'base64'), value: Buffer.from(v, 'base64')}))
  }

  open(p: Buffer): Open {
    const r = this.record(p)
    if (r.oe) throw toError(r.oe)
    return {rec: r}
  }

  ranges(h: Open): Array<[number, number]> {
    return h.rec.ranges ?? []
  }

  readable(h: Open, len: number): boolean {
    if (this.late()) return false
    let have = -this.dataOff
    for (let i = this.head; i < this.frames.length; i++) {
      const f = this.frames[i]
      if (f.t !== 'D') return true // its end (or a protocol error read() reports)
      have += f.data.length
      if (have >= len) return true
    }
    this.starved = true
    return false
  }

  read(h: Open, buf: Buffer, len: number, pos: number): number {
    let n = 0
    while (n < len) {
      const f = this.frames[this.head]
      if (!f) protocol('file data missing')
      if (f.t === 'E') {
        if (f.err && n === 0) throw toError(f.err)
        return n
      }
      if (f.t !== 'D') protocol('file data missing')
      if (f.pos + this.dataOff !== pos + n) protocol(`file data at offset ${f.pos + this.dataOff}, not ${pos + n}`)
      const k = f.data.copy(buf, n, this.dataOff, Math.min(f.data.length, this.dataOff + len - n))
      n += k
      this.dataRead += k
      this.dataOff += k
      if (this.dataOff === f.data.length) this.shift()
    }
    return n
  }

  close(): void {
    // What is left of its data is passed over by the next ready().
  }
}
