import fs from 'node:fs'
import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'

const sleeper = new Int32Array(new SharedArrayBuffer(4))
/** Pipe-sized writes (as GNU cat's 128 KiB) keep the reader busy; 4 MiB writes halve throughput. */
const CAT_CHUNK = 128 * 1024

/**
 * The descriptor to write to. Node may have made a pipe on fd 1 non-blocking, and then every
 * full pipe costs a retry; reopening the same pipe through /proc gives a blocking descriptor.
 */
function outputFd(): number {
  try {
    const st = fs.fstatSync(1)
    if (st.isFIFO() || st.isSocket()) return fs.openSync('/proc/self/fd/1', 'w')
  } catch {
    // not Linux, or no /proc: fall back to fd 1
  }
  return 1
}

/** Writes all of buf to `fd`, waiting out a full non-blocking pipe. Returns false on EPIPE. */
function writeOut(fd: number, buf: Buffer): boolean {
  let done = 0
  while (done < buf.length) {
    try {
      done += fs.writeSync(fd, buf, done, buf.length - done)
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
    const fd = outputFd()
    await this.withVolume(flags, false, (vol) => {
      for (const loc of locs) {
        let open = true
        namespace(vol, loc.fileset).stream(loc.path, (buf) => {
          if (open && !writeOut(fd, buf)) open = false
        }, CAT_CHUNK)
        if (!open) return
      }
    })
    if (fd !== 1) fs.closeSync(fd)
  }
}
