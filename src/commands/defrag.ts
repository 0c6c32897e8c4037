import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {parseImageLoc} from '../cli/locate.js'
import {humanSize} from '../cli/output.js'
import {PrismError} from '../errors.js'
import {servedTarget} from '../cli/served.js'

export default class Defrag extends PrismCommand {
  static summary = 'Rewrite fragmented files so that they read sequentially again, keeping what clones share'
  static description = `Like e4defrag or btrfs filesystem defragment, on a file or every file under a directory (a fileset name alone: the whole fileset). Blocks no other file uses are rewritten as one run per group; where blocks are shared with another file or fileset (a clone), only the regions the locality policy would itself rewrite are copied (README "Locality"), so defrag never undoes sharing the policy keeps. Content, times and inode sharing are unchanged. The space copied blocks still shared cost is added to the fileset's COAW figure (fileset list).`
  static examples = ['<%= config.bin %> defrag vm:/disks/db.img', '<%= config.bin %> defrag sandbox', '<%= config.bin %> defrag root:/var/lib --json']
  static args = {target: Args.string({description: 'FILESET or FILESET:/path', required: true})}
  static flags = {...imageFlags}

  async run() {
    const {args, flags} = await this.parse(Defrag)
    const loc = parseImageLoc(args.target)
    if (!loc && !/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(args.target)) throw new PrismError('EUSAGE', `'${args.target}' is neither a fileset name nor FILESET:/path`)
    const fileset = loc ? loc.fileset : args.target
    const path = loc ? loc.path : '/'
    const spin = await this.spinner('defragmenting')
    const progress = (files: number, changed: number) => spin.update(`defragmenting: ${files} files, ${changed} rewritten`)
    // On a served image, its server defragments, in slices (src/cli/servedcopy.ts).
    const served = servedTarget()
    let s
    try {
      if (served) {
        s = await (await import('../cli/servedcopy.js')).askDefrag(served, {fileset, path}, progress)
      } else {
        const {namespace} = await import('../fs/image.js')
        const {defrag} = await import('../ops/defrag.js')
        s = await this.withVolume(flags, true, (vol) => defrag(namespace(vol, fileset), path, (_p, st) => {
          if ((st.files & 63) === 0) progress(st.files, st.changed)
        }))
      }
    } finally {
      spin.stop()
    }
    this.log(`${fileset}:${path}: ${s.files} file(s), ${s.changed} rewritten (${s.rewrites} runs, ${humanSize(s.copied * 4096)} copied, ${humanSize(s.copiedShared * 4096)} of it still shared); ` +
      `extents ${s.extentsBefore} -> ${s.extentsAfter}, far runs ${s.farRunsBefore} -> ${s.farRunsAfter}`)
    return {target: `${fileset}:${path}`, ...s, copiedBytes: s.copied * 4096, copiedSharedBytes: s.copiedShared * 4096}
  }
}
