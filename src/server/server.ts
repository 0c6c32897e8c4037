// The Prism server: one process per image. It holds the image (its exclusive lock, and the
// background expander's lock, so that no separate expander runs while it serves) for its whole
// life, serves every FUSE mount of that image (src/server/image.ts, adapter.ts), and listens on
// a Unix socket (src/server/paths.ts) for the CLI: mount, unmount, list, lend the image to a
// command, take a snapshot for a read-only one (src/device/snapshot.ts). Started by
// `prism mount` (in the background, exiting after its last unmount) or by `prism serve` (in
// the foreground, until a signal).
//
// It must never: touch a mount it serves (it refuses a mount point inside one of its own
// mounts, since even resolving that path would send this process a request it cannot answer
// while it waits); answer a client before what it did is committed; or leave the image unclean
// when it exits normally.
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {PrismError, isArgumentError} from '../errors.js'
import {sys} from '../sys.js'
import {takeExpanderLock} from '../clone/background.js'
import {isExpanding} from '../fs/expand.js'
import {filesetById, getFileset, listFilesets} from '../fs/filesets.js'
import {type Mount, type MountSpec, ServedImage, ServerStopped, shuttingDown} from './image.js'
import {removeStaleSocket, request, servesImage, socketOf, type Reply} from './paths.js'
import {serveCopyIn} from './copyin.js'
import {serveCopy, serveDefrag} from './sliced.js'
import {serveAttrs, serveWrite} from './servedattrs.js'
import {serveRun} from './short.js'
import {serveSlicedClone} from './slicedclone.js'

/** The reply line for a request that failed with `e` (its PrismError code, else EIO). */
function failure(e: unknown): string {
  const err = e as Error & {code?: string}
  return JSON.stringify({ok: false, code: typeof err.code === 'string' ? err.code : 'EIO', message: err.message}) + '\n'
}

export interface ServerOptions {
  /** exit once the last mount has gone (a server `prism mount` started) */
  idleExit: boolean
  /** seconds between commits (commit=); default 5 */
  commitSeconds?: number
  /** seconds to wait for the image lock at start */
  wait?: number
  /** where messages nobody else can be told go; default stderr */
  log?: (msg: string) => void
}

export interface MountRequest extends MountSpec {
  commitSeconds?: number
}

export interface MountListing {
  mountpoint: string
  /** FILESET:/path, or '' for the whole image */
  source: string
  options: string[]
  device: string | undefined
}

export class Server {
  readonly image: ServedImage
  private readonly sock: string
  private net: net.Server | null = null
  /** the inode number of the socket file listen() made: stop() removes only that one */
  private sockIno = -1
  private expanderLock: number | null
  private stopping: Promise<void> | null = null
  private readonly log: (msg: string) => void
  /** settles when the server has stopped (the image is closed) */
  readonly stopped: Promise<void>
  private resolveStopped!: () => void

  constructor(readonly imagePath: string, private readonly options: ServerOptions) {
    this.log = options.log ?? ((m) => process.stderr.write(`prism: ${m}\n`))
    this.image = new ServedImage(imagePath, {commitSeconds: options.commitSeconds, onError: this.log, wait: options.wait})
    this.sock = socketOf(this.image.id, true)
    this.expanderLock = takeExpanderLock(imagePath)
    this.image.onMountEnded = () => {
      if (this.options.idleExit && this.image.mounts.length === 0) void this.stop()
    }
    this.stopped = new Promise((resolve) => {
      this.resolveStopped = resolve
    })
  }

