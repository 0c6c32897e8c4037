// `prism scan`, the command's body: shared by the oclif command (src/commands/scan.ts) and
// bin/run.js's start-up fast path for its common forms. An incremental rescan of a large
// image is judged against a full scan, and oclif's start-up alone is a sizeable part of it.
import {PrismError} from '../errors.js'
import {findImage, parseWait} from './locate.js'
import {withSession} from './session.js'
import {allFilesetNames, scan, type ScanEngine, type ScanError, type ScanResult} from '../scan/scan.js'
import {findFileset} from '../fs/filesets.js'
import {describeLoad, loadSignatures} from '../scan/signatures.js'
import {errorLine, notice} from './notices.js'
import {nameShown} from '../format/name.js'
import {spinner} from './spinner.js'
import {borrowAfterSnapshot} from './served.js'
import {saveScanFile} from '../scan/store.js'
import {catchSignals} from './signals.js'
import {clamscanLimits, givenLimits, parseLimit} from '../scan/limits.js'

export interface ScanCommand {
  names: string[]
  all: boolean
  signatures?: string[]
  exec?: string
  clamd?: string
  incremental: boolean
  /** clamscan's --max-filesize / --max-scansize (digits with an optional K, M or G) */
  maxFilesize?: string
  maxScansize?: string
  alertExceedsMax?: boolean
  json: boolean
  image?: string
  wait?: number
}

export interface ScanOutput {
  log: (line: string) => void
  json: (value: unknown) => void
  notice: (msg: string) => void
}

/** Runs the scan and prints its report; returns the exit status (as clamscan: 0, 1 or 2). */
export async function runScan(c: ScanCommand, out: ScanOutput): Promise<number> {
  const engines = [c.signatures?.length ? 'signatures' : null, c.exec !== undefined ? 'exec' : null, c.clamd !== undefined ? 'clamd' : null].filter(Boolean)
  if (engines.length !== 1) throw new PrismError('EUSAGE', 'give exactly one of --signatures FILE, --exec CMD or --clamd SOCKET')
  if (c.all && c.names.length > 0) throw new PrismError('EUSAGE', 'name filesets or use --all, not both')
  if (!c.all && c.names.length === 0) throw new PrismError('EUSAGE', 'name at least one fileset, or use --all')
  let engine: ScanEngine
  if (c.signatures?.length) {
    engine = {kind: 'signatures', set: loadSignatures(c.signatures)}
  } else if (c.exec !== undefined) {
    if (c.exec.trim() === '') throw new PrismError('EUSAGE', '--exec needs a command')
    engine = {kind: 'exec', command: c.exec}
  } else {
    engine = {kind: 'clamd', socket: c.clamd!}
  }
  // clamscan's limits: its defaults with the signature engine, only those given otherwise.
  const maxFile = c.maxFilesize === undefined ? undefined : parseLimit('--max-filesize', c.maxFilesize)
  const maxScan = c.maxScansize === undefined ? undefined : parseLimit('--max-scansize', c.maxScansize)
  const limits = engine.kind === 'signatures'
    ? clamscanLimits(maxFile, maxScan, c.alertExceedsMax ?? false)
    : givenLimits(maxFile, maxScan, c.alertExceedsMax ?? false)
  const image = findImage(c.image)
  const session = {wait: c.wait, onNotice: out.notice}
  // Writable only to remember results. A fileset still expanding is expanded first: the
  // session opens the image for writing for that when the user may write it, and otherwise
  // the scan reads it expanded in memory (src/scan/expand.ts).
  // On a served image the scan reads a snapshot (src/cli/served.ts), and what an incremental
  // scan learned is saved afterwards, in a short lend of the image, so that the mounts are not
  // held while files are read.
  const served = (globalThis as Record<symbol, unknown>)[Symbol.for('prism.snapshot')] !== undefined
  const write = c.incremental && !served
  const progress = await spinner('scanning', c.json)
  const started = Date.now()
  // A named fileset that does not exist is an error of its own, as a missing file is to
  // clamscan: the others are scanned, and the status is 2 unless something is found.
  let missing: ScanError[] = []
  let result: ScanResult
  try {
    result = await withSession(image, write, session, async (vol) => {
      missing = []
      const names = c.all ? allFilesetNames(vol) : c.names.filter((n) => {
        if (findFileset(vol, n)) return true
        missing.push({ino: 0, paths: [`${n}:/`], message: `no fileset named '${n}' (see 'prism fileset list')`})
        return false
      })
      if (names.length === 0) return {matches: [], errors: [], stats: {filesets: 0, dirsRead: 0, names: 0, inodes: 0, inodesRead: 0, bytesRead: 0, cached: 0, bytesTotal: 0, readsPerInode: new Map()}}
      return scan(vol, names, engine, {
        incremental: c.incremental,
        saveLater: c.incremental && served,
        limits,
        onNotice: out.notice,
        onProgress: (p) => {
          const secs = Math.max(0.001, (Date.now() - started) / 1000)
          progress.update(`${p.files}/${p.totalFiles} files, ${mib(p.bytes)} of ${mib(p.totalBytes)} MiB, ${(p.bytes / 1048576 / secs).toFixed(1)} MiB/s`)
        },
      })
    })
    if (result.save) {
      const save = result.save
      await borrowAfterSnapshot(process.argv.slice(2))
      await withSession(image, true, session, (vol) => {
        saveScanFile(vol, save)
        vol.commit()
      })
    }
  } finally {
    progress.stop()
  }
  const {stats} = result
  const errors = [...missing, ...result.errors]
  const summary = {
    filesets: stats.filesets, dirsRead: stats.dirsRead, names: stats.names, inodes: stats.inodes, inodesRead: stats.inodesRead, bytesRead: stats.bytesRead,
    cached: stats.cached, skipped: stats.skipped ?? 0, bytesTotal: stats.bytesTotal, infected: result.matches.length, errors: errors.length,
  }
  const report = engine.kind === 'signatures' ? engine.set.report : undefined
  if (c.json) {
    out.json({matches: result.matches, errors, stats: summary, ...(report ? {signatures: report} : {})})
  } else {
    for (const e of missing) process.stderr.write(errorLine(e.message))
    // As clamscan's "Known viruses": what the databases gave, and what of them was skipped.
    if (report) out.log(describeLoad(report))
  }
  if (!c.json && stats.filesets > 0) {
    for (const m of result.matches) for (const p of m.paths) out.log(`${nameShown(p)}: ${m.found.join(', ')} FOUND`)
    for (const e of result.errors) process.stderr.write(`prism: ${nameShown(`${e.paths[0]}${e.paths.length > 1 ? ` (and ${e.paths.length - 1} other name(s))` : ''}: ${e.message}`)}\n`)
    out.log(`scanned ${stats.filesets} fileset(s): ${stats.names} names, ${stats.inodes} distinct files; read ${stats.inodesRead} (${mib(stats.bytesRead)} MiB)` +
      `${c.incremental ? `, ${stats.cached} unchanged since the last scan` : ''}` +
      `${stats.skipped ? `; skipped ${stats.skipped} over --max-filesize/--max-scansize` : ''}; ${result.matches.length} infected, ${errors.length} error(s)`)
  }
  return result.matches.length > 0 ? 1 : errors.length > 0 ? 2 : 0
}

