// The scan benchmark, the Prism paper's Fig. 8: scanning n clones of one system tree with
// `prism scan` (each shared file read once) against scanning n plain host copies of it
// (`cp -a`) with clamscan and the same .hdb + .ndb signature files, and against a host
// sha256 pass over the n copies; then an incremental rescan after 1% of the files of a clone
// changed, against a full scan of that clone.
//
//   node --import tsx bench/scan.ts            # ~100,000 files, 15,000 dirs, 5 GiB; n = 1,2,4,8; 3 runs
//   node --import tsx bench/scan.ts --small    # 2,000 files, 200 MiB: a smoke test
//
// See bench/README.md ("Scan benchmark") for the goals and what each figure means.
import fs from 'node:fs'
import path from 'node:path'
import {createHash} from 'node:crypto'
import {
  type Row, type Summary, Rng, canDropCaches, check, ensureBuilt, ensureTree, fmtBytes, fmtSecs, hostCpA, imageSizeFor,
  inodesFor, log, machineInfo, measureEach, parseCommon, printSamples, printTable, prism, q, requireFree, sh,
  snapshotBuild, timeRow, treeDirFor, valueRow, which, writeResults, loadDist,
} from './lib.js'

type ImageMod = typeof import('../src/fs/image.js')

const USAGE = `Usage: node --import tsx bench/scan.ts [options]

  --small            smoke-test size: 2,000 files, 300 dirs, 200 MiB
  --n LIST           numbers of clones / host copies to scan (default 1,2,4,8; any of 1..8)
  --runs N           timed runs per contender; medians are reported (default 3)
  --cold             sync and drop the page cache before every timed command (needs root)
  --base DIR         work directory (default /tmp/prism-bench)
  --files N, --dirs N, --bytes SIZE, --cat-size SIZE, --seed N   tree shape (default 100000, 15000, 5G, 1G, 1)
  --changed PCT      files changed before each incremental rescan (default 1)
  --only LIST        comma list of steps: clones,incremental (default both)
  --no-clamscan      skip the clamscan baseline (prism and sha256 only)
  --regen, --keep, --clean-tree, --strict, --no-snapshot   as in bench/clone.ts

Every option can also be given as PRISM_BENCH_<NAME>.
`

interface ScanJson {
  matches: Array<{paths: string[], found: string[]}>
  stats: {inodes: number, inodesRead: number, bytesRead: number, names: number, cached: number}
}

/** Walks the host tree: regular files (relative paths) and their sizes. */
function hostFiles(root: string): Array<{rel: string, size: number}> {
  const out: Array<{rel: string, size: number}> = []
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, {withFileTypes: true})) {
      const p = path.join(d, e.name)
      const r = rel ? `${rel}/${e.name}` : e.name
      if (e.isDirectory()) walk(p, r)
      else if (e.isFile()) out.push({rel: r, size: fs.statSync(p).size})
    }
  }
  walk(root, '')
  return out.sort((a, b) => (a.rel < b.rel ? -1 : 1))
}

/**
 * Signature files that match a few files of the tree and are otherwise realistic: md5 and
 * sha256 hashes of 20 of its files plus 1,000 random ones, and 12 body signatures (fixed
 * strings, `??` wildcards, `*` and `{n-m}` jumps, fixed and EOF offsets) taken from bytes of
 * chosen files, so both scanners have something to find and must agree on it.
 */
