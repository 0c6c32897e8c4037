// The clone benchmark: how fast a sync clone of a rootfs-like tree is and how little space it
// takes, what a small write into a shared big file costs, and how cheaply many clones of a
// small fileset are made, each next to the host tool that does the nearest job (cp -al,
// cp -a, pwrite + fsync, dd) on the same tree in the same run, as a ratio of medians.
//
//   node --import tsx bench/clone.ts            # ~100,000 files, 15,000 dirs, 5 GiB, 3 runs
//   node --import tsx bench/clone.ts --small    # 2,000 files, 200 MiB, 100 small clones: a smoke test
//
// See bench/README.md ("Clone benchmark") for what each number means and the goals.
import fs from 'node:fs'
import path from 'node:path'
import {
  type Row, type Summary, type TreeSpec, type Unit, GiB, KiB, MiB, Rng, canDropCaches, check, duExtraKiB,
  ensureBuilt, ensureTree, fmtBytes, fmtSecs, fmtValue, hostCpA, hostCpAl, imageSizeFor, inodesFor, loadDist, log,
  machineInfo, measureEach, median, parseCommon, snapshotBuild, parseSize, printSamples, printTable, prism, prismCmd, prismDf, q, requireFree,
  run, sh, summarize, timeRow, timed, treeDirFor, valueRow, writeResults,
} from './lib.js'

type ImageMod = typeof import('../src/fs/image.js')
type CloneMod = typeof import('../src/clone/clone.js')

const USAGE = `Usage: node --import tsx bench/clone.ts [options]

  --small            smoke-test size: 2,000 files, 300 dirs, 200 MiB (64 MiB big file), 100 small clones
  --runs N           timed runs per contender; medians are reported (default 3)
  --cold             sync and drop the page cache before every timed command (needs root)
  --base DIR         work directory (default /tmp/prism-bench)
  --files N          regular files in the tree (default 100000)
  --dirs N           directories (default 15000)
  --bytes SIZE       total file data (default 5G)
  --cat-size SIZE    size of the big shared file written into by the write step (default 1G)
  --seed N           tree generator seed (default 1)
  --only LIST        comma list of steps: clone,write,many (default all; clone also gives the space figure)
  --clones N         clones of the small fileset in the many step (default 1000; 100 with --small)
  --image-size SIZE  size given to prism mkfs for the big tree (default 16G, more if the tree needs it)
  --no-verify        skip the untimed correctness checks
  --regen            rebuild the tree even if a matching one is cached
  --keep             keep images and copies in the work directory
  --clean-tree       delete the generated trees at the end too (they are kept for reuse by default)
  --strict           exit 1 when a goal is missed or a check fails
  --no-snapshot      run bin/ and dist/ in place (default: a private copy made at the start, so a
                     rebuild during the run cannot break it or mix two builds)

Every option can also be given as PRISM_BENCH_<NAME> (PRISM_BENCH_RUNS=5, PRISM_BENCH_SMALL=1...).
`

const STEPS = ['clone', 'write', 'many'] as const
type Step = typeof STEPS[number]

/** The small fileset cloned many times: ~50 files in ~10 directories. */
function smallSpec(seed: number): TreeSpec {
  return {files: 50, dirs: 10, bytes: 1 * MiB, catSize: 64 * KiB, symlinks: 2, hardlinks: 0, seed}
}

