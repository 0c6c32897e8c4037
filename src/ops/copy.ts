// cp: host to image, image to host, image to image. Recursive copies keep file type (devices,
// FIFOs and sockets too), mode, owner, access and modification times to the nanosecond,
// symlinks, hard links and extended attributes (POSIX ACLs among them); what the host will not
// let the process read or set is named, and the copy goes on (exit 1 at the end, as tar -x). Copying out never writes outside the target
// directory: names from the image are checked again, nothing is opened through a symlink
// (O_NOFOLLOW), and a directory is entered only after lstat shows it is a real directory.
//
// As GNU cp: a directory never replaces a non-directory nor the reverse, at any depth; an
// entry that cannot be copied (refused, unreadable, vanished) is reported and
// the copy goes on with the rest (CopyStats.errors; the CLI exits 1 at the end). A copy into
// the image is all or nothing: it is built as a staged tree (src/ops/stage.ts) and published
// by its last transaction. Sparse host files keep their holes: only data ranges
// (SEEK_DATA/SEEK_HOLE) are read, and all-zero blocks are not written (cp --sparse=always).
import fs from 'node:fs'
import path from 'node:path'
import {BLOCK_SIZE, MAX_FILE_SIZE, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG} from '../format/constants.js'
import {decodeRdev} from '../format/inode.js'
import {xattrNameProblem, type Xattr} from '../format/xattr.js'
import {DATA_BUFFER_SIZE} from '../journal/store.js'
import {nameProblem} from '../format/dirent.js'
import {nameBytes, nameText} from '../format/name.js'
import {fail, hostReason as reasonOf, isArgumentError, isDamage, PrismError, type ErrCode} from '../errors.js'
import {dirCount, dirList, dirListByInode, enterDir} from '../fs/dir.js'
import {firstBlock, forEachRun, loadExtents, readData, shareData} from '../fs/extents.js'
import {timestampOfNs, type Inode, type Timestamp} from '../fs/inode.js'
import {listXattrs, shareXattrs} from '../fs/xattr.js'
import {Namespace, reapOrphans, splitPath} from '../fs/namespace.js'
import type {Volume} from '../fs/volume.js'
import {namespace} from '../fs/image.js'
import {HostWriter, setAttrs, type FileAttrs} from './hostwriter.js'
import {makeHostNode, readHostXattrs, setHostTimes, splitRdev, writeHostXattr} from './hostattrs.js'
import {Stage} from './stage.js'
import {SmallFileBuffers} from './smallfiles.js'
import {joinHost, localSource, smallFile, type HostSource, type HostStat} from './hostsource.js'
import {checkInterrupt, uninterrupted} from '../interrupt.js'
import {growPipe, openOutput, outputFd, writeAll} from '../sys.js'
import {call, run, runNow, type Frame} from '../frames.js'

/** An image location may carry its namespace (for a tree not yet in the fileset table). */
export type Location = {kind: 'host', path: string} | {kind: 'image', fileset: string, path: string, ns?: Namespace}

export interface CopyOptions {
  recursive?: boolean
  /** treat the destination as the name to create, never as a directory to copy into (cp -T) */
  noTargetDirectory?: boolean
  /**
   * An existing empty directory at the destination is replaced by the source directory
   * instead of being merged into (rename(2)'s rule, for mv between filesets).
   */
  replaceEmptyDir?: boolean
  /**
   * Called in the step that puts the copy into the image in place, before it does: a throw
   * leaves the fileset as it was (mv checks that all of it was copied).
   */
  beforePublish?: (stats: CopyStats) => void
  /**
   * Called once the copy into the image is in place, in the same transaction (mv removes its
   * source here, so that both show in one commit).
   */
  onPublish?: (stats: CopyStats) => void
  onProgress?: (p: CopyStats) => void
  /**
   * Given, a source that fails with an error about itself (missing, in no fileset, a
   * directory without -r, a copy into itself ...) is recorded with the entries that could not
   * be copied and the next source follows, as cp does; such an error is found before
   * anything of that source is copied. Without it, the first failure is thrown.
   */
  keepGoing?: boolean
  /**
   * Each error recorded in `errors` (a source, an entry, or a part of an entry that could not
   * be copied), handed over as it happens, so they reach the user in the order cp would
   * print them.
   */
  onError?: (e: CopyError) => void
  /**
   * For a copy within the image run in steps while others change it (a server answering its
   * mounts between slices): a count that moves whenever they may have changed the image. The
   * copy then looks each source entry up again before copying it (a vanished one is named,
   * as cp names a file removed under it).
   */
  changes?: () => number
  /** image inodes read as sources (files and directories) are added here as they are copied */
  visited?: Set<number>
}

/** One entry that could not be copied. */
export interface CopyError {
  code: ErrCode
  message: string
}

export interface CopyStats {
  files: number
  dirs: number
  symlinks: number
  hardlinks: number
  /** character and block devices, FIFOs and sockets */
  specials: number
  bytes: number
  /** entries not copied: one per error */
  skipped: number
  errors: CopyError[]
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
  /** import: the memory small files are read into */
  small: SmallFileBuffers | null
  /** a copy into the image: where it is built until it is published */
  stage: Stage | null
  /** image to image within one fileset: a destination that is the source's very inode is cp's "same file" */
  sameFs: boolean
  /**
   * export of a tree: its regular files, taken in the order their data sits in the image
   * (flushExport), and what is left to do to each directory once its files are written
   */
  deferred: {files: DeferredFile[], after: Array<() => void>} | null
  /** import: where the host is read */
  src: HostSource
}

/** A regular file of an exported tree, waiting to be written (exportNode's arguments, and where its data starts). */
interface DeferredFile {
  inode: Inode
  from: string
  hostPath: Buffer
  fresh: boolean
  at: number
}

function newCtx(opts: CopyOptions, src: HostSource): Ctx {
  return {
    opts, stats: {files: 0, dirs: 0, symlinks: 0, hardlinks: 0, specials: 0, bytes: 0, skipped: 0, errors: []}, links: new Map(), lastReport: 0,
    ancestors: new Set(), writer: null, small: null, stage: null, sameFs: false, deferred: null, src,
  }
}

/**
 * The failure of one entry: it is not copied, the error is recorded, and the copy goes on.
 * Anything else (the image full, damaged or failing) stops the whole copy.
 */
class EntryError extends PrismError {}

function entryFail(code: ErrCode, message: string): never {
  throw new EntryError(code, message)
}

/**
 * A failure of host entry `from`'s own (exit 1) as that entry's, named: recorded, and the copy
 * goes on. Anything else (a full image, a bug) as it is.
 */
function entryErrorOf(e: unknown, from: string): unknown {
  return isArgumentError(e) && !(e instanceof EntryError) ? new EntryError(e.code, `cannot copy '${from}': ${e.message}`) : e
}

/** Runs `fn` for one entry; an EntryError is recorded instead of stopping the copy. */
function guarded(ctx: Ctx, fn: () => void): void {
  try {
    fn()
  } catch (e) {
    if (!(e instanceof EntryError)) throw e
    record(ctx, e.code, e.message)
    ctx.stats.skipped++
  }
}

