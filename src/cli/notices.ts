// Notices about the image (say, that the backup superblock was used because the primary is
// damaged) and the line a failing command prints. A failure gets one line on stderr: a notice
// is therefore held until the process exits, printed then if the command succeeded, and
// folded into the error line if it failed, so that nothing is lost either way. A byte of a
// name that is not UTF-8 shows as \xNN (src/format/name.ts).
import {EXIT, PrismError} from '../errors.js'
import {nameShown} from '../format/name.js'
import {writeAll} from '../sys.js'

/** the notices, once each, in the order they came (an import may name 100,000 refused entries) */
const held = new Set<string>()

process.once('exit', () => {
  if (held.size === 0) return
  // Written at once, waiting out a full pipe: at exit no event loop turns, so what
  // process.stderr queued behind a full pipe (64 KiB, about 1,200 such lines) would be lost.
  const text = [...held].map((m) => `prism: ${nameShown(m)}\n`).join('')
  held.clear()
  try {
    writeAll(2, Buffer.from(text))
  } catch {
    // (standard error closed or gone: nowhere left to say it)
  }
})

/**
 * A notice for the user about the image; printed when the command ends, once (a command that
 * opens the image twice, read-only and then for writing, is told the same thing twice).
 */
export function notice(message: string): void {
  held.add(message)
}

/** The one line a failing command prints, with the notices held so far. */
export function errorLine(message: string): string {
  const also = held.size > 0 ? ` (also: ${[...held].join('; ')})` : ''
  held.clear()
  return `prism: ${nameShown(message + also)}\n`
}

/**
 * An oclif parse error ("Nonexistent flag: --bogus\nSee more help with --help", a missing
 * argument, a value not among the options) as the text of one line, pointing at --help.
 */
export function usageMessage(message: string, command?: string): string {
  // A flag's own parser failed: "Parsing --wait \n\t<its message>\nSee more help with --help".
  const parsing = /^Parsing --(\S+)\s*\n\s*([^\n]*)/.exec(message)
  if (parsing) message = parsing[2].includes(`--${parsing[1]}`) ? parsing[2] : `--${parsing[1]}: ${parsing[2].charAt(0).toLowerCase()}${parsing[2].slice(1)}`
  // Arguments missing: "Missing 2 required args:", then a line per argument (its name and
  // description), maybe a note on flags that take several values: the names alone.
  const missing = /^missing \d+ required args?:\s*\n/i.exec(message)
  if (missing) {
    const names: string[] = []
    for (const l of message.slice(missing[0].length).split('\n').map((x) => x.trim())) {
      if (/^(see more help|note:)/i.test(l)) break
      if (l !== '') names.push(l.split(/\s+/)[0].toUpperCase())
    }
    if (names.length > 0) {
      const list = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`
      const line = `missing ${names.length === 1 ? 'argument' : 'arguments'} ${list}`
      return command ? `${line} (see 'prism ${command} --help')` : line
    }
  }
  // Several of oclif's checks at once ("The following errors occurred:", then one a line):
  // the checks' own lines, joined by "; ".
  const several = /^the following errors? occurred:\s*\n/i.exec(message)
  if (several) message = message.slice(several[0].length)
  const text = message.split('\n').map((l) => l.trim())
    .filter((l) => l !== '' && !/^see more help with/i.test(l))
    .join(several ? '; ' : ' ').replace(/\s+/g, ' ').replace(/:$/, '')
  // A flag that may be negated, as the user wrote it (`--no-space`), not as oclif keeps it
  // (`--space=false`); and "cannot also be provided when using" said shorter.
  const said = text.replace(/--([\w-]+)=false\b/g, '--no-$1').replace(/--([\w-]+)=true\b/g, '--$1')
    .replace(/ cannot also be provided when using /g, ' cannot be given with ')
  const line = said.charAt(0).toLowerCase() + said.slice(1)
  return command ? `${line} (see 'prism ${command} --help')` : line
}

/** What a command reports for a failure: its --json code, its line's message and its exit status. */
export interface Failure {
  code: string
  message: string
  status: number
  /** for any failure but a PrismError: the stack, printed with $PRISM_DEBUG */
  stack?: string
}

/**
 * A failure as every command reports it (PrismCommand.catch, and the fast paths that must
 * match it byte for byte): a PrismError as itself; an oclif parse error (`cliError`) or a
 * parser's "invalid ..." as a usage error pointing at the command's --help; anything else as
 * an internal error (status 70).
 */
export function failureOf(err: unknown, cliError: boolean, command?: string, usageStatus: number = EXIT.USAGE): Failure {
  if (err instanceof PrismError) return {code: err.code, message: err.message, status: err.exitCode === EXIT.USAGE ? usageStatus : err.exitCode}
  const e = err instanceof Error ? err : new Error(String(err))
  const usage = cliError || /^(invalid|expected|missing|parsing --)/i.test(e.message)
  return usage
    ? {code: 'EUSAGE', message: usageMessage(e.message, command), status: usageStatus, stack: e.stack}
    : {code: 'EINTERNAL', message: `internal error: ${e.message}`, status: 70, stack: e.stack}
}
