// The CLI's side of `prism cp HOST... FILESET:/path` on a served image (src/server/copyin.ts):
// it reads the host trees itself and streams them to the server, which copies them in slices
// between its mounts' requests. Progress and the entries not copied come back as they happen,
// so the command's output, --json and exit codes are those of the copy alone.
//
// Ctrl-C (or SIGTERM, SIGHUP) stops it as alone: the connection is closed, the server drops the
// copy (nothing of it shows), and the command exits 128 + the signal. A server that dies
// meanwhile: the command fails with exit status 7; the image replays without the copy.
import net from 'node:net'
import path from 'node:path'
import {PrismError, type ErrCode} from '../errors.js'
import {checkInterrupt} from '../interrupt.js'
import type {CopyError, CopyStats, Location} from '../ops/copy.js'
import {END_FRAME, hostFrames, streamedSources} from '../ops/hoststream.js'

/** Set by src/cli/served.ts when the server of the image runs this copy (or import: src/cli/servedimport.ts) itself. */
export interface ServedCopy {
  sock: string
  image: string
}

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
  return streamToServer<CopyStats>(served, 'copy', req, frames(), (r) => {
    if (r.progress) opts.onProgress?.({...r.progress as CopyStats, errors: []})
    else if (r.error) opts.onError?.(r.error as CopyError)
  })
}

/**
 * Sends request `req` to the server of `served`, then the bytes of `body` with back-pressure,
 * and hears its answers: JSON lines, each given to `onLine` until the last, {ok: true, stats}
 * (resolves with stats) or {ok: false, code, message} (rejects). Ctrl-C (asked for every
 * 50 ms) closes the connection, which stops the server's work. `what` names the work in
 * messages (the copy, the import).
 */
export async function streamToServer<T>(served: ServedCopy, what: string, req: object, body: Iterable<Buffer> | AsyncIterable<Buffer>, onLine: (r: Record<string, unknown>) => void): Promise<T> {
  const name = path.basename(served.image)
  const c = net.createConnection(served.sock)
  let settled = false
  let drained: (() => void) | null = null
  let poll: NodeJS.Timeout | undefined
  const result = new Promise<T>((resolve, reject) => {
    const done = (f: () => void) => {
      if (settled) return
      settled = true
      drained?.()
      f()
    }
    // Signals are taken by the addon (src/cli/signals.ts) and asked for here, as the library asks.
    poll = setInterval(() => {
      try {
        checkInterrupt()
      } catch (e) {
        c.destroy()
        done(() => reject(e))
      }
    }, 50)
    let buf = ''
    c.setEncoding('utf8')
    c.on('data', (d: string) => {
      buf += d
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const r = JSON.parse(buf.slice(0, nl)) as {ok?: boolean, stats?: T, code?: ErrCode, message?: string}
        buf = buf.slice(nl + 1)
        if (r.ok === true) done(() => resolve(r.stats!))
        else if (r.ok === false) done(() => reject(new PrismError(r.code ?? 'EIO', r.message ?? `the ${what} failed`)))
        else onLine(r)
      }
    })
    c.on('drain', () => drained?.())
    // (a server that dies: the connection is reset, or closed, without an answer)
    const gone = () => done(() => reject(new PrismError('EIO', `the server of ${name} stopped before the ${what} ended; the image holds nothing of it`)))
    c.on('error', gone)
    c.on('close', gone)
  })
  result.catch(() => {}) // (awaited below, after the stream is sent)
  const write = async (b: Buffer): Promise<void> => {
    if (settled || c.write(b)) return
    await new Promise<void>((r) => {
      drained = r
    })
    drained = null
  }
  try {
    await write(Buffer.from(JSON.stringify(req) + '\n'))
    for await (const b of body) {
      if (settled) break
      await write(b)
    }
  } catch (e) {
    // interrupted while reading the host: the server drops the work when the connection closes
    clearInterval(poll)
    settled = true
    c.destroy()
    throw e
  }
  try {
    return await result
  } finally {
    clearInterval(poll)
    c.destroy()
  }
}
