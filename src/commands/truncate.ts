import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {parseSize} from '../cli/output.js'
import {PrismError} from '../errors.js'

export default class Truncate extends PrismCommand {
  static summary = 'Shrink or extend files in the image'
  static description = 'Growing leaves a hole that reads as zeros and takes no space. SIZE may be prefixed with + or - to change the size relative to the current one.'
  static examples = ['<%= config.bin %> truncate -s 0 root:/var/log/syslog', '<%= config.bin %> truncate -s 10G root:/var/lib/sparse.img', '<%= config.bin %> truncate -s +1M root:/data']
  static args = {paths: Args.string({description: 'FILESET:/path', required: true})}
  static strict = false
  static enableJsonFlag = false
  static flags = {
    ...imageFlags,
    size: Flags.string({char: 's', description: 'new size (K, M, G suffixes; +N or -N relative)', required: true, helpValue: 'SIZE'}),
    'no-create': Flags.boolean({char: 'c', description: 'do not create missing files'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Truncate)
    const locs = (argv as string[]).map(imageLoc)
    const rel = flags.size.startsWith('+') ? 1 : flags.size.startsWith('-') ? -1 : 0
    let amount: number
    try {
      amount = parseSize(rel ? flags.size.slice(1) : flags.size)
    } catch (e) {
      throw new PrismError('EUSAGE', (e as Error).message)
    }
    await this.short(flags, 'truncate', {locs, rel, amount, noCreate: flags['no-create']})
  }
}