  /**
   * Listens on the image's socket. Fails with EBUSY when another server of this image answers
   * there; takes the name from one that holds another file (it keeps its listening descriptor,
   * so it serves its own mounts on, but no client of this image reaches it).
   */
  async listen(): Promise<void> {
    if (fs.existsSync(this.sock)) {
      const other = await request(this.sock, {op: 'ping'}, 5000).catch(() => null)
      if (other && servesImage(other, this.image.id)) throw new PrismError('EBUSY', `a prism server already serves this image (socket ${this.sock})`)
      if (other) this.log(`the server on ${this.sock} (pid ${String(other.pid)}) holds another file, ${String(other.image)}: this one takes the socket`)
      removeStaleSocket(this.sock)
    }
    // Stopped while it waited (a signal): never listen with the image closed, or the process
    // would live on, holding the socket's name for nothing.
    if (this.stopping) throw shuttingDown()
    const server = net.createServer((c) => this.connection(c))
    // The socket is made by listen() itself, synchronously (bind): the umask that keeps it
    // private is set for that call only, not across the wait for 'listening', when this
    // process's other work (a mount's files, a log) would be made with it too.
    const listening = new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.once('listening', () => {
        server.off('error', reject)
        resolve()
      })
    })
    // Bound and listening under a name of this process's own, then renamed into place: a
    // client that finds the image's socket bound but not yet listening (ECONNREFUSED) takes
    // it for a dead server's and removes it (removeStaleSocket), which left this server
    // unreachable and its start failing (chmod: ENOENT).
    const fresh = `${this.sock}.${process.pid}`
    removeStaleSocket(fresh)
    const old = process.umask(0o177)
    try {
      server.listen(fresh)
    } finally {
      process.umask(old)
    }
    try {
      await listening
      fs.chmodSync(fresh, 0o600)
      fs.renameSync(fresh, this.sock)
    } catch (e) {
      server.close()
      fs.rmSync(fresh, {force: true})
      throw e
    }
    this.sockIno = fs.lstatSync(this.sock).ino
    if (this.stopping) {
      server.close()
      removeSocketIfOurs(this.sock, this.sockIno)
      throw shuttingDown()
    }
    this.net = server
  }

  /**
   * Why the process at the other end of `c` may not use this server, or null when it may: it
   * must run as root, as the image file's owner, or as this server's own user (SO_PEERCRED,
   * read by the kernel, not told by the client). Modes keep others out already; this is the
   * second wall, for a socket made reachable by mistake (a copied runtime directory, a bind
   * mount).
   */
  private refusal(c: net.Socket): string | null {
    const fd = (c as unknown as {_handle?: {fd?: number}})._handle?.fd
    if (typeof fd !== 'number' || fd < 0) return 'cannot tell who is connected'
    let uid: number
    try {
      uid = sys().peerCred(fd).uid
    } catch (e) {
      return `cannot read the peer's credentials: ${(e as Error).message}`
    }
    this.peers.set(c, uid)
    let owner = -1
    try {
      owner = fs.statSync(this.imagePath).uid
    } catch {}
    if (uid === 0 || uid === owner || uid === process.getuid?.()) return null
    return `uid ${uid} may not use the prism server of an image owned by uid ${owner}`
  }

  /** snapshots taken so far (their logs' names) */
  private snapshotCount = 0

  /** the uid at the other end of each connection let in (SO_PEERCRED) */
  private readonly peers = new WeakMap<net.Socket, number>()

  private connection(c: net.Socket): void {
    const refused = this.refusal(c)
    if (refused) {
      this.log(`refused a connection: ${refused}`)
      c.on('error', () => c.destroy())
      c.end(JSON.stringify({ok: false, code: 'EACCES', message: refused}) + '\n')
      return
    }
    // (bytes: a copy-in's stream follows its request line)
    let buf = Buffer.alloc(0)
    c.on('error', () => c.destroy())
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      const nl = buf.indexOf(10)
      if (nl < 0) return
      c.pause()
      c.off('data', onData)
      let req: {op?: string, [k: string]: unknown}
      try {
        req = JSON.parse(buf.subarray(0, nl).toString('utf8')) as typeof req
      } catch {
        c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed request'}) + '\n')
        return
      }
      if (req.op === 'copyin' || req.op === 'import' || req.op === 'copy' || req.op === 'defrag' || req.op === 'attrs' || req.op === 'write' || req.op === 'run') {
        if (this.stopping) {
          c.end(failure(shuttingDown()))
          return
        }
        // Work in slices between the mounts' requests (src/server/sliced.ts).
        if (req.op === 'copyin') serveCopyIn(this.image, c, req, buf.subarray(nl + 1), this.log)
        else if (req.op === 'copy') serveCopy(this.image, c, req, this.log)
        else if (req.op === 'attrs') serveAttrs(this.image, c, req, this.log)
        else if (req.op === 'write') serveWrite(this.image, c, req, buf.subarray(nl + 1), this.log)
        else if (req.op === 'run') serveRun(this.image, c, req, this.log)
        else if (req.op === 'defrag') serveDefrag(this.image, c, req, this.log)
        // (the importer is loaded on first use: a server that never imports starts without it)
        else {
          import('./import.js').then(({serveImport}) => serveImport(this.image, c, req, buf.subarray(nl + 1), this.log), (e: unknown) => {
            c.end(failure(e))
          })
        }
        return
      }
      if (req.op === 'snapshot') {
        // As a lend: the connection stays open while the command reads the snapshot.
        const end = this.heldWhileOpen(c)
        if (!end) return
        // Beside the socket, in a directory only this user may enter (the command runs as the
        // same user: it found the socket in its own runtime directory).
        const log = path.join(path.dirname(this.sock), `prism-snap-${process.pid}-${++this.snapshotCount}-${Date.now().toString(36)}`)
        this.image.snapshot(log, end).then(() => {
          c.write(JSON.stringify({ok: true, log}) + '\n')
        }, (e: unknown) => {
          c.end(failure(e))
        })
        return
      }
      if (req.op === 'lend') {
        // The connection stays open while the borrower has the image: its end (the command
        // exited, however) gives the image back.
        const back = this.heldWhileOpen(c)
        if (!back) return
        const report = typeof req.report === 'string' ? {path: req.report, uid: this.peers.get(c) ?? -1} : undefined
        this.image.lend(back, report).then((lent) => {
          c.write(JSON.stringify({ok: true, ...lent}) + '\n')
        }, (e: unknown) => {
          c.end(failure(e))
        })
        return
      }
      if (req.op === 'interrupt') {
        // Stops the work of another connection of the same user (ServedImage.interrupt); its
        // own connection is answered once the work has ended, done or dropped.
        c.end(JSON.stringify({ok: true, found: this.image.interrupt(req.token)}) + '\n')
        return
      }
      if (req.op === 'slicedclone') {
        // A graft, or a clone with replacements (whose host files may follow): src/server/slicedclone.ts.
        if (this.stopping) {
          c.end(failure(shuttingDown()))
          return
        }
        serveSlicedClone(this.image, c, req, buf.subarray(nl + 1), this.log)
        return
      }
      if (req.op === 'clone' || req.op === 'expand' || req.op === 'remove') {
        this.longRequest(c, req, buf.subarray(nl + 1))
        return
      }
      this.handle(req).then((r) => c.end(JSON.stringify(r) + '\n'), (e: unknown) => {
        c.end(failure(e))
      }).finally(() => {
        if (this.options.idleExit && this.image.mounts.length === 0 && req.op === 'umount') void this.stop()
      })
    }
    c.on('data', onData)
  }

  /**
   * For a request that lasts as long as its client's connection (a lend, a snapshot): a
   * promise that settles when the connection closes (the command exited, however), or null
   * when the server is stopping (the client is told so).
   */
  private heldWhileOpen(c: net.Socket): Promise<void> | null {
    const closed = new Promise<void>((resolve) => {
      c.once('close', () => resolve())
    })
    c.resume()
    c.on('data', () => {})
    if (!this.stopping) return closed
    c.end(failure(shuttingDown()))
    return null
  }

  /**
   * `clone` and `expand` (src/cli/servedexpand.ts): work that may be long, done in slices
   * between FUSE requests rather than by lending the image. Answered in lines on the
   * connection: progress lines ({progress}), for a sync clone {made: NAME} once it exists, for
   * expand one {item} per fileset, then the last line ({ok: true, ...} or an error). Any line
   * the client sends after its request, or its going away, cancels a sync clone (it is
   * deleted); an expansion goes on without it. If the server stops first, the connection is
   * closed without a last line: the client then finishes the work itself.
   */
  private longRequest(c: net.Socket, req: {op?: string, [k: string]: unknown}, rest: Buffer): void {
    const send = (o: object): void => {
      if (!c.destroyed) c.write(JSON.stringify(o) + '\n')
    }
    let cancel!: () => void
    const cancelled = new Promise<void>((resolve) => {
      cancel = resolve
    })
    c.once('close', cancel)
    c.on('data', (d: Buffer) => {
      if (d.includes(10)) cancel()
    })
    c.resume()
    if (rest.includes(10)) cancel()
    const work = this.stopping ? Promise.reject(shuttingDown())
      : req.op === 'clone' ? this.cloneRequest(req, send, cancelled) : req.op === 'remove' ? this.removeRequest(req, send, cancelled) : this.expandRequest(req, send)
    work.then((r) => {
      if (!c.destroyed) c.end(JSON.stringify(r) + '\n')
    }, (e: unknown) => {
      if (e instanceof ServerStopped) {
        c.destroy()
        return
      }
      if (!c.destroyed) c.end(failure(e))
    })
  }

  private async cloneRequest(req: {[k: string]: unknown}, send: (o: object) => void, cancelled: Promise<void>): Promise<Reply> {
    const src = req.src as {fileset?: unknown, path?: unknown} | undefined
    const dst = req.dst as {fileset?: unknown} | null | undefined
    const exclude = req.exclude
    const mode = req.mode
    if (typeof src?.fileset !== 'string' || typeof src.path !== 'string' || (dst != null && typeof dst.fileset !== 'string')
      || !Array.isArray(exclude) || !exclude.every((x) => typeof x === 'string') || (mode !== 'async' && mode !== 'lazy' && mode !== 'sync')) {
      throw new PrismError('EUSAGE', 'malformed clone request')
    }
    // A sync clone's client is told its name as soon as it is committed: should this server
    // die, the client finishes that clone.
    const onMade = mode === 'sync' ? (name: string) => send({made: name}) : undefined
    const made = await this.image.cloneNew({fileset: src.fileset, path: src.path}, dst ? {fileset: dst.fileset as string} : null, {exclude: exclude as string[], mode, onMade})
    const {result, job, tally} = made
    if (!job) return {ok: true, result}
    const stats = () => ({dirs: tally!.dirs, shared: tally!.shared, copiedHardlinked: tally!.copiedHardlinked, excluded: tally!.excluded, replaced: 0})
    let last = 0
    job.onProgress = () => {
      if (Date.now() - last < 100) return
      last = Date.now()
      send({progress: stats()})
    }
    const stop = cancelled.then(() => 'cancelled' as const)
    const end = await Promise.race([job.done.then(() => 'done' as const), stop])
    if (end === 'cancelled') {
      await this.image.dropClone(job)
      throw new PrismError('EINTR', 'interrupted')
    }
    return {ok: true, result: {...result, stats: stats()}}
  }

  /**
   * `prism fileset delete` ({filesets}) and `prism rm` ({paths}) (src/cli/servedremove.ts): one
   * {item: {i}} line per item once it is detached (gone from the mounts), or {item: {i, error}}
   * when it could not be (it changed nothing), then the last line once everything detached is
   * freed. A line from the client, or its going away (Ctrl-C), stops the detaching: the answer
   * comes at once, {ok: true} when every item was through already (the command is done, as
   * alone past its last item's commit), else EINTR (the items not reached stay, as alone);
   * what was detached is freed all the same.
   */
  private async removeRequest(req: {[k: string]: unknown}, send: (o: object) => void, cancelled: Promise<void>): Promise<Reply> {
    const force = req.force === true
    const onItem = (i: number, e?: PrismError) => send({item: e ? {i, error: {code: e.code, message: e.message}} : {i}})
    let what: Parameters<ServedImage['remove']>[0]
    if (Array.isArray(req.filesets) && req.filesets.every((x) => typeof x === 'string')) {
      what = {filesets: req.filesets as string[], force}
    } else if (Array.isArray(req.paths) && req.paths.every((p: {fileset?: unknown, path?: unknown}) => typeof p?.fileset === 'string' && typeof p.path === 'string')) {
      what = {paths: req.paths as Array<{fileset: string, path: string}>, recursive: req.recursive === true, force}
    } else {
      throw new PrismError('EUSAGE', 'malformed remove request')
    }
    let asked = false
    void cancelled.then(() => { asked = true })
    let detachedAll!: (all: boolean) => void
    const detached = new Promise<boolean>((resolve) => { detachedAll = resolve })
    const removal = this.image.remove(what, onItem, {requested: () => asked, asked: cancelled, onDetached: (_n, all) => detachedAll(all)})
    const freed = removal.then(() => 'freed' as const)
    freed.catch(() => {}) // (a failure after the client was answered: logged below)
    if (await Promise.race([freed, cancelled.then(() => 'asked' as const)]) === 'freed') return {ok: true}
    // Asked to stop: the freeing goes on without the client, which is answered once the
    // detaching has stopped (at its next step), not after the freeing.
    removal.catch((e: unknown) => {
      if (!(e instanceof ServerStopped)) this.log(`removing: ${(e as Error).message}`)
    })
    if (await Promise.race([detached, removal.then(() => false, () => false)])) return {ok: true}
    throw new PrismError('EINTR', 'interrupted')
  }

  private async expandRequest(req: {[k: string]: unknown}, send: (o: object) => void): Promise<Reply> {
    const names = req.names
    if (!Array.isArray(names) || !names.every((x) => typeof x === 'string')) throw new PrismError('EUSAGE', 'malformed expand request')
    await this.image.whenHeld()
    const targets = req.all ? listFilesets(this.image.vol).filter(isExpanding).map((f) => f.name) : names as string[]
    for (const name of targets) {
      await this.image.whenHeld()
      let job
      try {
        const f = getFileset(this.image.vol, name)
        if (!isExpanding(f)) {
          send({item: {fileset: f.name, dirs: 0}})
          continue
        }
        job = this.image.expandFirst(f.name)
      } catch (e) {
        // A name that is not a fileset is reported and the others go on, as alone; anything
        // else ends the command.
        if (!isArgumentError(e)) throw e
        send({item: {error: {code: e.code, message: e.message}}})
        continue
      }
      let last = 0
      const j = job
      j.onProgress = () => {
        if (Date.now() - last < 100) return
        last = Date.now()
        const rec = filesetById(this.image.vol, j.filesetId)
        if (rec) send({progress: {fileset: name, dirs: rec.dirsDone - j.startDone}})
      }
      const dirs = await job.done
      send({item: {fileset: name, dirs}})
    }
    return {ok: true}
  }

  async handle(req: {op?: string, [k: string]: unknown}): Promise<Reply> {
    if (this.stopping && req.op !== 'ping') throw shuttingDown()
    switch (req.op) {
      case 'ping':
        return {ok: true, pid: process.pid, image: this.imagePath, ...this.image.id}
      case 'mount':
        await this.image.whenHeld()
        await this.mount(req as unknown as MountRequest)
        return {ok: true}
      case 'umount':
        await this.image.whenHeld()
        return {ok: true, ...(await this.unmount(String(req.mountpoint), Boolean(req.lazy)))}
      case 'list':
        return {ok: true, image: this.imagePath, ...this.image.id, mounts: this.list(), lent: this.image.lent}
      default:
        throw new PrismError('EUSAGE', `unknown request '${String(req.op)}'`)
    }
  }

  async mount(spec: MountRequest): Promise<Mount> {
    const mp = spec.mountpoint
    for (const m of this.image.mounts) {
      if (m.mountpoint === mp) throw new PrismError('EBUSY', `${mp} is already a mount of this image`)
      // Even resolving a path inside a mount this process serves would wait on this process.
      if (mp.startsWith(m.mountpoint === '/' ? '/' : m.mountpoint + '/')) {
        throw new PrismError('EINVAL', `${mp} is inside ${m.mountpoint}, a mount of the same image: mount it elsewhere (or bind-mount it there)`)
      }
    }
    if (spec.commitSeconds !== undefined) this.image.setCommitSeconds(spec.commitSeconds)
    try {
      return await this.image.addMount(spec)
    } catch (e) {
      const err = e as Error & {code?: string}
      if (err instanceof PrismError) throw err
      throw new PrismError('EIO', err.message.replace(/^cannot mount FUSE on /, 'cannot mount on '))
    }
  }

  async unmount(mountpoint: string, lazy: boolean): Promise<{found: boolean}> {
    const m = this.image.mounts.find((x) => x.mountpoint === mountpoint)
    if (!m) return {found: false}
    try {
      await this.image.unmount(m, lazy)
    } catch (e) {
      const err = e as Error & {code?: string}
      if (err.code === 'EBUSY') throw new PrismError('EBUSY', `${mountpoint}: target is busy (a process uses it; prism umount --lazy detaches it now)`)
      throw new PrismError('EIO', err.message)
    }
    return {found: true}
  }

  /** The fileset's name now (renamed since it was mounted, say), else the name it was mounted by. */
  private filesetName(id: number, given: string): string {
    try {
      return this.image.lent ? given : filesetById(this.image.vol, id)?.name ?? given
    } catch {
      return given // (the table unreadable: the mount is listed all the same)
    }
  }

  list(): MountListing[] {
    return this.image.mounts.map((m) => {
      const top = m.spec.top
      const opts = [m.spec.readOnly ? 'ro' : 'rw', m.spec.suid ? 'suid' : 'nosuid', m.spec.dev ? 'dev' : 'nodev']
      if (m.spec.allowOther) opts.push('allow_other')
      opts.push(`commit=${this.image.commitMs / 1000}`)
      return {mountpoint: m.mountpoint, source: top ? `${this.filesetName(m.fs.root.fs, top.fileset)}:${top.path}` : '', options: opts, device: m.session.device}
    })
  }

  /**
   * Unmounts everything (lazily when in use), commits, closes the image clean, stops listening.
   */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping
    this.stopping = (async () => {
      await this.image.whenHeld()
      await this.image.stopWork()
      for (const m of [...this.image.mounts]) {
        try {
          await this.image.unmount(m, false)
        } catch {
          await this.image.unmount(m, true).catch((e: unknown) => this.log(`unmounting ${m.mountpoint}: ${(e as Error).message}`))
        }
      }
      // A snapshot reads the image file: it ends before the image is closed (and another
      // process may write it without logging what it overwrites).
      await this.image.whenNoSnapshots()
      this.net?.close()
      removeSocketIfOurs(this.sock, this.sockIno)
      try {
        this.image.close()
      } catch (e) {
        this.log(`closing the image: ${(e as Error).message}`)
      }
      // The log of a server prism mount started: kept only when it says something.
      const log = process.env.PRISM_SERVER_LOG
      if (log) {
        try {
          if (fs.statSync(log).size === 0) fs.unlinkSync(log)
        } catch {
          // gone
        }
      }
      if (this.expanderLock !== null) fs.closeSync(this.expanderLock)
      this.expanderLock = null
      this.resolveStopped()
    })()
    return this.stopping
  }
}

/** Removes `sock` if it is still the socket file this server made (`made`, its inode number). */
function removeSocketIfOurs(sock: string, made: number): void {
  try {
    if (fs.lstatSync(sock).ino === made) fs.unlinkSync(sock)
  } catch {
    // gone
  }
}
