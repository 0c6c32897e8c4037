import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {parseImageLoc} from '../cli/locate.js'
import {humanSize} from '../cli/output.js'
import {PrismError} from '../errors.js'

/** A date for --mtime: seconds since the epoch ('@1700000000'), or anything Date parses. */
function parseDate(text: string): {s: number, ns: number} {
  const m = /^@(-?\d+)(?:\.(\d{1,9}))?$/.exec(text.trim())
  if (m) return {s: Number(m[1]), ns: Number((m[2] ?? '').padEnd(9, '0'))}
  const ms = Date.parse(text)
  if (Number.isNaN(ms)) throw new PrismError('EUSAGE', `invalid date '${text}' for --mtime (examples: @1700000000, 2024-01-01T00:00:00Z)`)
  return {s: Math.floor(ms / 1000), ns: (((ms % 1000) + 1000) % 1000) * 1e6}
}

/** --owner / --group: a number, or NAME:NUMBER as GNU tar takes it. */
function parseId(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined
  const m = /^(?:[^:]*:)?(\d{1,10})$/.exec(text)
  if (!m || Number(m[1]) > 0xffff_ffff) throw new PrismError('EUSAGE', `invalid --${what} '${text}': give a number (or NAME:NUMBER)`)
  return Number(m[1])
}

export default class Export extends PrismCommand {
  static summary = 'Write a fileset (or a directory of one) as a tar archive'
  static description = `The archive holds everything a fileset keeps: file types (devices, FIFOs, hard links, symlinks), modes with setuid/setgid/sticky bits, owners (ids, and names from the fileset's own /etc/passwd and /etc/group), nanosecond times, extended attributes (SCHILY.xattr.*, as GNU tar --xattrs), POSIX ACLs (SCHILY.acl.*, as GNU tar --acls) and holes (GNU sparse 1.0). Sockets cannot be in a tar archive: each is skipped with a warning, as GNU tar does.
Entries are sorted by name (as GNU tar --sort=name) and named ./PATH; two exports of the same tree are byte-identical. With --mtime, every time is DATE (or at most DATE with --clamp-mtime) and access and change times are left out, for reproducible archives.
ARCHIVE - writes to standard output. The compression is chosen by --compress, else by the file name (.tar.gz/.tgz, .tar.xz/.txz, .tar.zst/.tzst), else none.`
  static examples = [
    '<%= config.bin %> export web web.tar.zst',
    '<%= config.bin %> export root:/etc etc.tar.gz',
    '<%= config.bin %> export root - | ssh host tar -x --xattrs --acls -C /srv/root',
    "<%= config.bin %> export root root.tar --mtime @0 --owner 0 --group 0 --numeric-owner",
  ]
  static args = {
    source: Args.string({description: 'FILESET[:/path] to archive', required: true}),
    archive: Args.string({description: 'archive file to write, or - for standard output', required: true}),
  }
  static flags = {
    ...imageFlags,
    compress: Flags.string({char: 'z', description: 'compression (default: from the file name; none for -)', options: ['gzip', 'xz', 'zstd', 'none']}),
    format: Flags.string({description: 'archive format: pax keeps everything; gnu and ustar hold no attributes, ACLs or nanoseconds', options: ['pax', 'gnu', 'ustar'], default: 'pax'}),
    mtime: Flags.string({description: 'set every modification time to DATE (@SECONDS or an ISO date), and leave access and change times out'}),
    'clamp-mtime': Flags.boolean({description: 'with --mtime: only times newer than DATE become DATE'}),
    owner: Flags.string({description: 'write this uid for every entry (a number, or NAME:NUMBER)'}),
    group: Flags.string({description: 'write this gid for every entry (a number, or NAME:NUMBER)'}),
    'numeric-owner': Flags.boolean({description: 'write no user or group names, only ids'}),
    sort: Flags.string({description: 'entry order (name: sorted by name bytes, the only order)', options: ['name'], default: 'name'}),
  }

  async run() {
    const {args, flags} = await this.parse(Export)
    const loc = parseImageLoc(args.source.includes(':') ? args.source : `${args.source}:/`)
    if (!loc) throw new PrismError('EUSAGE', `'${args.source}' is not a fileset or FILESET:/path`)
    if (flags['clamp-mtime'] && !flags.mtime) throw new PrismError('EUSAGE', '--clamp-mtime needs --mtime DATE')
    const {compressionOfName} = await import('../tar/compress.js')
    const compression = (flags.compress ?? (args.archive === '-' ? 'none' : compressionOfName(args.archive))) as 'gzip' | 'xz' | 'zstd' | 'none'
    const opts = {
      format: flags.format as 'pax' | 'gnu' | 'ustar',
      mtime: flags.mtime ? parseDate(flags.mtime) : undefined,
      clampMtime: flags['clamp-mtime'],
      owner: parseId(flags.owner, 'owner'),
      group: parseId(flags.group, 'group'),
      numericOwner: flags['numeric-owner'],
    }
    const {exportArchive} = await import('../tar/io.js')
    const {namespace} = await import('../fs/image.js')
    const spin = await this.spinner('exporting')
    try {
      const stats = await this.withVolume(flags, false, (vol) => exportArchive(namespace(vol, loc.fileset), loc.path, {arg: args.archive, compression}, {
        ...opts,
        onProgress: (s) => spin.update(`exporting: ${s.files} files, ${s.dirs} directories, ${humanSize(s.bytes)}`),
        onWarning: (m) => this.notice(m),
      }))
      spin.stop(`exported ${stats.files} files, ${stats.dirs} directories, ${stats.symlinks} symlinks, ${stats.hardlinks} hard links, ${stats.special} special files, ${humanSize(stats.bytes)}`)
      // A socket skipped is what GNU tar does too (exit 0); attributes the format cannot hold, or entries it cannot, are not.
      if (stats.dropped > 0 || stats.skipped > stats.sockets) process.exitCode = 1
      return stats
    } catch (e) {
      spin.stop()
      throw e
    }
  }
}
