import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {PrismError} from '../errors.js'

export default class Scan extends PrismCommand {
  static summary = 'Scan filesets for malware, reading each shared file once'
  static description = `Scans every regular file of the named filesets (or --all). A file shared by several filesets or names is read once, and each match is reported with every FILESET:/path that shows it.
Engines: --signatures FILE... (ClamAV .hdb/.hsb hash and .ndb body signatures; see the README for the supported subset), --exec CMD (runs CMD once per unique file with the content on stdin: exit 1 means found, its first stdout line names it), or --clamd SOCKET (streams each unique file to a running clamd with INSTREAM).
--incremental remembers results inside the image per inode and content version, and reads only what changed since the last scan with the same signatures (or command, or clamd database).
Exit status, as clamscan: 0 nothing found, 1 something found, 2 error.`
  static examples = [
    '<%= config.bin %> scan root --signatures main.hdb --signatures main.ndb',
    '<%= config.bin %> scan --all --signatures sigs.ndb --incremental --json',
    "<%= config.bin %> scan web-1 web-2 --exec 'my-scanner --stdin'",
    '<%= config.bin %> scan --all --clamd /run/clamav/clamd.ctl',
  ]
  static args = {filesets: Args.string({description: 'fileset names'})}
  static strict = false
  static flags = {
    ...imageFlags,
    all: Flags.boolean({description: 'scan every fileset'}),
    signatures: Flags.string({char: 's', multiple: true, description: 'ClamAV signature file (.hdb, .hsb, .ndb); repeat for several'}),
    exec: Flags.string({description: 'command run once per unique file with its content on stdin (exit 1 = found)'}),
    clamd: Flags.string({description: "clamd's socket (a path, or host:port)"}),
    incremental: Flags.boolean({description: 'skip files unchanged since the last scan with the same signatures'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Scan)
    const names = argv as string[]
    const engines = [flags.signatures?.length ? 'signatures' : null, flags.exec !== undefined ? 'exec' : null, flags.clamd !== undefined ? 'clamd' : null].filter(Boolean)
    if (engines.length !== 1) throw new PrismError('EUSAGE', 'give exactly one of --signatures FILE, --exec CMD or --clamd SOCKET')
    if (flags.all && names.length > 0) throw new PrismError('EUSAGE', 'name filesets or use --all, not both')
    if (!flags.all && names.length === 0) throw new PrismError('EUSAGE', 'name at least one fileset, or use --all')
    const {scan, allFilesetNames} = await import('../scan/scan.js')
    type Engine = Parameters<typeof scan>[2]
    let engine: Engine
    if (flags.signatures?.length) {
      const {loadSignatures} = await import('../scan/signatures.js')
      engine = {kind: 'signatures', set: loadSignatures(flags.signatures)}
    } else if (flags.exec !== undefined) {
      if (flags.exec.trim() === '') throw new PrismError('EUSAGE', '--exec needs a command')
      engine = {kind: 'exec', command: flags.exec}
    } else {
      engine = {kind: 'clamd', socket: flags.clamd!}
    }
    // Writable only when needed: to remember results, or to expand a fileset still expanding.
    let write = flags.incremental
    if (!write) {
      const {listFilesets} = await import('../fs/filesets.js')
      const {isExpanding} = await import('../scan/expand.js')
      write = await this.withVolume(flags, false, (vol) =>
        listFilesets(vol).some((f) => (flags.all || names.includes(f.name)) && isExpanding(f)))
    }
    const progress = await this.progress()
    const started = Date.now()
    let result
    try {
      result = await this.withVolume(flags, write, (vol) => scan(vol, flags.all ? allFilesetNames(vol) : names, engine, {
        incremental: flags.incremental,
        onNotice: (m) => this.notice(m),
        onProgress: (p) => {
          const secs = Math.max(0.001, (Date.now() - started) / 1000)
          progress.update(`${p.files}/${p.totalFiles} files, ${mib(p.bytes)} of ${mib(p.totalBytes)} MiB, ${(p.bytes / 1048576 / secs).toFixed(1)} MiB/s`)
        },
      }))
    } finally {
      progress.stop()
    }
    const {stats} = result
    const summary = {
      filesets: stats.filesets, names: stats.names, inodes: stats.inodes, inodesRead: stats.inodesRead, bytesRead: stats.bytesRead,
      cached: stats.cached, bytesTotal: stats.bytesTotal, infected: result.matches.length, errors: result.errors.length,
    }
    if (this.jsonEnabled()) {
      this.logJson({matches: result.matches, errors: result.errors, stats: summary})
    } else {
      for (const m of result.matches) for (const p of m.paths) this.log(`${p}: ${m.found.join(', ')} FOUND`)
      for (const e of result.errors) process.stderr.write(`prism: ${e.paths[0]}${e.paths.length > 1 ? ` (and ${e.paths.length - 1} other name(s))` : ''}: ${e.message}\n`)
      this.log(`scanned ${stats.filesets} fileset(s): ${stats.names} names, ${stats.inodes} distinct files; read ${stats.inodesRead} (${mib(stats.bytesRead)} MiB)` +
        `${flags.incremental ? `, ${stats.cached} unchanged since the last scan` : ''}; ${result.matches.length} infected, ${result.errors.length} error(s)`)
    }
    // The status is set, not thrown with this.exit(): a large --json output on a pipe would
    // otherwise be cut off, the process ending before stdout drained.
    if (result.matches.length > 0) process.exitCode = 1
    else if (result.errors.length > 0) process.exitCode = 2
  }

  /** ora on a terminal (stderr), nothing otherwise. */
  private async progress(): Promise<{update: (t: string) => void, stop: () => void}> {
    if (!process.stderr.isTTY || this.jsonEnabled()) return {update: () => {}, stop: () => {}}
    const {default: ora} = await import('ora')
    const s = ora({text: 'scanning', stream: process.stderr}).start()
    return {update: (t) => { s.text = t; s.render() }, stop: () => s.stop()}
  }

  protected async catch(err: Error & {oclif?: {exit?: number}}): Promise<unknown> {
    // As clamscan: every failure is exit status 2.
    if (err instanceof PrismError) {
      if (this.jsonEnabled()) this.logJson({error: {code: err.code, message: err.message}})
      process.stderr.write(`prism: ${err.message}\n`)
      this.exit(2)
    }
    return super.catch(err)
  }
}

function mib(n: number): string {
  return (n / 1048576).toFixed(1)
}
