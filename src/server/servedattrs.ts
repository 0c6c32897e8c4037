// `prism chmod`, `prism chown` (with -R: a walk of a whole tree) and `prism write` on a served
// image, asked of its server and run in slices between its mounts' requests
// (src/server/sliced.ts), rather than borrowing the image, which holds every FUSE request.
//
// chmod and chown ('attrs'): each argument on its own, as alone (src/fs/image.ts forEachItem):
// one that fails with an error about itself is reported ({error} line) and the next follows.
// Its change is dropped if it failed in its first step, before any slice ended (a missing
// path, a bad owner name); one that fails later keeps what it did, each inode's change whole
// (alone, a walk also commits as it goes on a large tree).
//
// write: the input follows the request line (`size` bytes). A small one is written in one
// step, as alone. A larger one is written in slices into an unnamed file (on the orphan list,
// freed if the work is dropped or the server dies), and its last step hands the blocks over
// to the file at the path (src/fs/extents.ts moveData): the file keeps its inode (hard links
// share it), its mode, owner and the bytes before an append, and shows its new content all at
// once, as alone; an interrupted or failed write leaves the file as it was.
import type net from 'node:net'
import {BLOCK_SIZE, S_IFREG} from '../format/constants.js'
import {PrismError, isArgumentError} from '../errors.js'
import {namespace} from '../fs/image.js'
import {moveData, readData} from '../fs/extents.js'
import type {Inode} from '../fs/inode.js'
import {chmodSteps, chownSteps, parseMode, parseOwner} from '../ops/attrs.js'
import type {ServedImage} from './image.js'
import {serveSliced, type SliceControl} from './sliced.js'

type ImagePath = {fileset: string, path: string}

/** chmod or chown of `locs` ('attrs'): `spec` is the mode, or OWNER[:GROUP]. */
export interface AttrsRequest {
  op: 'attrs'
  cmd: 'chmod' | 'chown'
  spec: string
  locs: ImagePath[]
  recursive?: boolean
  noDereference?: boolean
}

const isPath = (p: unknown): p is ImagePath => typeof (p as {fileset?: unknown})?.fileset === 'string' && typeof (p as {path?: unknown}).path === 'string'

/** Serves an 'attrs' request: {error} lines for the arguments not done, then {ok: true, changed: [{path, inodes}]}. */
export function serveAttrs(image: ServedImage, c: net.Socket, request: Record<string, unknown>, log: (msg: string) => void): void {
  const r = request as Partial<AttrsRequest>
  if ((r.cmd !== 'chmod' && r.cmd !== 'chown') || typeof r.spec !== 'string' || !Array.isArray(r.locs) || !r.locs.every(isPath)) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed attrs request'}) + '\n')
    return
  }
  const req = r as AttrsRequest
  serveSliced<Array<{path: string, inodes: number}>>(image, c, log, {
    what: `${req.cmd} of ${req.locs.map((l) => `${l.fileset}:${l.path}`).join(' ')}`,
    filesets: req.locs.map((l) => l.fileset),
    start: (ctl) => attrSteps(image, ctl, req),
    answer: (changed) => ({changed}),
  })
}

function* attrSteps(image: ServedImage, ctl: SliceControl, req: AttrsRequest): Generator<void, Array<{path: string, inodes: number}>> {
  const vol = image.vol
  const done: Array<{path: string, inodes: number}> = []
  for (const loc of req.locs) {
    // What the mounts changed is committed first: dropping this argument drops only its own.
    if (vol.hasChanges) image.commitNow()
    let yielded = false
    try {
      const ns = namespace(vol, loc.fileset)
      let steps: Generator<void, number>
      if (req.cmd === 'chown') {
        steps = chownSteps(ns, loc.path, parseOwner(ns, req.spec), {recursive: req.recursive, noDereference: req.noDereference}, ctl.changes)
      } else if (req.recursive) {
        steps = chmodSteps(ns, loc.path, (cur, isDir) => parseMode(req.spec, cur, isDir), ctl.changes)
      } else {
        const st = ns.stat(loc.path, true)
        ns.chmod(loc.path, parseMode(req.spec, st.perm, st.type === 'dir'))
        continue
      }
      for (;;) {
        const s = steps.next()
        if (s.done) {
          done.push({path: `${loc.fileset}:${loc.path}`, inodes: s.value})
          break
        }
        yielded = true
        yield
      }
    } catch (e) {
      if (!isArgumentError(e)) throw e
      if (!yielded) {
        vol.abort()
        image.dropPending()
      }
      ctl.send({error: {code: e.code, message: e.message}})
    }
  }
  return done
}

