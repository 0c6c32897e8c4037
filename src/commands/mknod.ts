import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc, showLoc} from '../cli/locate.js'
import {PrismError} from '../errors.js'

const TYPES: Record<string, number> = {c: 0o020000, u: 0o020000, b: 0o060000, p: 0o010000, s: 0o140000}

export default class Mknod extends PrismCommand {
  static summary = 'Make a device node, FIFO or socket in the image'
  static description = `TYPE is c (or u) for a character device, b for a block device (both need MAJOR and MINOR, each 0 to 4294967295 as Linux's dev_t), p for a FIFO, s for a socket (an extension: mknod(1) has none). Nothing on the host is created, so no privilege is needed; a device node in a fileset works as one only where the fileset is mounted with -o dev.`
  static examples = [
    '<%= config.bin %> mknod root:/dev/null c 1 3',
    '<%= config.bin %> mknod -m 660 root:/dev/sda b 8 0',
    '<%= config.bin %> mknod root:/run/initctl p',
  ]
  static args = {
    path: Args.string({description: 'FILESET:/path', required: true}),
    type: Args.string({description: 'c, b, p or s', required: true, options: ['c', 'u', 'b', 'p', 's']}),
    major: Args.string({description: 'major device number (c and b)'}),
    minor: Args.string({description: 'minor device number (c and b)'}),
  }
  static flags = {
    ...imageFlags,
    mode: Flags.string({char: 'm', description: 'permissions, octal', default: '644'}),
    owner: Flags.string({description: 'OWNER[:GROUP] (numbers, or names in the fileset\'s /etc/passwd and /etc/group)'}),
  }

  async run() {
    const {args, flags} = await this.parse(Mknod)
    const loc = imageLoc(args.path)
    if (!/^[0-7]{1,4}$/.test(flags.mode)) throw new PrismError('EUSAGE', `invalid mode '${flags.mode}'`)
    const device = args.type === 'c' || args.type === 'u' || args.type === 'b'
    if (device !== (args.major !== undefined && args.minor !== undefined)) {
      throw new PrismError('EUSAGE', device ? `a ${args.type === 'b' ? 'block' : 'character'} device needs MAJOR and MINOR` : 'a FIFO or socket takes no device numbers')
    }
    const num = (s: string | undefined, what: string) => {
      if (s === undefined) return 0
      const v = /^(0x[0-9a-f]+|0[0-7]*|[1-9]\d*)$/i.test(s) ? Number(s.startsWith('0') && !/^0x/i.test(s) && s.length > 1 ? parseInt(s, 8) : s) : NaN
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new PrismError('EUSAGE', `invalid ${what} device number '${s}' (0 to 4294967295)`)
      return v
    }
    const rdev = {major: num(args.major, 'major'), minor: num(args.minor, 'minor')}
    await this.short(flags, 'mknod', {loc, mode: TYPES[args.type] | parseInt(flags.mode, 8), rdev, owner: flags.owner})
    return {path: showLoc(loc), type: args.type, ...(device ? rdev : {})}
  }
}
