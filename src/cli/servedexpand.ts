// `prism clone` and `prism expand` on an image a prism
// server holds: rather than borrowing the image (src/cli/served.ts), which would hold every
// FUSE request of its mounts until the command ends, the command asks the server, which does
// the work in slices between requests (src/server/server.ts longRequest, image.ts). The
// command shows the same progress and output, and exits with the same status, as alone.
//  - A sync clone is made by the server as an async clone, expanded ahead of other work and
//    settled as a sync clone. SIGINT/SIGTERM (or this process ending) deletes it, as an
//    interrupted sync clone leaves nothing; the status is 130/143 as alone.
//  - A graft, or a clone with --replace, is made by the server out of sight and named at the
//    end (src/server/slicedclone.ts), the replacements' host files read here and streamed.
//    SIGINT/SIGTERM drops it, as alone, unless the server had made it by then: the command
//    asks the server to stop it (interruptWork) and waits for its answer, so that it never
//    says "interrupted" of a clone that stays. This process ending drops it too.
//  - An interrupted `expand` only stops waiting: the expansion goes on in the server.
//  - If the server stops or dies before answering, this process finishes the work itself,
//    once the image lock is free (a sync clone's async clone is expanded and settled).
import {randomBytes} from 'node:crypto'
import net from 'node:net'
import {PrismError, errorFromWire} from '../errors.js'
import {checkInterrupt} from '../interrupt.js'
import type {CloneResult, CloneStats, Replacement} from '../clone/clone.js'
import type {Volume} from '../fs/volume.js'
import type {Fileset} from '../fs/filesets.js'
import {withSession} from './session.js'

export interface ServedTarget {
  sock: string
  image: string
}

interface Line {
  ok?: boolean
  code?: unknown
  message?: unknown
  [k: string]: unknown
}

/** A token for a request whose work another connection may interrupt (interruptWork). */
export function interruptToken(): string {
  return randomBytes(16).toString('hex')
}

/** How long a command interrupted waits for the server's last answer before it gives up on it. */
export const INTERRUPT_WAIT_MS = 15000

/**
 * Asks the server on a connection of its own to stop the work of request token `token`
 * (src/server/image.ts ServedImage.interrupt). The work's own connection may be read no
 * more while its stream is full: neither a line nor its end would be seen before the work
 * had taken all of it. Resolves once the server has answered (or gone, or after a while).
 */
