// prism scan, the library: scans every regular file of the named filesets, reading each
// inode's content once however many filesets and names share it (the Prism paper §4.4).
// First every selected tree is walked (directory entries only: the entry type says which
// are regular files) into a compact index of names; then each unique inode is read once,
// in inode order, and its content goes through one engine: the built-in ClamAV-format
// signature matcher (one streaming pass feeding hashes and body signatures), a user command
// (--exec), or clamd (INSTREAM). With `incremental`, results are remembered in the image
// per (inode, generation, data_version) under the engine's identity, and inodes whose
// content has not changed since are not read again.
import {DT_DIR, DT_REG, S_IFDIR} from '../format/constants.js'
import {nameText} from '../format/name.js'
import {PrismError, isDamage} from '../errors.js'
import {crypto} from '../lazy.js'
import {dirForEachRaw} from '../fs/dir.js'
import {readData, streamSparse} from '../fs/extents.js'
import {getFileset, listFilesets, type Fileset} from '../fs/filesets.js'
import type {Inode} from '../fs/inode.js'
import type {InodeVersion} from '../format/inode.js'
import type {Volume} from '../fs/volume.js'
import {clamdScan, clamdVersion} from './clamd.js'
import {ensureExpanded} from './expand.js'
import {Matcher} from './matcher.js'
import {exceededLimit, exceededName, limitsKey, type ScanLimits} from './limits.js'
import type {SignatureSet} from './signatures.js'
import {ScanEntries, TreeCache, type ScanFile} from '../format/scan.js'
import {loadScanFile, saveScanFile, type ScanSet} from './store.js'
import {checkInterrupt} from '../interrupt.js'

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
  /**
   * With `incremental`: what the scan learned is returned (ScanResult.save) instead of written,
   * for an image read here without write access (a snapshot of a served image): the caller
   * writes it afterwards (saveScanFile). Entries are per inode and content version (§12.2), so
   * what changed meanwhile never matches a stale entry.
   */
  saveLater?: boolean
  /**
   * Size limits (src/scan/limits.ts): a larger file is not read, and is clean or, with
   * alertExceedsMax, found as Heuristics.Limits.Exceeded.*, as clamscan does. Part of the
   * identity incremental results are remembered under.
   */
  limits?: ScanLimits | null
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
  /** directories read (an incremental scan takes unchanged ones from the remembered tree) */
  dirsRead: number
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
  /** inodes not read for being larger than a size limit (ScanOptions.limits) */
  skipped?: number
  /** content bytes of all distinct inodes */
  bytesTotal: number
  /** per inode: how many times its content was read (tests assert each is 1) */
  readsPerInode: Map<number, number>
}

export interface ScanResult {
  matches: ScanMatch[]
  errors: ScanError[]
  stats: ScanStats
  /** the results to remember, when the scan was asked to save them later (ScanOptions.saveLater) */
  save?: ScanFile
}

/** Every fileset, for --all. */
export function allFilesetNames(vol: Volume): string[] {
  return listFilesets(vol).map((f) => f.name)
}

/** No child of the tree (FileIndex.dirRef, entRef). */
const NO_REF = 0xffff_ffff

/**
 * Every regular-file name of the filesets, kept compactly: the directories walked (parent,
 * and name when read, so a path is built only when asked for) and, per name, its inode and
 * directory. A scan of 100,000 names builds no path string until it knows which inodes
 * matched.
 *
 * Given the tree an earlier scan remembered (§12), a directory whose (ino, generation,
 * data_version) are unchanged is not read: its regular files and subdirectories are taken
 * from there. Either way `tree` records what this walk found, for the next scan.
 */
export class FileIndex {
  /** per directory walked: inode, parent's index (-1 for a fileset root), name (`FILESET:` for a root; undefined until needed when not read) */
  private readonly dirIno: number[] = []
  private readonly dirParent: number[] = []
  private readonly dirName: Array<string | undefined> = []
  /** per directory: the child of `tree` naming it (NO_REF for a root, or when not recorded) */
  private readonly dirRef: number[] = []
  private readonly dirPath = new Map<number, string>()
  /** parent's index -> its subdirectories' indexes (built when names are first needed) */
  private subdirs: Map<number, number[]> | null = null
  /** per regular-file name: its inode and the index of its directory */
  private entIno = new Uint32Array(1024)
  private entDir = new Uint32Array(1024)
  /** per regular-file name: the child of `tree` it is (NO_REF when not recorded) */
  private entRef = new Uint32Array(1024)
  /** names of regular files seen */
  names = 0
  /** directories read (the others came from the remembered tree) */
  dirsRead = 0
  /** the directories walked, with their children: the tree to remember (when one was given) */
  readonly tree: TreeCache | null

