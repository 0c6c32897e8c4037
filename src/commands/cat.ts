import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'

export default class Cat extends PrismCommand {
  static summary = 'Write files from the image to standard output'
  static examples = ['<%= config.bin %> cat root:/etc/hostname', '<%= config.bin %> cat sandbox:/var/log/big.log | gzip > big.log.gz']
  static args = {paths: Args.string({description: 'FILESET:/path', required: true})}
  static strict = false
  static enableJsonFlag = false
  static flags = {...imageFlags}

  async run() {
    const {argv, flags} = await this.parse(Cat)
    const {catPaths} = await import('../cli/cat.js')
    const {lockWaitNotice} = await import('../cli/session.js')
    const {Failures} = await import('../cli/each.js')
    const failures = new Failures()
    catPaths(argv as string[], {image: flags.image, wait: flags.wait, onWait: lockWaitNotice(), onNotice: (m) => this.notice(m)}, failures)
    failures.settle()
  }
}
