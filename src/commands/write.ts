import fs from 'node:fs'
import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'

const sleeper = new Int32Array(new SharedArrayBuffer(4))

/** Reads standard input to the end, in chunks. */
function* stdinChunks(): Generator<Buffer> {
  const buf = Buffer.allocUnsafe(8 * 1024 * 1024)
  for (;;) {
    let n: number
    try {
      n = fs.readSync(0, buf, 0, buf.length, null)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EAGAIN') { Atomics.wait(sleeper, 0, 0, 5); continue }
      if (code === 'EOF') return
      throw e
    }
    if (n === 0) return
    yield Buffer.from(buf.subarray(0, n))
  }
}

export default class Write extends PrismCommand {
  static summary = 'Write standard input to a file in the image'
  static examples = ['echo sandbox | <%= config.bin %> write sandbox:/etc/hostname', "printf 'nameserver 1.1.1.1\\n' | <%= config.bin %> write --append root:/etc/resolv.conf", 'tar -c . | <%= config.bin %> write root:/backup.tar']
  static args = {path: Args.string({description: 'FILESET:/path', required: true})}
  static flags = {
    ...imageFlags,
    append: Flags.boolean({char: 'a', description: 'append instead of replacing'}),
    mode: Flags.string({char: 'm', description: 'permissions for a new file, octal', default: '644', helpValue: 'MODE'}),
  }

  async run() {
    const {args, flags} = await this.parse(Write)
    const loc = imageLoc(args.path)
    if (!/^[0-7]{1,4}$/.test(flags.mode)) this.error(`invalid mode '${flags.mode}'`, {exit: 2})
    const {namespace} = await import('../fs/image.js')
    // Read all input before taking the image lock would hold a whole stream in memory;
    // instead take the lock, then stream.
    return this.withVolume(flags, true, (vol) => {
      const ns = namespace(vol, loc.fileset)
      const inode = ns.openForWrite(loc.path, {mode: parseInt(flags.mode, 8), truncate: !flags.append})
      let off = flags.append ? inode.r.size : 0
      let bytes = 0
      if (!flags.append && inode.r.size > 0) ns.truncateInode(inode, 0)
      for (const chunk of stdinChunks()) {
        ns.writeInode(inode, off, chunk)
        off += chunk.length
        bytes += chunk.length
      }
      if (bytes === 0 && !flags.append) ns.truncateInode(inode, 0)
      return {path: `${loc.fileset}:${loc.path}`, bytes, size: inode.r.size}
    })
  }
}
