// The locality benchmark: the BetrFS seed's experiment on clones that stay fast to read
// (docs/FORMAT.md §6.6, README "Locality"). A fileset holds a big file (a VM disk, a
// database) and a tree of small source-like files; ten rounds each clone the latest fileset,
// overwrite 1 % of the big file's 4 KiB blocks at random and append to or rewrite 10 % of the
// small files in the new clone, then read the whole clone sequentially with the page cache
// dropped. The same ten rounds then run on an unshared big file overwritten at random,
// without clones. Each round runs three ways on the same data in the same run, in an order
// that rotates every round: prism with the locality policy off (pure block copy-on-write),
// prism with it on, and plain files on the host, copied with cp each round (the locality
// baseline: a fresh copy, overwritten in place). At the end, round 0 and the last round are
// read cold in turn, every way, and the read goal is judged on those reads (the rounds'
// figures are minutes apart, and the disk's cold reads drift over that time).
//
//   node --import tsx bench/locality.ts            # 2 GiB file + 5,000 files, 10 rounds, 3 reads per figure
//   node --import tsx bench/locality.ts --small    # 256 MiB + 500 files: a smoke test
//   node --import tsx bench/locality.ts --sweep    # the small experiment for several region sizes and thresholds
//
// See bench/README.md ("Locality benchmark") for what each number means and the goals.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {parseArgs} from 'node:util'
import {
  GiB, KiB, MiB, Rng, canDropCaches, check, dropCaches, dropFileCache, ensureBuilt, fmtBytes, gitVersion, loadDist, log,
  machineInfo, median, parseSize, prism, requireFree, run, snapshotBuild, writeResults,
} from './lib.js'

type ImageMod = typeof import('../src/fs/image.js')
type CloneMod = typeof import('../src/clone/clone.js')
type ExtentsMod = typeof import('../src/fs/extents.js')
type LocalityMod = typeof import('../src/fs/locality.js')
type Namespace = import('../src/fs/namespace.js').Namespace

const USAGE = `Usage: node --import tsx bench/locality.ts [options]

  --small            256 MiB big file, 500 small files (a smoke test)
  --big SIZE         size of the big file (default 2G)
  --files N          small files (default 5000), 4-64 KiB each
  --rounds N         rounds (default 10)
  --write-pct P      percent of the big file's blocks overwritten per round (default 1; 3 with --sweep,
                     so that overflow runs fill and regions get rewritten)
  --reads N          cold reads per figure; the median is reported (default 3)
  --pair-reads N     at the end, cold reads of round 0 and of the last round, alternating (default 7):
                     the verdict's figure (both read in the same minutes, so the disk's drift
                     over the run does not decide it)
  --region SIZE      region size of the policy-on image (mkfs --coaw-region; default: the built-in one)
  --scenarios LIST   clones,unshared (default both)
  --order ORDER      how prism reads a tree: block (its files in the order of their data, as
                     prism cp -r out does; default) or name (readdir order, file by file)
  --sweep            run the small experiment for regions 64K, 256K, 1M and thresholds 1, 2, 4
  --base DIR         work directory (default /tmp/prism-bench)
  --keep             keep images and host copies
  --no-snapshot      run dist/ in place (default: a private copy taken at the start)
  --seed N           data and write pattern seed (default 1)

Every option can also be given as PRISM_BENCH_<NAME> (PRISM_BENCH_SMALL=1, PRISM_BENCH_READS=5...).
`

interface Options {
  big: number
  files: number
  rounds: number
  writePct: number
  reads: number
  pairReads: number
  region?: string
  scenarios: Set<'clones' | 'unshared'>
  order: 'block' | 'name'
  sweep: boolean
  base: string
  keep: boolean
  snapshot: boolean
  seed: number
}

