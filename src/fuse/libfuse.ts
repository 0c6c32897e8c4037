// The libfuse3 binding behind src/fuse/types.ts: loads the native addon (native/fuse, built
// only where libfuse3's development files are installed), says clearly why when it cannot,
// mounts, and turns the addon's requests into FuseOps calls and their results into replies.
// It must never: leave a request unanswered or answer one twice (every handler outcome,
// including a throw, a rejection and a reply that fails, ends in exactly one reply); block the
// main thread on the kernel (mount, unmount and cache notifications run on native threads);
// or touch the mount it serves.
import {execFile} from 'node:child_process'
import fs from 'node:fs'
import {createRequire} from 'node:module'
import {constants} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {fuseMountAt, lazyUnmount, listMounts} from './mounts.js'
import {
  type FileLock,
  type Attr, type ConnInfo, type CreateReply, type DirEntry, type DirEntryPlus, type Entry, type FuseContext, FuseError, type FuseOps,
  type FuseSession, type MountOptions, type OpenReply, type SetAttr, type StatFs,
} from './types.js'

const E = constants.errno
const isSlash = (name: Buffer): boolean => name.length === 1 && name[0] === 0x2f
const ERRNO: Record<string, number> = E as unknown as Record<string, number>

type Req = {readonly __req: unique symbol}
type Handle = {readonly __mnt: unique symbol}

interface Addon {
  OPS: Record<string, number>
  libfuseVersion: string
  mount(mountpoint: string, options: string, config: object, implemented: number[], dispatch: (op: number, req: Req | undefined, uid: number, gid: number, pid: number, umask: number, ...a: unknown[]) => void): Promise<Handle>
  umount(path: string, lazy: boolean): Promise<number>
  notify(h: Handle, kind: number, id: number, a: number, b: number, off: number, len: number, name?: Buffer): boolean
  setScratch(s: Float64Array): void
  replyErr(r: Req, errno: number): number
  replyEntry(r: Req): number
  replyCreate(r: Req, fh: number, flags: number): number
  replyAttr(r: Req, timeout: number): number
  replyOpen(r: Req, fh: number, flags: number): number
  replyBuf(r: Req, b: Buffer): number
  replyReadlink(r: Req, b: Buffer): number
  replyWrite(r: Req, n: number): number
  replyXattr(r: Req, n: number): number
  replyLseek(r: Req, n: number): number
  replyStatfs(r: Req): number
  replyIoctl(r: Req, result: number, data?: Buffer): number
  replyLock(r: Req, type: number, start: number, end: number, pid: number): number
  dirAdd(r: Req, name: Buffer): boolean
  dirReply(r: Req): number
  groups(r: Req): number[]
  /** 1: node `ino` has no security.capability (answered ENODATA on the loop thread from now on); 0: forget `ino`; 2: forget all */
  capCache(h: Handle, op: 0 | 1 | 2, ino: number): void
  /** requests of every mount waiting for the main thread */
  queued(): number
}

/** The attribute the kernel asks for before every write(2), to drop file capabilities. */
const CAPABILITY = Buffer.from('security.capability')

/** The package's root: the nearest directory above this module (dist/fuse/, or dist/ in a bundle) holding a package.json. */
const ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir)
  return dir
})()
/** Where `npm ci` / `npm run build:fuse` put the addon (scripts/build-fuse.mjs). */
export const ADDON_PATH = path.join(ROOT, 'native', 'fuse', 'build', 'Release', 'prism_fuse.node')
/** Written by the build script beside build/Release when it could not build the addon: the reason, one line. */
const unavailableNote = (addonPath: string): string => path.join(path.dirname(path.dirname(addonPath)), 'unavailable.txt')

export type Availability = {available: true, libfuseVersion: string, addonPath: string} | {available: false, reason: string}

const loaded = new Map<string, {addon?: Addon, reason?: string}>()

function load(addonPath: string): {addon?: Addon, reason?: string} {
  let r = loaded.get(addonPath)
  if (r) return r
  if (!fs.existsSync(addonPath)) {
    let why = ''
    try {
      why = fs.readFileSync(unavailableNote(addonPath), 'utf8').trim()
    } catch {
      // no note: never built
    }
    r = {reason: why
      ? `the FUSE binding was not built: ${why}`
      : `the FUSE binding is not built (${addonPath} is missing): install libfuse3-dev and pkg-config, then run npm run build:fuse`}
  } else {
    try {
      r = {addon: createRequire(import.meta.url)(addonPath) as Addon}
    } catch (e) {
      r = {reason: `the FUSE binding ${addonPath} does not load: ${(e as Error).message.split('\n')[0]} (is libfuse3 installed?)`}
    }
  }
  loaded.set(addonPath, r)
  return r
}

/**
 * Whether FUSE mounts can be served here: the addon is built and loads, and /dev/fuse exists.
 * `addonPath` points elsewhere for tests.
 */
