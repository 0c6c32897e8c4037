import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {PrismError} from '../errors.js'
import {servedTarget} from '../cli/served.js'

export default class Mv extends PrismCommand {
  static summary = 'Move or rename files in the image'
  static description = 'Within a fileset this is a rename. Between filesets the tree is copied (sharing its blocks) and the source removed, in one transaction when it fits.'
  static examples = ['<%= config.bin %> mv root:/etc/motd root:/etc/motd.old', '<%= config.bin %> mv root:/a root:/b root:/dir/', '<%= config.bin %> mv root:/srv/site web:/srv/site']
  static args = {paths: Args.string({description: 'SOURCE... DEST', required: true})}
  static strict = false
  static enableJsonFlag = false
  static flags = {...imageFlags}

  async run() {
    const {argv, flags} = await this.parse(Mv)
    const all = (argv as string[]).map(imageLoc)
    if (all.length < 2) throw new PrismError('EUSAGE', 'mv needs a source and a destination')
    const dst = all.pop()!
    const {Failures} = await import('../cli/each.js')
    const failures = new Failures()
    // On a served image, its server moves, in slices (src/cli/servedcopy.ts).
    const served = servedTarget()
    if (served) {
      const {askMove} = await import('../cli/servedcopy.js')
      await askMove(served, all.map((l) => ({fileset: l.fileset, path: l.path})), {fileset: dst.fileset, path: dst.path}, failures.report)
    } else {
      const {namespace} = await import('../fs/image.js')
      const {move} = await import('../ops/move.js')
      await this.withVolume(flags, true, (vol) => move(vol, all, dst, (name) => namespace(vol, name), failures.report))
    }
    failures.settle()
  }
}
