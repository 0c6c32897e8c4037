import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../../cli/base.js'

export default class FilesetDelete extends PrismCommand {
  static summary = 'Delete a fileset, freeing exactly the space no other fileset still uses'
  static examples = ['<%= config.bin %> fileset delete sandbox']
  static args = {name: Args.string({description: 'fileset name', required: true})}
  static enableJsonFlag = false
  static flags = {...imageFlags}

  async run() {
    const {args, flags} = await this.parse(FilesetDelete)
    const {deleteFileset} = await import('../../fs/image.js')
    await this.withVolume(flags, true, (vol) => deleteFileset(vol, args.name))
  }
}
