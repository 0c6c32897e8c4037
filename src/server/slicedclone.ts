// `prism clone` on a served image, made by the server in slices when it is a graft (`clone
// SRC FILESET:/path`) or has replacements (--replace): request 'slicedclone' (src/cli/
// servedexpand.ts asks; a request of its own, so that a server of an older prism refuses it
// rather than making a clone without its replacements). The server runs the very steps the command runs alone (src/clone/clone.ts cloneSteps) for about
// SLICE_MS at a time between the mounts' requests: a sync clone or graft is built under a
// pinned orphan root, out of sight, and named (entered in the fileset table, or linked into
// the target directory) by its last step; an async or lazy clone with replacements is a
// DELETING fileset until they are in. The server then commits, tells the mounts' kernels, and
// answers. A source still expanding is expanded first (alone: expandAll), in the usual slices.
//
// Replacements from host paths are never read here: the command reads them and streams them
// after its request line (src/ops/hoststream.ts), in the order the clone asks for them, and
// the copy reads the stream (StreamSource) as `prism cp` into a served image does
// (src/server/copyin.ts).
//
// Replies, JSON lines: {progress: CloneStats} now and then, {done: CloneResult} once the clone
// is committed (a client whose server dies after that has its answer), then {ok: true, result}
// or {ok: false, code, message}. The client going away (or, without a stream, sending a line)
// stops the clone: nothing of it shows, as alone. A crash leaves the orphan tree (or the
// DELETING fileset) for the next open to free. The source fileset is frozen from the request
// on (ServedImage.freeze: the mounts' requests that would change it wait, reads go on) until
// the walk has read it, so that the clone is of the source when the command started; the
// target may change between slices (the graft's place is checked again before it is linked:
// EEXIST or ENOENT then).
import type net from 'node:net'
import {PrismError} from '../errors.js'
import {cloneSteps, type CloneResult, type CloneStats, type Replacement} from '../clone/clone.js'
import {FS_EXPANDING} from '../format/constants.js'
import {findFileset, getFileset} from '../fs/filesets.js'
import {reapOrphans} from '../fs/namespace.js'
import {StreamSource, type StreamedSource} from '../ops/hoststream.js'
import {requestsWaiting} from '../fuse/index.js'
import {type ServedImage, ServerStopped, shuttingDown} from './image.js'
// (the slice and commit sizes of every work in slices)
import {COMMIT_BLOCKS, COMMIT_DATA, HIGH_WATER, LOW_WATER, MIN_SLICE_MS, SLICE_MS} from './sliced.js'


export interface SlicedCloneRequest {
  src: {fileset: string, path: string}
  dst: {fileset: string, path?: string} | null
  exclude: string[]
  mode: 'async' | 'lazy' | 'sync'
  replace: Replacement[]
  /** the host paths of the replacements, streamed after the request line, in their order */
  srcs: StreamedSource[]
}

function isRequest(r: Record<string, unknown>): r is Record<string, unknown> & SlicedCloneRequest {
  const src = r.src as {fileset?: unknown, path?: unknown} | undefined
  const dst = r.dst as {fileset?: unknown, path?: unknown} | null | undefined
  const str = (x: unknown): x is string => typeof x === 'string'
  return str(src?.fileset) && str(src.path) && (dst === null || (str(dst?.fileset) && (dst.path === undefined || str(dst.path))))
    && Array.isArray(r.exclude) && r.exclude.every(str) && (r.mode === 'async' || r.mode === 'lazy' || r.mode === 'sync')
    && Array.isArray(r.replace) && r.replace.every((x: Replacement) => str(x?.path) && str(x.source))
    && Array.isArray(r.srcs) && r.srcs.every((x: StreamedSource) => str(x?.path) && str(x.base))
}

/** The end of the last such clone each image was asked for: they go one at a time, in order. */
const queue = new WeakMap<ServedImage, Promise<void>>()

