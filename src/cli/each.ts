// Commands that take several arguments handle each on its own, as coreutils do: every good
// argument is done, each bad one is reported on a line of its own (`prism: root:/x: no such
// file or directory`), and the command exits 1 at the end. Each argument is its own
// transaction (forEachItem in src/fs/image.ts): a bad one changes nothing, and the good ones
// around it stay done. Errors that are not about one argument (isArgumentError) stop the
// command as any failure does.
import {EXIT, isArgumentError, type PrismError} from '../errors.js'
import {errorLine} from './notices.js'

export class Failures {
  /** the arguments that failed, in order */
  readonly errors: PrismError[] = []

  /**
   * Reports an argument's failure on stderr; anything that is not about one argument is
   * rethrown. Notices about the image held so far are folded into the first such line, as
   * into a failing command's one line (src/cli/notices.ts).
   */
  readonly report = (e: unknown): void => {
    if (!isArgumentError(e)) throw e
    process.stderr.write(errorLine(e.message))
    this.errors.push(e)
  }

  /** 0, or 1 when an argument failed. */
  get status(): number {
    return this.errors.length > 0 ? EXIT.FAIL : EXIT.OK
  }

  /**
   * Sets the exit status the process ends with (not process.exit(): the output written so far
   * must drain first).
   */
  settle(): void {
    if (this.errors.length > 0) process.exitCode = EXIT.FAIL
  }
}
