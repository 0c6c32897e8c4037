// prism export: a fileset's tree as a tar archive, produced as a stream of chunks (a
// generator), so a multi-GiB tree is never held in memory. The order is stable: depth first,
// each directory's entries sorted by name bytes (GNU tar's --sort=name), the member names
// './' and './path' (as `tar -C dir -c .`). The pax format (the default) keeps everything a
// fileset holds: nanosecond times, owners (ids, and names from the fileset's own /etc/passwd
// and /etc/group), modes with setuid/setgid/sticky, device numbers, extended attributes
// (SCHILY.xattr.*, as GNU tar --xattrs), POSIX ACLs (SCHILY.acl.*, as GNU tar --acls), hard
// links, and holes (GNU sparse 1.0). A member gets a pax extended header only when its ustar
// header cannot hold all of that (nanoseconds, an access time other than its modification
// time, long names, large numbers, attributes, holes); the change time, which no extraction
// can set, is recorded only in a header written anyway. Sockets cannot be in a tar archive:
// each is skipped with a warning, as GNU tar does. Headers are encoded, and file data read
// from the image, straight into the chunk being filled. Reads the image only.
import {posix} from 'node:path'
import {BLOCK_SIZE, DT_DIR, IF_INLINE} from '../format/constants.js'
import {decodeRdev} from '../format/inode.js'
import {nameProblem} from '../format/dirent.js'
import {nameBytes, nameText} from '../format/name.js'
import {ACL_ACCESS, ACL_DEFAULT, decodeAcl} from '../format/xattr.js'
import {PrismError, isDamage} from '../errors.js'
import {checkInterrupt} from '../interrupt.js'
import {dirList, enterDir, type Dirent} from '../fs/dir.js'
import {loadExtents} from '../fs/extents.js'
import type {Inode, Timestamp} from '../fs/inode.js'
import type {Namespace} from '../fs/namespace.js'
import {listXattrs} from '../fs/xattr.js'
import {
  PaxBody, TAR_BLOCK, encodeHeader, encodeOctal, encodeSparse10Map, encodeXattrKey, formatAclText, gnuPaxTime, isUtf8,
  sealHeader, splitUstarName, writeHeader, type HeaderFields, type SparseRegion,
} from './codec.js'

export type TarFormat = 'pax' | 'gnu' | 'ustar'

export interface ExportOptions {
  format?: TarFormat
  /** --mtime: every entry's modification time (or, with clampMtime, at most this) */
  mtime?: Timestamp
  clampMtime?: boolean
  /** --owner / --group: this uid (gid) for every entry */
  owner?: number
  group?: number
  /** --owner NAME:NUMBER / --group NAME:NUMBER: the name written with it (none with numericOwner) */
  ownerName?: Buffer
  groupName?: Buffer
  /** --numeric-owner: no user or group names */
  numericOwner?: boolean
  onWarning?: (msg: string) => void
  onProgress?: (s: ExportStats) => void
  /**
   * The consumer is done with each chunk before it asks for the next (it writes the chunk
   * to a file synchronously): the buffers handed out are then filled again (one, or as
   * many as the largest member's headers span). Without it, every
   * chunk is memory of its own that the export never touches again (a stream may hold it).
   */
  reuseChunks?: boolean
}

export interface ExportStats {
  files: number
  dirs: number
  symlinks: number
  hardlinks: number
  special: number
  bytes: number
  /** sockets and entries the format cannot hold, each named through onWarning */
  skipped: number
  /** of them, sockets */
  sockets: number
  /** attributes the format cannot hold (gnu, ustar) */
  dropped: number
}

/**
 * The archive is handed out in chunks of this many bytes (the last one shorter): headers, and
 * file data read from the image straight into the chunk (reading a file's last block whole
 * may run up to a block past it: the chunk has that much room more). Every chunk is exactly
 * this long so that the archive file is written at offsets that are multiples of it: the page
 * cache then takes it in large folios, and an export of /usr spent half the time in the
 * kernel that unaligned writes cost. 1 MiB chunks cost more system time again than 64 to
 * 256 KiB ones, which measured alike (bench/README.md, tar export).
 */
