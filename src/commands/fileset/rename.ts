import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../../cli/base.js'
import {PrismError} from '../../errors.js'

export default class FilesetRename extends PrismCommand {
  static summary = 'Rename a fileset'
  static examples = ['<%= config.bin %> fileset rename sandbox sandbox-old']
  static args = {from: Args.string({description: 'current name', required: true}), to: Args.string({description: 'new name', required: true})}
  static enableJsonFlag = false
  static flags = {...imageFlags}

  async run() {
    const {args, flags} = await this.parse(FilesetRename)
    // A name no fileset can have is a usage error (README "Exit codes" 2), as in clone and export.
    const {filesetNameProblem} = await import('../../format/fileset.js')
    const bad = filesetNameProblem(args.from) ?? filesetNameProblem(args.to)
    if (bad) throw new PrismError('EUSAGE', bad)
    await this.short(flags, 'fileset-rename', {from: args.from, to: args.to})
  }
}