export function fuseAvailability(addonPath: string = ADDON_PATH): Availability {
  const r = load(addonPath)
  if (!r.addon) return {available: false, reason: r.reason!}
  if (!fs.existsSync('/dev/fuse')) {
    return {available: false, reason: '/dev/fuse is missing (no FUSE in this kernel or container; a container needs --device /dev/fuse and CAP_SYS_ADMIN)'}
  }
  return {available: true, libfuseVersion: r.addon.libfuseVersion, addonPath}
}

/** FUSE cannot be used here; the message says why. */
export class FuseUnavailableError extends Error {
  readonly code = 'EFUSEUNAVAILABLE'
  constructor(reason: string) {
    super(reason)
    this.name = 'FuseUnavailableError'
  }
}

// The scratch array the addon reads attributes, entries and statfs answers from (see SC_* in
// native/fuse/prism_fuse.c): one per loaded addon, filled right before each reply call.
const S = new Float64Array(24)
const SC = {
  INO: 0, MODE: 1, NLINK: 2, UID: 3, GID: 4, RDEV: 5, SIZE: 6, BLOCKS: 7, BLKSIZE: 8,
  ATIME: 9, ATIME_NS: 10, MTIME: 11, MTIME_NS: 12, CTIME: 13, CTIME_NS: 14,
  NODEID: 15, GENERATION: 16, ATTR_TIMEOUT: 17, ENTRY_TIMEOUT: 18, DIR_OFF: 19,
}
const scratchSet = new WeakSet<Addon>()

function putAttr(a: Attr): void {
  S[SC.INO] = a.ino
  S[SC.MODE] = a.mode
  S[SC.NLINK] = a.nlink
  S[SC.UID] = a.uid
  S[SC.GID] = a.gid
  S[SC.RDEV] = a.rdev
  S[SC.SIZE] = a.size
  S[SC.BLOCKS] = a.blocks
  S[SC.BLKSIZE] = a.blksize ?? 0
  S[SC.ATIME] = a.atime.sec
  S[SC.ATIME_NS] = a.atime.nsec
  S[SC.MTIME] = a.mtime.sec
  S[SC.MTIME_NS] = a.mtime.nsec
  S[SC.CTIME] = a.ctime.sec
  S[SC.CTIME_NS] = a.ctime.nsec
}

function putEntry(e: Entry): void {
  S[SC.NODEID] = e.ino
  S[SC.GENERATION] = e.generation ?? 0
  S[SC.ATTR_TIMEOUT] = e.attrTimeout
  S[SC.ENTRY_TIMEOUT] = e.entryTimeout
  if (e.attr) putAttr(e.attr)
  else if (e.ino !== 0) throw new RangeError('an entry with a node id needs attr')
}

function putStatfs(s: StatFs): void {
  const v = [s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.fsid, s.flag, s.namemax]
  for (let i = 0; i < v.length; i++) S[i] = v[i]!
}

function openFlags(o: OpenReply): number {
  return (o.directIo ? 1 : 0) | (o.keepCache ? 2 : 0) | (o.nonseekable ? 4 : 0) | (o.cacheReaddir ? 8 : 0) | (o.noflush ? 16 : 0)
}

const DOT = Buffer.from('.')
const DOTDOT = Buffer.from('..')
const isDot = (name: Buffer): boolean => name.equals(DOT) || name.equals(DOTDOT)

/** The errno a handler's failure stands for, or undefined when it is not one (a bug: EIO). */
/**
 * The requests of this process's mounts waiting for its main thread (0 before any mount):
 * work the server runs in slices ends its slice when one waits (src/server/copyin.ts).
 */
export function requestsWaiting(): number {
  return loaded.get(ADDON_PATH)?.addon?.queued() ?? 0
}

export function errnoOf(e: unknown): number | undefined {
  if (e === null || typeof e !== 'object') return undefined
  const x = e as {errno?: unknown, code?: unknown}
  if (typeof x.code === 'string' && ERRNO[x.code] !== undefined) return ERRNO[x.code]
  if (typeof x.errno === 'number' && Number.isInteger(x.errno) && x.errno !== 0 && Math.abs(x.errno) < 4096) return Math.abs(x.errno)
  return undefined
}

function isThenable<T>(v: T | Promise<T>): v is Promise<T> {
  return v !== null && typeof v === 'object' && typeof (v as {then?: unknown}).then === 'function'
}

class Ctx implements FuseContext {
  constructor(private readonly addon: Addon, private readonly req: Req | undefined,
    readonly uid: number, readonly gid: number, readonly pid: number, readonly umask: number) {}

  groups(): number[] {
    if (this.req === undefined) return []
    try {
      return this.addon.groups(this.req)
    } catch {
      return [] // answered already: the handle no longer names a live request
    }
  }
}

const CAP = {
  ATOMIC_O_TRUNC: 1 << 3, EXPORT_SUPPORT: 1 << 4, DONT_MASK: 1 << 6, READDIRPLUS: 1 << 13,
  WRITEBACK_CACHE: 1 << 16, POSIX_ACL: 1 << 19, HANDLE_KILLPRIV: 1 << 20,
}

