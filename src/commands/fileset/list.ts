// `prism fileset list`: the oclif command. Its body is src/cli/filesetlist.ts, which bin/run.js's
// start-up fast path runs for the usual forms; this runs for --help and anything unusual.
import {Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../../cli/base.js'

export default class FilesetList extends PrismCommand {
  static summary = 'List the filesets in the image, with the space each one uses'
  static description = `REFER is the data a fileset can reach; UNIQUE is what deleting it would free (like zfs list -o space). COAW is the space the locality policy cost it: blocks its region rewrites copied while another file or fileset still used them (README "Locality"); COAW is shown with or without --space.

-o chooses the columns, in order, from: name, id, parent, created, state, mode, refer, unique, files, dirs, coaw, rewrites (region rewrites), locality (the fileset's coaw setting); "space" stands for name,refer,unique,coaw and "all" for every column. Only refer, unique, files and dirs walk the filesets. With --json, -o keeps the keys of the columns named.`
  static examples = [
    '<%= config.bin %> fileset list',
    '<%= config.bin %> fileset list --json',
    '<%= config.bin %> fileset list --no-space',
    '<%= config.bin %> fileset list -o space',
    '<%= config.bin %> fileset list -H -o name,parent',
  ]
  static flags = {
    ...imageFlags,
    space: Flags.boolean({description: 'compute REFER and UNIQUE (walks every fileset)', allowNo: true}),
    output: Flags.string({char: 'o', description: 'the columns to show, comma-separated (see below)', helpValue: 'COLUMNS', exclusive: ['space']}),
    scripted: Flags.boolean({char: 'H', description: 'for scripts: no head, one tab between fields'}),
    parsable: Flags.boolean({char: 'p', description: 'exact numbers: sizes in bytes, CREATED in seconds since 1970'}),
  }

  async run() {
    const {flags} = await this.parse(FilesetList)
    // The rows and the table come from the module bin/run.js's fast path prints with.
    const {columnsOf, filesetRows, listText, listValue, needsSpace} = await import('../../cli/filesetlist.js')
    const columns = columnsOf(flags)
    // (a fileset the damage keeps from being walked: one line each, `?` for its space, exit 1)
    const damaged: string[] = []
    const rows = await this.withVolume(flags, false, (vol) => filesetRows(vol, needsSpace(columns), (m) => damaged.push(m)))
    const {errorLine} = await import('../../cli/notices.js')
    for (const m of damaged) process.stderr.write(errorLine(m))
    if (damaged.length) process.exitCode = 1
    if (!this.jsonEnabled()) process.stdout.write(listText(rows, columns, {json: false, scripted: flags.scripted, parsable: flags.parsable}))
    return listValue(rows, columns, flags.output)
  }
}
