import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'

export default class Noclone extends PrismCommand {
  static summary = 'Mark a path nonclonable: every later clone of its fileset leaves it out'
  static examples = ['<%= config.bin %> noclone root:/home/alice/.ssh', '<%= config.bin %> noclone --clear root:/home/alice/.ssh']
  static args = {path: Args.string({description: 'FILESET:/path', required: true})}
  static enableJsonFlag = false
  static flags = {...imageFlags, clear: Flags.boolean({description: 'remove the mark'})}

  async run() {
    const {args, flags} = await this.parse(Noclone)
    const loc = imageLoc(args.path)
    const {namespace} = await import('../fs/image.js')
    const {IF_NOCLONE} = await import('../format/constants.js')
    await this.withVolume(flags, true, (vol) => namespace(vol, loc.fileset).setFlag(loc.path, IF_NOCLONE, !flags.clear))
  }
}
