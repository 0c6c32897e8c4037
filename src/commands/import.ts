import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {parseImageLoc} from '../cli/locate.js'
import {humanSize} from '../cli/output.js'
import {PrismError} from '../errors.js'
import {stdinRead} from '../cli/served.js'
import type {ArchiveInput} from '../tar/io.js'
import type {ImportStats} from '../tar/import.js'

export default class Import extends PrismCommand {
  static summary = 'Extract a tar archive into a fileset (all or nothing)'
  static description = `Reads ustar, pax and GNU archives, plain or compressed with gzip, xz, zstd or bzip2 (found by the archive's first bytes), from a file or from standard input (-). Keeps file types (devices, FIFOs, hard links, symlinks), modes with setuid/setgid/sticky bits, numeric owners (as tar --numeric-owner), nanosecond times, extended attributes (SCHILY.xattr.*, LIBARCHIVE.xattr.*), POSIX ACLs (SCHILY.acl.*) and holes (GNU sparse files).
FILESET:/path must be a directory (the archive is merged into it as tar -x merges into a directory: files, symlinks and empty directories in the way are replaced, a non-empty directory never is) or a new name in one. --create makes a new fileset instead.
The import is atomic: a truncated or damaged archive, a full image or an interrupted command leaves the fileset as it was (or no new fileset). Entries that would write outside the target (a name with '..', a path through a symlink, a hard link to something the archive did not make) are refused by name, the rest imported, and the exit status is 1. A leading '/' is removed from member names. An archive read from standard input or a pipe is first copied to a temporary file, so the image is not locked while it arrives.`
  static examples = [
    '<%= config.bin %> import --create web rootfs.tar.zst',
    'docker export web | <%= config.bin %> import --create web -',
    '<%= config.bin %> import root:/srv/site site.tar.gz',
    '<%= config.bin %> import root backup.tar.xz',
  ]
  static args = {
    target: Args.string({description: 'FILESET[:/path] to extract into, or with --create the new fileset\'s name', required: true}),
    archive: Args.string({description: 'archive file, or - for standard input', required: true}),
  }
  static flags = {
    ...imageFlags,
    create: Flags.boolean({char: 'c', description: 'make TARGET as a new fileset holding the archive'}),
  }

  async run() {
    const {args, flags} = await this.parse(Import)
    let target: {fileset: string, path: string, create?: boolean}
    if (flags.create) {
      if (args.target.includes(':')) throw new PrismError('EUSAGE', `--create takes a new fileset's name, not '${args.target}'`)
      target = {fileset: args.target, path: '/', create: true}
    } else {
      const loc = parseImageLoc(args.target.includes(':') ? args.target : `${args.target}:/`)
      if (!loc) throw new PrismError('EUSAGE', `'${args.target}' is not a fileset or FILESET:/path`)
      target = loc
    }
    const {openArchive, importArchive} = await import('../tar/io.js')
    // Read before the image is locked: a slow producer on a pipe keeps no one waiting.
    // (on a served image, standard input was read before the image was borrowed: src/cli/served.ts)
    const input = (args.archive === '-' ? stdinRead<ArchiveInput>() : null) ?? await openArchive(args.archive)
    const spin = await this.spinner('importing')
    try {
      const opts = {
        onProgress: (s: ImportStats) => spin.update(`importing: ${s.entries} entries, ${humanSize(s.bytes)}`),
        onWarning: (m: string) => this.notice(m),
      }
      // On a served image, the archive goes to its server, which imports it in slices.
      const served = (await import('../cli/copyin.js')).servedCopy()
      const stats = served
        ? await (await import('../cli/servedimport.js')).importServed(served, target, input, opts)
        : await this.withVolume(flags, true, (vol) => importArchive(vol, target, input, opts))
      spin.stop(`imported ${stats.files} files, ${stats.dirs} directories, ${stats.symlinks} symlinks, ${stats.hardlinks} hard links, ${stats.special} special files, ${humanSize(stats.bytes)}`)
      // Refused entries and dropped attributes were each named on stderr: the import is
      // done (the rest is in) but not complete.
      if (stats.refused > 0 || stats.dropped > 0) process.exitCode = 1
      return stats
    } catch (e) {
      spin.stop()
      throw e
    } finally {
      input.close()
    }
  }
}