export const CHUNK = 128 * 1024
const CHUNK_ROOM = CHUNK + BLOCK_SIZE
/** A block read apart when it straddles two chunks (copied out at once: one is enough). */
const straddle = Buffer.alloc(BLOCK_SIZE)
const USTAR_ID_MAX = 0o7777777
const USTAR_SIZE_MAX = 0o77777777777
const EMPTY = Buffer.alloc(0)
const SLASH = Buffer.from('/')
const PAX_DIR = Buffer.from('PaxHeaders/')
const SPARSE_DIR = Buffer.from('GNUSparseFile.0/')

const TYPEFLAG = {file: 0x30, hardlink: 0x31, symlink: 0x32, chardev: 0x33, blockdev: 0x34, dir: 0x35, fifo: 0x36} as const

interface Ctx {
  ns: Namespace
  /** the exported path in the fileset (member names are relative to it, or, for a file, its name) */
  top: string
  opts: ExportOptions
  format: TarFormat
  stats: ExportStats
  /** inode -> member name of its first name (hard links) */
  links: Map<number, Buffer>
  ancestors: Set<number>
  users: Map<number, Buffer>
  groups: Map<number, Buffer>
  /** the chunk being filled, and how much of it is */
  buf: Buffer
  pos: number
  /** chunks filled, in order, not handed out yet (whole buffers and the bytes they hold) */
  full: Array<[Buffer, number]>
  /** reuseChunks: buffers handed out and written, ready to fill again */
  spare: Buffer[]
  lastReport: number
  /** formats without attributes: say so once per kind */
  warnedAttrs: boolean
  /** the format's loss of sub-second times was said */
  warnedTimes: boolean
}

/** The uid -> name (gid -> name) table of a passwd (group) file of the fileset, if it has one. */
function idNames(ns: Namespace, file: string): Map<number, Buffer> {
  const m = new Map<number, Buffer>()
  try {
    const st = ns.stat(file, false)
    if (st.type !== 'file' || st.size > 4 * 1024 * 1024) return m
    for (const line of ns.readFile(file).toString('latin1').split('\n')) {
      const f = line.split(':')
      if (f.length >= 3 && /^\d+$/.test(f[2]) && f[0] !== '' && !m.has(Number(f[2]))) m.set(Number(f[2]), Buffer.from(f[0], 'latin1'))
    }
  } catch (e) {
    if (!(e instanceof PrismError)) throw e
  }
  return m
}

/** A file whose data is still to be put into the archive after its headers. */
interface DataJob {
  inode: Inode
  regions: SparseRegion[]
  /** the region being copied, and the file offset reached in it */
  k: number
  pos: number
  /** the extent reached (extents are in file order, as are the regions) */
  i: number
  /** the padding after the data: to a 512-byte block */
  pad: number
}

/** A directory being walked: its sorted entries, the next one, its member name with a '/'. */
interface Frame {
  ino: number
  entries: Dirent[]
  k: number
  prefix: Buffer
}

/**
 * The archive of the tree at `path` of `ns`, as chunks of 128 KiB (see reuseChunks for
 * how long a chunk stays as it was handed out). One generator walks the whole tree with a
 * stack of its own: members are written by plain functions, and the only place chunks are
 * handed out is here (a generator per member and per helper cost more than a tar header).
 */
