// prism export: thin over src/cli/export.ts, which bin/run.js's start-up fast path runs too.
import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {COMPRESSIONS, FORMATS, runExport} from '../cli/export.js'

export default class Export extends PrismCommand {
  static summary = 'Write a fileset (or a directory of one) as a tar archive'
  static description = `The archive holds everything a fileset keeps: file types (devices, FIFOs, hard links, symlinks), modes with setuid/setgid/sticky bits, owners (ids, and names from the fileset's own /etc/passwd and /etc/group), nanosecond times, extended attributes (SCHILY.xattr.*, as GNU tar --xattrs), POSIX ACLs (SCHILY.acl.*, as GNU tar --acls) and holes (GNU sparse 1.0). Sockets cannot be in a tar archive: each is skipped with a warning, as GNU tar does.
Entries are sorted by name (as GNU tar --sort=name) and named ./PATH; two exports of the same tree are byte-identical. With --mtime, every time is DATE (or at most DATE with --clamp-mtime) and access and change times are left out, for reproducible archives.
ARCHIVE - writes to standard output. The compression is chosen by --compress, else by the file name (.tar.gz/.tgz, .tar.xz/.txz, .tar.zst/.tzst), else none; a name that asks for a compression prism does not write (.bz2, .lz, .lzma, .lzo, .Z, .lz4) is refused without --compress.`
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
    compress: Flags.string({char: 'z', description: 'compression (default: from the file name; none for -)', options: [...COMPRESSIONS]}),
    format: Flags.string({description: 'archive format: pax keeps everything; gnu and ustar hold no attributes, ACLs or nanoseconds', options: [...FORMATS], default: 'pax'}),
    mtime: Flags.string({description: 'set every modification time to DATE (@SECONDS or an ISO date), and leave access and change times out'}),
    'clamp-mtime': Flags.boolean({description: 'with --mtime: only times newer than DATE become DATE'}),
    owner: Flags.string({description: 'write this uid for every entry (a number, or NAME:NUMBER)'}),
    group: Flags.string({description: 'write this gid for every entry (a number, or NAME:NUMBER)'}),
    'numeric-owner': Flags.boolean({description: 'write no user or group names, only ids'}),
    sort: Flags.string({description: 'entry order (name: sorted by name bytes, the only order)', options: ['name'], default: 'name'}),
  }

  async run() {
    const {args, flags} = await this.parse(Export)
    return runExport({
      source: args.source, archive: args.archive, image: flags.image, wait: flags.wait,
      compress: flags.compress as (typeof COMPRESSIONS)[number] | undefined, format: flags.format as (typeof FORMATS)[number],
      mtime: flags.mtime, clampMtime: flags['clamp-mtime'], owner: flags.owner, group: flags.group, numericOwner: flags['numeric-owner'],
      json: this.jsonEnabled(),
    }, (m) => this.notice(m))
  }
}
