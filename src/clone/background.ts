// The background expander of asynchronous clones (paper §4.2): a detached, niced process,
// `prism expand --background`, that expands every async clone of an image in slices, one
// transaction each, taking the image lock for each. A process that waits for the image lock
// says so (a shared flock on a 'wait' file, src/device/file.ts); the expander checks it
// between directories and ends its slice at once, so a command on any fileset waits for
// the directory being expanded and one commit: well under 100 ms. A slice also ends after
// SLICE_MS or when its transaction is large, and the expander pauses PAUSE_MS between
// slices (waiters poll every 5 ms).
//
// One expander runs per image: it holds an flock on a small lock file in the temporary
// directory, named after the image's device and inode. Commands that find an async clone
// still expanding start one if that lock is free (ensureExpander), so an expander that was
// killed is restarted by the next command, and resumes: the state is all in the image.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {fsExt, openSidecar, tryFlock} from '../device/file.js'
import {childProcess} from '../lazy.js'
import {FS_EXPANDING, MODE_ASYNC} from '../format/constants.js'
import {listFilesets} from '../fs/filesets.js'
import {withImage} from '../fs/image.js'
import {Expander} from '../fs/expand.js'

/** A slice ends after this long, or as soon as another process waits for the lock. */
export const SLICE_MS = 1000
export const PAUSE_MS = 6

const sleeper = new Int32Array(new SharedArrayBuffer(4))
const sleepMs = (ms: number) => { Atomics.wait(sleeper, 0, 0, ms) }

function sidecar(image: string, kind: 'expand' | 'wait'): number | null {
  const fd = fs.openSync(image, 'r')
  try {
    return openSidecar(fd, kind)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Takes the per-image expander lock: its descriptor, or null if another expander holds it
 * (or its lock file is another user's that this one may not open: then that user's prism
 * expands).
 */
export function takeExpanderLock(image: string): number | null {
  const fd = sidecar(image, 'expand')
  if (fd === null) return null
  try {
    if (tryFlock(fd, 'exnb')) return fd
  } catch (e) {
    fs.closeSync(fd)
    throw e
  }
  fs.closeSync(fd)
  return null
}

/** A check that some process waits for the image lock (it holds the 'wait' file shared). */
function waiterCheck(image: string): () => boolean {
  const fd = sidecar(image, 'wait')
  if (fd === null) return () => false // nobody can announce a wait: slices end by time
  let last = 0
  let waiting = false
  return () => {
    const now = Date.now()
    if (now - last < 2) return waiting
    last = now
    waiting = !tryFlock(fd, 'exnb')
    if (!waiting) fsExt.flockSync(fd, 'un')
    return waiting
  }
}

export function expanderRunning(image: string): boolean {
  const fd = takeExpanderLock(image)
  if (fd === null) return true
  fs.closeSync(fd)
  return false
}

/** Starts a background expander for `image` unless one is running. Best effort. */
export function ensureExpander(image: string): void {
  try {
    if (expanderRunning(image)) return
    // The running prism binary, or (library use) the one of this package.
    const self = process.argv[1] ?? ''
    const bin = /[\\/]bin[\\/]run\.js$/.test(self) ? self : fileURLToPath(new URL('../../bin/run.js', import.meta.url))
    // node:child_process is loaded only here: most commands never start an expander.
    const child = childProcess().spawn(process.execPath, [bin, 'expand', '--background', '--image', path.resolve(image)], {
      detached: true, stdio: 'ignore',
    })
    child.unref()
  } catch {
    // No expander now: the next command that touches the image tries again.
  }
}

/**
 * Slice and pause from the environment (PRISM_EXPAND_SLICE_MS, PRISM_EXPAND_PAUSE_MS,
 * PRISM_EXPAND_SLICE_DIRS): for tuning, and for tests that need a slow expander to kill.
 */
export function backgroundEnv(): {sliceMs?: number, pauseMs?: number, sliceDirs?: number} {
  const num = (k: string): number | undefined => {
    const v = Number(process.env[k])
    return process.env[k] !== undefined && Number.isFinite(v) && v >= 0 ? v : undefined
  }
  return {sliceMs: num('PRISM_EXPAND_SLICE_MS'), pauseMs: num('PRISM_EXPAND_PAUSE_MS'), sliceDirs: num('PRISM_EXPAND_SLICE_DIRS')}
}

export interface BackgroundStats {
  slices: number
  finished: string[]
}

/**
 * The expander's loop: slices over every async clone still expanding, until none is left.
 * Returns at once if another expander holds the image's expander lock.
 */
export function runBackground(image: string, opts: {sliceMs?: number, pauseMs?: number, sliceDirs?: number, nice?: boolean} = backgroundEnv()): BackgroundStats | null {
  const lockFd = takeExpanderLock(image)
  if (lockFd === null) return null
  const stats: BackgroundStats = {slices: 0, finished: []}
  // The image file this expander was started for, held open: it opens the image by its path
  // for every slice, and ends once that path leads to another file (moved, or removed and
  // another made in its place): its expanders' progress belongs to this file alone, and the
  // next command that writes the other file starts that file's expander.
  const pin = fs.openSync(image, 'r')
  const ours = fs.fstatSync(pin, {bigint: true})
  try {
    if (opts.nice !== false) {
      try { os.setPriority(10) } catch { /* not allowed: run at normal priority */ }
    }
    const expanders = new Map<number, Expander>()
    const waiting = waiterCheck(image)
    for (;;) {
      let more = false
      withImage(image, {write: true, wait: 24 * 3600}, (vol) => {
        if (!vol.isImageFile(ours)) return
        const todo = listFilesets(vol).filter((f) => f.state === FS_EXPANDING && f.mode === MODE_ASYNC)
        if (todo.length === 0) return
        const f = todo[stats.slices % todo.length]
        let e = expanders.get(f.id)
        if (!e) expanders.set(f.id, e = new Expander(f.id))
        const r = e.slice(vol, opts.sliceMs ?? SLICE_MS, opts.sliceDirs ?? Infinity, waiting)
        if (r !== 'more') expanders.delete(f.id)
        if (r === 'done') stats.finished.push(f.name)
        stats.slices++
        more = true
      })
      if (!more) return stats
      sleepMs(opts.pauseMs ?? PAUSE_MS)
    }
  } finally {
    fs.closeSync(pin)
    fs.closeSync(lockFd)
  }
}
