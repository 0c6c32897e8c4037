import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {PrismError} from '../errors.js'

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
    await this.withVolume(flags, true, (vol) => {
      const ns = namespace(vol, loc.fileset)
      // A clone always has its root: marking it would leave out nothing, so say so. (Clearing
      // a mark an older prism let be set there is allowed.)
      if (!flags.clear && ns.resolve(loc.path, false).ino === ns.root().ino) {
        throw new PrismError('EINVAL', `${args.path}: the root of fileset '${loc.fileset}' cannot be marked nonclonable; mark the paths below it, or clone a subtree (prism clone ${loc.fileset}:/path)`)
      }
      ns.setFlag(loc.path, IF_NOCLONE, !flags.clear)
    })
  }
}
