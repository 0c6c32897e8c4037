// How to undo the changes made to an extent map (an Inode's ExtentMap) while a
// savepoint watches it (Volume.savepoint): rather than copy a map of thousands of extents at
// every request that may change it, the savepoint asks for its changes to be recorded, and a
// rollback replays them backwards. Every change to a map goes through extents.ts mapRange and
// unmapRange, which call noteExtentChange first.
import type {Extent} from '../format/extent.js'
import type {ExtentMap} from './extentmap.js'

interface Change {
  /** where the change starts, and how many extents are there after it */
  at: number
  count: number
  /** copies of the extents that were there before it */
  was: Extent[]
}

const LOGS = new WeakMap<ExtentMap, Change[]>()

/** From now on, changes to `ext` are recorded (until undoExtentChanges or forgetExtentChanges). */
export function watchExtentChanges(ext: ExtentMap): void {
  LOGS.set(ext, [])
}

/** `ext` is about to replace its `before` extents from index `at` with `after` extents. */
export function noteExtentChange(ext: ExtentMap, at: number, before: number, after: number): void {
  const log = LOGS.get(ext)
  if (!log) return
  const was: Extent[] = new Array(before)
  for (let i = 0; i < before; i++) was[i] = {...ext.get(at + i)}
  log.push({at, count: after, was})
}

/** Puts `ext` back as it was when watchExtentChanges was called, and stops recording. */
export function undoExtentChanges(ext: ExtentMap): void {
  const log = LOGS.get(ext)
  LOGS.delete(ext)
  if (!log) return
  for (let i = log.length - 1; i >= 0; i--) ext.splice(log[i].at, log[i].count, log[i].was)
}

/** Stops recording changes to `ext` (they stand). */
export function forgetExtentChanges(ext: ExtentMap): void {
  LOGS.delete(ext)
}