/**
 * guarded() for one entry of an export (image to host), named `from` in the image: damage
 * met in reading it (a directory block, an extent node or an inode that fails its checks) is
 * that entry's failure, named with the others (`cannot read`), and the export goes on with
 * the rest of the tree, as cp goes on past a file it cannot read: what a damaged image still
 * holds can be copied out before anything is repaired.
 */
function guardedExport(ctx: Ctx, from: string, fn: () => void): void {
  guarded(ctx, () => {
    try {
      fn()
    } catch (e) {
      throw unreadable(e, from)
    }
  })
}

/** guardedExport() for steps run as a frame of their own (src/frames.ts): an export nests one per directory level. */
function* guardedExportSteps(ctx: Ctx, from: string, steps: () => Frame): Frame {
  try {
    try {
      yield* call(steps())
    } catch (e) {
      throw unreadable(e, from)
    }
  } catch (e) {
    if (!(e instanceof EntryError)) throw e
    record(ctx, e.code, e.message)
    ctx.stats.skipped++
  }
}

/** Damage read from the image, as the failure of entry `from` of an export; anything else as it is. */
function unreadable(e: unknown, from: string): unknown {
  return isDamage(e) && !(e instanceof EntryError) ? new EntryError('EBADIMAGE', `cannot read '${from}': ${e.message}`) : e
}

/**
 * guarded() for steps that may yield (an import waiting for the host's answers). The steps run
 * as a frame of their own (src/frames.ts): a walk nests one per directory level.
 */
function* guardedSteps(ctx: Ctx, steps: () => Frame): Frame {
  try {
    yield* call(steps())
  } catch (e) {
    if (!(e instanceof EntryError)) throw e
    record(ctx, e.code, e.message)
    ctx.stats.skipped++
  }
}

/**
 * Something of an entry that was copied could not be (an attribute the host will not give or
 * take, a device node only root may make ...): named with the others, and exit 1 at the end,
 * as tar -x does; the entry itself stays.
 */
function partial(ctx: Ctx, e: unknown, what: string): void {
  const err = hostErr(e, what)
  if (!isArgumentError(err)) throw err
  record(ctx, err.code, err.message)
}

