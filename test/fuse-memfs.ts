// MemFs: a small in-memory, inode-based filesystem served through src/fuse in the FUSE tests
// (test/fuse-server.ts runs it in a child process). Hard links, sparse files (64 KiB chunks),
// xattrs, devices and FIFOs, symlinks, nanosecond times, owners from the caller's credentials,
// lookup counting (forget), files that live on while open after their last unlink. It also
// records what the tests check from the server's side: the sizes of the reads and writes it
// gets, who created each inode, and lookup-count mistakes.
// It must never do the kernel's work for it: permissions are checked by the kernel
// (default_permissions), so MemFs checks none, and a test that passes only because MemFs is
// lenient is no test of the binding.
import {constants} from 'node:fs'
import {
  type Attr, type AttrReply, type ConnInfo, type CreateReply, type DirEntry, type DirEntryPlus, type Entry, FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, type FuseContext, FuseError, type FuseOps, type OpenReply,
  RENAME_EXCHANGE, RENAME_NOREPLACE, SEEK_DATA, SEEK_HOLE, type SetAttr, type StatFs, type Timespec, XATTR_CREATE,
  XATTR_REPLACE,
} from '../src/fuse/index.js'

const {S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, O_TRUNC, O_RDONLY} = constants
const S_ISGID = 0o2000
const O_ACCMODE = 3
export const CHUNK = 64 * 1024
export const ROOT_INO = 1
/** An ioctl MemFs answers: _IOR('P', 1, uint64_t), the caller's node id. */
export const IOCTL_GET_INO = (2 << 30) | (8 << 16) | (0x50 << 8) | 1

export interface Node {
  ino: number
  mode: number
  uid: number
  gid: number
  nlink: number
  rdev: number
  atime: Timespec
  mtime: Timespec
  ctime: Timespec
  size: number
  chunks: Map<number, Buffer>
  /** directories: latin1 key -> entry; Map order is cookie order */
  entries: Map<string, {name: Buffer, ino: number, cookie: number}>
  parent: number
  target?: Buffer
  xattrs: Map<string, {name: Buffer, value: Buffer}>
  nlookup: number
  opens: number
  creatorPid: number
}

export interface MemFsOptions {
  attrTimeout?: number
  entryTimeout?: number
  /** answer no ioctl (the binding's default, ENOTTY) */
  noIoctl?: boolean
  /** serve readdir only, no readdirplus */
  noReaddirplus?: boolean
}

const key = (name: Buffer): string => name.toString('latin1')

const err = (code: string): FuseError => new FuseError(code)

// Wall-clock time with nanoseconds: Date.now() for the epoch, hrtime for the fraction.
const base = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint()
export function now(): Timespec {
  const ns = base + process.hrtime.bigint()
  return {sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n)}
}

export class MemFs {
  readonly nodes = new Map<number, Node>()
  // node ids and file handles beyond 32 bits, so that every test checks none is truncated
  private nextIno = 2 ** 40
  private nextFh = 2 ** 45
  private nextCookie = 3
  private readonly fhs = new Map<number, number>()
  private conn: ConnInfo | undefined
  readonly attrTimeout: number
  readonly entryTimeout: number
  /** what the tests inspect */
  readonly stats = {writes: [] as number[], reads: [] as number[], lookupErrors: 0, forgets: 0, ops: new Map<string, number>()}
  /** names whose lookup waits until `release()`, or `getattr:INO` (tests of requests held in JavaScript) */
  readonly held = new Map<string, (() => void)[]>()
  private holdNames = new Set<string>()

  constructor(private readonly options: MemFsOptions = {}) {
    this.attrTimeout = options.attrTimeout ?? 30
    this.entryTimeout = options.entryTimeout ?? 30
    const t = now()
    this.nodes.set(ROOT_INO, this.newNode(ROOT_INO, S_IFDIR | 0o755, 0, 0, 0, ROOT_INO, t))
    this.nodes.get(ROOT_INO)!.nlink = 2
    this.ops = this.buildOps()
  }

