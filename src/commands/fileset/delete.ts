import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../../cli/base.js'
import type {Volume} from '../../fs/volume.js'
import {servedTarget} from '../../cli/served.js'
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
    // A name no fileset can have is a usage error (README "Exit codes" 2), as in clone and export.
    const {filesetNameProblem} = await import('../../format/fileset.js')
    const bad = filesetNameProblem(args.name)
    if (bad) throw new PrismError('EUSAGE', bad)
    const {checkDeletable, deleteFileset} = await import('../../fs/image.js')
    const deleteOne = (vol: Volume): void => {
      checkDeletable(vol, args.name, flags.force)
      deleteFileset(vol, args.name)
    }
    // On an image a server holds, the server deletes and frees, in slices (src/cli/servedremove.ts).
    const served = servedTarget()
    if (served) {
      const {servedRemove} = await import('../../cli/servedremove.js')
      await servedRemove(served, {filesets: [args.name], force: flags.force}, {
        doItem: (vol) => deleteOne(vol), onItemError: (e) => { throw e }, wait: flags.wait,
      })
      return
    }
    await this.withVolume(flags, true, deleteOne)
  }
}