function options(): Options {
  const {values} = parseArgs({options: {
    small: {type: 'boolean'}, big: {type: 'string'}, files: {type: 'string'}, rounds: {type: 'string'}, reads: {type: 'string'}, 'pair-reads': {type: 'string'},
    'write-pct': {type: 'string'}, region: {type: 'string'}, scenarios: {type: 'string'}, order: {type: 'string'}, sweep: {type: 'boolean'}, base: {type: 'string'}, keep: {type: 'boolean'},
    'no-snapshot': {type: 'boolean'}, seed: {type: 'string'}, help: {type: 'boolean', short: 'h'},
  }}) as {values: Record<string, string | boolean | undefined>}
  if (values.help) { process.stdout.write(USAGE); process.exit(0) }
  const env = (k: string) => process.env[`PRISM_BENCH_${k}`]
  const str = (k: string) => (values[k] as string | undefined) ?? env(k.toUpperCase().replace(/-/g, '_'))
  const small = Boolean(values.small) || env('SMALL') === '1'
  const sweep = Boolean(values.sweep) || env('SWEEP') === '1'
  const scen = (str('scenarios') ?? 'clones,unshared').split(',').map((s) => s.trim())
  for (const s of scen) if (s !== 'clones' && s !== 'unshared') throw new Error(`unknown scenario '${s}' (clones, unshared)`)
  const order = str('order') ?? 'block'
  if (order !== 'block' && order !== 'name') throw new Error(`unknown order '${order}' (block, name)`)
  return {
    big: parseSize(str('big') ?? (small || sweep ? '256M' : '2G')),
    files: Number(str('files') ?? (small || sweep ? 500 : 5000)),
    rounds: Number(str('rounds') ?? 10),
    writePct: Number(str('write-pct') ?? (sweep ? 3 : 1)),
    reads: Number(str('reads') ?? (sweep ? 1 : 3)),
    pairReads: Number(str('pair-reads') ?? (sweep ? 0 : 7)),
    region: str('region'),
    scenarios: new Set(scen as Array<'clones' | 'unshared'>),
    order,
    sweep,
    base: path.resolve(str('base') ?? '/tmp/prism-bench'),
    keep: Boolean(values.keep),
    snapshot: !values['no-snapshot'],
    seed: Number(str('seed') ?? 1),
  }
}

// ---------------------------------------------------------------- the data

const WORDS = ['return', 'const', 'function', 'if', 'else', 'for', 'while', 'import', 'export', 'class', 'struct', 'int',
  'static', 'void', 'buffer', 'length', 'index', 'value', 'error', 'result', 'self', 'this', 'null', 'true', 'false']

/** Source-like text of exactly n bytes. */
function sourceText(rng: Rng, n: number): Buffer {
  const parts: string[] = []
  let len = 0
  while (len < n) {
    const indent = ' '.repeat(2 * rng.int(0, 4))
    const line = indent + Array.from({length: rng.int(2, 10)}, () => rng.pick(WORDS)).join(' ') + (rng.next() < 0.3 ? ' {' : ';') + '\n'
    parts.push(line)
    len += line.length
  }
  return Buffer.from(parts.join('')).subarray(0, n)
}

interface Tree {
  dir: string
  big: string
  smallFiles: string[]
  bytes: number
}

/** The host tree every way starts from: big.img and src/dNN/fNNNN.c files (cached by spec). */
function ensureData(base: string, bigBytes: number, files: number, seed: number): Tree {
  const dir = path.join(base, `locality-${Math.round(bigBytes / MiB)}m-${files}f-s${seed}`)
  const spec = JSON.stringify({bigBytes, files, seed, v: 1})
  const stamp = `${dir}.json`
  const smallFiles = Array.from({length: files}, (_, i) => `src/d${String(i % 100).padStart(2, '0')}/f${String(i).padStart(5, '0')}.c`)
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === spec) {
    return {dir, big: 'big.img', smallFiles, bytes: bigBytes + smallFiles.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0)}
  }
  log(`generating ${fmtBytes(bigBytes)} big file and ${files} small files in ${dir}`)
  fs.rmSync(dir, {recursive: true, force: true})
  fs.mkdirSync(dir, {recursive: true})
  const rng = new Rng(seed)
  const fd = fs.openSync(path.join(dir, 'big.img'), 'w')
  for (let off = 0; off < bigBytes; off += 8 * MiB) fs.writeSync(fd, rng.bytes(Math.min(8 * MiB, bigBytes - off)))
  fs.closeSync(fd)
  let bytes = bigBytes
  for (const f of smallFiles) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), {recursive: true})
    const data = sourceText(rng, Math.round(rng.logUniform(4 * KiB, 64 * KiB)))
    fs.writeFileSync(path.join(dir, f), data)
    bytes += data.length
  }
  run('sync', [])
  fs.writeFileSync(stamp, spec)
  return {dir, big: 'big.img', smallFiles, bytes}
}

