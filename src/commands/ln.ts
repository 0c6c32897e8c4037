import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {PrismError} from '../errors.js'

export default class Ln extends PrismCommand {
  static summary = 'Make hard or symbolic links in the image'
  static description = 'LINK is the name to create (as ln -T): an existing directory there is never replaced nor entered. With -s, TARGET is stored as written; an absolute target is resolved from the root of the fileset that holds the link.'
  static examples = ['<%= config.bin %> ln root:/usr/bin/python3 root:/usr/bin/python', '<%= config.bin %> ln -s /usr/share/zoneinfo/UTC root:/etc/localtime']
  static args = {
    target: Args.string({description: 'existing FILESET:/path (or, with -s, any text)', required: true}),
    link: Args.string({description: 'FILESET:/path of the new name', required: true}),
  }
  static enableJsonFlag = false
  static flags = {...imageFlags, symbolic: Flags.boolean({char: 's', description: 'make a symbolic link'}), force: Flags.boolean({char: 'f', description: 'replace an existing file or symlink (never a directory)'})}

  async run() {
    const {args, flags} = await this.parse(Ln)
    const link = imageLoc(args.link)
    const {namespace} = await import('../fs/image.js')
    await this.withVolume(flags, true, (vol) => {
      const ns = namespace(vol, link.fileset)
      // -f replaces a file or symlink, never a directory (as ln -fT).
      if (flags.symbolic) {
        ns.symlink(args.target, link.path, {force: flags.force})
        return
      }
      const target = imageLoc(args.target)
      if (target.fileset !== link.fileset) throw new PrismError('EXDEV', `cannot hard-link across filesets (${target.fileset} and ${link.fileset})`)
      ns.link(target.path, link.path, {force: flags.force})
    })
  }
}
