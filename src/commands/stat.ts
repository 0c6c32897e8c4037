import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc, showLoc} from '../cli/locate.js'
import {isoTime, modeString} from '../cli/output.js'
import {nameShown} from '../format/name.js'

export default class Stat extends PrismCommand {
  static summary = 'Show the inode behind each path'
  static description = `A symlink is described itself unless -L is given (a path ending in / always means the directory it leads to). With --json, an array with one object per path that could be read; a path that cannot is reported on stderr and makes the exit status 1.`
  static examples = ['<%= config.bin %> stat root:/etc/passwd', '<%= config.bin %> stat root:/etc/hosts root:/etc/hostname', '<%= config.bin %> stat -L --json root:/bin/sh']
  static args = {paths: Args.string({description: 'FILESET:/path', required: true})}
  static strict = false
  static flags = {...imageFlags, dereference: Flags.boolean({char: 'L', description: 'follow a final symlink'})}

  async run() {
    const {argv, flags} = await this.parse(Stat)
    const locs = (argv as string[]).map(imageLoc)
    const {namespace, forEachItem} = await import('../fs/image.js')
    const {Failures} = await import('../cli/each.js')
    const failures = new Failures()
    type Info = ReturnType<ReturnType<typeof namespace>['stat']>
    const found: Array<{loc: typeof locs[number], st: Info}> = []
    await this.withVolume(flags, false, (vol) => forEachItem(vol, locs, failures.report, (loc) => {
      found.push({loc, st: namespace(vol, loc.fileset).stat(loc.path, flags.dereference)})
    }))
    failures.settle()
    return found.map(({loc, st}) => {
      const out = {
        path: showLoc(loc), ino: st.ino, type: st.type, mode: `0${st.perm.toString(8)}`, nlink: st.nlink, share: st.share, uid: st.uid, gid: st.gid,
        size: st.size, blocks: st.blocks, atime: isoTime(st.atime), mtime: isoTime(st.mtime), ctime: isoTime(st.ctime),
        flags: st.flags, generation: st.generation, ...(st.target !== undefined ? {target: st.target} : {}), ...(st.entries !== undefined ? {entries: st.entries} : {}),
        ...(st.rdev && (st.type === 'chardev' || st.type === 'blockdev') ? {rdev: st.rdev} : {}), xattrs: st.xattrs,
      }
      this.log(`  File: ${nameShown(out.path)}${st.target !== undefined ? ` -> ${nameShown(st.target)}` : ''}`)
      const dev = out.rdev ? `  Device: ${out.rdev.major},${out.rdev.minor}` : ''
      this.log(`  Type: ${st.type}  Size: ${st.size}  Blocks: ${st.blocks}  Inode: ${st.ino}  Links: ${st.nlink}  Shared by: ${st.share}${dev}`)
      this.log(`Access: (${out.mode}/${modeString(st.type, st.perm)})  Uid: ${st.uid}  Gid: ${st.gid}${st.flags.length ? `  Flags: ${st.flags.join(',')}` : ''}`)
      this.log(`Access: ${out.atime}\nModify: ${out.mtime}\nChange: ${out.ctime}`)
      if (st.xattrs.length) this.log(` Xattr: ${st.xattrs.map(nameShown).join(', ')}`)
      return out
    })
  }
}
