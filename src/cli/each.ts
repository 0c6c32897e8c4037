// Commands that take several paths handle each as coreutils do: every good argument is
// done (and committed), each bad one is reported on its own line, and the exit status is 1
// at the end if any failed. A failure that concerns the whole image (damage, I/O, a lock,
// an interrupt) still stops the command at once.
import {PrismError} from '../errors.js'
import type {Volume} from '../fs/volume.js'
import {errorLine} from './notices.js'

/** Errors that stop a command whatever argument it is on. */
const FATAL = new Set(['EBADIMAGE', 'EIO', 'ELOCKED', 'EINTR', 'EROFS', 'EUSAGE'])

/**
 * Runs `work` for each argument inside an open volume: its changes are committed when it
 * succeeds and dropped when it fails. Returns the number of arguments that failed (each
 * already reported on stderr).
 */
export function eachArg<T>(vol: Volume, args: T[], work: (arg: T) => void): number {
  let failed = 0
  for (const a of args) {
    try {
      work(a)
      vol.commit()
    } catch (e) {
      if (!(e instanceof PrismError) || FATAL.has(e.code)) throw e
      vol.abort()
      process.stderr.write(errorLine(e.message))
      failed++
    }
  }
  return failed
}
