import {Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {humanSize, table} from '../cli/output.js'

/** Use at which df warns that blocks or inodes are running out. */
const WARN_PCT = 90

export default class Df extends PrismCommand {
  static summary = 'Show blocks, inodes and filesets used and free in the image, and its journal'
  static description = `The inode count is fixed at mkfs (--inodes): df warns when ${WARN_PCT}% of the blocks or inodes are used. The fileset table grows as filesets are made (its first slots were laid out at mkfs). The journal bounds what one change may write at once; long operations commit in steps, so only a single change larger than MAX CHANGE (a directory split, say) could meet it.`
  static examples = ['<%= config.bin %> df', '<%= config.bin %> df -h', '<%= config.bin %> df --json']
  static flags = {...imageFlags, human: Flags.boolean({char: 'h', description: 'sizes in K, M, G'})}

  async run() {
    const {flags} = await this.parse(Df)
    const {filesetCount, filesetSlots} = await import('../fs/filesets.js')
    const info = await this.withVolume(flags, false, (vol) => {
      const sb = vol.sb
      const slots = filesetSlots(vol)
      return {
        image: this.imagePath(flags.image), blockSize: 4096, blocks: sb.dataBlocks, blocksUsed: sb.dataBlocks - sb.freeBlocks, blocksFree: sb.freeBlocks,
        bytes: sb.dataBlocks * 4096, bytesUsed: (sb.dataBlocks - sb.freeBlocks) * 4096, bytesFree: sb.freeBlocks * 4096,
        inodes: sb.inodeCount, inodesUsed: sb.inodeCount - sb.freeInodes, inodesFree: sb.freeInodes, filesets: filesetCount(vol),
        filesetSlots: slots.total, filesetSlotsAtMkfs: slots.fixed,
        journalBytes: sb.journalBlocks * 4096, maxChangeBlocks: vol.journal.maxBlocks,
      }
    })
    const n = (blocks: number) => (flags.human ? humanSize(blocks * 4096) : String(blocks * 4))
    const pct = (a: number, b: number) => `${b ? Math.ceil((a / b) * 100) : 0}%`
    this.log(table([
      ['', flags.human ? 'Size' : '1K-blocks', 'Used', 'Available', 'Use%'],
      ['blocks', n(info.blocks), n(info.blocksUsed), n(info.blocksFree), pct(info.blocksUsed, info.blocks)],
      ['inodes', String(info.inodes), String(info.inodesUsed), String(info.inodesFree), pct(info.inodesUsed, info.inodes)],
    ], [1, 2, 3, 4]))
    this.log(`${info.filesets} fileset(s) in ${info.image} (the fileset table grows as needed: ${info.filesetSlots} slots now)`)
    this.log(`journal ${humanSize(info.journalBytes)}: one change writes at most ${info.maxChangeBlocks} metadata blocks at once (MAX CHANGE)`)
    for (const [what, used, total, hint] of [
      ['blocks', info.blocksUsed, info.blocks, 'free space by deleting filesets or files, or make a larger image'],
      ['inodes', info.inodesUsed, info.inodes, 'the inode count is fixed at mkfs: make a new image with more --inodes (or a larger --size)'],
    ] as const) {
      if (total > 0 && used * 100 >= total * WARN_PCT) process.stderr.write(`prism: warning: ${pct(used, total)} of the ${what} are used; ${hint}\n`)
    }
    return info
  }
}
