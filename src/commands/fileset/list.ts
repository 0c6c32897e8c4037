import {Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../../cli/base.js'
import {humanSize, table} from '../../cli/output.js'

const STATES = ['free', 'active', 'expanding', 'deleting']
const MODES = ['', 'sync', 'async', 'lazy']

export default class FilesetList extends PrismCommand {
  static summary = 'List the filesets in the image, with the space each one uses'
  static description = 'REFER is the data a fileset can reach; UNIQUE is what deleting it would free (like zfs list -o space). COAW is the space the locality policy cost it: blocks its region rewrites copied while another file or fileset still used them (README "Locality"); COAW is shown with or without --space.'
  static examples = ['<%= config.bin %> fileset list', '<%= config.bin %> fileset list --json', '<%= config.bin %> fileset list --no-space']
  static flags = {...imageFlags, space: Flags.boolean({description: 'compute REFER and UNIQUE (walks every fileset)', default: true, allowNo: true})}

  async run() {
    const {flags} = await this.parse(FilesetList)
    const {listFilesets, filesetById} = await import('../../fs/filesets.js')
    const {allFilesetSpace} = await import('../../fs/space.js')
    const {showLocality, localityCode, FILESET_LOCALITY_MASK} = await import('../../format/locality.js')
    const rows = await this.withVolume(flags, false, (vol) => {
      const list = listFilesets(vol)
      const space = flags.space ? allFilesetSpace(vol, list) : null
      return list.map((f) => {
        const sp = space?.get(f.id) ?? null
        return {
          name: f.name, id: f.id, parent: f.parentId ? filesetById(vol, f.parentId)?.name ?? `#${f.parentId}` : null,
          created: new Date(f.created).toISOString(), state: STATES[f.state] ?? String(f.state), mode: MODES[f.mode] || null, rootIno: f.rootIno,
          ...(f.state === 2 ? {expansion: {done: f.dirsDone, known: Math.max(f.dirsTotal, f.dirsDone)}} : {}),
          ...(sp ? {referenced: sp.referencedBlocks * 4096, unique: sp.uniqueBlocks * 4096, files: sp.files, dirs: sp.dirs} : {}),
          coaw: {setting: showLocality(localityCode(f.flags & FILESET_LOCALITY_MASK)), copiedBytes: f.coawCopied * 4096, rewrites: f.coawRewrites},
        }
      })
    })
    const head = ['NAME', 'PARENT', 'CREATED', 'STATE', ...(flags.space ? ['REFER', 'UNIQUE'] : []), 'COAW']
    this.log(table([head, ...rows.map((r) => [
      r.name, r.parent ?? '-', r.created.replace('T', ' ').slice(0, 19), r.expansion ? `${r.state} ${r.expansion.done}/${r.expansion.known}` : r.state,
      ...(flags.space ? [humanSize(r.referenced ?? 0), humanSize(r.unique ?? 0)] : []), humanSize(r.coaw.copiedBytes),
    ])], flags.space ? [4, 5, 6] : [4]))
    return rows
  }
}
