import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {PrismError} from '../errors.js'

export default class Noclone extends PrismCommand {
  static summary = 'Mark paths nonclonable: every later clone of their fileset leaves them out'
  static examples = ['<%= config.bin %> noclone root:/home/alice/.ssh', '<%= config.bin %> noclone root:/var/cache root:/var/tmp', '<%= config.bin %> noclone --clear root:/home/alice/.ssh']
  static args = {paths: Args.string({description: 'FILESET:/path', required: true})}
  static strict = false
  static enableJsonFlag = false
  static flags = {...imageFlags, clear: Flags.boolean({description: 'remove the mark'})}

  async run() {
    const {argv, flags} = await this.parse(Noclone)
    const locs = (argv as string[]).map(imageLoc)
    const {namespace, forEachItem} = await import('../fs/image.js')
    const {IF_NOCLONE} = await import('../format/constants.js')
    const {Failures} = await import('../cli/each.js')
    const failures = new Failures()
    await this.withVolume(flags, true, (vol) => forEachItem(vol, locs, failures.report, (loc) => {
      const ns = namespace(vol, loc.fileset)
      // A clone always has its root: marking it would leave out nothing, so say so. (Clearing
      // a mark an older prism let be set there is allowed.)
      if (!flags.clear && ns.resolve(loc.path, false).ino === ns.root().ino) {
        throw new PrismError('EINVAL', `${loc.fileset}:${loc.path}: the root of fileset '${loc.fileset}' cannot be marked nonclonable; mark the paths below it, or clone a subtree (prism clone ${loc.fileset}:/path)`)
      }
      ns.setFlag(loc.path, IF_NOCLONE, !flags.clear)
    }))
    failures.settle()
  }
}