function makeSignatures(tree: string, files: Array<{rel: string, size: number}>, dir: string, seed: number): string[] {
  const rng = new Rng(seed + 77)
  const hdb: string[] = []
  const picks = files.filter((f) => f.size > 64 && f.size < 8 << 20)
  for (let i = 0; i < 20; i++) {
    const f = picks[rng.int(0, picks.length)]
    const data = fs.readFileSync(path.join(tree, f.rel))
    const algo = i % 2 ? 'sha256' : 'md5'
    hdb.push(`${createHash(algo).update(data).digest('hex')}:${f.size}:Bench.Hash.${i}`)
  }
  for (let i = 0; i < 1000; i++) hdb.push(`${rng.bytes(16).toString('hex')}:${rng.int(1, 1 << 20)}:Bench.Hash.Random.${i}`)
  const ndb: string[] = []
  const hex = (b: Buffer) => b.toString('hex')
  for (let i = 0; i < 12; i++) {
    const f = picks[rng.int(0, picks.length)]
    const data = fs.readFileSync(path.join(tree, f.rel))
    const at = rng.int(0, Math.max(1, data.length - 48))
    const s = data.subarray(at, at + 40)
    if (s.length < 40) continue
    const kind = i % 6
    let sig: string
    if (kind === 0) sig = `Bench.Body.${i}:0:*:${hex(s.subarray(0, 24))}`
    else if (kind === 1) sig = `Bench.Body.${i}:0:*:${hex(s.subarray(0, 8))}????${hex(s.subarray(10, 20))}`
    else if (kind === 2) sig = `Bench.Body.${i}:0:*:${hex(s.subarray(0, 10))}{2-6}${hex(s.subarray(14, 24))}`
    else if (kind === 3) sig = `Bench.Body.${i}:0:*:${hex(s.subarray(0, 8))}*${hex(s.subarray(30, 40))}`
    else if (kind === 4) sig = `Bench.Body.${i}:0:${at}:${hex(s.subarray(0, 16))}`
    else sig = `Bench.Body.${i}:0:EOF-${data.length - at}:${hex(s.subarray(0, 16))}`
    ndb.push(sig)
  }
  // Never present: the random data has no such runs.
  for (let i = 0; i < 8; i++) ndb.push(`Bench.Absent.${i}:0:*:${hex(rng.bytes(12))}`)
  const h = path.join(dir, 'bench.hdb')
  const n = path.join(dir, 'bench.ndb')
  fs.writeFileSync(h, hdb.join('\n') + '\n')
  fs.writeFileSync(n, ndb.join('\n') + '\n')
  return [h, n]
}

