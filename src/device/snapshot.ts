// Snapshots of an image a prism server holds (issue 17): a read-only command reads the image
// as it was at one commit while the server goes on writing it for its mounts, instead of
// borrowing it (which holds every request of the mounts until the command ends).
//
// The server writes, into a pre-image log, the content of every block of the image file it
// is about to overwrite, the first time it overwrites that block while the snapshot is held
// (BlockDevice.beforeWrite, set by Volume.preserve). The reader reads the image file without
// the lock and, for any block the log holds, the logged pre-image instead: what it sees is
// the file as it was when the snapshot was taken, whatever the server wrote since.
//
// Why that is safe without any lock between the two processes: the server writes a block's
// pre-image to the log (data first, then the record's header, which makes it visible) before
// it starts overwriting the block; the reader reads a block from the image first and then
// looks it up in the log. If the log has no record of it at that moment, the server had not
// begun to overwrite it when the image was read, so what was read is the old content (a read
// torn by a write in progress always finds the record). Both are processes of one machine
// sharing the page cache, so no fsync orders them: a crash that loses the log ends the
// reader too. The log lives beside the server's socket (mode 0600) and is removed when the
// snapshot ends.
//
// The log file (docs/FORMAT.md §15): block 0 a header ("PRSMSNP1"), then records, each one
// header block (u32 magic "REC1", u32 count n (1..510), u32 CRC-32 of bytes 0-7 and of the
// block list, u32 zero, then n u64 block numbers) followed by the n pre-images. A server that
// cannot write the log any more (host file system full) truncates it to nothing: the reader
// then fails rather than read blocks overwritten without their pre-image.
import fs from 'node:fs'
import {crc32} from '../format/checksum.js'
import {BLOCK_SIZE} from '../format/constants.js'
import {PrismError} from '../errors.js'
import type {BlockDevice} from './device.js'
import {FileDevice, type OpenOptions} from './file.js'

const LOG_MAGIC = Buffer.from('PRSMSNP1', 'latin1')
const REC_MAGIC = 0x31434552 // "REC1"
/** block numbers one record header holds */
const REC_MAX = (BLOCK_SIZE - 16) / 8

/** A writer of pre-images: Volume.preserve hands it every run of blocks about to be overwritten. */
export interface PreimageSink {
  /** Saves the current content of the blocks of [block, block + count) not saved yet, read with `read`. */
  preserve(block: number, count: number, read: (block: number, buf: Buffer) => void): void
}

function writeFully(fd: number, buf: Buffer, pos: number): void {
  let done = 0
  while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done, pos + done)
}

function readFully(fd: number, buf: Buffer, pos: number): number {
  let done = 0
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, pos + done)
    if (n === 0) break
    done += n
  }
  return done
}

function recordCrc(header: Buffer, n: number): number {
  return crc32(Buffer.concat([header.subarray(0, 8), header.subarray(16, 16 + 8 * n)]))
}

/** The server's side: an append-only log of pre-images, one per block overwritten. */
export class PreimageLog implements PreimageSink {
  private readonly logged = new Set<number>()
  /** where the next record goes */
  private end = BLOCK_SIZE
  /** why the log was given up (the reader then fails), or null */
  private lost: string | null = null

  private constructor(private fd: number, readonly path: string, private readonly onLost: (why: string) => void) {}

  /** Creates the log file at `path` (which must not exist), mode 0600. */
  static create(path: string, onLost: (why: string) => void = () => {}): PreimageLog {
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
    try {
      const header = Buffer.alloc(BLOCK_SIZE)
      LOG_MAGIC.copy(header)
      writeFully(fd, header, 0)
    } catch (e) {
      fs.closeSync(fd)
      fs.rmSync(path, {force: true})
      throw e
    }
    return new PreimageLog(fd, path, onLost)
  }

  preserve(block: number, count: number, read: (block: number, buf: Buffer) => void): void {
    const end = block + count
    let b = block
    while (b < end && this.lost === null) {
      if (this.logged.has(b)) { b++; continue }
      let e = b + 1
      while (e < end && e - b < REC_MAX && !this.logged.has(e)) e++
      this.append(b, e - b, read)
      b = e
    }
  }

  private append(block: number, n: number, read: (block: number, buf: Buffer) => void): void {
    const header = Buffer.alloc(BLOCK_SIZE)
    header.writeUInt32LE(REC_MAGIC, 0)
    header.writeUInt32LE(n, 4)
    for (let i = 0; i < n; i++) header.writeBigUInt64LE(BigInt(block + i), 16 + 8 * i)
    header.writeUInt32LE(recordCrc(header, n), 8)
    const data = Buffer.allocUnsafe(n * BLOCK_SIZE)
    try {
      read(block, data)
      // The pre-images first, then the header that makes them visible to the reader.
      writeFully(this.fd, data, this.end + BLOCK_SIZE)
      writeFully(this.fd, header, this.end)
    } catch (e) {
      this.lose(`its pre-image log ${this.path} could not be written: ${(e as Error).message}`)
      return
    }
    for (let i = 0; i < n; i++) this.logged.add(block + i)
    this.end += (n + 1) * BLOCK_SIZE
  }

  /** Gives the log up: emptied, so that the reader fails at its next read. */
  private lose(why: string): void {
    this.lost = why
    try {
      fs.ftruncateSync(this.fd, 0)
    } catch {
      // (a descriptor that can neither write nor truncate: nothing more can be done)
    }
    this.onLost(why)
  }

