// The client side of `prism mount`, `prism umount` and `prism serve`: parsing -o options,
// finding the server of an image or starting one in the background, asking it to mount or
// unmount, cleaning up after a server that died, and listing mounts. It must never touch a
// FUSE mount from this process except through a child process with a time limit (a hung
// server would hang it), nor remove a mount or socket that a live server answers for.
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {PrismError} from '../errors.js'
import {fuseMountAt, lazyUnmount, listMounts, probeMount} from '../fuse/mounts.js'
import {allSockets, imageId, logPath, request, servesImage, socketOf, type Reply} from '../server/paths.js'
import type {MountListing, MountRequest} from '../server/server.js'
import {answerMs, silentServer} from './served.js'

export interface MountFlags {
  readOnly: boolean
  suid: boolean
  dev: boolean
  allowOther: boolean
  commitSeconds?: number
}

/** -o ro,suid,dev,allow_other,commit=SECONDS (and their opposites rw, nosuid, nodev). */
export function parseMountOptions(list: string[]): MountFlags {
  const o: MountFlags = {readOnly: false, suid: false, dev: false, allowOther: false}
  for (const item of list.flatMap((s) => s.split(','))) {
    const [k, v] = item.includes('=') ? [item.slice(0, item.indexOf('=')), item.slice(item.indexOf('=') + 1)] : [item, undefined]
    switch (k) {
      case '': break
      case 'ro': o.readOnly = true; break
      case 'rw': o.readOnly = false; break
      case 'suid': o.suid = true; break
      case 'nosuid': o.suid = false; break
      case 'dev': o.dev = true; break
      case 'nodev': o.dev = false; break
      case 'allow_other': o.allowOther = true; break
      case 'default_permissions': break // always on
      case 'commit': {
        const n = Number(v)
        if (v === undefined || !/^\d+(\.\d*)?$/.test(v) || !(n > 0) || n > 86400) throw new PrismError('EUSAGE', `invalid mount option 'commit=${v ?? ''}': give seconds, from 0.1 to 86400`)
        o.commitSeconds = n
        break
      }
      default:
        throw new PrismError('EUSAGE', `unknown mount option '${item}' (known: ro, rw, suid, nosuid, dev, nodev, allow_other, commit=SECONDS)`)
    }
  }
  return o
}

/** The mount point, checked from this process (it is not a mount of ours): absolute, real, a directory. */
export function checkMountpoint(arg: string): string {
  const abs = path.resolve(arg)
  let real: string
  try {
    real = fs.realpathSync(abs)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') throw new PrismError('EBUSY', `${abs}: a dead mount is there (its server is gone): run prism umount ${arg} first`)
    throw new PrismError('ENOENT', `${abs}: no such directory (create the mount point first)`)
  }
  if (!fs.statSync(real).isDirectory()) throw new PrismError('ENOTDIR', `${abs}: not a directory`)
  const m = fuseMountAt(real)
  if (m && m.fstype === 'fuse.prism') throw new PrismError('EBUSY', `${abs}: a prism mount is there already (prism umount ${arg} first)`)
  return real
}