  /** The FuseOps served (built once, bound to this MemFs). */
  readonly ops: FuseOps

  private newNode(ino: number, mode: number, uid: number, gid: number, rdev: number, parent: number, t = now()): Node {
    return {
      ino, mode, uid, gid, rdev, parent, nlink: 1, atime: t, mtime: t, ctime: t, size: 0, chunks: new Map(),
      entries: new Map(), xattrs: new Map(), nlookup: 0, opens: 0, creatorPid: 0,
    }
  }

  node(ino: number): Node {
    const n = this.nodes.get(ino)
    if (!n) throw err('ESTALE')
    return n
  }

  /** The inode behind an open file handle: the handle must be one we gave for that inode. */
  private openNode(ino: number, fh: number): Node {
    if (this.fhs.get(fh) !== ino) throw err('EBADF')
    return this.node(ino)
  }

  private dir(ino: number): Node {
    const n = this.node(ino)
    if ((n.mode & S_IFMT) !== S_IFDIR) throw err('ENOTDIR')
    return n
  }

  attr(n: Node): Attr {
    const type = n.mode & S_IFMT
    const blocks = type === S_IFREG ? n.chunks.size * (CHUNK / 512) : type === S_IFDIR ? 8 : 0
    return {
      ino: n.ino, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid, rdev: n.rdev, size: n.size, blocks,
      blksize: CHUNK, atime: n.atime, mtime: n.mtime, ctime: n.ctime,
    }
  }

  private entry(n: Node): Entry {
    n.nlookup++
    return {ino: n.ino, attr: this.attr(n), attrTimeout: this.attrTimeout, entryTimeout: this.entryTimeout}
  }

  /** Drops an inode nobody can reach any more: no name, no lookup, no open file. */
  private maybeFree(n: Node): void {
    if (n.ino !== ROOT_INO && n.nlink === 0 && n.nlookup === 0 && n.opens === 0) this.nodes.delete(n.ino)
  }

  private count(op: string): void {
    this.stats.ops.set(op, (this.stats.ops.get(op) ?? 0) + 1)
  }

  /** Server-side walk for the tests (never through the mount). */
  resolve(path: string): Node {
    let n = this.node(ROOT_INO)
    for (const part of path.split('/').filter(Boolean)) {
      const e = this.dir(n.ino).entries.get(Buffer.from(part).toString('latin1'))
      if (!e) throw err('ENOENT')
      n = this.node(e.ino)
    }
    return n
  }

  hold(name: string): void {
    this.holdNames.add(name)
  }

  release(name: string): number {
    this.holdNames.delete(name)
    const waiting = this.held.get(name) ?? []
    this.held.delete(name)
    for (const f of waiting) f()
    return waiting.length
  }

