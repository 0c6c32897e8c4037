// Opening the image for one command, without oclif: shared by PrismCommand (base.ts) and the
// start-up fast paths (bin/run.js). It takes the lock, runs the work, commits and closes,
// reopens for writing when a read meets a clone still expanding, and starts the background
// expander when an asynchronous clone is left expanding.
import {PrismError} from '../errors.js'
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

/** Opens `image`, runs `work`, commits and closes; on failure its uncommitted changes are dropped. */
export async function withSession<T>(image: string, write: boolean, opts: SessionOptions, work: (vol: Volume) => T | Promise<T>): Promise<T> {
  let background = false
  const attempt = (w: boolean) => withImageAsync(image, {write: w, wait: opts.wait, onWait: lockWaitNotice(), onNotice: opts.onNotice}, async (vol) => {
    // A clone still expanding may need expanding on the way (on-demand expansion writes):
    // then the command runs with the image open for writing from the start, rather than
    // being retried after printing part of its output.
    if (vol.readOnly && anyExpanding(vol)) throw new PrismError('ENEEDWRITE', 'a clone is still expanding')
    const out = await work(vol)
    background = needsBackground(vol)
    return out
  })
  let result: T
  try {
    result = await attempt(write)
  } catch (e) {
    // A read met a directory of a clone still expanding: on-demand expansion writes, so the
    // command runs again with the image open for writing (its reads had no effect).
    if (write || !(e instanceof PrismError && e.code === 'ENEEDWRITE')) throw e
    result = await attempt(true)
  }
  if (background && !opts.noBackground && process.env.PRISM_NO_BACKGROUND !== '1') {
    const {ensureExpander} = await import('../clone/background.js')
    ensureExpander(image)
  }
  return result
}
