// Notices about the image (say, that the backup superblock was used because the primary is
// damaged) and the line a failing command prints. A failure gets one line on stderr: a notice
// is therefore held until the process exits, printed then if the command succeeded, and
// folded into the error line if it failed, so that nothing is lost either way. A byte of a
// name that is not UTF-8 shows as \xNN (src/format/name.ts).
import {nameShown} from '../format/name.js'

const held: string[] = []

process.once('exit', () => {
  for (const m of held) process.stderr.write(`prism: ${nameShown(m)}\n`)
  held.length = 0
})

/** A notice for the user about the image; printed when the command ends. */
export function notice(message: string): void {
  held.push(message)
}

/** The one line a failing command prints, with the notices held so far. */
export function errorLine(message: string): string {
  const also = held.length > 0 ? ` (also: ${held.join('; ')})` : ''
  held.length = 0
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
  const text = message.split('\n').map((l) => l.trim())
    .filter((l) => l !== '' && !/^see more help with/i.test(l))
    .join(' ').replace(/\s+/g, ' ').replace(/:$/, '')
  const line = text.charAt(0).toLowerCase() + text.slice(1)
  return command ? `${line} (see 'prism ${command} --help')` : line
}
