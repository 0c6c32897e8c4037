// The asynchronous-cloning benchmark (issue: async and lazy cloning; paper §5, Fig. 6-7):
//
//   clone     wall and CPU time of `prism clone --mode async` and `--mode lazy` on a ~100,000-file
//             tree and on a 10-file tree, next to `node -e 0` (the paper measured 0.18 s)
//   expand    total background expansion (from the command's start until the background
//             expander exits with the clone expanded) against `prism clone --mode sync`
//   workload  the paper's Apache-like workload on a lazy clone against a fully expanded clone:
//             unpack a source tarball (~2,300 files, ~33 MB) into the clone, read it all back,
//             remove it (in-process, through the library, committing after each phase)
//
//   node --import tsx bench/async.ts            # 100,000 files, 15,000 dirs, 5 GiB, 5 runs
//   node --import tsx bench/async.ts --small    # 2,000 files: a smoke test
//
// Every figure is a median over the runs; contenders of a step run in the same loop, in an
// order rotated every run (bench/lib.ts measureEach). See bench/README.md.
import fs from 'node:fs'
import path from 'node:path'
import * as tar from 'tar'
import {
  type Row, type Summary, type TreeSpec, GiB, KiB, MiB, Rng, check, ensureBuilt, ensureTree, fmtBytes, gitVersion,
  imageSizeFor, inodesFor, loadDist, log, machineInfo, measureEach, parseCommon, printSamples, printTable, prism, requireFree,
  run, snapshotBuild, timed, timeRow, treeDirFor, valueRow, writeResults,
} from './lib.js'

type ImageMod = typeof import('../src/fs/image.js')
type CloneMod = typeof import('../src/clone/clone.js')
type BackgroundMod = typeof import('../src/clone/background.js')
type FilesetsMod = typeof import('../src/fs/filesets.js')

const USAGE = `Usage: node --import tsx bench/async.ts [options]

  --small            smoke-test size: 2,000 files, 300 dirs, 200 MiB
  --runs N           timed runs per contender (default 5)
  --base DIR         work directory (default /tmp/prism-bench)
  --files N / --dirs N / --bytes SIZE / --seed N   the big tree (default 100000 / 15000 / 5G / 1)
  --only LIST        comma list of steps: clone,expand,workload (default all)
  --tar-files N      files in the workload's source tarball (default 2300)
  --tar-bytes SIZE   bytes in it (default 33M)
  --keep             keep the image and tarball
  --strict           exit 1 when a goal is missed

Every option can also be given as PRISM_BENCH_<NAME>.
`

const STEPS = ['clone', 'expand', 'workload'] as const
type Step = typeof STEPS[number]

const tinySpec = (seed: number): TreeSpec => ({files: 10, dirs: 2, bytes: 40 * KiB, catSize: 4 * KiB, symlinks: 0, hardlinks: 0, seed})

const sleeper = new Int32Array(new SharedArrayBuffer(4))
const sleepMs = (ms: number) => { Atomics.wait(sleeper, 0, 0, ms) }

/** An httpd-like source tree in memory: paths and contents, log-normal sizes around 8 KiB. */
function sourceTree(files: number, bytes: number, seed: number): Array<{path: string, data: Buffer}> {
  const rng = new Rng(seed)
  const dirs = ['']
  for (let i = 0; i < Math.max(1, Math.round(files / 16)); i++) dirs.push(`${rng.pick(dirs)}/d${i}`)
  const raw = Array.from({length: files}, () => rng.logNormal(8 * KiB, 1.2))
  const scale = bytes / raw.reduce((a, b) => a + b, 0)
  const pool = rng.bytes(4 * MiB)
  return raw.map((r, i) => {
    const n = Math.max(1, Math.round(r * scale))
    const off = rng.int(0, pool.length - Math.min(n, pool.length))
    const data = n <= pool.length - off ? pool.subarray(off, off + n) : Buffer.concat([pool, pool]).subarray(0, n)
    return {path: `httpd${rng.pick(dirs)}/f${i}.c`, data: Buffer.from(data)}
  })
}

/** Reads a tarball into memory (the unpack itself is what is measured). */
function readTarball(file: string): Array<{path: string, data: Buffer}> {
  const out: Array<{path: string, data: Buffer}> = []
  tar.t({
    file, sync: true,
    onReadEntry: (e) => {
      if (e.type !== 'File') { e.resume(); return }
      const chunks: Buffer[] = []
      e.on('data', (c: Buffer) => chunks.push(c))
      e.on('end', () => out.push({path: e.path, data: Buffer.concat(chunks)}))
    },
  })
  return out
}