/** Records one error, in the order it happened, and hands it on. */
function record(ctx: Ctx, code: ErrCode, message: string): void {
  const e = {code, message}
  ctx.stats.errors.push(e)
  ctx.opts.onError?.(e)
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

const HOST_CODES: Record<string, ErrCode> = {
  ENOENT: 'ENOENT', EEXIST: 'EEXIST', ENOTDIR: 'ENOTDIR', EISDIR: 'EISDIR', ELOOP: 'ELOOP', ENAMETOOLONG: 'ENAMETOOLONG',
  EACCES: 'EACCES', EPERM: 'EACCES',
}

/**
 * A host call's failure, as the failure of the entry it was for (`what`: "cannot open 'x' for
 * reading"). Anything that is not a system call's error (a PrismError, a bug) goes as it is.
 */
function hostErr(e: unknown, what: string): Error {
  const err = e as NodeJS.ErrnoException
  if (e instanceof PrismError || !(e instanceof Error) || typeof err.code !== 'string' || typeof err.syscall !== 'string') return e as Error
  return new EntryError(HOST_CODES[err.code] ?? 'EHOST', `${what}: ${hostReason(err)}`)
}

/**
 * "Permission denied" from "EACCES: permission denied, open '/x'", as cp words it (and "No
 * space left on device" from "ENOSPC: no space left on device, write": the system call's name
 * went with it only when a path followed).
 */
function hostReason(err: NodeJS.ErrnoException): string {
  const r = reasonOf(err)
  return r.charAt(0).toUpperCase() + r.slice(1)
}

/** A failure of the export's writer thread: it stops writing, so the whole export stops. */
function writerErr(e: NodeJS.ErrnoException, where: string): PrismError {
  return new PrismError('EHOST', `cannot write '${where}': ${hostReason(e)}`)
}

// Host paths are bytes from here on (Buffers), as names in the image are: a name that is not
// UTF-8 is copied byte for byte, both ways. Messages name them as library paths do
// (nameText); the CLI shows an escaped byte as \xNN.

/** lstat of a host path that should be there: its absence is the entry's failure too. */
function hostStat(src: HostSource, p: Buffer): HostStat {
  try {
    return src.lstat(p)
  } catch (e) {
    throw hostErr(e, `cannot stat '${nameText(p)}'`)
  }
}

/** lstat of a host path that may be missing (null). */
function hostLstat(p: Buffer): fs.BigIntStats | null {
  try {
    return fs.lstatSync(p, {bigint: true})
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw hostErr(e, `cannot stat '${nameText(p)}'`)
  }
}

const tsOf = timestampOfNs

/**
 * Copies sources to a destination, following cp's rules for an existing directory target.
 * Entries that cannot be copied are listed in the result's `errors`; the rest is copied.
 */
export function copy(vol: Volume, srcs: Location[], dst: Location, opts: CopyOptions = {}): CopyStats {
  const steps = copySteps(vol, srcs, dst, opts, localSource)
  for (;;) {
    // (alone, nothing keeps the copy waiting: each yield, after an entry, goes straight on)
    const r = steps.next()
    if (r.done) return r.value
  }
}

/**
 * copy(), with the host read through `host`: it yields whenever `host` has yet to receive what
 * comes next (src/ops/hostsource.ts), and after each entry copied within the image; resume
 * it with next() once it may go on. A server runs it in slices, between the requests of its
 * mounts (src/server/copyin.ts, src/server/sliced.ts).
 */
export function copySteps(vol: Volume, srcs: Location[], dst: Location, opts: CopyOptions, host: HostSource): Generator<void, CopyStats> {
  // (the walks nest a frame per directory level: run() keeps them off the JavaScript stack)
  return run(copyFrame(vol, srcs, dst, opts, host))
}

function* copyFrame(vol: Volume, srcs: Location[], dst: Location, opts: CopyOptions, host: HostSource): Frame<CopyStats> {
  const ctx = newCtx(opts, host)
  if (srcs.length === 0) fail('EUSAGE', 'nothing to copy')
  if (dst.kind === 'host' && srcs.some((s) => s.kind === 'host')) fail('EUSAGE', 'one of source or destination must be inside the image (FILESET:/path)')
  if (opts.noTargetDirectory && srcs.length > 1) fail('EUSAGE', `with -T there is one source, not ${srcs.length}`)
  const dstIsDir = locIsDir(vol, dst, host)
  if (srcs.length > 1 && !dstIsDir) fail('ENOTDIR', `target '${show(dst)}' is not a directory`)
  const stage = dst.kind === 'image' ? new Stage(nsOf(vol, dst)) : null
  ctx.stage = stage
  try {
    for (const src of srcs) {
      try {
        yield* guardedSteps(ctx, () => copyOne(vol, src, dst, dstIsDir, srcs.length, ctx))
      } catch (e) {
        if (!opts.keepGoing || !isArgumentError(e)) throw e
        record(ctx, e.code, e.message)
      }
    }
    if (stage) {
      // Everything staged goes in place in the running transaction (the last one, unless the
      // moves alone outgrow half the journal); what it replaced is freed afterwards.
      opts.beforePublish?.(ctx.stats)
      // A signal that came before stops the copy here, nothing of it shown. From here on the
      // copy is done, though commits may fall inside the publish (a huge one) and the reap:
      // a signal no longer stops it (src/interrupt.ts).
      checkInterrupt()
      uninterrupted(() => {
        if (!stage.empty) stage.publish()
        opts.onPublish?.(ctx.stats)
        stage.close()
        if (vol.sb.orphanHead !== 0) reapOrphans(vol)
      })
    }
  } finally {
    // After a failure the staged tree stays on the orphan list, for the next reaping.
    stage?.close()
    // Nothing more is read into the small files' buffer: it goes back once written.
    ctx.small?.release()
    ctx.small = null
  }
  opts.onProgress?.(ctx.stats)
  return ctx.stats
}

function* copyOne(vol: Volume, src: Location, dst: Location, dstIsDir: boolean, sources: number, ctx: Ctx): Frame {
  const opts = ctx.opts
  let target = dst
  // A directory copied onto a fileset's root fills that root (prism cp -r ./rootfs root:/).
  const ontoRoot = dst.kind === 'image' && splitPath(dst.path).length === 0 && locIsDir(vol, src, ctx.src) && sources === 1
  // A source named by its final '.' (DIR/., or . alone) is the directory itself, and its name
  // is '.': it merges into a directory target, as in GNU cp (DIR/.. would name the target's
  // parent there, and is refused).
  const last = src.path.split('/').filter((c) => c !== '').pop()
  if (last === '..' && dstIsDir && !opts.noTargetDirectory) fail('EINVAL', `cannot copy '${show(src)}' into a directory: name the directory itself`)
  if (dstIsDir && !opts.noTargetDirectory && !ontoRoot && last !== '.') {
    const name = src.kind === 'host' ? ctx.src.baseName(src.path) : baseName(src.path)
    if (!name) fail('EINVAL', `cannot copy the root of ${show(src)} into a directory; copy onto ${dst.kind === 'image' ? dst.fileset + ':/' : 'a new path'}`)
    target = dst.kind === 'host' ? {kind: 'host', path: path.join(dst.path, name)} : {...dst, path: joinImage(dst.path, name)}
  }
  // A source that is an asynchronous clone still expanding is expanded below the path first.
  if (src.kind === 'image' && opts.recursive) {
    const sns = nsOf(vol, src)
    if (sns.exists(src.path, false)) sns.materialize(src.path)
  }
  if (src.kind === 'host' && target.kind === 'image') yield* importPath(nsOf(vol, target), nameBytes(src.path), target.path, ctx)
  else if (src.kind === 'image' && target.kind === 'host') exportPath(nsOf(vol, src), src.path, nameBytes(target.path), ctx)
  else if (src.kind === 'image' && target.kind === 'image') yield* copyInImage(nsOf(vol, src), src.path, nsOf(vol, target), target.path, ctx)
}

function nsOf(vol: Volume, l: Location & {kind: 'image'}): Namespace {
  return l.ns ?? namespace(vol, l.fileset)
}

function show(l: Location): string {
  return l.kind === 'host' ? l.path : `${l.fileset}:${l.path}`
}

function locIsDir(vol: Volume, l: Location, host: HostSource): boolean {
  if (l.kind === 'host') return host.isDir(l.path)
  const ns = nsOf(vol, l)
  try {
    return ns.resolve(l.path, true).isDir
  } catch (e) {
    if (e instanceof PrismError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return false
    throw e
  }
}

// ---------------------------------------------------------------- the destination in the image

/**
 * A directory of the image that entries are copied into: one that existed before the copy
 * (its entries are looked up, and what is new for it is staged), or one this copy made
 * (`fresh`: it is empty but for what the copy puts there, so nothing is looked up).
 */
interface Dest {
  dir: Inode
  path: string
  fresh: boolean
}

/** Where an entry is made: in `parent` (a fresh or staged directory), or merged into an existing directory. */
type Slot = {parent: Inode} | {merge: Dest}

/**
 * cp's rules for entry `name` of `d`, for a source that is a directory or not (`from` names
 * it): a directory merges into a directory and never replaces anything else; a non-directory
 * replaces a non-directory (at publish) and never a directory. Null: nothing to do (the
 * destination is the source's very inode, shared between two filesets).
 */
function slot(ns: Namespace, ctx: Ctx, d: Dest, name: Buffer, srcIsDir: boolean, from: string, srcIno = 0, replaceEmptyDir = false): Slot | null {
  if (d.fresh) return {parent: d.dir}
  const stage = ctx.stage!
  const childPath = joinImage(d.path, nameText(name))
  if (stage.staged(d.dir, name)) entryFail('EEXIST', `will not overwrite just-created '${ns.where(childPath)}' with '${from}'`)
  const e = ns.lookupEntry(d.dir, name)
  if (!e) return {parent: stage.bucket(d.dir, d.path)}
  if (e.ino === srcIno) {
    // A hard link of the source, within a fileset: cp's "same file". Between filesets, an
    // inode both share: that is the copy already.
    if (ctx.sameFs) entryFail('EINVAL', `'${from}' and '${ns.where(childPath)}' are the same file`)
    return null
  }
  const existing = ns.vol.iget(e.ino)
  if (srcIsDir) {
    if (!existing.isDir) entryFail('ENOTDIR', `cannot overwrite non-directory '${ns.where(childPath)}' with directory '${from}'`)
    const dir = ns.resolve(childPath, false)
    if (replaceEmptyDir && dirCount(dir) === 0) return {parent: stage.bucket(d.dir, d.path)}
    return {merge: {dir, path: childPath, fresh: false}}
  }
  if (existing.isDir) entryFail('EISDIR', `cannot overwrite directory '${ns.where(childPath)}' with non-directory '${from}'`)
  return {parent: stage.bucket(d.dir, d.path)}
}

/** The existing directory at `p` (the fileset's root for '/'), as a destination. */
function existingDest(ns: Namespace, p: string): Dest {
  return {dir: ns.resolve(p, true), path: p, fresh: false}
}

// ---------------------------------------------------------------- host -> image

function* importPath(ns: Namespace, hostPath: Buffer, imgPath: string, ctx: Ctx): Frame {
  while (!ctx.src.ready(hostPath)) yield
  const st = hostStat(ctx.src, hostPath)
  if (st.isDirectory() && !ctx.opts.recursive) entryFail('EISDIR', `-r not specified; omitting directory '${nameText(hostPath)}'`)
  const comps = splitPath(imgPath)
  if (comps.length === 0) {
    if (!st.isDirectory()) entryFail('EISDIR', `${ns.where('/')}: is the fileset's root`)
    const d = existingDest(ns, '/')
    // (read now: the host source answers for the entry at hand only)
    const xattrs = hostXattrs(ctx.src, hostPath, nameText(hostPath), ctx)
    yield* importDirContents(ns, d, hostPath, ctx)
    ctx.stage!.onPublish(d.dir, '/', (x) => { setDirAttrs(ns, x, st); mergeXattrs(ns, x, xattrs, nameText(hostPath), ctx) })
    return
  }
  const {dir, name} = ns.resolveParent(imgPath, st.isDirectory() ? 'dir' : 'other')
  yield* importChild(ns, {dir, path: parentOf(imgPath), fresh: false}, name, hostPath, st, ctx)
}

/** The image path of the directory holding `p`. */
function parentOf(p: string): string {
  return '/' + splitPath(p).slice(0, -1).join('/')
}

/** Imports host path `hostPath` (lstat `st`) as entry `name` of destination `d`. */
function* importChild(ns: Namespace, d: Dest, name: Buffer, hostPath: Buffer, st: HostStat, ctx: Ctx): Frame {
  const vol = ns.vol
  const src = ctx.src
  const from = nameText(hostPath)
  const attrs = {uid: Number(st.uid), gid: Number(st.gid)}
  const childPath = joinImage(d.path, nameText(name))
  if (st.isDirectory()) {
    const s = slot(ns, ctx, d, name, true, from)
    if (!s) return
    let sub: Dest
    if ('merge' in s) {
      sub = s.merge
      const xattrs = hostXattrs(src, hostPath, from, ctx)
      ctx.stage!.onPublish(sub.dir, sub.path, (x) => { setDirAttrs(ns, x, st); mergeXattrs(ns, x, xattrs, from, ctx) })
    } else {
      sub = {dir: ns.createIn(s.parent, name, S_IFDIR | Number(st.mode & 0o7777n), attrs), path: childPath, fresh: true}
      importXattrs(ns, sub.dir, hostPath, from, ctx)
    }
    ctx.stats.dirs++
    yield* call(importDirContents(ns, sub, hostPath, ctx))
    if (sub.fresh) setDirAttrs(ns, sub.dir, st)
    vol.maybeCommit()
    return
  }
  // (refused before anything is made or replaced, as a name the image cannot hold)
  if (st.isFile() && st.size > BigInt(MAX_FILE_SIZE)) entryFail('EFBIG', `cannot copy '${from}': its size, ${st.size} bytes, is more than a Prism file holds (${MAX_FILE_SIZE}, 8 TiB)`)
  const s = slot(ns, ctx, d, name, false, from) as {parent: Inode} | null
  if (!s) return
  const parent = s.parent
  if (!st.isFile() && !st.isSymbolicLink()) {
    // A device node, FIFO or socket: an inode with its device number and no data.
    const key = `${st.dev}:${st.ino}`
    if (st.nlink > 1n && ctx.links.has(key)) {
      ns.linkInode(ctx.links.get(key) as Inode, parent, name)
      ctx.stats.hardlinks++
      return
    }
    const inode = ns.createSpecialIn(parent, name, Number(st.mode & 0o177777n), splitRdev(st.rdev), attrs)
    importXattrs(ns, inode, hostPath, from, ctx)
    ns.setTimes(inode, tsOf(st.atimeNs), tsOf(st.mtimeNs))
    if (st.nlink > 1n) ctx.links.set(key, inode)
    ctx.stats.specials++
    vol.maybeCommit()
    return
  }
  if (st.isSymbolicLink()) {
    // (two names of one symlink stay one inode, as two of a file do)
    const key = `${st.dev}:${st.ino}`
    if (st.nlink > 1n && ctx.links.has(key)) {
      ns.linkInode(ctx.links.get(key) as Inode, parent, name)
      ctx.stats.hardlinks++
      return
    }
    let target: Buffer
    try {
      target = src.readlink(hostPath)
    } catch (e) {
      throw hostErr(e, `cannot read symbolic link '${from}'`)
    }
    const inode = ns.createIn(parent, name, S_IFLNK | 0o777, attrs)
    ns.writeInode(inode, 0, target)
    importXattrs(ns, inode, hostPath, from, ctx)
    ns.setTimes(inode, tsOf(st.atimeNs), tsOf(st.mtimeNs))
    if (st.nlink > 1n) ctx.links.set(key, inode)
    ctx.stats.symlinks++
    vol.maybeCommit()
    return
  }
  // The image's own file, changing as this very copy writes it, would go in torn: refused,
  // as tar refuses to add the archive to itself.
  if (vol.isImageFile(st)) entryFail('EINVAL', `'${from}' is the image itself: not copied into it`)
  const key = `${st.dev}:${st.ino}`
  if (st.nlink > 1n && ctx.links.has(key)) {
    ns.linkInode(ctx.links.get(key) as Inode, parent, name)
    ctx.stats.hardlinks++
    vol.maybeCommit()
    return
  }
  let fd: unknown
  try {
    fd = src.open(hostPath)
  } catch (e) {
    throw hostErr(e, `cannot open '${from}' for reading`)
  }
  try {
    const inode = ns.createIn(parent, name, S_IFREG | Number(st.mode & 0o7777n), attrs)
    try {
      yield* importFileData(ns, inode, fd, hostPath, Number(st.size), Number(st.blocks) * 512, ctx)
    } catch (e) {
      // A read that failed half-way, or data the image refuses (any failure of the file's own,
      // exit 1): the file goes (its blocks with it, through the orphan list), named with the
      // others, and the copy goes on; only what stops the whole copy (a full image) stops it.
      const err = entryErrorOf(e, from)
      if (err instanceof EntryError) ns.detachChild(parent, name, childPath)
      throw err
    }
    importXattrs(ns, inode, hostPath, from, ctx)
    ns.setTimes(inode, tsOf(st.atimeNs), tsOf(st.mtimeNs))
    if (st.nlink > 1n) ctx.links.set(key, inode)
  } finally {
    src.close(fd)
  }
  ctx.stats.files++
  progress(ctx)
  vol.maybeCommit()
}

/**
 * Reads a host file's data into `inode`. Only its data ranges are read (a large file with
 * fewer blocks than its size is sparse), and a block that holds only zeros is not written:
 * every hole of the host file, and every all-zero block, is a hole in the image.
 */
function* importFileData(ns: Namespace, inode: Inode, fd: unknown, hostPath: Buffer, size: number, allocated: number, ctx: Ctx): Generator<void, void> {
  const vol = ns.vol
  const src = ctx.src
  const whole = Math.max(BLOCK_SIZE, Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE)
  const small = smallFile(size)
  let eof = size
  try {
    const ranges = src.ranges(fd, size, allocated)
    reading: for (const [from, to] of ranges) {
      let off = from - (from % BLOCK_SIZE)
      const end = Math.min(size, Math.ceil(to / BLOCK_SIZE) * BLOCK_SIZE)
      while (off < end) {
        const len = Math.min(small ? whole : DATA_BUFFER_SIZE, end - off)
        while (!src.readable(fd, len)) yield
        // Memory given to the store, whose blocks are queued without a copy: for a small file a
        // slice of a pooled buffer shared with the files around it, for a large one a pooled
        // buffer per chunk. Pooled buffers come back once the store has written them.
        const buf = small ? (ctx.small ??= new SmallFileBuffers(vol.store)).take(whole) : vol.store.dataBuffer()
        try {
          const n = src.read(fd, buf, len, off)
          if (n === 0) {
            eof = off // the file shrank while we read it
            break reading
          }
          writeData(ns, inode, off, buf, n)
          off += n
          ctx.stats.bytes += n
          if (n === buf.length) progress(ctx)
        } finally {
          // Nothing more is queued from this buffer: the store may reuse it once it is written.
          if (!small) vol.store.doneWith(buf)
        }
      }
    }
  } catch (e) {
    throw hostErr(e, `cannot read '${nameText(hostPath)}'`)
  }
  if (inode.r.size !== eof) ns.truncateInode(inode, eof)
}

/** Writes buf[0, n), read at file offset `off`, leaving its all-zero blocks as holes. */
function writeData(ns: Namespace, inode: Inode, off: number, buf: Buffer, n: number): void {
  let i = 0
  while (i < n) {
    while (i < n && zeroBlock(buf, i, Math.min(n, i + BLOCK_SIZE))) i += BLOCK_SIZE
    if (i >= n) return
    let j = i + BLOCK_SIZE
    while (j < n && !zeroBlock(buf, j, Math.min(n, j + BLOCK_SIZE))) j += BLOCK_SIZE
    ns.writeInode(inode, off + i, buf.subarray(i, Math.min(j, n)), true)
    i = j
  }
}

const ZEROS = Buffer.alloc(BLOCK_SIZE)

/** True when buf[a, b) (at most a block) is all zeros. */
function zeroBlock(buf: Buffer, a: number, b: number): boolean {
  // Most blocks of data have a non-zero byte among their first eight: no native call for them.
  if (b - a >= 8 && (buf[a] | buf[a + 1] | buf[a + 2] | buf[a + 3] | buf[a + 4] | buf[a + 5] | buf[a + 6] | buf[a + 7]) !== 0) return false
  return buf.compare(ZEROS, 0, b - a, a, b) === 0
}

function* importDirContents(ns: Namespace, d: Dest, hostPath: Buffer, ctx: Ctx): Frame {
  let names: Buffer[] = []
  // An unreadable directory is made all the same (as cp does), empty; the error is recorded.
  guarded(ctx, () => { names = hostNames(ctx.src, hostPath) })
  for (const nb of names) {
    const child = joinHost(hostPath, nb)
    while (!ctx.src.ready(child)) yield
    yield* guardedSteps(ctx, function* () {
      const st = hostStat(ctx.src, child)
      const p = nameProblem(nb)
      if (p) entryFail(p.startsWith('name longer') ? 'ENAMETOOLONG' : 'EINVAL', `cannot copy '${nameText(child)}': ${p}`)
      try {
        yield* importChild(ns, d, nb, child, st, ctx)
      } catch (e) {
        // Whatever this entry alone cannot be (exit 1) is named with it, and the rest goes on.
        throw entryErrorOf(e, nameText(child))
      }
    })
  }
}

/**
 * The names in host directory `hostPath`, as bytes, in byte order: the import's order, and so
 * its inode numbers, depend on nothing else.
 */
function hostNames(src: HostSource, hostPath: Buffer): Buffer[] {
  try {
    return src.names(hostPath)
  } catch (e) {
    throw hostErr(e, `cannot open directory '${nameText(hostPath)}'`)
  }
}

function setDirAttrs(ns: Namespace, d: Inode, st: HostStat): void {
  d.r.mode = S_IFDIR | Number(st.mode & 0o7777n)
  ns.chown(d, Number(st.uid), Number(st.gid))
  ns.setTimes(d, tsOf(st.atimeNs), tsOf(st.mtimeNs))
}

/**
 * The extended attributes of host path `hostPath`, those the image can hold (an attribute in a
 * namespace it has no place for, or one the host will not let this process read, is named as
 * not copied). Null when the host has no attributes there, or none to give (not supported).
 */
function hostXattrs(src: HostSource, hostPath: Buffer, from: string, ctx: Ctx): Xattr[] | null {
  let list: Xattr[]
  try {
    list = src.xattrs(hostPath)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTSUP') return null
    partial(ctx, e, `cannot read the extended attributes of '${from}'`)
    return null
  }
  if (list.length === 0) return null
  return list.filter((x) => {
    const p = xattrNameProblem(x.name)
    if (p) record(ctx, 'ENOTSUP', `attribute ${nameText(x.name)} of '${from}' not copied: ${p}`)
    return !p
  })
}

/** Gives a new inode the host path's attributes (all of them: it has none yet). */
function importXattrs(ns: Namespace, inode: Inode, hostPath: Buffer, from: string, ctx: Ctx): void {
  const list = hostXattrs(ctx.src, hostPath, from, ctx)
  if (!list?.length) return
  try {
    ns.replaceXattrs(inode, list)
  } catch (e) {
    partial(ctx, e, `cannot copy the extended attributes of '${from}'`)
  }
}

/** Gives a directory merged into the host directory's attributes `list` (each set; others it has stay, as cp -a). */
function mergeXattrs(ns: Namespace, d: Inode, list: Xattr[] | null, from: string, ctx: Ctx): void {
  for (const x of list ?? []) {
    try {
      ns.setXattrOf(d, x.name, x.value)
    } catch (e) {
      partial(ctx, e, `cannot copy attribute ${nameText(x.name)} of '${from}'`)
    }
  }
}

// ---------------------------------------------------------------- image -> host

/** A name of a descriptor's stream: under /dev (stdout, stderr, fd/N), or /proc/(self|PID)/fd/N. */
function isStreamName(p: string): boolean {
  return p.startsWith('/dev/') || /^\/proc\/(?:self|thread-self|\d+)(?:\/task\/\d+)?\/fd\/\d+$/.test(p)
}

function exportPath(ns: Namespace, imgPath: string, hostPath: Buffer, ctx: Ctx): void {
  let inode: Inode
  try {
    inode = ns.resolve(imgPath, false)
  } catch (e) {
    if (e instanceof PrismError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) entryFail(e.code, e.message)
    throw e
  }
  if (inode.isDir && !ctx.opts.recursive) entryFail('EISDIR', `-r not specified; omitting directory '${ns.where(imgPath)}'`)
  // A symlink at the destination is replaced, never written through (it may lead to a file
  // the user did not name), except the streams /dev and /proc name (/dev/stdout, /dev/fd/N,
  // /proc/self/fd/N): a file is written into what they lead to, from its start, as cp does.
  if (inode.isReg && isStreamName(path.resolve(nameText(hostPath))) && hostLstat(hostPath)?.isSymbolicLink()) {
    let st: fs.BigIntStats
    try {
      st = fs.statSync(hostPath, {bigint: true})
    } catch (e) {
      throw hostErr(e, `cannot write '${nameText(hostPath)}'`)
    }
    if (ns.vol.isImageFile(st)) entryFail('EINVAL', `cannot overwrite '${nameText(hostPath)}': it is the image itself`)
    if (!st.isDirectory()) {
      try {
        // /dev/stdout may be a socket, which cannot be opened: the descriptor it names is used
        const own = [1, 2].find((fd) => {
          try {
            const o = fs.fstatSync(fd, {bigint: true})
            return o.dev === st.dev && o.ino === st.ino
          } catch {
            return false
          }
        })
        writeInto(ns, inode, own ?? hostPath, ctx, st.isFile())
      } catch (e) {
        throw hostErr(e, `cannot write '${nameText(hostPath)}'`)
      }
      return
    }
  }
  // Modes are given at creation; with no umask they need no second fchmod.
  const umask = process.umask(0)
  let failed = true
  try {
    // A tree's files are written in the order their data sits in the image (flushExport).
    if (inode.isDir) ctx.deferred = {files: [], after: []}
    exportNow(ns, inode, ns.where(imgPath), hostPath, ctx, false)
    flushExport(ns, ctx)
    failed = false
  } finally {
    ctx.deferred = null
    process.umask(umask)
    const w = ctx.writer
    ctx.writer = null
    // Every file handed to the writer is written and closed before the export returns; its
    // first error is the export's, unless the export failed by itself first.
    if (w) {
      try {
        w.close(writerErr)
      } catch (e) {
        if (!failed) throw e
      }
    }
  }
}

/** Files an export of a tree gathers before it writes them in the order of their data. */
const EXPORT_BATCH = 16384

/**
 * Writes the files an export of a tree has gathered, in the order their data sits in the
 * image, then finishes the directories done with (owner, mode, attributes, times: after
 * their files, as before). A tree read in name order reads a clone's files rewritten in
 * different rounds with a seek between most two of them; in this order it is one sweep of
 * the image (FORMAT.md §6.6 "Reading").
 */
function flushExport(ns: Namespace, ctx: Ctx): void {
  const d = ctx.deferred
  if (!d) return
  const files = d.files.sort((a, b) => a.at - b.at)
  d.files = []
  for (const f of files) guardedExport(ctx, f.from, () => exportNow(ns, f.inode, f.from, f.hostPath, ctx, f.fresh))
  const after = d.after
  d.after = []
  for (const fn of after) fn()
}

/**
 * Files and bytes written by this thread before an export hands files to a HostWriter:
 * starting its thread costs a few tens of milliseconds, more than a small export takes.
 */
const WRITER_AFTER_FILES = 256
const WRITER_AFTER_BYTES = 16 * 1024 * 1024

const isRoot = process.getuid?.() === 0

/**
 * Writes one node (`from` names it in the image) and, for a directory, its subtree. `fresh`
 * says the parent directory was made by this export, so nothing can stand at hostPath yet and
 * the lstat is skipped; if something does (a damaged image naming an entry twice), the
 * careful path runs instead. What cannot be written is the entry's failure (EntryError);
 * the export goes on with the rest. A frame (src/frames.ts): a directory's subdirectories are
 * nested frames, run by run() off the JavaScript stack; it never yields a step.
 */
function* exportNode(ns: Namespace, inode: Inode, from: string, hostPath: Buffer, ctx: Ctx, fresh: boolean): Frame {
  const r = inode.r
  const mtime: Timestamp = {s: r.mtimeS, ns: r.mtimeNs}
  const atime: Timestamp = {s: r.atimeS, ns: r.atimeNs}
  const where = nameText(hostPath)
  const existing = fresh ? null : hostLstat(hostPath)
  if (existing && ns.vol.isImageFile(existing)) entryFail('EINVAL', `cannot overwrite '${where}': it is the image itself`)
  const retryCarefully = (e: unknown): boolean => fresh && (e as NodeJS.ErrnoException).code === 'EEXIST'
  const notOverDir = () => entryFail('EISDIR', `cannot overwrite directory '${where}' with non-directory '${from}'`)
  try {
    if (inode.isDir) {
      const overNonDir = () => entryFail('ENOTDIR', `cannot overwrite non-directory '${where}' with directory '${from}'`)
      if (existing && !existing.isDirectory()) overNonDir()
      if (!existing) {
        try {
          fs.mkdirSync(hostPath, {mode: 0o700})
        } catch (e) {
          if (retryCarefully(e)) return yield* exportNode(ns, inode, from, hostPath, ctx, false)
          throw e
        }
      } else if (!fs.lstatSync(hostPath).isDirectory()) {
        // Re-check: what we enter must be a real directory, never a symlink.
        overNonDir()
      }
      ctx.stats.dirs++
      enterDir(ctx.ancestors, inode.ino, where)
      // A directory whose blocks are damaged is made, with its attributes, and named: none of
      // its entries can be listed (prism fsck --repair recovers what they named).
      let entries: ReturnType<typeof dirList> = []
      try {
        entries = dirListByInode(ns.vol, inode)
      } catch (e) {
        const err = unreadable(e, from)
        if (!(err instanceof EntryError)) throw err
        record(ctx, err.code, err.message)
        ctx.stats.skipped++
      }
      for (const e of entries) {
        const childFrom = `${from.endsWith('/') ? from : from + '/'}${nameText(e.name)}`
        // (a subdirectory is exported as a frame of its own, below: the rest here, at once)
        let sub: Inode | null = null
        guardedExport(ctx, childFrom, () => {
          const p = nameProblem(e.name)
          if (p) entryFail('EINVAL', `${where}: skipped an entry with an unsafe name (${p})`)
          const child = ns.vol.iget(e.ino)
          const d = ctx.deferred
          if (d && child.isReg) {
            d.files.push({inode: child, from: childFrom, hostPath: joinHost(hostPath, e.name), fresh: !existing, at: firstBlock(ns.vol, child)})
            if (d.files.length >= EXPORT_BATCH) flushExport(ns, ctx)
          } else if (child.isDir) {
            sub = child
          } else {
            exportNow(ns, child, childFrom, joinHost(hostPath, e.name), ctx, !existing)
          }
        })
        const dir: Inode | null = sub
        if (dir) yield* guardedExportSteps(ctx, childFrom, () => exportNode(ns, dir, childFrom, joinHost(hostPath, e.name), ctx, !existing))
      }
      ctx.ancestors.delete(inode.ino)
      const finish = () => {
        // Owner before mode, as cp does: chown(2) clears the set-id bits; attributes after both
        // (a chown drops a file capability; an ACL and the mode's group bits agree as given).
        // (The record is taken again: a deferred finish may run after other work.)
        const d = inode.r
        if (isRoot) fs.lchownSync(hostPath, d.uid, d.gid)
        fs.chmodSync(hostPath, d.mode & 0o7777)
        exportXattrs(ns, inode, hostPath, ctx)
        setHostTimes(hostPath, atime, mtime, false)
      }
      // With the tree's files deferred, after they are written (in flushExport).
      if (ctx.deferred) {
        ctx.deferred.after.push(() => guarded(ctx, () => {
          try {
            finish()
          } catch (e) {
            throw hostErr(e, `cannot write '${where}'`)
          }
        }))
      } else {
        finish()
      }
      return
    }
    if (existing?.isDirectory()) notOverDir()
    if (inode.isLnk) {
      const target = nameBytes(ns.readlinkInode(inode)) // (before anything of the host's goes: it may fail)
      if (existing) fs.unlinkSync(hostPath)
      // A symlink with several names: the later ones are links to the first (link(2) does not follow it).
      const prevLink = r.nlink > 1 ? ctx.links.get(inode.ino) : undefined
      if (Buffer.isBuffer(prevLink)) {
        fs.linkSync(prevLink, hostPath)
        ctx.stats.hardlinks++
        return
      }
      try {
        fs.symlinkSync(target, hostPath)
      } catch (e) {
        if (retryCarefully(e)) return yield* exportNode(ns, inode, from, hostPath, ctx, false)
        throw e
      }
      if (isRoot) fs.lchownSync(hostPath, r.uid, r.gid)
      exportXattrs(ns, inode, hostPath, ctx)
      setHostTimes(hostPath, atime, mtime, true)
      if (r.nlink > 1) ctx.links.set(inode.ino, hostPath)
      ctx.stats.symlinks++
      return
    }
    if (inode.isSpecial) {
      const prevNode = r.nlink > 1 ? ctx.links.get(inode.ino) : undefined
      if (existing) fs.unlinkSync(hostPath)
      if (Buffer.isBuffer(prevNode)) {
        fs.linkSync(prevNode, hostPath)
        ctx.stats.hardlinks++
        return
      }
      const {major, minor} = decodeRdev(r.area)
      try {
        makeHostNode(hostPath, r.mode & (S_IFMT | 0o777), major, minor)
      } catch (e) {
        if (retryCarefully(e)) return yield* exportNode(ns, inode, from, hostPath, ctx, false)
        // A device node only root may make, say: named, and the export goes on (as tar -x).
        throw hostErr(e, `cannot create ${inode.type === 'chardev' ? 'character special file' : inode.type === 'blockdev' ? 'block special file' : inode.type} '${where}'`)
      }
      if (isRoot) fs.lchownSync(hostPath, r.uid, r.gid)
      if (r.mode & 0o7000) fs.chmodSync(hostPath, r.mode & 0o7777)
      exportXattrs(ns, inode, hostPath, ctx)
      setHostTimes(hostPath, atime, mtime, true)
      if (r.nlink > 1) ctx.links.set(inode.ino, hostPath)
      ctx.stats.specials++
      return
    }
    if (existing && !existing.isFile() && !existing.isSymbolicLink()) {
      writeInto(ns, inode, hostPath, ctx)
      return
    }
    const prev = r.nlink > 1 ? ctx.links.get(inode.ino) : undefined
    if (Buffer.isBuffer(prev)) {
      if (existing) fs.unlinkSync(hostPath)
      fs.linkSync(prev, hostPath)
      ctx.stats.hardlinks++
      return
    }
    if (existing) {
      // Its extent map is read first: a damaged one fails the entry with the host's file
      // still in place (the data itself is read as it is written).
      loadExtents(ns.vol, inode)
      fs.unlinkSync(hostPath) // never write through an existing name (it may be a symlink)
    }
    let fd: number
    try {
      fd = fs.openSync(hostPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, r.mode & 0o777)
    } catch (e) {
      if (retryCarefully(e)) return yield* exportNode(ns, inode, from, hostPath, ctx, false)
      throw e
    }
    try {
      writeExported(ns, inode, fd, hostPath, ctx)
    } catch (e) {
      // A file that could not be read whole is not left behind in part.
      if (isDamage(e)) fs.rmSync(hostPath, {force: true})
      throw e
    }
  } catch (e) {
    throw hostErr(e, `cannot write '${where}'`)
  }
}

/** exportNode() of anything, to its end, now (a non-directory nests no frame: it is run without run()). */
function exportNow(ns: Namespace, inode: Inode, from: string, hostPath: Buffer, ctx: Ctx, fresh: boolean): void {
  if (inode.isDir) {
    runNow(exportNode(ns, inode, from, hostPath, ctx, fresh))
    return
  }
  const r = exportNode(ns, inode, from, hostPath, ctx, fresh).next()
  if (!r.done) throw new Error('exportNode of a non-directory nested a frame')
}

/** exportNode() of a regular file, opened (created) as `fd` at `hostPath`: its data, attributes and link. */
function writeExported(ns: Namespace, inode: Inode, fd: number, hostPath: Buffer, ctx: Ctx): void {
  const r = inode.r
  const mtime: Timestamp = {s: r.mtimeS, ns: r.mtimeNs}
  const atime: Timestamp = {s: r.atimeS, ns: r.atimeNs}
  const where = nameText(hostPath)
  if (!ctx.writer && (ctx.stats.files >= WRITER_AFTER_FILES || ctx.stats.bytes >= WRITER_AFTER_BYTES)) ctx.writer = new HostWriter()
  // A file with attributes is written here, not by the writer thread: they are set after its
  // data, owner and mode (a write or a chown drops a file capability), by path.
  const xattrs = r.xattrIno !== 0
  const w = xattrs ? null : ctx.writer
  // Only mapped runs are written, and the size set at the end: holes stay holes, as
  // cp --sparse=auto does.
  let end = 0
  const wrote = (off: number, buf: Buffer) => { ctx.stats.bytes += buf.length; end = off + buf.length }
  const attrs = (): FileAttrs => ({
    truncate: end < r.size ? r.size : -1, mode: r.mode & 0o7000 ? r.mode & 0o7777 : -1,
    uid: isRoot ? r.uid : -1, gid: r.gid, atime, mtime,
  })
  if (w) {
    // The writer thread writes, sets the attributes and closes fd from here on.
    try {
      w.check(writerErr)
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
    if (xattrs) exportXattrs(ns, inode, hostPath, ctx)
  }
  if (r.nlink > 1) ctx.links.set(inode.ino, hostPath)
  ctx.stats.files++
  progress(ctx)
}

/**
 * A file copied onto an existing device, FIFO or socket (or through /dev/stdout): as cp does,
 * its content is written into it, in order (holes as zeros), and the node itself (type, owner,
 * mode, times) is left as it is: `prism cp root:/f /dev/null` must never replace /dev/null. A
 * socket cannot be opened (ENXIO), and says so.
 */
function writeInto(ns: Namespace, inode: Inode, to: Buffer | number, ctx: Ctx, truncate = false): void {
  // (this process's own stdout or stderr is written where it stands, as cat writes it)
  // (a pipe there is reopened to block, and grown, as cat's output is: src/sys.ts outputFd)
  const fd = typeof to === 'number' ? outputFd(to) : openOutput(to, truncate ? fs.constants.O_TRUNC : 0) // (a FIFO: waits for its reader, Ctrl-C heard)
  try {
    if (typeof to !== 'number') growPipe(fd) // (outputFd grew its own)
    const size = inode.r.size
    for (let off = 0; off < size;) {
      checkInterrupt()
      const buf = readData(ns.vol, inode, off, Math.min(DATA_BUFFER_SIZE, size - off))
      if (!writeAll(fd, buf)) throw Object.assign(new Error('Broken pipe'), {code: 'EPIPE', errno: -32, syscall: 'write'})
      off += buf.length
      ctx.stats.bytes += buf.length
    }
  } finally {
    if (fd !== to) fs.closeSync(fd)
  }
  ctx.stats.files++
  progress(ctx)
}

// ---------------------------------------------------------------- image -> image

/**
 * Sets an exported entry's extended attributes on the host. What the host refuses (trusted.*
 * and security.* to a process without CAP_SYS_ADMIN, any attribute on a file system without
 * them, user.* on a symlink) is named, and the export goes on.
 */
function exportXattrs(ns: Namespace, inode: Inode, hostPath: Buffer, ctx: Ctx): void {
  if (inode.r.xattrIno === 0) return
  for (const x of listXattrs(ns.vol, inode)) {
    try {
      writeHostXattr(hostPath, x)
    } catch (e) {
      partial(ctx, e, `cannot set attribute ${nameText(x.name)} of '${nameText(hostPath)}'`)
    }
  }
}

function* copyInImage(src: Namespace, srcPath: string, dst: Namespace, dstPath: string, ctx: Ctx): Frame {
  let inode: Inode
  try {
    inode = src.resolve(srcPath, false)
  } catch (e) {
    if (e instanceof PrismError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) entryFail(e.code, e.message)
    throw e
  }
  const from = src.where(srcPath)
  if (inode.isDir && !ctx.opts.recursive) entryFail('EISDIR', `-r not specified; omitting directory '${from}'`)
  const sameFs = src.fs.id === dst.fs.id
  ctx.sameFs = sameFs
  if (splitPath(dstPath).length === 0) {
    if (!inode.isDir) entryFail('EISDIR', `${dst.where('/')}: is the fileset's root`)
    const d = existingDest(dst, '/')
    if (sameFs && inode.ino === d.dir.ino) entryFail('EINVAL', `'${from}' and '${dst.where('/')}' are the same file`)
    yield* copyChildren(src, inode, srcPath, from, dst, d, ctx)
    return
  }
  const {dir, name, chain} = dst.resolveParent(dstPath, inode.isDir ? 'dir' : 'other')
  if (inode.isDir && sameFs && chain.some((d) => d.ino === inode.ino)) entryFail('EINVAL', `cannot copy a directory, '${from}', into itself, '${dst.where(dstPath)}'`)
  yield* copyNode(src, inode, srcPath, from, dst, {dir, path: parentOf(dstPath), fresh: false}, name, ctx, ctx.opts.replaceEmptyDir)
}

/**
 * Copies the entries of source directory `inode` (at `srcPath`, named `from`) into `d`, one
 * step each. Between steps a server may answer its mounts (CopyOptions.changes): when they
 * changed the image meanwhile, each entry is looked up again before it is copied, and one
 * that has gone is named as vanished (as cp names a file removed under it), the rest copied.
 */
function* copyChildren(src: Namespace, inode: Inode, srcPath: string, from: string, dst: Namespace, d: Dest, ctx: Ctx): Frame {
  const changes = ctx.opts.changes
  let seen = changes?.() ?? 0
  let dir: Inode | null = inode
  enterDir(ctx.ancestors, inode.ino, from)
  ctx.opts.visited?.add(inode.ino)
  for (const e of dirListByInode(src.vol, inode)) {
    const childPath = joinImage(srcPath, nameText(e.name))
    const childFrom = joinImage(from, nameText(e.name))
    if (changes && changes() !== seen) {
      seen = changes()
      dir = src.dirIfStill(srcPath, inode.ino)
    }
    if (dir !== inode && (dir === null || src.lookupEntry(dir, e.name)?.ino !== e.ino)) {
      record(ctx, 'ENOENT', `cannot stat '${childFrom}': No such file or directory`)
      ctx.stats.skipped++
      continue
    }
    yield* guardedSteps(ctx, () => copyNode(src, src.vol.iget(e.ino), childPath, childFrom, dst, d, e.name, ctx))
  }
  ctx.ancestors.delete(inode.ino)
}


/** Copies image node `inode` (at `srcPath`, `from` names it) as entry `name` of destination `d`, sharing its blocks; yields after each entry. */
function* copyNode(src: Namespace, inode: Inode, srcPath: string, from: string, dst: Namespace, d: Dest, name: Buffer, ctx: Ctx, replaceEmptyDir = false): Frame {
  const r = inode.r
  const attrs = {uid: r.uid, gid: r.gid}
  const childPath = joinImage(d.path, nameText(name))
  const atime = {s: r.atimeS, ns: r.atimeNs}
  const mtime = {s: r.mtimeS, ns: r.mtimeNs}
  if (inode.isDir) {
    const s = slot(dst, ctx, d, name, true, from, inode.ino, replaceEmptyDir)
    if (!s) return
    let sub: Dest
    if ('merge' in s) {
      sub = s.merge
      ctx.stage!.onPublish(sub.dir, sub.path, (x) => dst.setTimes(x, atime, mtime))
    } else {
      sub = {dir: dst.createIn(s.parent, name, r.mode, attrs), path: childPath, fresh: true}
      shareXattrs(dst.vol, inode, sub.dir)
    }
    ctx.stats.dirs++
    yield
    yield* call(copyChildren(src, inode, srcPath, from, dst, sub, ctx))
    if (sub.fresh) dst.setTimes(sub.dir, atime, mtime)
    dst.vol.maybeCommit()
    return
  }
  ctx.opts.visited?.add(inode.ino)
  const s = slot(dst, ctx, d, name, false, from, inode.ino) as {parent: Inode} | null
  if (!s) return
  const prev = r.nlink > 1 ? ctx.links.get(inode.ino) : undefined
  if (prev && !Buffer.isBuffer(prev)) {
    dst.linkInode(prev, s.parent, name)
    ctx.stats.hardlinks++
    dst.vol.maybeCommit()
    yield
    return
  }
  // A special file's copy takes its device number with its area (shareData copies it).
  const copy = inode.isSpecial ? dst.createSpecialIn(s.parent, name, r.mode, decodeRdev(r.area), attrs) : dst.createIn(s.parent, name, r.mode, attrs)
  if (!inode.isSpecial) shareData(dst.vol, inode, copy)
  shareXattrs(dst.vol, inode, copy)
  copy.r.dataVersion++
  dst.setTimes(copy, atime, mtime)
  if (r.nlink > 1) ctx.links.set(inode.ino, copy)
  if (inode.isLnk) ctx.stats.symlinks++
  else if (inode.isSpecial) ctx.stats.specials++
  else ctx.stats.files++
  ctx.stats.bytes += r.size
  progress(ctx)
  dst.vol.maybeCommit()
  yield
}