/** The `prism` binary running now (or this package's). */
function binPath(): string {
  const self = process.argv[1] ?? ''
  return /[\\/]bin[\\/]run\.js$/.test(self) ? self : fileURLToPath(new URL('../../bin/run.js', import.meta.url))
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Exit statuses of `prism serve` that mean a known failure, and the code to report it with. */
const CODE_OF_EXIT: Record<number, PrismError['code']> = {1: 'EBUSY', 2: 'EUSAGE', 3: 'ELOCKED', 5: 'EBADIMAGE', 6: 'ENOSPC', 7: 'EIO'}

/**
 * The socket of the server of `image`, starting one in the background (it exits after its
 * last unmount) when none answers. The server's messages go to a log beside its socket; if it
 * fails to start, its last message is this command's error.
 */
export async function ensureServer(image: string, wait: number): Promise<string> {
  const id = imageId(image)
  const sock = socketOf(id, true)
  // Only a server that holds this file counts (one of another file may answer on its socket).
  const answers = async (timeoutMs: number): Promise<boolean> => {
    const r = await request(sock, {op: 'ping'}, timeoutMs)
    return r !== null && r.ok && servesImage(r, id)
  }
  const waitMs = answerMs()
  const held = await answers(waitMs).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ETIMEDOUT') throw e
    throw new PrismError('ELOCKED', silentServer(image, waitMs))
  })
  if (held) return sock
  const log = logPath(image)
  // Appended to, never truncated: an earlier server's lines (one of another file that had
  // the same device and inode numbers, or one that failed) stay for whoever looks into it.
  // Past LOG_MAX the log moves to LOG.1 first (one generation kept).
  try {
    if (fs.statSync(log).size > LOG_MAX) fs.renameSync(log, `${log}.1`)
  } catch {
    // no log yet
  }
  const fd = fs.openSync(log, 'a', 0o600)
  const from = fs.fstatSync(fd).size
  fs.writeSync(fd, `-- ${new Date().toISOString()} prism mount (pid ${process.pid}) starts a server for ${image}\n`)
  const args = [binPath(), 'serve', '--image', image, '--exit-when-idle', '--wait', String(wait)]
  const child = spawn(process.execPath, args, {detached: true, stdio: ['ignore', fd, fd], env: {...process.env, PRISM_SERVER_LOG: log}})
  fs.closeSync(fd)
  let exited: number | null = null
  child.on('exit', (code, signal) => {
    exited = code ?? 128 + (signal === 'SIGKILL' ? 9 : 15)
  })
  child.unref()
  const end = Date.now() + (wait + 20) * 1000
  for (;;) {
    if (exited !== null) {
      const msg = lastLine(log, from)
      const code = CODE_OF_EXIT[exited] ?? 'EIO'
      throw new PrismError(code, msg ? msg.replace(/^prism: /, '') : `the prism server of ${image} could not start (exit ${exited}; see ${log})`, exited === 130 || exited === 143 ? exited : undefined)
    }
    if (await answers(5000).catch(() => false)) return sock
    if (Date.now() > end) {
      // It is not left behind, holding the socket's name: asked to stop, it closes the image clean.
      try {
        if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM')
      } catch {
        // gone
      }
      throw new PrismError('EIO', `the prism server of ${image} did not start in time (pid ${child.pid ?? '?'}${lastLine(log, from) ? `, its last message: ${lastLine(log, from)}` : ''}; see ${log})`)
    }
    await sleep(50)
  }
}

/** A server's log is moved aside past this size when the next one starts. */
const LOG_MAX = 1 << 20

/** The last `prism: ` line the server started at byte `from` of its log wrote, '' when there is none. */
function lastLine(log: string, from: number): string {
  try {
    return fs.readFileSync(log).subarray(from).toString('utf8').trim().split('\n').filter((l) => l.startsWith('prism: ')).pop() ?? ''
  } catch {
    return '' // no log
  }
}

function fromReply(r: Reply | null, what: string): Reply {
  if (r === null) throw new PrismError('EIO', `${what}: the prism server went away`)
  if (!r.ok) {
    const code = (r.code ?? 'EIO') as PrismError['code']
    let err: PrismError
    try {
      err = new PrismError(code, r.message ?? what)
    } catch {
      err = new PrismError('EIO', r.message ?? what)
    }
    if (err.exitCode === undefined) throw new PrismError('EIO', r.message ?? what)
    throw err
  }
  return r
}

/** Asks the server of `image` (started if needed) to mount. */
export async function mountVia(image: string, spec: MountRequest, wait: number): Promise<void> {
  const sock = await ensureServer(image, wait)
  fromReply(await request(sock, {op: 'mount', ...spec}, 120_000), `mounting ${spec.mountpoint}`)
}

