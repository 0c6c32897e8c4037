import {Args, Flags} from '@oclif/core'
import {PrismCommand} from '../cli/base.js'
import {humanSize, parseSize} from '../cli/output.js'
import {PrismError} from '../errors.js'

export default class Mkfs extends PrismCommand {
  static summary = 'Create a new image holding one empty fileset, root'
  static description = 'The image file is sparse: it takes host space only for what is written. Refuses to overwrite an existing file without --force.'
  static examples = [
    '<%= config.bin %> mkfs disk.img',
    '<%= config.bin %> mkfs disk.img --size 64G --inodes 2000000',
    '<%= config.bin %> mkfs disk.img --size 1G --journal-size 16M --force',
    '<%= config.bin %> mkfs vms.img --size 200G --coaw-region 1M',
    '<%= config.bin %> mkfs plain.img --coaw-region off',
  ]
  static args = {image: Args.string({description: 'image file to create', required: true})}
  static flags = {
    size: Flags.string({char: 's', description: 'image size (K, M, G, T suffixes)', default: '8G', helpValue: 'SIZE'}),
    inodes: Flags.integer({description: 'number of inodes (default: one per 16 KiB)', min: 16, helpValue: 'N'}),
    'journal-size': Flags.string({description: 'journal size, 128K to 1G (default: 1/128 of the image, 4 MiB to 128 MiB; 1/8 of an image under 32 MiB)', helpValue: 'SIZE'}),
    filesets: Flags.integer({description: 'fileset table slots', default: 4096, min: 1, helpValue: 'N'}),
    force: Flags.boolean({char: 'f', description: 'overwrite an existing file'}),
    'coaw-region': Flags.string({description: 'the image default of the locality policy: a region size from 64K to 1M, on, or off (pure block copy-on-write); default on, 256K regions'}),
  }

  async run() {
    const {args, flags} = await this.parse(Mkfs)
    let size: number
    let journalBlocks: number | undefined
    try {
      size = parseSize(flags.size)
      if (flags['journal-size']) journalBlocks = Math.floor(parseSize(flags['journal-size']) / 4096)
    } catch (e) {
      throw new PrismError('EUSAGE', (e as Error).message)
    }
    // (the format's least: the default journal of the smallest image is under 256K, and a
    // size the default can give is one the flag takes)
    if (journalBlocks !== undefined && journalBlocks < 32) throw new PrismError('EUSAGE', 'journal must be at least 128K')
    const {parseLocality, showLocality} = await import('../format/locality.js')
    let coaw: number | undefined
    if (flags['coaw-region'] !== undefined) {
      try {
        coaw = parseLocality(flags['coaw-region'], parseSize)
      } catch (e) {
        throw new PrismError('EUSAGE', (e as Error).message)
      }
    }
    const {mkfs} = await import('../fs/image.js')
    if (flags.force) {
      // An image a prism server holds (mounted) is not overwritten: say so, not just "locked".
      const {servedBy} = await import('../cli/served.js')
      const s = await servedBy(args.image)
      // Exit 3, as for an image another prism process holds: the server is one.
      if (s) throw new PrismError('ELOCKED', `${args.image} is mounted (held by prism server ${s.pid ?? '(which does not answer)'}${s.mountpoints.length ? `, mounted on ${s.mountpoints.join(', ')}` : ''}): unmount it first (prism umount)`)
    }
    const vol = mkfs(args.image, {size, inodeCount: flags.inodes, journalBlocks, filesetSlots: flags.filesets, force: flags.force})
    if (coaw) {
      const {setImageLocality} = await import('../fs/locality.js')
      setImageLocality(vol, coaw)
    }
    const sb = vol.sb
    vol.close()
    const info = {
      image: args.image, size: sb.blockCount * 4096, blocks: sb.blockCount, dataBlocks: sb.dataBlocks, inodes: sb.inodeCount,
      journalBytes: sb.journalBlocks * 4096, filesetSlots: sb.filesetSlots, uuid: sb.uuid.toString('hex'), filesets: ['root'],
      coaw: showLocality(sb.localityDefault) === 'inherit' ? 'default' : showLocality(sb.localityDefault),
    }
    this.log(`created ${args.image}: ${humanSize(info.size)}, ${info.inodes} inodes, ${humanSize(info.journalBytes)} journal, fileset 'root'`)
    return info
  }
}
