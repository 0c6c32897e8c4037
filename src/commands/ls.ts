import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc, showLoc} from '../cli/locate.js'
import {isoTime, lsTime, modeString, table} from '../cli/output.js'
import {nameShown} from '../format/name.js'
import type {FileType} from '../fs/inode.js'

interface Row {
  name: string
  path: string
  type: FileType
  ino: number
  mode: string
  nlink: number
  uid: number
  gid: number
  size: number
  mtime: string
  target?: string
  /** device number of a character or block device */
  rdev?: {major: number, minor: number}
  flags: string[]
}

export default class Ls extends PrismCommand {
  static summary = 'List directories in the image'
  static examples = [
    '<%= config.bin %> ls root:/',
    '<%= config.bin %> ls -l root:/etc',
    '<%= config.bin %> ls -lR --json sandbox:/var',
  ]
  static args = {paths: Args.string({description: 'FILESET:/path (default root:/)'})}
  static strict = false
  static flags = {
    ...imageFlags,
    long: Flags.boolean({char: 'l', description: 'long listing: mode, links, owner, size, time, flags'}),
    recursive: Flags.boolean({char: 'R', description: 'list subdirectories too'}),
    all: Flags.boolean({char: 'a', description: 'include names that start with a dot'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Ls)
    const locs = ((argv as string[]).length ? (argv as string[]) : ['root:/']).map(imageLoc)
    const {namespace} = await import('../fs/image.js')
    const {enterDir} = await import('../fs/dir.js')
    const listings: Array<{path: string, entries: Row[]}> = []
    await this.withVolume(flags, false, (vol) => {
      for (const loc of locs) {
        const ns = namespace(vol, loc.fileset)
        const row = (name: string, path: string, st: ReturnType<typeof ns.stat>): Row => ({
          name, path, type: st.type, ino: st.ino, mode: modeString(st.type, st.perm), nlink: st.nlink, uid: st.uid, gid: st.gid,
          size: st.size, mtime: isoTime(st.mtime), target: st.target, flags: st.flags,
          ...(st.type === 'chardev' || st.type === 'blockdev' ? {rdev: st.rdev} : {}),
        })
        const top = ns.stat(loc.path, true)
        if (top.type !== 'dir') {
          listings.push({path: showLoc(loc), entries: [row(loc.path.split('/').pop() || '/', loc.path, ns.stat(loc.path, false))]})
          continue
        }
        const queue = [loc.path]
        const seen = new Set<number>([top.ino])
        while (queue.length) {
          const dir = queue.shift()!
          const entries: Row[] = []
          for (const e of ns.readdir(dir)) {
            if (!flags.all && e.name.startsWith('.')) continue
            const p = (dir.endsWith('/') ? dir : dir + '/') + e.name
            entries.push(row(e.name, p, ns.statInode(vol.iget(e.ino))))
            if (flags.recursive && e.type === 'dir') {
              enterDir(seen, e.ino, `${loc.fileset}:${p}`)
              queue.push(p)
            }
          }
          listings.push({path: `${loc.fileset}:${dir}`, entries})
        }
      }
    })
    const many = listings.length > 1
    listings.forEach((l, i) => {
      if (many) this.log(`${i ? '\n' : ''}${nameShown(l.path)}:`)
      if (!flags.long) {
        for (const e of l.entries) this.log(nameShown(e.name))
        return
      }
      this.log(table(l.entries.map((e) => [
        e.mode, String(e.nlink), String(e.uid), String(e.gid), e.rdev ? `${e.rdev.major}, ${e.rdev.minor}` : String(e.size), lsTime({s: Date.parse(e.mtime) / 1000, ns: 0}),
        nameShown(e.name) + (e.target !== undefined ? ` -> ${nameShown(e.target)}` : '') + (e.flags.includes('noclone') ? '  [noclone]' : ''),
      ]), [1, 4]))
    })
    return many ? listings : listings[0]
  }
}
