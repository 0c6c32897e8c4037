import {PrismCommand, imageFlags} from '../../cli/base.js'
import {table} from '../../cli/output.js'

const STATES = ['free', 'active', 'expanding', 'deleting']
const MODES = ['', 'sync', 'async', 'lazy']

export default class FilesetList extends PrismCommand {
  static summary = 'List the filesets in the image'
  static examples = ['<%= config.bin %> fileset list', '<%= config.bin %> fileset list --json']
  static flags = {...imageFlags}

  async run() {
    const {flags} = await this.parse(FilesetList)
    const {listFilesets, filesetById} = await import('../../fs/filesets.js')
    const rows = await this.withVolume(flags, false, (vol) =>
      listFilesets(vol).map((f) => ({
        name: f.name, id: f.id, parent: f.parentId ? filesetById(vol, f.parentId)?.name ?? `#${f.parentId}` : null,
        created: new Date(f.created).toISOString(), state: STATES[f.state] ?? String(f.state), mode: MODES[f.mode] || null, rootIno: f.rootIno,
      })))
    this.log(table([['NAME', 'PARENT', 'CREATED', 'STATE'], ...rows.map((r) => [r.name, r.parent ?? '-', r.created.replace('T', ' ').slice(0, 19), r.state])]))
    return rows
  }
}