type Op = (req: Req, ctx: Ctx, a: unknown[]) => void

function escapeOption(s: string): string {
  return s.replace(/[\\,]/g, (c) => '\\' + c)
}

function optionString(o: MountOptions): string {
  const fsname = o.fsname ?? 'prism'
  const subtype = o.subtype ?? 'prism'
  if (!/^[A-Za-z0-9_.+-]{1,64}$/.test(subtype)) throw new RangeError(`bad FUSE subtype ${JSON.stringify(subtype)}: letters, digits and _ . + - only`)
  if (fsname.length === 0 || fsname.length > 1024 || /[\0\n]/.test(fsname)) throw new RangeError('bad FUSE fsname')
  const opts = ['default_permissions', `fsname=${escapeOption(fsname)}`, `subtype=${subtype}`,
    o.readOnly ? 'ro' : 'rw', o.suid ? 'suid' : 'nosuid', o.dev ? 'dev' : 'nodev']
  if (o.allowOther) opts.push('allow_other')
  if (o.maxRead) opts.push(`max_read=${o.maxRead}`)
  return opts.join(',')
}

function checkSize(name: string, v: number | undefined, min: number, max: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new RangeError(`${name} must be an integer from ${min} to ${max}`)
}

/** Live sessions: kept reachable until they end, whatever the caller keeps. */
const live = new Set<LibfuseSession>()

class LibfuseSession implements FuseSession {
  readonly mountpoint: string
  device: string | undefined
  conn!: ConnInfo
  readonly closed: Promise<void>
  private handle: Handle | undefined
  private ended = false
  private resolveClosed!: () => void
  private ready: {resolve: () => void, reject: (e: Error) => void} | undefined
  private readonly notes = new Map<number, {resolve: (v: boolean) => void, reject: (e: Error) => void}>()
  private nextNote = 1
  private readonly table: (Op | undefined)[] = []
  private readonly report: (op: string, e: unknown) => void

