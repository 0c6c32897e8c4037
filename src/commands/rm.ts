import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {PrismError} from '../errors.js'

export default class Rm extends PrismCommand {
  static summary = 'Remove files or directories from the image'
  static description = 'rm -r of a large tree detaches it first and frees it in steps, so a crash never leaves half a tree. Each path is removed on its own: one that cannot be is reported, the others are removed, and the exit status is 1.'
  static examples = ['<%= config.bin %> rm root:/tmp/core', '<%= config.bin %> rm -r sandbox:/var/cache', '<%= config.bin %> rm -rf root:/maybe-there']
  static args = {paths: Args.string({description: 'FILESET:/path', required: true})}
  static strict = false
  static enableJsonFlag = false
  static flags = {
    ...imageFlags,
    recursive: Flags.boolean({char: 'r', aliases: ['R'], description: 'remove directories and their contents'}),
    force: Flags.boolean({char: 'f', description: 'ignore paths that do not exist'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Rm)
    const locs = (argv as string[]).map(imageLoc)
    const {namespace, forEachItem} = await import('../fs/image.js')
    const {Failures} = await import('../cli/each.js')
    const failures = new Failures()
    await this.withVolume(flags, true, (vol) => forEachItem(vol, locs, failures.report, (loc) => {
      try {
        namespace(vol, loc.fileset).remove(loc.path, {recursive: flags.recursive})
      } catch (e) {
        if (flags.force && e instanceof PrismError && e.code === 'ENOENT') return
        throw e
      }
    }))
    failures.settle()
  }
}