export function* exportTar(ns: Namespace, path: string, opts: ExportOptions = {}): Generator<Buffer, ExportStats> {
  // A clone still expanding is expanded below the path first: the walk reads directories as stored.
  if (ns.exists(path, true)) ns.materialize(path)
  const top = ns.resolve(path, true)
  const ctx: Ctx = {
    ns, top: top.isDir ? path : posix.dirname(posix.join('/', path)), opts, format: opts.format ?? 'pax',
    stats: {files: 0, dirs: 0, symlinks: 0, hardlinks: 0, special: 0, bytes: 0, skipped: 0, sockets: 0, dropped: 0},
    links: new Map(), ancestors: new Set(), buf: Buffer.allocUnsafe(CHUNK_ROOM), pos: 0, full: [], spare: [], lastReport: 0, warnedAttrs: false, warnedTimes: false,
    users: opts.numericOwner ? new Map() : idNames(ns, '/etc/passwd'),
    groups: opts.numericOwner ? new Map() : idNames(ns, '/etc/group'),
  }
  const stack: Frame[] = []
  let next: {inode: Inode, name: Buffer, isDir: boolean} | null = top.isDir ? {inode: top, name: Buffer.from('.'), isDir: true} : null
  if (!top.isDir) {
    const base = path.split('/').filter((c) => c !== '' && c !== '.').pop() ?? '.'
    next = {inode: top, name: Buffer.from(base === '.' ? '.' : base), isDir: false}
  }
  for (;;) {
    checkInterrupt() // (Ctrl-C: the archive is not finished, and exportArchive removes what it wrote)
    if (next) {
      const job = damaged(ctx, next.name, () => member(ctx, next!.inode, next!.name))
      // A file's data: as much as fits in each chunk, every full chunk handed out at once.
      if (job) {
        while (!fileData(ctx, job)) {
          checkInterrupt()
          for (const [b, n] of ctx.full.splice(0)) {
            yield b.subarray(0, n)
            if (opts.reuseChunks) ctx.spare.push(b)
          }
        }
      }
      if (next.isDir) {
        const dir = next.inode
        enterDir(ctx.ancestors, dir.ino, ctx.ns.where(nameText(next.name)))
        // (a directory whose blocks are damaged is in the archive, empty, and named)
        const entries = damaged(ctx, next.name, () => dirList(ctx.ns.vol, dir)) ?? []
        stack.push({ino: dir.ino, entries: entries.sort((a, b) => Buffer.compare(a.name, b.name)), k: 0, prefix: join(next.name, SLASH)})
      }
      next = null
      progress(ctx)
    }
    for (const [b, n] of ctx.full.splice(0)) {
      yield b.subarray(0, n)
      if (opts.reuseChunks) ctx.spare.push(b)
    }
    const f = stack[stack.length - 1]
    if (!f) break
    if (f.k >= f.entries.length) {
      ctx.ancestors.delete(f.ino)
      stack.pop()
      continue
    }
    const e = f.entries[f.k++]
    const child = join(f.prefix, e.name)
    const p = nameProblem(e.name)
    if (p) {
      ctx.stats.skipped++
      ctx.opts.onWarning?.(`${nameText(child)}: skipped an entry with an unsafe name (${p})`)
      continue
    }
    const inode = damaged(ctx, child, () => ctx.ns.vol.iget(e.ino))
    if (inode) next = {inode, name: child, isDir: e.type === DT_DIR && inode.isDir}
  }
  // End of archive: two zero blocks (GNU tar pads the archive to its record size, 10 KiB).
  for (let k = 0; k < 2; k++) {
    room(ctx, TAR_BLOCK)
    zeros(ctx, TAR_BLOCK)
  }
  for (const [b, n] of ctx.full.splice(0)) yield b.subarray(0, n)
  if (ctx.pos > 0) yield ctx.buf.subarray(0, ctx.pos)
  ctx.opts.onProgress?.(ctx.stats)
  return ctx.stats
}

/**
 * Runs `read`, which reads member `name` from the image before anything of it is put into
 * the archive: damage it meets there (a directory block, an extent node or an inode that fails
 * its checks) skips that member, named through onWarning (`cannot read`; the export's exit
 * status is then 1), and the export goes on with the rest, as tar goes on past a file it
 * cannot read. Returns null then.
 */
function damaged<T>(ctx: Ctx, name: Buffer, read: () => T): T | null {
  try {
    return read()
  } catch (e) {
    if (!isDamage(e)) throw e
    ctx.stats.skipped++
    ctx.opts.onWarning?.(`cannot read '${ctx.ns.where(posix.join('/', ctx.top, nameText(name)))}': ${e.message}`)
    return null
  }
}

/** The chunk is full: it waits to be handed out, and filling goes on in another (a spare one, or new memory). */
function nextChunk(ctx: Ctx): void {
  if (ctx.pos > 0) ctx.full.push([ctx.buf, ctx.pos])
  ctx.buf = ctx.spare.pop() ?? Buffer.allocUnsafe(CHUNK_ROOM)
  ctx.pos = 0
}

/**
 * Makes room for one 512-byte block (headers start on one). Every chunk but the last is
 * handed out exactly CHUNK bytes long, and a block never straddles two: CHUNK is a multiple
 * of 512.
 */