/** One round's writes, the same for every way: big-file blocks and small-file edits. */
interface RoundWrites {
  big: Array<{block: number, data: Buffer}>
  small: Array<{file: string, append: boolean, data: Buffer}>
}

function roundWrites(seed: number, round: number, bigBytes: number, smallFiles: string[], withSmall: boolean, pct: number): RoundWrites {
  const rng = new Rng(seed * 1000 + round)
  const blocks = Math.floor(bigBytes / 4096)
  const big = Array.from({length: Math.max(1, Math.round(blocks * pct / 100))}, () => ({block: rng.int(0, blocks), data: rng.bytes(4096)}))
  const small: RoundWrites['small'] = []
  if (withSmall) {
    const picked = new Set<number>()
    const want = Math.round(smallFiles.length / 10)
    while (picked.size < want) picked.add(rng.int(0, smallFiles.length))
    for (const i of [...picked].sort((a, b) => a - b)) {
      const append = rng.next() < 0.5
      small.push({file: smallFiles[i], append, data: sourceText(rng, append ? rng.int(200, 8 * KiB) : Math.round(rng.logUniform(4 * KiB, 64 * KiB)))})
    }
  }
  return {big, small}
}

// ---------------------------------------------------------------- the ways

type WayName = 'off' | 'on' | 'cp'

interface Figures {
  /** cold sequential read: bytes/s (median of the reads) and every read's seconds */
  readMBs: number
  readSecs: number[]
  /** extents per MiB of data read, and runs outside their group's windows per MiB (prism) */
  extentsPerMiB: number
  farPerMiB: number | null
  /** space: prism, data blocks in use; host, what the copies kept would take */
  space: number
  /** the round's writes (and, for the host, its cp), seconds */
  writeSecs: number
  /** blocks the policy copied that stayed shared (prism on) */
  coawCopied: number | null
  load: string
}

interface Way {
  name: WayName
  /** round 0: import the tree */
  setup(): void
  /** make round r's fileset (a clone, or the same fileset) and apply the writes; seconds */
  write(r: number, w: RoundWrites): number
  /** read everything of round r cold; bytes */
  read(r: number): number
  /**
   * After the rounds: make round 0 readable again where the rounds wrote over it (the unshared
   * file: made afresh as round 0 made it), so that read(0) reads what round 0 read.
   */
  restoreRound0(): void
  /** the files read in round r, for cache dropping */
  files(r: number): string[]
  layout(r: number): {extents: number, far: number | null, bytes: number}
  space(r: number): number
  coaw(r: number): number | null
  cleanup(): void
}

