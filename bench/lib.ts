// Shared machinery for Prism's benchmarks (bench/*.ts): a deterministic tree generator,
// timing with medians, runners for prism and the host baselines, and the ratio table.
//
// Benchmarks are scripts, not timed tests: each one prints its figures next to the host
// baseline it names, measured on the same tree in the same run, as a ratio, and quotes
// medians of several runs because these machines are noisy.
import {spawnSync, type SpawnSyncOptions} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {parseArgs, type ParseArgsConfig} from 'node:util'

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url))
export const ROOT = path.dirname(BENCH_DIR)
/** The prism binary the benchmarks run; snapshotBuild() points it at a private copy. */
export let PRISM_BIN = path.join(ROOT, 'bin', 'run.js')
/** The package root PRISM_BIN and loadDist() use. */
let buildRoot = ROOT
export const OUT_DIR = path.join(BENCH_DIR, 'out')

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

// ---------------------------------------------------------------- small utilities

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(s.trim())
  if (!m) throw new Error(`bad size '${s}' (use e.g. 200M, 5G)`)
  const mult: Record<string, number> = {'': 1, k: KiB, m: MiB, g: GiB, t: GiB * 1024}
  return Math.round(Number(m[1]) * mult[m[2].toLowerCase()])
}

export function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v.toFixed(i === 0 ? 0 : v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`
}

export function fmtSecs(s: number | null | undefined): string {
  if (s === null || s === undefined || Number.isNaN(s)) return '-'
  return s >= 100 ? s.toFixed(1) : s >= 10 ? s.toFixed(2) : s.toFixed(3)
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

export interface Summary {
  median: number
  min: number
  max: number
  runs: number[]
  /** CPU seconds (user + system) of the same runs, when known */
  cpu?: {median: number, runs: number[]}
}

export function summarize(xs: number[], cpu?: (number | null)[]): Summary {
  const s: Summary = {median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs.map((x) => Number(x.toFixed(4)))}
  if (cpu && cpu.length && cpu.every((c) => c !== null)) s.cpu = {median: median(cpu as number[]), runs: (cpu as number[]).map((x) => Number(x.toFixed(3)))}
  return s
}

// ---------------------------------------------------------------- deterministic PRNG

/** sfc32: small, fast, good enough for shaping a test tree; fully determined by the seed. */
export class Rng {
  private a: number
  private b: number
  private c: number
  private d: number
  constructor(seed: number) {
    this.a = 0x9e3779b9 ^ seed
    this.b = 0x243f6a88 ^ Math.imul(seed, 0x85ebca6b)
    this.c = 0xb7e15162
    this.d = seed | 0
    for (let i = 0; i < 16; i++) this.u32()
  }
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return t >>> 0
  }
  /** [0, 1) */
  next(): number {
    return this.u32() / 4294967296
  }
  int(lo: number, hiExclusive: number): number {
    return lo + Math.floor(this.next() * (hiExclusive - lo))
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]
  }
  normal(): number {
    const u = 1 - this.next()
    const v = this.next()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
  }
  /** log-normal with the given median */
  logNormal(med: number, sigma: number): number {
    return med * Math.exp(sigma * this.normal())
  }
  /** log-uniform in [lo, hi] */
  logUniform(lo: number, hi: number): number {
    return Math.exp(Math.log(lo) + this.next() * (Math.log(hi) - Math.log(lo)))
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n)
    let i = 0
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.u32(), i)
    for (; i < n; i++) b[i] = this.u32() & 0xff
    return b
  }
}

// ---------------------------------------------------------------- tree generation

export interface TreeSpec {
  /** regular files (distinct inodes), including the big cat file */
  files: number
  /** directories below the tree's root */
  dirs: number
  /** total bytes of regular-file data, including the cat file */
  bytes: number
  /** size of the single big file used by the cat test */
  catSize: number
  /** symbolic links (some relative, some absolute and dangling on the host, like a rootfs) */
  symlinks: number
  /** extra hard links to existing regular files */
  hardlinks: number
  seed: number
}

export interface TreeStats {
  dir: string
  spec: TreeSpec
  files: number
  dirs: number
  symlinks: number
  hardlinks: number
  bytes: number
  /** host space the data takes, rounded up to 4 KiB blocks (plus one block per dir/symlink) */
  allocBytes: number
  /** relative path (from the tree root) of the cat file */
  catFile: string
  largest: number[]
  sizeQuantiles: Record<string, number>
  emptyFiles: number
  maxDepth: number
  genSeconds: number
}

/** Bump when the generator changes shape, so that cached trees are rebuilt. */
const GENERATOR_VERSION = 1

export function defaultSpec(small: boolean): TreeSpec {
  return small
    ? {files: 2000, dirs: 300, bytes: 200 * MiB, catSize: 64 * MiB, symlinks: 40, hardlinks: 20, seed: 1}
    : {files: 100_000, dirs: 15_000, bytes: 5 * GiB, catSize: 1 * GiB, symlinks: 2000, hardlinks: 1000, seed: 1}
}

const WORDS = ['lib', 'share', 'bin', 'etc', 'usr', 'local', 'python3', 'site', 'packages', 'include', 'linux', 'net',
  'core', 'util', 'man', 'doc', 'locale', 'zoneinfo', 'perl', 'systemd', 'x86_64', 'gnu', 'fonts', 'icons', 'mime',
  'cache', 'log', 'apt', 'dpkg', 'ssl', 'certs', 'kernel', 'modules', 'firmware', 'node', 'go', 'rust', 'java', 'conf']
const EXTS = ['', '', '', '.so', '.h', '.py', '.pyc', '.conf', '.txt', '.gz', '.js', '.json', '.mo', '.png', '.html', '.pm', '.1.gz']

function fileName(rng: Rng, i: number): string {
  const base = rng.pick(WORDS) + (rng.next() < 0.3 ? '-' + rng.pick(WORDS) : '')
  // A few long names (rootfs has them: locale files, python wheels, hashes).
  const long = rng.next() < 0.02 ? '-' + rng.bytes(24).toString('hex') : ''
  return `${base}${long}_${i.toString(36)}${rng.pick(EXTS)}`
}

/** Sizes of the regular files (index 0 is the cat file), summing exactly to spec.bytes. */
function planSizes(spec: TreeSpec, rng: Rng): number[] {
  const n = spec.files - 1
  if (spec.catSize > spec.bytes) throw new Error('cat file larger than the whole tree')
  const raw: number[] = new Array(n)
  const bigCount = Math.max(3, Math.round(n * 0.0005))
  for (let i = 0; i < n; i++) {
    const r = rng.next()
    if (i < bigCount) raw[i] = rng.logUniform(4 * MiB, 128 * MiB) // a few big ones
    else if (r < 0.01) raw[i] = 0 // empty files (__init__.py, lock files)
    else raw[i] = Math.min(16 * MiB, rng.logNormal(4.5 * KiB, 1.8)) // many small, long tail
  }
  const rest = spec.bytes - spec.catSize
  const sum = raw.reduce((a, b) => a + b, 0)
  const f = sum > 0 ? rest / sum : 0
  const sizes = raw.map((x) => Math.floor(x * f))
  // Put the rounding remainder on the largest file so the total is exact.
  let total = sizes.reduce((a, b) => a + b, 0)
  if (n > 0) {
    let big = 0
    for (let i = 1; i < n; i++) if (sizes[i] > sizes[big]) big = i
    sizes[big] += rest - total
    total = rest
  }
  // Shuffle so the big files land in random directories/order.
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i + 1)
    const t = sizes[i]; sizes[i] = sizes[j]; sizes[j] = t
  }
  return [spec.catSize, ...sizes]
}

/** Bytes of the tree's data rounded up to 4 KiB blocks, plus a block per directory/symlink. */
function allocOf(sizes: number[], spec: TreeSpec): number {
  let a = 0
  for (const s of sizes) a += Math.ceil(s / 4096) * 4096
  return a + (spec.dirs + 1 + spec.symlinks) * 4096
}

/**
 * Builds (or reuses, when `${dir}.json` records the same spec and generator version) a
 * rootfs-like tree: nested directories, a long-tailed size distribution, some symlinks and
 * hard links, and one big file for the cat test. Content is sliced from one seeded 8 MiB
 * random buffer at varying offsets: files differ, generation runs at disk speed.
 */
export function ensureTree(dir: string, spec: TreeSpec, opts: {regen?: boolean} = {}): TreeStats {
  const stamp = `${dir}.json`
  if (!opts.regen && fs.existsSync(stamp) && fs.existsSync(dir)) {
    try {
      const saved = JSON.parse(fs.readFileSync(stamp, 'utf8')) as TreeStats & {version: number}
      if (saved.version === GENERATOR_VERSION && JSON.stringify(saved.spec) === JSON.stringify(spec)) {
        log(`reusing tree ${dir} (${saved.files} files, ${fmtBytes(saved.bytes)}); --regen to rebuild`)
        return {...saved, dir}
      }
    } catch {
      // unreadable stamp: rebuild
    }
  }
  fs.rmSync(stamp, {force: true})
  fs.rmSync(dir, {recursive: true, force: true})
  const t0 = process.hrtime.bigint()
  const rng = new Rng(spec.seed)
  const pool = rng.bytes(8 * MiB)
  const sizes = planSizes(spec, rng)
  const need = allocOf(sizes, spec)
  requireFree(path.dirname(dir), need + 256 * MiB, 'the benchmark tree')
  log(`generating tree ${dir}: ${spec.files} files, ${spec.dirs} dirs, ${fmtBytes(spec.bytes)}`)

  // Directories: a few top-level ones, then each new directory hangs under a random existing
  // one no deeper than 7, which gives a wide, shallow-ish rootfs-like shape.
  const oldUmask = process.umask(0o022)
  fs.mkdirSync(dir, {recursive: true})
  const dirPaths: string[] = ['']
  const depth: number[] = [0]
  const top = Math.min(spec.dirs, 20)
  for (let i = 0; i < spec.dirs; i++) {
    let parent = 0
    if (i >= top) {
      do parent = rng.int(1, dirPaths.length)
      while (depth[parent] >= 7)
    }
    const name = `${rng.pick(WORDS)}${i.toString(36)}`
    const rel = parent === 0 ? name : `${dirPaths[parent]}/${name}`
    dirPaths.push(rel)
    depth.push(depth[parent] + 1)
    fs.mkdirSync(path.join(dir, rel), {mode: rng.next() < 0.03 ? 0o700 : 0o755})
  }
  // Files go to directories with log-normal weights: most directories hold a handful, a few
  // hold thousands (like /usr/lib or /usr/share/man).
  const cum: number[] = []
  let acc = 0
  for (let i = 0; i < dirPaths.length; i++) { acc += rng.logNormal(1, 1.5); cum.push(acc) }
  const pickDir = (): number => {
    const x = rng.next() * acc
    let lo = 0
    let hi = cum.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cum[mid] < x) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  const filePaths: string[] = []
  const writeBuf = (fd: number, size: number): void => {
    let left = size
    while (left > 0) {
      const n = Math.min(left, 4 * MiB)
      const off = rng.int(0, pool.length - n + 1)
      let done = 0
      while (done < n) done += fs.writeSync(fd, pool, off + done, n - done)
      left -= n
    }
  }
  // One extra directory, outside the random shape, holds the cat file.
  const catFile = 'bench/cat-file.bin'
  fs.mkdirSync(path.join(dir, 'bench'), {mode: 0o755})
  let lastLog = Date.now()
  for (let i = 0; i < sizes.length; i++) {
    const rel = i === 0 ? catFile : (() => {
      const d = dirPaths[pickDir()]
      return d ? `${d}/${fileName(rng, i)}` : fileName(rng, i)
    })()
    const r = rng.next()
    const mode = r < 0.1 ? 0o755 : r < 0.12 ? 0o600 : 0o644
    const fd = fs.openSync(path.join(dir, rel), 'wx', mode)
    try {
      writeBuf(fd, sizes[i])
    } finally {
      fs.closeSync(fd)
    }
    filePaths.push(rel)
    if (Date.now() - lastLog > 10_000) {
      lastLog = Date.now()
      log(`  ... ${i + 1}/${sizes.length} files`)
    }
  }
  let symlinks = 0
  for (let i = 0; i < spec.symlinks; i++) {
    const d = dirPaths[pickDir()]
    const linkRel = d ? `${d}/link_${i.toString(36)}` : `link_${i.toString(36)}`
    let target: string
    const r = rng.next()
    if (r < 0.1) target = `/usr/lib/${rng.pick(WORDS)}/${rng.pick(WORDS)}.so.${rng.int(1, 9)}` // absolute, dangling here
    else if (r < 0.2) target = path.relative(path.dirname(path.join(dir, linkRel)), path.join(dir, dirPaths[rng.int(1, dirPaths.length)] ?? ''))
    else target = path.relative(path.dirname(path.join(dir, linkRel)), path.join(dir, rng.pick(filePaths)))
    fs.symlinkSync(target || '.', path.join(dir, linkRel))
    symlinks++
  }
  let hardlinks = 0
  for (let i = 0; i < spec.hardlinks && filePaths.length > 1; i++) {
    const d = dirPaths[pickDir()]
    const rel = d ? `${d}/hl_${i.toString(36)}` : `hl_${i.toString(36)}`
    fs.linkSync(path.join(dir, filePaths[rng.int(1, filePaths.length)]), path.join(dir, rel))
    hardlinks++
  }
  process.umask(oldUmask)

  const sorted = [...sizes].sort((a, b) => a - b)
  const q = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
  const stats: TreeStats = {
    dir, spec, files: sizes.length, dirs: spec.dirs + 1, symlinks, hardlinks,
    bytes: sizes.reduce((a, b) => a + b, 0), allocBytes: need, catFile,
    largest: sorted.slice(-5).reverse(),
    sizeQuantiles: {p10: q(0.1), p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999)},
    emptyFiles: sizes.filter((s) => s === 0).length,
    maxDepth: Math.max(...depth),
    genSeconds: Number(process.hrtime.bigint() - t0) / 1e9,
  }
  fs.writeFileSync(stamp, JSON.stringify({version: GENERATOR_VERSION, ...stats}, null, 2))
  log(`tree ready in ${stats.genSeconds.toFixed(1)} s (median file ${fmtBytes(stats.sizeQuantiles.p50)}, max depth ${stats.maxDepth})`)
  return stats
}

// ---------------------------------------------------------------- disk space, caches

export function freeBytes(dir: string): number {
  let d = path.resolve(dir)
  while (!fs.existsSync(d)) d = path.dirname(d)
  const s = fs.statfsSync(d)
  return s.bavail * s.bsize
}

export function requireFree(dir: string, need: number, what: string): void {
  const free = freeBytes(dir)
  if (free < need) {
    throw new Error(`not enough free disk space under ${dir} for ${what}: need about ${fmtBytes(need)}, have ${fmtBytes(free)}. ` +
      'Free some space, choose another --base, or use --small.')
  }
}

export function syncAll(): void {
  spawnSync('sync', [], {stdio: 'ignore'})
}

let dropWarned = false
/** sync, then drop the page cache if we may; returns whether it was dropped. */
export function dropCaches(): boolean {
  syncAll()
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n')
    return true
  } catch (e) {
    if (!dropWarned) log(`cannot drop caches (${(e as Error).message}); cold runs will be partly warm`)
    dropWarned = true
    return false
  }
}

/**
 * Drops one file's pages from the page cache (dd iflag=nocache count=0: posix_fadvise
 * DONTNEED over the whole file), no root needed. For files a step does not read: an image
 * the next contender replaces anyway should not make that contender pay for reclaim.
 */
export function dropFileCache(file: string): void {
  if (!fs.existsSync(file)) return
  spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'], {stdio: 'ignore'})
}

/** Whether the page cache can be dropped here (root with a writable /proc/sys/vm). */
export function canDropCaches(): boolean {
  try {
    fs.accessSync('/proc/sys/vm/drop_caches', fs.constants.W_OK)
    return true
  } catch {
    return false
  }
}

// ---------------------------------------------------------------- running commands

export interface RunResult {
  secs: number
  /** user + system CPU seconds of the command and its children (null when /usr/bin/time is missing) */
  cpu: number | null
  status: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

const TIME_BIN = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : null
let timeSeq = 0

/**
 * Runs a command to completion, timing wall-clock with hrtime around the spawn. When GNU
 * time is installed the command runs under it, which adds the CPU time (user + system) the
 * command and its children used: on a loaded machine that separates cost from waiting.
 */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): RunResult {
  const timeFile = TIME_BIN ? path.join(os.tmpdir(), `prism-bench-time-${process.pid}-${timeSeq++}`) : null
  const [c, a] = timeFile ? [TIME_BIN!, ['-f', '%U %S', '-o', timeFile, cmd, ...args]] : [cmd, args]
  const t0 = process.hrtime.bigint()
  const r = spawnSync(c, a, {stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 * MiB, encoding: 'utf8', ...opts})
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  if (r.error) throw r.error
  let cpu: number | null = null
  if (timeFile) {
    try {
      const lines = fs.readFileSync(timeFile, 'utf8').trim().split('\n')
      const m = /^(\d+(?:\.\d+)?) (\d+(?:\.\d+)?)$/.exec(lines[lines.length - 1] ?? '')
      if (m) cpu = Number(m[1]) + Number(m[2])
    } catch {
      // no figure
    }
    fs.rmSync(timeFile, {force: true})
  }
  return {secs, cpu, status: r.status, signal: r.signal, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '')}
}

/** Runs a bash script (with pipefail), timed. */
export function sh(script: string, opts: SpawnSyncOptions = {}): RunResult {
  return run('bash', ['-o', 'pipefail', '-c', script], opts)
}

export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

/** Throws with the command's stderr when it failed. */
export function check(r: RunResult, what: string): RunResult {
  if (r.status !== 0) {
    throw new Error(`${what} failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n')}`)
  }
  return r
}

