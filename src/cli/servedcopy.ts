// `prism cp` and `prism mv` with every path in the image (FILESET:/path), and `prism defrag`,
// on an image a prism server holds: rather than borrowing the image (src/cli/served.ts), which
// would hold every FUSE request of its mounts until the command ends, the command asks the
// server, which runs the very same work in slices between its mounts' requests
// (src/server/sliced.ts). Progress, the entries or sources not done (in order), the output,
// --json and the exit status are those of the command alone.
//  - Ctrl-C (SIGTERM, SIGHUP): the server is asked to stop (a line, or, where bytes follow the
//    request, the end of our side of the connection), and the command waits for its answer:
//    a copy or a move not yet published leaves nothing of it and the command exits 128 + the
//    signal (as alone); one the server had published is reported done (exit 0); a defrag
//    keeps the files it rewrote (their content is unchanged either way).
//  - A server that dies meanwhile: exit status 7. The image replays to its last commit: a copy
//    not published is not there, a move's source is in one place or the other, whole.
import {PrismError, errorFromWire} from '../errors.js'
import type {CopyError, CopyStats} from '../ops/copy.js'
import type {DefragStats} from '../ops/defrag.js'
import {converse, type ServedTarget} from './servedexpand.js'

type ImagePath = {fileset: string, path: string}

/**
 * Runs request `req` on the server and hands each of its lines but the last over as they come
 * (`onLine`; a {done} line too: the work is done, only freeing is left); resolves with the
 * last line. `what` names the work should the server go away first. `body`: bytes to send
 * after the request (src/cli/copyin.ts, servedimport.ts): Ctrl-C then ends our side of the
 * connection (a line would be read as the body), which stops the work as a cancel line does.
 */
export async function ask(t: ServedTarget, req: object, what: string, onLine: (l: Record<string, unknown>) => void, body?: Iterable<Buffer> | AsyncIterable<Buffer>): Promise<Record<string, unknown>> {
  let thrown: unknown = null
  let done: Record<string, unknown> | null = null
  let answer: Record<string, unknown> | null
  try {
    answer = await converse(t.sock, req, (l) => {
      if (thrown !== null) return
      if (l.done) done = l.done as Record<string, unknown>
      try {
        onLine(l)
      } catch (e) {
        // (reported once the server has answered: the work stops there)
        thrown = e
      }
    }, async (c) => {
      // Any line stops the work, or, where bytes follow the request, the end of ours; the
      // server answers once it has cleaned up: "interrupted", or done (it was published first).
      if (c.destroyed) return
      // (once the work is done, only the freeing is left: the command reports it done at once)
      if (done) return
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 8000)
        c.once('close', () => {
          clearTimeout(timer)
          resolve()
        })
        if (body) c.end()
        else c.write('{"op":"cancel"}\n')
      })
    }, body)
  } catch (e) {
    // Interrupted once the work was done: it is done.
    if (!done) throw e
    answer = null
  }
  if (thrown !== null) throw thrown
  if (!answer && done) return {ok: true, ...(done as object)}
  if (!answer) throw new PrismError('EIO', `the server of ${t.image.split('/').pop()} stopped before ${what}`)
  if (!answer.ok) throw errorFromWire(answer.code, answer.message)
  return answer
}

/** Hands a line's progress and error over: the lines of `prism cp`, `mv` and `defrag`. */
export function lines(onProgress: ((p: unknown) => void) | undefined, onError: ((e: PrismError) => void) | undefined): (l: Record<string, unknown>) => void {
  return (l) => {
    if (l.progress) onProgress?.(l.progress)
    else if (l.error) {
      const e = l.error as {code?: unknown, message?: unknown}
      onError?.(errorFromWire(e.code, e.message))
    }
  }
}

/** `prism cp SRC... DST` within the image, by its server. */
export async function askCopy(t: ServedTarget, srcs: ImagePath[], dst: ImagePath, opts: {recursive?: boolean, noTargetDirectory?: boolean, onProgress?: (s: CopyStats) => void, onError?: (e: CopyError) => void}): Promise<CopyStats> {
  const req = {op: 'copy', srcs, dst, recursive: opts.recursive, noTargetDirectory: opts.noTargetDirectory}
  const answer = await ask(t, req, 'the copy ended; the image holds nothing of it', lines(
    (p) => opts.onProgress?.({...(p as CopyStats), errors: []}),
    (e) => opts.onError?.({code: e.code, message: e.message})))
  return answer.stats as CopyStats
}

/** `prism mv SRC... DST` by the image's server: each source that cannot be moved goes to `onSourceError`. */
export async function askMove(t: ServedTarget, srcs: ImagePath[], dst: ImagePath, onSourceError: (e: PrismError) => void): Promise<void> {
  await ask(t, {op: 'copy', move: true, srcs, dst}, 'the move ended; each source is whole, where it was or where it was to go', lines(undefined, onSourceError))
}

/** `prism defrag FILESET:/path` by the image's server. */
export async function askDefrag(t: ServedTarget, target: ImagePath, onProgress: (files: number, changed: number) => void): Promise<DefragStats> {
  const answer = await ask(t, {op: 'defrag', ...target}, 'defrag ended; the files it rewrote keep their content', lines((p) => {
    const x = p as {files: number, changed: number}
    onProgress(x.files, x.changed)
  }, undefined))
  return answer.stats as DefragStats
}
