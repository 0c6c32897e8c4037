import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc, showLoc} from '../cli/locate.js'
import {isoTime, modeString} from '../cli/output.js'
import {nameShown} from '../format/name.js'

export default class Stat extends PrismCommand {
  static summary = 'Show the inode behind a path'
  static examples = ['<%= config.bin %> stat root:/etc/passwd', '<%= config.bin %> stat -L --json root:/bin/sh']
  static args = {path: Args.string({description: 'FILESET:/path', required: true})}
  static flags = {...imageFlags, dereference: Flags.boolean({char: 'L', description: 'follow a final symlink'})}

  async run() {
    const {args, flags} = await this.parse(Stat)
    const loc = imageLoc(args.path)
    const {namespace} = await import('../fs/image.js')
    const {showLocality, localityCode} = await import('../format/locality.js')
    const {st, layout, coaw} = await this.withVolume(flags, false, (vol) => {
      const ns = namespace(vol, loc.fileset)
      const inode = ns.resolve(loc.path, flags.dereference)
      const e = ns.locality(inode)
      return {st: ns.statInode(inode), layout: inode.isLnk ? null : ns.layout(inode),
        coaw: {setting: showLocality(localityCode(inode.r.locality)), on: e.on, regionBytes: e.regionBytes, from: e.from}}
    })
    const out = {
      path: showLoc(loc), ino: st.ino, type: st.type, mode: `0${st.perm.toString(8)}`, nlink: st.nlink, share: st.share, uid: st.uid, gid: st.gid,
      size: st.size, blocks: st.blocks, atime: isoTime(st.atime), mtime: isoTime(st.mtime), ctime: isoTime(st.ctime),
      flags: st.flags, generation: st.generation, ...(st.target !== undefined ? {target: st.target} : {}), ...(st.entries !== undefined ? {entries: st.entries} : {}),
      ...(layout ? {extents: layout.extents, sharedBlocks: layout.sharedBlocks, ...(st.type === 'file' ? {farRuns: layout.farRuns} : {})} : {}),
      ...(st.type !== 'symlink' ? {coaw} : {}),
    }
    this.log(`  File: ${out.path}${st.target !== undefined ? ` -> ${nameShown(st.target)}` : ''}`)
    this.log(`  Type: ${st.type}  Size: ${st.size}  Blocks: ${st.blocks}  Inode: ${st.ino}  Links: ${st.nlink}  Shared by: ${st.share}`)
    this.log(`Access: (${out.mode}/${modeString(st.type, st.perm)})  Uid: ${st.uid}  Gid: ${st.gid}${st.flags.length ? `  Flags: ${st.flags.join(',')}` : ''}`)
    this.log(`Access: ${out.atime}\nModify: ${out.mtime}\nChange: ${out.ctime}`)
    if (layout) {
      const policy = `coaw=${coaw.setting} (${coaw.on ? `on, ${coaw.regionBytes >> 10}K regions` : 'off'})`
      this.log(`Extents: ${layout.extents}  Shared blocks: ${layout.sharedBlocks}${st.type === 'file' ? `  Far runs: ${layout.farRuns}` : ''}  Locality: ${policy}`)
    }
    return out
  }
}
