// `prism import ARCHIVE` on a served image, run by the server in slices (request 'import',
// src/server/sliced.ts): the CLI opens the archive as alone (a file read in place, standard
// input spooled first) and streams its bytes as stored (still compressed) over the socket,
// `size` of them; the server decompresses them as they come (decompressed(), as alone) and
// runs the import the command runs alone (src/tar/import.ts TarImport, its staged tree
// published by its last transaction) on its open image, a piece of the archive at a step
// (importSteps), committing every COMMIT_DATA of file data as the copy-in does.
//
// Replies, JSON lines: {progress: ImportStats} now and then, {warning: line} for each entry
// refused or attribute dropped (in order), {done: {stats}} once it is published, then
// {ok: true, stats} or {ok: false, code, message}. The client going away (interrupted,
// killed) before the import is published aborts it: nothing of it shows, as alone.
//
// It must never open a host path (only the stream).
import type net from 'node:net'
import {TarImport, importSteps, type ImportStats} from '../tar/import.js'
import type {ServedImage} from './image.js'
import {COMMIT_DATA, HIGH_WATER, LOW_WATER, serveSliced} from './sliced.js'

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

/** A queue of buffers that resumes its reader (`wake`) when one comes. */
class Chunks {
  private readonly list: Buffer[] = []
  queued = 0
  wake = () => {}
  push(d: Buffer): void {
    this.list.push(d)
    this.queued += d.length
    this.wake()
  }
  shift(): Buffer | undefined {
    const d = this.list.shift()
    if (d) this.queued -= d.length
    return d
  }
}

/** Serves one import on connection `c` (`rest`: the archive's bytes that came with its request line). */
export function serveImport(image: ServedImage, c: net.Socket, request: Record<string, unknown>, rest: Buffer, log: (msg: string) => void): void {
  if (!isRequest(request)) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed import request'}) + '\n')
    return
  }
  const req: ImportRequest = request
  // The archive as it comes (the first `size` bytes), and decompressed.
  const raw = new Chunks()
  const out = new Chunks()
  let left = req.size
  const take = (d: Buffer) => {
    const b = d.subarray(0, left)
    left -= b.length
    if (b.length > 0) raw.push(b)
    if (raw.queued > HIGH_WATER) c.pause()
  }
  take(rest)
  let ended = false
  let failed: Error | null = null
  /** the import has ended (or failed): decompression stops */
  let stopped = false
  let committedData = 0
  let imp: TarImport | null = null

  async function* archive(): AsyncGenerator<Buffer> {
    for (let got = 0; got < req.size;) {
      const d = raw.shift()
      if (stopped) return
      if (!d) {
        await new Promise<void>((r) => {
          raw.wake = r
        })
        continue
      }
      if (raw.queued < LOW_WATER) c.resume()
      got += d.length
      yield d
    }
  }
  /** Decompresses the archive into `out`, at most HIGH_WATER bytes ahead of the import. */
  async function decompress(): Promise<void> {
    const {decompressed} = await import('../tar/compress.js')
    try {
      for await (const d of decompressed(archive())) {
        if (stopped) return
        out.push(d)
        kick()
        while (out.queued > HIGH_WATER && !stopped) {
          await new Promise<void>((r) => {
            out.wake = r
          })
        }
      }
      ended = true
    } catch (e) {
      failed = e as Error
    }
    kick()
  }
  const next = (): Buffer | null | 'end' => {
    const d = out.shift()
    if (d) {
      if (out.queued <= LOW_WATER) out.wake()
      return d
    }
    if (failed) throw failed
    return ended ? 'end' : null
  }

  const {kick} = serveSliced<ImportStats>(image, c, log, {
    what: `import into ${req.target.fileset}:${req.target.path}`,
    interrupt: request.interrupt,
    filesets: [req.target.fileset],
    // (all of it in the generator: one aborted before its first step makes nothing)
    start: (ctl) => (function* () {
      try {
        imp = new TarImport(image.vol, req.target, {
          owner: req.owner,
          onProgress: (s) => ctl.send({progress: s}),
          onWarning: (m) => ctl.send({warning: m}),
        })
        void decompress()
        return yield* importSteps(imp, next)
      } finally {
        stopped = true
        raw.wake()
        out.wake()
      }
    })(),
    onData: take,
    starved: () => out.queued === 0 && !ended && failed === null,
    commitDue: () => {
      const bytes = imp?.stats.bytes ?? 0
      if (bytes - committedData < COMMIT_DATA) return false
      committedData = bytes
      return true
    },
    answer: (stats) => ({stats}),
  })
}
