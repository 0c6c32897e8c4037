// Commands a server runs on its open image in slices between its mounts' requests, one
// connection each: `cp HOST... FILESET:/` (copyin.ts), `prism import` (import.ts), `cp` and
// `mv` within the image and `defrag` (image requests 'copy' and 'defrag' below), chmod, chown
// and write (servedattrs.ts), and the short commands in one step (short.ts). The work is a
// generator that yields where the image is consistent; it runs for about SLICE_MS at a time,
// less once a mount's request waits (requestsWaiting), so that the mounts keep being
// answered. Small commits between slices (COMMIT_BLOCKS) rather than one of half the journal
// inside one. What the work leaves on the orphan list (a copy's replaced files, mv's source,
// a stage that failed) is freed in slices too before the answer, as alone the command returns
// with the space back.
//
// Replies, JSON lines: {progress} now and then, {error: {code, message}} for each entry or
// source not done (in order), {done: {...}} once the work is done (what is left is freeing),
// then {ok: true, ...} or {ok: false, code, message}. The client
// going away, or sending a line, aborts the work at its next slice (steps.throw): it ends
// through its own clean-up (a copy's stage: nothing of it shows), as alone when interrupted.
// Works go one at a time, in order, with removals (ServedImage.takeTurn); a lend waits for
// the one running (beginWork); expansion of clones waits meanwhile (a failed expansion slice
// aborts the running transaction, which would take the work's last steps with it).
import type net from 'node:net'
import {PrismError} from '../errors.js'
import {namespace} from '../fs/image.js'
import {reapSteps} from '../fs/namespace.js'
import {copySteps, type CopyStats} from '../ops/copy.js'
import {defragSteps, type DefragStats} from '../ops/defrag.js'
import {localSource} from '../ops/hostsource.js'
import {moveSteps} from '../ops/move.js'
import {requestsWaiting} from '../fuse/index.js'
import {type ServedImage, shuttingDown} from './image.js'

/** How long one slice runs at most before the mounts' requests are answered again. */
export const SLICE_MS = 4
/** How long a slice runs at least, even with requests waiting. */
export const MIN_SLICE_MS = 0.5
/** Metadata blocks of the running transaction that the server commits after a slice. */
export const COMMIT_BLOCKS = 128
/** Bytes of file data written since the last commit that a work streamed in commits after (commitDue): a commit then flushes less (data=ordered). */
export const COMMIT_DATA = 8 * 1024 * 1024
/** Bytes of a work's stream held before its socket is paused (a copy-in reads a file 8 MiB at a time), and resumed. */
export const HIGH_WATER = 32 * 1024 * 1024
export const LOW_WATER = 16 * 1024 * 1024

/** What a work sees of the slices it runs in. */
export interface SliceControl {
  /** sends one reply line (nothing once the client has gone) */
  send(v: unknown): void
  /** a count that moves whenever a mount's request may have changed the image */
  changes(): number
}

export interface SlicedJob<T> {
  /** names the work in the server's log */
  what: string
  /**
   * The filesets the work changes: its slices wait while a clone reads one of them
   * (ServedImage.freeze), so that the clone holds what was there when its command started.
   */
  filesets: string[]
  /** makes the work's steps, at its first slice (the image held) */
  start(ctl: SliceControl): Generator<void, T>
  /** the request's `interrupt` token: request 'interrupt' with it aborts the work (ServedImage.interrupt) */
  interrupt?: unknown
  /** the bytes the client sends after its request (without it, a line aborts the work) */
  onData?(d: Buffer): void
  /** called as each slice starts, with the time it must end by (performance.now()) */
  beforeSlice?(deadline: number, yieldNow: () => boolean): void
  /** after a step: the work waits for the client's bytes (kick() resumes it) */
  starved?(): boolean
  /** commits after a slice besides COMMIT_BLOCKS */
  commitDue?(): boolean
  /** after a slice the work did not end in (copyin resumes its socket) */
  afterSlice?(): void
  /** the last line of a success */
  answer(result: T): object
}

