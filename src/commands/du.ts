import {pushAll} from '../arrays.js'
import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {humanSize, table} from '../cli/output.js'
import {nameShown} from '../format/name.js'

export default class Du extends PrismCommand {
  static summary = 'Show the space a tree takes: apparent size, blocks used, blocks shared'
  static description = `For each directory (or with -s each argument): APPARENT is the sum of file sizes (as du --apparent-size), USED the image blocks the tree maps, each counted once however many names or files map it (data, extent-tree nodes, directory blocks, attribute sets), and SHARED those of them that something else also uses: another fileset (a file a clone shares) or another file (blocks shared by a copy inside the image). USED minus SHARED is what removing the tree would free.`
  static examples = ['<%= config.bin %> du -sh root:/usr', '<%= config.bin %> du root:/etc sandbox:/etc', '<%= config.bin %> du -s --json ci-7:/']
  static args = {paths: Args.string({description: 'FILESET:/path... (default root:/)'})}
  static strict = false
  static flags = {
    ...imageFlags,
    summarize: Flags.boolean({char: 's', description: 'only a total for each argument'}),
    human: Flags.boolean({char: 'h', description: 'sizes in KiB, MiB, GiB (blocks are 4 KiB)'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Du)
    const locs = ((argv as string[]).length ? (argv as string[]) : ['root:/']).map(imageLoc)
    const {namespace, forEachItem} = await import('../fs/image.js')
    const {duPath} = await import('../ops/attrs.js')
    const {Failures} = await import('../cli/each.js')
    const failures = new Failures()
    const rows: Array<ReturnType<typeof duPath>[number]> = []
    await this.withVolume(flags, false, (vol) => forEachItem(vol, locs, failures.report, (loc) => {
      // (past damage: each entry it keeps from being read is named, exit 1, the rest counted)
      pushAll(rows, duPath(namespace(vol, loc.fileset), loc.path, flags.summarize, failures.report))
    }))
    const size = (bytes: number) => (flags.human ? humanSize(bytes) : String(bytes))
    const blocks = (n: number) => (flags.human ? humanSize(n * 4096) : String(n))
    if (rows.length) {
      this.log(table([[flags.human ? 'APPARENT' : 'APPARENT(B)', flags.human ? 'USED' : 'USED(blk)', flags.human ? 'SHARED' : 'SHARED(blk)', 'PATH'],
        ...rows.map((r) => [size(r.apparentBytes), blocks(r.usedBlocks), blocks(r.sharedBlocks), nameShown(r.path)])], [0, 1, 2]))
    }
    failures.settle()
    return rows.map((r) => ({...r, usedBytes: r.usedBlocks * 4096, sharedBytes: r.sharedBlocks * 4096}))
  }
}
