// `prism cat`: stream files from the image to standard output. Shared by the oclif command
// and by bin/run.js's start-up fast path for plain `prism cat [-i IMAGE] [--wait N] PATH...`
// (a 1 GiB cat is judged on throughput including start-up, and oclif's start-up is ~0.13 s).
import fs from 'node:fs'
import {drainPipe, outputFd, sendAll, writeAll} from '../sys.js'
import {withImage, namespace} from '../fs/image.js'
import '../fs/namespace.js'
import {PrismError, isArgumentError} from '../errors.js'
import {Failures} from './each.js'
import {lockWaitNotice, wantsWrite} from './session.js'
import {findImage, imageLoc, parseWait} from './locate.js'
import {errorLine, notice} from './notices.js'
import {catchSignals} from './signals.js'

/** Pipe-sized writes (as GNU cat's 128 KiB) keep the reader busy; 4 MiB writes halve throughput. */
const CAT_CHUNK = 128 * 1024

export interface CatOptions {
  image?: string
  wait?: number
  onWait?: () => void
  onNotice?: (msg: string) => void
}

/**
 * Streams FILESET:/path arguments, in order, to standard output. A path that cannot be read
 * (missing, a directory ...) is reported to `failures` and the next one follows, as cat does.
 */
export function catPaths(args: string[], opts: CatOptions, failures: Failures): void {
  const locs = args.map(imageLoc)
  const fd = outputFd(1)
  // Into a pipe or a file, data goes straight from the image file (sendfile), not through
  // memory: one copy fewer than cat's read and write, where the pipe is the limit.
  // Not into a pipe while the image is lent by its server (src/cli/served.ts): cat would then
  // hold the image, and the mounts, until the reader has read, and a reader that first
  // touches a mount would wait for cat forever.
  const st = fs.fstatSync(fd)
  const lent = Symbol.for('prism.lend') in globalThis
  const direct = st.isFile() || (st.isFIFO() && !lent)
  const image = findImage(opts.image)
  let next = 0
  let view = false
  const run = (write: boolean, wait = opts.wait) => withImage(image, {write, wait, onWait: opts.onWait, onNotice: opts.onNotice}, (vol) => {
    if (!view && wantsWrite(vol, image)) throw new PrismError('ENEEDWRITE', 'a clone is still expanding')
    let sentToPipe = false
    try {
      for (; next < locs.length; next++) {
        const loc = locs[next]
        let open = true
        const sink = (buf: Buffer): boolean => (open = writeAll(fd, buf))
        try {
          const ns = namespace(vol, loc.fileset)
          if (direct) {
            ns.streamSpans(loc.path, (from, pos, bytes) => {
              const n = sendAll(fd, from, pos, bytes)
              if (n < 0) open = false
              else if (n > 0) sentToPipe ||= st.isFIFO()
              return n
            }, sink, CAT_CHUNK)
          } else {
            ns.stream(loc.path, sink, CAT_CHUNK)
          }
        } catch (e) {
          // Nothing of a path is written out before it is found to be a readable file.
          if (!isArgumentError(e)) throw e
          vol.abort()
          failures.report(e)
        }
        if (!open) return // the reader went away, as cat on SIGPIPE
      }
    } finally {
      // The pipe holds the image's pages, not copies: the image is kept until they are read.
      if (sentToPipe) drainPipe(fd)
    }
  })
  try {
    try {
      run(false)
    } catch (e) {
      // A clone still expanding, and the user may write the image: paths through it are
      // expanded on the way, for good (a user who may not, or who would have to wait for
      // another process to write, reads them expanded in memory: session.ts wantsWrite).
      // Nothing was written out yet.
      if (!(e instanceof PrismError && e.code === 'ENEEDWRITE')) throw e
      try {
        run(true, 0)
      } catch (e2) {
        if (!(e2 instanceof PrismError && e2.code === 'ELOCKED')) throw e2
        view = true
        run(false)
      }
    }
  } finally {
    if (fd !== 1) fs.closeSync(fd)
  }
}

/**
 * The fast path: parses exactly `cat [-i IMAGE | --image IMAGE | --image=IMAGE] [--wait N]
 * PATH...` and returns the exit code, or null when the arguments need oclif (help, other flags).
 */
export function fastCat(argv: string[]): number | null {
  const opts: CatOptions = {}
  const paths: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if ((a === '-i' || a === '--image') && i + 1 < argv.length) opts.image = argv[++i]
    else if (a.startsWith('--image=')) opts.image = a.slice(8)
    else if (a === '--wait' && i + 1 < argv.length && parseWait(argv[i + 1]) !== null) opts.wait = parseWait(argv[++i])!
    else if (a.startsWith('-')) return null
    else paths.push(a)
  }
  if (paths.length === 0) return null
  opts.wait ??= 5
  opts.onWait = lockWaitNotice()
  opts.onNotice = notice
  catchSignals()
  try {
    const failures = new Failures()
    catPaths(paths, opts, failures)
    return failures.status
  } catch (e) {
    if (!(e instanceof PrismError)) throw e
    process.stderr.write(errorLine(e.message))
    return e.exitCode
  }
}
