// The base of every prism command: shared flags (--image, --wait, --json), finding the
// image, taking the lock, and turning any failure into one line on stderr and a documented
// exit code. Commands stay thin: parse, call the library, print.
import {Command, Errors, Flags} from '@oclif/core'
import type {Input, ParserOutput} from '@oclif/core/interfaces'

// oclif's own constraints on parse()'s type parameters (not exported by name)
type FlagOutput = {[name: string]: any} // eslint-disable-line @typescript-eslint/no-explicit-any
type ArgOutput = {[name: string]: any} // eslint-disable-line @typescript-eslint/no-explicit-any
import {EXIT, PrismError} from '../errors.js'
import {findImage, parseWait} from './locate.js'
import type {Spinner} from './spinner.js'
import {errorLine, failureOf, notice} from './notices.js'

export const imageFlags = {
  image: Flags.string({char: 'i', description: 'image file (default: $PRISM_IMAGE, else the only Prism image in the current directory)', helpGroup: 'IMAGE', helpValue: 'FILE'}),
  wait: Flags.custom<number>({
    description: 'seconds to wait for another prism process to release the image (fractions allowed: 0.5)',
    default: 5, helpGroup: 'IMAGE', helpValue: 'SECONDS',
    parse: async (text) => {
      const s = parseWait(text)
      if (s === null) throw new Error(`invalid --wait '${text}': give seconds, such as 5 or 0.5`)
      return s
    },
  })(),
}

type Vol = import('../fs/volume.js').Volume

export abstract class PrismCommand extends Command {
  static enableJsonFlag = true

  async init(): Promise<void> {
    await super.init()
    // Before anything opens the image: a signal then stops the command cleanly (src/cli/signals.ts).
    if (!this.ownSignals) {
      const {catchSignals} = await import('./signals.js')
      catchSignals()
    }
  }

  /**
   * oclif's parse, with two of its habits undone. A missing argument is never read from
   * standard input (oclif reads one from any stdin that is not a terminal: `echo x | prism
   * mount` would mount x). And `argv` holds the positional arguments in the order given: oclif
   * moves one that equals a flag's value to the front (`prism cp -i img root:/f img` became a
   * copy of img into root:/f).
   */
  protected async parse<F extends FlagOutput, B extends FlagOutput, A extends ArgOutput>(options?: Input<F, B, A>, argv = this.argv): Promise<ParserOutput<F, B, A>> {
    const opts = (options ?? this.ctor) as Input<F, B, A>
    // (set on the definitions themselves: a copy of a command class loses its inherited statics)
    for (const a of Object.values(opts.args ?? {})) (a as {ignoreStdin?: boolean}).ignoreStdin = true
    const out = await super.parse<F, B, A>(opts, argv)
    if (opts.strict === false) out.argv = out.raw.filter((t) => t.type === 'arg').map((t) => t.input)
    return out
  }

  /** Set by a command that handles signals itself, in JavaScript (prism serve, mount --foreground). */
  protected ownSignals = false

  /** Set by a command that must not start the background expander (clone --no-background). */
  protected noBackground = false

  /** Resolves the image path from --image, $PRISM_IMAGE or the current directory. */
  protected imagePath(flag: string | undefined): string {
    return findImage(flag)
  }

  protected notice(msg: string): void {
    notice(msg)
  }

  /** Opens the image, runs `work`, commits and closes; on failure its uncommitted changes are dropped. */
  protected async withVolume<T>(flags: {image?: string, wait?: number}, write: boolean, work: (vol: Vol) => T | Promise<T>): Promise<T> {
    const {withSession} = await import('./session.js')
    return withSession(this.imagePath(flags.image), write, {wait: flags.wait, onNotice: (m) => this.notice(m), noBackground: this.noBackground}, work)
  }

  /**
   * Runs short operation `name` (src/ops/short.ts) with `args`: on the image opened here, or,
   * on a served image, by its server in one step (src/server/short.ts), the mounts answered
   * before and after. A multi-argument operation's bad arguments are reported each on its own
   * line, and the exit status set (src/cli/each.ts), as alone. Returns what it returned.
   */
  protected async short<K extends import('../ops/short.js').ShortName>(flags: {image?: string, wait?: number}, name: K, args: import('../ops/short.js').ShortArgs[K], write = true): Promise<unknown> {
    const {Failures} = await import('./each.js')
    const failures = new Failures()
    const {servedTarget} = await import('./served.js')
    const served = servedTarget()
    let result: unknown
    if (served) {
      const {ask, lines} = await import('./servedcopy.js')
      const req = {op: 'run', name, args, uid: process.getuid?.(), gid: process.getgid?.()}
      result = (await ask(served, req, `${this.id?.replace(/:/g, ' ')} ended; the image is as it was, or has it done`, lines(undefined, failures.report))).result
    } else {
      const {runShort} = await import('../ops/short.js')
      const {forEachItem} = await import('../fs/image.js')
      result = await this.withVolume(flags, write, (vol) => runShort(vol, name, args, (items, fn) => forEachItem(vol, items, failures.report, fn)))
    }
    failures.settle()
    return result
  }

  /** A spinner on a terminal, nothing otherwise (or with --json). */
  protected async spinner(text: string): Promise<Spinner> {
    const {spinner} = await import('./spinner.js')
    return spinner(text, this.jsonEnabled())
  }

  /** The exit status of a usage error (bad flags or arguments); fsck's is e2fsck's 16. */
  protected usageStatus: number = EXIT.USAGE

  protected async catch(err: Error & {oclif?: {exit?: number}, code?: string}): Promise<unknown> {
    if (!(err instanceof PrismError)) {
      if (err.code === 'EEXIT' || err.name === 'ExitError') throw err // this.exit(): the status is set
      if (err.name === 'SimulatedCrash') throw err
    }
    // oclif's own errors (a flag it does not know, a missing argument, a value not among the
    // options, this.error()) and the parsers' "invalid ..." are usage errors: one line, not
    // oclif's page of usage (notices.ts failureOf, shared with the fast paths).
    const f = failureOf(err, err instanceof Errors.CLIError, this.id?.replace(/:/g, ' '), this.usageStatus)
    if (this.jsonEnabled()) this.logJson({error: {code: f.code, message: f.message}})
    process.stderr.write(errorLine(f.message))
    if (f.stack && process.env.PRISM_DEBUG) process.stderr.write(`${f.stack}\n`)
    this.exit(f.status)
  }
}
