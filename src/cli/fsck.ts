// `prism fsck`, the command's body: shared by the oclif command (src/commands/fsck.ts) and
// bin/run.js's start-up fast path for `fsck [--repair|-y|--fix] [--json] [-i IMAGE] [--wait N]`.
// fsck is judged against e2fsck, which starts in a few milliseconds; oclif's start-up alone
// costs a quarter of a check of a 100,000-file image.
import {EXIT, PrismError} from '../errors.js'
import {fsckImage, type FsckResult} from '../fsck/index.js'
import {fsckReportLines} from '../fsck/report.js'
import {findImage, parseWait} from './locate.js'
import {spinner} from './spinner.js'
import {errorLine} from './notices.js'
import {catchSignals} from './signals.js'

/** e2fsck's status for a usage or syntax error. */
export const FSCK_USAGE = 16

/**
 * The status of a failed fsck, in e2fsck's codes: 16 for a usage error (bad flags, no image
 * named or found), 128 + the signal when interrupted, 8 (operational error) otherwise.
 */
export function fsckStatusOf(e: PrismError): number {
  if (e.code === 'EINTR') return e.exitCode
  return e.exitCode === EXIT.USAGE ? FSCK_USAGE : 8
}

export interface FsckCommand {
  repair: boolean
  json: boolean
  image?: string
  wait?: number
}

export interface FsckOutput {
  log: (line: string) => void
  json: (value: unknown) => void
}

/** Checks the image and prints the report; returns the exit status (as e2fsck: 0, 1, 4; 8 is thrown). */
export async function runFsck(c: FsckCommand, out: FsckOutput): Promise<number> {
  const spin = await spinner('checking', c.json)
  let result: FsckResult
  try {
    result = fsckImage(findImage(c.image), {
      repair: c.repair, wait: c.wait,
      onProgress: (phase, done, total) => spin.update(`${phase}: ${done}/${total}`),
    })
  } finally {
    spin.stop()
  }
  if (c.json) out.json(result)
  else for (const line of fsckReportLines(result, c.repair)) out.log(line)
  return result.exitCode
}

/** The fast path: the exit status, or null when the arguments need oclif (help, other flags). */
export async function fastFsck(argv: string[]): Promise<number | null> {
  const c: FsckCommand = {repair: false, json: false, wait: 5}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--repair' || a === '-y' || a === '--fix') c.repair = true
    else if (a === '--json') c.json = true
    else if ((a === '-i' || a === '--image') && i + 1 < argv.length) c.image = argv[++i]
    else if (a.startsWith('--image=')) c.image = a.slice(8)
    else if (a === '--wait' && i + 1 < argv.length && parseWait(argv[i + 1]) !== null) c.wait = parseWait(argv[++i])!
    else return null
  }
  catchSignals()
  try {
    return await runFsck(c, {
      log: (line) => process.stdout.write(`${line}\n`),
      json: (value) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`),
    })
  } catch (e) {
    if (!(e instanceof PrismError)) throw e
    process.stderr.write(errorLine(e.message))
    return fsckStatusOf(e)
  }
}
