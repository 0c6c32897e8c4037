// `prism fileset delete` and `prism rm` on an image a prism server holds: rather than borrowing
// the image (src/cli/served.ts), which would hold every FUSE request of its mounts while a
// large tree is freed, the command asks the server (src/server/image.ts remove): it detaches
// each item in a short transaction, as the command alone does first (gone from the mounts at
// once), then frees what it detached in slices between the mounts' requests. The command
// returns once it is all freed, as alone (`prism df` right after shows the space back), with
// the same output and exit status.
//  - Ctrl-C (SIGTERM, SIGHUP) asks the server to stop, as alone: no item is detached after
//    it. If every item was through when it came, the command is done (status 0, as alone past
//    its last item's commit); else status 128 + the signal, the items not reached as they
//    were. What was detached is freed by the server all the same (alone, an interrupted rm
//    leaves it on the orphan list for the next command to free).
//  - If the server stops or dies before answering, the items it did not report are done here,
//    once the image lock is free; opening the image frees what it had detached.
import {errorFromWire, type PrismError} from '../errors.js'
import type {Volume} from '../fs/volume.js'
import {alone, cancelAndWait, converse, type ServedTarget} from './servedexpand.js'

export type RemoveRequest = {filesets: string[], force: boolean} | {paths: Array<{fileset: string, path: string}>, recursive: boolean, force: boolean}

/**
 * Removes the items of `req` through the server of the image: each error about one item goes
 * to `onItemError` (the others go on); `doItem` does item i alone on `vol`, should the server
 * go away before it answered for it (as the command alone does it, error and all).
 */
export async function servedRemove(t: ServedTarget, req: RemoveRequest, opts: {doItem: (vol: Volume, i: number) => void, onItemError: (e: PrismError) => void, wait?: number}): Promise<void> {
  let answered = 0
  const errors: PrismError[] = []
  const answer = await converse(t.sock, {op: 'remove', ...req}, (l) => {
    const item = l.item as {i: number, error?: {code: unknown, message: unknown}} | undefined
    if (!item) return
    answered = item.i + 1
    if (item.error) errors.push(errorFromWire(item.error.code, item.error.message))
  }, cancelAndWait) // (the server stops detaching and answers at once; it goes on freeing)
  // (reported here rather than in the socket's handler: onItemError may throw)
  for (const e of errors) opts.onItemError(e)
  if (answer?.ok) return
  if (answer) throw errorFromWire(answer.code, answer.message)
  const n = 'filesets' in req ? req.filesets.length : req.paths.length
  const {forEachItem} = await import('../fs/image.js')
  const rest = Array.from({length: n - answered}, (_, k) => answered + k)
  await alone(t.image, opts.wait, (vol) => forEachItem(vol, rest, (e) => opts.onItemError(e), (i) => opts.doItem(vol, i)))
}