let dropMode = ''
/** Drops the page cache before a cold read: the whole cache as root, else each file's pages. */
function dropFor(files: string[]): void {
  if (dropMode === '') dropMode = canDropCaches() ? 'page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches)' : 'page cache dropped per file (posix_fadvise DONTNEED through dd iflag=nocache): not root'
  if (canDropCaches()) dropCaches()
  else {
    run('sync', [])
    for (const f of files) dropFileCache(f)
  }
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ')

function prismWay(name: 'off' | 'on', work: string, tree: Tree, o: Options, lib: {image: ImageMod, clone: CloneMod, extents: ExtentsMod}, scenario: 'clones' | 'unshared'): Way {
  const img = path.join(work, `${scenario}-${name}.img`)
  const fsName = (r: number) => (scenario === 'clones' && r > 0 ? `r${r}` : 'root')
  const size = Math.max(4 * GiB, Math.ceil((tree.bytes * (scenario === 'clones' ? 2.5 : 1.5) + GiB) / GiB) * GiB)
  // (the unshared scenario's round 0, made again after the rounds: restoreRound0)
  const round0Img = path.join(work, `${scenario}-${name}-round0.img`)
  let restored = false
  const imageOf = (r: number) => (restored && r === 0 ? round0Img : img)
  const make = (file: string) => {
    fs.rmSync(file, {force: true})
    const coaw = name === 'off' ? ['--coaw-region', 'off'] : o.region ? ['--coaw-region', o.region] : []
    check(prism(['mkfs', file, '--size', String(size), ...coaw]), 'prism mkfs')
    if (scenario === 'clones') check(prism(['cp', '-r', tree.dir, 'root:/', '-i', file]), 'prism cp -r')
    else check(prism(['cp', path.join(tree.dir, tree.big), `root:/${tree.big}`, '-i', file]), 'prism cp')
  }
  const walk = (ns: Namespace, fn: (p: string, ino: import('../src/fs/inode.js').Inode) => void) => {
    const rec = (dir: string) => {
      for (const e of ns.readdir(dir)) {
        const p = (dir === '/' ? '' : dir) + '/' + e.name
        if (e.type === 'dir') rec(p)
        else fn(p, ns.resolve(p))
      }
    }
    rec('/')
  }
  return {
    name,
    setup() {
      make(img)
    },
    write(r, w) {
      const t0 = process.hrtime.bigint()
      lib.image.withImage(img, {write: true}, (vol) => {
        if (scenario === 'clones') {
          lib.clone.clone(vol, {fileset: fsName(r - 1), path: '/'}, {fileset: fsName(r)})
          vol.commit()
        }
        const ns = lib.image.namespace(vol, fsName(r))
        const big = ns.resolveOwned(`/${tree.big}`)
        for (const x of w.big) {
          ns.writeInode(big, x.block * 4096, x.data)
          vol.maybeCommit()
        }
        for (const x of w.small) {
          ns.writeFile(`/${x.file}`, x.data, {append: x.append})
          vol.maybeCommit()
        }
      })
      return Number(process.hrtime.bigint() - t0) / 1e9
    },
    restoreRound0() {
      // Clones: round 0's fileset is still there, unchanged. Unshared: round 0 was a fresh
      // image with the file copied in, made again as it was then.
      if (scenario !== 'unshared') return
      make(round0Img)
      restored = true
    },
    read(r) {
      // As `prism cp -r` out reads a tree: its files in the order their data sits in the
      // image (firstBlock, ops/copy.ts flushExport), each streamed whole; or in name order.
      let bytes = 0
      lib.image.withImage(imageOf(r), {write: false}, (vol) => {
        const ns = lib.image.namespace(vol, fsName(r))
        const files: Array<{p: string, at: number}> = []
        walk(ns, (p, ino) => { files.push({p, at: o.order === 'block' ? lib.extents.firstBlock(vol, ino) : 0}) })
        files.sort((a, b) => a.at - b.at)
        for (const f of files) ns.stream(f.p, (b) => { bytes += b.length })
      })
      return bytes
    },
    files: (r) => [imageOf(r)],
    layout(r) {
      let extents = 0
      let far = 0
      let bytes = 0
      lib.image.withImage(img, {write: false}, (vol) => {
        const ns = lib.image.namespace(vol, fsName(r))
        walk(ns, (_p, ino) => {
          const l = ns.layout(ino)
          extents += l.extents
          far += l.farRuns
          bytes += ino.r.size
        })
      })
      return {extents, far, bytes}
    },
    space() {
      return lib.image.withImage(img, {write: false}, (vol) => (vol.sb.dataBlocks - vol.sb.freeBlocks) * 4096)
    },
    coaw(r) {
      return lib.image.withImage(img, {write: false}, (vol) => lib.image.namespace(vol, fsName(r)).record().coawCopied * 4096)
    },
    cleanup() {
      if (o.keep) return
      fs.rmSync(img, {force: true})
      fs.rmSync(round0Img, {force: true})
    },
  }
}

/** Plain files: each round a cp -a of the last copy (clones) or the same file (unshared), written in place. */
function hostWay(work: string, tree: Tree, o: Options, scenario: 'clones' | 'unshared'): Way {
  const dirOf = (r: number) => path.join(work, `${scenario}-cp-r${scenario === 'clones' ? r : 0}`)
  // the unshared file as round 0 had it, copied afresh after the rounds (restoreRound0)
  const round0Copy = path.join(work, `${scenario}-cp-round0`)
  let restored = false
  let kept = 0
  const listFiles = (r: number): string[] => (scenario === 'clones' ? [tree.big, ...tree.smallFiles].sort() : [tree.big]).map((f) => (restored && r === 0 ? path.join(round0Copy, f) : path.join(dirOf(r), f)))
  const du = (d: string) => Number(check(run('du', ['-sb', d]), 'du').stdout.split('\t')[0])
  return {
    name: 'cp',
    setup() {
      fs.rmSync(dirOf(0), {recursive: true, force: true})
      if (scenario === 'clones') check(run('cp', ['-a', tree.dir, dirOf(0)]), 'cp -a')
      else {
        fs.mkdirSync(dirOf(0), {recursive: true})
        check(run('cp', [path.join(tree.dir, tree.big), dirOf(0)]), 'cp')
      }
      run('sync', [])
      kept = du(dirOf(0))
    },
    write(r, w) {
      const t0 = process.hrtime.bigint()
      if (scenario === 'clones') check(run('cp', ['-a', dirOf(r - 1), dirOf(r)]), 'cp -a')
      const fd = fs.openSync(path.join(dirOf(r), tree.big), 'r+')
      for (const x of w.big) fs.writeSync(fd, x.data, 0, x.data.length, x.block * 4096)
      fs.fsyncSync(fd)
      fs.closeSync(fd)
      for (const x of w.small) {
        const p = path.join(dirOf(r), x.file)
        if (x.append) fs.appendFileSync(p, x.data)
        else fs.writeFileSync(p, x.data)
      }
      run('sync', [])
      const secs = Number(process.hrtime.bigint() - t0) / 1e9
      if (scenario === 'clones') {
        kept += du(dirOf(r))
        // (round 0's copy stays for the reads at the end; the space figure counts them all still)
        if (!o.keep && r > 2) fs.rmSync(dirOf(r - 2), {recursive: true, force: true})
      }
      return secs
    },
    restoreRound0() {
      if (scenario !== 'unshared') return
      fs.rmSync(round0Copy, {recursive: true, force: true})
      fs.mkdirSync(round0Copy, {recursive: true})
      check(run('cp', [path.join(tree.dir, tree.big), round0Copy]), 'cp')
      run('sync', [])
      restored = true
    },
    read(r) {
      let bytes = 0
      const buf = Buffer.allocUnsafe(4 * MiB)
      for (const f of listFiles(r)) {
        const fd = fs.openSync(f, 'r')
        for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) bytes += n
        fs.closeSync(fd)
      }
      return bytes
    },
    files: listFiles,
    layout(r) {
      let extents = 0
      let bytes = 0
      const files = listFiles(r)
      for (let i = 0; i < files.length; i += 200) {
        const out = run('filefrag', files.slice(i, i + 200)).stdout
        for (const m of out.matchAll(/: (\d+) extents? found/g)) extents += Number(m[1])
      }
      for (const f of files) bytes += fs.statSync(f).size
      return {extents, far: null, bytes}
    },
    space: () => kept,
    coaw: () => null,
    cleanup() {
      if (o.keep) return
      for (let r = 0; r <= o.rounds; r++) fs.rmSync(dirOf(r), {recursive: true, force: true})
      fs.rmSync(round0Copy, {recursive: true, force: true})
    },
  }
}

