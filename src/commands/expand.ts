import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {PrismError} from '../errors.js'
import {servedTarget} from '../cli/served.js'

export default class Expand extends PrismCommand {
  static summary = 'Finish expanding an asynchronous or lazy clone now'
  static description = `An async clone is expanded in the background and a lazy one on demand; this expands the rest of each FILESET (or of every expanding clone with --all) in the foreground, showing progress. An expansion that was interrupted resumes where it stopped. Afterwards the clone is an ordinary fileset. A name that is not a fileset is reported, the others are expanded, and the exit status is 1.`
  static examples = ['<%= config.bin %> expand sandbox', '<%= config.bin %> expand sandbox scratch', '<%= config.bin %> expand --all']
  static args = {filesets: Args.string({description: 'the clones to expand'})}
  static strict = false
  static flags = {
    ...imageFlags,
    all: Flags.boolean({description: 'expand every clone that is still expanding', default: false}),
    background: Flags.boolean({description: 'run as the background expander (started by prism itself)', hidden: true, default: false}),
  }

  async run() {
    const {argv, flags} = await this.parse(Expand)
    const names = argv as string[]
    if (flags.background) {
      const {runBackground} = await import('../clone/background.js')
      runBackground(this.imagePath(flags.image))
      return {background: true}
    }
    if (names.length === 0 && !flags.all) throw new PrismError('EUSAGE', 'name a fileset to expand, or use --all')
    const {expandAll, isExpanding} = await import('../fs/expand.js')
    const {getFileset, listFilesets} = await import('../fs/filesets.js')
    const {forEachItem} = await import('../fs/image.js')
    const {Failures} = await import('../cli/each.js')
    const failures = new Failures()
    const spin = await this.spinner('expanding')
    // On an image a server holds, the server expands, in slices (src/cli/servedexpand.ts).
    const served = servedTarget()
    try {
      const done = served ? await (await import('../cli/servedexpand.js')).servedExpand(served, {names, all: flags.all}, {
        onItemError: (e) => { spin.stop(); failures.report(e) },
        onProgress: (f, n) => spin.update(`expanding ${f}: ${n} directories`),
        wait: flags.wait,
      }) : await this.withVolume(flags, true, (vol) => {
        const targets = flags.all ? listFilesets(vol).filter(isExpanding).map((f) => f.name) : names
        const out: Array<{fileset: string, dirs: number}> = []
        forEachItem(vol, targets, (e) => { spin.stop(); failures.report(e) }, (name) => {
          const f = getFileset(vol, name)
          if (!isExpanding(f)) { out.push({fileset: f.name, dirs: 0}); return }
          let n = 0
          expandAll(vol, f, () => {
            if ((++n & 63) === 0) spin.update(`expanding ${f.name}: ${n} directories`)
          })
          out.push({fileset: f.name, dirs: n})
        })
        return out
      })
      spin.stop()
      for (const d of done) this.log(d.dirs ? `${d.fileset}: expanded ${d.dirs} directories` : `${d.fileset}: already expanded`)
      failures.settle()
      return done
    } catch (e) {
      spin.stop()
      throw e
    }
  }
}