function room(ctx: Ctx, n: number): void {
  if (ctx.pos + n > CHUNK) nextChunk(ctx)
}

function zeros(ctx: Ctx, n: number): void {
  ctx.buf.fill(0, ctx.pos, ctx.pos + n)
  ctx.pos += n
}

/** Puts bytes into the archive (any length: a long header set fills chunks one after another). */
function put(ctx: Ctx, b: Buffer): void {
  for (let o = 0; o < b.length;) {
    if (ctx.pos >= CHUNK) nextChunk(ctx)
    const n = Math.min(b.length - o, CHUNK - ctx.pos)
    b.copy(ctx.buf, ctx.pos, o, o + n)
    ctx.pos += n
    o += n
  }
}

/** a + b, as one new buffer (Buffer.concat, without its generality: a name per member). */
function join(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length + b.length)
  a.copy(out, 0)
  b.copy(out, a.length)
  return out
}

function padOf(n: number): number {
  return (TAR_BLOCK - (n % TAR_BLOCK)) % TAR_BLOCK
}

function progress(ctx: Ctx): void {
  if (!ctx.opts.onProgress) return
  const t = Date.now()
  if (t - ctx.lastReport < 100) return
  ctx.lastReport = t
  ctx.opts.onProgress(ctx.stats)
}

/** The data regions of a file: runs of mapped blocks, clipped to its size. */
function regionsOf(ctx: Ctx, inode: Inode): SparseRegion[] {
  const size = inode.r.size
  if (size === 0) return []
  if (inode.r.flags & IF_INLINE) return [{offset: 0, size}]
  const out: SparseRegion[] = []
  for (const e of loadExtents(ctx.ns.vol, inode)) {
    const off = e.l * BLOCK_SIZE
    if (off >= size) break
    const len = Math.min(e.n * BLOCK_SIZE, size - off)
    const last = out[out.length - 1]
    if (last && last.offset + last.size === off) last.size += len
    else out.push({offset: off, size: len})
  }
  return out
}

