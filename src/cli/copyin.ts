// The CLI's side of `prism cp HOST... FILESET:/path` on a served image (src/server/copyin.ts):
// it reads the host trees itself and streams them to the server (ask, src/cli/servedcopy.ts),
// which copies them in slices between its mounts' requests. Progress and the entries not
// copied come back as they happen, so the command's output, --json and exit codes are those
// of the copy alone.
//
// Ctrl-C (or SIGTERM, SIGHUP) stops it as alone: the stream stops and our side of the
// connection ends, the server drops the copy (nothing of it shows) and says so, and the
// command exits 128 + the signal; once the copy is in place (the server published it, and
// says {done}: only freeing is left) it reports the copy done. A server that dies
// meanwhile: the command fails with exit status 7; the image replays without the copy.
import type {CopyError, CopyStats, Location} from '../ops/copy.js'
import {END_FRAME, hostFrames, streamedSources} from '../ops/hoststream.js'
import {ask} from './servedcopy.js'
import type {ServedTarget} from './servedexpand.js'

/** Set by src/cli/served.ts when the server of the image runs this copy (or import: src/cli/servedimport.ts) itself. */
export type ServedCopy = ServedTarget

export interface CopyInOptions {
  recursive?: boolean
  noTargetDirectory?: boolean
  onProgress?: (s: CopyStats) => void
  onError?: (e: CopyError) => void
}

/** The server this command's copy goes to (src/cli/served.ts decided), or null. */
export function servedCopy(): ServedCopy | null {
  return ((globalThis as Record<symbol, unknown>)[Symbol.for('prism.servedCopy')] as ServedCopy | undefined) ?? null
}

/** Copies host sources `srcs` into `dst` through the image's server. */
export async function copyInServed(served: ServedCopy, srcs: Location[], dst: Location & {kind: 'image'}, opts: CopyInOptions): Promise<CopyStats> {
  const paths = srcs.map((s) => s.path)
  const req = {op: 'copyin', srcs: streamedSources(paths), dst: {fileset: dst.fileset, path: dst.path}, recursive: opts.recursive, noTargetDirectory: opts.noTargetDirectory}
  const frames = function* () {
    yield* hostFrames(paths, Boolean(opts.recursive))
    yield END_FRAME
  }
  const answer = await ask(served, req, 'the copy ended; the image holds nothing of it', (r) => {
    if (r.progress) opts.onProgress?.({...r.progress as CopyStats, errors: []})
    else if (r.error) opts.onError?.(r.error as CopyError)
  }, frames())
  return answer.stats as CopyStats
}
