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
import {PrismError} from '../errors.js'
import {sys} from '../sys.js'
import {takeExpanderLock} from '../clone/background.js'
import {type Mount, type MountSpec, ServedImage} from './image.js'
import {removeStaleSocket, request, socketPath, type Reply} from './paths.js'

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
  private expanderLock: number | null
  private stopping: Promise<void> | null = null
  private readonly log: (msg: string) => void
  /** settles when the server has stopped (the image is closed) */
  readonly stopped: Promise<void>
  private resolveStopped!: () => void

  constructor(readonly imagePath: string, private readonly options: ServerOptions) {
    this.log = options.log ?? ((m) => process.stderr.write(`prism: ${m}\n`))
    this.sock = socketPath(imagePath, true)
    this.image = new ServedImage(imagePath, {commitSeconds: options.commitSeconds, onError: this.log, wait: options.wait})
    this.expanderLock = takeExpanderLock(imagePath)
    this.image.onMountEnded = () => {
      if (this.options.idleExit && this.image.mounts.length === 0) void this.stop()
    }
    this.stopped = new Promise((resolve) => {
      this.resolveStopped = resolve
    })
  }

  /** Listens on the image's socket. Fails with EBUSY when another server answers there. */
  async listen(): Promise<void> {
    if (fs.existsSync(this.sock)) {
      const other = await request(this.sock, {op: 'ping'}, 5000).catch(() => null)
      if (other) throw new PrismError('EBUSY', `a prism server already serves this image (socket ${this.sock})`)
      removeStaleSocket(this.sock)
    }
    const server = net.createServer((c) => this.connection(c))
    const old = process.umask(0o177)
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(this.sock, () => {
          server.off('error', reject)
          resolve()
        })
      })
    } finally {
      process.umask(old)
    }
    fs.chmodSync(this.sock, 0o600)
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
    let buf = ''
    c.setEncoding('utf8')
    c.on('error', () => c.destroy())
    c.on('data', (d: string) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      c.pause()
      let req: {op?: string, [k: string]: unknown}
      try {
        req = JSON.parse(buf.slice(0, nl)) as typeof req
      } catch {
        c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed request'}) + '\n')
        return
      }
      if (req.op === 'snapshot') {
        // As a lend: the connection stays open while the command reads the snapshot.
        const end = new Promise<void>((resolve) => {
          c.once('close', () => resolve())
        })
        c.resume()
        c.on('data', () => {})
        if (this.stopping) {
          c.end(JSON.stringify({ok: false, code: 'EBUSY', message: 'the prism server of this image is shutting down'}) + '\n')
          return
        }
        // Beside the socket, in a directory only this user may enter (the command runs as the
        // same user: it found the socket in its own runtime directory).
        const log = path.join(path.dirname(this.sock), `prism-snap-${process.pid}-${++this.snapshotCount}-${Date.now().toString(36)}`)
        this.image.snapshot(log, end).then(() => {
          c.write(JSON.stringify({ok: true, log}) + '\n')
        }, (e: unknown) => {
          const err = e as Error & {code?: string}
          c.end(JSON.stringify({ok: false, code: typeof err.code === 'string' ? err.code : 'EIO', message: err.message}) + '\n')
        })
        return
      }
      if (req.op === 'lend') {
        // The connection stays open while the borrower has the image: its end (the command
        // exited, however) gives the image back.
        const back = new Promise<void>((resolve) => {
          c.once('close', () => resolve())
        })
        c.resume()
        c.on('data', () => {})
        if (this.stopping) {
          c.end(JSON.stringify({ok: false, code: 'EBUSY', message: 'the prism server of this image is shutting down'}) + '\n')
          return
        }
        const report = typeof req.report === 'string' ? {path: req.report, uid: this.peers.get(c) ?? -1} : undefined
        this.image.lend(back, report).then((lent) => {
          c.write(JSON.stringify({ok: true, ...lent}) + '\n')
        }, (e: unknown) => {
          const err = e as Error & {code?: string}
          c.end(JSON.stringify({ok: false, code: typeof err.code === 'string' ? err.code : 'EIO', message: err.message}) + '\n')
        })
        return
      }
      this.handle(req).then((r) => c.end(JSON.stringify(r) + '\n'), (e: unknown) => {
        const err = e as Error & {code?: string}
        c.end(JSON.stringify({ok: false, code: typeof err.code === 'string' ? err.code : 'EIO', message: err.message}) + '\n')
      }).finally(() => {
        if (this.options.idleExit && this.image.mounts.length === 0 && req.op === 'umount') void this.stop()
      })
    })
  }

  async handle(req: {op?: string, [k: string]: unknown}): Promise<Reply> {
    if (this.stopping && req.op !== 'ping') throw new PrismError('EBUSY', 'the prism server of this image is shutting down')
    switch (req.op) {
      case 'ping':
        return {ok: true, pid: process.pid, image: this.imagePath}
      case 'mount':
        await this.image.whenHeld()
        await this.mount(req as unknown as MountRequest)
        return {ok: true}
      case 'umount':
        await this.image.whenHeld()
        return {ok: true, ...(await this.unmount(String(req.mountpoint), Boolean(req.lazy)))}
      case 'list':
        return {ok: true, image: this.imagePath, mounts: this.list()}
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

  list(): MountListing[] {
    return this.image.mounts.map((m) => {
      const top = m.spec.top
      const opts = [m.spec.readOnly ? 'ro' : 'rw', m.spec.suid ? 'suid' : 'nosuid', m.spec.dev ? 'dev' : 'nodev']
      if (m.spec.allowOther) opts.push('allow_other')
      opts.push(`commit=${this.image.commitMs / 1000}`)
      return {mountpoint: m.mountpoint, source: top ? `${top.fileset}:${top.path}` : '', options: opts, device: m.session.device}
    })
  }

  /**
   * Unmounts everything (lazily when in use), commits, closes the image clean, stops listening.
   */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping
    this.stopping = (async () => {
      await this.image.whenHeld()
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
      removeStaleSocketIfOurs(this.sock)
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

function removeStaleSocketIfOurs(sock: string): void {
  try {
    fs.unlinkSync(sock)
  } catch {
    // gone
  }
}