export function interruptWork(sock: string, token: string): Promise<void> {
  return new Promise((resolve) => {
    const c = net.createConnection(sock)
    const timer = setTimeout(() => c.destroy(), 5000)
    c.on('connect', () => c.write(JSON.stringify({op: 'interrupt', token}) + '\n'))
    c.on('data', () => c.destroy())
    c.on('error', () => c.destroy())
    c.on('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

/**
 * Asks the server to stop the work of connection `c` (any line cancels it) and waits for its
 * answer, the connection's end, for at most INTERRUPT_WAIT_MS: converse's onInterrupt for
 * work the server stops in its own way (a sync clone deleted, a removal's detaching stopped).
 */
export async function cancelAndWait(c: net.Socket): Promise<void> {
  if (c.destroyed) return
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, INTERRUPT_WAIT_MS)
    c.once('close', () => {
      clearTimeout(t)
      resolve()
    })
    c.write('{"op":"cancel"}\n')
  })
}

/**
 * Sends `req` on a new connection and hands each line of the answer to `onLine` until the
 * last one ({ok}), which it resolves with; null when the server went away first. While it
 * waits it asks for a signal (src/interrupt.ts) every 50 ms: `onInterrupt` then decides what
 * happens (its promise's end rethrows the interrupt). `body`: bytes sent after the request,
 * as fast as the server takes them (a copy-in's host tree, an archive); its failure (the
 * host read interrupted, an archive that shrank) closes the connection and rejects. With a
 * body, the request carries a token by which an interrupt reaches the server on a connection
 * of its own (interruptWork), besides `onInterrupt`.
 */
export function converse(sock: string, req: object, onLine: (l: Line) => void, onInterrupt: (c: net.Socket) => Promise<unknown>, body?: Iterable<Buffer> | AsyncIterable<Buffer>): Promise<Line | null> {
  const token = body ? interruptToken() : null
  if (token) req = {...req, interrupt: token}
  return new Promise((resolve, reject) => {
    let buf = ''
    let settled = false
    let interrupted: PrismError | null = null
    const c = net.createConnection(sock)
    let drained: (() => void) | null = null
    const end = (v: Line | null, e?: Error): void => {
      if (settled) return
      settled = true
      drained?.()
      clearInterval(timer)
      c.destroy()
      if (e) reject(e)
      else resolve(v)
    }
    const stop = (i: PrismError): void => {
      if (interrupted || settled) return
      interrupted = i
      // (the body stops writing: release a write waiting for the server to read)
      drained?.()
      if (token && !c.destroyed) void interruptWork(sock, token)
      onInterrupt(c).then(() => end(null, i), () => end(null, i))
    }
    const timer = setInterval(() => {
      if (interrupted) return
      try {
        checkInterrupt()
      } catch (e) {
        stop(e as PrismError)
      }
    }, 50)
    c.setEncoding('utf8')
    c.on('connect', () => {
      c.write(JSON.stringify(req) + '\n')
      if (body) void send(body)
    })
    c.on('drain', () => drained?.())
    const send = async (b: Iterable<Buffer> | AsyncIterable<Buffer>): Promise<void> => {
      try {
        for await (const d of b) {
          // (interrupted: the body stops, and the connection's end tells the server)
          if (settled || interrupted) return
          if (c.write(d)) continue
          await new Promise<void>((resolve) => {
            drained = resolve
          })
          drained = null
        }
      } catch (e) {
        // Interrupted while it read the body (the host tree): as the poll above. Otherwise the
        // server drops the work when the connection closes.
        if (e instanceof PrismError && e.code === 'EINTR') stop(e)
        else end(null, e as Error)
      }
    }
    c.on('data', (d: string) => {
      buf += d
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = JSON.parse(buf.slice(0, nl)) as Line
        buf = buf.slice(nl + 1)
        if (line.ok !== undefined) {
          // Work that was done when the signal came is reported as done.
          if (interrupted && !line.ok) end(null, interrupted)
          else end(line)
          return
        }
        onLine(line)
      }
    })
    c.on('error', () => end(null, interrupted ?? undefined))
    c.on('close', () => end(null, interrupted ?? undefined))
  })
}

/** Opens the image once its server has let it go, as the command alone would. */
export function alone<T>(image: string, wait: number | undefined, work: (vol: Volume) => T): Promise<T> {
  return withSession(image, true, {wait: Math.max(wait ?? 5, 30), onNotice: (m) => process.stderr.write(`prism: ${m}\n`)}, work)
}

export interface ServedCloneRequest {
  src: {fileset: string, path: string}
  /** a new fileset, or FILESET:/path for a graft (src/server/slicedclone.ts) */
  dst: {fileset: string, path?: string} | null
  exclude: string[]
  mode: 'async' | 'lazy' | 'sync'
  replace?: Replacement[]
}

