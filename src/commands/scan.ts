import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {PrismError} from '../errors.js'
import {errorLine} from '../cli/notices.js'

export default class Scan extends PrismCommand {
  static summary = 'Scan filesets for malware, reading each shared file once'
  static description = `Scans every regular file of the named filesets (or --all). A file shared by several filesets or names is read once, and each match is reported with every FILESET:/path that shows it.
Engines: (--signatures FILE)... (ClamAV databases as they come: .cvd/.cld/.cud containers and .hdb/.hsb/.ndb/.db/.fp/.sfp/.ign/.ign2 files; the signatures prism evaluates exactly as ClamAV are used, the others skipped and counted in one line; see the README), --exec CMD (runs CMD once per unique file with the content on stdin: exit 1 means found, its first stdout line names it; a command that fails for each of the first 10 files stops the scan), or --clamd SOCKET (streams each unique file to a running clamd with INSTREAM).
As clamscan, files larger than --max-filesize (100M by default with --signatures) or --max-scansize (400M) are not scanned: clean, or with --alert-exceeds-max found as Heuristics.Limits.Exceeded.MaxFileSize / MaxScanSize. Holes of sparse files are not read.
--incremental remembers results inside the image per inode and content version, and reads only what changed since the last scan with the same signatures (or command, or clamd database).
Exit status, as clamscan: 0 nothing found, 1 something found, 2 error.`
  static examples = [
    '<%= config.bin %> scan root --signatures /var/lib/clamav/main.cvd --signatures /var/lib/clamav/daily.cld',
    '<%= config.bin %> scan --all --signatures sigs.ndb --incremental --json',
    "<%= config.bin %> scan web-1 web-2 --exec 'my-scanner --stdin'",
    '<%= config.bin %> scan --all --clamd /run/clamav/clamd.ctl',
  ]
  static args = {filesets: Args.string({description: 'fileset names'})}
  static strict = false
  static flags = {
    ...imageFlags,
    all: Flags.boolean({description: 'scan every fileset'}),
    signatures: Flags.string({char: 's', multiple: true, multipleNonGreedy: true, helpValue: 'FILE', description: 'ClamAV database (.cvd, .cld, .hdb, .ndb, ...); repeat the flag for several: -s main.cvd -s daily.cvd'}),
    exec: Flags.string({description: 'command run once per unique file with its content on stdin (exit 1 = found)', helpValue: 'CMD'}),
    clamd: Flags.string({description: "clamd's socket (a path, or host:port)", helpValue: 'SOCKET'}),
    incremental: Flags.boolean({description: 'skip files unchanged since the last scan with the same signatures'}),
    'max-filesize': Flags.string({helpValue: 'N', description: "as clamscan: larger files are not scanned (K, M, G suffixes; 0 = no limit, but ClamAV never scans more than 2147483645 bytes); default 100M with --signatures, none otherwise"}),
    'max-scansize': Flags.string({helpValue: 'N', description: 'as clamscan: nor are files larger than this (0 = no limit); default 400M with --signatures, none otherwise'}),
    'alert-exceeds-max': Flags.boolean({description: 'report a file skipped for a limit as Heuristics.Limits.Exceeded.MaxFileSize/MaxScanSize FOUND, as clamscan'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Scan)
    const {runScan} = await import('../cli/scan.js')
    const code = await runScan({...flags, maxFilesize: flags['max-filesize'], maxScansize: flags['max-scansize'], alertExceedsMax: flags['alert-exceeds-max'] ?? false, names: argv as string[], all: flags.all ?? false, incremental: flags.incremental ?? false, json: this.jsonEnabled()}, {
      log: (line) => this.log(line),
      json: (value) => this.logJson(value),
      notice: (m) => this.notice(m),
    })
    // The status is set, not thrown with this.exit(): a large --json output on a pipe would
    // otherwise be cut off, the process ending before stdout drained.
    if (code !== 0) process.exitCode = code
  }

  protected async catch(err: Error & {oclif?: {exit?: number}}): Promise<unknown> {
    // As clamscan: every failure is exit status 2.
    if (err instanceof PrismError) {
      if (this.jsonEnabled()) this.logJson({error: {code: err.code, message: err.message}})
      process.stderr.write(errorLine(err.message))
      this.exit(err.code === 'EINTR' ? err.exitCode : 2)
    }
    return super.catch(err)
  }
}
