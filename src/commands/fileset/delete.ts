import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../../cli/base.js'
import {PrismError} from '../../errors.js'

export default class FilesetDelete extends PrismCommand {
  static summary = 'Delete a fileset, freeing exactly the space no other fileset still uses'
  static description = `A fileset that others were cloned from is deleted only with --force (as zfs destroy refuses a dataset with dependents): its clones keep every file, and take its parent as theirs; clones still expanding from it are expanded completely first.`
  static examples = ['<%= config.bin %> fileset delete sandbox', '<%= config.bin %> fileset delete root-1 --force']
  static args = {name: Args.string({description: 'fileset name', required: true})}
  static enableJsonFlag = false
  static flags = {
    ...imageFlags,
    force: Flags.boolean({char: 'f', description: 'delete it even if other filesets were cloned from it'}),
  }

  async run() {
    const {args, flags} = await this.parse(FilesetDelete)
    const {deleteFileset} = await import('../../fs/image.js')
    const {getFileset, listFilesets} = await import('../../fs/filesets.js')
    await this.withVolume(flags, true, (vol) => {
      const f = getFileset(vol, args.name)
      const clones = listFilesets(vol).filter((c) => c.parentId === f.id).map((c) => c.name)
      if (clones.length > 0 && !flags.force) {
        const shown = clones.length > 5 ? `${clones.slice(0, 5).join(', ')} and ${clones.length - 5} more` : clones.join(', ')
        throw new PrismError('EBUSY', `fileset '${f.name}' has clones (${shown}); they would keep their files and take its parent as theirs: use --force to delete it`)
      }
      deleteFileset(vol, args.name)
    })
  }
}
