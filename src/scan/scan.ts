// prism scan, the library: scans every regular file of the named filesets, reading each
// inode's content once however many filesets and names share it (the Prism paper §4.4).
// First every selected tree is walked (directory entries only: the entry type says which
// are regular files) into inode -> [FILESET:/path...]; then each unique inode is read once,
// in inode order, and its content goes through one engine: the built-in ClamAV-format
// signature matcher (one streaming pass feeding hashes and body signatures), a user command
// (--exec), or clamd (INSTREAM). With `incremental`, results are remembered in the image
// per (inode, generation, data_version) under the engine's identity, and inodes whose
// content has not changed since are not read again.
import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {DT_DIR, DT_REG} from '../format/constants.js'
import {PrismError} from '../errors.js'
import {dirForEach} from '../fs/dir.js'
import {readData, streamData} from '../fs/extents.js'
import {getFileset, listFilesets, type Fileset} from '../fs/filesets.js'
import type {Inode} from '../fs/inode.js'
import type {Volume} from '../fs/volume.js'
import {clamdScan, clamdVersion} from './clamd.js'
import {ensureExpanded} from './expand.js'
import {Matcher} from './matcher.js'
import type {SignatureSet} from './signatures.js'
import {loadScanSets, saveScanSets, type ScanEntry, type ScanSet} from './store.js'

export type ScanEngine =
  | {kind: 'signatures', set: SignatureSet}
  | {kind: 'exec', command: string}
  | {kind: 'clamd', socket: string}

export interface ScanProgress {
  files: number
  bytes: number
  totalFiles: number
  totalBytes: number
}

export interface ScanOptions {
  incremental?: boolean
  onProgress?: (p: ScanProgress) => void
  onNotice?: (msg: string) => void
}

export interface ScanMatch {
  ino: number
  /** what was found (signature names, or what --exec / clamd said) */
  found: string[]
  /** every FILESET:/path naming the inode, sorted */
  paths: string[]
  /** true when the answer came from the incremental results, without reading */
  cached: boolean
}

export interface ScanError {
  ino: number
  paths: string[]
  message: string
}

export interface ScanStats {
  filesets: number
  /** names of regular files in the scanned trees */
  names: number
  /** distinct regular-file inodes */
  inodes: number
  /** inodes whose content was read (each at most once) */
  inodesRead: number
  /** bytes of content read */
  bytesRead: number
  /** inodes answered from the incremental results */
  cached: number
  /** content bytes of all distinct inodes */
  bytesTotal: number
  /** per inode: how many times its content was read (tests assert each is 1) */
  readsPerInode: Map<number, number>
}

export interface ScanResult {
  matches: ScanMatch[]
  errors: ScanError[]
  stats: ScanStats
}

/** Every fileset, for --all. */
export function allFilesetNames(vol: Volume): string[] {
  return listFilesets(vol).map((f) => f.name)
}

/** inode -> names, over every regular file of the filesets (directory entries only). */
export function collectFiles(vol: Volume, filesets: Fileset[]): {files: Map<number, string[]>, names: number} {
  const files = new Map<number, string[]>()
  let names = 0
  for (const f of filesets) {
    const stack: Array<{ino: number, prefix: string}> = [{ino: f.rootIno, prefix: `${f.name}:/`}]
    while (stack.length > 0) {
      const {ino, prefix} = stack.pop()!
      const dir = vol.iget(ino)
      dirForEach(vol, dir, (child, type, name) => {
        if (type === DT_DIR) {
          stack.push({ino: child, prefix: prefix + name.toString('utf8') + '/'})
        } else if (type === DT_REG) {
          const p = prefix + name.toString('utf8')
          const list = files.get(child)
          if (list) list.push(p)
          else files.set(child, [p])
          names++
        }
      })
    }
  }
  return {files, names}
}

