// cp: host to image, image to host, image to image. Recursive copies keep file type, mode,
// owner, mtime, symlinks and hard links. Copying out never writes outside the target
// directory: names from the image are checked again, nothing is opened through a symlink
// (O_NOFOLLOW), and a directory is entered only after lstat shows it is a real directory.
import fs from 'node:fs'
import path from 'node:path'
import {BLOCK_SIZE, DT_DIR, S_IFDIR, S_IFLNK, S_IFREG} from '../format/constants.js'
import {DATA_BUFFER_SIZE} from '../journal/store.js'
import {nameProblem} from '../format/dirent.js'
import {nameBytes, nameText} from '../format/name.js'
import {fail, PrismError} from '../errors.js'
import {dirList, enterDir} from '../fs/dir.js'
import {forEachRun, shareData} from '../fs/extents.js'
import type {Inode} from '../fs/inode.js'
import {Namespace, splitPath} from '../fs/namespace.js'
import type {Volume} from '../fs/volume.js'
import {forEachItem, namespace} from '../fs/image.js'
import {HostWriter, setAttrs, type FileAttrs} from './hostwriter.js'
import {checkInterrupt} from '../interrupt.js'

/** An image location may carry its namespace (for a tree not yet in the fileset table). */
export type Location = {kind: 'host', path: string} | {kind: 'image', fileset: string, path: string, ns?: Namespace}

export interface CopyOptions {
  recursive?: boolean
  /** treat the destination as the name to create, never as a directory to copy into (cp -T) */
  noTargetDirectory?: boolean
  onProgress?: (p: CopyStats) => void
  onWarning?: (msg: string) => void
  /**
   * Given, each source is copied on its own, as cp does: a source that fails with an error
   * about itself (missing, a directory without -r ...) copies nothing into the image, is
   * handed here, and the next source follows; each source is then its own transaction
   * (forEachItem). Without it, the first failure is thrown.
   */
  onSourceError?: (e: PrismError, src: Location) => void
}

export interface CopyStats {
  files: number
  dirs: number
  symlinks: number
  hardlinks: number
  bytes: number
  skipped: number
}

interface Ctx {
  opts: CopyOptions
  stats: CopyStats
  /** host dev:ino -> image inode (import), image ino -> host path (export), image ino -> image inode (copy) */
  links: Map<string | number, Inode | Buffer>
  lastReport: number
  /** image directories being copied, from the top of the copy down (a damaged image can loop) */
  ancestors: Set<number>
  /** export: the thread writing files' data and attributes, once the export is big enough */
  writer: HostWriter | null
  /** import: the pooled buffer small files are read into (smallFileBuffer), and how much is used */
  shared: Buffer | null
  sharedUsed: number
}


function newCtx(opts: CopyOptions): Ctx {
  return {opts, stats: {files: 0, dirs: 0, symlinks: 0, hardlinks: 0, bytes: 0, skipped: 0}, links: new Map(), lastReport: 0, ancestors: new Set(), writer: null, shared: null, sharedUsed: 0}
}

function progress(ctx: Ctx): void {
  checkInterrupt()
  if (!ctx.opts.onProgress) return
  const t = Date.now()
  if (t - ctx.lastReport < 100) return
  ctx.lastReport = t
  ctx.opts.onProgress(ctx.stats)
}

function baseName(p: string): string {
  const comps = splitPath(p)
  return comps.length ? comps[comps.length - 1] : ''
}

function joinImage(dir: string, name: string): string {
  return (dir.endsWith('/') ? dir : dir + '/') + name
}

function hostErr(e: unknown, what: string): PrismError {
  const err = e as NodeJS.ErrnoException
  if (err instanceof PrismError) return err
  const map: Record<string, 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOSPC' | 'ELOOP' | 'EROFS'> = {
    ENOENT: 'ENOENT', EEXIST: 'EEXIST', ENOTDIR: 'ENOTDIR', EISDIR: 'EISDIR', ENOSPC: 'ENOSPC', ELOOP: 'ELOOP', EACCES: 'EROFS', EPERM: 'EROFS',
  }
  return new PrismError(map[err.code ?? ''] ?? 'EIO', `${what}: ${err.message.replace(/^[A-Z]+: /, '')}`)
}

// Host paths are bytes from here on (Buffers), as names in the image are: a name that is not
// UTF-8 is copied byte for byte, both ways. Messages name them as library paths do
// (nameText); the CLI shows an escaped byte as \xNN.