  constructor(private readonly vol: Volume, filesets: Fileset[], remembered: TreeCache | null = null) {
    this.tree = remembered ? new TreeCache(remembered.dirs + 64, remembered.children + 256) : null
    const v: InodeVersion = {type: 0, size: 0, generation: 0, dataVersion: 0}
    // A directory is named once, in one tree: one met twice is a loop in a damaged image.
    const seen = new Set<number>()
    for (const f of filesets) {
      const stack = [this.addDir(f.rootIno, -1, `${f.name}:`, NO_REF)]
      while (stack.length > 0) {
        const d = stack.pop()!
        const ino = this.dirIno[d]
        if (seen.has(ino)) throw new PrismError('EBADIMAGE', `directory inode ${ino} is named twice (a loop?); run 'prism fsck'`)
        seen.add(ino)
        // A directory the damage keeps from being read is left out whole (what it added so far
        // is taken back) and reported; the walk goes on (as clamscan goes on past what it
        // cannot read).
        const mark = {names: this.names, dirs: this.dirIno.length, stack: stack.length, tDirs: this.tree?.dirs ?? 0, tChildren: this.tree?.children ?? 0, tNames: this.tree?.namesLen ?? 0}
        try {
          this.walkDir(d, ino, remembered, stack, v)
        } catch (e) {
          if (!isDamage(e)) throw e
          this.names = mark.names
          for (const a of [this.dirIno, this.dirParent, this.dirName, this.dirRef] as unknown[][]) a.length = mark.dirs
          stack.length = mark.stack
          if (this.tree) {
            this.tree.dirs = mark.tDirs
            this.tree.children = mark.tChildren
            this.tree.namesLen = mark.tNames
          }
          this.unreadable.push({dir: d, message: e.message})
        }
      }
    }
  }

  /** Lists directory `d` (inode `ino`) of the walk: its files are entries, its subdirectories go on `stack`. */
  private walkDir(d: number, ino: number, remembered: TreeCache | null, stack: number[], v: InodeVersion): void {
    const vol = this.vol
    let record: TreeCache | null = null
    if (remembered && this.tree) {
      vol.inodeVersion(ino, v, false)
      const k = remembered.find(ino)
      if (k >= 0 && v.type === S_IFDIR && remembered.generation[k] === v.generation && remembered.dataVersion[k] === v.dataVersion) {
        const at = this.tree.copyDir(remembered, k)
        const n = remembered.count[k]
        for (let c = 0; c < n; c++) {
          const ino = this.tree.child[at + c]
          if (this.tree.childType[at + c] === DT_REG) this.addEntry(ino, d, at + c)
          else stack.push(this.addDir(ino, d, undefined, at + c))
        }
        return
      }
      if (v.type === S_IFDIR) {
        record = this.tree
        record.addDir(ino, v.generation, v.dataVersion)
      }
    }
    this.dirsRead++
    dirForEachRaw(vol, vol.iget(ino), (child, type, buf, off, len) => {
      if (type === DT_REG) {
        this.addEntry(child, d, record ? record.addChild(child, DT_REG, buf, off, len) : NO_REF)
      } else if (type === DT_DIR) {
        const ref = record ? record.addChild(child, DT_DIR, buf, off, len) : NO_REF
        stack.push(this.addDir(child, d, nameText(buf.subarray(off, off + len)), ref))
      }
    })
  }

  /** The directories the damage kept from being read (none of their files is in the index), with why. */
  readonly unreadable: Array<{dir: number, message: string}> = []

  /** `FILESET:/a/b` of each directory in `unreadable`. */
  unreadablePaths(): Array<{ino: number, path: string, message: string}> {
    return this.unreadable.map((u) => ({ino: this.dirIno[u.dir], path: this.pathOfDir(u.dir).replace(/(.)\/$/, '$1'), message: u.message}))
  }

  private addDir(ino: number, parent: number, name: string | undefined, ref: number): number {
    this.dirIno.push(ino)
    this.dirParent.push(parent)
    this.dirName.push(name)
    this.dirRef.push(ref)
    return this.dirIno.length - 1
  }

