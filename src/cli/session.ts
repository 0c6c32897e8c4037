// Opening the image for one command, without oclif: shared by PrismCommand (base.ts) and the
// start-up fast paths (bin/run.js). It takes the lock, runs the work, commits and closes,
// reopens for writing when a read meets a clone still expanding and the user may write the
// image (otherwise, or when another process holds the image just then, the read-only open
// shows that clone as expansion would, in memory: src/fs/expand.ts), and starts the
// background expander when an asynchronous clone is left expanding.
import fs from 'node:fs'
import {PrismError} from '../errors.js'
import {INCOMPAT_EXPANDING} from '../format/superblock.js'
import {withImageAsync} from '../fs/image.js'
import {anyAsyncExpanding, anyExpanding} from '../fs/filesets.js'
import type {Volume} from '../fs/volume.js'

export interface SessionOptions {
  wait?: number
  onNotice: (msg: string) => void
  /** do not start the background expander (clone --no-background) */
  noBackground?: boolean
}

/** Said once on a terminal while another process holds the image lock. */
export function lockWaitNotice(): () => void {
  return () => {
    if (process.stderr.isTTY) process.stderr.write('prism: waiting for another prism process to release the image lock...\n')
  }
}

/** An asynchronous clone is still expanding: its background expander should be running. */
function needsBackground(vol: Volume): boolean {
  return anyAsyncExpanding(vol)
}

/** Whether this process may write the image file (its mode, owner, and a read-only mount say). */
export function imageWritable(image: string): boolean {
  try {
    fs.accessSync(image, fs.constants.W_OK)
    return true
  } catch {
    return false
  }
}

/**
 * A read-only open that finds a clone still expanding would rather be writable when the user
 * may write the image: expansion on demand then stays done (as it always has). A user who may
 * only read it reads the clone as expansion would show it, expanded in memory. So does one
 * who may write it when another process holds the image at that moment (readers holding the
 * shared lock, say): reading never waits to be able to write. So the image is reopened for
 * writing without waiting for the lock, and read-only again (waiting, as readers do) if that
 * fails with ELOCKED.
 */
export function wantsWrite(vol: Volume, image: string): boolean {
  return vol.readOnly && (vol.sb.incompat & INCOMPAT_EXPANDING) !== 0 && anyExpanding(vol) && imageWritable(image)
}

/** Opens `image`, runs `work`, commits and closes; on failure its uncommitted changes are dropped. */
export async function withSession<T>(image: string, write: boolean, opts: SessionOptions, work: (vol: Volume) => T | Promise<T>): Promise<T> {
  let background = false
  let view = false
  const attempt = (w: boolean, wait = opts.wait) => withImageAsync(image, {write: w, wait, onWait: lockWaitNotice(), onNotice: opts.onNotice}, async (vol) => {
    // A clone still expanding may need expanding on the way: then the command runs with the
    // image open for writing from the start, rather than being retried after printing part
    // of its output.
    if (!view && wantsWrite(vol, image)) throw new PrismError('ENEEDWRITE', 'a clone is still expanding')
    const out = await work(vol)
    // A read-only open never starts the expander: it could not write either.
    background = !vol.readOnly && needsBackground(vol)
    return out
  })
  let result: T
  try {
    result = await attempt(write)
  } catch (e) {
    // The image is to be opened for writing after all (its reads had no effect).
    if (write || !(e instanceof PrismError && e.code === 'ENEEDWRITE')) throw e
    try {
      result = await attempt(true, 0)
    } catch (e2) {
      if (!(e2 instanceof PrismError && e2.code === 'ELOCKED')) throw e2
      view = true
      result = await attempt(false)
    }
  }
  if (background && !opts.noBackground && process.env.PRISM_NO_BACKGROUND !== '1') {
    const {ensureExpander} = await import('../clone/background.js')
    ensureExpander(image)
  }
  return result
}