export interface Listed extends MountListing {
  image: string
  /**
   * 'dead': the server is gone, the mount is left ("Transport endpoint is not connected");
   * 'silent': its server is there but does not answer (stopped, hung)
   */
  state: 'served' | 'dead' | 'silent'
}

/**
 * The image file a mount's source names (IMAGE, IMAGE:FILESET or IMAGE:FILESET:/path, where
 * the image's own path may hold ':'): the longest such prefix that is a file; else all of it.
 */
function imageOfSource(src: string): string {
  for (let at = src.length; at > 0; at = src.lastIndexOf(':', at - 1)) {
    try {
      if (fs.statSync(src.slice(0, at)).isFile()) return src.slice(0, at)
    } catch {
      // not this prefix
    }
  }
  return src
}

/** Every prism mount this user's servers serve, and prism mounts whose server is gone. */
export async function listAll(image?: string): Promise<Listed[]> {
  const out: Listed[] = []
  /** sockets whose server took the request and did not answer */
  const silent = new Set<string>()
  for (const sock of allSockets()) {
    const r = await request(sock, {op: 'list'}, answerMs()).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ETIMEDOUT') silent.add(sock)
      return null
    })
    if (!r?.ok) continue
    for (const m of r.mounts as MountListing[]) out.push({...m, image: String(r.image), state: 'served'})
  }
  const known = new Set(out.map((m) => m.mountpoint))
  for (const m of listMounts()) {
    if (m.fstype !== 'fuse.prism' || known.has(m.mountpoint)) continue
    // its source is prism:IMAGE or prism:IMAGE:FILESET/path (src/server/image.ts)
    const src = m.source.replace(/^prism:/, '')
    const img = image !== undefined && src.startsWith(image + ':') ? image : imageOfSource(src)
    let state: Listed['state'] = 'dead'
    try {
      if (silent.has(socketOf(imageId(img)))) state = 'silent'
    } catch {
      // its image is gone: so is its server
    }
    out.push({mountpoint: m.mountpoint, source: img === src ? '' : src.slice(img.length + 1), image: img, options: m.options, device: m.device, state})
  }
  return image === undefined ? out : out.filter((m) => m.image === image)
}

/**
 * Unmounts the prism mount on `arg`: through its server (which commits, and exits after its
 * last mount), or, when its server is gone, by detaching the dead mount.
 */
export async function umountVia(arg: string, lazy: boolean): Promise<'unmounted' | 'recovered'> {
  const abs = path.resolve(arg)
  const m = fuseMountAt(abs)
  if (!m) throw new PrismError('EINVAL', `${abs}: not mounted`)
  if (m.fstype !== 'fuse.prism') throw new PrismError('EINVAL', `${abs}: not a prism mount (${m.fstype}); use umount`)
  for (const sock of allSockets()) {
    const r = await request(sock, {op: 'list'}, answerMs()).catch(() => null)
    if (!r?.ok || !(r.mounts as MountListing[]).some((x) => x.mountpoint === m.mountpoint)) continue
    const u = fromReply(await request(sock, {op: 'umount', mountpoint: m.mountpoint, lazy}, 120_000), `unmounting ${abs}`)
    if (u.found) return 'unmounted'
  }
  // No server answers for it: a dead mount (its server was killed), or a hung one.
  const state = await probeMount(m.mountpoint, 5000)
  if (state === 'alive' && !lazy) throw new PrismError('EBUSY', `${abs}: no prism server of this user answers for this mount; prism umount --lazy detaches it`)
  await lazyUnmount(m.mountpoint).catch((e: unknown) => {
    throw new PrismError('EIO', (e as Error).message)
  })
  // A server that is there but answers nothing (stopped, hung) still holds what it had not
  // committed: said, since this is not the unmount that commits everything.
  if (state === 'hung') process.stderr.write(`prism: ${abs}: detached; its server did not answer (stopped or hung?), and commits what it had not committed only if it resumes\n`)
  return 'recovered'
}