  private addEntry(ino: number, dir: number, ref: number): void {
    if (this.names === this.entIno.length) {
      const grow = (a: Uint32Array) => { const b = new Uint32Array(a.length * 2); b.set(a); return b }
      this.entIno = grow(this.entIno)
      this.entDir = grow(this.entDir)
      this.entRef = grow(this.entRef)
    }
    this.entIno[this.names] = ino
    this.entDir[this.names] = dir
    this.entRef[this.names] = ref
    this.names++
  }

  /** The distinct regular-file inodes, in increasing order. */
  inodes(): Uint32Array {
    const all = this.entIno.slice(0, this.names).sort()
    let n = 0
    for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[i - 1]) all[n++] = all[i]
    return all.subarray(0, n)
  }

  /**
   * A directory's name, read from its parent when the walk did not read it: one read of the
   * parent names all its subdirectories.
   */
  private nameOf(d: number): string {
    if (this.dirName[d] === undefined && this.tree && this.dirRef[d] !== NO_REF) this.dirName[d] = this.tree.childName(this.dirRef[d])
    if (this.dirName[d] === undefined) {
      const p = this.dirParent[d]
      if (!this.subdirs) {
        this.subdirs = new Map()
        for (let x = 0; x < this.dirIno.length; x++) {
          const list = this.subdirs.get(this.dirParent[x])
          if (list) list.push(x)
          else this.subdirs.set(this.dirParent[x], [x])
        }
      }
      const unnamed = new Map<number, number>()
      for (const x of this.subdirs.get(p) ?? []) if (this.dirName[x] === undefined) unnamed.set(this.dirIno[x], x)
      dirForEachRaw(this.vol, this.vol.iget(this.dirIno[p]), (child, type, buf, off, len) => {
        const x = type === DT_DIR ? unnamed.get(child) : undefined
        if (x !== undefined) this.dirName[x] = nameText(buf.subarray(off, off + len))
      })
      if (this.dirName[d] === undefined) throw new PrismError('EBADIMAGE', `directory inode ${this.dirIno[d]} is not in its parent any more; run 'prism fsck'`)
    }
    return this.dirName[d]!
  }

  /** `FILESET:/a/b/` for a directory. */
  private pathOfDir(d: number): string {
    const chain: number[] = []
    let x = d
    while (x >= 0 && !this.dirPath.has(x)) { chain.push(x); x = this.dirParent[x] }
    let p = x >= 0 ? this.dirPath.get(x)! : ''
    for (let i = chain.length - 1; i >= 0; i--) {
      const y = chain[i]
      p = this.dirParent[y] < 0 ? `${this.dirName[y]}/` : `${p}${this.nameOf(y)}/`
      this.dirPath.set(y, p)
    }
    return p
  }

  /**
   * Every FILESET:/path of each of `inos`, sorted. Names recorded in `tree` are taken from
   * there; only directories not recorded (a scan without remembered results) are read again.
   */
  paths(inos: Iterable<number>): Map<number, string[]> {
    const out = new Map<number, string[]>()
    for (const ino of inos) out.set(ino, [])
    if (out.size === 0) return out
    const dirs = new Set<number>()
    for (let k = 0; k < this.names; k++) {
      const list = out.get(this.entIno[k])
      if (!list) continue
      if (this.tree && this.entRef[k] !== NO_REF) list.push(this.pathOfDir(this.entDir[k]) + this.tree.childName(this.entRef[k]))
      else dirs.add(this.entDir[k])
    }
    for (const d of dirs) {
      const prefix = this.pathOfDir(d)
      dirForEachRaw(this.vol, this.vol.iget(this.dirIno[d]), (child, type, buf, off, len) => {
        if (type === DT_REG) out.get(child)?.push(prefix + nameText(buf.subarray(off, off + len)))
      })
    }
    for (const list of out.values()) list.sort()
    return out
  }
}

/**
 * The tree to remember: the directories this walk saw, and those remembered from earlier
 * walks (of other filesets) that are still as they were. Sorted.
 */
function mergeTrees(vol: Volume, walked: TreeCache, old: TreeCache): TreeCache {
  walked.sort()
  const v: InodeVersion = {type: 0, size: 0, generation: 0, dataVersion: 0}
  let added = false
  for (let k = 0; k < old.dirs; k++) {
    const ino = old.ino[k]
    if (walked.find(ino) >= 0 || !vol.validIno(ino) || !vol.inodeSlotUsed(ino)) continue
    try {
      vol.inodeVersion(ino, v, false)
    } catch (e) {
      if (e instanceof PrismError) continue
      throw e
    }
    if (v.type === S_IFDIR && v.generation === old.generation[k] && v.dataVersion === old.dataVersion[k]) {
      walked.copyDir(old, k)
      added = true
    }
  }
  if (added) walked.sort()
  return walked
}

