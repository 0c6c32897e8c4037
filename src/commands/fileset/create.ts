import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../../cli/base.js'

export default class FilesetCreate extends PrismCommand {
  static summary = 'Create a new, empty fileset'
  static examples = ['<%= config.bin %> fileset create scratch']
  static args = {name: Args.string({description: 'fileset name (letters, digits, . _ -)', required: true})}
  static flags = {...imageFlags}

  async run() {
    const {args, flags} = await this.parse(FilesetCreate)
    const f = await this.short(flags, 'fileset-create', {name: args.name}) as {name: string, id: number}
    this.log(`created fileset '${f.name}'`)
    return {name: f.name, id: f.id}
  }
}
