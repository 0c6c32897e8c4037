// mv: renames within a fileset; between filesets, copies (sharing blocks) then removes, with
// rename(2)'s rules either way (GNU mv's, across file systems): a directory replaces only an
// empty directory, a non-directory only a non-directory. Between filesets the copy is staged
// and published in the same transaction as the source's removal (src/ops/copy.ts), so the
// tree shows in one place or the other, never in both or neither.
import {fail, isArgumentError, type PrismError} from '../errors.js'
import {dirCount} from '../fs/dir.js'
import type {Namespace} from '../fs/namespace.js'
import {splitPath} from '../fs/namespace.js'
import type {Volume} from '../fs/volume.js'
import {copySteps, type CopyOptions} from './copy.js'
import {localSource} from './hostsource.js'

export interface ImagePath {
  fileset: string
  path: string
}

/** How a move runs in steps (moveSteps); alone, move() gives none of these. */
export interface MoveSteps {
  /** called as each source begins (a server commits what its mounts changed) */
  begin?: () => void
  /**
   * called as each source ends: `failed` when it failed with an error about itself (reported
   * to onSourceError). Alone: the source's work is dropped (abort) or committed.
   */
  settle?: (failed: boolean) => void
  /** for the copy between filesets (CopyOptions.changes, visited, onProgress) */
  copy?: Pick<CopyOptions, 'changes' | 'visited' | 'onProgress'>
  /**
   * called in the step that publishes a copy between filesets, before anything is changed:
   * throws when the source must not be removed (changed while it was copied)
   */
  beforePublish?: () => void
}

/**
 * Moves each source to `dst` (into it, if it is a directory). With `onSourceError`, each
 * source moves on its own, as mv does: one that fails with an error about itself changes
 * nothing and is handed there, and the next follows (each is its own transaction:
 * forEachItem). Without it, the first failure is thrown.
 */
export function move(vol: Volume, srcs: ImagePath[], dst: ImagePath, nsOf: (fileset: string) => Namespace, onSourceError?: (e: PrismError, src: ImagePath) => void): void {
  const steps = moveSteps(vol, srcs, dst, nsOf, onSourceError, {settle: (failed) => (failed ? vol.abort() : vol.commit())})
  while (!steps.next().done) { /* alone: straight on */ }
}

/**
 * move() in steps: a copy between filesets yields after each entry (a server runs it in
 * slices between its mounts' requests, src/server/sliced.ts); a rename is one step.
 */
export function* moveSteps(vol: Volume, srcs: ImagePath[], dst: ImagePath, nsOf: (fileset: string) => Namespace, onSourceError: ((e: PrismError, src: ImagePath) => void) | undefined, how: MoveSteps): Generator<void, void> {
  const dns = nsOf(dst.fileset)
  const dstIsDir = dns.exists(dst.path, true) && dns.resolve(dst.path, true).isDir
  if (srcs.length > 1 && !dstIsDir) fail('ENOTDIR', `target '${dst.fileset}:${dst.path}' is not a directory`)
  for (const src of srcs) {
    how.begin?.()
    try {
      yield* moveOne(vol, src, dst, dstIsDir, nsOf, how)
    } catch (e) {
      if (!onSourceError || !isArgumentError(e)) throw e
      how.settle?.(true)
      onSourceError(e, src)
      continue
    }
    how.settle?.(false)
  }
}

function* moveOne(vol: Volume, src: ImagePath, dst: ImagePath, dstIsDir: boolean, nsOf: (fileset: string) => Namespace, how: MoveSteps): Generator<void, void> {
  const comps = splitPath(src.path)
  if (comps.length === 0) fail('EBUSY', `cannot move the root of fileset '${src.fileset}'`)
  const target = dstIsDir ? {fileset: dst.fileset, path: (dst.path.endsWith('/') ? dst.path : dst.path + '/') + comps[comps.length - 1]} : dst
  if (src.fileset === target.fileset) {
    const ns = nsOf(src.fileset)
    // As GNU mv: a source and a target that are one file (the same name, as in
    // `mv root:/a root:/`, or two hard links) is an error, not a silent success.
    if (ns.exists(target.path, false) && ns.resolve(target.path, false).ino === ns.resolve(src.path, false).ino) {
      fail('EINVAL', `'${src.fileset}:${src.path}' and '${target.fileset}:${target.path}' are the same file`)
    }
    ns.rename(src.path, target.path)
    return
  }
  const sns = nsOf(src.fileset)
  const tns = nsOf(target.fileset)
  const moving = sns.resolve(src.path, false) // fail early if missing
  const from = sns.where(src.path)
  const to = tns.where(target.path)
  // (what a FILESET:/path mount shows cannot go: said now, before anything is copied)
  if (moving.isDir) sns.refuseMounted(moving.ino, () => from)
  const p = tns.resolveParent(target.path, moving.isDir ? 'dir' : 'other')
  if (tns.lookupEntry(p.dir, p.name)) {
    const t = tns.resolve(target.path, false)
    if (moving.isDir && !t.isDir) fail('ENOTDIR', `cannot overwrite non-directory '${to}' with directory '${from}'`)
    if (!moving.isDir && t.isDir) fail('EISDIR', `cannot overwrite directory '${to}' with non-directory '${from}'`)
    if (t.isDir && dirCount(t) > 0) fail('ENOTEMPTY', `cannot move '${from}' to '${to}': directory not empty`)
    if (t.isDir) tns.refuseMounted(t.ino, () => to)
  }
  yield* copySteps(vol, [{kind: 'image', ...src}], {kind: 'image', ...target}, {
    ...how.copy,
    recursive: true, noTargetDirectory: true, replaceEmptyDir: true,
    beforePublish: (stats) => {
      // Nothing is removed unless all of it was copied.
      const e = stats.errors[0]
      if (e) fail(e.code, e.message)
      how.beforePublish?.()
    },
    onPublish: () => sns.remove(src.path, {recursive: true}),
  }, localSource)
}
