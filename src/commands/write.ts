import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {servedTarget, stdinRead, writeInputLimit} from '../cli/served.js'
import type {Spool} from '../ops/spool.js'

export default class Write extends PrismCommand {
  static summary = 'Write standard input to a file in the image'
  static description = `The input is read to its end before the image is locked (in memory up to 64 MiB, the rest in an unnamed file in $TMPDIR), so a slow producer never makes other prism commands wait. An input larger than the image file itself cannot fit: reading stops there (exit 6) and the file is left as it was.`
  static examples = ['echo sandbox | <%= config.bin %> write sandbox:/etc/hostname', "printf 'nameserver 1.1.1.1\\n' | <%= config.bin %> write --append root:/etc/resolv.conf", 'tar -c . | <%= config.bin %> write root:/backup.tar']
  static args = {path: Args.string({description: 'FILESET:/path', required: true})}
  static flags = {
    ...imageFlags,
    append: Flags.boolean({char: 'a', description: 'append instead of replacing'}),
    mode: Flags.string({char: 'm', description: 'permissions for a new file, octal', default: '644', helpValue: 'MODE'}),
  }

  async run() {
    const {args, flags} = await this.parse(Write)
    const loc = imageLoc(args.path)
    if (!/^[0-7]{1,4}$/.test(flags.mode)) this.error(`invalid mode '${flags.mode}'`, {exit: 2})
    const {namespace} = await import('../fs/image.js')
    const {Spool} = await import('../ops/spool.js')
    // Readers never wait for a writer's input: all of it is read before the lock is taken.
    // (on a served image, read before the image was borrowed: src/cli/served.ts)
    const spool = stdinRead<Spool>() ?? await Spool.readStdin(writeInputLimit(this.imagePath(flags.image)))
    try {
      // On a served image, its server writes the file, in slices (src/cli/servedattrs.ts).
      const served = servedTarget()
      if (served) return await (await import('../cli/servedattrs.js')).askWrite(served, loc, spool, {append: flags.append, mode: parseInt(flags.mode, 8)})
      return await this.withVolume(flags, true, (vol) => {
        const ns = namespace(vol, loc.fileset)
        const inode = ns.openForWrite(loc.path, {mode: parseInt(flags.mode, 8), truncate: !flags.append})
        let off = flags.append ? inode.r.size : 0
        for (const chunk of spool.chunks()) {
          ns.writeInode(inode, off, chunk)
          off += chunk.length
        }
        return {path: `${loc.fileset}:${loc.path}`, bytes: spool.size, size: inode.r.size}
      })
    } finally {
      spool.close()
    }
  }
}