/** `node bin/run.js ARGS` — the prism CLI as users run it. */
export function prism(args: string[], opts: SpawnSyncOptions = {}): RunResult {
  return run(process.execPath, [PRISM_BIN, ...args], opts)
}

/** The shell words that run prism, for pipelines. */
export function prismCmd(): string {
  return `${q(process.execPath)} ${q(PRISM_BIN)}`
}

/** The commit the build comes from, with '-dirty' when the work tree has changes. */
export function gitVersion(): string {
  const head = run('git', ['rev-parse', '--short', 'HEAD'], {cwd: ROOT}).stdout.trim() || 'unknown'
  const dirty = run('git', ['status', '--porcelain', '--untracked-files=no'], {cwd: ROOT}).stdout.trim()
  return dirty ? `${head}-dirty` : head
}

/** Builds once when dist/ or the oclif manifest is missing. */
export function ensureBuilt(): void {
  if (fs.existsSync(path.join(ROOT, 'dist', 'commands')) && fs.existsSync(path.join(ROOT, 'oclif.manifest.json'))) return
  log('dist/ missing: running npm run build')
  check(run('npm', ['run', 'build'], {cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit']}), 'npm run build')
}

/**
 * Copies the built CLI (bin/, dist/, package.json, oclif.manifest.json; node_modules and native/ linked) to
 * `dir` and makes prism()/prismCmd()/loadDist() use that copy, so that a rebuild of dist/ while a
 * long benchmark runs (rm -rf dist && tsc) neither breaks it nor mixes two builds in one run.
 * Every module of the copy is imported once in a child process first: a copy taken in the
 * middle of someone's build fails here, not an hour later.
 */
export function snapshotBuild(dir: string): string {
  fs.rmSync(dir, {recursive: true, force: true})
  fs.mkdirSync(dir, {recursive: true})
  // native/: the addons the build loads by relative path (dist/sys.js: ../native/build/Release/prism_sys.node,
  // the FUSE binding), built by npm ci; copied (not linked: both were done after a merge, which failed with EEXIST)
  for (const f of ['bin', 'dist', 'native', 'package.json', 'oclif.manifest.json']) fs.cpSync(path.join(ROOT, f), path.join(dir, f), {recursive: true})
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir')
  const files = (fs.readdirSync(path.join(dir, 'dist'), {recursive: true}) as string[])
    .filter((f) => f.endsWith('.js')).map((f) => pathToFileURL(path.join(dir, 'dist', f)).href)
  const probe = `for (const f of ${JSON.stringify(files)}) await import(f)`
  check(run(process.execPath, ['--input-type=module', '-e', probe], {cwd: dir}), `loading the build copied to ${dir} (is dist/ being rebuilt? try again)`)
  buildRoot = dir
  PRISM_BIN = path.join(dir, 'bin', 'run.js')
  return dir
}

/** Absolute path of a host tool, or null when it is not installed. */
export function which(tool: string): string | null {
  for (const d of ['/usr/sbin', '/sbin', '/usr/bin', '/bin', ...(process.env.PATH ?? '').split(':')]) {
    const p = path.join(d, tool)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return p
    } catch {
      // keep looking
    }
  }
  return null
}

// ---------------------------------------------------------------- host baselines

/** cp -a SRC DST, optionally followed by sync (a copy is durable only after sync). */
export function hostCpA(src: string, dst: string, opts: {sync?: boolean} = {}): RunResult {
  return check(sh(`cp -a ${q(src)} ${q(dst)}${opts.sync ? ' && sync' : ''}`), 'cp -a')
}

/** mke2fs -t ext4 -d TREE -F IMG SIZE: an ext4 image populated from a tree, in one go. */
export function hostMke2fsD(mke2fs: string, tree: string, img: string, sizeBytes: number, inodes?: number): RunResult {
  const args = ['-q', '-t', 'ext4', '-d', tree, '-F']
  if (inodes) args.push('-N', String(inodes))
  args.push(img, `${Math.ceil(sizeBytes / KiB)}k`)
  return check(run(mke2fs, args), 'mke2fs -d')
}

/** e2fsck -fn IMG: a full read-only check. Exit 0 means clean. */
export function hostE2fsckFn(e2fsck: string, img: string): RunResult {
  return check(run(e2fsck, ['-fn', img]), 'e2fsck -fn')
}

/** Image size for a tree: its allocated size plus a quarter, plus 1 GiB, rounded up to 1 GiB. */
export function imageSizeFor(t: TreeStats): number {
  return Math.ceil((t.allocBytes * 1.25 + GiB) / GiB) * GiB
}

/** Inode count to ask for when the default (one per 16 KiB) would not be roomy. */
export function inodesFor(t: TreeStats, imageBytes: number): number | undefined {
  const want = 2 * (t.files + t.dirs + t.symlinks) + 1024
  return imageBytes / (16 * KiB) >= want ? undefined : want
}

// ---------------------------------------------------------------- measuring

export interface MeasureOptions {
  runs: number
  cold?: boolean
  /** untimed work before each timed run (removing outputs, mkfs...) */
  before?: (i: number) => void
  /** untimed work after each timed run */
  after?: (i: number) => void
}

/**
 * Measures several contenders in the same loop so that noise falls on all of them alike:
 * run i executes every contender once, in an order rotated by i. Before each timed command
 * dirty data is synced (and the page cache dropped in cold mode) so that no contender pays
 * for another's writeback.
 */
export interface Contender {
  before?: (i: number) => void
  /** runs the timed command: returns its RunResult (wall and CPU time) or wall seconds */
  run: (i: number) => RunResult | number
  after?: (i: number) => void
  /** creates many host inodes: wait out the host's inode-reuse window first (see settle()) */
  createsInodes?: boolean
}

// ---------------------------------------------------------------- host inode reuse window

/**
 * ext4 without a journal (as the root file system of these VMs is) will not reuse an inode
 * freed less than 60 s ago, or 360 s while its inode-table block is dirty, which it is as soon
 * as a new file lands in it; and each allocation checks every such inode it passes over
 * (ialloc.c find_inode_bit() -> recently_deleted(), a buffer-cache lookup each). After
 * deleting a 100,000-file copy, the next copy of the tree took 60-80 s instead of ~20 s, almost
 * all system time (perf: 55 % of cp -a in find_get_block_common under recently_deleted), and
 * whichever contender came right after a deletion paid for it. So bulk deletions go through
 * bulkRemove() (rm, then sync), benchmarks keep their copies until a step ends when there is
 * room, and a contender marked createsInodes waits until the window after the last bulk
 * deletion has passed.
 */
let lastBulkDelete = 0
let settleWindow: number | null = null

/** Seconds to wait after a bulk deletion on `dir`'s file system: 361 for journal-less ext4, else 0. */
export function inodeReuseWindow(dir: string): number {
  if (settleWindow !== null) return settleWindow
  settleWindow = 0
  try {
    const src = run('df', ['--output=source', dir]).stdout.trim().split('\n').pop() ?? ''
    const dev = path.basename(fs.realpathSync(src))
    const task = fs.readFileSync(`/sys/fs/ext4/${dev}/journal_task`, 'utf8').trim()
    if (task === '<none>') settleWindow = 361
  } catch {
    // not ext4, or unknown: no wait
  }
  return settleWindow
}

/** Overrides the detected window (e.g. --settle 0). */
export function setInodeReuseWindow(secs: number): void {
  settleWindow = secs
}

/** Removes a tree and syncs, remembering when, so that settle() can wait out the reuse window. */
export function bulkRemove(p: string): void {
  if (!fs.existsSync(p)) return
  fs.rmSync(p, {recursive: true, force: true})
  syncAll()
  lastBulkDelete = Date.now()
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4))

/** Waits until the inode-reuse window after the last bulkRemove() has passed. */
export function settle(dir: string): void {
  const w = inodeReuseWindow(dir)
  if (!w || !lastBulkDelete) return
  const left = lastBulkDelete + w * 1000 - Date.now()
  if (left <= 0) return
  log(`  waiting ${(left / 1000).toFixed(0)} s for the host's inode-reuse window (journal-less ext4) after a deletion`)
  Atomics.wait(sleepCell, 0, 0, left)
}

export function measureEach(contenders: Record<string, Contender>, opts: {runs: number, cold?: boolean, warmup?: boolean, settleDir?: string}): Record<string, Summary> {
  const names = Object.keys(contenders)
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]))
  const cpus: Record<string, (number | null)[]> = Object.fromEntries(names.map((n) => [n, []]))
  // warmup: one untimed run of each contender first (warm mode), so that every contender
  // finds its inputs in the page cache, not only the ones that happen to run second.
  if (opts.warmup && !opts.cold) {
    for (const n of names) {
      const c = contenders[n]
      c.before?.(-1)
      c.run(-1)
      c.after?.(-1)
    }
  }
  for (let i = 0; i < opts.runs; i++) {
    const order = names.map((_, k) => names[(k + i) % names.length])
    for (const n of order) {
      const c = contenders[n]
      c.before?.(i)
      if (c.createsInodes && opts.settleDir) settle(opts.settleDir)
      if (opts.cold) dropCaches()
      else syncAll()
      const r = c.run(i)
      const secs = typeof r === 'number' ? r : r.secs
      const cpu = typeof r === 'number' ? null : r.cpu
      samples[n].push(secs)
      cpus[n].push(cpu)
      log(`  ${n} run ${i + 1}/${opts.runs}: ${secs.toFixed(3)} s${cpu === null ? '' : ` (cpu ${cpu.toFixed(2)} s)`}`)
      c.after?.(i)
    }
  }
  return Object.fromEntries(names.map((n) => [n, summarize(samples[n], cpus[n])]))
}

