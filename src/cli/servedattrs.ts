// `prism chmod`, `prism chown` and `prism write` on an image a prism server holds: the command
// asks the server (src/server/servedattrs.ts), which does the work in slices between its
// mounts' requests, rather than borrowing the image, which would hold them all until the
// command ends. Output, --json and exit codes are those of the command alone; each argument
// that fails is reported on its own line, in order.
//  - Ctrl-C (SIGTERM, SIGHUP): the server is asked to stop and the command exits 128 + the
//    signal. A write is dropped whole (the file is as it was); a chmod -R or chown -R keeps
//    the inodes it changed so far, each whole, as alone once it has committed on a large tree.
//  - A server that dies meanwhile: exit status 7, and the image replays to its last commit.
import type {PrismError} from '../errors.js'
import type {Spool} from '../ops/spool.js'
import {ask, lines} from './servedcopy.js'
import type {ServedTarget} from './servedexpand.js'

type ImagePath = {fileset: string, path: string}

/** chmod (`spec`: the mode) or chown (`spec`: OWNER[:GROUP]) of `locs`; the chowns done, as chown's --json gives them. */
export async function askAttrs(t: ServedTarget, cmd: 'chmod' | 'chown', spec: string, locs: ImagePath[], opts: {recursive?: boolean, noDereference?: boolean}, onError: (e: PrismError) => void): Promise<Array<{path: string, inodes: number}>> {
  const req = {op: 'attrs', cmd, spec, locs: locs.map((l) => ({fileset: l.fileset, path: l.path})), recursive: opts.recursive, noDereference: opts.noDereference}
  const answer = await ask(t, req, `${cmd} ended; each inode it changed is whole`, lines(undefined, onError))
  return answer.changed as Array<{path: string, inodes: number}>
}

/** `prism write`: the spooled input goes to the server, which writes it to `loc`. */
export async function askWrite(t: ServedTarget, loc: ImagePath, spool: Spool, opts: {append: boolean, mode: number}): Promise<{path: string, bytes: number, size: number}> {
  const req = {op: 'write', fileset: loc.fileset, path: loc.path, size: spool.size, append: opts.append, mode: opts.mode, uid: process.getuid?.(), gid: process.getgid?.()}
  const answer = await ask(t, req, 'the write ended; the file is as it was', () => {}, spool.chunks())
  return {path: answer.path as string, bytes: answer.bytes as number, size: answer.size as number}
}