/** The identity results are remembered under (a signature set, a command, a clamd). */
async function engineKey(engine: ScanEngine): Promise<Buffer> {
  const h = createHash('sha256')
  if (engine.kind === 'signatures') h.update('signatures\0').update(engine.set.digest)
  else if (engine.kind === 'exec') h.update('exec\0').update(engine.command)
  else h.update('clamd\0').update(engine.socket).update('\0').update(await clamdVersion(engine.socket))
  return h.digest()
}

const ASYNC_CHUNK = 1024 * 1024

/** The file's content in 1 MiB chunks, read as they are consumed. */
async function* chunksOf(vol: Volume, inode: Inode, count: (n: number) => void): AsyncGenerator<Buffer> {
  const size = inode.r.size
  for (let off = 0; off < size; off += ASYNC_CHUNK) {
    const b = readData(vol, inode, off, Math.min(ASYNC_CHUNK, size - off))
    count(b.length)
    yield b
  }
}

/** Runs the command with the content on stdin: exit 0 clean, 1 found (stdout names it). */
async function execScan(command: string, chunks: AsyncIterable<Buffer>): Promise<{found: string[], error: string | null}> {
  const child = spawn(command, {shell: true, stdio: ['pipe', 'pipe', 'pipe']})
  const out: Buffer[] = []
  const err: Buffer[] = []
  let outLen = 0
  child.stdout.on('data', (d: Buffer) => { if (outLen < 65536) { out.push(d); outLen += d.length } })
  child.stderr.on('data', (d: Buffer) => { if (err.length < 16) err.push(d) })
  child.stdin.on('error', () => {}) // the command may stop reading early (EPIPE)
  const exited = new Promise<{code: number | null, signal: string | null, spawnError?: Error}>((resolve) => {
    child.on('error', (e) => resolve({code: null, signal: null, spawnError: e}))
    child.on('close', (code, signal) => resolve({code, signal}))
  })
  let gone = false
  child.on('exit', () => { gone = true })
  for await (const c of chunks) {
    if (gone || child.stdin.destroyed) break
    if (!child.stdin.write(c)) {
      await new Promise<void>((resolve) => {
        const fin = () => { child.stdin.off('drain', fin); child.stdin.off('close', fin); resolve() }
        child.stdin.once('drain', fin)
        child.stdin.once('close', fin)
      })
    }
  }
  child.stdin.end()
  const r = await exited
  if (r.spawnError) return {found: [], error: `cannot run '${command}': ${r.spawnError.message}`}
  if (r.code === 0) return {found: [], error: null}
  if (r.code === 1) {
    const name = Buffer.concat(out).toString('utf8').split('\n').map((l) => l.trim()).find((l) => l !== '')
    return {found: [name ?? 'match'], error: null}
  }
  const why = Buffer.concat(err).toString('utf8').trim().split('\n')[0]
  return {found: [], error: `'${command}' ${r.signal ? `was killed by ${r.signal}` : `exited with ${r.code}`}${why ? `: ${why}` : ''}`}
}

/**
 * Scans the named filesets. Each unique regular-file inode is read at most once. The
 * volume must be writable for `incremental` (results are saved and committed) and for
 * filesets still expanding (they are expanded first).
 */