/** The identity results are remembered under (a signature set, a command, a clamd). */
async function engineKey(engine: ScanEngine, limits: ScanLimits | null | undefined): Promise<Buffer> {
  const h = crypto().createHash('sha256')
  const lk = limitsKey(limits)
  if (lk) h.update(lk).update('\0')
  if (engine.kind === 'signatures') h.update('signatures\0').update(engine.set.digest)
  else if (engine.kind === 'exec') h.update('exec\0').update(engine.command)
  else h.update('clamd\0').update(engine.socket).update('\0').update(await clamdVersion(engine.socket))
  return h.digest()
}

const ASYNC_CHUNK = 1024 * 1024

/** --exec failing for this many files in a row, before any success, stops the scan. */
export const EXEC_GIVE_UP = 10

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
  const {spawn} = await import('node:child_process') // loaded on first use
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
 * volume must be writable for `incremental` (results are saved and committed). Filesets still
 * expanding are expanded first (in memory only on a read-only volume).
 */
export async function scan(vol: Volume, names: string[], engine: ScanEngine, opts: ScanOptions = {}): Promise<ScanResult> {
  if (names.length === 0) throw new PrismError('EUSAGE', 'name at least one fileset, or use --all')
  if (opts.incremental && vol.readOnly && !opts.saveLater) throw new PrismError('EROFS', '--incremental needs the image opened for writing')
  const filesets: Fileset[] = []
  for (const n of new Set(names)) filesets.push(getFileset(vol, n))
  for (const f of filesets) await ensureExpanded(vol, f)
  // The expansion may have changed the records: read them again.
  const current = filesets.map((f) => getFileset(vol, f.name))

  const key = opts.incremental ? await engineKey(engine, opts.limits) : null
  let save: ScanFile | undefined
  let file: ScanFile | null = null
  let set: ScanSet | null = null
  if (key) {
    file = loadScanFile(vol, opts.onNotice)
    set = file.sets.find((s) => s.key.equals(key)) ?? null
    if (!set) file.sets.push((set = {key, lastUsed: 0, entries: new ScanEntries()}))
  }
  const index = new FileIndex(vol, current, file?.tree ?? null)
  const inos = index.inodes()

  // The remembered entries and `inos` are both in increasing inode order: one merge walk
  // pairs them up. `learned` is what this scan knows, in the same order: the entries still
  // right, new ones, and, as they were, those of inodes outside these filesets (a stale
  // entry never matches, and a scan that covers its inode replaces or drops it).
  const remembered = set?.entries ?? new ScanEntries()
  const learned = new ScanEntries(remembered.length + 64)
  let next = 0
  const keepOutside = (k: number) => learned.pushFrom(remembered, k)
  /** The index of the remembered entry for `ino`, or -1. */
  const rememberedFor = (ino: number): number => {
    while (next < remembered.length && remembered.ino[next] < ino) keepOutside(next++)
    return next < remembered.length && remembered.ino[next] === ino ? next++ : -1
  }

  const stats: ScanStats = {
    filesets: current.length, dirsRead: index.dirsRead, names: index.names, inodes: inos.length, inodesRead: 0, bytesRead: 0, cached: 0,
    bytesTotal: 0, readsPerInode: new Map(),
  }
  const matches: ScanMatch[] = []
  const errors: ScanError[] = []
  const matcher = engine.kind === 'signatures' ? new Matcher(engine.set) : null
  const progress = {files: 0, bytes: 0, totalFiles: inos.length, totalBytes: 0}
  // A command that fails for every file (not found, wrong options) is one error, not one a file.
  let execFailures = 0
  let execWorked = false
  let giveUp: string | null = null
  let lastTick = 0
  const tick = (force = false) => {
    checkInterrupt()
    if (!opts.onProgress) return
    const t = Date.now()
    if (!force && t - lastTick < 100) return
    lastTick = t
    opts.onProgress({...progress})
  }
  // What says whether each file changed, read without decoding whole inodes or checking
  // their checksums: most of an incremental rescan's files are answered from these alone,
  // and an inode whose content is read is decoded in full (checksum and all) first. As
  // for any incremental scanner, content is trusted to change only through the filesystem:
  // damage underneath is fsck's to find.
  const generations = new Uint32Array(inos.length)
  const versions = new Float64Array(inos.length)
  stats.bytesTotal = vol.inodeVersions(inos, generations, versions)
  progress.totalBytes = stats.bytesTotal

  for (let i = 0; i < inos.length; i++) {
    const ino = inos[i]
    const prev = rememberedFor(ino)
    let found: string[]
    let cached = false
    if (prev >= 0 && remembered.generation[prev] === generations[i] && remembered.dataVersion[prev] === versions[i]) {
      found = remembered.nameLen[prev] === 0 ? [] : remembered.found(prev).split('\n')
      cached = true
      stats.cached++
      learned.pushFrom(remembered, prev)
    } else {
      const count = (n: number) => { stats.bytesRead += n; progress.bytes += n; tick() }
      // A hole is passed over, not read: it counts as progress only.
      const pass = (n: number) => { progress.bytes += n; tick() }
      try {
        const inode = vol.iget(ino)
        const over = exceededLimit(opts.limits, inode.r.size)
        if (over) {
          // As clamscan: not read at all; clean, or reported with --alert-exceeds-max.
          stats.skipped = (stats.skipped ?? 0) + 1
          found = opts.limits!.alertExceedsMax ? [exceededName(over)] : []
          pass(inode.r.size)
        } else if (matcher) {
          stats.inodesRead++
          stats.readsPerInode.set(ino, (stats.readsPerInode.get(ino) ?? 0) + 1)
          // Holes go to the matcher as lengths (FileScan.feedZeros); reading stops once
          // nothing more can change the verdict (no digest wanted, every body signature decided).
          const fs = matcher.start(inode.r.size)
          let left = inode.r.size
          if (fs.wantsData()) {
            streamSparse(vol, inode, (buf) => {
              fs.feed(buf); count(buf.length); left -= buf.length
              return fs.wantsData()
            }, (n) => {
              fs.feedZeros(n); pass(n); left -= n
              return fs.wantsData()
            })
          }
          if (left > 0) pass(left)
          found = fs.finish()
        } else {
          stats.inodesRead++
          stats.readsPerInode.set(ino, (stats.readsPerInode.get(ino) ?? 0) + 1)
          const r = engine.kind === 'exec'
            ? await execScan(engine.command, chunksOf(vol, inode, count))
            : await clamdScan((engine as {socket: string}).socket, chunksOf(vol, inode, count))
          if (r.error !== null) {
            if (engine.kind === 'exec' && !execWorked && ++execFailures >= EXEC_GIVE_UP) {
              giveUp = `--exec failed for each of the first ${execFailures} files, stopping: ${r.error}`
              break
            }
            errors.push({ino, paths: [], message: r.error})
            progress.files++
            continue
          }
          execWorked = true
          found = r.found
        }
      } catch (e) {
        // A damaged file is reported and skipped; clamd going away stops the scan.
        if (!(e instanceof PrismError) || e.code === 'EINTR' || (e.code === 'EIO' && engine.kind === 'clamd')) throw e
        errors.push({ino, paths: [], message: e.message})
        progress.files++
        continue
      }
    }
    if (key && !cached) learned.push(ino, generations[i], versions[i], found.join('\n'))
    if (found.length > 0) matches.push({ino, found, paths: [], cached})
    progress.files++
    tick()
  }
  if (giveUp !== null) throw new PrismError('EINVAL', giveUp)
  tick(true)

  if (key && set && file) {
    while (next < remembered.length) keepOutside(next++)
    set.entries = learned
    set.lastUsed = Date.now()
    const results = {sets: file.sets, tree: mergeTrees(vol, index.tree!, file.tree)}
    if (opts.saveLater) {
      save = results
    } else {
      saveScanFile(vol, results)
      vol.commit()
    }
  }
  // Paths are built now, only for the inodes that have something to report.
  const paths = index.paths([...matches, ...errors].map((m) => m.ino))
  for (const m of matches) m.paths = paths.get(m.ino)!
  for (const e of errors) e.paths = paths.get(e.ino)!
  // Directories the damage kept from being read: their files were not scanned.
  for (const u of index.unreadablePaths()) errors.push({ino: u.ino, paths: [u.path], message: `cannot read this directory, its files were not scanned: ${u.message}`})
  matches.sort((a, b) => (a.paths[0] < b.paths[0] ? -1 : a.paths[0] > b.paths[0] ? 1 : 0))
  return save ? {matches, errors, stats, save} : {matches, errors, stats}
}