  private waitHeld(name: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const list = this.held.get(name) ?? []
      list.push(resolve)
      this.held.set(name, list)
    })
  }

  private newChild(ctx: FuseContext, parent: number, name: Buffer, mode: number, rdev = 0): Node {
    const p = this.dir(parent)
    if (p.entries.has(key(name))) throw err('EEXIST')
    if (name.length > 255) throw err('ENAMETOOLONG')
    // with posixAcl (or dontMask) the kernel leaves the umask to us
    if (this.conn && (this.conn.posixAcl || this.conn.dontMask) && (mode & S_IFMT) !== S_IFLNK) mode &= ~ctx.umask | S_IFMT
    let gid = ctx.gid
    if (p.mode & S_ISGID) {
      gid = p.gid
      if ((mode & S_IFMT) === S_IFDIR) mode |= S_ISGID
    }
    const n = this.newNode(this.nextIno++, mode, ctx.uid, gid, rdev, parent)
    n.creatorPid = ctx.pid
    this.nodes.set(n.ino, n)
    this.link(p, name, n)
    return n
  }

  private link(p: Node, name: Buffer, n: Node): void {
    p.entries.set(key(name), {name: Buffer.from(name), ino: n.ino, cookie: this.nextCookie++})
    const t = now()
    p.mtime = p.ctime = t
  }

  private unlinkName(p: Node, name: Buffer): Node {
    const e = p.entries.get(key(name))
    if (!e) throw err('ENOENT')
    p.entries.delete(key(name))
    const n = this.node(e.ino)
    const t = now()
    p.mtime = p.ctime = t
    n.ctime = t
    return n
  }

  private truncate(n: Node, size: number): void {
    if (size < n.size) {
      for (const idx of [...n.chunks.keys()]) {
        const start = idx * CHUNK
        if (start >= size) n.chunks.delete(idx)
        else if (start + CHUNK > size) n.chunks.get(idx)!.fill(0, size - start)
      }
    }
    n.size = size
  }

  private writeAt(n: Node, off: number, data: Buffer): void {
    let pos = 0
    while (pos < data.length) {
      const at = off + pos
      const idx = Math.floor(at / CHUNK)
      const within = at - idx * CHUNK
      const len = Math.min(CHUNK - within, data.length - pos)
      let c = n.chunks.get(idx)
      if (!c) {
        c = Buffer.alloc(CHUNK)
        n.chunks.set(idx, c)
      }
      data.copy(c, within, pos, pos + len)
      pos += len
    }
    if (off + data.length > n.size) n.size = off + data.length
  }

  private readAt(n: Node, off: number, size: number): Buffer {
    const end = Math.min(n.size, off + size)
    if (off >= end) return Buffer.alloc(0)
    const out = Buffer.alloc(end - off)
    let pos = off
    while (pos < end) {
      const idx = Math.floor(pos / CHUNK)
      const within = pos - idx * CHUNK
      const len = Math.min(CHUNK - within, end - pos)
      n.chunks.get(idx)?.copy(out, pos - off, within, within + len)
      pos += len
    }
    return out
  }

  private zeroRange(n: Node, off: number, len: number, allocate: boolean): void {
    const end = off + len
    for (let idx = Math.floor(off / CHUNK); idx * CHUNK < end; idx++) {
      const start = idx * CHUNK
      const from = Math.max(off, start) - start
      const to = Math.min(end, start + CHUNK) - start
      const c = n.chunks.get(idx)
      if (from === 0 && to === CHUNK && !allocate) n.chunks.delete(idx)
      else if (c) c.fill(0, from, to)
      else if (allocate) n.chunks.set(idx, Buffer.alloc(CHUNK))
    }
  }

  private dirEntries(d: Node): DirEntry[] {
    const out: DirEntry[] = [
      {name: Buffer.from('.'), ino: d.ino, mode: d.mode, offset: 1},
      {name: Buffer.from('..'), ino: d.parent, mode: S_IFDIR, offset: 2},
    ]
    for (const e of d.entries.values()) out.push({name: e.name, ino: e.ino, mode: this.node(e.ino).mode, offset: e.cookie})
    return out
  }

  private statfs(): StatFs {
    let used = 0
    for (const n of this.nodes.values()) used += n.chunks.size * (CHUNK / 4096)
    const blocks = 1 << 20
    return {
      bsize: 4096, frsize: 4096, blocks, bfree: blocks - used, bavail: blocks - used,
      files: 1 << 20, ffree: (1 << 20) - this.nodes.size, favail: (1 << 20) - this.nodes.size, fsid: 0x5052, flag: 0, namemax: 255,
    }
  }

  /** The FuseOps served: arrow functions bound to this MemFs. */
  private buildOps(): FuseOps {
    return {
      init: (conn) => {
        this.conn = conn
      },
      lookup: async (ctx, parent, name) => {
        this.count('lookup')
        const k = key(name)
        if (this.holdNames.has(k)) await this.waitHeld(k)
        if (k === 'throw-me') throw new Error('a bug in a handler')
        if (k === 'enospc-me') throw err('ENOSPC')
        const p = this.dir(parent)
        if (k === '.') return this.entry(p)
        if (k === '..') return this.entry(this.node(p.parent))
        const e = p.entries.get(k)
        if (!e) throw err('ENOENT')
        return this.entry(this.node(e.ino))
      },
      forget: (ino, nlookup) => {
        this.stats.forgets++
        const n = this.nodes.get(ino)
        if (!n) {
          this.stats.lookupErrors++
          return
        }
        n.nlookup -= nlookup
        if (n.nlookup < 0) {
          this.stats.lookupErrors++
          n.nlookup = 0
        }
        this.maybeFree(n)
      },
      getattr: (_ctx, ino) => {
        const reply = (): AttrReply => ({attr: this.attr(this.node(ino)), timeout: this.attrTimeout})
        return this.holdNames.has(`getattr:${ino}`) ? this.waitHeld(`getattr:${ino}`).then(reply) : reply()
      },
      setattr: (_ctx, ino, s: SetAttr) => {
        const n = this.node(ino)
        const t = now()
        if (s.mode !== undefined) n.mode = (n.mode & S_IFMT) | (s.mode & 0o7777)
        if (s.uid !== undefined) n.uid = s.uid
        if (s.gid !== undefined) n.gid = s.gid
        if (s.size !== undefined) {
          if ((n.mode & S_IFMT) !== S_IFREG) throw err('EINVAL')
          this.truncate(n, s.size)
          if (s.mtime === undefined) n.mtime = t
        }
        if (s.atime !== undefined) n.atime = s.atimeNow ? t : s.atime
        if (s.mtime !== undefined) n.mtime = s.mtimeNow ? t : s.mtime
        n.ctime = s.ctime ?? t
        return {attr: this.attr(n), timeout: this.attrTimeout}
      },
      readlink: (_ctx, ino) => {
        const n = this.node(ino)
        if (!n.target) throw err('EINVAL')
        return n.target
      },
      mknod: (ctx, parent, name, mode, rdev) => this.entry(this.newChild(ctx, parent, name, mode, rdev)),
      mkdir: (ctx, parent, name, mode) => {
        const n = this.newChild(ctx, parent, name, S_IFDIR | (mode & 0o7777))
        n.nlink = 2
        this.node(parent).nlink++
        return this.entry(n)
      },
      unlink: (_ctx, parent, name) => {
        const p = this.dir(parent)
        const e = p.entries.get(key(name))
        if (e && (this.node(e.ino).mode & S_IFMT) === S_IFDIR) throw err('EISDIR')
        const n = this.unlinkName(p, name)
        n.nlink--
        this.maybeFree(n)
      },
      rmdir: (_ctx, parent, name) => {
        const p = this.dir(parent)
        const e = p.entries.get(key(name))
        if (!e) throw err('ENOENT')
        const d = this.dir(e.ino)
        if (d.entries.size > 0) throw err('ENOTEMPTY')
        this.unlinkName(p, name)
        d.nlink = 0
        p.nlink--
        this.maybeFree(d)
      },
      symlink: (ctx, target, parent, name) => {
        const n = this.newChild(ctx, parent, name, S_IFLNK | 0o777)
        n.target = Buffer.from(target)
        n.size = target.length
        return this.entry(n)
      },
      rename: (_ctx, parent, name, newParent, newName, flags) => {
        const p = this.dir(parent)
        const np = this.dir(newParent)
        const e = p.entries.get(key(name))
        if (!e) throw err('ENOENT')
        const n = this.node(e.ino)
        const existing = np.entries.get(key(newName))
        const t = now()
        if (flags & RENAME_EXCHANGE) {
          if (!existing) throw err('ENOENT')
          const other = this.node(existing.ino)
          p.entries.set(key(name), {name: e.name, ino: other.ino, cookie: e.cookie})
          np.entries.set(key(newName), {name: existing.name, ino: n.ino, cookie: existing.cookie})
          const isDir = (x: Node): boolean => (x.mode & S_IFMT) === S_IFDIR
          if (p !== np && isDir(n) !== isDir(other)) {
            if (isDir(n)) { p.nlink--; np.nlink++ } else { p.nlink++; np.nlink-- }
          }
          if (isDir(n)) n.parent = np.ino
          if (isDir(other)) other.parent = p.ino
          p.mtime = p.ctime = np.mtime = np.ctime = n.ctime = other.ctime = t
          return
        }
        if (flags & ~RENAME_NOREPLACE) throw err('EINVAL')
        if (existing) {
          if (flags & RENAME_NOREPLACE) throw err('EEXIST')
          if (existing.ino === n.ino) return // two names of one inode: nothing to do
          const victim = this.node(existing.ino)
          const victimDir = (victim.mode & S_IFMT) === S_IFDIR
          const isDir = (n.mode & S_IFMT) === S_IFDIR
          if (victimDir && !isDir) throw err('EISDIR')
          if (!victimDir && isDir) throw err('ENOTDIR')
          if (victimDir && victim.entries.size > 0) throw err('ENOTEMPTY')
          np.entries.delete(key(newName))
          victim.ctime = t
          if (victimDir) {
            victim.nlink = 0
            np.nlink--
          } else {
            victim.nlink--
          }
          this.maybeFree(victim)
        }
        p.entries.delete(key(name))
        np.entries.set(key(newName), {name: Buffer.from(newName), ino: n.ino, cookie: this.nextCookie++})
        if ((n.mode & S_IFMT) === S_IFDIR && p !== np) {
          p.nlink--
          np.nlink++
          n.parent = np.ino
        }
        p.mtime = p.ctime = np.mtime = np.ctime = n.ctime = t
      },
      link: (_ctx, ino, newParent, newName) => {
        const n = this.node(ino)
        const np = this.dir(newParent)
        if (np.entries.has(key(newName))) throw err('EEXIST')
        this.link(np, newName, n)
        n.nlink++
        n.ctime = now()
        return this.entry(n)
      },
      open: (_ctx, ino, flags): OpenReply => {
        const n = this.node(ino)
        if ((flags & O_TRUNC) && (flags & O_ACCMODE) !== O_RDONLY && n.size > 0) {
          this.truncate(n, 0)
          n.mtime = n.ctime = now()
        }
        n.opens++
        const fh = this.nextFh++
        this.fhs.set(fh, ino)
        return {fh}
      },
      read: (_ctx, ino, fh, off, size) => {
        this.stats.reads.push(size)
        const n = this.openNode(ino, fh)
        return this.readAt(n, off, size)
      },
      write: (_ctx, ino, fh, off, data) => {
        this.stats.writes.push(data.length)
        const n = this.openNode(ino, fh)
        this.writeAt(n, off, data)
        n.mtime = n.ctime = now()
        return data.length
      },
      flush: () => {},
      release: (_ctx, ino, fh) => {
        this.fhs.delete(fh)
        const n = this.node(ino)
        n.opens--
        this.maybeFree(n)
      },
      fsync: () => {},
      opendir: () => ({fh: 0}),
      readdir: (_ctx, ino, _fh, offset): DirEntry[] => {
        this.count('readdir')
        return this.dirEntries(this.dir(ino)).filter((e) => e.offset > offset)
      },
      readdirplus: this.options.noReaddirplus ? undefined : (_ctx, ino, _fh, offset): Iterable<DirEntryPlus> => {
        this.count('readdirplus')
        const d = this.dir(ino)
        const list = this.dirEntries(d).filter((e) => e.offset > offset)
        const self = this
        return (function* () {
          for (const e of list) {
            const isDot = e.name.equals(Buffer.from('.')) || e.name.equals(Buffer.from('..'))
            const n = self.nodes.get(e.ino)
            if (isDot || !n) {
              yield {name: e.name, offset: e.offset, entry: {ino: 0, attr: {...self.attr(d), ino: e.ino, mode: e.mode}, attrTimeout: 0, entryTimeout: 0}}
            } else {
              yield {name: e.name, offset: e.offset, entry: self.entry(n) as Entry & {attr: Attr}}
            }
          }
        })()
      },
      releasedir: () => {},
      fsyncdir: () => {},
      statfs: (): StatFs | Promise<StatFs> => (this.holdNames.has('statfs') ? this.waitHeld('statfs').then(() => this.statfs()) : this.statfs()),
      setxattr: (_ctx, ino, name, value, flags) => {
        const n = this.node(ino)
        const exists = n.xattrs.has(key(name))
        if ((flags & XATTR_CREATE) && exists) throw err('EEXIST')
        if ((flags & XATTR_REPLACE) && !exists) throw err('ENODATA')
        n.xattrs.set(key(name), {name: Buffer.from(name), value: Buffer.from(value)})
        n.ctime = now()
      },
      getxattr: (_ctx, ino, name) => {
        const x = this.node(ino).xattrs.get(key(name))
        if (!x) throw err('ENODATA')
        return x.value
      },
      listxattr: (_ctx, ino) => [...this.node(ino).xattrs.values()].map((x) => x.name),
      removexattr: (_ctx, ino, name) => {
        const n = this.node(ino)
        if (!n.xattrs.delete(key(name))) throw err('ENODATA')
        n.ctime = now()
      },
      create: (ctx, parent, name, mode, _flags): CreateReply => {
        const n = this.newChild(ctx, parent, name, mode)
        n.opens++
        const fh = this.nextFh++
        this.fhs.set(fh, n.ino)
        return {entry: this.entry(n), open: {fh}}
      },
      fallocate: (_ctx, ino, _fh, mode, off, len) => {
        const n = this.node(ino)
        const keep = (mode & FALLOC_FL_KEEP_SIZE) !== 0
        if (mode & FALLOC_FL_PUNCH_HOLE) {
          if (!keep) throw err('EOPNOTSUPP')
          this.zeroRange(n, off, Math.min(len, Math.max(0, n.size - off)), false)
        } else if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE)) !== 0) {
          throw err('EOPNOTSUPP')
        } else {
          if (mode & FALLOC_FL_ZERO_RANGE) this.zeroRange(n, off, len, true)
          for (let idx = Math.floor(off / CHUNK); idx * CHUNK < off + len; idx++) if (!n.chunks.has(idx)) n.chunks.set(idx, Buffer.alloc(CHUNK))
          if (!keep && off + len > n.size) n.size = off + len
        }
        n.ctime = now()
        if (!keep || (mode & FALLOC_FL_PUNCH_HOLE)) n.mtime = n.ctime
      },
      ioctl: this.options.noIoctl ? undefined : (_ctx, ino, _fh, cmd, _flags, _input, outSize) => {
        if (cmd >>> 0 !== IOCTL_GET_INO >>> 0 || outSize < 8) throw err('ENOTTY')
        const out = Buffer.alloc(8)
        out.writeBigUInt64LE(BigInt(ino))
        return {result: 0, data: out}
      },
      lseek: (_ctx, ino, _fh, off, whence) => {
        const n = this.node(ino)
        if (off >= n.size) throw err('ENXIO')
        let idx = Math.floor(off / CHUNK)
        if (whence === SEEK_DATA) {
          for (; idx * CHUNK < n.size; idx++) if (n.chunks.has(idx)) return Math.max(off, idx * CHUNK)
          throw err('ENXIO')
        }
        if (whence === SEEK_HOLE) {
          for (; idx * CHUNK < n.size; idx++) if (!n.chunks.has(idx)) return Math.max(off, idx * CHUNK)
          return n.size
        }
        throw err('EINVAL')
      },
      copyFileRange: (_ctx, inIno, _inFh, inOff, outIno, _outFh, outOff, len) => {
        const data = this.readAt(this.node(inIno), inOff, len)
        const out = this.node(outIno)
        this.writeAt(out, outOff, data)
        out.mtime = out.ctime = now()
        return data.length
      },
    }
  }
}
