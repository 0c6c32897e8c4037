// Running a command through oclif (bin/run.js, for everything the fast paths do not take),
// with prism's conventions where oclif's own differ: `-h` is help (except for a command
// whose own -h means something else: `df -h`, `ls -lh`), and an error oclif raises before a
// command runs (an unknown command or topic, a bad flag of prism itself) is one line on
// stderr starting with `prism:` and the usage status, not oclif's page of usage. It must never
// print more than that one line for an error, nor wait for a stdout whose reader went away.
import fs from 'node:fs'
import {Errors, flush, run} from '@oclif/core'
import {EXIT} from '../errors.js'
import {usageMessage} from './notices.js'

interface Manifest {
  commands: Record<string, {flags: Record<string, {char?: string}>}>
}

/** argv with a `-h` meant as help turned into `--help`. */
export function helpFlag(argv: string[], manifestPath: URL): string[] {
  const end = argv.indexOf('--')
  const h = argv.findIndex((a, i) => a === '-h' && (end < 0 || i < end))
  if (h < 0) return argv
  let manifest: Manifest
  try {
    manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as Manifest
  } catch {
    return argv
  }
  // The command: the longest run of leading words that names one (`fileset list`).
  const words: string[] = []
  for (const a of argv) {
    if (a.startsWith('-')) break
    words.push(a)
  }
  let flags: Record<string, {char?: string}> | undefined
  for (let n = words.length; n > 0 && !flags; n--) flags = manifest.commands[words.slice(0, n).join(':')]?.flags
  if (flags && Object.values(flags).some((f) => f.char === 'h')) return argv
  return argv.map((a, i) => (i === h ? '--help' : a))
}

/** oclif's flush, which would wait for ever on a stdout whose reader went away (EPIPE). */
async function flushOut(): Promise<void> {
  if (process.stdout.destroyed) return
  const gone = new Promise<void>((resolve) => {
    process.stdout.once('close', resolve)
    process.stdout.once('error', () => resolve())
  })
  await Promise.race([flush(), gone])
}

export async function runOclif(argv: string[], root: string): Promise<void> {
  const args = helpFlag(argv, new URL('oclif.manifest.json', root))
  try {
    await run(args, root)
    await flushOut()
  } catch (e) {
    const err = e as Error & {oclif?: {exit?: number}, code?: string}
    await flushOut().catch(() => {})
    if (err.code === 'EEXIT' || err instanceof Errors.ExitError) {
      process.exitCode = err.oclif?.exit ?? 0
      return
    }
    // A write of the output that failed (bin/run.js says it, once, and sets the status).
    if ((err as {syscall?: string}).syscall === 'write' && ['ENOSPC', 'EBADF', 'EIO', 'EDQUOT', 'EFBIG', 'EPIPE'].includes(err.code ?? '')) throw err
    const usage = err instanceof Errors.CLIError
    process.stderr.write(`prism: ${usage ? usageMessage(err.message) : `internal error: ${err.message}`}\n`)
    if (process.env.PRISM_DEBUG) process.stderr.write(`${err.stack}\n`)
    // A usage error keeps the status it was raised with (16 for fsck's), else 2.
    process.exitCode = usage ? (err.oclif?.exit === 16 ? 16 : EXIT.USAGE) : 70
  }
}
