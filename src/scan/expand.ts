// Scanning a fileset that is still EXPANDING (an asynchronous clone, FORMAT.md §8.2) must
// scan what its user sees, so it is expanded completely first, with the clone owner's
// expandAll() from src/clone/expand.ts, and the expansion is committed before the walk.
import {expandAll} from '../clone/expand.js'
import {FS_EXPANDING} from '../format/constants.js'
import {PrismError} from '../errors.js'
import type {Fileset} from '../fs/filesets.js'
import type {Volume} from '../fs/volume.js'

export function isExpanding(f: Fileset): boolean {
  return f.state === FS_EXPANDING
}

/** Expands the fileset completely if it is still EXPANDING (the volume must be writable). */
export async function ensureExpanded(vol: Volume, f: Fileset): Promise<void> {
  if (!isExpanding(f)) return
  if (vol.readOnly) throw new PrismError('EROFS', `fileset '${f.name}' is still expanding: it must be opened for writing to be expanded first`)
  expandAll(vol, f)
  vol.commit()
}