/** Serves one work in slices on connection `c`; kick() resumes a work waiting for bytes. */
export function serveSliced<T>(image: ServedImage, c: net.Socket, log: (msg: string) => void, job: SlicedJob<T>): {kick: () => void} {
  const send = (v: unknown) => {
    if (!c.destroyed) c.write(JSON.stringify(v) + '\n')
  }
  let gone = false
  let aborted: PrismError | null = null
  /** the server is stopping: what is left on the orphan list is freed as it closes the image */
  let stopping = false
  let waiting = false
  let wake = () => {}
  const kick = () => {
    waiting = false
    wake()
  }
  c.on('data', (d: Buffer) => {
    if (job.onData) job.onData(d)
    else if (d.includes(10)) aborted ??= new PrismError('EINTR', 'interrupted')
    if (waiting || !job.onData) kick()
  })
  // A command whose request is followed by bytes (a copy-in's stream, an archive) cannot send
  // a line to stop: it ends its side instead (Ctrl-C), and waits for the answer on ours. (A
  // command that died ends its side too: the answer then fails to be written, and is lost.)
  c.allowHalfOpen = true
  c.on('end', () => {
    aborted ??= new PrismError('EINTR', 'interrupted')
    kick()
  })
  c.on('close', () => {
    gone = true
    aborted ??= new PrismError('EINTR', 'the command went away')
    kick()
  })
  c.resume()
  const forget = image.whenInterrupted(job.interrupt, () => {
    aborted ??= new PrismError('EINTR', 'interrupted')
    kick()
  })

  let resolveDone!: () => void
  const work = {
    abort: () => {
      stopping = true
      aborted ??= shuttingDown()
      kick()
    },
    done: new Promise<void>((r) => {
      resolveDone = r
    }),
    pausesExpansion: true,
  }
  const ctl: SliceControl = {send, changes: () => image.requestChanges}

  /** Runs `steps` in slices until it returns; `abortable`: an abort is thrown into it. */
  const inSlices = <R>(make: () => Generator<void, R>, hooks: Partial<SlicedJob<R>>, abortable: boolean): Promise<R> => {
    let steps: Generator<void, R> | null = null
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Immediate | null = null
      let finished = false
      wake = () => {
        if (!finished) timer ??= setImmediate(slice)
      }
      const end = (f: () => void) => {
        finished = true
        f()
      }
      const slice = () => {
        timer = null
        if (image.lent) {
          // (only before the first slice: a lend waits for running work)
          void image.whenHeld().then(wake)
          return
        }
        if (stopping && !abortable) {
          end(() => reject(aborted))
          return
        }
        if (!aborted) {
          const thawed = job.filesets.map((name) => image.thawed(name)).find((t) => t !== null)
          if (thawed) {
            // Committed first, so that expansion may run meanwhile: the clone that froze the
            // fileset may wait for its source to be expanded.
            try {
              if (image.vol.hasChanges) image.commitNow()
            } catch (e) {
              end(() => reject(e))
              return
            }
            work.pausesExpansion = false
            void thawed.then(() => {
              work.pausesExpansion = true
              wake()
            })
            return
          }
        }
        let r: IteratorResult<void, R>
        const start = performance.now()
        const yieldNow = () => {
          const t = performance.now() - start
          return t >= SLICE_MS || (t >= MIN_SLICE_MS && requestsWaiting() > 0)
        }
        try {
          steps ??= make()
          hooks.beforeSlice?.(start + SLICE_MS, yieldNow)
          // An abort stops the work where it waits, through its own clean-up.
          if (abortable && aborted) r = steps.throw(aborted)
          else do r = steps.next(); while (!r.done && !yieldNow() && !hooks.starved?.())
        } catch (e) {
          end(() => reject(e))
          return
        }
        // What this slice changed that a mount may show (a publish), to the kernels.
        const notified = image.notify(true)
        if (r.done) {
          // Finished now, not once the kernels are told: an abort (the client's Ctrl-C) that
          // comes meanwhile must not run another slice, which would throw into the finished
          // work and answer "interrupted" for a copy or a move already published.
          finished = true
          const v = r.value
          void notified.then(() => resolve(v))
          return
        }
        try {
          if (image.vol.txnBlocks >= COMMIT_BLOCKS || hooks.commitDue?.()) image.commitNow()
        } catch (e) {
          end(() => reject(e))
          return
        }
        hooks.afterSlice?.()
        if (hooks.starved?.() && !aborted) waiting = true
        else wake()
      }
      wake()
    })
  }

  void (async () => {
    const endTurn = await image.takeTurn()
    let end = () => {}
    try {
      await image.whenHeld()
      if (image.isClosed) throw shuttingDown()
      end = image.beginWork(work)
      let result: T | undefined
      let failure: unknown = null
      // What the work orphans is freed below, in slices, not in one step of it (nor by a
      // mount's unlink meanwhile).
      image.vol.reaping = true
      try {
        result = await inSlices(() => job.start(ctl), job, true)
        // Done (a copy or a move in place): the client may stop waiting for the freeing.
        send({done: job.answer(result)})
      } catch (e) {
        failure = e
      }
      try {
        // Alone, a command that fails leaves its stage to the next one's reap: here it is
        // freed now, so that no request frees it in one go later.
        if (!image.isClosed && !stopping) {
          await inSlices(() => reapSteps(image.vol), {}, false)
          image.commitNow()
          await image.notify(true)
        }
      } catch (e) {
        if (failure === null) failure = e
        else log(`after a failed ${job.what}: ${(e as Error).message}`)
      } finally {
        image.vol.reaping = false
      }
      if (failure !== null) throw failure
      send({ok: true, ...job.answer(result as T)})
      c.end()
    } catch (e) {
      const err = e as Error & {code?: string}
      if (!gone) {
        send({ok: false, code: typeof err.code === 'string' ? err.code : 'EIO', message: err.message})
        c.end()
      }
      if (!(err instanceof PrismError)) log(`${job.what}: ${err.stack ?? err.message}`)
    } finally {
      forget()
      end()
      endTurn()
      resolveDone()
    }
  })()
  return {kick}
}

