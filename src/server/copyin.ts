// `prism cp HOST... FILESET:/path` on a served image, run by the server in slices (request
// 'copyin'): the CLI reads the host tree and streams it over the socket (src/ops/hoststream.ts);
// the server runs the very copy the command runs alone (src/ops/copy.ts copySteps) on its open
// image, for about SLICE_MS at a time between the mounts' requests, so that they keep being
// answered. The copy is built out of sight (a staged tree) and published by its last slice,
// as alone; the server then commits, tells the mounts' kernels, and answers.
//
// Replies, JSON lines: {progress: CopyStats} now and then, {error: CopyError} for each entry
// not copied (in order), then {ok: true, stats} or {ok: false, code, message}. The client
// going away (interrupted, killed) aborts the copy: nothing of it shows, as alone.
//
// It must never: read a host path (only the stream), or let a slice run on a volume that a
// lend closed (ServedImage.beginWork: a lend waits for the copy).
import type net from 'node:net'
import {PrismError} from '../errors.js'
import {reapOrphans} from '../fs/namespace.js'
import {copySteps, type CopyStats, type Location} from '../ops/copy.js'
import {StreamSource, type StreamedSource} from '../ops/hoststream.js'
import {requestsWaiting} from '../fuse/index.js'
import {type ServedImage, shuttingDown} from './image.js'

/** How long one slice of the copy runs at most before the mounts' requests are answered again. */
export const SLICE_MS = 4
/** How long a slice runs at least, even with requests waiting. */
export const MIN_SLICE_MS = 0.5
/** Metadata blocks of the running transaction, or bytes of file data copied since the last commit, that the server commits after a slice. */
export const COMMIT_BLOCKS = 128
export const COMMIT_DATA = 8 * 1024 * 1024
/** Bytes of the stream held before the socket is paused (a file is read 8 MiB at a time), and resumed. */
export const HIGH_WATER = 32 * 1024 * 1024
export const LOW_WATER = 16 * 1024 * 1024

/** The end of the last copy or import each image was asked for. */
const queue = new WeakMap<ServedImage, Promise<void>>()

export interface CopyInRequest {
  op: 'copyin'
  srcs: StreamedSource[]
  dst: {fileset: string, path: string}
  recursive?: boolean
  noTargetDirectory?: boolean
}

function isRequest(r: Record<string, unknown>): r is Record<string, unknown> & CopyInRequest {
  const d = r.dst as CopyInRequest['dst'] | undefined
  return Array.isArray(r.srcs) && r.srcs.every((s: StreamedSource) => typeof s?.path === 'string' && typeof s.base === 'string')
    && typeof d?.fileset === 'string' && typeof d.path === 'string'
}

/**
 * Runs `run`, work in slices on the image for the command at the other end of `c`, in turn
 * with the other copies and imports of the image, once the image is held (a lend waits for
 * it). `abort` is told why it must stop: the command went away, or the server is stopping.
 * Its result is committed and shown to the mounts before the command hears {ok: true,
 * stats}; after a failure what it left on the orphan list (its staged tree) is freed, and the
 * command hears {ok: false, code, message} (src/server/import.ts shares it).
 */
export function serveSliced(image: ServedImage, c: net.Socket, log: (msg: string) => void, what: string, abort: (e: PrismError) => void, run: () => Promise<unknown>): void {
  const send = (v: unknown) => {
    if (!c.destroyed) c.write(JSON.stringify(v) + '\n')
  }
  let gone = false
  c.on('close', () => {
    gone = true
    abort(new PrismError('EINTR', 'the command went away'))
  })
  let resolveDone!: () => void
  const work = {
    abort: () => abort(shuttingDown()),
    done: new Promise<void>((r) => {
      resolveDone = r
    }),
  }
  // They go one at a time, in order, as commands alone take the image's lock in turn.
  const before = queue.get(image) ?? Promise.resolve()
  queue.set(image, before.then(() => work.done))
  void (async () => {
    await before
    await image.whenHeld()
    const end = image.beginWork(work)
    try {
      if (image.isClosed) throw shuttingDown()
      const stats = await run()
      image.commitNow()
      // The mounts show the result before the command is told it is done.
      await image.notify(true)
      send({ok: true, stats})
      c.end()
    } catch (e) {
      const err = e as Error & {code?: string}
      // The staged tree, on the orphan list, is freed now (alone: by the next command); what
      // the work published, if anything, is committed.
      if (!image.isClosed) {
        try {
          if (image.vol.sb.orphanHead !== 0) reapOrphans(image.vol)
          image.commitNow()
          await image.notify(true)
        } catch (e2) {
          log(`after a failed ${what}: ${(e2 as Error).message}`)
        }
      }
      if (!gone) {
        send({ok: false, code: typeof err.code === 'string' ? err.code : 'EIO', message: err.message})
        c.end()
      }
      if (!(err instanceof PrismError)) log(`${what}: ${err.stack ?? err.message}`)
    } finally {
      end()
      resolveDone()
    }
  })()
}