/** A new clone made by the server of the image (see the top of this file). */
export async function servedClone(t: ServedTarget, req: ServedCloneRequest, opts: {onProgress?: (s: CloneStats) => void, wait?: number}): Promise<CloneResult> {
  if (req.dst?.path !== undefined || req.replace?.length) return slicedClone(t, req, opts)
  let made: string | null = null
  let last: CloneStats | null = null
  const asked = Date.now()
  const answer = await converse(t.sock, {op: 'clone', ...req}, (l) => {
    if (typeof l.made === 'string') made = l.made
    if (l.progress) opts.onProgress?.(last = l.progress as CloneStats)
  }, cancelAndWait) // (the server deletes the sync clone it was making, then answers)
  if (answer?.ok) return answer.result as CloneResult
  if (answer) throw errorFromWire(answer.code, answer.message)
  // The server went away before answering.
  const {clone, finishSyncClone} = await import('../clone/clone.js')
  const {tallyExpansion} = await import('../fs/expand.js')
  const {findFileset} = await import('../fs/filesets.js')
  const {FS_EXPANDING, MODE_ASYNC} = await import('../format/constants.js')
  const name: string | null = made
  return alone(t.image, opts.wait, (vol) => {
    // The clone the server made, if it died after committing it but before saying so: one of
    // the name asked for, from this source, made since this command asked, still expanding.
    const src = findFileset(vol, req.src.fileset)
    const mine = (f: Fileset | null): f is Fileset => f !== null && (name !== null
      || (f.state === FS_EXPANDING && f.mode === MODE_ASYNC && f.parentId === src?.id && f.created >= asked - 1000))
    const f = name ?? req.dst?.fileset
    const found = f === undefined ? null : findFileset(vol, f)
    if (!mine(found)) return clone(vol, req.src, req.dst, {exclude: req.exclude, mode: req.mode, onProgress: opts.onProgress})
    // Its async clone is there: expanded and settled here, counted from where the server was.
    const tally = tallyExpansion(vol, found.id)
    finishSyncClone(vol, found.name)
    const before: CloneStats = last ?? {dirs: 0, shared: 0, copiedHardlinked: 0, excluded: 0, replaced: 0}
    const stats: CloneStats = {
      dirs: before.dirs + tally.dirs, shared: before.shared + tally.shared, copiedHardlinked: before.copiedHardlinked + tally.copiedHardlinked,
      excluded: before.excluded + tally.excluded, replaced: 0,
    }
    return {fileset: found.name, path: '/', parent: src?.name ?? req.src.fileset, stats, unmatched: []}
  })
}

/**
 * A graft, or a clone with replacements, made by the server in slices (src/server/slicedclone.ts):
 * the replacements' host files are read here and streamed after the request. Ctrl-C stops the
 * stream and asks the server to stop the clone (interruptWork), then waits for its answer:
 * dropped (the interrupt is thrown), or made before the interrupt came (it is reported made).
 * This process ending closes the connection: the server drops the clone. A server that goes
 * away first: done if it said so, else made here alone.
 */
async function slicedClone(t: ServedTarget, req: ServedCloneRequest, opts: {onProgress?: (s: CloneStats) => void, wait?: number}): Promise<CloneResult> {
  const {replacementSource} = await import('../clone/clone.js')
  const {END_FRAME, hostFrames, streamedSources} = await import('../ops/hoststream.js')
  const replace = req.replace ?? []
  const hostPaths = replace.filter((r) => r.source !== '@empty-dir' && r.source !== '@empty-file').map((r) => replacementSource(r.source)).filter((l) => l.kind === 'host').map((l) => l.path)
  const c = net.createConnection(t.sock)
  const token = interruptToken()
  let settled = false
  let drained: (() => void) | null = null
  let done: CloneResult | null = null
  let interrupted: PrismError | null = null
  let poll: NodeJS.Timeout | undefined
  let giveUp: NodeJS.Timeout | undefined
  const answer = new Promise<Line | null>((resolve, reject) => {
    const end = (f: () => void): void => {
      if (settled) return
      settled = true
      clearInterval(poll)
      clearTimeout(giveUp)
      drained?.()
      c.destroy()
      f()
    }
    poll = setInterval(() => {
      if (interrupted) return
      try {
        checkInterrupt()
      } catch (e) {
        // The server is asked to stop the clone and answers once it has: "interrupted" (the
        // interrupt is thrown), or done, when it was made first.
        interrupted = e as PrismError
        drained?.()
        if (c.destroyed) {
          end(() => reject(e))
          return
        }
        void interruptWork(t.sock, token)
        giveUp = setTimeout(() => end(() => reject(e)), INTERRUPT_WAIT_MS)
      }
    }, 50)
    let buf = ''
    c.setEncoding('utf8')
    c.on('data', (d: string) => {
      buf += d
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const l = JSON.parse(buf.slice(0, nl)) as Line
        buf = buf.slice(nl + 1)
        if (l.progress) opts.onProgress?.(l.progress as CloneStats)
        if (l.done) done = l.done as CloneResult
        if (l.ok !== undefined) {
          if (interrupted && !l.ok) end(() => reject(interrupted))
          else end(() => resolve(l))
          return
        }
      }
    })
    c.on('drain', () => drained?.())
    const gone = (): void => {
      if (interrupted && !done) end(() => reject(interrupted))
      else end(() => resolve(null))
    }
    c.on('error', gone)
    c.on('close', gone)
  })
  answer.catch(() => {}) // (awaited below, after the stream is sent)
  const write = async (b: Buffer): Promise<void> => {
    if (settled || interrupted || c.write(b)) return
    await new Promise<void>((r) => {
      drained = r
    })
    drained = null
  }
  try {
    await write(Buffer.from(JSON.stringify({op: 'slicedclone', ...req, replace, srcs: streamedSources(hostPaths), interrupt: token}) + '\n'))
    if (hostPaths.length) {
      for (const f of hostFrames(hostPaths, true)) {
        if (settled || interrupted) break
        await write(f)
      }
      await write(END_FRAME)
    }
  } catch (e) {
    // interrupted while reading the host: the server drops the clone when the connection closes
    clearInterval(poll)
    settled = true
    c.destroy()
    throw e
  }
  const a = await answer
  if (a?.ok) return a.result as CloneResult
  if (a) throw errorFromWire(a.code, a.message)
  if (done) return done
  // The server went away before the clone was made: nothing of it is left; made here.
  const {clone} = await import('../clone/clone.js')
  return alone(t.image, opts.wait, (vol) => clone(vol, req.src, req.dst, {exclude: req.exclude, mode: req.mode, replace, onProgress: opts.onProgress}))
}