/** A copy or move within the image (`prism cp`, `prism mv` with every path FILESET:/path). */
export interface CopyRequest {
  op: 'copy'
  srcs: Array<{fileset: string, path: string}>
  dst: {fileset: string, path: string}
  /** mv: each source moves (renamed within its fileset, else copied then removed) */
  move?: boolean
  recursive?: boolean
  noTargetDirectory?: boolean
}

const isPath = (p: unknown): p is {fileset: string, path: string} => typeof (p as {fileset?: unknown})?.fileset === 'string' && typeof (p as {path?: unknown}).path === 'string'

/** Serves a 'copy' request: {ok: true, stats} for a copy, {ok: true} for a move; {error} lines for what was not done. */
export function serveCopy(image: ServedImage, c: net.Socket, request: Record<string, unknown>, log: (msg: string) => void): void {
  if (!Array.isArray(request.srcs) || !request.srcs.every(isPath) || !isPath(request.dst)) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed copy request'}) + '\n')
    return
  }
  const req = request as unknown as CopyRequest
  if (!req.move) {
    serveSliced<CopyStats>(image, c, log, {
      what: `copy to ${req.dst.fileset}:${req.dst.path}`,
      filesets: [req.dst.fileset],
      start: (ctl) => copySteps(image.vol, req.srcs.map((s) => ({kind: 'image', ...s})), {kind: 'image', ...req.dst}, {
        recursive: req.recursive, noTargetDirectory: req.noTargetDirectory, keepGoing: true, changes: ctl.changes,
        onProgress: (s) => ctl.send({progress: {...s, errors: undefined}}),
        onError: (e) => ctl.send({error: e}),
      }, localSource), // (never read: every source is in the image)
      answer: (stats) => ({stats}),
    })
    return
  }
  serveSliced<void>(image, c, log, {
    what: `move to ${req.dst.fileset}:${req.dst.path}`,
    filesets: [req.dst.fileset, ...req.srcs.map((src) => src.fileset)],
    start: (ctl) => {
      const vol = image.vol
      // The inodes of the source a copy between filesets has read: one a mount changes
      // before the copy is published would be lost with the source (its name goes), so the
      // move of that source then fails and changes nothing. A read through a mount that only
      // moves an access time does not count: the copy keeps the one it read, as `mv` across
      // file systems keeps the times it copied.
      const visited = new Set<number>()
      let changed = false
      let inStep = true
      const unwatch = image.watch((ino, atimeOnly) => {
        if (!inStep && !atimeOnly && visited.has(ino)) changed = true
      })
      // A source's own steps are dropped on failure only while nothing else is in the
      // running transaction: before it yielded (a rename, a copy refused at once).
      let yielded = false
      const steps = moveSteps(vol, req.srcs, req.dst, (name) => namespace(vol, name), (e) => ctl.send({error: {code: e.code, message: e.message}}), {
        begin: () => {
          if (vol.hasChanges) image.commitNow()
          visited.clear()
          changed = false
          yielded = false
        },
        settle: (failed) => {
          if (failed && !yielded) {
            vol.abort()
            image.dropPending()
          }
        },
        // (progress of a copy between filesets: the command shows none, as alone)
        copy: {changes: ctl.changes, visited, onProgress: (st) => ctl.send({progress: {files: st.files, dirs: st.dirs}})},
        beforePublish: () => {
          if (changed) throw new PrismError('EBUSY', 'the source changed while it was being moved (a mount wrote it); nothing was moved')
        },
      })
      return (function* () {
        try {
          for (;;) {
            inStep = true
            const r = steps.next()
            inStep = false
            if (r.done) return
            yielded = true
            yield
          }
        } finally {
          unwatch()
        }
      })()
    },
    answer: () => ({}),
  })
}

/** Serves a 'defrag' request ({fileset, path}): {progress: {files, changed}} lines, then {ok: true, stats}. */
export function serveDefrag(image: ServedImage, c: net.Socket, request: Record<string, unknown>, log: (msg: string) => void): void {
  if (!isPath(request)) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed defrag request'}) + '\n')
    return
  }
  const {fileset, path} = request
  let last = 0
  serveSliced<DefragStats>(image, c, log, {
    what: `defrag of ${fileset}:${path}`,
    filesets: [fileset],
    start: (ctl) => defragSteps(namespace(image.vol, fileset), path, (_p, st) => {
      const t = Date.now()
      if (t - last < 100) return
      last = t
      ctl.send({progress: {files: st.files, changed: st.changed}})
    }, ctl.changes),
    answer: (stats) => ({stats}),
  })
}