/** `prism write` ('write'): `size` bytes follow the request line. */
export interface WriteRequest {
  op: 'write'
  fileset: string
  path: string
  size: number
  append?: boolean
  /** permissions of a new file */
  mode: number
  /** the command's user and group: a new file's owner, as alone */
  uid?: number
  gid?: number
}

/** Inputs up to this size are written in one step, as alone (a few milliseconds at most). */
const ONE_STEP = 1024 * 1024
/** Bytes written per step of a larger one. */
const STEP_BYTES = 256 * 1024
/** Bytes of the input held before the socket is paused, and resumed. */
const HIGH_WATER = 16 * 1024 * 1024
const LOW_WATER = 4 * 1024 * 1024
/** Bytes written since the last commit that the server commits after a slice (as copyin). */
const COMMIT_DATA = 8 * 1024 * 1024

/** Serves a 'write' request (`rest`: what came after its request line): {ok: true, path, bytes, size}. */
export function serveWrite(image: ServedImage, c: net.Socket, request: Record<string, unknown>, rest: Buffer, log: (msg: string) => void): void {
  const r = request as Partial<WriteRequest>
  if (typeof r.fileset !== 'string' || typeof r.path !== 'string' || !Number.isSafeInteger(r.size) || r.size! < 0 || !Number.isInteger(r.mode)) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed write request'}) + '\n')
    return
  }
  const req = r as WriteRequest
  const queue: Buffer[] = []
  let queued = 0
  let received = 0
  const push = (d: Buffer) => {
    const take = d.subarray(0, req.size - received) // (a line after the input: the work stops)
    if (take.length) {
      queue.push(take)
      queued += take.length
      received += take.length
    }
    if (d.length > take.length) aborted = true
  }
  let aborted = false
  /** up to `n` bytes of what has come, taken off the queue */
  const take = (n: number): Buffer => {
    const parts: Buffer[] = []
    let got = 0
    while (got < n && queue.length) {
      const b = queue[0]
      const k = Math.min(b.length, n - got)
      parts.push(b.subarray(0, k))
      if (k === b.length) queue.shift()
      else queue[0] = b.subarray(k)
      got += k
    }
    queued -= got
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, got)
  }
  push(rest)
  let written = 0
  let committed = 0
  let need = 0
  serveSliced<{path: string, bytes: number, size: number}>(image, c, log, {
    what: `write of ${req.fileset}:${req.path}`,
    interrupt: request.interrupt,
    filesets: [req.fileset],
    start: () => writeSteps(image, req, {
      available: () => queued,
      take,
      need: (n) => {
        need = n
      },
      interrupted: () => aborted,
      wrote: (n) => {
        written += n
      },
    }),
    onData: (d) => {
      push(d)
      if (queued > HIGH_WATER) c.pause()
    },
    starved: () => !aborted && queued < need,
    commitDue: () => {
      if (written - committed < COMMIT_DATA) return false
      committed = written
      return true
    },
    afterSlice: () => {
      if (queued < LOW_WATER) c.resume()
    },
    answer: (res) => res,
  })
}

/**
 * Runs `fn` as one change of its own: what the mounts changed is committed first, and what
 * `fn` changed is dropped if it fails, as a command alone changes nothing when it fails.
 */