/** Serves one copy-in on connection `c` (`rest`: what came after its request line). */
export function serveCopyIn(image: ServedImage, c: net.Socket, request: Record<string, unknown>, rest: Buffer, log: (msg: string) => void): void {
  const send = (v: unknown) => {
    if (!c.destroyed) c.write(JSON.stringify(v) + '\n')
  }
  if (!isRequest(request)) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed copyin request'}) + '\n')
    return
  }
  const req: CopyInRequest = request
  const source = new StreamSource(req.srcs)
  // A slice ends as soon as a mount's request waits for this thread, after the entry at hand
  // (once it has run MIN_SLICE_MS: the copy goes on under a stream of requests).
  let sliceStart = 0
  source.yieldNow = () => requestsWaiting() > 0 && performance.now() - sliceStart >= MIN_SLICE_MS
  source.push(rest)
  let aborted: PrismError | null = null
  let waiting = false
  let kick = () => {}
  c.on('data', (d: Buffer) => {
    source.push(d)
    if (source.queued > HIGH_WATER) c.pause()
    if (waiting) kick()
  })
  c.resume()
  serveSliced(image, c, log, `copy into ${req.dst.fileset}:${req.dst.path}`, (e) => {
    aborted ??= e
    kick()
  }, run)

  function run(): Promise<CopyStats> {
    const locs: Location[] = req.srcs.map((s) => ({kind: 'host', path: s.path}))
    const dst: Location = {kind: 'image', fileset: req.dst.fileset, path: req.dst.path}
    let steps: Generator<void, CopyStats> | null = null
    let committedData = 0
    return new Promise((resolveRun, rejectRun) => {
      let timer: NodeJS.Immediate | null = null
      let finished = false
      kick = () => {
        waiting = false
        if (!finished) timer ??= setImmediate(slice)
      }
      const resolve = (s: CopyStats) => {
        finished = true
        resolveRun(s)
      }
      const reject = (e: unknown) => {
        finished = true
        rejectRun(e)
      }
      const slice = () => {
        timer = null
        if (image.lent) {
          // (only before the first slice: a lend waits for running work)
          void image.whenHeld().then(kick)
          return
        }
        let r: IteratorResult<void, CopyStats>
        try {
          steps ??= copySteps(image.vol, locs, dst, {
            recursive: req.recursive, noTargetDirectory: req.noTargetDirectory, keepGoing: true,
            onProgress: (s) => send({progress: {...s, errors: undefined}}),
            onError: (e) => send({error: e}),
          }, source)
          sliceStart = performance.now()
          source.deadline = sliceStart + SLICE_MS
          // An abort stops the copy where it waits, through its own clean-up (the stage).
          r = aborted ? steps.throw(aborted) : steps.next()
        } catch (e) {
          reject(e)
          return
        }
        // What this slice changed that a mount may show (the publish), to the kernels.
        const notified = image.notify(true)
        if (r.done) {
          const stats = r.value
          void notified.then(() => resolve(stats))
          return
        }
        try {
          // Small commits between slices rather than one of half the journal in the middle of
          // one (Volume.maybeCommit): a request waits for a shorter commit, and a commit
          // flushes less file data (data=ordered).
          if (image.vol.txnBlocks >= COMMIT_BLOCKS || source.dataRead - committedData >= COMMIT_DATA) {
            image.commitNow()
            committedData = source.dataRead
          }
        } catch (e) {
          reject(e)
          return
        }
        if (source.queued < LOW_WATER) c.resume()
        if (source.starved && !aborted) waiting = true
        else kick()
      }
      kick()
    })
  }
}

