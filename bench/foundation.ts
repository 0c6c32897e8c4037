// The foundation benchmark: import a rootfs-like tree, export it back, check the image and
// cat a big file, each next to the host tool that does the same job on the same tree in the
// same run, as a ratio of medians.
//
//   node --import tsx bench/foundation.ts            # ~100,000 files, 5 GiB, 3 runs
//   node --import tsx bench/foundation.ts --small    # 2,000 files, 200 MiB: a smoke test
//   node --import tsx bench/foundation.ts --tree /usr  # a real tree (cat: its largest file)
//
// See bench/README.md for what each number means and the goals.
import fs from 'node:fs'
import path from 'node:path'
import {
  type Row, type RunResult, type Summary, type TreeStats, GiB, MiB, bulkRemove, canDropCaches, check, dropFileCache, freeBytes, inodeReuseWindow, setInodeReuseWindow, ensureBuilt, ensureTree, gitVersion, fmtBytes, fmtSecs,
  hostCpA, hostE2fsckFn, hostMke2fsD, imageSizeFor, inodesFor, log, machineInfo, measureEach, parseCommon, printTable,
  parseSize, prism, prismCmd, q, requireFree, run, sh, snapshotBuild, timeRow, treeDirFor, which, writeResults,
} from './lib.js'

const USAGE = `Usage: node --import tsx bench/foundation.ts [options]

  --small            smoke-test size: 2,000 files, 300 dirs, 200 MiB, 64 MiB cat file
  --tree DIR         use the tree DIR as it is (a copy of /usr, say) instead of generating one;
                     the cat test reads its largest regular file. DIR is only read (never
                     deleted, --clean-tree or not)
  --runs N           timed runs per contender; medians are reported (default 3)
  --cold             sync and drop the page cache before every timed command (needs root)
  --base DIR         work directory (default /tmp/prism-bench)
  --files N          regular files in the tree (default 100000)
  --dirs N           directories (default 15000)
  --bytes SIZE       total file data (default 5G)
  --cat-size SIZE    size of the file for the cat test (default 1G)
  --seed N           tree generator seed (default 1)
  --only LIST        comma list of steps: startup,import,export,fsck,cat (default all)
  --image-size SIZE  image size for prism mkfs and mke2fs (default: from the tree)
  --no-verify        skip the untimed correctness checks (counts, diff, cmp)
  --regen            rebuild the tree even if a matching one is cached
  --keep             keep images and outputs in the work directory
  --clean-tree       delete the generated tree at the end too (it is kept for reuse by default)
  --strict           exit 1 when a goal is missed
  --no-snapshot      run prism from the work tree instead of a copy of the build taken at start
  --settle SECS      wait after deleting copies before the next create-heavy run (default: 361 on
                     journal-less ext4, whose inode allocator passes over inodes freed < 60-360 s ago)

Every option can also be given as PRISM_BENCH_<NAME> (PRISM_BENCH_RUNS=5, PRISM_BENCH_SMALL=1...).
`

const STEPS = ['startup', 'import', 'export', 'fsck', 'cat'] as const
type Step = typeof STEPS[number]