async function main(): Promise<number> {
  const opt = parseCommon(USAGE, {
    n: {type: 'string'}, changed: {type: 'string'}, only: {type: 'string'}, 'no-clamscan': {type: 'boolean'},
    'clean-tree': {type: 'boolean'}, strict: {type: 'boolean'}, 'no-snapshot': {type: 'boolean'},
  })
  const ns = String(opt.values.n ?? process.env.PRISM_BENCH_N ?? '1,2,4,8').split(',').map(Number)
  if (ns.some((n) => !(n >= 1 && n <= 8 && Number.isInteger(n)))) throw new Error('--n takes numbers from 1 to 8')
  const maxN = Math.max(...ns)
  const pct = Number(opt.values.changed ?? process.env.PRISM_BENCH_CHANGED ?? 1)
  const only = String(opt.values.only ?? process.env.PRISM_BENCH_ONLY ?? 'clones,incremental').split(',')
  const clamscan = opt.values['no-clamscan'] ? null : which('clamscan')
  if (!clamscan && !opt.values['no-clamscan']) log('clamscan not found (apt-get install clamav): its baseline is skipped')
  if (opt.cold && !canDropCaches()) log('--cold asked for, but the page cache cannot be dropped: runs will be partly warm')

  ensureBuilt()
  fs.mkdirSync(opt.base, {recursive: true})
  const work = path.join(opt.base, `scan-work-${process.pid}`)
  fs.rmSync(work, {recursive: true, force: true})
  fs.mkdirSync(work, {recursive: true})
  if (!opt.values['no-snapshot']) log(`using a copy of the build: ${snapshotBuild(path.join(work, 'build'))}`)
  const lib = await loadDist<ImageMod>('fs/image.js')

  const tree = ensureTree(treeDirFor(opt.base, opt.spec), opt.spec, {regen: opt.regen})
  const files = hostFiles(tree.dir)
  const sigs = makeSignatures(tree.dir, files, work, opt.spec.seed)
  const sigArgs = sigs.flatMap((s) => ['--signatures', s])
  const rows: Row[] = []
  const results: Record<string, Summary> = {}
  const figures: Record<string, unknown> = {}

  // The image: the tree in root, and clones c1..c7 (all files shared).
  const img = path.join(work, 'scan.img')
  const size = imageSizeFor(tree)
  requireFree(work, tree.allocBytes * 1.3 + (only.includes('clones') ? maxN * tree.allocBytes : 0), 'the image and the host copies')
  check(prism(['mkfs', img, '--size', String(size), ...(inodesFor(tree, size) ? ['--inodes', String(inodesFor(tree, size))] : [])]), 'prism mkfs')
  log(`importing the tree (${tree.files} files, ${fmtBytes(tree.bytes)})`)
  check(prism(['cp', '-r', tree.dir, 'root:/', '-i', img]), 'prism cp')
  const names = ['root', ...Array.from({length: 7}, (_, i) => `c${i + 1}`)]
  for (const n of names.slice(1)) check(prism(['clone', 'root', n, '--mode', 'sync', '-i', img]), `prism clone ${n}`)
  const prismScan = (fsNames: string[], extra: string[] = []) => prism(['scan', ...fsNames, ...sigArgs, '--json', '-i', img, ...extra])
  const parse = (r: ReturnType<typeof prism>, what: string): ScanJson => {
    if (r.status !== 0 && r.status !== 1) throw new Error(`${what} failed (exit ${r.status}): ${r.stderr.trim()}`)
    return JSON.parse(r.stdout) as ScanJson
  }

  if (only.includes('clones')) {
    // Host copies 1..maxN.
    const copies: string[] = []
    for (let k = 1; k <= maxN; k++) {
      const c = path.join(work, `copy${k}`)
      log(`cp -a copy ${k}/${maxN}`)
      hostCpA(tree.dir, c)
      copies.push(c)
    }
    // Correctness, untimed: prism on root and clamscan on copy 1 find the same files.
    const p1 = parse(prismScan(['root']), 'prism scan')
    const prismFound = p1.matches.flatMap((m) => m.paths.map((p) => p.replace(/^root:\//, ''))).sort()
    figures.found = prismFound.length
    if (clamscan) {
      const c = sh(`${q(clamscan)} --no-summary --infected --max-filesize=4000M --max-scansize=4000M ${sigs.map((s) => `-d ${q(s)}`).join(' ')} -r ${q(copies[0])}`)
      if (c.status !== 0 && c.status !== 1) throw new Error(`clamscan failed (exit ${c.status}): ${c.stderr.trim()}`)
      const clamFound = c.stdout.split('\n').filter((l) => l.endsWith(' FOUND')).map((l) => path.relative(copies[0], l.slice(0, l.lastIndexOf(': ')))).sort()
      const same = JSON.stringify(clamFound) === JSON.stringify(prismFound)
      figures.clamscanAgrees = same
      log(`prism found ${prismFound.length} files, clamscan ${clamFound.length}: ${same ? 'the same' : 'DIFFERENT'}`)
      if (!same) log(`  prism only: ${prismFound.filter((p) => !clamFound.includes(p)).slice(0, 5).join(', ')}; clamscan only: ${clamFound.filter((p) => !prismFound.includes(p)).slice(0, 5).join(', ')}`)
    }
    const contenders: Record<string, {run: () => ReturnType<typeof prism>}> = {}
    for (const n of ns) {
      contenders[`prism scan ${n}`] = {run: () => { const r = prismScan(names.slice(0, n)); parse(r, 'prism scan'); return r }}
      if (clamscan) {
        contenders[`clamscan ${n}`] = {run: () => {
          const r = sh(`${q(clamscan)} --no-summary --infected --max-filesize=4000M --max-scansize=4000M ${sigs.map((s) => `-d ${q(s)}`).join(' ')} -r ${copies.slice(0, n).map(q).join(' ')} > /dev/null`)
          if (r.status !== 0 && r.status !== 1) throw new Error(`clamscan failed (exit ${r.status}): ${r.stderr.trim()}`)
          return r
        }}
      }
      contenders[`sha256 ${n}`] = {run: () => check(sh(`find ${copies.slice(0, n).map(q).join(' ')} -type f -print0 | xargs -0 -r sha256sum > /dev/null`), 'sha256sum')}
    }
    Object.assign(results, measureEach(contenders, {runs: opt.runs, cold: opt.cold, warmup: !opt.cold}))
    const m = (k: string) => results[k]?.median ?? null
    const lo = Math.min(...ns)
    const hi = Math.max(...ns)
    for (const n of ns) {
      rows.push(timeRow(`scan ${n} fileset(s)`, results[`prism scan ${n}`], `clamscan ${n} copies`, results[`clamscan ${n}`] ?? null, n === 1 ? 1.0 : null,
        n === 1 ? 'goal: prism on one fileset no slower than clamscan on the same tree' : undefined))
      rows.push(timeRow(`scan ${n} fileset(s)`, results[`prism scan ${n}`], `sha256sum ${n} copies`, results[`sha256 ${n}`], null))
    }
    if (hi > lo) {
      const pr = (m(`prism scan ${hi}`)! / m(`prism scan ${lo}`)!)
      rows.push(valueRow(`scan ${hi} vs ${lo} (prism)`, pr, 's', `${lo} fileset(s)`, 1, {max: 1.2, text: '<= 1.20'},
        `time for ${hi} clones / time for ${lo}; unitless`))
      const slope = (a: string, b: string) => ((m(b) ?? NaN) - (m(a) ?? NaN)) / (hi - lo)
      const ps = slope(`prism scan ${lo}`, `prism scan ${hi}`)
      for (const [name, key] of [['clamscan', 'clamscan'], ['sha256sum', 'sha256']] as const) {
        if (!results[`${key} ${lo}`]) continue
        const hs = slope(`${key} ${lo}`, `${key} ${hi}`)
        const ratio = ps > 0 ? hs / ps : Infinity
        figures[`slopeRatio_${key}`] = ratio
        rows.push({step: `slope per extra copy vs ${name}`, prism: ps, baseline: `${name} slope`, base: hs, ratio: ps > 0 ? ps / hs : 0,
          goal: '<= 0.033', pass: name === 'clamscan' ? ps / hs <= 1 / 30 : null,
          note: `seconds per extra fileset (prism) and per extra copy (${name}); ${name}'s slope is ${Number.isFinite(ratio) ? ratio.toFixed(0) : '∞'} times prism's (paper: ~10x; goal vs clamscan: >= 30x)`})
      }
    }
    for (const c of copies) fs.rmSync(c, {recursive: true, force: true})
  }

  if (only.includes('incremental')) {
    // Fill the results for c1, then before each timed incremental rescan change a fresh
    // pct% of its files (new content of the same size, through the library).
    parse(prismScan(['c1'], ['--incremental']), 'prism scan --incremental')
    const rng = new Rng(opt.spec.seed + 5)
    const count = Math.max(1, Math.round(files.length * pct / 100))
    let changedBytes = 0
    const change = () => {
      lib.withImage(img, {write: true}, (vol) => {
        const fsn = lib.namespace(vol, 'c1')
        for (let k = 0; k < count; k++) {
          const f = files[rng.int(0, files.length)]
          fsn.writeFile('/' + f.rel, rng.bytes(f.size))
          changedBytes += f.size
        }
      })
    }
    let reads: number[] = []
    const r = measureEach({
      'prism scan c1 (full)': {run: () => { const x = prismScan(['c1']); parse(x, 'prism scan'); return x }},
      [`prism scan c1 --incremental (${pct}% changed)`]: {
        before: () => change(),
        run: () => { const x = prismScan(['c1'], ['--incremental']); const j = parse(x, 'prism scan --incremental'); reads.push(j.stats.bytesRead / Math.max(1, j.stats.inodes)); figures.incrementalRead = j.stats; return x },
      },
    }, {runs: opt.runs, cold: opt.cold, warmup: false})
    Object.assign(results, r)
    const full = r['prism scan c1 (full)']
    const inc = r[`prism scan c1 --incremental (${pct}% changed)`]
    rows.push(valueRow(`incremental rescan, ${pct}% of files changed`, inc.median / full.median * 100, '%', 'full scan', 100, {max: 5, text: '<= 5 %'},
      `${fmtSecs(inc.median)} s vs ${fmtSecs(full.median)} s for a full scan of c1`))
    figures.changedBytesPerRun = changedBytes / Math.max(1, opt.runs)
    reads = []
  }

  process.stdout.write(`\nScan benchmark: ${tree.files} files, ${tree.dirs} dirs, ${fmtBytes(tree.bytes)}; ${opt.runs} run(s) ${opt.cold ? 'cold' : 'warm'}\n\n`)
  printTable(rows)
  process.stdout.write('\nSamples:\n')
  printSamples(results)
  const out = writeResults('scan', {machine: machineInfo(opt.base), spec: opt.spec, n: ns, figures, results, rows})
  process.stdout.write(`\nresults: ${out}\n`)
  if (!opt.values.keep) fs.rmSync(work, {recursive: true, force: true})
  if (opt.values['clean-tree']) fs.rmSync(tree.dir, {recursive: true, force: true})
  const failed = rows.some((r) => r.pass === false)
  return opt.values.strict && failed ? 1 : 0
}

main().then((code) => process.exit(code), (e) => {
  process.stderr.write(`bench/scan: ${(e as Error).stack ?? e}\n`)
  process.exit(2)
})