export function whole<T>(image: ServedImage, fn: () => T): T {
  if (image.vol.hasChanges) image.commitNow()
  try {
    return fn()
  } catch (e) {
    image.vol.abort()
    image.dropPending()
    throw e
  }
}

interface Input {
  /** bytes come and not yet taken */
  available(): number
  take(n: number): Buffer
  /** the work waits for `n` bytes (0: for none) */
  need(n: number): void
  /** the client sent more than the input: it asks the work to stop */
  interrupted(): boolean
  wrote(n: number): void
}

function* writeSteps(image: ServedImage, req: WriteRequest, input: Input): Generator<void, {path: string, bytes: number, size: number}> {
  const vol = image.vol
  const ns = namespace(vol, req.fileset)
  const show = `${req.fileset}:${req.path}`
  /** waits (yielding) until `n` bytes have come */
  function* bytes(n: number): Generator<void, Buffer> {
    input.need(n)
    while (input.available() < n) {
      if (input.interrupted()) throw new PrismError('EINTR', 'interrupted')
      yield
    }
    input.need(0)
    return input.take(n)
  }
  const open = () => ns.openForWrite(req.path, {mode: req.mode, truncate: !req.append, uid: req.uid, gid: req.gid})
  if (req.size <= ONE_STEP) {
    // As alone, in one step.
    const data = yield* bytes(req.size)
    return whole(image, () => {
      const inode = open()
      if (data.length) ns.writeInode(inode, req.append ? inode.r.size : 0, data)
      input.wrote(data.length)
      return {path: show, bytes: req.size, size: inode.r.size}
    })
  }
  // The path's directory is looked up now (the error alone gives before reading any input).
  ns.resolveParent(req.path, 'other')
  // An append keeps the file's blocks before the last partial one: the staged file starts
  // with that block's old bytes. The file must not change meanwhile (a mount writes it).
  let from = 0
  /** what the file was when its last block was read (its own copy, if a clone shares it, keeps these) */
  let base: string | null = null
  const state = (t: Inode) => `${t.r.size} ${t.r.dataVersion} ${t.r.mtimeS}.${t.r.mtimeNs}`
  const staged = vol.ialloc(S_IFREG | 0o600)
  staged.r.nlink = 0
  staged.r.dataVersion = 1
  vol.idirty(staged)
  vol.addOrphan(staged)
  vol.pinnedOrphans.add(staged.ino)
  try {
    let off = 0
    if (req.append && ns.exists(req.path, true)) {
      const t = ns.resolve(req.path, true)
      if (!t.isDir && !t.isSpecial) {
        base = state(t)
        from = Math.floor(t.r.size / BLOCK_SIZE)
        off = from * BLOCK_SIZE
        const head = readData(vol, t, off, t.r.size - off)
        if (head.length) ns.writeInode(staged, off, head)
        off += head.length
      }
    }
    for (let left = req.size; left > 0;) {
      const chunk = yield* bytes(Math.min(STEP_BYTES, left))
      ns.writeInode(staged, off, chunk)
      off += chunk.length
      left -= chunk.length
      input.wrote(chunk.length)
      yield
    }
    // Published in one step: the file at the path takes the staged blocks.
    return whole(image, () => {
      const target: Inode = open()
      if (req.append && (base === null ? target.r.size !== 0 : state(target) !== base)) {
        throw new PrismError('EBUSY', `${ns.where(req.path)}: the file changed while the input was being appended (a mount wrote it); nothing was written`)
      }
      moveData(vol, staged, target, from)
      ns.writeInode(target, target.r.size, Buffer.alloc(0)) // (times and version, as a write's)
      return {path: show, bytes: req.size, size: target.r.size}
    })
  } finally {
    // Freed by the reap that follows the work, or by the next open after a crash.
    vol.pinnedOrphans.delete(staged.ino)
  }
}
