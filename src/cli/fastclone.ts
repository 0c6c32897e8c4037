// The fast path of `prism clone` (bin/run.js): an asynchronous clone takes one small
// transaction, so the command's time is mostly Node and oclif starting up. This parses the
// common forms itself and loads only the library:
//   clone SRC [DST] [--mode async|lazy|sync] [--no-background] [-x|--exclude PATTERN]...
//         [-i|--image IMAGE] [--wait N]
// Anything else (--help, --json, --replace, --exclude-from, grafts ...) returns null and goes
// through oclif, which behaves the same.
import {PrismError} from '../errors.js'
import {withImage} from '../fs/image.js'
import {clone, type CloneMode} from '../clone/clone.js'
import {lockWaitNotice} from './session.js'
import {findImage, parseImageLoc, parseWait} from './locate.js'
import {errorLine, notice} from './notices.js'
import {catchSignals} from './signals.js'
import {nameShown} from '../format/name.js'

export function fastClone(argv: string[]): number | null {
  let image: string | undefined
  let wait = 5
  let mode: CloneMode = 'async'
  let background = true
  const exclude: string[] = []
  const pos: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = (): string | null => (i + 1 < argv.length ? argv[++i] : null)
    if (a === '-i' || a === '--image') { const v = val(); if (v === null) return null; image = v }
    else if (a.startsWith('--image=')) image = a.slice(8)
    else if (a === '--wait') { const v = val(); const s = v === null ? null : parseWait(v); if (s === null) return null; wait = s }
    else if (a === '--mode') { const v = val(); if (v !== 'async' && v !== 'lazy' && v !== 'sync') return null; mode = v }
    else if (a.startsWith('--mode=')) { const v = a.slice(7); if (v !== 'async' && v !== 'lazy' && v !== 'sync') return null; mode = v }
    else if (a === '--no-background') background = false
    else if (a === '-x' || a === '--exclude') { const v = val(); if (v === null) return null; exclude.push(v) }
    else if (a.startsWith('--exclude=')) exclude.push(a.slice(10))
    else if (a.startsWith('-')) return null
    else pos.push(a)
  }
  if (pos.length < 1 || pos.length > 2 || (pos[1] ?? '').includes(':')) return null
  const src = parseImageLoc(pos[0].includes(':') ? pos[0] : `${pos[0]}:/`)
  if (!src) return null
  catchSignals()
  try {
    const path = findImage(image)
    const res = withImage(path, {
      write: true, wait,
      onWait: lockWaitNotice(),
      onNotice: notice,
    }, (vol) => clone(vol, src, pos[1] !== undefined ? {fileset: pos[1]} : null, {
      mode, exclude, onWarning: (m) => process.stderr.write(`prism: warning: ${nameShown(m)}\n`),
    }))
    process.stdout.write(`${res.fileset}\n`)
    if (mode === 'async' && background && process.env.PRISM_NO_BACKGROUND !== '1') {
      return -1 // the caller starts the expander (a separate module, loaded only then)
    }
    return 0
  } catch (e) {
    if (!(e instanceof PrismError)) throw e
    process.stderr.write(errorLine(e.message))
    return e.exitCode
  }
}
