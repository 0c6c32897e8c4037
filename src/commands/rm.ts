import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import type {Volume} from '../fs/volume.js'
import {imageLoc} from '../cli/locate.js'
import {PrismError} from '../errors.js'
import {servedTarget} from '../cli/served.js'

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
    const removeOne = (vol: Volume, loc: (typeof locs)[number]): void => {
      try {
        namespace(vol, loc.fileset).remove(loc.path, {recursive: flags.recursive})
      } catch (e) {
        if (flags.force && e instanceof PrismError && e.code === 'ENOENT') return
        throw e
      }
    }
    // On an image a server holds, the server removes and frees, in slices (src/cli/servedremove.ts).
    const served = servedTarget()
    if (served) {
      const {servedRemove} = await import('../cli/servedremove.js')
      await servedRemove(served, {paths: locs.map((l) => ({fileset: l.fileset, path: l.path})), recursive: Boolean(flags.recursive), force: Boolean(flags.force)}, {
        doItem: (vol, i) => removeOne(vol, locs[i]), onItemError: failures.report, wait: flags.wait,
      })
    } else {
      await this.withVolume(flags, true, (vol) => forEachItem(vol, locs, failures.report, (loc) => removeOne(vol, loc)))
    }
    failures.settle()
  }
}