// ---------------------------------------------------------------- reporting

/** What a row's prism and baseline figures are in; seconds when absent. */
export type Unit = 's' | 'ms' | '%' | 'bytes'

export interface Row {
  step: string
  prism: number | null
  baseline: string
  base: number | null
  /** prism/baseline for times; for throughputs the caller passes its own ratio */
  ratio: number | null
  /** the goal as text, e.g. '<= 1.00' */
  goal: string
  pass: boolean | null
  note?: string
  /** unit of `prism` and `base` (default seconds) */
  unit?: Unit
}

/** Formats a figure in its unit: '1.234 s', '12.3 ms', '0.21 %', '8.0 KiB'. */
export function fmtValue(v: number | null | undefined, unit: Unit = 's'): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '-'
  switch (unit) {
    case 's': return `${fmtSecs(v)} s`
    case 'ms': return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ms`
    case '%': return `${v >= 10 ? v.toFixed(1) : v.toFixed(2)} %`
    case 'bytes': return fmtBytes(v)
  }
}

/**
 * A row whose goal is on prism's own figure (not on the ratio), e.g. space <= 1 % or
 * time <= 50 ms; the ratio against the baseline, when there is one, is for information.
 */
export function valueRow(step: string, value: number | null, unit: Unit, baseline: string, base: number | null,
  goal: {max: number, text: string} | null, note?: string): Row {
  const ratio = value !== null && base !== null && base > 0 ? value / base : null
  return {step, prism: value, baseline, base, ratio, unit, goal: goal ? goal.text : '(info)',
    pass: goal === null || value === null ? null : value <= goal.max, note}
}

/** A ratio row for times: ratio = prism / baseline, pass when ratio <= max. */
export function timeRow(step: string, prismS: Summary | null, baseline: string, baseS: Summary | null, max: number | null, note?: string): Row {
  const p = prismS?.median ?? null
  const b = baseS?.median ?? null
  const ratio = p !== null && b !== null && b > 0 ? p / b : null
  return {step, prism: p, baseline, base: b, ratio, goal: max === null ? '(info)' : `<= ${max.toFixed(2)}`,
    pass: max === null || ratio === null ? null : ratio <= max, note}
}

export function printTable(rows: Row[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): void {
  // Rows all in seconds keep the plain layout; mixed units are written out in each cell.
  const units = rows.some((r) => r.unit && r.unit !== 's')
  const head = ['step', units ? 'prism' : 'prism (s)', 'baseline', units ? 'baseline' : 'baseline (s)', 'ratio', 'goal', 'result']
  const fig = (v: number | null, u?: Unit): string => (units ? fmtValue(v, u) : fmtSecs(v))
  const cells = rows.map((r) => [
    r.step, fig(r.prism, r.unit), r.baseline, fig(r.base, r.unit), r.ratio === null ? '-' : r.ratio.toFixed(2), r.goal,
    r.pass === null ? (r.note && r.prism === null ? 'SKIP' : '-') : r.pass ? 'PASS' : 'FAIL',
  ])
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)))
  const line = (c: string[]): string => c.map((x, i) => (i === 0 || i === 2 ? x.padEnd(w[i]) : x.padStart(w[i]))).join('  ')
  out(line(head))
  out(w.map((n) => '-'.repeat(n)).join('  '))
  for (const c of cells) out(line(c))
  const notes = rows.filter((r) => r.note)
  if (notes.length) {
    out('')
    for (const r of notes) out(`  ${r.step}: ${r.note}`)
  }
}

export function machineInfo(base: string): Record<string, unknown> {
  const fsType = run('stat', ['-f', '-c', '%T', base]).stdout.trim()
  return {
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memory: fmtBytes(os.totalmem()),
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    hostFs: fsType,
    base,
  }
}

/** Writes results to bench/out/NAME-<timestamp>.json and returns the path. */
export function writeResults(name: string, data: unknown): string {
  fs.mkdirSync(OUT_DIR, {recursive: true})
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')
  const file = path.join(OUT_DIR, `${name}-${stamp}.json`)
  fs.writeFileSync(file, JSON.stringify(data, null, 2) + '\n')
  return file
}

/** Prints every sample: median, min, max and all runs, each in its unit (default seconds). */
export function printSamples(results: Record<string, Summary>, units: Record<string, Unit> = {},
  out: (s: string) => void = (s) => process.stdout.write(s + '\n')): void {
  const w = Math.max(22, ...Object.keys(results).map((k) => k.length))
  for (const [k, v] of Object.entries(results)) {
    const u = units[k] ?? 's'
    const f = (x: number): string => fmtValue(x, u).padStart(10)
    const cpu = v.cpu ? `  cpu ${fmtSecs(v.cpu.median)} s` : ''
    out(`  ${k.padEnd(w)} median ${f(v.median)}  min ${f(v.min)}  max ${f(v.max)}  [${v.runs.map((x) => fmtValue(x, u)).join(', ')}]${cpu}`)
  }
}

// ---------------------------------------------------------------- prism helpers

/** Runs a prism command with --json and returns its parsed output. */
export function prismJson<T>(args: string[], what = `prism ${args[0]}`): T {
  const r = check(prism([...args, '--json']), what)
  return JSON.parse(r.stdout) as T
}

export interface DfInfo {
  blockSize: number
  blocks: number
  blocksUsed: number
  blocksFree: number
  inodes: number
  inodesUsed: number
  inodesFree: number
  filesets: number
}

/** `prism df --json -i IMG`. */
export function prismDf(img: string): DfInfo {
  return prismJson<DfInfo>(['df', '-i', img], 'prism df')
}

/**
 * Imports a module of the built library (dist/, or the snapshotBuild() copy), for in-process
 * timing of the same code the CLI runs: `await loadDist<typeof import('../src/fs/image.js')>('fs/image.js')`.
 */
export async function loadDist<T>(rel: string): Promise<T> {
  return (await import(pathToFileURL(path.join(buildRoot, 'dist', rel)).href)) as T
}

/** Times a synchronous function with hrtime; returns seconds and its result. */
export function timed<T>(fn: () => T): {secs: number, value: T} {
  const t0 = process.hrtime.bigint()
  const value = fn()
  return {secs: Number(process.hrtime.bigint() - t0) / 1e9, value}
}

/** cp -al SRC DST: a copy of the tree made of hard links (directories new, files shared). */
export function hostCpAl(src: string, dst: string, opts: {sync?: boolean} = {}): RunResult {
  return check(sh(`cp -al ${q(src)} ${q(dst)}${opts.sync ? ' && sync' : ''}`), 'cp -al')
}

/** Host space (KiB blocks, `du -sk`) a copy takes beyond the tree: `du -sk TREE COPY` counts shared inodes once. */
export function duExtraKiB(tree: string, copy: string): number {
  const r = check(run('du', ['-sk', tree, copy]), 'du -sk')
  const lines = r.stdout.trim().split('\n')
  return Number(lines[lines.length - 1].split('\t')[0])
}

// ---------------------------------------------------------------- common options

export interface CommonOptions {
  small: boolean
  runs: number
  cold: boolean
  base: string
  spec: TreeSpec
  regen: boolean
  keep: boolean
  values: Record<string, string | boolean | undefined>
}

const env = (k: string): string | undefined => process.env[`PRISM_BENCH_${k}`]

/**
 * Flags shared by all benchmarks (each also readable from PRISM_BENCH_<NAME>):
 * --small, --runs N, --cold, --base DIR, --files N, --dirs N, --bytes SIZE, --cat-size SIZE,
 * --seed N, --regen, --keep. `extra` adds a benchmark's own options.
 */
export function parseCommon(usage: string, extra: NonNullable<ParseArgsConfig['options']> = {}): CommonOptions {
  const {values} = parseArgs({
    options: {
      small: {type: 'boolean'}, runs: {type: 'string'}, cold: {type: 'boolean'}, base: {type: 'string'},
      files: {type: 'string'}, dirs: {type: 'string'}, bytes: {type: 'string'}, 'cat-size': {type: 'string'},
      seed: {type: 'string'}, regen: {type: 'boolean'}, keep: {type: 'boolean'}, help: {type: 'boolean', short: 'h'},
      ...extra,
    },
    allowPositionals: false,
  }) as {values: Record<string, string | boolean | undefined>}
  if (values.help) {
    process.stdout.write(usage)
    process.exit(0)
  }
  const str = (k: string, e: string): string | undefined => (values[k] as string | undefined) ?? env(e)
  const small = Boolean(values.small) || env('SMALL') === '1'
  const spec = defaultSpec(small)
  const files = str('files', 'FILES')
  const dirs = str('dirs', 'DIRS')
  const bytes = str('bytes', 'BYTES')
  const catSize = str('cat-size', 'CAT_SIZE')
  const seed = str('seed', 'SEED')
  if (files) {
    spec.files = Number(files)
    spec.symlinks = Math.round(spec.files * 0.02)
    spec.hardlinks = Math.round(spec.files * 0.01)
  }
  if (dirs) spec.dirs = Number(dirs)
  if (bytes) spec.bytes = parseSize(bytes)
  if (catSize) spec.catSize = parseSize(catSize)
  if (seed) spec.seed = Number(seed)
  if (!(spec.files >= 1 && spec.dirs >= 0 && spec.bytes >= spec.catSize)) throw new Error('bad tree spec: need files >= 1 and bytes >= cat-size')
  const runs = Number(str('runs', 'RUNS') ?? 3)
  if (!(runs >= 1)) throw new Error('--runs must be at least 1')
  return {
    small, runs, spec, values,
    cold: Boolean(values.cold) || env('COLD') === '1',
    base: path.resolve(str('base', 'BASE') ?? '/tmp/prism-bench'),
    regen: Boolean(values.regen),
    keep: Boolean(values.keep),
  }
}

/** Directory name for a tree spec, so small and full trees can live side by side. */
export function treeDirFor(base: string, spec: TreeSpec): string {
  return path.join(base, `tree-${spec.files}f-${spec.dirs}d-${Math.round(spec.bytes / MiB)}m-s${spec.seed}`)
}
