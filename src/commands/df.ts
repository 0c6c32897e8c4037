import {Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {humanSize, table} from '../cli/output.js'

export default class Df extends PrismCommand {
  static summary = 'Show blocks and inodes used and free in the image'
  static examples = ['<%= config.bin %> df', '<%= config.bin %> df -h', '<%= config.bin %> df --json']
  static flags = {...imageFlags, human: Flags.boolean({char: 'h', description: 'sizes in K, M, G'})}

  async run() {
    const {flags} = await this.parse(Df)
    const {filesetCount} = await import('../fs/filesets.js')
    const info = await this.withVolume(flags, false, (vol) => {
      const sb = vol.sb
      return {
        image: this.imagePath(flags.image), blockSize: 4096, blocks: sb.dataBlocks, blocksUsed: sb.dataBlocks - sb.freeBlocks, blocksFree: sb.freeBlocks,
        bytes: sb.dataBlocks * 4096, bytesUsed: (sb.dataBlocks - sb.freeBlocks) * 4096, bytesFree: sb.freeBlocks * 4096,
        inodes: sb.inodeCount, inodesUsed: sb.inodeCount - sb.freeInodes, inodesFree: sb.freeInodes, filesets: filesetCount(vol),
      }
    })
    const n = (blocks: number) => (flags.human ? humanSize(blocks * 4096) : String(blocks * 4))
    const pct = (a: number, b: number) => `${b ? Math.ceil((a / b) * 100) : 0}%`
    this.log(table([
      ['', flags.human ? 'Size' : '1K-blocks', 'Used', 'Available', 'Use%'],
      ['blocks', n(info.blocks), n(info.blocksUsed), n(info.blocksFree), pct(info.blocksUsed, info.blocks)],
      ['inodes', String(info.inodes), String(info.inodesUsed), String(info.inodesFree), pct(info.inodesUsed, info.inodes)],
    ], [1, 2, 3, 4]))
    this.log(`${info.filesets} fileset(s) in ${info.image}`)
    return info
  }
}