async function main(): Promise<number> {
  const opt = parseCommon(USAGE, {only: {type: 'string'}, 'tar-files': {type: 'string'}, 'tar-bytes': {type: 'string'}, strict: {type: 'boolean'}})
  const only = (opt.values.only as string | undefined) ?? process.env.PRISM_BENCH_ONLY
  const steps = new Set<Step>(only ? only.split(',').map((s) => s.trim() as Step) : STEPS)
  for (const s of steps) if (!STEPS.includes(s)) throw new Error(`unknown step '${s}' (steps: ${STEPS.join(', ')})`)
  const runs = opt.values.runs || process.env.PRISM_BENCH_RUNS ? opt.runs : 5
  ensureBuilt()
  const work = path.join(opt.base, `async-work-${process.pid}`)
  fs.rmSync(work, {recursive: true, force: true})
  fs.mkdirSync(work, {recursive: true})
  log(`using a copy of the build: ${snapshotBuild(path.join(work, 'build'))}`)
  const lib = await loadDist<ImageMod>('fs/image.js')
  const {clone} = await loadDist<CloneMod>('clone/clone.js')
  const {expanderRunning} = await loadDist<BackgroundMod>('clone/background.js')
  const {getFileset} = await loadDist<FilesetsMod>('fs/filesets.js')

  const tree = ensureTree(treeDirFor(opt.base, opt.spec), opt.spec, {regen: opt.regen})
  const tiny = ensureTree(treeDirFor(opt.base, tinySpec(opt.spec.seed)), tinySpec(opt.spec.seed), {regen: opt.regen})
  const imgSize = opt.small ? imageSizeFor(tree) + 256 * MiB : Math.max(16 * GiB, imageSizeFor(tree))
  requireFree(opt.base, Math.ceil(tree.allocBytes * 1.2) + GiB, 'an image of the tree')
  const img = path.join(work, 'prism.img')
  log(`setting up (untimed): prism mkfs ${fmtBytes(imgSize)}, cp -r TREE root:/ (${tree.files} files, ${tree.dirs} dirs), cp -r TINY tiny:/ (${tiny.files} files)`)
  const inodes = inodesFor(tree, imgSize)
  check(prism(['mkfs', img, '--size', `${Math.ceil(imgSize / MiB)}M`, '--force', ...(inodes ? ['--inodes', String(inodes)] : [])]), 'prism mkfs')
  check(prism(['cp', '-r', tree.dir, 'root:/', '-i', img]), 'prism cp -r (tree)')
  check(prism(['fileset', 'create', 'tiny', '-i', img]), 'prism fileset create')
  check(prism(['cp', '-r', tiny.dir, 'tiny:/', '-i', img]), 'prism cp -r (tiny)')

  const rows: Row[] = []
  const results: Record<string, Summary> = {}
  const extra: Record<string, unknown> = {}
  const noBg = {env: {...process.env, PRISM_NO_BACKGROUND: '1'}}
  const del = (name: string) => check(prism(['fileset', 'delete', name, '-i', img], noBg), `prism fileset delete ${name}`)

  // ------------------------------------------------------------ clone: constant time
  if (steps.has('clone')) {
    log('step clone: prism clone --mode async|lazy on the big tree and on the 10-file tree, vs node -e 0')
    const mk = (src: string, mode: string, tag: string, extraArgs: string[] = []) => ({
      run: (i: number) => {
        const r = check(prism(['clone', src, `${tag}${i + 1}`, '--mode', mode, '--no-background', ...extraArgs, '-i', img], noBg), `prism clone ${src} --mode ${mode}`)
        if (r.stdout.trim() !== `${tag}${i + 1}`) throw new Error(`prism clone printed '${r.stdout.trim()}'`)
        return r
      },
      after: (i: number) => del(`${tag}${i + 1}`),
    })
    const s = measureEach({
      'async, big tree': mk('root', 'async', 'ab'),
      'async, 10 files': mk('tiny', 'async', 'as'),
      'lazy, big tree': mk('root', 'lazy', 'lb'),
      'lazy, 10 files': mk('tiny', 'lazy', 'ls'),
      // A pattern that matches nothing is found out before the command returns: a name
      // lists every directory of the source (the worst case), an anchored path only those
      // on its way.
      'async, big tree, -x NAME matching nothing': mk('root', 'async', 'ax', ['--exclude', 'no-such-name']),
      'async, big tree, -x /PATH matching nothing': mk('root', 'async', 'ap', ['--exclude', '/no/such/path']),
      'node -e 0': {run: () => check(run(process.execPath, ['-e', '0']), 'node -e 0')},
    }, {runs: Math.max(5, runs)})
    Object.assign(results, Object.fromEntries(Object.entries(s).map(([k, v]) => [`clone.${k}`, v])))
    rows.push(timeRow(`clone --mode async, ${tree.files} files`, s['async, big tree'], 'same, 10-file tree', s['async, 10 files'], 1.15))
    rows.push(timeRow(`clone --mode lazy, ${tree.files} files`, s['lazy, big tree'], 'same, 10-file tree', s['lazy, 10 files'], 1.15))
    rows.push(timeRow(`clone --mode async -x NAME matching nothing (${tree.dirs} dirs listed)`, s['async, big tree, -x NAME matching nothing'], 'async, no pattern', s['async, big tree'], null,
      'information: the warning costs one listing of every directory (no file inode is read)'))
    rows.push(timeRow('clone --mode async -x /PATH matching nothing', s['async, big tree, -x /PATH matching nothing'], 'async, no pattern', s['async, big tree'], null,
      'information: an anchored pattern lists only the directories on its way'))
    const cpu = (k: string) => s[k].cpu?.median ?? null
    rows.push(valueRow('clone --mode async: CPU (process time)', cpu('async, big tree'), 's', 'node -e 0 CPU', cpu('node -e 0'),
      cpu('node -e 0') === null ? null : {max: 2 * cpu('node -e 0')!, text: '<= 2.00 x'}, 'the goal: within 2 x the process time of node -e 0'))
    rows.push(timeRow('clone --mode async: wall', s['async, big tree'], 'node -e 0 wall', s['node -e 0'], null,
      `wall time includes the image's fdatasyncs; the paper measured 0.18 s`))
  }

  // ------------------------------------------------------------ expand: background vs sync
  if (steps.has('expand')) {
    log('step expand: prism clone (async, background expander) until expanded vs prism clone --mode sync')
    const s = measureEach({
      'sync clone': {
        run: (i) => check(prism(['clone', 'root', `s${i + 1}`, '--mode', 'sync', '-i', img], noBg), 'prism clone --mode sync'),
        after: (i) => del(`s${i + 1}`),
      },
      'async + background expansion': {
        run: (i) => {
          const name = `b${i + 1}`
          const env = {...process.env}
          delete env.PRISM_NO_BACKGROUND
          const stateOf = () => lib.withImage(img, {write: false, wait: 60}, (vol) => getFileset(vol, name).state)
          const t = timed(() => {
            check(prism(['clone', 'root', name, '-i', img], {env}), 'prism clone (async)')
            // Done when the clone is ACTIVE. While the expander runs, poll its lock file rather
            // than the image (a reader would hold it up); look at the image only between.
            // Every 10 ms: a tighter poll takes CPU from the (niced) expander on 2 cores.
            for (;;) {
              if (!expanderRunning(img) && stateOf() === 1) return
              sleepMs(10)
            }
          })
          return t.secs
        },
        after: (i) => del(`b${i + 1}`),
      },
    }, {runs})
    results['expand.sync'] = s['sync clone']
    results['expand.async'] = s['async + background expansion']
    rows.push(timeRow('background expansion (clone to expanded)', s['async + background expansion'], 'clone --mode sync', s['sync clone'], 1.3))

    // One more background expansion, with a foreground command's view: open the image for
    // writing (as any write command does), note how long the lock took, close, pause 20 ms.
    log('  foreground lock waits during a background expansion')
    const env = {...process.env}
    delete env.PRISM_NO_BACKGROUND
    check(prism(['clone', 'root', 'probe', '-i', img], {env}), 'prism clone (async)')
    const waits: number[] = []
    const t0 = Date.now()
    while (Date.now() - t0 < 600_000) {
      const t = process.hrtime.bigint()
      const st = lib.withImage(img, {write: true, wait: 60}, (vol) => { const ms = Number(process.hrtime.bigint() - t) / 1e6; waits.push(ms); return getFileset(vol, 'probe').state })
      if (st === 1 && !expanderRunning(img)) break
      sleepMs(20)
    }
    del('probe')
    const sorted = [...waits].sort((x, y) => x - y)
    const p95 = sorted[Math.floor(sorted.length * 0.95)] ?? null
    const max = sorted[sorted.length - 1] ?? null
    extra.lockWaits = {n: waits.length, p50: sorted[sorted.length >> 1], p95, max, top: sorted.slice(-5).map((x) => Number(x.toFixed(1)))}
    log(`  waits (ms): median ${sorted[sorted.length >> 1]?.toFixed(1)}, longest five ${sorted.slice(-5).map((x) => x.toFixed(1)).join(', ')}`)
    rows.push(valueRow(`foreground open during expansion: p95 of ${waits.length} waits`, p95, 'ms', '-', null, {max: 100, text: '<= 100 ms'}))
    rows.push(valueRow('the same: longest wait', max, 'ms', '-', null, null, 'includes the open itself (journal, superblock): about 1-3 ms'))
  }

  // ------------------------------------------------------------ workload: lazy vs expanded
  if (steps.has('workload')) {
    const nFiles = Number((opt.values['tar-files'] as string | undefined) ?? (opt.small ? 500 : 2300))
    const nBytes = opt.values['tar-bytes'] ? Number.parseInt(String(opt.values['tar-bytes']), 10) * (String(opt.values['tar-bytes']).endsWith('M') ? MiB : 1) : (opt.small ? 8 * MiB : 33 * MiB)
    const src = path.join(work, 'httpd-src')
    const tarball = path.join(work, 'httpd.tar')
    for (const f of sourceTree(nFiles, nBytes, opt.spec.seed)) {
      fs.mkdirSync(path.join(src, path.dirname(f.path)), {recursive: true})
      fs.writeFileSync(path.join(src, f.path), f.data)
    }
    tar.c({file: tarball, cwd: src, sync: true, portable: true}, ['httpd'])
    fs.rmSync(src, {recursive: true, force: true})
    const entries = readTarball(tarball)
    const total = entries.reduce((a, e) => a + e.data.length, 0)
    log(`step workload: unpack ${entries.length} files (${fmtBytes(total)}) into a lazy clone and into an expanded one, read back, remove`)
    // Where to unpack: under the tree's first top-level directory, as /usr/src would be.
    const top = lib.withImage(img, {write: false}, (vol) => lib.namespace(vol, 'root').readdir('/').find((e) => e.type === 'dir')!.name)
    const at = `/${top}/src`
    check(prism(['clone', 'root', 'expanded', '--mode', 'sync', '-i', img], noBg), 'prism clone expanded')
    const workload = (fsName: string): number => lib.withImage(img, {write: true}, (vol) => timed(() => {
      const ns = lib.namespace(vol, fsName)
      for (const e of entries) {
        const p = `${at}/${e.path}`
        ns.mkdir(p.slice(0, p.lastIndexOf('/')), {parents: true})
        ns.writeFile(p, e.data)
      }
      vol.commit()
      let n = 0
      for (const e of entries) n += ns.readFile(`${at}/${e.path}`).length
      if (n !== total) throw new Error(`read back ${n} bytes of ${total}`)
      ns.remove(`${at}/httpd`, {recursive: true})
      vol.commit()
    }).secs)
    const s = measureEach({
      'lazy clone': {
        before: (i) => { lib.withImage(img, {write: true}, (vol) => { clone(vol, {fileset: 'root', path: '/'}, {fileset: `lz${i + 2}`}, {mode: 'lazy'}) }) },
        run: (i) => workload(`lz${i + 2}`),
        after: (i) => del(`lz${i + 2}`),
      },
      'expanded clone': {run: () => workload('expanded')},
    }, {runs: Math.max(9, runs), warmup: true}) // a 0.3 s workload: more runs to see 5 %
    results['workload.lazy'] = s['lazy clone']
    results['workload.expanded'] = s['expanded clone']
    rows.push(timeRow(`workload (${entries.length} files, ${fmtBytes(total)}): lazy clone`, s['lazy clone'], 'expanded clone', s['expanded clone'], 1.05,
      'the paper measured 4.6 % slower'))
    extra.workload = {files: entries.length, bytes: total, at}
  }

  process.stdout.write(`\nasync-clone benchmark: ${tree.files} files, ${tree.dirs} dirs, ${fmtBytes(tree.bytes)}; ${runs} runs; commit ${gitVersion()}\n\n`)
  printTable(rows)
  printSamples(results)
  const file = writeResults('async', {rows, results, extra, machine: machineInfo(opt.base), tree: {files: tree.files, dirs: tree.dirs, bytes: tree.bytes}})
  log(`results: ${file}`)
  if (!opt.keep) fs.rmSync(work, {recursive: true, force: true})
  const failed = rows.some((r) => r.pass === false)
  return opt.values.strict && failed ? 1 : 0
}

main().then((code) => process.exit(code), (e) => {
  process.stderr.write(`bench/async: ${(e as Error).stack}\n`)
  process.exit(2)
})
