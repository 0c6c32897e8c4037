// prism export: a fileset's tree as a tar archive, produced as a stream of chunks (a
// generator), so a multi-GiB tree is never held in memory. The order is stable: depth first,
// each directory's entries sorted by name bytes (GNU tar's --sort=name), the member names
// './' and './path' (as `tar -C dir -c .`). The pax format (the default) keeps everything a
// fileset holds: nanosecond times, owners (ids, and names from the fileset's own /etc/passwd
// and /etc/group), modes with setuid/setgid/sticky, device numbers, extended attributes
// (SCHILY.xattr.*, as GNU tar --xattrs), POSIX ACLs (SCHILY.acl.*, as GNU tar --acls), hard
// links, and holes (GNU sparse 1.0). Sockets cannot be in a tar archive: each is skipped with
// a warning, as GNU tar does. Reads the image only.
import {BLOCK_SIZE, DT_DIR} from '../format/constants.js'
import {decodeRdev} from '../format/inode.js'
import {nameProblem} from '../format/dirent.js'
import {nameBytes, nameText} from '../format/name.js'
import {ACL_ACCESS, ACL_DEFAULT, decodeAcl} from '../format/xattr.js'
import {PrismError} from '../errors.js'
import {dirList, enterDir} from '../fs/dir.js'
import {loadExtents} from '../fs/extents.js'
import type {Inode, Timestamp} from '../fs/inode.js'
import type {Namespace} from '../fs/namespace.js'
import {listXattrs} from '../fs/xattr.js'
import {
  TAR_BLOCK, encodeHeader, encodeOctal, encodeSparse10Map, encodeXattrKey, formatAclText, gnuPaxTime, isUtf8, paxRecord,
  sealHeader, splitUstarName, type HeaderFields, type SparseRegion,
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
  /** --numeric-owner: no user or group names */
  numericOwner?: boolean
  onWarning?: (msg: string) => void
  onProgress?: (s: ExportStats) => void
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

/** Chunks handed out at once, about this large. */
const OUT_CHUNK = 1024 * 1024
const READ_CHUNK = 1024 * 1024
const ZERO_BLOCK = Buffer.alloc(TAR_BLOCK)
const USTAR_ID_MAX = 0o7777777
const USTAR_SIZE_MAX = 0o77777777777

const TYPEFLAG = {file: 0x30, hardlink: 0x31, symlink: 0x32, chardev: 0x33, blockdev: 0x34, dir: 0x35, fifo: 0x36} as const

interface Ctx {
  ns: Namespace
  opts: ExportOptions
  format: TarFormat
  stats: ExportStats
  /** inode -> member name of its first name (hard links) */
  links: Map<number, Buffer>
  ancestors: Set<number>
  users: Map<number, Buffer>
  groups: Map<number, Buffer>
  out: Buffer[]
  outBytes: number
  lastReport: number
  /** formats without attributes: say so once per kind */
  warnedAttrs: boolean
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

/**
 * The archive of the tree at `path` of `ns`, as chunks (each about 1 MiB, or a file's data
 * as it is read). A chunk is not reused after it is handed out.
 */
export function* exportTar(ns: Namespace, path: string, opts: ExportOptions = {}): Generator<Buffer[], ExportStats> {
  // A clone still expanding is expanded below the path first: the walk reads directories as stored.
  if (ns.exists(path, true)) ns.materialize(path)
  const top = ns.resolve(path, true)
  const ctx: Ctx = {
    ns, opts, format: opts.format ?? 'pax',
    stats: {files: 0, dirs: 0, symlinks: 0, hardlinks: 0, special: 0, bytes: 0, skipped: 0, sockets: 0, dropped: 0},
    links: new Map(), ancestors: new Set(), out: [], outBytes: 0, lastReport: 0, warnedAttrs: false,
    users: opts.numericOwner ? new Map() : idNames(ns, '/etc/passwd'),
    groups: opts.numericOwner ? new Map() : idNames(ns, '/etc/group'),
  }
  if (top.isDir) yield* walk(ctx, top, Buffer.from('.'))
  else {
    const base = path.split('/').filter((c) => c !== '' && c !== '.').pop() ?? '.'
    yield* member(ctx, top, Buffer.from(base === '.' ? '.' : base))
  }
  // End of archive: two zero blocks (GNU tar pads the archive to its record size, 10 KiB).
  emit(ctx, Buffer.alloc(2 * TAR_BLOCK))
  yield* flushOut(ctx)
  ctx.opts.onProgress?.(ctx.stats)
  return ctx.stats
}

function emit(ctx: Ctx, b: Buffer): void {
  ctx.out.push(b)
  ctx.outBytes += b.length
}

function* flushOut(ctx: Ctx): Generator<Buffer[]> {
  if (ctx.out.length === 0) return
  const chunk = ctx.out
  ctx.out = []
  ctx.outBytes = 0
  yield chunk
}

function* maybeFlush(ctx: Ctx): Generator<Buffer[]> {
  if (ctx.outBytes >= OUT_CHUNK) yield* flushOut(ctx)
}

function* walk(ctx: Ctx, dir: Inode, name: Buffer): Generator<Buffer[]> {
  yield* member(ctx, dir, name)
  enterDir(ctx.ancestors, dir.ino, ctx.ns.where(nameText(name)))
  const entries = dirList(ctx.ns.vol, dir).sort((a, b) => Buffer.compare(a.name, b.name))
  for (const e of entries) {
    const child = Buffer.concat([name, Buffer.from('/'), e.name])
    const p = nameProblem(e.name)
    if (p) {
      ctx.stats.skipped++
      ctx.opts.onWarning?.(`${nameText(child)}: skipped an entry with an unsafe name (${p})`)
      continue
    }
    const inode = ctx.ns.vol.iget(e.ino)
    if (e.type === DT_DIR && inode.isDir) yield* walk(ctx, inode, child)
    else yield* member(ctx, inode, child)
  }
  ctx.ancestors.delete(dir.ino)
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
  if (inode.r.flags & 0x0001 /* IF_INLINE */) return [{offset: 0, size}]
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

/** One member: its headers, and for a file its data. */
function* member(ctx: Ctx, inode: Inode, name: Buffer): Generator<Buffer[]> {
  const r = inode.r
  const ns = ctx.ns
  const type = inode.type
  const shown = nameText(name)
  if (type === 'socket') {
    ctx.stats.skipped++
    ctx.stats.sockets++
    ctx.opts.onWarning?.(`${shown}: socket ignored`)
    return
  }
  let typeflag: number = type === 'file' ? TYPEFLAG.file : type === 'dir' ? TYPEFLAG.dir : type === 'symlink' ? TYPEFLAG.symlink
    : type === 'chardev' ? TYPEFLAG.chardev : type === 'blockdev' ? TYPEFLAG.blockdev : TYPEFLAG.fifo
  let linkname: Buffer = Buffer.alloc(0)
  let size = 0
  let regions: SparseRegion[] = []
  let sparse = false
  const memberName = type === 'dir' ? Buffer.concat([name, Buffer.from('/')]) : name
  if (type === 'file' && r.nlink > 1) {
    const first = ctx.links.get(inode.ino)
    if (first) {
      typeflag = TYPEFLAG.hardlink
      linkname = first
    } else ctx.links.set(inode.ino, name)
  }
  if (type === 'symlink') linkname = nameBytes(ns.readlinkInode(inode))
  if (typeflag === TYPEFLAG.file) {
    regions = regionsOf(ctx, inode)
    const covered = regions.reduce((n, x) => n + x.size, 0)
    sparse = covered < r.size && ctx.format !== 'ustar'
    if (!sparse) regions = r.size > 0 ? [{offset: 0, size: r.size}] : []
    else if (regions.length === 0 || regions[regions.length - 1].offset + regions[regions.length - 1].size < r.size) regions.push({offset: r.size, size: 0})
    size = regions.reduce((n, x) => n + x.size, 0)
  }
  // Times and owners, with the reproducibility options applied.
  let mtime: Timestamp = {s: r.mtimeS, ns: r.mtimeNs}
  if (ctx.opts.mtime && (!ctx.opts.clampMtime || mtime.s > ctx.opts.mtime.s || (mtime.s === ctx.opts.mtime.s && mtime.ns > ctx.opts.mtime.ns))) mtime = ctx.opts.mtime
  const uid = ctx.opts.owner ?? r.uid
  const gid = ctx.opts.group ?? r.gid
  const uname = ctx.users.get(uid) ?? Buffer.alloc(0)
  const gname = ctx.groups.get(gid) ?? Buffer.alloc(0)
  const rdev = inode.isSpecial && (type === 'chardev' || type === 'blockdev') ? decodeRdev(r.area) : {major: 0, minor: 0}
  const xattrs = listXattrs(ns.vol, inode)

  const fields: HeaderFields = {
    name: memberName, mode: r.mode & 0o7777, uid, gid, size, mtime: mtime.s, typeflag, linkname,
    uname, gname, devmajor: rdev.major, devminor: rdev.minor,
  }
  if (ctx.format === 'pax') emitPax(ctx, fields, {mtime, atime: {s: r.atimeS, ns: r.atimeNs}, ctime: {s: r.ctimeS, ns: r.ctimeNs}}, xattrs, sparse ? regions : null, r.size)
  else if (!emitOld(ctx, fields, sparse ? regions : null, r.size, xattrs.length > 0)) return
  if (typeflag === TYPEFLAG.file) {
    if (sparse && ctx.format === 'pax') emit(ctx, encodeSparse10Map(regions))
    yield* maybeFlush(ctx)
    yield* fileData(ctx, inode, regions)
    const stored = size + (sparse && ctx.format === 'pax' ? encodeSparse10Map(regions).length : 0)
    const pad = (TAR_BLOCK - (stored % TAR_BLOCK)) % TAR_BLOCK
    if (pad) emit(ctx, ZERO_BLOCK.subarray(0, pad))
    ctx.stats.files++
    ctx.stats.bytes += size
  } else if (typeflag === TYPEFLAG.hardlink) ctx.stats.hardlinks++
  else if (type === 'dir') ctx.stats.dirs++
  else if (type === 'symlink') ctx.stats.symlinks++
  else ctx.stats.special++
  progress(ctx)
  yield* maybeFlush(ctx)
}

/** The bytes of `regions` of a file, read in chunks (each a fresh buffer). */
function* dataChunks(ctx: Ctx, inode: Inode, regions: SparseRegion[]): Generator<Buffer> {
  const vol = ctx.ns.vol
  if (inode.r.flags & 0x0001) {
    for (const x of regions) if (x.size > 0) yield Buffer.from(inode.r.area.subarray(x.offset, x.offset + x.size))
    return
  }
  const ext = loadExtents(vol, inode)
  let i = 0
  for (const x of regions) {
    let pos = x.offset
    const end = x.offset + x.size
    while (pos < end) {
      const l = Math.floor(pos / BLOCK_SIZE)
      while (i < ext.length && ext[i].l + ext[i].n <= l) i++
      const want = Math.min(end - pos, READ_CHUNK)
      if (i >= ext.length || ext[i].l > l) {
        // A hole inside a region (a file with holes in a format without sparse files): zeros.
        const holeEnd = Math.min(end, pos + want, i < ext.length ? ext[i].l * BLOCK_SIZE : Infinity)
        yield Buffer.alloc(holeEnd - pos)
        pos = holeEnd
        continue
      }
      const e = ext[i]
      const inBlock = pos - l * BLOCK_SIZE
      const blocks = Math.min(e.l + e.n - l, Math.ceil((inBlock + want) / BLOCK_SIZE))
      const buf = Buffer.allocUnsafe(blocks * BLOCK_SIZE)
      vol.store.readData(e.p + (l - e.l), buf)
      const n = Math.min(buf.length - inBlock, end - pos)
      yield buf.subarray(inBlock, inBlock + n)
      pos += n
    }
  }
}

function* fileData(ctx: Ctx, inode: Inode, regions: SparseRegion[]): Generator<Buffer[]> {
  for (const b of dataChunks(ctx, inode, regions)) {
    emit(ctx, b)
    yield* maybeFlush(ctx)
  }
}

/** The pax extended header (when anything needs one) and the ustar header of a member. */
function emitPax(ctx: Ctx, f: HeaderFields, t: {mtime: Timestamp, atime: Timestamp, ctime: Timestamp}, xattrs: ReadonlyArray<{name: Buffer, value: Buffer}>, sparse: SparseRegion[] | null, realSize: number): void {
  const recs: Buffer[] = []
  let name = f.name
  if (sparse) {
    // GNU's sparse 1.0: the header names the file %d/GNUSparseFile.%p/%f (with 0 for the
    // pid, so that two exports are identical); the real name is in GNU.sparse.name.
    const slash = f.name.lastIndexOf(0x2f)
    name = Buffer.concat([f.name.subarray(0, slash + 1), Buffer.from('GNUSparseFile.0/'), f.name.subarray(slash + 1)])
    recs.push(paxRecord('GNU.sparse.major', '1'), paxRecord('GNU.sparse.minor', '0'), paxRecord('GNU.sparse.name', f.name), paxRecord('GNU.sparse.realsize', String(realSize)))
  }
  const split = splitUstarName(name)
  const binary = !isUtf8(name) || !isUtf8(f.linkname ?? Buffer.alloc(0))
  if (!split && !sparse) recs.push(paxRecord('path', name))
  if ((f.linkname?.length ?? 0) > 100) recs.push(paxRecord('linkpath', f.linkname!))
  if (binary && recs.some((r) => r.includes(Buffer.from(' path=')) || r.includes(Buffer.from(' linkpath=')))) recs.unshift(paxRecord('hdrcharset', 'BINARY'))
  if (f.size > USTAR_SIZE_MAX) recs.push(paxRecord('size', String(f.size)))
  if (f.uid > USTAR_ID_MAX) recs.push(paxRecord('uid', String(f.uid)))
  if (f.gid > USTAR_ID_MAX) recs.push(paxRecord('gid', String(f.gid)))
  if ((f.uname?.length ?? 0) > 31) recs.push(paxRecord('uname', f.uname!))
  if ((f.gname?.length ?? 0) > 31) recs.push(paxRecord('gname', f.gname!))
  if ((f.devmajor ?? 0) > USTAR_ID_MAX) recs.push(paxRecord('SCHILY.devmajor', String(f.devmajor)))
  if ((f.devminor ?? 0) > USTAR_ID_MAX) recs.push(paxRecord('SCHILY.devminor', String(f.devminor)))
  const mtimeFits = t.mtime.ns === 0 && t.mtime.s >= 0 && t.mtime.s <= USTAR_SIZE_MAX
  if (!mtimeFits) recs.push(paxRecord('mtime', gnuPaxTime(t.mtime)))
  // atime and ctime, as GNU tar writes them; not with --mtime (they would make the archive
  // depend on when the tree was imported).
  if (!ctx.opts.mtime) recs.push(paxRecord('atime', gnuPaxTime(t.atime)), paxRecord('ctime', gnuPaxTime(t.ctime)))
  for (const [key, acl] of [['SCHILY.acl.access', ACL_ACCESS], ['SCHILY.acl.default', ACL_DEFAULT]] as const) {
    const x = xattrs.find((a) => a.name.toString('latin1') === acl)
    if (x) recs.push(paxRecord(key, formatAclText(decodeAcl(x.value))))
  }
  for (const x of xattrs) {
    const n = x.name.toString('latin1')
    if (n === ACL_ACCESS || n === ACL_DEFAULT) continue
    recs.push(paxRecord('SCHILY.xattr.' + encodeXattrKey(x.name), x.value))
  }
  if (recs.length > 0) {
    const body = Buffer.concat(recs)
    const slash = name.lastIndexOf(0x2f, name.length - 2)
    let paxName = Buffer.concat([name.subarray(0, slash + 1), Buffer.from('PaxHeaders/'), name.subarray(slash + 1)])
    if (paxName[paxName.length - 1] === 0x2f) paxName = paxName.subarray(0, paxName.length - 1)
    const ps = splitUstarName(paxName) ?? {name: paxName.subarray(0, 100), prefix: Buffer.alloc(0)}
    emit(ctx, encodeHeader({name: ps.name, prefix: ps.prefix, mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: clampOctal(t.mtime.s), typeflag: 0x78}, 'ustar'))
    emit(ctx, body)
    const pad = (TAR_BLOCK - (body.length % TAR_BLOCK)) % TAR_BLOCK
    if (pad) emit(ctx, ZERO_BLOCK.subarray(0, pad))
  }
  const s = splitUstarName(name) ?? {name: name.subarray(0, 100), prefix: Buffer.alloc(0)}
  const stored = sparse ? f.size + encodeSparse10Map(sparse).length : f.size
  emit(ctx, encodeHeader({
    ...f, name: s.name, prefix: s.prefix, size: Math.min(stored, USTAR_SIZE_MAX), uid: Math.min(f.uid, USTAR_ID_MAX), gid: Math.min(f.gid, USTAR_ID_MAX),
    mtime: clampOctal(t.mtime.s), linkname: f.linkname?.subarray(0, 100), uname: (f.uname?.length ?? 0) > 31 ? Buffer.alloc(0) : f.uname,
    gname: (f.gname?.length ?? 0) > 31 ? Buffer.alloc(0) : f.gname, devmajor: Math.min(f.devmajor ?? 0, USTAR_ID_MAX), devminor: Math.min(f.devminor ?? 0, USTAR_ID_MAX),
  }, 'ustar'))
}

function clampOctal(s: number): number {
  return Math.max(0, Math.min(s, USTAR_SIZE_MAX))
}

/**
 * A member in the GNU or ustar format. GNU: long names as ././@LongLink entries, large
 * numbers in base-256, holes as an old GNU sparse header ('S'). Ustar: what does not fit is
 * skipped by name. Neither holds attributes or ACLs: said once, counted. False: skipped.
 */
function emitOld(ctx: Ctx, f: HeaderFields, sparse: SparseRegion[] | null, realSize: number, hasAttrs: boolean): boolean {
  const where = nameText(f.name)
  if (hasAttrs) {
    ctx.stats.dropped++
    if (!ctx.warnedAttrs) ctx.opts.onWarning?.(`the ${ctx.format} format holds no extended attributes or ACLs: they are left out (first: ${where}); use --format pax`)
    ctx.warnedAttrs = true
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
    emit(ctx, encodeHeader({...f, name: s.name, prefix: s.prefix}, 'ustar'))
    return true
  }
  const longLink = (flag: number, value: Buffer) => {
    const body = Buffer.concat([value, Buffer.alloc(1)])
    emit(ctx, encodeHeader({name: Buffer.from('././@LongLink'), mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0, typeflag: flag, uname: Buffer.from('root'), gname: Buffer.from('root')}, 'gnu'))
    emit(ctx, body)
    const pad = (TAR_BLOCK - (body.length % TAR_BLOCK)) % TAR_BLOCK
    if (pad) emit(ctx, ZERO_BLOCK.subarray(0, pad))
  }
  if ((f.linkname?.length ?? 0) > 100) longLink(0x4b, f.linkname!)
  if (f.name.length > 100) longLink(0x4c, f.name)
  const h = encodeHeader({...f, name: f.name.subarray(0, 100), linkname: f.linkname?.subarray(0, 100)}, 'gnu')
  if (!sparse) {
    emit(ctx, h)
    return true
  }
  // Old GNU sparse: type 'S', four regions in the header, 21 in each extension block.
  h[156] = 0x53
  const put = (b: Buffer, at: number, x: SparseRegion) => {
    if (!encodeOctal(x.offset, b, at, 12)) encodeBase256Field(b, at, x.offset)
    if (!encodeOctal(x.size, b, at + 12, 12)) encodeBase256Field(b, at + 12, x.size)
  }
  sparse.slice(0, 4).forEach((x, i) => put(h, 386 + i * 24, x))
  const rest = sparse.slice(4)
  h[482] = rest.length > 0 ? 1 : 0
  if (!encodeOctal(realSize, h, 483, 12)) encodeBase256Field(h, 483, realSize)
  sealHeader(h)
  emit(ctx, h)
  for (let i = 0; i < rest.length; i += 21) {
    const b = Buffer.alloc(TAR_BLOCK)
    rest.slice(i, i + 21).forEach((x, j) => put(b, j * 24, x))
    b[504] = i + 21 < rest.length ? 1 : 0
    emit(ctx, b)
  }
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