export interface ExpandDone {
  fileset: string
  dirs: number
}

/**
 * `prism expand NAMES` / `--all` done by the server (see the top of this file): each fileset's
 * result in order; one that is not a fileset goes to `onItemError` (the others go on).
 */
export async function servedExpand(t: ServedTarget, req: {names: string[], all: boolean}, opts: {onItemError: (e: PrismError) => void, onProgress?: (fileset: string, dirs: number) => void, wait?: number}): Promise<ExpandDone[]> {
  const out: ExpandDone[] = []
  const seen: string[] = []
  const answer = await converse(t.sock, {op: 'expand', ...req}, (l) => {
    const item = l.item as {fileset?: string, dirs?: number, error?: {code: unknown, message: unknown}} | undefined
    if (item?.error) {
      seen.push('')
      opts.onItemError(errorFromWire(item.error.code, item.error.message))
    } else if (item) {
      seen.push(item.fileset!)
      out.push({fileset: item.fileset!, dirs: item.dirs!})
    }
    const p = l.progress as {fileset: string, dirs: number} | undefined
    if (p) opts.onProgress?.(p.fileset, p.dirs)
  }, async () => {
    // Only the waiting stops: the server goes on expanding.
  })
  if (answer?.ok) return out
  if (answer) throw errorFromWire(answer.code, answer.message)
  // The server went away before answering: the rest is expanded here.
  const {expandAll, isExpanding} = await import('../fs/expand.js')
  const {getFileset, listFilesets} = await import('../fs/filesets.js')
  const {forEachItem} = await import('../fs/image.js')
  return alone(t.image, opts.wait, (vol) => {
    const targets = req.all ? listFilesets(vol).filter(isExpanding).map((f) => f.name).filter((n) => !seen.includes(n)) : req.names.slice(seen.length)
    forEachItem(vol, targets, (e) => opts.onItemError(e), (name) => {
      const f = getFileset(vol, name)
      if (!isExpanding(f)) { out.push({fileset: f.name, dirs: 0}); return }
      let n = 0
      expandAll(vol, f, () => {
        if ((++n & 63) === 0) opts.onProgress?.(f.name, n)
      })
      out.push({fileset: f.name, dirs: n})
    })
    return out
  })
}