// ---------------------------------------------------------------- one experiment

interface ScenarioResult {
  scenario: 'clones' | 'unshared'
  rounds: Array<Record<WayName, Figures>>
  /** round 0 and the last round read in turn after the rounds (null with --pair-reads 0) */
  paired: Record<WayName, Paired> | null
  verdict: Array<{goal: string, value: number, max?: number, min?: number, pass: boolean}>
}

function measure(way: Way, r: number, writeSecs: number, reads: number): Figures {
  const secs: number[] = []
  let bytes = 0
  for (let i = 0; i < reads; i++) {
    dropFor(way.files(r))
    const t0 = process.hrtime.bigint()
    bytes = way.read(r)
    secs.push(Number(process.hrtime.bigint() - t0) / 1e9)
  }
  const lay = way.layout(r)
  const mib = lay.bytes / MiB
  return {
    readMBs: bytes / median(secs) / 1e6, readSecs: secs.map((s) => Number(s.toFixed(3))), extentsPerMiB: lay.extents / mib,
    farPerMiB: lay.far === null ? null : lay.far / mib, space: way.space(r), writeSecs, coawCopied: way.coaw(r), load: loadavg(),
  }
}

function experiment(scenario: 'clones' | 'unshared', tree: Tree, o: Options, work: string, lib: {image: ImageMod, clone: CloneMod, extents: ExtentsMod}, quiet = false): ScenarioResult {
  const ways: Way[] = [prismWay('off', work, tree, o, lib, scenario), prismWay('on', work, tree, o, lib, scenario), hostWay(work, tree, o, scenario)]
  const rounds: ScenarioResult['rounds'] = []
  let paired: ScenarioResult['paired'] = null
  const say = (s: string) => { if (!quiet) process.stdout.write(s + '\n') }
  try {
    for (const w of ways) { log(`${scenario}: setting up ${w.name}`); w.setup() }
    say(`\n${scenario === 'clones' ? 'Clones: each round clones the latest fileset and writes into the clone' : 'Unshared: one file overwritten at random, no clones'} (reads: median of ${o.reads}; load average 1/5/15 min beside each round)`)
    say(`round  way   read MB/s   ext/MiB  far/MiB      space   write s   policy cost   load`)
    for (let r = 0; r <= o.rounds; r++) {
      const writes = r === 0 ? null : roundWrites(o.seed, r, o.big, tree.smallFiles, scenario === 'clones', o.writePct)
      const row = {} as Record<WayName, Figures>
      const order = ways.map((_, i) => ways[(i + r) % ways.length])
      const secs = new Map<WayName, number>()
      for (const w of order) secs.set(w.name, writes ? w.write(r, writes) : 0)
      for (const w of order) row[w.name] = measure(w, r, secs.get(w.name)!, o.reads)
      rounds.push(row)
      for (const w of ways) {
        const f = row[w.name]
        say(`${String(r).padStart(5)}  ${w.name.padEnd(4)} ${f.readMBs.toFixed(0).padStart(10)} ${f.extentsPerMiB.toFixed(2).padStart(9)} ${f.farPerMiB === null ? '-'.padStart(8) : f.farPerMiB.toFixed(2).padStart(8)} ${fmtBytes(f.space).padStart(10)} ${f.writeSecs.toFixed(2).padStart(9)} ${f.coawCopied === null ? '-'.padStart(13) : fmtBytes(f.coawCopied).padStart(13)}   ${f.load}`)
      }
    }
    if (o.pairReads > 0 && o.rounds > 0) paired = pairedReads(ways, o, say)
  } finally {
    for (const w of ways) w.cleanup()
  }
  const first = rounds[0]
  const last = rounds[rounds.length - 1]
  const sum = (w: WayName) => rounds.slice(1).reduce((n, x) => n + x[w].writeSecs, 0)
  // The read goal is judged on the reads at the end, where round 0 and the last round are read
  // in turn (the rounds' own figures were taken up to an hour apart on a disk whose cold reads
  // drift by half over that time: bench/README.md "Locality benchmark"); without them
  // (--pair-reads 0), on the rounds' figures.
  const readGoal = (w: WayName) => (paired ? paired[w].ratio : last[w].readMBs / first[w].readMBs)
  const how = paired ? 'read in turn at the end' : 'in the rounds'
  const verdict: ScenarioResult['verdict'] = [
    {goal: `policy on: cold read, last round / round 0 (${how})`, value: readGoal('on'), min: 0.9, pass: readGoal('on') >= 0.9},
    {goal: `policy off: cold read, last round / round 0 (${how}; info)`, value: readGoal('off'), pass: true},
    {goal: `cp: cold read, last round / round 0 (${how}; info)`, value: readGoal('cp'), pass: true},
    ...(paired ? [
      {goal: 'policy on: cold read, last round / round 0 (in the rounds; info)', value: last.on.readMBs / first.on.readMBs, pass: true},
      {goal: 'policy off: the same (in the rounds; info)', value: last.off.readMBs / first.off.readMBs, pass: true},
    ] : []),
    {goal: 'policy on / off: cold read, last round (info)', value: last.on.readMBs / last.off.readMBs, pass: true},
    {goal: 'policy on / off: space, last round', value: last.on.space / last.off.space, max: 1.25, pass: last.on.space / last.off.space <= 1.25},
    {goal: 'policy on / off: write time, all rounds', value: sum('on') / sum('off'), max: 1.5, pass: sum('on') / sum('off') <= 1.5},
  ]
  say('')
  for (const v of verdict) say(`  ${v.goal.padEnd(52)} ${v.value.toFixed(2).padStart(6)}  ${v.min !== undefined ? `goal >= ${v.min}` : v.max !== undefined ? `goal <= ${v.max}` : ''}${v.min !== undefined || v.max !== undefined ? (v.pass ? '  PASS' : '  FAIL') : ''}`)
  return {scenario, rounds, paired, verdict}
}