/** Serves one clone in slices on connection `c` (`rest`: what came after its request line). */
export function serveSlicedClone(image: ServedImage, c: net.Socket, request: Record<string, unknown>, rest: Buffer, log: (msg: string) => void): void {
  const send = (v: unknown): void => {
    if (!c.destroyed) c.write(JSON.stringify(v) + '\n')
  }
  if (!isRequest(request)) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed clone request'}) + '\n')
    return
  }
  const req: SlicedCloneRequest = request
  const source = req.srcs.length ? new StreamSource(req.srcs) : null
  let stop: Error | null = null
  let kick = (): void => {}
  let waiting = false
  const cancel = (): void => {
    stop ??= new PrismError('EINTR', 'interrupted')
    kick()
  }
  if (source) {
    source.push(rest)
    c.on('data', (d: Buffer) => {
      source.push(d)
      if (source.queued > HIGH_WATER) c.pause()
      if (waiting) kick()
    })
  } else {
    if (rest.includes(10)) cancel()
    c.on('data', (d: Buffer) => {
      if (d.includes(10)) cancel()
    })
  }
  c.on('close', cancel)
  c.resume()
  const forget = image.whenInterrupted(request.interrupt, cancel)

  let resolveDone!: () => void
  const work = {
    abort: () => {
      stop ??= new ServerStopped('the prism server stopped')
      kick()
    },
    done: new Promise<void>((r) => {
      resolveDone = r
    }),
  }
  // The source is frozen from now (its mounts' changing requests wait) until the clone no
  // longer reads it: the clone holds what the source held when the command started, as alone.
  // (Frozen as soon as the image is held: while it is lent, the mounts change nothing.)
  const walksSource = req.mode === 'sync' || req.dst?.path !== undefined
  let thaw: (() => Promise<void>) | null = null
  const freezeSource = (): void => {
    if (thaw || image.lent || image.isClosed) return
    const fs = findFileset(image.vol, req.src.fileset)
    if (fs) thaw = image.freeze(fs.id)
  }
  const thawSource = async (): Promise<void> => {
    const t = thaw
    thaw = null
    if (t) await t()
  }
  freezeSource()
  const before = queue.get(image) ?? Promise.resolve()
  queue.set(image, before.then(() => work.done))
  void (async () => {
    try {
      await before
      await image.whenHeld()
      if (image.isClosed) throw shuttingDown()
      freezeSource()
      const src = getFileset(image.vol, req.src.fileset)
      if (src.state === FS_EXPANDING && (req.mode === 'sync' || req.dst?.path !== undefined)) await image.expandFirst(src.name).done
      await image.whenHeld()
      if (image.isClosed) throw shuttingDown()
      const end = image.beginWork(work)
      let result: CloneResult
      try {
        result = await run()
      } finally {
        end()
      }
      await thawSource() // (the mounts show the held requests' changes and the clone's before the command is answered)
      send({ok: true, result})
      c.end()
    } catch (e) {
      const err = e as Error & {code?: string}
      if (err instanceof ServerStopped) c.destroy()
      else if (!c.destroyed) c.end(JSON.stringify({ok: false, code: typeof err.code === 'string' ? err.code : 'EIO', message: err.message}) + '\n')
      if (!(err instanceof PrismError) && !(err instanceof ServerStopped)) log(`clone ${req.src.fileset}:${req.src.path}: ${err.stack ?? err.message}`)
    } finally {
      forget()
      void thawSource()
      resolveDone()
    }
  })()

  function run(): Promise<CloneResult> {
    const vol = image.vol
    // What requests changed is committed first: the clone's failure drops nothing of theirs.
    if (vol.hasChanges) image.commitNow()
    const onProgress = (s: CloneStats): void => send({progress: s}) // (every 100 ms at most)
    const steps = cloneSteps(vol, req.src, req.dst, {exclude: req.exclude, mode: req.mode, replace: req.replace, onProgress, host: source ?? undefined})
    let sliceStart = 0
    let committedData = 0
    if (source) source.yieldNow = () => requestsWaiting() > 0 && performance.now() - sliceStart >= MIN_SLICE_MS
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Immediate | null = null
      let finished = false
      kick = () => {
        waiting = false
        if (!finished) timer ??= setImmediate(slice)
      }
      const fail = (e: unknown): void => {
        finished = true
        // The orphan tree (or the DELETING fileset) is freed now, and committed.
        try {
          if (!image.isClosed) {
            reapOrphans(vol)
            image.commitNow()
          }
        } catch {
          // (the image failed: reported by commitNow; the next open frees the tree)
        }
        void image.notify(true).then(() => reject(e))
      }
      const slice = (): void => {
        timer = null
        if (stop || image.isClosed) {
          try {
            steps.return(undefined as never) // (its finally blocks unpin the root)
          } catch {
            // already ended
          }
          fail(stop ?? new ServerStopped('the prism server stopped'))
          return
        }
        sliceStart = performance.now()
        if (source) source.deadline = sliceStart + SLICE_MS
        let r: IteratorResult<void, CloneResult>
        let starved = false
        try {
          for (;;) {
            if (source) source.starved = false
            r = steps.next()
            if (r.done) break
            // (a copy waiting for the stream's next bytes yields too)
            starved = source?.starved ?? false
            const t = performance.now() - sliceStart
            if (starved || t >= SLICE_MS || (t >= MIN_SLICE_MS && requestsWaiting() > 0)) break
          }
        } catch (e) {
          fail(e)
          return
        }
        // An async or lazy clone holds its source as it was once its first step made it.
        if (!walksSource) void thawSource()
        // A failed expansion slice drops the running transaction: it commits this slice's work first.
        image.workChanged()
        if (r!.done) {
          finished = true
          const result = r!.value
          try {
            image.commitNow()
          } catch (e) {
            fail(e)
            return
          }
          send({done: result})
          // A new async clone is expanded in the background; the mounts show what was made
          // before the command is told it is done.
          image.scheduleExpansion(0)
          void image.notify(true).then(() => resolve(result))
          return
        }
        void image.notify(true) // (a slice changes nothing a mount shows but the sources' counts)
        try {
          const data = source?.dataRead ?? 0
          if (vol.txnBlocks >= COMMIT_BLOCKS || data - committedData >= COMMIT_DATA) {
            image.commitNow()
            committedData = data
          }
        } catch (e) {
          fail(e)
          return
        }
        if (source && source.queued < LOW_WATER) c.resume()
        if (starved) waiting = true
        else kick()
      }
      kick()
    })
  }
}
