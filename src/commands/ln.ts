import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'

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
    const targetLoc = flags.symbolic ? undefined : imageLoc(args.target)
    await this.short(flags, 'ln', {target: args.target, targetLoc, link, symbolic: flags.symbolic, force: flags.force})
  }
}
