import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {location} from '../cli/locate.js'
import {humanSize} from '../cli/output.js'
import {servedTarget} from '../cli/served.js'
import {EXIT, PrismError} from '../errors.js'
import type {CopyError, CopyStats} from '../ops/copy.js'

export default class Cp extends PrismCommand {
  static summary = 'Copy files into, out of, and within the image'
  static description = `Paths written FILESET:/path are inside the image; anything else is a host path.
Recursive copies keep file type, mode, owner, times, symlinks and hard links. A directory copied onto a fileset's root (FILESET:/) fills that root. Copies within the image share data blocks (like cp --reflink) until one side writes.
As cp: a directory never replaces a file nor a file a directory; an entry that cannot be copied (refused, unreadable, a special file) is named on stderr, the rest is copied, and the exit status is 1. A copy into the image is all or nothing: it appears in its last transaction. Holes of sparse files stay holes both ways.`
  static examples = [
    '<%= config.bin %> cp -r ./rootfs root:/',
    '<%= config.bin %> cp ./hosts ./resolv.conf root:/etc/',
    '<%= config.bin %> cp -r root:/etc ./etc-backup',
    '<%= config.bin %> cp root:/etc/hostname sandbox:/etc/hostname',
  ]
  static args = {paths: Args.string({description: 'SOURCE... DEST', required: true})}
  static strict = false
  static flags = {
    ...imageFlags,
    recursive: Flags.boolean({char: 'r', aliases: ['R'], description: 'copy directories recursively'}),
    archive: Flags.boolean({char: 'a', description: 'same as -r (attributes are always kept)'}),
    'no-target-directory': Flags.boolean({char: 'T', description: 'treat DEST as the name to create, even if it is a directory'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Cp)
    const locs = (argv as string[]).map(location)
    if (locs.length < 2) throw new PrismError('EUSAGE', 'cp needs a source and a destination')
    const dst = locs.pop()!
    if (dst.kind === 'host' && locs.every((l) => l.kind === 'host')) {
      throw new PrismError('EUSAGE', 'neither source nor destination is inside the image: write FILESET:/path (for example root:/)')
    }
    const {Failures} = await import('../cli/each.js')
    const {servedCopy, copyInServed} = await import('../cli/copyin.js')
    const failures = new Failures()
    const spin = await this.spinner('copying')
    try {
      const opts = {
        recursive: flags.recursive || flags.archive,
        noTargetDirectory: flags['no-target-directory'],
        onProgress: (s: CopyStats) => spin.update(`copying: ${s.files} files, ${s.dirs} directories, ${humanSize(s.bytes)}`),
        keepGoing: true,
        // Each argument or entry that cannot be copied is named on its own line, in order,
        // as it happens; the rest is copied (and durable), and the exit status is 1.
        // (an entry's failure exits 1 whatever its code: one the image's damage kept from
        // being read, EBADIMAGE, too; the rest was copied)
        onError: (e: CopyError) => {
          spin.stop()
          failures.report(new PrismError(e.code, e.message, EXIT.FAIL))
        },
      }
      // On a served image, host sources go to its server, which copies them in slices; a copy
      // within the image is asked of it (src/cli/servedcopy.ts).
      const served = servedCopy()
      const asked = servedTarget()
      const inImage = (l: (typeof locs)[number]): l is typeof l & {kind: 'image'} => l.kind === 'image'
      const stats = served && dst.kind === 'image'
        ? await copyInServed(served, locs, dst, opts)
        : asked && inImage(dst) && locs.every(inImage)
          ? await (await import('../cli/servedcopy.js')).askCopy(asked, locs.map((l) => ({fileset: l.fileset, path: l.path})), {fileset: dst.fileset, path: dst.path}, opts)
          : await this.withVolume(flags, dst.kind === 'image', async (vol) => (await import('../ops/copy.js')).copy(vol, locs, dst, opts))
      spin.stop(`copied ${stats.files} files, ${stats.dirs} directories, ${stats.symlinks} symlinks, ${stats.specials} special files, ${stats.hardlinks} hard links, ${humanSize(stats.bytes)}`)
      failures.settle()
      return stats
    } catch (e) {
      spin.stop()
      throw e
    }
  }
}
