// Where the server of an image listens, and how a client finds and talks to it. Kept free of
// library imports: the CLI reads it on every command that may have to forward to a server.
// The socket is named after the image file's device and inode (so every path to one image
// finds one server) in a runtime directory that only its user may enter: /run/prism as root,
// else $XDG_RUNTIME_DIR/prism or /tmp/prism-UID. It must never follow a symlink planted in a
// shared directory (the directory is checked to be ours and mode 0700) nor remove anything but
// a socket nobody answers on.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

/** The directory the sockets of this user's servers live in (made, 0700, if missing). */
export function runtimeDir(create = false): string {
  const uid = process.getuid?.() ?? 0
  const dir = uid === 0
    ? '/run/prism'
    : process.env.XDG_RUNTIME_DIR ? path.join(process.env.XDG_RUNTIME_DIR, 'prism') : path.join(os.tmpdir(), `prism-${uid}`)
  if (create) {
    try {
      fs.mkdirSync(dir, {recursive: true, mode: 0o700})
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    const st = fs.lstatSync(dir)
    if (!st.isDirectory() || st.uid !== uid) throw Object.assign(new Error(`${dir} is not a directory of this user`), {code: 'EACCES'})
    if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700)
  }
  return dir
}

/** What an image file is, to the server that holds it: its device and inode numbers. */
export interface ImageId {
  dev: number
  ino: number
}

/** The image file `image` is now (it must exist). */
export function imageId(image: string): ImageId {
  const st = fs.statSync(image)
  return {dev: st.dev, ino: st.ino}
}

/** The socket of the server of the image file `id`. */
export function socketOf(id: ImageId, create = false): string {
  return path.join(runtimeDir(create), `${id.dev}-${id.ino}.sock`)
}

/** The socket of the server of `image` (which must exist). */
export function socketPath(image: string, create = false): string {
  return socketOf(imageId(image), create)
}

/**
 * Whether the server that sent `reply` (to a ping or a list) holds the image file `id`. A
 * server names the file it holds open (it keeps it open for its whole life, so no other file
 * can be given its inode number meanwhile); one that names another file answers on this
 * socket by mistake, and one of a build before this check names none and is taken at its word.
 */
export function servesImage(reply: Reply, id: ImageId): boolean {
  if (typeof reply.dev !== 'number' || typeof reply.ino !== 'number') return true
  return reply.dev === id.dev && reply.ino === id.ino
}

/**
 * Asks the server of `image` (on its socket) `req`, a ping or a list; null when no server
 * listens there, or when the one that does holds another file (servesImage). A server that
 * takes the request and does not answer within `timeoutMs` (stopped, hung) is an error with
 * code ETIMEDOUT: it still holds the image, so the caller cannot go on as if none did.
 */
export async function askServerOf(image: string, req: {op: 'ping' | 'list'}, timeoutMs: number): Promise<{sock: string, reply: Reply} | null> {
  let id: ImageId
  try {
    id = imageId(image)
  } catch {
    return null
  }
  const sock = socketOf(id)
  if (!fs.existsSync(sock)) return null
  const reply = await request(sock, req, timeoutMs).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ETIMEDOUT') throw e
    return null
  })
  return reply?.ok && servesImage(reply, id) ? {sock, reply} : null
}

/** The log a server started in the background writes its messages to. */
export function logPath(image: string): string {
  return socketPath(image, true).replace(/\.sock$/, '.log')
}

/** One request and its answer: newline-delimited JSON. */
export interface Reply {
  ok: boolean
  code?: string
  message?: string
  [k: string]: unknown
}

/**
 * Sends one request to the server listening on `sock` and resolves with its answer; null when
 * no server listens there (no socket, or a stale one, which is then removed).
 */
export function request(sock: string, req: object, timeoutMs = 60_000): Promise<Reply | null> {
  return new Promise((resolve, reject) => {
    let buf = ''
    let done = false
    const c = net.createConnection(sock)
    const finish = (v: Reply | null, e?: Error): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      c.destroy()
      if (e) reject(e)
      else resolve(v)
    }
    const timer = setTimeout(() => finish(null, Object.assign(new Error(`the prism server on ${sock} did not answer within ${timeoutMs / 1000} s`), {code: 'ETIMEDOUT'})), timeoutMs)
    c.on('connect', () => c.write(JSON.stringify(req) + '\n'))
    c.setEncoding('utf8')
    c.on('data', (d: string) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl >= 0) finish(JSON.parse(buf.slice(0, nl)) as Reply)
    })
    c.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return finish(null)
      if (e.code === 'ECONNREFUSED') {
        removeStaleSocket(sock)
        return finish(null)
      }
      finish(null, e)
    })
    c.on('close', () => finish(null, new Error('the prism server closed the connection without answering')))
  })
}

/** Removes a socket file nobody listens on (its server died). */
export function removeStaleSocket(sock: string): void {
  try {
    const st = fs.lstatSync(sock)
    if (st.isSocket() && st.uid === (process.getuid?.() ?? 0)) fs.unlinkSync(sock)
  } catch {
    // gone already
  }
}

/** Every socket in this user's runtime directory (servers alive or dead). */
export function allSockets(): string[] {
  const dir = runtimeDir()
  try {
    return fs.readdirSync(dir).filter((n) => n.endsWith('.sock')).map((n) => path.join(dir, n))
  } catch {
    return []
  }
}