export async function scan(vol: Volume, names: string[], engine: ScanEngine, opts: ScanOptions = {}): Promise<ScanResult> {
  if (names.length === 0) throw new PrismError('EUSAGE', 'name at least one fileset, or use --all')
  if (opts.incremental && vol.readOnly) throw new PrismError('EROFS', '--incremental needs the image opened for writing')
  const filesets: Fileset[] = []
  for (const n of new Set(names)) filesets.push(getFileset(vol, n))
  for (const f of filesets) await ensureExpanded(vol, f)
  // The expansion may have changed the records: read them again.
  const current = filesets.map((f) => getFileset(vol, f.name))
  const {files, names: nameCount} = collectFiles(vol, current)
  const inos = [...files.keys()].sort((a, b) => a - b)

  const key = opts.incremental ? await engineKey(engine) : null
  let sets: ScanSet[] = []
  let set: ScanSet | null = null
  const known = new Map<number, ScanEntry>()
  if (key) {
    sets = loadScanSets(vol, opts.onNotice)
    set = sets.find((s) => s.key.equals(key)) ?? null
    if (!set) sets.push((set = {key, lastUsed: 0, entries: []}))
    for (const e of set.entries) known.set(e.ino, e)
  }

  const stats: ScanStats = {
    filesets: current.length, names: nameCount, inodes: inos.length, inodesRead: 0, bytesRead: 0, cached: 0,
    bytesTotal: 0, readsPerInode: new Map(),
  }
  const matches: ScanMatch[] = []
  const errors: ScanError[] = []
  const fresh = new Map<number, ScanEntry>()
  const matcher = engine.kind === 'signatures' ? new Matcher(engine.set) : null
  const progress = {files: 0, bytes: 0, totalFiles: inos.length, totalBytes: 0}
  let lastTick = 0
  const tick = (force = false) => {
    if (!opts.onProgress) return
    const t = Date.now()
    if (!force && t - lastTick < 100) return
    lastTick = t
    opts.onProgress({...progress})
  }
  const inodes: Inode[] = []
  for (const ino of inos) {
    const inode = vol.iget(ino)
    inodes.push(inode)
    stats.bytesTotal += inode.r.size
  }
  progress.totalBytes = stats.bytesTotal

  for (const inode of inodes) {
    const ino = inode.ino
    const paths = files.get(ino)!.sort()
    const prev = known.get(ino)
    let found: string[]
    let cached = false
    if (prev && prev.generation === inode.r.generation && prev.dataVersion === inode.r.dataVersion) {
      found = prev.found === '' ? [] : prev.found.split('\n')
      cached = true
      stats.cached++
    } else {
      stats.inodesRead++
      stats.readsPerInode.set(ino, (stats.readsPerInode.get(ino) ?? 0) + 1)
      const count = (n: number) => { stats.bytesRead += n; progress.bytes += n; tick() }
      try {
        if (matcher) {
          const fs = matcher.start(inode.r.size)
          streamData(vol, inode, (buf) => { fs.feed(buf); count(buf.length) })
          found = fs.finish()
        } else {
          const r = engine.kind === 'exec'
            ? await execScan(engine.command, chunksOf(vol, inode, count))
            : await clamdScan((engine as {socket: string}).socket, chunksOf(vol, inode, count))
          if (r.error !== null) {
            errors.push({ino, paths, message: r.error})
            progress.files++
            continue
          }
          found = r.found
        }
      } catch (e) {
        // A damaged file is reported and skipped; clamd going away stops the scan.
        if (!(e instanceof PrismError) || (e.code === 'EIO' && engine.kind === 'clamd')) throw e
        errors.push({ino, paths, message: e.message})
        progress.files++
        continue
      }
    }
    if (key) fresh.set(ino, {ino, generation: inode.r.generation, dataVersion: inode.r.dataVersion, found: found.join('\n')})
    if (found.length > 0) matches.push({ino, found, paths, cached})
    progress.files++
    tick()
  }
  tick(true)

  if (key && set) {
    // Keep what this scan learned, plus earlier entries for inodes outside these filesets
    // (saveScanSets drops those whose inode is gone or has changed).
    for (const e of set.entries) if (!fresh.has(e.ino) && !files.has(e.ino)) fresh.set(e.ino, e)
    set.entries = [...fresh.values()]
    set.lastUsed = Date.now()
    saveScanSets(vol, sets)
    vol.commit()
  }
  matches.sort((a, b) => (a.paths[0] < b.paths[0] ? -1 : a.paths[0] > b.paths[0] ? 1 : 0))
  return {matches, errors, stats}
}