async function main(): Promise<number> {
  const opt = parseCommon(USAGE, {
    only: {type: 'string'}, clones: {type: 'string'}, 'image-size': {type: 'string'}, 'no-verify': {type: 'boolean'},
    'clean-tree': {type: 'boolean'}, strict: {type: 'boolean'}, 'no-snapshot': {type: 'boolean'},
  })
  const only = (opt.values.only as string | undefined) ?? process.env.PRISM_BENCH_ONLY
  const steps = new Set<Step>(only ? only.split(',').map((s) => s.trim() as Step) : STEPS)
  for (const s of steps) if (!STEPS.includes(s)) throw new Error(`unknown step '${s}' (steps: ${STEPS.join(', ')})`)
  const verify = !opt.values['no-verify']
  const nClones = Number((opt.values.clones as string | undefined) ?? process.env.PRISM_BENCH_CLONES ?? (opt.small ? 100 : 1000))
  if (!(nClones >= 1)) throw new Error('--clones must be at least 1')
  if (opt.cold && !canDropCaches()) log('--cold asked for, but /proc/sys/vm/drop_caches is not writable: runs will be partly warm')

  ensureBuilt()
  fs.mkdirSync(opt.base, {recursive: true})
  const work = path.join(opt.base, `clone-work-${process.pid}`)
  const rm = (p: string): void => fs.rmSync(p, {recursive: true, force: true})
  rm(work)
  fs.mkdirSync(work, {recursive: true})
  // Run one build throughout: a private copy of bin/ + dist/, immune to rebuilds during the run.
  if (!opt.values['no-snapshot']) log(`using a copy of the build: ${snapshotBuild(path.join(work, 'build'))}`)
  // The library as the CLI runs it (dist/), for the in-process figures.
  const lib = await loadDist<ImageMod>('fs/image.js')
  const {clone} = await loadDist<CloneMod>('clone/clone.js')

  const needBig = steps.has('clone') || steps.has('write')
  const tree = needBig ? ensureTree(treeDirFor(opt.base, opt.spec), opt.spec, {regen: opt.regen}) : null
  const sspec = smallSpec(opt.spec.seed)
  const small = steps.has('many') ? ensureTree(treeDirFor(opt.base, sspec), sspec, {regen: opt.regen}) : null

  const imgSize = opt.values['image-size'] ? parseSize(opt.values['image-size'] as string)
    : tree ? (opt.small ? imageSizeFor(tree) : Math.max(16 * GiB, imageSizeFor(tree))) : 0
  const inodes = tree ? inodesFor(tree, imgSize) : undefined
  if (tree) {
    // Peak: the image (~ the tree), a cp -a copy, a host copy of the big file, slack.
    const need = Math.ceil(tree.allocBytes * 1.1) + (steps.has('clone') ? tree.allocBytes : 0) + (steps.has('write') ? opt.spec.catSize : 0) + GiB
    requireFree(opt.base, need, `an image and a copy of a ${fmtBytes(tree.allocBytes)} tree`)
  }

  const img = path.join(work, 'prism.img')
  const results: Record<string, Summary> = {}
  const units: Record<string, Unit> = {}
  const rows: Row[] = []
  const notes: string[] = []
  const extra: Record<string, unknown> = {}
  const note = (msg: string): void => { notes.push(msg); log(msg) }
  // A step that fails is reported (NOTE, a SKIP row) and the others still run and are reported.
  const attempt = (step: string, fn: () => void): void => {
    try {
      fn()
    } catch (e) {
      const msg = (e as Error).message.split('\n').slice(0, 3).join(' / ')
      note(`FAILED: step ${step}: ${msg}`)
      rows.push({step: `${step} (failed)`, prism: null, baseline: '-', base: null, ratio: null, goal: '-', pass: false, note: msg.slice(0, 200)})
    }
  }
  const put = (key: string, xs: number[], unit: Unit): Summary => {
    results[key] = summarize(xs)
    units[key] = unit
    return results[key]
  }
  const pct = (bytes: number): number => (tree ? (bytes / tree.bytes) * 100 : NaN)
  const filesets = (image: string): number => prismDf(image).filesets
  const deleteFs = (image: string, name: string): void => { check(prism(['fileset', 'delete', name, '-i', image]), `prism fileset delete ${name}`) }

  log(`runs: ${opt.runs}; cache: ${opt.cold ? 'cold' : 'warm'}; steps: ${[...steps].join(', ')}`)

  // ------------------------------------------------------------ start-up (information)
  log('start-up: prism --version vs node -e 0')
  const su = measureEach({
    prism: {run: () => check(prism(['--version']), 'prism --version').secs},
    node: {run: () => check(run(process.execPath, ['-e', '0']), 'node -e 0').secs},
  }, {runs: Math.max(5, opt.runs), cold: false})
  results['startup.prism'] = su.prism
  results['startup.node'] = su.node
  rows.push(timeRow('start-up (prism --version)', su.prism, 'node -e 0', su.node, null))
  const startup = su.prism.median

  // ------------------------------------------------------------ the big image (untimed)
  if (tree) {
    log(`tree ${tree.dir}: ${tree.files} files, ${tree.dirs} dirs, ${tree.symlinks} symlinks, ${tree.hardlinks} hard links, ${fmtBytes(tree.bytes)}`)
    log(`setting up (untimed): prism mkfs ${fmtBytes(imgSize)} + prism cp -r TREE root:/`)
    check(prism(['mkfs', img, '--size', `${Math.ceil(imgSize / MiB)}M`, '--force', ...(inodes ? ['--inodes', String(inodes)] : [])]), 'prism mkfs')
    const imp = check(prism(['cp', '-r', '--json', tree.dir, 'root:/', '-i', img]), 'prism cp -r (import)')
    const st = JSON.parse(imp.stdout) as {files: number, bytes: number}
    log(`imported in ${fmtSecs(imp.secs)} s: ${st.files} files, ${fmtBytes(st.bytes)}`)
    extra.importSecs = imp.secs
    if (st.files !== tree.files || st.bytes !== tree.bytes) note(`MISMATCH: import copied ${st.files} files / ${st.bytes} bytes, tree has ${tree.files} / ${tree.bytes}`)
  }

  // ------------------------------------------------------------ 1+2. sync clone: time and space
  if (tree && steps.has('clone')) attempt('clone', () => {
    log('step clone: prism clone root cN vs cp -al TREE DEST vs cp -a TREE DEST (and the library in-process)')
    const dest = path.join(work, 'cp-dest')
    const space: number[] = []
    const inodesUsed: number[] = []
    const libSpace: number[] = []
    const hostSpace: number[] = []
    let before = prismDf(img)
    const base = before.blocksUsed
    const s = measureEach({
      'prism clone': {
        before: () => { before = prismDf(img) },
        run: (i) => {
          const r = check(prism(['clone', 'root', `c${i + 1}`, '--mode', 'sync', '-i', img]), 'prism clone')
          if (r.stdout.trim() !== `c${i + 1}`) note(`MISMATCH: prism clone printed '${r.stdout.trim()}', expected 'c${i + 1}'`)
          return r
        },
        after: (i) => {
          const after = prismDf(img)
          space.push((after.blocksUsed - before.blocksUsed) * after.blockSize)
          inodesUsed.push(after.inodesUsed - before.inodesUsed)
          if (verify && i === 0) {
            const list = JSON.parse(check(prism(['fileset', 'list', '--json', '-i', img]), 'prism fileset list').stdout) as Array<{name: string, files: number, dirs: number, unique: number, referenced: number}>
            const c = list.find((f) => f.name === 'c1')
            const r = list.find((f) => f.name === 'root')
            extra.cloneFileset = c
            if (!c || !r || c.files !== r.files || c.dirs !== r.dirs) note(`MISMATCH: clone c1 has ${c?.files}/${c?.dirs} files/dirs, root ${r?.files}/${r?.dirs}`)
            else log(`verified: c1 has root's ${c.files} files and ${c.dirs} dirs`)
          }
          deleteFs(img, `c${i + 1}`)
          const back = prismDf(img).blocksUsed
          if (back !== base) note(`deleting c${i + 1} left ${back - base} blocks more than before the clone`)
        },
      },
      'prism clone (library)': {
        run: (i) => {
          let free0 = 0
          let free1 = 0
          const t = timed(() => lib.withImage(img, {write: true}, (vol) => {
            free0 = vol.sb.freeBlocks
            clone(vol, {fileset: 'root', path: '/'}, {fileset: `l${i + 1}`})
            vol.commit()
            free1 = vol.sb.freeBlocks
          }))
          libSpace.push((free0 - free1) * 4096)
          return t.secs
        },
        after: (i) => { deleteFs(img, `l${i + 1}`) },
      },
      'cp -al': {
        before: () => rm(dest),
        run: () => hostCpAl(tree.dir, dest),
        after: () => { hostSpace.push(duExtraKiB(tree.dir, dest) * KiB); rm(dest) },
      },
      'cp -a': {before: () => rm(dest), run: () => hostCpA(tree.dir, dest), after: () => rm(dest)},
    }, {runs: opt.runs, cold: opt.cold})
    results['clone.prism'] = s['prism clone']
    results['clone.prism_library'] = s['prism clone (library)']
    results['clone.cp_al'] = s['cp -al']
    results['clone.cp_a'] = s['cp -a']
    const sp = put('clone.space_bytes', space, 'bytes')
    const lsp = put('clone.space_bytes_library', libSpace, 'bytes')
    const hsp = put('clone.cp_al_space_bytes', hostSpace, 'bytes')
    rows.push(timeRow('sync clone (CLI)', s['prism clone'], 'cp -al', s['cp -al'], 1.0))
    rows.push(timeRow('sync clone (CLI)', s['prism clone'], 'cp -a', s['cp -a'], null))
    rows.push(timeRow('sync clone (library, 1 open)', s['prism clone (library)'], 'cp -al', s['cp -al'], null,
      `open + clone + commit + close in this process; CLI minus start-up (${fmtSecs(startup)} s): ${fmtSecs(s['prism clone'].median - startup)} s`))
    rows.push(valueRow('clone space, % of tree data', pct(sp.median), '%', 'cp -al (du)', pct(hsp.median), {max: 1.0, text: '<= 1 %'},
      `${fmtBytes(sp.median)} for ${fmtBytes(tree.bytes)} of data (df blocksUsed after - before); ${median(inodesUsed)} new inodes; ` +
      `library clone: ${fmtBytes(lsp.median)}; cp -al: ${fmtBytes(hsp.median)} (du -sk TREE COPY); the Prism paper measured 1.3 %`))
    extra.cloneInodes = inodesUsed
  })

  // ------------------------------------------------------------ 3. 4 KiB write into a shared big file
  if (tree && steps.has('write')) attempt('write', () => {
    const rel = '/' + tree.catFile
    const size = opt.spec.catSize
    const off = Math.floor(size / 2 / 4096) * 4096
    const buf = new Rng(opt.spec.seed ^ 0x5eed).bytes(4096)
    const bufFile = path.join(work, 'write-4k.bin')
    fs.writeFileSync(bufFile, buf)
    const hostCopy = path.join(work, 'host-bigfile.bin')
    const orig = path.join(tree.dir, tree.catFile)
    log(`step write: 4 KiB at offset ${off} of ${rel} (${fmtBytes(size)}) in a fresh clone; host copy of the file made (untimed)`)
    check(run('cp', [orig, hostCopy]), 'cp big file')
    const libTime: number[] = []
    const libSpace: number[] = []
    const libDf: number[] = []
    const cliSpace: number[] = []
    let dfBefore = 0
    const s = measureEach({
      'prism 4K write (library)': {
        before: (i) => {
          check(prism(['clone', 'root', `w${i + 1}`, '--mode', 'sync', '-i', img]), 'prism clone')
          dfBefore = prismDf(img).blocksUsed
        },
        run: (i) => {
          let free0 = 0
          let free1 = 0
          const t = timed(() => lib.withImage(img, {write: true}, (vol) => {
            free0 = vol.sb.freeBlocks
            const ns = lib.namespace(vol, `w${i + 1}`)
            const inode = ns.resolveOwned(rel)
            ns.writeInode(inode, off, buf)
            vol.commit()
            free1 = vol.sb.freeBlocks
          }))
          libSpace.push((free0 - free1) * 4096)
          libTime.push(t.secs * 1000)
          return t.secs
        },
        after: (i) => {
          libDf.push((prismDf(img).blocksUsed - dfBefore) * 4096)
          if (verify && i === 0) {
            // The clone's file differs from the original in those 4 KiB only; root's is untouched.
            const d = sh(`${prismCmd()} cat ${q(`w1:${rel}`)} -i ${q(img)} | cmp -l - ${q(orig)} | awk 'NR==1{f=$1} {l=$1; n++} END{print f+0, l+0, n+0}'`)
            const [first, last, n] = d.stdout.trim().split(/\s+/).map(Number)
            const old = Buffer.alloc(4096)
            const fd = fs.openSync(orig, 'r')
            fs.readSync(fd, old, 0, 4096, off)
            fs.closeSync(fd)
            let expected = 0
            for (let k = 0; k < 4096; k++) if (old[k] !== buf[k]) expected++
            const inRange = n === expected && first >= off + 1 && last <= off + 4096
            const rootSame = sh(`${prismCmd()} cat ${q(`root:${rel}`)} -i ${q(img)} | cmp -s - ${q(orig)}`).status === 0
            // Without pipefail: head stops reading early, so prism cat may die of SIGPIPE.
            const cmpBuf = run('bash', ['-c', `${prismCmd()} cat ${q(`w1:${rel}`)} -i ${q(img)} | tail -c +${off + 1} | head -c 4096 | cmp -s - ${q(bufFile)}`]).status === 0
            if (!inRange || !rootSame || !cmpBuf) {
              note(`MISMATCH: after the 4 KiB write: ${n} bytes differ from the original (expected ${expected}; first ${first}, last ${last}, ` +
                `expected within ${off + 1}..${off + 4096}), written block ${cmpBuf ? 'reads back' : 'does NOT read back'}, root's file ${rootSame ? 'unchanged' : 'CHANGED'}`)
            } else log(`verified: the clone's file differs from the original in exactly the ${n} bytes the 4 KiB write changed, which read back; root's file is unchanged`)
          }
          deleteFs(img, `w${i + 1}`)
        },
      },
      'host pwrite+fsync': {
        run: () => timed(() => {
          const fd = fs.openSync(hostCopy, 'r+')
          fs.writeSync(fd, buf, 0, buf.length, off)
          fs.fsyncSync(fd)
          fs.closeSync(fd)
        }).secs,
      },
      'prism write --append (CLI)': {
        before: (i) => {
          check(prism(['clone', 'root', `a${i + 1}`, '--mode', 'sync', '-i', img]), 'prism clone')
          dfBefore = prismDf(img).blocksUsed
        },
        run: (i) => check(sh(`${prismCmd()} write --append ${q(`a${i + 1}:${rel}`)} -i ${q(img)} < ${q(bufFile)}`), 'prism write --append'),
        after: (i) => {
          cliSpace.push((prismDf(img).blocksUsed - dfBefore) * 4096)
          deleteFs(img, `a${i + 1}`)
        },
      },
      'dd append+fsync': {
        run: () => check(sh(`dd if=${q(bufFile)} of=${q(hostCopy)} bs=4096 count=1 oflag=append conv=notrunc,fsync status=none`), 'dd'),
      },
    }, {runs: opt.runs, cold: opt.cold})
    const ms = (x: Summary): Summary => ({median: x.median * 1000, min: x.min * 1000, max: x.max * 1000, runs: x.runs.map((v) => Number((v * 1000).toFixed(3)))})
    results['write.prism_library_ms'] = ms(s['prism 4K write (library)']); units['write.prism_library_ms'] = 'ms'
    results['write.host_pwrite_fsync_ms'] = ms(s['host pwrite+fsync']); units['write.host_pwrite_fsync_ms'] = 'ms'
    results['write.prism_cli_append_ms'] = ms(s['prism write --append (CLI)']); units['write.prism_cli_append_ms'] = 'ms'
    results['write.dd_append_fsync_ms'] = ms(s['dd append+fsync']); units['write.dd_append_fsync_ms'] = 'ms'
    const lsp = put('write.space_bytes_library', libSpace, 'bytes')
    const ldf = put('write.space_bytes_library_df', libDf, 'bytes')
    const csp = put('write.space_bytes_cli_append', cliSpace, 'bytes')
    const big = fmtBytes(size)
    rows.push(valueRow(`4 KiB write in shared ${big} file: time (library)`, results['write.prism_library_ms'].median, 'ms',
      'pwrite+fsync', results['write.host_pwrite_fsync_ms'].median, {max: 50, text: '<= 50 ms'},
      `open + resolveOwned + writeInode at offset ${off} + commit + close, in this process`))
    rows.push(valueRow(`4 KiB write in shared ${big} file: new space`, lsp.median, 'bytes', '-', null, {max: 64 * KiB, text: '<= 64 KiB'},
      `sb.freeBlocks before - after; df blocksUsed after - before (the clone made before it not counted): ${fmtBytes(ldf.median)}`))
    rows.push(valueRow('4 KiB append to it (CLI write --append): time', results['write.prism_cli_append_ms'].median, 'ms',
      'dd append+fsync', results['write.dd_append_fsync_ms'].median, null,
      `no CLI writes at an offset, so an append stands in; less prism start-up (${fmtSecs(startup)} s): ${fmtValue(results['write.prism_cli_append_ms'].median - startup * 1000, 'ms')}`))
    rows.push(valueRow('4 KiB append to it (CLI write --append): new space', csp.median, 'bytes', '-', null, {max: 64 * KiB, text: '<= 64 KiB'}))
    if (size !== GiB) notes.push(`the shared file is ${big}, not 1 GiB (--cat-size${opt.small ? ', --small' : ''})`)
    extra.write = {offset: off, fileBytes: size, libraryMs: libTime}
  })

  // ------------------------------------------------------------ 4. many clones of a small fileset
  if (small && steps.has('many')) attempt('many', () => {
    const simg = path.join(work, 'small.img')
    const sdest = path.join(work, 'cp-many')
    log(`step many: ${nClones} clones of a fileset of ${small.files} files / ${small.dirs} dirs (${fmtBytes(small.bytes)}): CLI, library, cp -al`)
    const prep = (): void => {
      rm(simg)
      check(prism(['mkfs', simg, '--size', '1G', '--force']), 'prism mkfs (small)')
      check(prism(['cp', '-r', small.dir, 'root:/', '-i', simg]), 'prism cp -r (small)')
    }
    const expectFilesets = (what: string): void => {
      if (!verify) return
      const n = filesets(simg)
      if (n !== nClones + 1) note(`MISMATCH: ${what} left ${n} filesets, expected ${nClones + 1}`)
    }
    const s = measureEach({
      'prism clone xN (CLI)': {
        before: prep,
        run: () => check(sh(`for i in $(seq 1 ${nClones}); do ${prismCmd()} clone root c$i -i ${q(simg)} > /dev/null || exit 1; done`), 'prism clone loop'),
        after: () => expectFilesets('the CLI loop'),
      },
      'prism clone xN (library)': {
        before: prep,
        run: () => timed(() => lib.withImage(simg, {write: true}, (vol) => {
          for (let i = 1; i <= nClones; i++) {
            clone(vol, {fileset: 'root', path: '/'}, {fileset: `c${i}`})
            vol.commit() // each clone its own durable transaction, as with the CLI
          }
        })).secs,
        after: () => expectFilesets('the library loop'),
      },
      'cp -al xN': {
        before: () => { rm(sdest); fs.mkdirSync(sdest) },
        run: () => check(sh(`for i in $(seq 1 ${nClones}); do cp -al ${q(small.dir)} ${q(sdest)}/c$i || exit 1; done`), 'cp -al loop'),
        after: () => rm(sdest),
      },
    }, {runs: opt.runs, cold: opt.cold})
    rm(simg)
    const per = (x: Summary): Summary => ({median: (x.median / nClones) * 1000, min: (x.min / nClones) * 1000, max: (x.max / nClones) * 1000,
      runs: x.runs.map((v) => Number(((v / nClones) * 1000).toFixed(3)))})
    results['many.prism_cli_total'] = s['prism clone xN (CLI)']
    results['many.prism_library_total'] = s['prism clone xN (library)']
    results['many.cp_al_total'] = s['cp -al xN']
    const pc = per(s['prism clone xN (CLI)'])
    const pl = per(s['prism clone xN (library)'])
    const hc = per(s['cp -al xN'])
    results['many.prism_cli_per_clone_ms'] = pc; units['many.prism_cli_per_clone_ms'] = 'ms'
    results['many.prism_library_per_clone_ms'] = pl; units['many.prism_library_per_clone_ms'] = 'ms'
    results['many.cp_al_per_clone_ms'] = hc; units['many.cp_al_per_clone_ms'] = 'ms'
    rows.push(valueRow(`${nClones} small clones: per clone (CLI)`, pc.median, 'ms', `cp -al x${nClones}`, hc.median, null,
      `${fmtSecs(s['prism clone xN (CLI)'].median)} s for ${nClones} invocations vs ${fmtSecs(s['cp -al xN'].median)} s; ` +
      `less prism start-up (${fmtSecs(startup)} s): ${fmtValue(pc.median - startup * 1000, 'ms')} per clone`))
    rows.push(valueRow(`${nClones} small clones: per clone (library)`, pl.median, 'ms', `cp -al x${nClones}`, hc.median, null,
      `${fmtSecs(s['prism clone xN (library)'].median)} s in one open, a commit after each clone`))
    extra.small = {files: small.files, dirs: small.dirs, symlinks: small.symlinks, bytes: small.bytes, clones: nClones}
  })

  // ------------------------------------------------------------ report
  const out = (s: string): void => { process.stdout.write(s + '\n') }
  const mi = machineInfo(opt.base)
  out('')
  out(`Prism clone benchmark — medians of ${opt.runs} runs, ${opt.cold ? 'COLD cache (sync + drop_caches before each timed command)' : 'warm cache'}; ` +
    'CLI figures are wall-clock around `node bin/run.js …` (start-up included), library figures in this process on dist/')
  if (tree) {
    out(`tree: ${tree.files} files, ${tree.dirs} dirs, ${tree.symlinks} symlinks, ${tree.hardlinks} hard links, ${fmtBytes(tree.bytes)} ` +
      `(median file ${fmtBytes(tree.sizeQuantiles.p50)}, big shared file ${fmtBytes(opt.spec.catSize)}); image ${fmtBytes(imgSize)}`)
  }
  if (small) out(`small fileset: ${small.files} files, ${small.dirs} dirs, ${small.symlinks} symlinks, ${fmtBytes(small.bytes)}; ${nClones} clones`)
  out(`machine: ${mi.nproc} CPUs (${mi.cpu}), ${mi.memory} RAM, node ${mi.node}, ${mi.kernel}, host fs ${mi.hostFs}`)
  out('')
  printTable(rows, out)
  out('')
  out('samples:')
  printSamples(results, units, out)
  for (const n of notes) out(`NOTE: ${n}`)
  const file = writeResults('clone', {
    when: new Date().toISOString(), runs: opt.runs, cache: opt.cold ? 'cold' : 'warm', steps: [...steps],
    machine: mi, tree: tree ? {...tree} : null, imageBytes: imgSize, inodes: inodes ?? 'default',
    rows, samples: results, units, notes, ...extra,
  })
  out(`\nresults written to ${path.relative(process.cwd(), file) || file}`)

  if (opt.keep) log(`kept ${work}`)
  else rm(work)
  if (opt.values['clean-tree']) {
    for (const t of [tree, small]) if (t) { rm(t.dir); rm(`${t.dir}.json`) }
  }
  const failed = rows.some((r) => r.pass === false) || notes.some((n) => n.startsWith('MISMATCH') || n.startsWith('FAILED'))
  return opt.values.strict && failed ? 1 : 0
}

try {
  process.exitCode = await main()
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).stack ?? (e as Error).message}\n`)
  process.exitCode = 2
}