/** One member's headers; for a file with data, what fileData is to copy after them. */
function member(ctx: Ctx, inode: Inode, name: Buffer): DataJob | null {
  const r = inode.r
  const ns = ctx.ns
  const type = inode.type
  if (type === 'socket') {
    ctx.stats.skipped++
    ctx.stats.sockets++
    ctx.opts.onWarning?.(`${nameText(name)}: socket ignored`)
    return null
  }
  let typeflag: number = type === 'file' ? TYPEFLAG.file : type === 'dir' ? TYPEFLAG.dir : type === 'symlink' ? TYPEFLAG.symlink
    : type === 'chardev' ? TYPEFLAG.chardev : type === 'blockdev' ? TYPEFLAG.blockdev : TYPEFLAG.fifo
  let linkname: Buffer = EMPTY
  let size = 0
  let regions: SparseRegion[] = []
  let sparse = false
  const memberName = type === 'dir' ? join(name, SLASH) : name
  // (the first name of a file with several is recorded once its member is in: below)
  let firstName = false
  // Every name of an inode with several but the first is a hard-link member: of a file, and
  // of a symlink, device or FIFO too (as GNU tar and bsdtar write them).
  if (type !== 'dir' && r.nlink > 1) {
    const first = ctx.links.get(inode.ino)
    if (first) {
      typeflag = TYPEFLAG.hardlink
      linkname = first
    } else firstName = true
  }
  if (type === 'symlink' && typeflag !== TYPEFLAG.hardlink) linkname = nameBytes(ns.readlinkInode(inode))
  if (typeflag === TYPEFLAG.file && r.size > 0) {
    regions = regionsOf(ctx, inode)
    let covered = 0
    for (const x of regions) covered += x.size
    sparse = covered < r.size && ctx.format !== 'ustar'
    if (!sparse) regions = [{offset: 0, size: r.size}]
    else if (regions.length === 0 || regions[regions.length - 1].offset + regions[regions.length - 1].size < r.size) regions.push({offset: r.size, size: 0})
    for (const x of regions) size += x.size
  }
  // Times and owners, with the reproducibility options applied.
  let mtime: Timestamp = {s: r.mtimeS, ns: r.mtimeNs}
  if (ctx.opts.mtime && (!ctx.opts.clampMtime || mtime.s > ctx.opts.mtime.s || (mtime.s === ctx.opts.mtime.s && mtime.ns > ctx.opts.mtime.ns))) mtime = ctx.opts.mtime
  const uid = ctx.opts.owner ?? r.uid
  const gid = ctx.opts.group ?? r.gid
  const uname = (ctx.opts.numericOwner ? null : ctx.opts.ownerName) ?? ctx.users.get(uid) ?? EMPTY
  const gname = (ctx.opts.numericOwner ? null : ctx.opts.groupName) ?? ctx.groups.get(gid) ?? EMPTY
  const rdev = inode.isSpecial && (type === 'chardev' || type === 'blockdev') ? decodeRdev(r.area) : {major: 0, minor: 0}
  const xattrs = listXattrs(ns.vol, inode)

  const fields: HeaderFields = {
    name: memberName, mode: r.mode & 0o7777, uid, gid, size, mtime: mtime.s, typeflag, linkname,
    uname, gname, devmajor: rdev.major, devminor: rdev.minor,
  }
  // The sparse 1.0 map leads the member's data (pax only; the others keep it in their headers).
  const map = sparse && ctx.format === 'pax' ? encodeSparse10Map(regions) : null
  if (ctx.format === 'pax') emitPax(ctx, fields, mtime, inode, xattrs, sparse ? regions : null, r.size, map?.length ?? 0)
  else if (!emitOld(ctx, fields, sparse ? regions : null, r.size, xattrs.length > 0, mtime.ns !== 0)) return null
  if (firstName) ctx.links.set(inode.ino, name)
  if (typeflag === TYPEFLAG.hardlink) ctx.stats.hardlinks++
  else if (type === 'dir') ctx.stats.dirs++
  else if (type === 'symlink') ctx.stats.symlinks++
  else if (typeflag !== TYPEFLAG.file) ctx.stats.special++
  if (typeflag !== TYPEFLAG.file) return null
  ctx.stats.files++
  ctx.stats.bytes += size
  if (map) put(ctx, map)
  return {inode, regions, k: 0, pos: regions[0]?.offset ?? 0, i: 0, pad: padOf(size + (map?.length ?? 0))}
}

/**
 * Puts a file's data (its `regions`) and padding into the archive after its headers, read
 * from the image straight into the chunk, whole blocks at a time (the bytes a last block
 * holds past the file are overwritten by what comes next: its padding zeros and the next
 * header). Holes inside a region read as zeros. Fills at most one chunk more: false when
 * that one is full and must be handed out before this is called again.
 */
function fileData(ctx: Ctx, job: DataJob): boolean {
  const inode = job.inode
  const regions = job.regions
  if (inode.r.flags & IF_INLINE) {
    for (; job.k < regions.length; job.k++) put(ctx, inode.r.area.subarray(regions[job.k].offset, regions[job.k].offset + regions[job.k].size))
  } else {
    const store = ctx.ns.vol.store
    const ext = loadExtents(ctx.ns.vol, inode)
    for (; job.k < regions.length; job.k++) {
      // Regions start on a block (they are runs of mapped blocks, or the whole file), and each
      // step below ends on one unless it ends the region.
      const x = regions[job.k]
      const end = x.offset + x.size
      if (job.pos < x.offset) job.pos = x.offset
      while (job.pos < end) {
        const space = CHUNK - ctx.pos
        if (space === 0) {
          nextChunk(ctx)
          return false
        }
        if (space < BLOCK_SIZE && space < end - job.pos) {
          // A block across the end of the chunk: read apart, its head ends this chunk, its
          // tail starts the next one; the file position is on a block again after it.
          const b = job.pos / BLOCK_SIZE
          while (job.i < ext.length && ext.get(job.i).l + ext.get(job.i).n <= b) job.i++
          const e = ext.at(job.i)
          if (!e || e.l > b) straddle.fill(0)
          else store.readData(e.p + (b - e.l), straddle)
          const len = Math.min(BLOCK_SIZE, end - job.pos)
          straddle.copy(ctx.buf, ctx.pos, 0, space)
          ctx.pos += space
          nextChunk(ctx)
          straddle.copy(ctx.buf, 0, space, len)
          ctx.pos = len - space
          job.pos += len
          return false
        }
        const n = Math.min(end - job.pos, space < BLOCK_SIZE ? space : space - (space % BLOCK_SIZE))
        const l = job.pos / BLOCK_SIZE
        const blocks = Math.ceil(n / BLOCK_SIZE)
        // The blocks [l, l + blocks) into buf at ctx.pos: mapped runs read, holes zeroed.
        let at = ctx.pos
        for (let b = l; b < l + blocks;) {
          while (job.i < ext.length && ext.get(job.i).l + ext.get(job.i).n <= b) job.i++
          const e = ext.at(job.i)
          if (!e || e.l > b) {
            const hole = Math.min(l + blocks, e ? e.l : Infinity) - b
            ctx.buf.fill(0, at, at + hole * BLOCK_SIZE)
            at += hole * BLOCK_SIZE
            b += hole
            continue
          }
          const run = Math.min(e.l + e.n, l + blocks) - b
          store.readData(e.p + (b - e.l), ctx.buf.subarray(at, at + run * BLOCK_SIZE))
          at += run * BLOCK_SIZE
          b += run
        }
        ctx.pos += n
        job.pos += n
      }
    }
  }
  // The padding ends the 512-byte block the data ends in: never past the chunk.
  zeros(ctx, job.pad)
  return true
}