function mib(n: number): string {
  return (n / 1048576).toFixed(1)
}

/**
 * The fast path: parses `scan [FILESET...] [--all] [-s|--signatures FILE]... [--exec CMD]
 * [--clamd SOCKET] [--incremental] [--max-filesize N] [--max-scansize N] [--alert-exceeds-max] [--json] [-i|--image IMAGE] [--wait N]` (and the
 * `--flag=value` forms) and returns the exit status, or null when the arguments need oclif.
 */
export async function fastScan(argv: string[]): Promise<number | null> {
  const c: ScanCommand = {names: [], all: false, incremental: false, json: false, wait: 5}
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i]
    let v: string | null = null
    const eq = a.startsWith('--') ? a.indexOf('=') : -1
    if (eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq) }
    const val = (): string | null => v ?? (i + 1 < argv.length ? argv[++i] : null)
    const takes = a === '-s' || a === '--signatures' || a === '--exec' || a === '--clamd' || a === '-i' || a === '--image' || a === '--wait' || a === '--max-filesize' || a === '--max-scansize'
    if (!takes && v !== null) return null
    if (a === '--all') c.all = true
    else if (a === '--incremental') c.incremental = true
    else if (a === '--json') c.json = true
    else if (a === '--alert-exceeds-max') c.alertExceedsMax = true
    else if (takes) {
      const x = val()
      if (x === null) return null
      if (a === '-s' || a === '--signatures') (c.signatures ??= []).push(x)
      else if (a === '--exec') { if (c.exec !== undefined) return null; c.exec = x }
      else if (a === '--clamd') { if (c.clamd !== undefined) return null; c.clamd = x }
      else if (a === '--max-filesize') c.maxFilesize = x
      else if (a === '--max-scansize') c.maxScansize = x
      else if (a === '--wait') { const s = parseWait(x); if (s === null) return null; c.wait = s }
      else c.image = x
    } else if (a.startsWith('-')) return null
    else c.names.push(a)
  }
  catchSignals()
  try {
    return await runScan(c, {
      log: (line) => process.stdout.write(`${line}\n`),
      json: (value) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`),
      notice,
    })
  } catch (e) {
    if (!(e instanceof PrismError)) throw e
    if (c.json) process.stdout.write(`${JSON.stringify({error: {code: e.code, message: e.message}}, null, 2)}\n`)
    process.stderr.write(errorLine(e.message))
    return e.code === 'EINTR' ? e.exitCode : 2
  }
}