const SLASH = Buffer.from('/')

function joinHost(dir: Buffer, name: Buffer): Buffer {
  return dir.length > 0 && dir[dir.length - 1] === 0x2f ? Buffer.concat([dir, name]) : Buffer.concat([dir, SLASH, name])
}

function hostLstat(p: Buffer): fs.BigIntStats | null {
  try {
    return fs.lstatSync(p, {bigint: true})
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw hostErr(e, nameText(p))
  }
}

function tsOf(ns: bigint): {s: number, ns: number} {
  return {s: Number(ns / 1_000_000_000n), ns: Number(ns % 1_000_000_000n)}
}

/** Copies sources to a destination, following cp's rules for an existing directory target. */
export function copy(vol: Volume, srcs: Location[], dst: Location, opts: CopyOptions = {}): CopyStats {
  const ctx = newCtx(opts)
  if (srcs.length === 0) fail('EUSAGE', 'nothing to copy')
  if (dst.kind === 'host' && srcs.some((s) => s.kind === 'host')) fail('EUSAGE', 'one of source or destination must be inside the image (FILESET:/path)')
  const dstIsDir = locIsDir(vol, dst)
  if (srcs.length > 1 && !dstIsDir) fail('ENOTDIR', `target '${show(dst)}' is not a directory`)
  let before = {links: new Set(ctx.links.keys()), stats: {...ctx.stats}}
  const failed = opts.onSourceError && ((e: PrismError, src: Location) => {
    // The failed source's transaction is gone, and with it what it added to the hard-link
    // map; the inodes earlier sources made are committed, and read again.
    for (const k of [...ctx.links.keys()]) if (!before.links.has(k)) ctx.links.delete(k)
    for (const [k, v] of ctx.links) if (!Buffer.isBuffer(v)) ctx.links.set(k, vol.iget(v.ino))
    ctx.ancestors.clear()
    Object.assign(ctx.stats, before.stats)
    opts.onSourceError!(e, src)
  })
  forEachItem(vol, srcs, failed, (src) => {
    before = {links: new Set(ctx.links.keys()), stats: {...ctx.stats}}
    let target = dst
    // A directory copied onto a fileset's root fills that root (prism cp -r ./rootfs root:/).
    const ontoRoot = dst.kind === 'image' && splitPath(dst.path).length === 0 && locIsDir(vol, src) && srcs.length === 1
    if (dstIsDir && !opts.noTargetDirectory && !ontoRoot) {
      const name = src.kind === 'host' ? path.basename(path.resolve(src.path)) : baseName(src.path)
      if (!name) fail('EINVAL', `cannot copy the root of ${show(src)} into a directory; copy onto ${dst.kind === 'image' ? dst.fileset + ':/' : 'a new path'}`)
      target = dst.kind === 'host' ? {kind: 'host', path: path.join(dst.path, name)} : {...dst, path: joinImage(dst.path, name)}
    }
    // A source that is an asynchronous clone still expanding is expanded below the path first.
    if (src.kind === 'image' && opts.recursive) {
      const sns = nsOf(vol, src)
      if (sns.exists(src.path, false)) sns.materialize(src.path)
    }
    if (src.kind === 'host' && target.kind === 'image') {
      try {
        importPath(nsOf(vol, target), nameBytes(src.path), target.path, ctx)
      } finally {
        // Nothing more is read into the small files' buffer: it goes back once written.
        if (ctx.shared) vol.store.doneWith(ctx.shared)
        ctx.shared = null
      }
    } else if (src.kind === 'image' && target.kind === 'host') exportPath(nsOf(vol, src), src.path, nameBytes(target.path), ctx)
    else if (src.kind === 'image' && target.kind === 'image') copyInImage(nsOf(vol, src), src.path, nsOf(vol, target), target.path, ctx)
  })
  opts.onProgress?.(ctx.stats)
  return ctx.stats
}

function nsOf(vol: Volume, l: Location & {kind: 'image'}): Namespace {
  return l.ns ?? namespace(vol, l.fileset)
}

function show(l: Location): string {
  return l.kind === 'host' ? l.path : `${l.fileset}:${l.path}`
}

