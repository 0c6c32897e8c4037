// `prism import ARCHIVE` on a served image, run by the server in slices (request 'import'):
// the CLI opens the archive as alone (a file read in place, standard input spooled first) and
// streams its bytes as stored (still compressed) over the socket, `size` of them; the server
// runs the import the command runs alone (src/tar/import.ts importStream: decompression, the
// TarImport with its staged tree published by the last transaction) on its open image, paced
// (ImportPace): about SLICE_MS of work at a time between the mounts' requests, committing every
// COMMIT_BLOCKS or COMMIT_DATA as the copy-in does. Then it commits, tells the mounts' kernels
// and answers (serveSliced, shared with src/server/copyin.ts).
//
// Replies, JSON lines: {progress: ImportStats} now and then, {warning: line} for each entry
// refused or attribute dropped (in order), then {ok: true, stats} or {ok: false, code,
// message}. The client going away (interrupted, killed) before the import is published aborts
// it: nothing of it shows, as alone.
//
// It must never: open a host path (only the stream), or run on a volume that a lend closed.
import type net from 'node:net'
import {PrismError} from '../errors.js'
import {importStream, type ImportStats} from '../tar/import.js'
import {requestsWaiting} from '../fuse/index.js'
import {COMMIT_BLOCKS, COMMIT_DATA, HIGH_WATER, LOW_WATER, MIN_SLICE_MS, SLICE_MS, serveSliced} from './copyin.js'
import type {ServedImage} from './image.js'

export interface ImportRequest {
  op: 'import'
  target: {fileset: string, path: string, create?: boolean}
  /** bytes of the archive that follow the request line */
  size: number
  /** the command's uid and gid: the owner of the directories the archive does not name */
  owner: {uid: number, gid: number}
}

function isRequest(r: Record<string, unknown>): r is Record<string, unknown> & ImportRequest {
  const t = r.target as ImportRequest['target'] | undefined
  const o = r.owner as ImportRequest['owner'] | undefined
  const id = (n: unknown) => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffff_ffff
  return typeof t?.fileset === 'string' && typeof t.path === 'string' && Number.isSafeInteger(r.size) && (r.size as number) >= 0
    && id(o?.uid) && id(o?.gid)
}

/** Serves one import on connection `c` (`rest`: the archive's bytes that came with its request line). */
export function serveImport(image: ServedImage, c: net.Socket, request: Record<string, unknown>, rest: Buffer, log: (msg: string) => void): void {
  const send = (v: unknown) => {
    if (!c.destroyed) c.write(JSON.stringify(v) + '\n')
  }
  if (!isRequest(request)) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed import request'}) + '\n')
    return
  }
  const req: ImportRequest = request
  let aborted: PrismError | null = null
  let wake = () => {}
  serveSliced(image, c, log, `import into ${req.target.fileset}:${req.target.path}`, (e) => {
    aborted ??= e
    wake()
  }, run)

  /** The archive's `size` bytes from the connection (read ahead up to HIGH_WATER bytes). */
  async function* archive(): AsyncGenerator<Buffer> {
    let left = req.size
    const first = rest.subarray(0, left)
    left -= first.length
    if (first.length > 0) yield first
    const chunks: Buffer[] = []
    let queued = 0
    const onData = (d: Buffer) => {
      chunks.push(d)
      queued += d.length
      if (queued > HIGH_WATER) c.pause()
      wake()
    }
    c.on('data', onData)
    c.resume()
    try {
      while (left > 0) {
        if (aborted) throw aborted
        if (chunks.length === 0) {
          await new Promise<void>((r) => {
            wake = r
          })
          wake = () => {}
          continue
        }
        const d = chunks.shift()!
        queued -= d.length
        if (queued < LOW_WATER) c.resume()
        const take = d.subarray(0, left)
        left -= take.length
        yield take
      }
    } finally {
      c.off('data', onData)
      c.pause()
    }
  }

  async function run(): Promise<ImportStats> {
    let sliceStart = performance.now()
    let committedData = 0
    return importStream(image.vol, req.target, archive(), {
      owner: req.owner,
      onProgress: (s) => send({progress: s}),
      onWarning: (m) => send({warning: m}),
    }, {
      // A slice ends once it has run SLICE_MS, or as soon as a mount's request waits for this
      // thread (once it has run MIN_SLICE_MS: the import goes on under a stream of requests).
      due: () => {
        const t = performance.now() - sliceStart
        return aborted !== null || t >= SLICE_MS || (t >= MIN_SLICE_MS && requestsWaiting() > 0)
      },
      between: async (stats) => {
        if (aborted) throw aborted
        // Small commits between slices (src/server/copyin.ts says why).
        if (image.vol.txnBlocks >= COMMIT_BLOCKS || stats.bytes - committedData >= COMMIT_DATA) {
          image.commitNow()
          committedData = stats.bytes
        }
        // (the staged tree is out of sight: nothing a mount shows changes before the publish)
        await image.notify(true)
        await new Promise((r) => setImmediate(r))
        if (aborted) throw aborted
        sliceStart = performance.now()
      },
    })
  }
}
