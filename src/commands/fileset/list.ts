// `prism fileset list`: the oclif command. Its body is src/cli/filesetlist.ts, which bin/run.js's
// start-up fast path runs for the usual forms; this runs for --help and anything unusual.
import {Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../../cli/base.js'

export default class FilesetList extends PrismCommand {
  static summary = 'List the filesets in the image, with the space each one uses'
  static description = 'REFER is the data a fileset can reach; UNIQUE is what deleting it would free (like zfs list -o space). COAW is the space the locality policy cost it: blocks its region rewrites copied while another file or fileset still used them (README "Locality"); COAW is shown with or without --space.'
  static examples = ['<%= config.bin %> fileset list', '<%= config.bin %> fileset list --json', '<%= config.bin %> fileset list --no-space']
  static flags = {...imageFlags, space: Flags.boolean({description: 'compute REFER and UNIQUE (walks every fileset)', default: true, allowNo: true})}

  async run() {
    const {flags} = await this.parse(FilesetList)
    // The rows and the table come from the module bin/run.js's fast path prints with.
    const {filesetRows, filesetTable} = await import('../../cli/filesetlist.js')
    // (a fileset the damage keeps from being walked: one line each, `?` for its space, exit 1)
    const damaged: string[] = []
    const rows = await this.withVolume(flags, false, (vol) => filesetRows(vol, flags.space, (m) => damaged.push(m)))
    const {errorLine} = await import('../../cli/notices.js')
    for (const m of damaged) process.stderr.write(errorLine(m))
    if (damaged.length) process.exitCode = 1
    if (!this.jsonEnabled()) this.log(filesetTable(rows, flags.space))
    return rows
  }
}
