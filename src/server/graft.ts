// `prism clone SRC FILESET:/path` (a graft) on a served image, made by the server in slices
// (the 'clone' request with a destination path, src/server/server.ts): the very walk the
// command runs alone (src/clone/clone.ts cloneSteps), for about SLICE_MS at a time between the
// mounts' requests. The grafted tree is built under a pinned orphan root, out of sight, and
// linked into the target directory by the last step, in the running transaction, which is
// then committed and shown to the mounts' kernels (entry invalidation) before the command is
// answered. A source still expanding is expanded first (alone: expandAll), in the usual slices.
//
// The client going away or cancelling (Ctrl-C) stops the walk: the orphan tree is freed and
// nothing shows, as alone. A crash leaves the orphan tree for the next open to free: the target
// fileset as it was, or (once the last step is committed) with the whole graft.
// Between slices the mounts may change the source (it is read as it is when each directory is
// reached, as cp -r reads a tree) or the target (the graft's place is checked again before it
// is linked: EEXIST or ENOENT then, and nothing shows).
import {PrismError} from '../errors.js'
import {cloneSteps, type CloneResult, type CloneStats} from '../clone/clone.js'
import {FS_EXPANDING} from '../format/constants.js'
import {getFileset} from '../fs/filesets.js'
import {reapOrphans} from '../fs/namespace.js'
import {requestsWaiting} from '../fuse/index.js'
import {type ServedImage, ServerStopped, shuttingDown} from './image.js'

/** How long one slice of the walk runs at most, and at least when a request waits. */
const SLICE_MS = 4
const MIN_SLICE_MS = 0.5
/** The running transaction commits between slices once it holds this many blocks (as src/server/copyin.ts). */
const COMMIT_BLOCKS = 128

export interface GraftRequest {
  src: {fileset: string, path: string}
  dst: {fileset: string, path: string}
  exclude: string[]
}

/** The end of the last graft each image was asked for: they go one at a time, in order. */
const queue = new WeakMap<ServedImage, Promise<void>>()

/**
 * Makes the graft `req` on `image` in slices; `send` takes {progress} lines and, once the graft
 * is committed, {grafted: result} (a client whose server dies after that has its answer).
 * `cancelled` settling stops it (EINTR, nothing left).
 */
export async function graftServed(image: ServedImage, req: GraftRequest, send: (o: object) => void, cancelled: Promise<void>): Promise<CloneResult> {
  let stop: Error | null = null
  void cancelled.then(() => {
    stop ??= new PrismError('EINTR', 'interrupted')
  })
  let resolveDone!: () => void
  const work = {
    abort: () => {
      stop ??= new ServerStopped('the prism server stopped')
    },
    done: new Promise<void>((r) => {
      resolveDone = r
    }),
  }
  const before = queue.get(image) ?? Promise.resolve()
  queue.set(image, before.then(() => work.done))
  try {
    await before
    await image.whenHeld()
    if (image.isClosed) throw shuttingDown()
    const src = getFileset(image.vol, req.src.fileset)
    if (src.state === FS_EXPANDING) await image.expandFirst(src.name).done
    await image.whenHeld()
    if (image.isClosed) throw shuttingDown()
    const end = image.beginWork(work)
    try {
      return await run()
    } finally {
      end()
    }
  } finally {
    resolveDone()
  }

  function run(): Promise<CloneResult> {
    const vol = image.vol
    // What requests changed is committed first: the graft's failure drops nothing of theirs.
    if (vol.hasChanges) image.commitNow()
    const onProgress = (s: CloneStats): void => send({progress: s}) // (every 100 ms at most)
    const steps = cloneSteps(vol, req.src, req.dst, {exclude: req.exclude, mode: 'sync', onProgress})
    return new Promise((resolve, reject) => {
      const fail = (e: unknown): void => {
        // The orphan tree (if committed) is freed now, and committed; the mounts saw nothing of it.
        try {
          if (!image.isClosed) {
            if (vol.sb.orphanHead !== 0) reapOrphans(vol)
            image.commitNow()
          }
        } catch {
          // (the image failed: reported by commitNow; the next open frees the tree)
        }
        image.dropPending()
        reject(e)
      }
      const slice = (): void => {
        if (stop || image.isClosed) {
          try {
            steps.return(undefined as never) // (its finally unpins the root)
          } catch {
            // already ended
          }
          fail(stop ?? new ServerStopped('the prism server stopped'))
          return
        }
        const start = performance.now()
        let r: IteratorResult<void, CloneResult>
        try {
          for (;;) {
            r = steps.next()
            if (r.done) break
            const t = performance.now() - start
            if (t >= SLICE_MS || (t >= MIN_SLICE_MS && requestsWaiting() > 0)) break
          }
        } catch (e) {
          fail(e)
          return
        }
        // A failed expansion slice drops the running transaction: it commits this slice's work first.
        image.workChanged()
        if (r!.done) {
          const result = r!.value
          try {
            image.commitNow()
          } catch (e) {
            fail(e)
            return
          }
          send({grafted: result})
          // The mounts show the graft before the command is told it is done.
          void image.notify(true).then(() => resolve(result))
          return
        }
        void image.notify(true) // (a slice changes nothing a mount shows but the sources' counts)
        try {
          if (vol.txnBlocks >= COMMIT_BLOCKS) image.commitNow()
        } catch (e) {
          fail(e)
          return
        }
        setImmediate(slice)
      }
      setImmediate(slice)
    })
  }
}
