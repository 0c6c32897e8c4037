import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'

export default class Mkdir extends PrismCommand {
  static summary = 'Create directories in the image'
  static examples = ['<%= config.bin %> mkdir root:/srv', '<%= config.bin %> mkdir -p -m 700 root:/home/alice/.ssh']
  static args = {paths: Args.string({description: 'FILESET:/path', required: true})}
  static strict = false
  static enableJsonFlag = false
  static flags = {
    ...imageFlags,
    parents: Flags.boolean({char: 'p', description: 'create missing parents; no error if it exists'}),
    mode: Flags.string({char: 'm', description: 'permissions, octal', default: '755', helpValue: 'MODE'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Mkdir)
    if (!/^[0-7]{1,4}$/.test(flags.mode)) this.error(`invalid mode '${flags.mode}'`, {exit: 2})
    const locs = (argv as string[]).map(imageLoc)
    await this.short(flags, 'mkdir', {locs, parents: flags.parents, mode: parseInt(flags.mode, 8)})
  }
}
