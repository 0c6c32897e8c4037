// Where a copy into the image (src/ops/copy.ts, host -> image) reads the host: every host call
// it makes goes through a HostSource. The standalone command reads the host itself
// (localSource); a served image's server reads what the CLI read for it and sent over the
// image's socket (src/ops/hoststream.ts), so that the server never opens a host path with its
// own permissions, nor a path on a mount it serves. Both give the copy the same answers, in
// the same order, so the tree it builds is the same.
//
// A source that is still waiting for the bytes of an answer says so (ready() false,
// readable() false): the copy then yields (it is a generator) and is resumed later.
import fs from 'node:fs'
import path from 'node:path'
import {BLOCK_SIZE} from '../format/constants.js'
import type {Xattr} from '../format/xattr.js'
import {DATA_BUFFER_SIZE} from '../journal/store.js'
import {fsExt} from '../device/file.js'
import {readHostXattrs} from './hostattrs.js'

/** What the copy reads of a host lstat (fs.BigIntStats has it all). */
export interface HostStat {
  dev: bigint
  ino: bigint
  mode: bigint
  nlink: bigint
  uid: bigint
  gid: bigint
  rdev: bigint
  size: bigint
  blocks: bigint
  atimeNs: bigint
  mtimeNs: bigint
  isDirectory(): boolean
  isFile(): boolean
  isSymbolicLink(): boolean
}

/**
 * The host as a copy into the image sees it. Each call either answers or throws the host's
 * error (an Error with code, syscall and message, as Node's fs throws it).
 */
export interface HostSource<H = unknown> {
  /** False while what the copy needs to know about host path `p` has not arrived (yield, then ask again). */
  ready(p: Buffer): boolean
  /** stat(2) of a source argument (symlinks followed) says it is a directory; false on any error */
  isDir(p: string): boolean
  /** the name a source argument is copied under into a directory (cp's basename) */
  baseName(p: string): string
  lstat(p: Buffer): HostStat
  /** the names of a directory, in byte order */
  names(p: Buffer): Buffer[]
  readlink(p: Buffer): Buffer
  /** the extended attributes of a path (a final symlink not followed) */
  xattrs(p: Buffer): Xattr[]
  open(p: Buffer): H
  /** the byte ranges of an open file to read (dataPlan) */
  ranges(h: H, size: number, allocated: number): Array<[number, number]>
  /** False while `len` bytes of the open file (or its end) have not arrived (yield, then ask again). */
  readable(h: H, len: number): boolean
  read(h: H, buf: Buffer, len: number, pos: number): number
  close(h: H): void
}

const SEEK_DATA = 3
const SEEK_HOLE = 4

/**
 * The byte ranges of an open host file that hold data, by lseek(SEEK_DATA / SEEK_HOLE). A
 * file system without them (EINVAL) is read whole; one that does not track holes reports the
 * file as one range of data.
 */
function hostDataRanges(fd: number, size: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = []
  try {
    for (let off = 0; off < size;) {
      let d: number
      try {
        d = fsExt.seekSync(fd, off, SEEK_DATA)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENXIO') break // nothing but a hole past off
        throw e
      }
      if (d >= size) break
      const h = Math.min(size, fsExt.seekSync(fd, d, SEEK_HOLE))
      ranges.push([d, h])
      off = Math.max(h, d + 1)
    }
  } catch {
    return [[0, size]]
  }
  return ranges
}

/** A file of this size is read into one slice of a shared buffer (copy.ts), whole. */
export function smallFile(size: number): boolean {
  return Math.max(BLOCK_SIZE, Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE) < DATA_BUFFER_SIZE
}

/**
 * The ranges of an open host file a copy reads: the whole file, but for a large file with
 * fewer blocks than its size (sparse), its data ranges only.
 */
export function dataPlan(fd: number, size: number, allocated: number): Array<[number, number]> {
  return !smallFile(size) && allocated < size ? hostDataRanges(fd, size) : [[0, size]]
}

const SLASH = Buffer.from('/')

/** A host path below directory `dir` (bytes, as names in the image are). */
export function joinHost(dir: Buffer, name: Buffer): Buffer {
  return dir.length > 0 && dir[dir.length - 1] === 0x2f ? Buffer.concat([dir, name]) : Buffer.concat([dir, SLASH, name])
}

/** The host itself, read by this process. */
export const localSource: HostSource<number> = {
  ready: () => true,
  isDir(p) {
    try {
      return fs.statSync(p).isDirectory()
    } catch {
      return false
    }
  },
  baseName: (p) => path.basename(path.resolve(p)),
  lstat: (p) => fs.lstatSync(p, {bigint: true}),
  names: (p) => fs.readdirSync(p, {encoding: 'buffer'}).sort(Buffer.compare),
  readlink: (p) => fs.readlinkSync(p, {encoding: 'buffer'}),
  xattrs: (p) => readHostXattrs(p),
  // O_NONBLOCK: should the name have become a FIFO since lstat, open must not wait for a writer.
  open: (p) => fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK),
  ranges: (fd, size, allocated) => dataPlan(fd, size, allocated),
  readable: () => true,
  read: (fd, buf, len, pos) => fs.readSync(fd, buf, 0, len, pos),
  close: (fd) => fs.closeSync(fd),
}