  /** Ends the log: closed and removed. */
  close(): void {
    fs.closeSync(this.fd)
    fs.rmSync(this.path, {force: true})
  }
}

/** What a reader of a snapshot needs: the image it is of, the log, and whether its server still holds it. */
export interface HeldSnapshot {
  dev: bigint
  ino: bigint
  /** the pre-image log, open for reading (owned by whoever took the snapshot) */
  logFd: number
  /** false once the server has gone (it may then no longer log what another process writes) */
  alive: () => boolean
}

/** The reader's side: the image file as it was when the snapshot was taken. Read-only. */
export class SnapshotDevice implements BlockDevice {
  readonly readOnly = true
  readonly blocks: number
  /** block -> byte position of its pre-image in the log */
  private readonly index = new Map<number, number>()
  /** where the next record is looked for */
  private next = BLOCK_SIZE
  private readonly header = Buffer.alloc(BLOCK_SIZE)

  private constructor(private readonly image: FileDevice, private readonly held: HeldSnapshot) {
    this.blocks = image.blocks
  }

  /** Opens image file `path` (without its lock) as the snapshot `held` shows it. */
  static open(path: string, held: HeldSnapshot): SnapshotDevice {
    const first = Buffer.alloc(LOG_MAGIC.length)
    if (readFully(held.logFd, first, 0) < first.length || !first.equals(LOG_MAGIC)) throw lostError()
    const image = FileDevice.open(path, {write: false, noLock: true})
    return new SnapshotDevice(image, held)
  }

  read(block: number, buf: Buffer): void {
    this.image.read(block, buf)
    this.patch(block, buf)
  }

  readv(block: number, bufs: Buffer[], stream = 0): void {
    this.image.readv(block, bufs, stream)
    let b = block
    for (const buf of bufs) {
      this.patch(b, buf)
      b += buf.length / BLOCK_SIZE
    }
  }

  /** Replaces, in `buf` read from the image at `block`, every block the log holds by its pre-image. */
  private patch(block: number, buf: Buffer): void {
    this.refresh()
    if (this.index.size === 0) return
    const n = buf.length / BLOCK_SIZE
    for (let i = 0; i < n; i++) {
      const at = this.index.get(block + i)
      if (at !== undefined) readFully(this.held.logFd, buf.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE), at)
    }
  }

  /** Reads the records the server added since the last call (after the image was read: see the top). */
  private refresh(): void {
    const size = fs.fstatSync(this.held.logFd).size
    if (size < this.next) throw lostError()
    while (size >= this.next + BLOCK_SIZE) {
      if (readFully(this.held.logFd, this.header, this.next) < BLOCK_SIZE) break
      const h = this.header
      const n = h.readUInt32LE(4)
      if (h.readUInt32LE(0) !== REC_MAGIC || n < 1 || n > REC_MAX || h.readUInt32LE(8) !== recordCrc(h, n)) break // not complete yet
      for (let i = 0; i < n; i++) {
        const b = Number(h.readBigUInt64LE(16 + 8 * i))
        if (!this.index.has(b)) this.index.set(b, this.next + (1 + i) * BLOCK_SIZE)
      }
      this.next += (1 + n) * BLOCK_SIZE
    }
    if (!this.held.alive()) throw new PrismError('EIO', 'the prism server of the image stopped while this command read it: what it read may not be one state of the image; run the command again')
  }

  dataRuns(start: number, count: number): Array<[number, number]> {
    // The tables' blocks (the only ones asked about) only gain data: a block with data now
    // that was a hole then is one the server wrote since, and the log has its pre-image
    // (zeros). (A zeroed range, BlockDevice.zero, which the host may report as a hole, is
    // only ever file data, and its pre-image is logged as a write's.)
    return this.image.dataRuns(start, count)
  }

  identity(): {dev: bigint, ino: bigint} {
    return this.image.identity()
  }

  write(): void {
    throw new PrismError('EROFS', 'a snapshot of a served image cannot be written')
  }

  sync(): void {}

  close(): void {
    this.image.close() // the log is its owner's to close
  }
}

function lostError(): PrismError {
  return new PrismError('EIO', "the snapshot of the served image was lost (its server could not keep its pre-image log: see the server's log); run the command again")
}

/** What the CLI puts under this key once a server has taken a snapshot for this process (src/cli/served.ts). */
const SNAPSHOT = Symbol.for('prism.snapshot')

function heldSnapshot(): HeldSnapshot | null {
  const s = (globalThis as Record<symbol, unknown>)[SNAPSHOT] as HeldSnapshot | undefined
  return s && typeof s.logFd === 'number' && typeof s.alive === 'function' ? s : null
}

/**
 * Opens an image file: as the snapshot its server took for this process when there is one of
 * this file (read-only: opening it for writing fails with ELOCKED, as when another process
 * holds its lock), else the file itself, locked.
 */
export function openImageDevice(path: string, opts: OpenOptions): BlockDevice {
  const held = heldSnapshot()
  if (held) {
    let st: fs.BigIntStats | null = null
    try {
      st = fs.statSync(path, {bigint: true})
    } catch {
      // FileDevice.open says why
    }
    if (st && st.dev === held.dev && st.ino === held.ino) {
      if (opts.write) throw new PrismError('ELOCKED', `${path} is held by its prism server (mounted): this command reads a snapshot of it and cannot write it`)
      return SnapshotDevice.open(path, held)
    }
  }
  return FileDevice.open(path, opts)
}
