import fs from 'node:fs'
import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'

const sleeper = new Int32Array(new SharedArrayBuffer(4))

/** Writes all of buf to stdout, waiting out a full non-blocking pipe. Returns false on EPIPE. */
function writeOut(buf: Buffer): boolean {
  let done = 0
  while (done < buf.length) {
    try {
      done += fs.writeSync(1, buf, done, buf.length - done)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EAGAIN') { Atomics.wait(sleeper, 0, 0, 1); continue }
      if (code === 'EPIPE') return false
      throw e
    }
  }
  return true
}

export default class Cat extends PrismCommand {
  static summary = 'Write files from the image to standard output'
  static examples = ['<%= config.bin %> cat root:/etc/hostname', '<%= config.bin %> cat sandbox:/var/log/big.log | gzip > big.log.gz']
  static args = {paths: Args.string({description: 'FILESET:/path', required: true})}
  static strict = false
  static enableJsonFlag = false
  static flags = {...imageFlags}

  async run() {
    const {argv, flags} = await this.parse(Cat)
    const locs = (argv as string[]).map(imageLoc)
    const {namespace} = await import('../fs/image.js')
    await this.withVolume(flags, false, (vol) => {
      for (const loc of locs) {
        let open = true
        namespace(vol, loc.fileset).stream(loc.path, (buf) => {
          if (open && !writeOut(buf)) open = false
        })
        if (!open) return
      }
    })
  }
}