function main(): number {
  const opt = parseCommon(USAGE, {
    only: {type: 'string'}, 'image-size': {type: 'string'}, 'no-verify': {type: 'boolean'}, tree: {type: 'string'},
    'clean-tree': {type: 'boolean'}, strict: {type: 'boolean'}, 'no-snapshot': {type: 'boolean'}, settle: {type: 'string'},
  })
  const only = (opt.values.only as string | undefined) ?? process.env.PRISM_BENCH_ONLY
  const steps = new Set<Step>(only ? only.split(',').map((s) => s.trim() as Step) : STEPS)
  for (const s of steps) if (!STEPS.includes(s)) throw new Error(`unknown step '${s}' (steps: ${STEPS.join(', ')})`)
  const verify = !opt.values['no-verify']
  if (opt.cold && !canDropCaches()) log('--cold asked for, but /proc/sys/vm/drop_caches is not writable: runs will be partly warm')

  ensureBuilt()
  const mke2fs = which('mke2fs')
  const e2fsck = which('e2fsck')
  if (!mke2fs) log('mke2fs not available: the mke2fs -d baseline is skipped (install e2fsprogs)')
  if (!e2fsck) log('e2fsck not available: the e2fsck -fn baseline is skipped (install e2fsprogs)')

  fs.mkdirSync(opt.base, {recursive: true})
  const given = (opt.values.tree as string | undefined) ?? process.env.PRISM_BENCH_TREE
  const tree = given ? statTree(path.resolve(given)) : ensureTree(treeDirFor(opt.base, opt.spec), opt.spec, {regen: opt.regen})
  const catPath = path.join(tree.dir, tree.catFile)
  const catSize = given ? fs.statSync(catPath).size : opt.spec.catSize

  const imgSize = opt.values['image-size'] ? parseSize(opt.values['image-size'] as string) : imageSizeFor(tree)
  const inodes = inodesFor(tree, imgSize)
  // Peak space: both images (~ the tree each), plus the copies. Copies are kept until the end
  // of their step when there is room (see "inode reuse" in lib.ts: deleting a copy slows the
  // next run's creates for up to 6 minutes on journal-less ext4): runs copies for import,
  // 2 x runs for export. Without room, each copy is deleted before the next run.
  const images = Math.ceil(tree.allocBytes * 1.1) * 2
  const need = images + tree.allocBytes * 2 + GiB
  const needKeep = images + tree.allocBytes * 2 * opt.runs + GiB
  requireFree(opt.base, need, `images and copies of a ${fmtBytes(tree.allocBytes)} tree`)
  const keepCopies = freeBytes(opt.base) >= needKeep

  const work = path.join(opt.base, `work-${process.pid}`)
  fs.rmSync(work, {recursive: true, force: true})
  fs.mkdirSync(work, {recursive: true})
  // On a failure, leave no images or copies behind (unless --keep).
  process.on('exit', () => { if (!opt.values.keep) fs.rmSync(work, {recursive: true, force: true}) })
  if (opt.values.settle !== undefined) setInodeReuseWindow(Number(opt.values.settle))
  const settleSecs = inodeReuseWindow(work)
  const version = gitVersion()
  if (!opt.values['no-snapshot']) snapshotBuild(path.join(work, 'prism'))
  const img = path.join(work, 'prism.img')
  const floor = path.join(work, 'floor.bin')
  const ext4 = path.join(work, 'ext4.img')
  const rm = (p: string): void => fs.rmSync(p, {recursive: true, force: true})
  const notes: string[] = []
  const keepDir = path.join(work, 'copies')
  /** Where run i of a copying contender writes: a fresh directory when copies are kept. */
  const dest = (name: string, i: number): string => {
    if (!keepCopies) return path.join(work, name)
    fs.mkdirSync(keepDir, {recursive: true})
    return path.join(keepDir, `${name}-${i < 0 ? 'warmup' : i}`)
  }
  if (!keepCopies && settleSecs) {
    notes.push(`not enough free space to keep every copy until the end of its step (${fmtBytes(needKeep)}): copies are deleted between runs, ` +
      `so create-heavy runs (cp -a, prism export) may be slowed by the host's inode-reuse window`)
  }

  const mkfsArgs = ['mkfs', img, '--size', `${Math.ceil(imgSize / MiB)}M`, '--force', ...(inodes ? ['--inodes', String(inodes)] : [])]
  const prismImport = (): RunResult => {
    const r = check(prism(['cp', '-r', '--json', tree.dir, 'root:/', '-i', img]), 'prism cp -r (import)')
    lastImport = r.stdout
    return r
  }
  let lastImport = ''
  const mkPrismImage = (): void => { check(prism(mkfsArgs), 'prism mkfs') }

  const results: Record<string, Summary> = {}
  const rows: Row[] = []
  log(`tree ${tree.dir}: ${tree.files} files, ${tree.dirs} dirs, ${tree.symlinks} symlinks, ${tree.hardlinks} hard links, ${fmtBytes(tree.bytes)}`)
  log(`images: ${fmtBytes(imgSize)}${inodes ? `, ${inodes} inodes` : ''}; runs: ${opt.runs}; cache: ${opt.cold ? 'cold' : 'warm'}; ` +
    `inode-reuse wait after deletions: ${settleSecs} s`)

  // ------------------------------------------------------------ start-up (information)
  if (steps.has('startup')) {
    log('step startup: prism --version vs node -e 0')
    const s = measureEach({
      prism: {run: () => check(prism(['--version']), 'prism --version')},
      node: {run: () => check(run(process.execPath, ['-e', '0']), 'node -e 0')},
    }, {runs: Math.max(5, opt.runs), cold: false})
    results['startup.prism'] = s.prism
    results['startup.node'] = s.node
    rows.push(timeRow('start-up (prism --version)', s.prism, 'node -e 0', s.node, null))
  }

  // ------------------------------------------------------------ import
  if (steps.has('import')) {
    log('step import: prism cp -r TREE root:/ vs cp -a TREE DEST && sync vs mke2fs -t ext4 -d TREE')
    // The images left by the previous round hold ~2x the tree in the page cache; whoever runs
    // next would pay for their reclaim (cp -a's system time varied 5x from that). Each
    // contender replaces its own image anyway, so both are dropped from the cache first.
    const dropImages = (): void => { dropFileCache(img); dropFileCache(ext4) }
    const s = measureEach({
      'prism import': {before: () => { dropImages(); rm(img); mkPrismImage() }, run: prismImport},
      'cp -a + sync': {
        before: (i) => { dropImages(); bulkRemove(dest('cp-import', i)) },
        run: (i) => hostCpA(tree.dir, dest('cp-import', i), {sync: true}),
        after: (i) => { if (!keepCopies) bulkRemove(dest('cp-import', i)) },
        createsInodes: true,
      },
      ...(mke2fs ? {'mke2fs -d': {before: () => { dropImages(); rm(ext4) }, run: () => hostMke2fsD(mke2fs, tree.dir, ext4, imgSize, inodes)}} : {}),
      // Not a contender: the disk alone, writing as many bytes as the tree holds, so that the
      // goals can be read against what this disk can do at all in the same minutes.
      'disk floor': {run: () => diskFloor(floor, tree.bytes), after: () => rm(floor)},
    }, {runs: opt.runs, cold: opt.cold, settleDir: work})
    bulkRemove(keepDir)
    results['import.prism'] = s['prism import']
    results['import.cp_a_sync'] = s['cp -a + sync']
    rows.push(timeRow('import', s['prism import'], 'cp -a + sync', s['cp -a + sync'], 1.0))
    results['import.disk_floor'] = s['disk floor']
    const floorNote = `the disk alone (${DISK_FLOOR}) takes ${fmtSecs(s['disk floor'].median)} s`
    if (s['mke2fs -d']) {
      results['import.mke2fs_d'] = s['mke2fs -d']
      // Information: "4x faster than mke2fs -d" was withdrawn (issue 19): the disk is the limit.
      rows.push(timeRow('import', s['prism import'], 'mke2fs -t ext4 -d', s['mke2fs -d'], null, floorNote))
    } else {
      rows.push({...timeRow('import', s['prism import'], 'mke2fs -t ext4 -d', null, null), note: 'mke2fs not available'})
    }
    rows.push(timeRow('import (disk floor)', s['prism import'], DISK_FLOOR, s['disk floor'], 1.25))
  } else {
    // Later steps need an image holding the tree; make one untimed.
    if (steps.has('export') || steps.has('fsck') || steps.has('cat')) {
      log('setting up (untimed): prism image of the tree')
      mkPrismImage()
      prismImport()
    }
    if (steps.has('fsck') && mke2fs) {
      log('setting up (untimed): ext4 image of the tree')
      hostMke2fsD(mke2fs, tree.dir, ext4, imgSize, inodes)
    }
  }
  if (lastImport && verify) {
    const st = JSON.parse(lastImport) as {files: number, dirs: number, symlinks: number, hardlinks: number, bytes: number}
    // The root is filled, not copied, so cp counts one directory fewer than the tree has.
    const ok = st.files === tree.files && st.dirs === tree.dirs && st.symlinks === tree.symlinks && st.hardlinks === tree.hardlinks && st.bytes === tree.bytes
    const msg = `import copied ${st.files} files, ${st.dirs} dirs, ${st.symlinks} symlinks, ${st.hardlinks} hard links, ${st.bytes} bytes`
    if (!ok) { notes.push(`MISMATCH: ${msg}; tree has ${tree.files}/${tree.dirs}/${tree.symlinks}/${tree.hardlinks}/${tree.bytes}`); log(notes.at(-1)!) } else log(`verified: ${msg}`)
  }

  // ------------------------------------------------------------ fsck
  if (steps.has('fsck')) {
    log('step fsck: prism fsck vs e2fsck -fn')
    const probe = prism(['fsck', '-i', img])
    if (probe.status !== 0 && probe.status !== 4 && probe.status !== 1) {
      const why = (probe.stderr || probe.stdout).trim().split('\n')[0] ?? ''
      const note = `prism fsck did not run (exit ${probe.status}: ${why.slice(0, 160)}); skipped — re-run with --only fsck once it exists`
      log(note)
      rows.push({...timeRow('fsck', null, 'e2fsck -fn', null, 1.5), note})
    } else {
      if (probe.status !== 0) notes.push(`prism fsck exit ${probe.status} on a freshly imported image: ${probe.stdout.trim().split('\n').slice(0, 5).join('; ')}`)
      const s = measureEach({
        'prism fsck': {run: () => prism(['fsck', '-i', img])},
        ...(e2fsck && fs.existsSync(ext4) ? {'e2fsck -fn': {run: () => hostE2fsckFn(e2fsck, ext4)}} : {}),
      }, {runs: opt.runs, cold: opt.cold, warmup: true})
      results['fsck.prism'] = s['prism fsck']
      if (s['e2fsck -fn']) results['fsck.e2fsck_fn'] = s['e2fsck -fn']
      rows.push({...timeRow('fsck', s['prism fsck'], 'e2fsck -fn', s['e2fsck -fn'] ?? null, 1.5),
        ...(s['e2fsck -fn'] ? {} : {note: 'e2fsck or the ext4 image not available'}),
        ...(probe.status !== 0 ? {note: `prism fsck exit ${probe.status}: found problems on a fresh import`} : {})})
    }
  }

  // ------------------------------------------------------------ cat
  let catInfo: Record<string, number> | undefined
  if (steps.has('cat')) {
    const rel = '/' + tree.catFile
    log(`step cat: prism cat root:${rel} | cat >/dev/null vs cat FILE | cat >/dev/null (${fmtBytes(catSize)})`)
    if (verify) {
      check(sh(`${prismCmd()} cat ${q('root:' + rel)} -i ${q(img)} | cmp - ${q(catPath)}`), 'prism cat | cmp')
      log('verified: prism cat output equals the file')
    }
    const s = measureEach({
      'prism cat': {run: () => check(sh(`${prismCmd()} cat ${q('root:' + rel)} -i ${q(img)} | cat > /dev/null`), 'prism cat')},
      'host cat': {run: () => check(sh(`cat ${q(catPath)} | cat > /dev/null`), 'cat')},
      // Time to the first byte: start-up plus opening the image and the file (information).
      'prism cat first byte': {run: () => run('bash', ['-c', `${prismCmd()} cat ${q('root:' + rel)} -i ${q(img)} | head -c 1 > /dev/null`])},
    }, {runs: opt.runs, cold: opt.cold, warmup: true})
    results['cat.prism_first_byte'] = s['prism cat first byte']
    results['cat.prism'] = s['prism cat']
    results['cat.host'] = s['host cat']
    const mbps = (secs: number): number => catSize / MiB / secs
    const pT = mbps(s['prism cat'].median)
    const hT = mbps(s['host cat'].median)
    const startup = s['prism cat first byte'].median
    const streaming = s['prism cat'].median - startup
    catInfo = {prismMiBps: pT, hostMiBps: hT, prismFirstByteSecs: startup, ...(streaming > 0 ? {prismMiBpsLessStartup: mbps(streaming)} : {})}
    const ratio = pT / hT
    rows.push({step: 'cat (throughput)', prism: s['prism cat'].median, baseline: 'cat | same pipe', base: s['host cat'].median,
      ratio, goal: '>= 0.90', pass: ratio >= 0.9,
      note: `prism ${pT.toFixed(0)} MiB/s vs host ${hT.toFixed(0)} MiB/s; ratio is throughput prism/host` +
        `; prism's first byte after ${fmtSecs(startup)} s` +
        (catInfo.prismMiBpsLessStartup ? `, then ${catInfo.prismMiBpsLessStartup.toFixed(0)} MiB/s` : '')})
  }

  // ------------------------------------------------------------ export
  if (steps.has('export')) {
    log('step export: prism cp -r root:/ OUT vs cp -a TREE OUT')
    // Export reads the tree (cp -a) or the prism image; the ext4 image only takes memory.
    dropFileCache(ext4)
    let outPrism = ''
    const s = measureEach({
      'prism export': {
        before: (i) => { if (outPrism && !keepCopies) bulkRemove(outPrism); outPrism = dest('export-prism', i); bulkRemove(outPrism) },
        run: () => check(prism(['cp', '-r', 'root:/', outPrism, '-i', img]), 'prism cp -r (export)'),
        createsInodes: true,
      },
      'cp -a': {
        before: (i) => bulkRemove(dest('export-cp', i)),
        run: (i) => hostCpA(tree.dir, dest('export-cp', i)),
        after: (i) => { if (!keepCopies) bulkRemove(dest('export-cp', i)) },
        createsInodes: true,
      },
    }, {runs: opt.runs, cold: opt.cold, settleDir: work})
    results['export.prism'] = s['prism export']
    results['export.cp_a'] = s['cp -a']
    rows.push(timeRow('export', s['prism export'], 'cp -a', s['cp -a'], 1.0))
    if (verify) {
      log('verifying (untimed): diff -r --no-dereference TREE EXPORT')
      const d = run('diff', ['-r', '--no-dereference', tree.dir, outPrism])
      if (d.status === 0) log('verified: export is identical to the tree')
      else { notes.push(`MISMATCH: export differs from the tree: ${d.stdout.split('\n').slice(0, 5).join('; ')}`); log(notes.at(-1)!) }
    }
    bulkRemove(outPrism)
    bulkRemove(keepDir)
  }

  // ------------------------------------------------------------ report
  const out = (s: string): void => { process.stdout.write(s + '\n') }
  const mi = machineInfo(opt.base)
  out('')
  out(`Prism foundation benchmark — medians of ${opt.runs} runs, ${opt.cold ? 'COLD cache (sync + drop_caches before each timed command)' : 'warm cache'}` +
    (settleSecs ? `, ${settleSecs} s inode-reuse wait after deletions` : ''))
  out(`tree: ${tree.files} files, ${tree.dirs} dirs, ${tree.symlinks} symlinks, ${tree.hardlinks} hard links, ${fmtBytes(tree.bytes)} ` +
    `(median file ${fmtBytes(tree.sizeQuantiles.p50)}, p99 ${fmtBytes(tree.sizeQuantiles.p99)}, largest ${fmtBytes(tree.largest[0])}, cat file ${fmtBytes(catSize)})${given ? ` — the tree ${tree.dir} as it is` : ''}`)
  out(`prism: ${version}${opt.values['no-snapshot'] ? ' (work tree)' : ' (snapshot of the build taken at start)'}; images: ${fmtBytes(imgSize)}; machine: ${mi.nproc} CPUs (${mi.cpu}), ${mi.memory} RAM, node ${mi.node}, ${mi.kernel}, host fs ${mi.hostFs}`)
  out('')
  printTable(rows, out)
  out('')
  out('samples (s):')
  for (const [k, v] of Object.entries(results)) {
    out(`  ${k.padEnd(22)} median ${fmtSecs(v.median).padStart(8)}  min ${fmtSecs(v.min).padStart(8)}  max ${fmtSecs(v.max).padStart(8)}` +
      `  cpu ${v.cpu ? fmtSecs(v.cpu.median).padStart(8) : '       -'}  [${v.runs.join(', ')}]`)
  }
  out('  (cpu = median user+system CPU seconds of the command and its children; wall time is what the goals judge)')
  for (const n of notes) out(`NOTE: ${n}`)
  const file = writeResults('foundation', {
    when: new Date().toISOString(), prism: version, runs: opt.runs, settleSecs, keepCopies, cache: opt.cold ? 'cold' : 'warm', steps: [...steps],
    machine: mi, tree: {...tree}, imageBytes: imgSize, inodes: inodes ?? 'default',
    rows, samples: results, cat: catInfo, notes,
  })
  out(`\nresults written to ${path.relative(process.cwd(), file) || file}`)

  if (opt.values.keep) log(`kept ${work}`)
  else rm(work)
  // A tree given with --tree is the user's: never deleted, whatever --clean-tree says.
  if (given) log(`the tree ${tree.dir} was only read`)
  else if (opt.values['clean-tree']) { rm(tree.dir); rm(`${tree.dir}.json`) } else log(`tree kept for reuse: ${tree.dir} (--clean-tree to delete)`)
  const failed = rows.some((r) => r.pass === false) || notes.some((n) => n.startsWith('MISMATCH'))
  return opt.values.strict && failed ? 1 : 0
}