function locIsDir(vol: Volume, l: Location): boolean {
  if (l.kind === 'host') {
    try {
      return fs.statSync(l.path).isDirectory()
    } catch {
      return false
    }
  }
  const ns = nsOf(vol, l)
  try {
    return ns.resolve(l.path, true).isDir
  } catch (e) {
    if (e instanceof PrismError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return false
    throw e
  }
}

// ---------------------------------------------------------------- host -> image

function importPath(ns: Namespace, hostPath: Buffer, imgPath: string, ctx: Ctx): void {
  const st = hostLstat(hostPath)
  if (!st) fail('ENOENT', `${nameText(hostPath)}: no such file or directory`)
  if (st.isDirectory() && !ctx.opts.recursive) fail('EISDIR', `${nameText(hostPath)}: is a directory (use -r)`)
  const comps = splitPath(imgPath)
  if (comps.length === 0) {
    if (!st.isDirectory()) fail('EISDIR', `${ns.where('/')}: is the fileset's root`)
    const root = ns.dirForChange('/')
    importDirContents(ns, root, '/', hostPath, ctx)
    setDirAttrs(ns, root, st)
    return
  }
  const {dir, name} = ns.resolveParent(imgPath)
  importChild(ns, dir, parentOf(imgPath), name, hostPath, st, ctx)
}

/** The image path of the directory holding `p`. */
function parentOf(p: string): string {
  return '/' + splitPath(p).slice(0, -1).join('/')
}

/**
 * Imports host path `hostPath` as entry `name` of image directory `dir`, whose path is
 * `dirPath` (an existing directory is merged into: it is resolved again through that path,
 * so clones expanding from this fileset keep what they saw).
 */
function importChild(ns: Namespace, dir: Inode, dirPath: string, name: Buffer, hostPath: Buffer, st: fs.BigIntStats, ctx: Ctx): void {
  const vol = ns.vol
  const existing = ns.lookupEntry(dir, name)
  const attrs = {uid: Number(st.uid), gid: Number(st.gid)}
  const childPath = joinImage(dirPath, nameText(name))
  if (st.isDirectory()) {
    let d: Inode
    if (existing && vol.iget(existing.ino).isDir) d = ns.dirForChange(childPath)
    else {
      if (existing) ns.removeChild(dir, name, dirPath)
      d = ns.createIn(dir, name, S_IFDIR | Number(st.mode & 0o7777n), attrs)
    }
    ctx.stats.dirs++
    importDirContents(ns, d, childPath, hostPath, ctx)
    setDirAttrs(ns, d, st)
    return
  }
  if (st.isSymbolicLink()) {
    if (existing) ns.removeChild(dir, name, dirPath)
    let target: Buffer
    try {
      target = fs.readlinkSync(hostPath, {encoding: 'buffer'})
    } catch (e) {
      throw hostErr(e, nameText(hostPath))
    }
    const inode = ns.createIn(dir, name, S_IFLNK | 0o777, attrs)
    ns.writeInode(inode, 0, target)
    ns.setTimes(inode, tsOf(st.atimeNs), tsOf(st.mtimeNs))
    ctx.stats.symlinks++
    return
  }
  if (!st.isFile()) {
    ctx.stats.skipped++
    ctx.opts.onWarning?.(`${nameText(hostPath)}: skipped (not a regular file, directory or symlink)`)
    return
  }
  if (existing?.type === DT_DIR) fail('EISDIR', `${ns.where(childPath)}: cannot overwrite a directory with a non-directory`)
  const key = `${st.dev}:${st.ino}`
  if (st.nlink > 1n && ctx.links.has(key)) {
    if (existing) ns.removeChild(dir, name, dirPath)
    ns.linkInode(ctx.links.get(key) as Inode, dir, name)
    ctx.stats.hardlinks++
    return
  }
  if (existing) ns.removeChild(dir, name, dirPath)
  const inode = ns.createIn(dir, name, S_IFREG | Number(st.mode & 0o7777n), attrs)
  importFileData(ns, inode, hostPath, Number(st.size), ctx)
  ns.setTimes(inode, tsOf(st.atimeNs), tsOf(st.mtimeNs))
  if (st.nlink > 1n) ctx.links.set(key, inode)
  ctx.stats.files++
  progress(ctx)
  ns.vol.maybeCommit()
}

function importFileData(ns: Namespace, inode: Inode, hostPath: Buffer, size: number, ctx: Ctx): void {
  let fd: number
  try {
    fd = fs.openSync(hostPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  } catch (e) {
    throw hostErr(e, nameText(hostPath))
  }
  try {
    const small = Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE < DATA_BUFFER_SIZE
    let off = 0
    for (;;) {
      // Memory given to the store, whose blocks are queued without a copy: for a small file a
      // slice of a pooled buffer shared with the files around it, for a large one a pooled
      // buffer per chunk. Pooled buffers come back once the store has written them.
      const buf = small ? smallFileBuffer(ns, ctx, Math.max(BLOCK_SIZE, Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE)) : ns.vol.store.dataBuffer()
      try {
        const n = fs.readSync(fd, buf, 0, buf.length, off)
        if (n === 0) break
        // Sparse input: an all-zero block-aligned chunk past the written data stays a hole.
        if (off % BLOCK_SIZE === 0 && isZero(buf, n)) {
          off += n
          continue
        }
        ns.writeInode(inode, off, buf.subarray(0, n), true)
        off += n
        ctx.stats.bytes += n
        if (n === buf.length) progress(ctx)
      } finally {
        // Nothing more is queued from this buffer: the store may reuse it once it is written.
        if (!small) ns.vol.store.doneWith(buf)
      }
    }
    if (inode.r.size < off) ns.truncateInode(inode, off)
  } catch (e) {
    throw hostErr(e, nameText(hostPath))
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * `bytes` (whole blocks) of the pooled buffer that small files of an import share: one
 * allocation per 8 MiB of small files, not one per file.
 */
function smallFileBuffer(ns: Namespace, ctx: Ctx, bytes: number): Buffer {
  if (!ctx.shared || ctx.sharedUsed + bytes > ctx.shared.length) {
    if (ctx.shared) ns.vol.store.doneWith(ctx.shared)
    ctx.shared = ns.vol.store.dataBuffer()
    ctx.sharedUsed = 0
  }
  const buf = ctx.shared.subarray(ctx.sharedUsed, ctx.sharedUsed + bytes)
  ctx.sharedUsed += bytes
  return buf
}

const ZEROS = Buffer.alloc(64 * 1024)

/** True when buf[0, n) is all zeros (native comparisons, 64 KiB at a time). */
function isZero(buf: Buffer, n: number): boolean {
  for (let i = 0; i < n; i += ZEROS.length) {
    const len = Math.min(ZEROS.length, n - i)
    if (buf.compare(ZEROS, 0, len, i, i + len) !== 0) return false
  }
  return true
}

function importDirContents(ns: Namespace, dir: Inode, dirPath: string, hostPath: Buffer, ctx: Ctx): void {
  for (const nb of hostNames(hostPath)) {
    const child = joinHost(hostPath, nb)
    const st = hostLstat(child)
    if (!st) continue
    const p = nameProblem(nb)
    if (p) fail(p.startsWith('name longer') ? 'ENAMETOOLONG' : 'EINVAL', `${nameText(child)}: ${p}`)
    importChild(ns, dir, dirPath, nb, child, st, ctx)
  }
}

/**
 * The names in host directory `hostPath`, as bytes, in byte order: the import's order, and so
 * its inode numbers, depend on nothing else.
 */
function hostNames(hostPath: Buffer): Buffer[] {
  try {
    return fs.readdirSync(hostPath, {encoding: 'buffer'}).sort(Buffer.compare)
  } catch (e) {
    throw hostErr(e, nameText(hostPath))
  }
}

function setDirAttrs(ns: Namespace, d: Inode, st: fs.BigIntStats): void {
  d.r.mode = S_IFDIR | Number(st.mode & 0o7777n)
  ns.chown(d, Number(st.uid), Number(st.gid))
  ns.setTimes(d, tsOf(st.atimeNs), tsOf(st.mtimeNs))
}

// ---------------------------------------------------------------- image -> host

function exportPath(ns: Namespace, imgPath: string, hostPath: Buffer, ctx: Ctx): void {
  const inode = ns.resolve(imgPath, false)
  if (inode.isDir && !ctx.opts.recursive) fail('EISDIR', `${ns.where(imgPath)}: is a directory (use -r)`)
  // Modes are given at creation; with no umask they need no second fchmod.
  const umask = process.umask(0)
  let failed = true
  try {
    exportNode(ns, inode, hostPath, ctx, false)
    failed = false
  } finally {
    process.umask(umask)
    const w = ctx.writer
    ctx.writer = null
    // Every file handed to the writer is written and closed before the export returns; its
    // first error is the export's, unless the export failed by itself first.
    if (w) {
      try {
        w.close(hostErr)
      } catch (e) {
        if (!failed) throw e
      }
    }
  }
}

/**
 * Files and bytes written by this thread before an export hands files to a HostWriter:
 * starting its thread costs a few tens of milliseconds, more than a small export takes.
 */
const WRITER_AFTER_FILES = 256
const WRITER_AFTER_BYTES = 16 * 1024 * 1024

const isRoot = process.getuid?.() === 0

/**
 * Writes one node and, for a directory, its subtree. `fresh` says the parent directory was
 * made by this export, so nothing can stand at hostPath yet and the lstat is skipped; if
 * something does (a damaged image naming an entry twice), the careful path runs instead.
 */
function exportNode(ns: Namespace, inode: Inode, hostPath: Buffer, ctx: Ctx, fresh: boolean): void {
  const r = inode.r
  // Seconds as a double keep the time to about a microsecond (a Date would cut it to ms).
  const mtime = r.mtimeS + r.mtimeNs / 1e9
  const atime = r.atimeS + r.atimeNs / 1e9
  const existing = fresh ? null : hostLstat(hostPath)
  const retryCarefully = (e: unknown): boolean => fresh && (e as NodeJS.ErrnoException).code === 'EEXIST'
  try {
    if (inode.isDir) {
      if (existing && !existing.isDirectory()) fail('EEXIST', `${nameText(hostPath)}: exists and is not a directory`)
      if (!existing) {
        try {
          fs.mkdirSync(hostPath, {mode: 0o700})
        } catch (e) {
          if (retryCarefully(e)) return exportNode(ns, inode, hostPath, ctx, false)
          throw e
        }
      } else if (!fs.lstatSync(hostPath).isDirectory()) {
        // Re-check: what we enter must be a real directory, never a symlink.
        fail('EEXIST', `${nameText(hostPath)}: not a directory`)
      }
      ctx.stats.dirs++
      enterDir(ctx.ancestors, inode.ino, nameText(hostPath))
      for (const e of dirList(ns.vol, inode)) {
        const p = nameProblem(e.name)
        if (p) {
          ctx.stats.skipped++
          ctx.opts.onWarning?.(`${nameText(hostPath)}: skipped an entry with an unsafe name (${p})`)
          continue
        }
        exportNode(ns, ns.vol.iget(e.ino), joinHost(hostPath, e.name), ctx, !existing)
      }
      ctx.ancestors.delete(inode.ino)
      // Owner before mode, as cp does: chown(2) clears the set-id bits.
      if (isRoot) fs.lchownSync(hostPath, r.uid, r.gid)
      fs.chmodSync(hostPath, r.mode & 0o7777)
      fs.utimesSync(hostPath, atime, mtime)
      return
    }
    if (existing?.isDirectory()) fail('EISDIR', `${nameText(hostPath)}: is a directory`)
    if (inode.isLnk) {
      if (existing) fs.unlinkSync(hostPath)
      try {
        fs.symlinkSync(nameBytes(ns.readlinkInode(inode)), hostPath)
      } catch (e) {
        if (retryCarefully(e)) return exportNode(ns, inode, hostPath, ctx, false)
        throw e
      }
      if (isRoot) fs.lchownSync(hostPath, r.uid, r.gid)
      fs.lutimesSync(hostPath, atime, mtime)
      ctx.stats.symlinks++
      return
    }
    const prev = r.nlink > 1 ? ctx.links.get(inode.ino) : undefined
    if (Buffer.isBuffer(prev)) {
      if (existing) fs.unlinkSync(hostPath)
      fs.linkSync(prev, hostPath)
      ctx.stats.hardlinks++
      return
    }
    if (existing) fs.unlinkSync(hostPath) // never write through an existing name (it may be a symlink)
    let fd: number
    try {
      fd = fs.openSync(hostPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, r.mode & 0o777)
    } catch (e) {
      if (retryCarefully(e)) return exportNode(ns, inode, hostPath, ctx, false)
      throw e
    }
    if (!ctx.writer && (ctx.stats.files >= WRITER_AFTER_FILES || ctx.stats.bytes >= WRITER_AFTER_BYTES)) ctx.writer = new HostWriter()
    const w = ctx.writer
    // Only mapped runs are written; holes stay holes, as cp --sparse=auto does.
    let end = 0
    const wrote = (off: number, buf: Buffer) => { ctx.stats.bytes += buf.length; end = off + buf.length }
    const attrs = (): FileAttrs => ({
      truncate: end < r.size ? r.size : -1, mode: r.mode & 0o7000 ? r.mode & 0o7777 : -1,
      uid: isRoot ? r.uid : -1, gid: r.gid, atime, mtime,
    })
    if (w) {
      // The writer thread writes, sets the attributes and closes fd from here on.
      const where = nameText(hostPath)
      try {
        w.check(hostErr)
        forEachRun(ns.vol, inode, (off, buf) => { w.write(fd, where, buf, off); wrote(off, buf) }, undefined, (n) => w.buffer(n))
      } finally {
        w.finish(fd, where, attrs())
      }
    } else {
      try {
        forEachRun(ns.vol, inode, (off, buf) => {
          let done = 0
          while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done, off + done)
          wrote(off, buf)
        })
        setAttrs(fd, attrs())
      } finally {
        fs.closeSync(fd)
      }
    }
    if (r.nlink > 1) ctx.links.set(inode.ino, hostPath)
    ctx.stats.files++
    progress(ctx)
  } catch (e) {
    throw hostErr(e, nameText(hostPath))
  }
}

// ---------------------------------------------------------------- image -> image

function copyInImage(src: Namespace, srcPath: string, dst: Namespace, dstPath: string, ctx: Ctx): void {
  const inode = src.resolve(srcPath, false)
  if (inode.isDir && !ctx.opts.recursive) fail('EISDIR', `${src.where(srcPath)}: is a directory (use -r)`)
  if (splitPath(dstPath).length === 0) {
    if (!inode.isDir) fail('EISDIR', `${dst.where('/')}: is the fileset's root`)
    const root = dst.dirForChange('/')
    if (src.fs.id === dst.fs.id && inode.ino === root.ino) fail('EINVAL', 'cannot copy a directory into itself')
    for (const e of dirList(src.vol, inode)) copyNode(src, src.vol.iget(e.ino), dst, root, '/', e.name, ctx)
    return
  }
  const {dir, name, chain} = dst.resolveParent(dstPath)
  if (inode.isDir && src.fs.id === dst.fs.id && chain.some((d) => d.ino === inode.ino)) fail('EINVAL', `cannot copy ${src.where(srcPath)} into itself`)
  copyNode(src, inode, dst, dir, parentOf(dstPath), name, ctx)
}

function copyNode(src: Namespace, inode: Inode, dst: Namespace, dir: Inode, dirPath: string, name: Buffer, ctx: Ctx): void {
  const r = inode.r
  const existing = dst.lookupEntry(dir, name)
  const attrs = {uid: r.uid, gid: r.gid}
  const childPath = joinImage(dirPath, nameText(name))
  if (inode.isDir) {
    let d: Inode
    if (existing && dst.vol.iget(existing.ino).isDir) d = dst.dirForChange(childPath)
    else {
      if (existing) dst.removeChild(dir, name, dirPath)
      d = dst.createIn(dir, name, r.mode, attrs)
    }
    ctx.stats.dirs++
    enterDir(ctx.ancestors, inode.ino, src.where(childPath))
    for (const e of dirList(src.vol, inode)) copyNode(src, src.vol.iget(e.ino), dst, d, childPath, e.name, ctx)
    ctx.ancestors.delete(inode.ino)
    dst.setTimes(d, {s: r.atimeS, ns: r.atimeNs}, {s: r.mtimeS, ns: r.mtimeNs})
    return
  }
  if (existing) {
    if (existing.ino === inode.ino) return
    if (existing.type === DT_DIR) fail('EISDIR', `${dst.where(childPath)}: cannot overwrite a directory with a non-directory`)
    dst.removeChild(dir, name, dirPath)
  }
  const prev = r.nlink > 1 ? ctx.links.get(inode.ino) : undefined
  if (prev && !Buffer.isBuffer(prev)) {
    dst.linkInode(prev, dir, name)
    ctx.stats.hardlinks++
    return
  }
  const copy = dst.createIn(dir, name, r.mode, attrs)
  shareData(dst.vol, inode, copy)
  copy.r.dataVersion++
  dst.setTimes(copy, {s: r.atimeS, ns: r.atimeNs}, {s: r.mtimeS, ns: r.mtimeNs})
  if (r.nlink > 1) ctx.links.set(inode.ino, copy)
  if (inode.isLnk) ctx.stats.symlinks++
  else ctx.stats.files++
  ctx.stats.bytes += r.size
  progress(ctx)
  dst.vol.maybeCommit()
}
