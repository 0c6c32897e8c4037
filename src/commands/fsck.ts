import {Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {PrismError} from '../errors.js'
import {errorLine} from '../cli/notices.js'

export default class Fsck extends PrismCommand {
  static summary = 'Check the whole image, and repair it with --repair'
  static description = `Replays the journal, then checks the superblock and its backup, every inode and block map, every directory, link and share counts, the reference-count table and the fileset table.
Exit status, as e2fsck: 0 clean, 1 errors found and all fixed, 4 errors left uncorrected, 8 operational error, 16 usage error (128 + the signal when interrupted: 130, 143). Without --repair the image is not modified.`
  static examples = ['<%= config.bin %> fsck', '<%= config.bin %> fsck --repair', '<%= config.bin %> fsck --json -i disk.img || echo "image damaged"']
  static flags = {
    ...imageFlags,
    repair: Flags.boolean({char: 'y', aliases: ['fix'], description: 'repair what can be repaired'}),
  }

  async run() {
    const {flags} = await this.parse(Fsck)
    const {runFsck} = await import('../cli/fsck.js')
    const code = await runFsck({repair: flags.repair ?? false, json: this.jsonEnabled(), image: flags.image, wait: flags.wait}, {
      log: (line) => this.log(line),
      json: (value) => this.logJson(value),
    })
    // Set, not thrown with this.exit(): a large --json report on a pipe must drain first.
    if (code !== 0) process.exitCode = code
  }

  /** e2fsck's status for a usage or syntax error (src/cli/fsck.ts FSCK_USAGE) */
  protected usageStatus = 16

  protected async catch(err: Error & {oclif?: {exit?: number}}): Promise<unknown> {
    if (err instanceof PrismError) {
      process.stderr.write(errorLine(err.message))
      const {fsckStatusOf} = await import('../cli/fsck.js')
      this.exit(fsckStatusOf(err))
    }
    return super.catch(err)
  }
}
