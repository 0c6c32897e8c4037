// `prism export`, shared by the oclif command (src/commands/export.ts) and bin/run.js's
// start-up fast path for its common forms (an export of a large tree is judged against
// `tar -c`, which starts in a millisecond; oclif's start-up is ~0.1 s of it):
//   export SOURCE ARCHIVE [-i|--image IMAGE] [--wait N] [-z|--compress C] [--format F]
//          [--mtime DATE] [--clamp-mtime] [--owner ID] [--group ID] [--numeric-owner] [--sort name]
// Anything else (--help, --json, a flag value oclif would refuse ...) returns null and goes
// through oclif, which then runs the same runExport. It must never hold export logic of its
// own: parsing of the values and the work are here once, for both.
import path from 'node:path'
import {PrismError} from '../errors.js'
import {namespace} from '../fs/image.js'
import {compressionOfName, unwritableCompressionOfName, type Compression} from '../tar/compress.js'
import type {ExportStats, TarFormat} from '../tar/export.js'
import {exportArchive} from '../tar/io.js'
import {findImage, parseImageLoc, parseWait} from './locate.js'
import {errorLine, notice} from './notices.js'
import {humanSize} from './output.js'
import {withSession} from './session.js'
import {catchSignals} from './signals.js'
import {spinner} from './spinner.js'

/** A date for --mtime: seconds since the epoch ('@1700000000'), or anything Date parses. */
export function parseDate(text: string): {s: number, ns: number} {
  const m = /^@(-?\d+)(?:\.(\d{1,9}))?$/.exec(text.trim())
  if (m) return {s: Number(m[1]), ns: Number((m[2] ?? '').padEnd(9, '0'))}
  const ms = Date.parse(text)
  if (Number.isNaN(ms)) throw new PrismError('EUSAGE', `invalid date '${text}' for --mtime (examples: @1700000000, 2024-01-01T00:00:00Z)`)
  return {s: Math.floor(ms / 1000), ns: (((ms % 1000) + 1000) % 1000) * 1e6}
}

/** --owner / --group: a number, or NAME:NUMBER as GNU tar takes it (the name written with the number). */
export function parseId(text: string | undefined, what: string): {id: number, name?: Buffer} | undefined {
  if (text === undefined) return undefined
  const m = /^(?:([^:]*):)?(\d{1,10})$/s.exec(text)
  if (!m || Number(m[2]) > 0xffff_ffff) throw new PrismError('EUSAGE', `invalid --${what} '${text}': give a number (or NAME:NUMBER)`)
  return m[1] ? {id: Number(m[2]), name: Buffer.from(m[1])} : {id: Number(m[2])}
}

export const COMPRESSIONS = ['gzip', 'xz', 'zstd', 'none'] as const
export const FORMATS = ['pax', 'gnu', 'ustar'] as const

/** The command's arguments and flags, as parsed by oclif or by the fast path. */
export interface ExportArgs {
  source: string
  archive: string
  image?: string
  wait?: number
  compress?: Compression
  format: TarFormat
  mtime?: string
  clampMtime: boolean
  owner?: string
  group?: string
  numericOwner: boolean
  /** --json: no progress line */
  json: boolean
}

/**
 * Runs the export, with a progress line on a terminal and notices on stderr. Sets the exit
 * status to 1 when something was left out (a socket alone is not: GNU tar exits 0 for it).
 */
export async function runExport(a: ExportArgs, onNotice: (msg: string) => void): Promise<ExportStats> {
  const loc = parseImageLoc(a.source.includes(':') ? a.source : `${a.source}:/`)
  if (!loc) throw new PrismError('EUSAGE', `'${a.source}' is not a fileset or FILESET:/path`)
  if (a.clampMtime && !a.mtime) throw new PrismError('EUSAGE', '--clamp-mtime needs --mtime DATE')
  const unwritable = a.compress === undefined && a.archive !== '-' ? unwritableCompressionOfName(a.archive) : null
  if (unwritable) throw new PrismError('EUSAGE', `cannot write ${unwritable} (${path.basename(a.archive)}): name the archive .tar.gz, .tar.xz or .tar.zst, or give --compress none for a plain tar by that name`)
  const compression = a.compress ?? (a.archive === '-' ? 'none' : compressionOfName(a.archive))
  const owner = parseId(a.owner, 'owner')
  const group = parseId(a.group, 'group')
  const opts = {
    format: a.format,
    mtime: a.mtime ? parseDate(a.mtime) : undefined,
    clampMtime: a.clampMtime,
    owner: owner?.id,
    ownerName: owner?.name,
    group: group?.id,
    groupName: group?.name,
    numericOwner: a.numericOwner,
  }
  const spin = await spinner('exporting', a.json)
  try {
    const stats = await withSession(findImage(a.image), false, {wait: a.wait, onNotice}, (vol) => exportArchive(namespace(vol, loc.fileset), loc.path, {arg: a.archive, compression}, {
      ...opts,
      onProgress: (s) => spin.update(`exporting: ${s.files} files, ${s.dirs} directories, ${humanSize(s.bytes)}`),
      onWarning: onNotice,
    }))
    spin.stop(`exported ${stats.files} files, ${stats.dirs} directories, ${stats.symlinks} symlinks, ${stats.hardlinks} hard links, ${stats.special} special files, ${humanSize(stats.bytes)}`)
    if (stats.dropped > 0 || stats.skipped > stats.sockets) process.exitCode = 1
    return stats
  } catch (e) {
    spin.stop()
    throw e
  }
}

/** The fast path: the exit status, or null when the arguments need oclif. */
export async function fastExport(argv: string[]): Promise<number | null> {
  const a: ExportArgs = {source: '', archive: '', format: 'pax', clampMtime: false, numericOwner: false, json: false}
  const pos: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1
    const name = eq > 0 ? arg.slice(0, eq) : arg
    // A flag's value: after '=', or the next argument (one that looks like a flag is left to oclif).
    const value = (): string | null => {
      if (eq > 0) return arg.slice(eq + 1)
      const v = i + 1 < argv.length ? argv[++i] : null
      return v === null || (v.startsWith('-') && v !== '-') ? null : v
    }
    if (arg === '-' || !arg.startsWith('-')) { pos.push(arg); continue }
    if (name === '-i' || name === '--image') { const v = value(); if (v === null) return null; a.image = v }
    else if (name === '--wait') { const v = value(); const s = v === null ? null : parseWait(v); if (s === null) return null; a.wait = s }
    else if (name === '-z' || name === '--compress') { const v = value(); if (!COMPRESSIONS.includes(v as Compression)) return null; a.compress = v as Compression }
    else if (name === '--format') { const v = value(); if (!FORMATS.includes(v as TarFormat)) return null; a.format = v as TarFormat }
    else if (name === '--mtime') { const v = value(); if (v === null) return null; a.mtime = v }
    else if (name === '--owner') { const v = value(); if (v === null) return null; a.owner = v }
    else if (name === '--group') { const v = value(); if (v === null) return null; a.group = v }
    else if (name === '--sort') { if (value() !== 'name') return null }
    else if (arg === '--clamp-mtime') a.clampMtime = true
    else if (arg === '--numeric-owner') a.numericOwner = true
    else return null
  }
  if (pos.length !== 2) return null
  ;[a.source, a.archive] = pos
  catchSignals()
  try {
    await runExport(a, notice)
    return typeof process.exitCode === 'number' ? process.exitCode : 0
  } catch (e) {
    if (!(e instanceof PrismError)) throw e
    process.stderr.write(errorLine(e.message))
    return e.exitCode
  }
}