  constructor(private readonly addon: Addon, mountpoint: string, private readonly ops: FuseOps, private readonly options: MountOptions) {
    this.mountpoint = mountpoint
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve
    })
    this.report = options.onError ?? ((op, e) => {
      process.stderr.write(`prism: fuse ${op} on ${this.mountpoint} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    })
    this.buildTable()
  }

  async start(): Promise<void> {
    const o = this.options
    checkSize('maxWrite', o.maxWrite, 4096, 1 << 20)
    checkSize('maxRead', o.maxRead, 4096, 1 << 20)
    checkSize('maxReadahead', o.maxReadahead, 0, 1 << 30)
    checkSize('maxBackground', o.maxBackground, 1, 65535)
    const config = {
      maxWrite: o.maxWrite ?? 1 << 20, maxRead: o.maxRead ?? 0, maxReadahead: o.maxReadahead ?? 0,
      maxBackground: o.maxBackground ?? 64, congestionThreshold: 0,
      writebackCache: Boolean(o.writebackCache), posixAcl: Boolean(o.posixAcl), exportSupport: Boolean(o.exportSupport),
      dontMask: Boolean(o.dontMask), cacheSymlinks: Boolean(o.cacheSymlinks), handleKillpriv: Boolean(o.handleKillpriv),
      readdirplusAuto: Boolean(o.readdirplusAuto), debug: Boolean(o.debug),
    }
    const implemented = Object.entries(this.addon.OPS)
      .filter(([name]) => typeof (this.ops as Record<string, unknown>)[name] === 'function')
      .map(([, code]) => code)
    const ready = new Promise<void>((resolve, reject) => {
      this.ready = {resolve, reject}
    })
    live.add(this)
    try {
      this.handle = await this.addon.mount(this.mountpoint, optionString(o), config, implemented, this.dispatch)
    } catch (e) {
      live.delete(this)
      const msg = (e as Error).message.replace(/^fuse: /, '')
      throw Object.assign(new Error(`cannot mount FUSE on ${this.mountpoint}: ${msg}`), {code: 'EFUSEMOUNT'})
    }
    await ready
    this.device = fuseMountAt(this.mountpoint)?.device
  }

  // Called by the addon on the main thread for each request and event.
  private readonly dispatch = (op: number, req: Req | undefined, uid: number, gid: number, pid: number, umask: number, ...a: unknown[]): void => {
    const f = this.table[op]
    if (f === undefined) {
      if (req !== undefined) this.addon.replyErr(req, E.ENOSYS)
      return
    }
    f(req as Req, new Ctx(this.addon, req, uid, gid, pid, umask), a)
  }

  /** Runs a handler and answers its outcome exactly once. */
  private run<T>(req: Req, op: string, call: () => T | Promise<T>, reply: (v: T) => void): void {
    let v: T | Promise<T>
    try {
      v = call()
    } catch (e) {
      this.fail(req, op, e)
      return
    }
    if (isThenable(v)) {
      v.then((x) => this.finish(req, op, reply, x), (e: unknown) => this.fail(req, op, e))
      return
    }
    this.answeringAtOnce = true
    try {
      this.finish(req, op, reply, v)
    } finally {
      this.answeringAtOnce = false
    }
  }

  /** Set while a handler's answer is sent in the same call (nothing can have happened between). */
  private answeringAtOnce = false

  private finish<T>(req: Req, op: string, reply: (v: T) => void, v: T): void {
    try {
      reply(v)
    } catch (e) {
      this.fail(req, op, e)
    }
  }

  private fail(req: Req, op: string, e: unknown): void {
    let errno = errnoOf(e)
    if (errno === undefined) {
      errno = E.EIO
      this.report(op, e)
    }
    try {
      this.addon.replyErr(req, errno)
    } catch (e2) {
      this.report(op, e2) // answered already: the failure came after the reply
    }
  }

  /** The addon's cache of nodes without security.capability (prism_fuse.c NOCAP_SLOTS). */
  private capCache(op: 0 | 1 | 2, ino: number): void {
    if (this.ended || this.handle === undefined) return
    this.addon.capCache(this.handle, op, ino)
  }

  /**
   * An entry the filesystem says has no security.capability: the loop thread answers that
   * getxattr from now on. Recorded before the reply, so the kernel's first write already finds
   * it; a reply the kernel does not take forgets the node, and with it this. Only an answer
   * given at once: one that waited may have raced with a setxattr or forgetAnswers.
   */
  private noCapability(e: Entry): void {
    if (e.noCapability && e.ino !== 0 && this.answeringAtOnce) this.capCache(1, e.ino)
  }

  forgetAnswers(): void {
    this.capCache(2, 0)
  }

  private forget(ino: number, n = 1): void {
    this.capCache(0, ino)
    if (ino === 0 || !this.ops.forget) return
    try {
      this.ops.forget(ino, n)
    } catch (e) {
      this.report('forget', e)
    }
  }

  /** An entry reply the kernel did not take: its lookup did not count. */
  private entrySent(e: Entry, res: number): void {
    if (res !== 0) this.forget(e.ino)
  }

  private buildTable(): void {
    const ops = this.ops
    const A = this.addon
    const OPS = A.OPS
    const set = (name: string, f: Op): void => {
      this.table[OPS[name]!] = f
    }
    const entry = (req: Req) => (e: Entry): void => {
      putEntry(e)
      this.noCapability(e)
      this.entrySent(e, A.replyEntry(req))
    }
    const ok = (req: Req) => (): void => {
      A.replyErr(req, 0)
    }
    const attr = (req: Req) => (r: {attr: Attr, timeout: number}): void => {
      putAttr(r.attr)
      A.replyAttr(req, r.timeout)
    }
    const n = (v: unknown): number => v as number
    const b = (v: unknown): Buffer => v as Buffer
    const fh = (v: unknown): number => (v as number | undefined) ?? 0
    const owner = (hi: unknown, lo: unknown): string => n(hi).toString(16).padStart(8, '0') + n(lo).toString(16).padStart(8, '0')
    const lock = (a: unknown[], i: number): FileLock => ({type: n(a[i]), start: n(a[i + 1]), end: n(a[i + 2]), pid: n(a[i + 3])})

    this.table[OPS.init!] = (_req, _ctx, a) => this.onInit(a as number[])
    this.table[OPS.end!] = (_req, _ctx, a) => this.onEnd(a[0] as number)
    this.table[OPS.notifyDone!] = (_req, _ctx, a) => this.onNotifyDone(a[0] as number, a[1] as number)
    this.table[OPS.forget!] = (_req, _ctx, a) => this.forget(n(a[0]), n(a[1]))
    this.table[OPS.interrupt!] = (_req, _ctx, a) => this.onInterrupt(n(a[0]))

    if (ops.lookup) set('lookup', (req, ctx, a) => this.run(req, 'lookup', () => ops.lookup!(ctx, n(a[0]), b(a[1])), entry(req)))
    if (ops.getattr) set('getattr', (req, ctx, a) => this.run(req, 'getattr', () => ops.getattr!(ctx, n(a[0]), a[1] as number | undefined), attr(req)))
    if (ops.setattr) {
      set('setattr', (req, ctx, a) => {
        const valid = n(a[1])
        const s: SetAttr = {valid}
        if (valid & 1) s.mode = n(a[2])
        if (valid & 2) s.uid = n(a[3])
        if (valid & 4) s.gid = n(a[4])
        if (valid & 8) s.size = n(a[5])
        if (valid & 16) s.atime = {sec: n(a[6]), nsec: n(a[7])}
        if (valid & 32) s.mtime = {sec: n(a[8]), nsec: n(a[9])}
        if (valid & 128) s.atimeNow = true
        if (valid & 256) s.mtimeNow = true
        if (valid & 1024) s.ctime = {sec: n(a[10]), nsec: n(a[11])}
        if (a[12] !== undefined) s.fh = n(a[12])
        this.run(req, 'setattr', () => ops.setattr!(ctx, n(a[0]), s), attr(req))
      })
    }
    if (ops.readlink) set('readlink', (req, ctx, a) => this.run(req, 'readlink', () => ops.readlink!(ctx, n(a[0])), (t: Buffer) => A.replyReadlink(req, t)))
    if (ops.mknod) set('mknod', (req, ctx, a) => this.run(req, 'mknod', () => ops.mknod!(ctx, n(a[0]), b(a[1]), n(a[2]), n(a[3])), entry(req)))
    if (ops.mkdir) set('mkdir', (req, ctx, a) => this.run(req, 'mkdir', () => ops.mkdir!(ctx, n(a[0]), b(a[1]), n(a[2])), entry(req)))
    if (ops.unlink) set('unlink', (req, ctx, a) => this.run(req, 'unlink', () => ops.unlink!(ctx, n(a[0]), b(a[1])), ok(req)))
    if (ops.rmdir) set('rmdir', (req, ctx, a) => this.run(req, 'rmdir', () => ops.rmdir!(ctx, n(a[0]), b(a[1])), ok(req)))
    if (ops.symlink) set('symlink', (req, ctx, a) => this.run(req, 'symlink', () => ops.symlink!(ctx, b(a[0]), n(a[1]), b(a[2])), entry(req)))
    if (ops.rename) set('rename', (req, ctx, a) => this.run(req, 'rename', () => ops.rename!(ctx, n(a[0]), b(a[1]), n(a[2]), b(a[3]), n(a[4])), ok(req)))
    if (ops.link) set('link', (req, ctx, a) => this.run(req, 'link', () => ops.link!(ctx, n(a[0]), n(a[1]), b(a[2])), entry(req)))
    if (ops.open) {
      set('open', (req, ctx, a) => this.run(req, 'open', () => ops.open!(ctx, n(a[0]), n(a[1])), (o: OpenReply) => {
        const res = A.replyOpen(req, o.fh ?? 0, openFlags(o))
        if (res !== 0) this.compensate('release', () => ops.release?.(ctx, n(a[0]), o.fh ?? 0, n(a[1])))
      }))
    }
    if (ops.read) {
      set('read', (req, ctx, a) => {
        const size = n(a[2])
        this.run(req, 'read', () => ops.read!(ctx, n(a[0]), fh(a[1]), n(a[3]), size), (d: Buffer) => A.replyBuf(req, d.length > size ? d.subarray(0, size) : d))
      })
    }
    if (ops.write) {
      set('write', (req, ctx, a) => this.run(req, 'write', () => ops.write!(ctx, n(a[0]), fh(a[1]), n(a[3]), b(a[2]), {flags: n(a[4]), writepage: a[5] as boolean}),
        (count: number) => A.replyWrite(req, count)))
    }
    if (ops.flush) set('flush', (req, ctx, a) => this.run(req, 'flush', () => ops.flush!(ctx, n(a[0]), fh(a[1]), owner(a[2], a[3])), ok(req)))
    if (ops.release) {
      set('release', (req, ctx, a) => this.run(req, 'release',
        () => ops.release!(ctx, n(a[0]), fh(a[1]), n(a[2]), a[3] === undefined ? undefined : owner(a[3], a[4])), ok(req)))
    }
    if (ops.fsync) set('fsync', (req, ctx, a) => this.run(req, 'fsync', () => ops.fsync!(ctx, n(a[0]), fh(a[1]), a[2] as boolean), ok(req)))
    if (ops.opendir) {
      set('opendir', (req, ctx, a) => this.run(req, 'opendir', () => ops.opendir!(ctx, n(a[0]), n(a[1])), (o: OpenReply) => {
        const res = A.replyOpen(req, o.fh ?? 0, openFlags(o))
        if (res !== 0) this.compensate('releasedir', () => ops.releasedir?.(ctx, n(a[0]), o.fh ?? 0))
      }))
    }
    if (ops.readdir) {
      set('readdir', (req, ctx, a) => this.run(req, 'readdir', () => ops.readdir!(ctx, n(a[0]), fh(a[1]), n(a[3]), n(a[2])), (list: Iterable<DirEntry>) => {
        for (const d of list) {
          S[SC.INO] = d.ino
          S[SC.MODE] = d.mode
          S[SC.DIR_OFF] = d.offset
          if (!A.dirAdd(req, d.name)) break
        }
        A.dirReply(req)
      }))
    }
    if (ops.readdirplus) {
      set('readdirplus', (req, ctx, a) => this.run(req, 'readdirplus', () => ops.readdirplus!(ctx, n(a[0]), fh(a[1]), n(a[3]), n(a[2])), (list: Iterable<DirEntryPlus>) => {
        const sent: number[] = []
        let done = false
        try {
          for (const d of list) {
            const counts = d.entry.ino !== 0 && !isDot(d.name)
            putEntry(d.entry)
            S[SC.DIR_OFF] = d.offset
            if (counts) this.noCapability(d.entry)
            if (!A.dirAdd(req, d.name)) {
              if (counts) this.forget(d.entry.ino)
              break
            }
            if (counts) sent.push(d.entry.ino)
          }
          done = A.dirReply(req) === 0
        } finally {
          if (!done) for (const ino of sent) this.forget(ino)
        }
      }))
    }
    if (ops.releasedir) set('releasedir', (req, ctx, a) => this.run(req, 'releasedir', () => ops.releasedir!(ctx, n(a[0]), fh(a[1])), ok(req)))
    if (ops.fsyncdir) set('fsyncdir', (req, ctx, a) => this.run(req, 'fsyncdir', () => ops.fsyncdir!(ctx, n(a[0]), fh(a[1]), a[2] as boolean), ok(req)))
    if (ops.statfs) {
      set('statfs', (req, ctx, a) => this.run(req, 'statfs', () => ops.statfs!(ctx, n(a[0])), (s: StatFs) => {
        putStatfs(s)
        A.replyStatfs(req)
      }))
    }
    if (ops.setxattr) {
      set('setxattr', (req, ctx, a) => {
        // Forgotten before the filesystem sets anything: a getxattr the loop thread answers
        // from the cache from now on is one that came before this setxattr.
        this.capCache(0, n(a[0]))
        this.run(req, 'setxattr', () => ops.setxattr!(ctx, n(a[0]), b(a[1]), b(a[2]), n(a[3])), ok(req))
      })
    }
    if (ops.getxattr) {
      set('getxattr', (req, ctx, a) => {
        const size = n(a[2])
        this.run(req, 'getxattr', () => {
          try {
            return ops.getxattr!(ctx, n(a[0]), b(a[1]))
          } catch (e) {
            // Only an answer given at once: a later one may have raced with a setxattr.
            if (errnoOf(e) === E.ENODATA && b(a[1]).equals(CAPABILITY)) this.capCache(1, n(a[0]))
            throw e
          }
        }, (v: Buffer) => {
          if (size === 0) A.replyXattr(req, v.length)
          else if (v.length > size) A.replyErr(req, E.ERANGE)
          else A.replyBuf(req, v)
        })
      })
    }
    if (ops.listxattr) {
      set('listxattr', (req, ctx, a) => {
        const size = n(a[1])
        this.run(req, 'listxattr', () => ops.listxattr!(ctx, n(a[0])), (names: Buffer[]) => {
          const v = Buffer.concat(names.flatMap((x) => [x, Buffer.alloc(1)]))
          if (size === 0) A.replyXattr(req, v.length)
          else if (v.length > size) A.replyErr(req, E.ERANGE)
          else A.replyBuf(req, v)
        })
      })
    }
    if (ops.removexattr) set('removexattr', (req, ctx, a) => this.run(req, 'removexattr', () => ops.removexattr!(ctx, n(a[0]), b(a[1])), ok(req)))
    if (ops.access) set('access', (req, ctx, a) => this.run(req, 'access', () => ops.access!(ctx, n(a[0]), n(a[1])), ok(req)))
    if (ops.create) {
      // A create of "/" is an open with O_TMPFILE (the addon hands FUSE_TMPFILE over as a create
      // of that name, which no directory entry can have): without tmpfile, ENOSYS, which the
      // kernel keeps, failing every later O_TMPFILE with EOPNOTSUPP without asking.
      const tmpfile = (ctx: FuseContext, a: unknown[]): CreateReply | Promise<CreateReply> => {
        if (!ops.tmpfile) throw new FuseError('ENOSYS')
        return ops.tmpfile(ctx, n(a[0]), n(a[2]), n(a[3]))
      }
      set('create', (req, ctx, a) => this.run(req, 'create', () => isSlash(b(a[1])) ? tmpfile(ctx, a) : ops.create!(ctx, n(a[0]), b(a[1]), n(a[2]), n(a[3])), (c) => {
        putEntry(c.entry)
        this.noCapability(c.entry)
        const res = A.replyCreate(req, c.open.fh ?? 0, openFlags(c.open))
        if (res !== 0) {
          this.compensate('release', () => ops.release?.(ctx, c.entry.ino, c.open.fh ?? 0, n(a[3])))
          this.forget(c.entry.ino)
        }
      }))
    }
    if (ops.fallocate) set('fallocate', (req, ctx, a) => this.run(req, 'fallocate', () => ops.fallocate!(ctx, n(a[0]), fh(a[1]), n(a[2]), n(a[3]), n(a[4])), ok(req)))
    if (ops.ioctl) {
      set('ioctl', (req, ctx, a) => {
        const outSize = n(a[5])
        this.run(req, 'ioctl', () => ops.ioctl!(ctx, n(a[0]), fh(a[1]), n(a[2]), n(a[3]), b(a[4]), outSize), (r) => {
          if (r.data && r.data.length > outSize) throw new RangeError(`ioctl answer of ${r.data.length} bytes, ${outSize} allowed`)
          A.replyIoctl(req, r.result, r.data)
        })
      })
    }
    if (ops.lseek) set('lseek', (req, ctx, a) => this.run(req, 'lseek', () => ops.lseek!(ctx, n(a[0]), fh(a[1]), n(a[2]), n(a[3])), (off: number) => A.replyLseek(req, off)))
    if (ops.getlk) {
      set('getlk', (req, ctx, a) => this.run(req, 'getlk', () => ops.getlk!(ctx, n(a[0]), fh(a[1]), owner(a[2], a[3]), lock(a, 4)),
        (l: FileLock) => A.replyLock(req, l.type, l.start, l.end, l.pid)))
    }
    if (ops.setlk) {
      set('setlk', (req, ctx, a) => {
        const sleep = a[8] as boolean
        this.runLock(req, 'setlk', n(a[9]), sleep, (signal) => ops.setlk!(ctx, n(a[0]), fh(a[1]), owner(a[2], a[3]), lock(a, 4), sleep, signal))
      })
    }
    if (ops.flock) {
      set('flock', (req, ctx, a) => {
        const op = n(a[4])
        // neither LOCK_NB nor LOCK_UN: may wait
        this.runLock(req, 'flock', n(a[5]), !(op & 12), (signal) => ops.flock!(ctx, n(a[0]), fh(a[1]), owner(a[2], a[3]), op, signal))
      })
    }
    if (ops.copyFileRange) {
      set('copyFileRange', (req, ctx, a) => this.run(req, 'copyFileRange',
        () => ops.copyFileRange!(ctx, n(a[0]), fh(a[1]), n(a[2]), n(a[3]), fh(a[4]), n(a[5]), n(a[6]), n(a[7])),
        (count: number) => A.replyWrite(req, count)))
    }
  }

  /** Lock requests that may wait (SETLKW, blocking flock), by the addon's id: aborted on FUSE_INTERRUPT. */
  private readonly lockWaits = new Map<number, AbortController>()
  /** interrupts that came before their request (the kernel interrupted it as it was sent) */
  private readonly earlyInterrupts = new Set<number>()

  /** Runs a lock request that may wait (`sleep`): its signal aborts on the kernel's interrupt. */
  private runLock(req: Req, op: string, id: number, sleep: boolean, call: (signal: AbortSignal) => void | Promise<void>): void {
    const c = new AbortController()
    if (sleep) {
      if (this.earlyInterrupts.delete(id)) c.abort()
      else this.lockWaits.set(id, c)
    }
    const done = (): void => {
      this.lockWaits.delete(id)
    }
    this.run(req, op, () => {
      let v: void | Promise<void>
      try {
        v = call(c.signal)
      } catch (e) {
        done()
        throw e
      }
      if (isThenable(v)) return v.finally(done)
      done()
      return v
    }, () => {
      this.addon.replyErr(req, 0)
    })
  }

  private onInterrupt(id: number): void {
    const c = this.lockWaits.get(id)
    if (c) {
      this.lockWaits.delete(id)
      c.abort()
      return
    }
    // Either its request comes next, or it was answered as the interrupt came: keep a few.
    this.earlyInterrupts.add(id)
    if (this.earlyInterrupts.size > 256) this.earlyInterrupts.delete(this.earlyInterrupts.values().next().value!)
  }

  /** Undoes an open or create the kernel did not take (an interrupted request). */
  private compensate(op: string, f: () => unknown): void {
    try {
      const v = f()
      if (isThenable(v)) v.then(undefined, (e: unknown) => this.report(op, e))
    } catch (e) {
      this.report(op, e)
    }
  }

  private onInit(a: number[]): void {
    const want = a[3]!
    this.conn = {
      protoMajor: a[0]!, protoMinor: a[1]!, capable: a[2]!, want, maxWrite: a[4]!, maxRead: a[5]!,
      maxReadahead: a[6]!, maxBackground: a[7]!, congestionThreshold: a[8]!, timeGran: a[9]!,
      writebackCache: Boolean(want & CAP.WRITEBACK_CACHE), posixAcl: Boolean(want & CAP.POSIX_ACL),
      readdirplus: Boolean(want & CAP.READDIRPLUS), atomicOTrunc: Boolean(want & CAP.ATOMIC_O_TRUNC),
      exportSupport: Boolean(want & CAP.EXPORT_SUPPORT), handleKillpriv: Boolean(want & CAP.HANDLE_KILLPRIV),
      dontMask: Boolean(want & CAP.DONT_MASK),
    }
    try {
      this.ops.init?.(this.conn)
    } catch (e) {
      this.report('init', e)
    }
    this.ready?.resolve()
    this.ready = undefined
  }

  private onEnd(result: number): void {
    this.ended = true
    this.lockWaits.clear() // (the addon answered them; the filesystem's destroy drops their waits)
    this.earlyInterrupts.clear()
    live.delete(this)
    for (const p of this.notes.values()) p.resolve(false)
    this.notes.clear()
    try {
      this.ops.destroy?.()
    } catch (e) {
      this.report('destroy', e)
    }
    if (this.ready) {
      this.ready.reject(Object.assign(new Error(`cannot mount FUSE on ${this.mountpoint}: the session ended before the kernel's INIT (${result})`), {code: 'EFUSEMOUNT'}))
      this.ready = undefined
    }
    // An aborted connection leaves its mount dead ("Transport endpoint is not connected"):
    // libfuse only unmounts a connection that is still up. Detach it, out of this process.
    const left = this.device !== undefined ? fuseMountAt(this.mountpoint) : undefined
    if (left !== undefined && left.device === this.device) {
      lazyUnmount(this.mountpoint).catch((e: unknown) => this.report('unmount', e)).finally(() => this.resolveClosed())
    } else {
      this.resolveClosed()
    }
  }

  private onNotifyDone(id: number, res: number): void {
    const p = this.notes.get(id)
    if (p === undefined) return
    this.notes.delete(id)
    if (res === 0) p.resolve(true)
    else if (res === -E.ENOENT || res === -E.ENOTCONN || res === -E.ENODEV || res === -E.EBADF || res === -E.ENOSYS) p.resolve(false)
    else p.reject(Object.assign(new Error(`FUSE cache notification failed: errno ${-res}`), {errno: -res}))
  }

  private notify(kind: number, a: number, b: number, off: number, len: number, name?: Buffer): Promise<boolean> {
    if (this.ended || this.handle === undefined) return Promise.resolve(false)
    const id = this.nextNote++
    return new Promise((resolve, reject) => {
      if (!this.addon.notify(this.handle!, kind, id, a, b, off, len, name)) {
        resolve(false)
        return
      }
      this.notes.set(id, {resolve, reject})
    })
  }

  invalidateInode(ino: number, offset = 0, length = 0): Promise<boolean> {
    this.capCache(0, ino)
    return this.notify(0, ino, 0, offset, length)
  }

  invalidateEntry(parent: number, name: Buffer): Promise<boolean> {
    return this.notify(1, parent, 0, 0, 0, name)
  }

  notifyDelete(parent: number, child: number, name: Buffer): Promise<boolean> {
    return this.notify(2, parent, child, 0, 0, name)
  }

  async unmount(options: {lazy?: boolean} = {}): Promise<void> {
    if (this.ended) return
    const lazy = Boolean(options.lazy)
    if (this.device !== undefined) {
      if (!listMounts().some((m) => m.device === this.device)) { // detached already: it ends when its last user leaves
        if (!lazy) await this.closed
        return
      }
      // umount2 goes by path: never unmount a mount stacked over ours
      if (fuseMountAt(this.mountpoint)?.device !== this.device) {
        throw Object.assign(new Error(`cannot unmount ${this.mountpoint}: another mount covers this session's`), {code: 'EBUSY'})
      }
    }
    const err = await this.addon.umount(this.mountpoint, lazy)
    if (err === E.EPERM && process.geteuid?.() !== 0) {
      await new Promise<void>((resolve, reject) => {
        execFile('fusermount3', ['-u', ...(lazy ? ['-z'] : []), '--', this.mountpoint], (e, _o, stderr) => {
          if (e) reject(Object.assign(new Error(`cannot unmount ${this.mountpoint}: ${String(stderr).trim() || e.message}`), {code: 'EFUSEUMOUNT'}))
          else resolve()
        })
      })
    } else if (err !== 0 && !(this.ended && err === E.EINVAL)) {
      const name = Object.entries(ERRNO).find(([, v]) => v === err)?.[0] ?? `errno ${err}`
      throw Object.assign(new Error(`cannot unmount ${this.mountpoint}: ${name}${err === E.EBUSY ? ' (in use)' : ''}`), {code: name, errno: err})
    }
    if (!lazy) await this.closed
  }
}

