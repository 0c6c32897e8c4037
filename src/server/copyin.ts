// `prism cp HOST... FILESET:/path` on a served image, run by the server in slices (request
// 'copyin', src/server/sliced.ts): the CLI reads the host tree and streams it over the socket
// (src/ops/hoststream.ts); the server runs the very copy the command runs alone
// (src/ops/copy.ts copySteps) on its open image between the mounts' requests. The copy is
// built out of sight (a staged tree) and published by its last slice, as alone; the server
// then commits, tells the mounts' kernels, and answers.
//
// Replies, JSON lines: {progress: CopyStats} now and then, {error: CopyError} for each entry
// not copied (in order), then {ok: true, stats} or {ok: false, code, message}. The client
// going away (interrupted, killed) aborts the copy: nothing of it shows, as alone.
//
// It must never read a host path (only the stream).
import type net from 'node:net'
import {copySteps, type CopyStats} from '../ops/copy.js'
import {StreamSource, type StreamedSource} from '../ops/hoststream.js'
import type {ServedImage} from './image.js'
import {COMMIT_DATA, HIGH_WATER, LOW_WATER, serveSliced} from './sliced.js'

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

/** Serves one copy-in on connection `c` (`rest`: what came after its request line). */
export function serveCopyIn(image: ServedImage, c: net.Socket, request: Record<string, unknown>, rest: Buffer, log: (msg: string) => void): void {
  if (!isRequest(request)) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed copyin request'}) + '\n')
    return
  }
  const req: CopyInRequest = request
  const source = new StreamSource(req.srcs)
  source.push(rest)
  let committedData = 0
  serveSliced<CopyStats>(image, c, log, {
    what: `copy into ${req.dst.fileset}:${req.dst.path}`,
    interrupt: request.interrupt,
    filesets: [req.dst.fileset],
    start: (ctl) => copySteps(image.vol, req.srcs.map((s) => ({kind: 'host', path: s.path})), {kind: 'image', fileset: req.dst.fileset, path: req.dst.path}, {
      recursive: req.recursive, noTargetDirectory: req.noTargetDirectory, keepGoing: true,
      onProgress: (s) => ctl.send({progress: {...s, errors: undefined}}),
      onError: (e) => ctl.send({error: e}),
    }, source),
    onData: (d) => {
      source.push(d)
      if (source.queued > HIGH_WATER) c.pause()
    },
    // The copy asks its source, which says when the slice is over (a slice ends as soon as a
    // mount's request waits, after the entry at hand, once it has run MIN_SLICE_MS).
    beforeSlice: (deadline, yieldNow) => {
      source.deadline = deadline
      source.yieldNow = yieldNow
    },
    starved: () => source.starved,
    // A commit flushes less file data (data=ordered) when it comes every COMMIT_DATA.
    commitDue: () => {
      if (source.dataRead - committedData < COMMIT_DATA) return false
      committedData = source.dataRead
      return true
    },
    afterSlice: () => {
      if (source.queued < LOW_WATER) c.resume()
    },
    answer: (stats) => ({stats}),
  })
}
