// The short commands that change the image (src/ops/short.ts SHORT: mkdir, touch, ln, ...)
// on a served image: the command sends the operation's name and arguments ('run') and the
// server runs the same function on its open volume in one step, queued with the other works
// (src/server/sliced.ts), rather than lending the image, which would hold every request of its
// mounts until the command's process ends. What the mounts changed is committed first; a
// failing operation changes nothing (a multi-argument one: each bad argument changes nothing,
// is sent as an {error} line, and the next follows, as alone). What it creates belongs to the
// command's user and group, as alone.
import type net from 'node:net'
import {isArgumentError} from '../errors.js'
import {SHORT, type ShortName, runShort} from '../ops/short.js'
import type {ServedImage} from './image.js'
import {whole} from './servedattrs.js'
import {serveSliced} from './sliced.js'

/** A 'run' request: `name` of SHORT, its `args`, and the command's user and group. */
export interface RunRequest {
  op: 'run'
  name: ShortName
  args: Record<string, unknown>
  uid?: number
  gid?: number
}

/** Serves a 'run' request: {error} lines for the arguments not done, then {ok: true, result}. */
export function serveRun(image: ServedImage, c: net.Socket, request: Record<string, unknown>, log: (msg: string) => void): void {
  const r = request as Partial<RunRequest>
  if (typeof r.name !== 'string' || !Object.hasOwn(SHORT, r.name) || typeof r.args !== 'object' || r.args === null) {
    c.end(JSON.stringify({ok: false, code: 'EUSAGE', message: 'malformed run request'}) + '\n')
    return
  }
  const req = r as RunRequest
  const owner = Number.isInteger(req.uid) && Number.isInteger(req.gid) ? {uid: req.uid!, gid: req.gid!} : null
  serveSliced<unknown>(image, c, log, {
    what: `${req.name}`,
    filesets: filesetsOf(req),
    // eslint-disable-next-line require-yield
    start: (ctl) => (function* () {
      const vol = image.vol
      vol.creator = owner
      try {
        return whole(image, () => runShort(vol, req.name, req.args as never, (items, fn) => {
          for (const item of items) {
            if (vol.hasChanges) image.commitNow()
            try {
              fn(item)
            } catch (e) {
              if (!isArgumentError(e)) throw e
              vol.abort()
              image.dropPending()
              ctl.send({error: {code: e.code, message: e.message}})
            }
          }
        }))
      } finally {
        vol.creator = null
      }
    })(),
    answer: (result) => ({result: result ?? null}),
  })
}

/** The filesets a request names (each {fileset} in its arguments; a renamed one): it waits while a clone reads one. */
function filesetsOf(req: RunRequest): string[] {
  const out = new Set<string>()
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk)
    else if (typeof v === 'object' && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'fileset' && typeof x === 'string') out.add(x)
        else walk(x)
      }
    }
  }
  walk(req.args)
  if (req.name === 'fileset-rename' && typeof req.args.from === 'string') out.add(req.args.from)
  return [...out]
}