/**
 * The figures of an existing tree (--tree DIR), as ensureTree gives them for a generated one:
 * regular files are counted once per inode (further names are hard links), bytes and space
 * once per inode, and the cat test takes the largest regular file.
 */
function statTree(dir: string): TreeStats {
  if (!fs.statSync(dir).isDirectory()) throw new Error(`--tree ${dir}: not a directory`)
  log(`reading the figures of ${dir}`)
  const t0 = process.hrtime.bigint()
  const seen = new Set<string>()
  const sizes: number[] = []
  let dirs = 0, symlinks = 0, hardlinks = 0, bytes = 0, alloc = 0, maxDepth = 0, best = -1, catFile = ''
  const walk = (d: string, rel: string, depth: number): void => {
    maxDepth = Math.max(maxDepth, depth)
    for (const name of fs.readdirSync(d)) {
      const p = path.join(d, name)
      const r = rel ? `${rel}/${name}` : name
      const st = fs.lstatSync(p, {bigint: false})
      if (st.isDirectory()) { dirs++; alloc += 4096; walk(p, r, depth + 1); continue }
      if (st.isSymbolicLink()) { symlinks++; alloc += 4096; continue }
      if (!st.isFile()) continue
      const key = `${st.dev}:${st.ino}`
      if (seen.has(key)) { hardlinks++; continue }
      seen.add(key)
      sizes.push(st.size)
      bytes += st.size
      alloc += st.blocks * 512
      if (st.size > best) { best = st.size; catFile = r }
    }
  }
  walk(dir, '', 0)
  if (!catFile) throw new Error(`--tree ${dir}: holds no regular file`)
  const sorted = Float64Array.from(sizes).sort()
  const q = (x: number): number => sorted[Math.min(sorted.length - 1, Math.floor(x * sorted.length))]
  const files = sizes.length
  return {
    dir, spec: {files, dirs, bytes, catSize: best, symlinks, hardlinks, seed: 0}, files, dirs, symlinks, hardlinks, bytes,
    allocBytes: alloc, catFile, largest: Array.from(sorted.slice(-5)).reverse(),
    sizeQuantiles: {p10: q(0.1), p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999)},
    emptyFiles: sizes.filter((x) => x === 0).length, maxDepth, genSeconds: Number(process.hrtime.bigint() - t0) / 1e9,
  }
}

/** What the disk floor runs, as printed in the table. */
const DISK_FLOOR = 'dd oflag=direct conv=fdatasync'

/**
 * The disk alone: `bytes` of zeros written to a new file in 8 MiB direct writes, then one
 * fdatasync, nothing read and nothing built. No import that makes the same bytes durable can
 * beat it by much. Where O_DIRECT is refused (tmpfs), the writes go through the page cache.
 */
function diskFloor(file: string, bytes: number): RunResult {
  const count = String(Math.ceil(bytes / (8 * MiB)))
  const args = (direct: boolean): string[] => ['if=/dev/zero', `of=${file}`, 'bs=8M', `count=${count}`, 'conv=fdatasync', 'status=none', ...(direct ? ['oflag=direct'] : [])]
  const r = run('dd', args(true))
  return r.status === 0 ? r : check(run('dd', args(false)), 'dd (disk floor)')
}

try {
  process.exitCode = main()
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\n`)
  process.exitCode = 2
}

