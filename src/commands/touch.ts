import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc, location, showLoc} from '../cli/locate.js'
import {PrismError, hostReason} from '../errors.js'

export default class Touch extends PrismCommand {
  static summary = 'Set the access and modification times of files in the image, creating them if missing'
  static description = `Times are kept to the nanosecond. -d takes @SECONDS[.NANOSECONDS], an ISO 8601 date and time with up to nine fractional digits (UTC unless an offset is given), 'YYYY-MM-DD HH:MM[:SS]' or now. -r takes the times of another file: FILESET:/path, or a host path.`
  static examples = [
    '<%= config.bin %> touch root:/var/log/new.log',
    '<%= config.bin %> touch -m -d 2024-05-01T12:00:00.123456789Z root:/etc/motd',
    '<%= config.bin %> touch -r ./reference root:/etc/hostname',
    '<%= config.bin %> touch -c -d @0 root:/etc/passwd',
  ]
  static args = {paths: Args.string({description: 'FILESET:/path...', required: true})}
  static strict = false
  static flags = {
    ...imageFlags,
    access: Flags.boolean({char: 'a', description: 'change only the access time'}),
    modification: Flags.boolean({char: 'm', description: 'change only the modification time'}),
    date: Flags.string({char: 'd', description: 'use this time instead of now', exclusive: ['reference']}),
    reference: Flags.string({char: 'r', description: "use this file's times instead of now", exclusive: ['date']}),
    'no-create': Flags.boolean({char: 'c', description: 'do not create missing files'}),
    'no-dereference': Flags.boolean({char: 'h', description: 'change a symlink itself, not what it points to'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Touch)
    const locs = (argv as string[]).map(imageLoc)
    const {parseTime} = await import('../ops/attrs.js')
    let time: {atime: {s: number, ns: number}, mtime: {s: number, ns: number}} | undefined
    if (flags.date) {
      const t = parseTime(flags.date)
      time = {atime: t, mtime: t}
    }
    const ref = flags.reference ? location(flags.reference) : null
    if (ref?.kind === 'host') {
      const fs = await import('node:fs')
      let st
      try {
        st = fs.statSync(ref.path, {bigint: true})
      } catch (e) {
        throw new PrismError('ENOENT', `${ref.path}: ${hostReason(e)}`)
      }
      const {timestampOfNs} = await import('../fs/inode.js')
      time = {atime: timestampOfNs(st.atimeNs), mtime: timestampOfNs(st.mtimeNs)}
    }
    const touched = await this.short(flags, 'touch', {
      locs, access: flags.access, modification: flags.modification, time, ref: ref?.kind === 'image' ? {fileset: ref.fileset, path: ref.path} : undefined,
      noCreate: flags['no-create'], noDereference: flags['no-dereference'],
    }) as Array<{fileset: string, path: string}>
    return {touched: touched.map(showLoc)}
  }
}
