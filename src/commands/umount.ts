import {Args, Flags} from '@oclif/core'
import {PrismCommand} from '../cli/base.js'

export default class Umount extends PrismCommand {
  static summary = 'Unmount a prism mount, committing everything'
  static description = `Asks the image's server to unmount (it commits, and after its last mount closes the image clean and exits). A mount whose server died ("Transport endpoint is not connected") is detached instead; the image replays its journal at the next open. A mount in use fails with "target is busy" unless --lazy, which detaches it now and ends it when its last user leaves.`
  static examples = ['<%= config.bin %> umount /srv/root', '<%= config.bin %> umount --lazy /srv/prism']
  static args = {mountpoint: Args.string({description: 'the mount point', required: true})}
  static enableJsonFlag = false
  static flags = {
    lazy: Flags.boolean({char: 'l', description: 'detach now, even while in use; the mount ends when its last user leaves'}),
  }

  async run() {
    const {args, flags} = await this.parse(Umount)
    const {umountVia} = await import('../cli/mount.js')
    await umountVia(args.mountpoint, flags.lazy ?? false)
  }
}