interface Paired {
  /** seconds of each cold read of round 0 and of the last round, in the order taken */
  round0Secs: number[]
  lastSecs: number[]
  round0MBs: number
  lastMBs: number
  /** last round's throughput / round 0's, by the medians */
  ratio: number
}

/**
 * Round 0 and the last round read cold in turn, `--pair-reads` times each: 0 then last, then
 * last then 0, and so on, every way in an order that rotates each time. Both figures come from
 * the same minutes, so what the disk does over the run's hour (the host's cache of the
 * image, other tenants) weighs on both alike.
 */
function pairedReads(ways: Way[], o: Options, say: (s: string) => void): Record<WayName, Paired> {
  const last = o.rounds
  for (const w of ways) w.restoreRound0()
  const secs = new Map<WayName, {first: number[], last: number[], bytes: [number, number]}>()
  for (const w of ways) secs.set(w.name, {first: [], last: [], bytes: [0, 0]})
  for (let i = 0; i < o.pairReads; i++) {
    for (const w of ways.map((_, k) => ways[(k + i) % ways.length])) {
      for (const r of i % 2 === 0 ? [0, last] : [last, 0]) {
        dropFor(w.files(r))
        const t0 = process.hrtime.bigint()
        const bytes = w.read(r)
        const s = Number(process.hrtime.bigint() - t0) / 1e9
        const x = secs.get(w.name)!
        if (r === 0) { x.first.push(s); x.bytes[0] = bytes } else { x.last.push(s); x.bytes[1] = bytes }
      }
    }
  }
  const out = {} as Record<WayName, Paired>
  say(`\nRound 0 and round ${last} read cold in turn at the end, ${o.pairReads} times each (medians; load ${loadavg()})`)
  say(`way   round 0 MB/s   round ${last} MB/s   ratio   round 0 s (each)             round ${last} s (each)`)
  for (const w of ways) {
    const x = secs.get(w.name)!
    const round0MBs = x.bytes[0] / median(x.first) / 1e6
    const lastMBs = x.bytes[1] / median(x.last) / 1e6
    out[w.name] = {round0Secs: x.first.map((v) => Number(v.toFixed(3))), lastSecs: x.last.map((v) => Number(v.toFixed(3))), round0MBs, lastMBs, ratio: lastMBs / round0MBs}
    say(`${w.name.padEnd(4)} ${round0MBs.toFixed(0).padStart(13)} ${lastMBs.toFixed(0).padStart(14)} ${(lastMBs / round0MBs).toFixed(2).padStart(7)}   ${x.first.map((v) => v.toFixed(2)).join(' ').padEnd(28)} ${x.last.map((v) => v.toFixed(2)).join(' ')}`)
  }
  return out
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = options()
  ensureBuilt()
  fs.mkdirSync(o.base, {recursive: true})
  const work = path.join(o.base, `locality-work-${process.pid}`)
  fs.rmSync(work, {recursive: true, force: true})
  fs.mkdirSync(work, {recursive: true})
  if (o.snapshot) log(`using a copy of the build: ${snapshotBuild(path.join(work, 'build'))}`)
  const lib = {
    image: await loadDist<ImageMod>('fs/image.js'),
    clone: await loadDist<CloneMod>('clone/clone.js'),
    extents: await loadDist<ExtentsMod>('fs/extents.js'),
  }
  const locality = await loadDist<LocalityMod>('fs/locality.js')
  const tree = ensureData(o.base, o.big, o.files, o.seed)
  requireFree(o.base, tree.bytes * (o.scenarios.has('clones') ? 7 : 4) + GiB, 'the images and host copies')
  log(`machine: ${JSON.stringify(machineInfo(o.base))}; build ${gitVersion()}; load ${loadavg()}`)
  const results: Record<string, unknown> = {options: {...o, scenarios: [...o.scenarios]}, machine: machineInfo(o.base), build: gitVersion()}
  try {
    if (o.sweep) {
      // The policy's constants are in-process (fs/locality.ts localityTuning): each setting
      // runs the small experiment, and one line per scenario says how it did.
      const saved = {...locality.localityTuning}
      const sweep: unknown[] = []
      process.stdout.write('\nregion  threshold  scenario   on last/r0   off last/r0   space on/off   write on/off   far/MiB on\n')
      for (const region of ['64K', '256K', '1M']) {
        for (const threshold of [1, 2, 4]) {
          Object.assign(locality.localityTuning, saved, {threshold})
          for (const scenario of o.scenarios) {
            const res = experiment(scenario, tree, {...o, region}, work, lib, true)
            const v = Object.fromEntries(res.verdict.map((x) => [x.goal, x.value]))
            const last = res.rounds[res.rounds.length - 1]
            process.stdout.write(`${region.padStart(6)}  ${String(threshold).padStart(9)}  ${scenario.padEnd(9)} ${res.verdict[0].value.toFixed(2).padStart(11)} ${res.verdict[1].value.toFixed(2).padStart(13)} ` +
              `${v['policy on / off: space, last round'].toFixed(2).padStart(14)} ${v['policy on / off: write time, all rounds'].toFixed(2).padStart(14)} ${(last.on.farPerMiB ?? 0).toFixed(2).padStart(12)}\n`)
            sweep.push({region, threshold, ...res})
          }
        }
      }
      Object.assign(locality.localityTuning, saved)
      results.sweep = sweep
    } else {
      const out: ScenarioResult[] = []
      for (const scenario of o.scenarios) out.push(experiment(scenario, tree, o, work, lib))
      results.scenarios = out
    }
  } finally {
    if (!o.keep) fs.rmSync(work, {recursive: true, force: true})
  }
  process.stdout.write(`\ncold reads: ${dropMode}; prism reads a tree in ${o.order === 'block' ? 'the order of its files\' data (as cp -r out)' : 'name order'}\n`)
  log(`results: ${writeResults('locality', results)}`)
  return 0
}

main().then((c) => process.exit(c), (e) => { process.stderr.write(`${(e as Error).stack}\n`); process.exit(1) })
