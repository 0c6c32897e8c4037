import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'

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
    const notes = await this.short(flags, 'noclone', {locs, clear: flags.clear}) as string[] | undefined
    const {nameShown} = await import('../format/name.js')
    for (const n of notes ?? []) process.stderr.write(`prism: note: ${nameShown(n)}\n`)
  }
}