/** The pax extended header (when anything needs one) and the ustar header of a member. */
function emitPax(ctx: Ctx, f: HeaderFields, mtime: Timestamp, inode: Inode, xattrs: ReadonlyArray<{name: Buffer, value: Buffer}>, sparse: SparseRegion[] | null, realSize: number, mapBytes: number): void {
  const r = inode.r
  const pax = new PaxBody()
  let name = f.name
  const linkname = f.linkname ?? EMPTY
  if (sparse) {
    // GNU's sparse 1.0: the header names the file %d/GNUSparseFile.%p/%f (with 0 for the
    // pid, so that two exports are identical); the real name is in GNU.sparse.name.
    const slash = f.name.lastIndexOf(0x2f)
    name = Buffer.concat([f.name.subarray(0, slash + 1), SPARSE_DIR, f.name.subarray(slash + 1)])
  }
  const split = splitUstarName(name)
  const pathRec = !split && !sparse
  const linkRec = linkname.length > 100
  // hdrcharset first, as bsdtar writes it: a path or link record whose bytes are not UTF-8
  // (bsdtar refuses such a record without it; GNU tar 1.34 reads it, warning that it does not
  // know the keyword).
  if ((pathRec && !isUtf8(name)) || (linkRec && !isUtf8(linkname))) pax.add('hdrcharset', 'BINARY')
  if (sparse) {
    pax.add('GNU.sparse.major', '1')
    pax.add('GNU.sparse.minor', '0')
    pax.add('GNU.sparse.name', f.name)
    pax.add('GNU.sparse.realsize', String(realSize))
  }
  if (pathRec) pax.add('path', name)
  if (linkRec) pax.add('linkpath', linkname)
  if (f.size > USTAR_SIZE_MAX) pax.add('size', String(f.size))
  if (f.uid > USTAR_ID_MAX) pax.add('uid', String(f.uid))
  if (f.gid > USTAR_ID_MAX) pax.add('gid', String(f.gid))
  if ((f.uname?.length ?? 0) > 31) pax.add('uname', f.uname!)
  if ((f.gname?.length ?? 0) > 31) pax.add('gname', f.gname!)
  if ((f.devmajor ?? 0) > USTAR_ID_MAX) pax.add('SCHILY.devmajor', String(f.devmajor))
  if ((f.devminor ?? 0) > USTAR_ID_MAX) pax.add('SCHILY.devminor', String(f.devminor))
  // Times: the header holds whole seconds; a pax record carries what it cannot. The access
  // time only where it is not the modification time (an import takes a missing atime to be
  // the mtime, so the archive reads back the same), and neither it nor the change time with
  // --mtime (they would make the archive depend on when the tree was imported). The change
  // time, which no extraction can set, rides along when the member has a pax header anyway.
  if (mtime.ns !== 0 || mtime.s < 0 || mtime.s > USTAR_SIZE_MAX) pax.add('mtime', gnuPaxTime(mtime))
  const times = !ctx.opts.mtime
  if (times && (r.atimeS !== r.mtimeS || r.atimeNs !== r.mtimeNs)) pax.add('atime', gnuPaxTime({s: r.atimeS, ns: r.atimeNs}))
  if (times && (pax.count > 0 || xattrs.length > 0)) pax.add('ctime', gnuPaxTime({s: r.ctimeS, ns: r.ctimeNs}))
  for (const x of xattrs) {
    const n = x.name.toString('latin1')
    if (n === ACL_ACCESS) pax.add('SCHILY.acl.access', formatAclText(decodeAcl(x.value)))
  }
  for (const x of xattrs) {
    const n = x.name.toString('latin1')
    if (n === ACL_DEFAULT) pax.add('SCHILY.acl.default', formatAclText(decodeAcl(x.value)))
  }
  for (const x of xattrs) {
    const n = x.name.toString('latin1')
    if (n === ACL_ACCESS || n === ACL_DEFAULT) continue
    pax.add('SCHILY.xattr.' + encodeXattrKey(x.name), x.value)
  }

  const s = split ?? {name: name.subarray(0, 100), prefix: EMPTY}
  // What the header cannot hold is in the records above: clamped here (the link name is cut at 100 bytes by writeHeader).
  const main: HeaderFields = {
    name: s.name, prefix: s.prefix, mode: f.mode, typeflag: f.typeflag, size: Math.min(f.size + mapBytes, USTAR_SIZE_MAX),
    uid: Math.min(f.uid, USTAR_ID_MAX), gid: Math.min(f.gid, USTAR_ID_MAX), mtime: clampOctal(mtime.s), linkname,
    uname: (f.uname?.length ?? 0) > 31 ? EMPTY : f.uname, gname: (f.gname?.length ?? 0) > 31 ? EMPTY : f.gname,
    devmajor: Math.min(f.devmajor ?? 0, USTAR_ID_MAX), devminor: Math.min(f.devminor ?? 0, USTAR_ID_MAX),
  }
  if (pax.count === 0) {
    room(ctx, TAR_BLOCK)
    writeHeader(ctx.buf, ctx.pos, main, 'ustar')
    ctx.pos += TAR_BLOCK
    return
  }
  const slash = name.lastIndexOf(0x2f, name.length - 2)
  let paxName = Buffer.concat([name.subarray(0, slash + 1), PAX_DIR, name.subarray(slash + 1)])
  if (paxName[paxName.length - 1] === 0x2f) paxName = paxName.subarray(0, paxName.length - 1)
  const ps = splitUstarName(paxName) ?? {name: paxName.subarray(0, 100), prefix: EMPTY}
  const xh: HeaderFields = {name: ps.name, prefix: ps.prefix, mode: 0o644, uid: 0, gid: 0, size: pax.bytes, mtime: clampOctal(mtime.s), typeflag: 0x78}
  const total = 2 * TAR_BLOCK + pax.bytes + padOf(pax.bytes)
  if (ctx.pos + total <= CHUNK) {
    // All in what is left of the chunk: the extended header, its body, the member's header.
    writeHeader(ctx.buf, ctx.pos, xh, 'ustar')
    ctx.pos += TAR_BLOCK
    ctx.pos += pax.write(ctx.buf, ctx.pos)
    zeros(ctx, padOf(pax.bytes))
    writeHeader(ctx.buf, ctx.pos, main, 'ustar')
    ctx.pos += TAR_BLOCK
    return
  }
  // Across the end of the chunk (or larger than one: many or large attributes): built apart, put in pieces.
  const body = Buffer.alloc(total)
  writeHeader(body, 0, xh, 'ustar')
  pax.write(body, TAR_BLOCK)
  writeHeader(body, total - TAR_BLOCK, main, 'ustar')
  put(ctx, body)
}

