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

/** Set by src/cli/served.ts when the server of the image runs this copy itself. */
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
  const name = path.basename(served.image)
  const c = net.createConnection(served.sock)
  let settled = false
  let drained: (() => void) | null = null
  let poll: NodeJS.Timeout | undefined
  const result = new Promise<CopyStats>((resolve, reject) => {
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
        const r = JSON.parse(buf.slice(0, nl)) as {ok?: boolean, progress?: CopyStats, error?: CopyError, stats?: CopyStats, code?: ErrCode, message?: string}
        buf = buf.slice(nl + 1)
        if (r.progress) opts.onProgress?.({...r.progress, errors: []})
        else if (r.error) opts.onError?.(r.error)
        else if (r.ok === undefined) continue // ({done}: the copy is in place, its answer follows)
        else if (r.ok) done(() => resolve(r.stats!))
        else done(() => reject(new PrismError(r.code ?? 'EIO', r.message ?? 'the copy failed')))
      }
    })
    c.on('drain', () => drained?.())
    // (a server that dies: the connection is reset, or closed, without an answer)
    const gone = () => done(() => reject(new PrismError('EIO', `the server of ${name} stopped before the copy ended; the image holds nothing of it`)))
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
  const req = {op: 'copyin', srcs: streamedSources(paths), dst: {fileset: dst.fileset, path: dst.path}, recursive: opts.recursive, noTargetDirectory: opts.noTargetDirectory}
  try {
    await write(Buffer.from(JSON.stringify(req) + '\n'))
    for (const f of hostFrames(paths, Boolean(opts.recursive))) {
      if (settled) break
      await write(f)
    }
    await write(END_FRAME)
  } catch (e) {
    // interrupted while reading the host: the server drops the copy when the connection closes
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
