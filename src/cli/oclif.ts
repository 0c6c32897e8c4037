// Running a command through oclif (bin/run.js, for everything the fast paths do not take),
// with prism's conventions where oclif's own differ: `-h` is help (except for a command
// whose own -h means something else: `df -h`, `ls -lh`), and an error oclif raises before a
// command runs (an unknown command or topic, a bad flag of prism itself) is one line on
// stderr starting with `prism:` and the usage status, not oclif's page of usage. It must never
// print more than that one line for an error, nor wait for a stdout whose reader went away.
import fs from 'node:fs'
import {Config, Errors, flush, run, type Command} from '@oclif/core'
import {normalizeArgv} from '@oclif/core/help'
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
    await ended(e)
  }
}

/** Whether `argv` asks for help or the version, which only runOclif gives. */
const asksHelp = (argv: string[]): boolean => argv.length === 0 || argv[0] === 'help' || argv.some((a) => a === '--help' || a === '--version')

/**
 * Runs one of prism's commands from the start-up bundle dist/cli.cjs (scripts/bundle.mjs): oclif
 * and every command with what it imports in one file, compiled from V8's code cache, where
 * runOclif loads some 200 modules (a command starts in about two thirds of the time). `commands` maps
 * each command's id to its class (the bundle's COMMANDS). What the bundle does not take, it
 * leaves before printing anything, and returns false: help, the version, an unknown command or
 * a topic alone. bin/run.js then calls runOclif, which runs oclif with its plugins, help class
 * and hooks from their own modules.
 *
 * oclif finds the command through the manifest as runOclif's does; the root plugin is then
 * told its commands are "explicit" and handed them (oclif's own strategy for a CLI that lists
 * its commands in one module), so that loading one imports nothing.
 */
export async function runBundled(argv: string[], root: string, commands: Record<string, Command.Class>): Promise<boolean> {
  const args = helpFlag(argv, new URL('oclif.manifest.json', root))
  if (asksHelp(args)) return false
  try {
    const config = await Config.load(root)
    // The command's id and its arguments, as oclif's run() reads them (`df extra` is the id
    // `df:extra`, which the command_not_found hook turns into a usage error: runOclif's).
    const [id, ...rest] = normalizeArgv(config, [...args])
    const cmd = commands[id] ? config.findCommand(id) : undefined
    const plugin = [...config.plugins.values()].find((p) => p.isRoot) as unknown as {commandDiscoveryOpts?: object, commandCache?: object} | undefined
    if (!cmd || !plugin) return false
    plugin.commandDiscoveryOpts = {strategy: 'explicit', target: 'dist/cli.cjs', identifier: 'COMMANDS'}
    plugin.commandCache = commands
    // What oclif's run() does once it has found the command.
    await config.runHook('init', {argv: rest, id})
    let error: Error | undefined
    try {
      await config.runCommand(id, rest, cmd)
    } catch (e) {
      error = e as Error
      throw e
    } finally {
      await config.runHook('finally', {argv: rest, id, Command: cmd, error})
    }
    await flushOut()
  } catch (e) {
    await ended(e)
  }
  return true
}

/** What a command's failure comes to: its exit status, and one line on stderr unless it said it. */
async function ended(e: unknown): Promise<void> {
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
