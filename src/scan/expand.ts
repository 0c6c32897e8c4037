// Scanning a fileset that is still EXPANDING (an asynchronous clone, FORMAT.md §8.2) must
// scan what its user sees, so it is expanded completely first, with the clone owner's
// expandAll() from src/fs/expand.ts: committed before the walk on a writable volume, and
// in memory only on a read-only one (a user who may only read the image scans the same view).
import {expandAll} from '../fs/expand.js'
import {FS_EXPANDING} from '../format/constants.js'
import type {Fileset} from '../fs/filesets.js'
import type {Volume} from '../fs/volume.js'

export function isExpanding(f: Fileset): boolean {
  return f.state === FS_EXPANDING
}

/** Expands the fileset completely if it is still EXPANDING (on a read-only volume, in memory). */
export async function ensureExpanded(vol: Volume, f: Fileset): Promise<void> {
  if (!isExpanding(f)) return
  expandAll(vol, f)
  vol.commit()
}