function clampOctal(s: number): number {
  return Math.max(0, Math.min(s, USTAR_SIZE_MAX))
}

/**
 * A member in the GNU or ustar format. GNU: long names as ././@LongLink entries, large
 * numbers in base-256, holes as an old GNU sparse header ('S'). Ustar: what does not fit is
 * skipped by name. Neither holds attributes, ACLs or sub-second times: each said once, counted. False: skipped.
 */
function emitOld(ctx: Ctx, f: HeaderFields, sparse: SparseRegion[] | null, realSize: number, hasAttrs: boolean, subSecond: boolean): boolean {
  const where = nameText(f.name)
  if (hasAttrs) {
    ctx.stats.dropped++
    if (!ctx.warnedAttrs) ctx.opts.onWarning?.(`the ${ctx.format} format holds no extended attributes or ACLs: they are left out (first: ${where}); use --format pax`)
    ctx.warnedAttrs = true
  }
  if (subSecond) {
    // (whole seconds are all its header holds: cut, as GNU tar cuts them, but said)
    ctx.stats.dropped++
    if (!ctx.warnedTimes) ctx.opts.onWarning?.(`the ${ctx.format} format holds whole seconds only: modification times are cut to the second (first: ${where}); use --format pax, or --mtime`)
    ctx.warnedTimes = true
  }
  if (ctx.format === 'ustar') {
    const s = splitUstarName(f.name)
    const fits = s && (f.linkname?.length ?? 0) <= 100 && f.uid <= USTAR_ID_MAX && f.gid <= USTAR_ID_MAX && f.size <= USTAR_SIZE_MAX &&
      (f.devmajor ?? 0) <= USTAR_ID_MAX && (f.devminor ?? 0) <= USTAR_ID_MAX && f.mtime >= 0 && f.mtime <= USTAR_SIZE_MAX
    if (!fits) {
      ctx.stats.skipped++
      ctx.opts.onWarning?.(`${where}: does not fit the ustar format (name, link, id, size or time too large); skipped, use --format pax`)
      return false
    }
    put(ctx, encodeHeader({...f, name: s.name, prefix: s.prefix}, 'ustar'))
    return true
  }
  const out: Buffer[] = []
  const longLink = (flag: number, value: Buffer) => {
    const body = Buffer.concat([value, Buffer.alloc(1)])
    out.push(encodeHeader({name: Buffer.from('././@LongLink'), mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0, typeflag: flag, uname: Buffer.from('root'), gname: Buffer.from('root')}, 'gnu'))
    out.push(body, Buffer.alloc(padOf(body.length)))
  }
  if ((f.linkname?.length ?? 0) > 100) longLink(0x4b, f.linkname!)
  if (f.name.length > 100) longLink(0x4c, f.name)
  const h = encodeHeader({...f, name: f.name.subarray(0, 100), linkname: f.linkname?.subarray(0, 100)}, 'gnu')
  if (!sparse) {
    out.push(h)
    put(ctx, Buffer.concat(out))
    return true
  }
  // Old GNU sparse: type 'S', four regions in the header, 21 in each extension block.
  h[156] = 0x53
  const putRegion = (b: Buffer, at: number, x: SparseRegion) => {
    if (!encodeOctal(x.offset, b, at, 12)) encodeBase256Field(b, at, x.offset)
    if (!encodeOctal(x.size, b, at + 12, 12)) encodeBase256Field(b, at + 12, x.size)
  }
  sparse.slice(0, 4).forEach((x, i) => putRegion(h, 386 + i * 24, x))
  const rest = sparse.slice(4)
  h[482] = rest.length > 0 ? 1 : 0
  if (!encodeOctal(realSize, h, 483, 12)) encodeBase256Field(h, 483, realSize)
  sealHeader(h)
  out.push(h)
  for (let i = 0; i < rest.length; i += 21) {
    const b = Buffer.alloc(TAR_BLOCK)
    rest.slice(i, i + 21).forEach((x, j) => putRegion(b, j * 24, x))
    b[504] = i + 21 < rest.length ? 1 : 0
    out.push(b)
  }
  put(ctx, Buffer.concat(out))
  return true
}

function encodeBase256Field(b: Buffer, at: number, v: number): void {
  let x = BigInt(v)
  for (let i = 11; i >= 0; i--) {
    b[at + i] = Number(x & 0xffn)
    x >>= 8n
  }
  b[at] |= 0x80
}
