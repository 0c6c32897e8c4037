// The library's front door: make an image, open one, run a unit of work against it (what it
// has not committed is dropped if it fails), and reach a fileset's namespace.
import {S_IFDIR} from '../format/constants.js'
import {PrismError, isArgumentError} from '../errors.js'
import {uninterrupted} from '../interrupt.js'
import {dirInit} from './dir.js'
import {addFileset, findFileset, getFileset, listFilesets, saveFileset, type Fileset} from './filesets.js'
import {filesetNameProblem} from '../format/fileset.js'
import {touch, type Inode} from './inode.js'
import {Namespace, dropFileset, reapOrphans} from './namespace.js'
import {clonesInFlight, expandAll, finishExpanded} from './expand.js'
import {Volume, type MkfsOptions, type OpenOptions} from './volume.js'

export {Volume, Namespace}
export type {MkfsOptions, OpenOptions}

/** A new, empty root directory for a fileset (owned by the calling user, mode 755). */
export function newRootDir(vol: Volume): Inode {
  const root = vol.ialloc(S_IFDIR | 0o755)
  dirInit(root)
  root.r.nlink = 2
  root.r.uid = vol.creator?.uid ?? process.getuid?.() ?? 0
  root.r.gid = vol.creator?.gid ?? process.getgid?.() ?? 0
  touch(root.r, {a: true, m: true, c: true})
  root.r.dataVersion = 1
  vol.idirty(root)
  return root
}

/** Creates a fileset with an empty root directory. */
export function createEmptyFileset(vol: Volume, name: string): Fileset {
  return addFileset(vol, name, newRootDir(vol).ino)
}

/** mkfs: a new image holding one empty fileset, `root`. */
export function mkfs(path: string, opts: MkfsOptions): Volume {
  return Volume.mkfs(path, opts, (vol) => {
    createEmptyFileset(vol, 'root')
  })
}

export function namespace(vol: Volume, fileset: string): Namespace {
  return new Namespace(vol, getFileset(vol, fileset))
}

/**
 * Opens the image, runs `work`, commits and closes. If `work` throws, nothing it did since
 * the last commit reaches the image, and the error is rethrown. Work that commits along the
 * way (large copies and clones call maybeCommit at consistent points) keeps what it committed;
 * what it left on the orphan list (a staged tree, a partial clone) is freed before the image
 * is closed (Volume.closeAfterFailure).
 */
export function withImage<T>(path: string, opts: OpenOptions, work: (vol: Volume) => T): T {
  const vol = Volume.open(path, opts)
  let result: T
  try {
    result = work(vol)
    finishExpanded(vol) // clones the work expanded whole end their expansion
  } catch (e) {
    vol.closeAfterFailure(e)
    throw e
  }
  // The last commit: past the work's point of no return, a signal no longer stops it.
  uninterrupted(() => vol.close())
  return result
}

export async function withImageAsync<T>(path: string, opts: OpenOptions, work: (vol: Volume) => Promise<T>): Promise<T> {
  const vol = Volume.open(path, opts)
  let result: T
  try {
    result = await work(vol)
    finishExpanded(vol) // clones the work expanded whole end their expansion
  } catch (e) {
    vol.closeAfterFailure(e)
    throw e
  }
  // The last commit: past the work's point of no return, a signal no longer stops it.
  uninterrupted(() => vol.close())
  return result
}

/**
 * Runs `fn` for each item of a command that takes several (paths, sources, filesets). With
 * `onError`, each item is its own transaction, as coreutils handle each operand on its own:
 * committed once it is done, and, if it fails with an error about itself (isArgumentError),
 * dropped (the volume goes back to the last commit: the items before it stay done) and
 * handed to `onError`, and the next item runs. Other errors are thrown. Without `onError`
 * the first error is thrown and nothing is committed here.
 */
export function forEachItem<T>(vol: Volume, items: readonly T[], onError: ((e: PrismError, item: T) => void) | undefined, fn: (item: T) => void): void {
  for (const item of items) {
    if (!onError) {
      fn(item)
      continue
    }
    try {
      fn(item)
    } catch (e) {
      if (!isArgumentError(e)) throw e
      vol.abort()
      onError(e, item)
      continue
    }
    vol.commit()
  }
}

export function isPrismError(e: unknown): e is PrismError {
  return e instanceof PrismError
}

/**
 * Deletes a fileset: its record goes and its root joins the orphan list in one transaction;
 * the tree is then freed in steps. Blocks and inodes still used by other filesets stay.
 * Clones still expanding from it are expanded completely first (they read from its tree).
 */
export function deleteFileset(vol: Volume, name: string, onExpand?: (clone: string) => void): void {
  let f = getFileset(vol, name)
  for (const c of clonesInFlight(vol, f.id)) {
    onExpand?.(c.name)
    expandAll(vol, c)
    vol.maybeCommit()
  }
  f = getFileset(vol, name)
  dropFileset(vol, f)
  reapOrphans(vol)
}

/**
 * What `prism fileset delete` checks first: the fileset exists, and one that others were
 * cloned from goes only with `force` (as zfs destroy refuses a dataset with dependents).
 */
export function checkDeletable(vol: Volume, name: string, force: boolean): Fileset {
  const f = getFileset(vol, name)
  const clones = listFilesets(vol).filter((c) => c.parentId === f.id).map((c) => c.name)
  if (clones.length > 0 && !force) {
    const shown = clones.length > 5 ? `${clones.slice(0, 5).join(', ')} and ${clones.length - 5} more` : clones.join(', ')
    throw new PrismError('EBUSY', `fileset '${f.name}' has clones (${shown}); they would keep their files and take its parent as theirs: use --force to delete it`)
  }
  return f
}

export function renameFileset(vol: Volume, from: string, to: string): void {
  const f = getFileset(vol, from)
  const problem = filesetNameProblem(to)
  if (problem) throw new PrismError('EUSAGE', problem) // a name the user chose: a bad argument
  if (findFileset(vol, to)) throw new PrismError('EEXIST', `fileset '${to}' already exists`)
  saveFileset(vol, {...f, name: to})
}