/**
 * Mounts `ops` on `mountpoint` through libfuse3 (the native addon) and resolves, once the
 * kernel has sent INIT, with the session. Throws FuseUnavailableError when the addon is not
 * built or /dev/fuse is missing; the process keeps running (the session holds it) until the
 * mount ends. Mount from the main thread (a session does not outlive the worker that made it).
 * The process must never touch the mount it serves.
 */
export async function mount(mountpoint: string, ops: FuseOps, options: MountOptions = {}, addonPath: string = ADDON_PATH): Promise<FuseSession> {
  const av = fuseAvailability(addonPath)
  if (!av.available) throw new FuseUnavailableError(av.reason)
  const addon = load(addonPath).addon!
  if (!scratchSet.has(addon)) {
    addon.setScratch(S)
    scratchSet.add(addon)
  }
  // as /proc/self/mountinfo will show it (asynchronously: a hung mount there must not hang
  // this thread; libfuse stats it again on a worker thread)
  let mp: string
  try {
    mp = await fs.promises.realpath(path.resolve(mountpoint))
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    const why = code === 'ENOTCONN' || code === 'ECONNABORTED'
      ? 'a dead FUSE mount is there (its server is gone): unmount it first'
      : code === 'ENOENT' ? 'no such directory' : (e as Error).message
    throw Object.assign(new Error(`cannot mount FUSE on ${path.resolve(mountpoint)}: ${why}`), {code: 'EFUSEMOUNT'})
  }
  const session = new LibfuseSession(addon, mp, ops, options)
  await session.start()
  return session
}
