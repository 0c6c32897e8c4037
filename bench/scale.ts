// The scale benchmark (issue 19): how Prism's costs grow with the number of filesets, the
// depth of a chain of clones, the size of the image and the number of files, each printed as
// a table of medians next to what it is compared with (the same command at a small scale, or
// the host tool that does the nearest job, in the same run).
//
//   node --import tsx bench/scale.ts                       # everything, full size (hours on 2 cores)
//   node --import tsx bench/scale.ts --only clones,chain   # parts
//   node --import tsx bench/scale.ts --small               # a smoke test: every part, small counts
//
// Parts:
//   clones   10,000 clones of a 1,000-file fileset, lazy and sync: one `prism clone` (CLI and
//            in-process) at 1; 1,000; 5,000 and 10,000 existing filesets, the space each takes;
//            `fileset list`, `df`, `status`, `fsck` at 10,000; a write to the source after them.
//   chain    chains 1,000 deep (each a clone of the previous), lazy and sync: `prism cat` of a
//            deep file at depth 1, 10, 100, 1,000, first and second access; a lazy chain 10,000 deep.
//   big      a 1 TiB sparse image: mkfs time, disk use, df and fsck, empty and with a tree;
//            16 TiB works or is refused before anything is written.
//   list     `fileset list` (with and without --no-space and --json) and `df` at 10,000 lazy
//            (or sync: --list-modes) clones, through bin/run.js's fast path and through oclif
//            alone, in the same run; the clones are made in one process (seconds for lazy ones),
//            so this part is the quick one to rerun after a change to the listing
//            (--list-image keeps the images between runs).
//   million  1,000,000 files (1,000 directories of 1,000, plus one of 100,000): import next to
//            cp -a + sync and mke2fs -d (with resident memory); ls of the big directory and cat
//            of a file in it; an async clone (the background expander's time) and a sync clone;
//            fsck next to e2fsck -fn.
//
// See bench/README.md ("Scale benchmark") for the goals and the last figures.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {
  type Row, type RunResult, type Summary, type TreeSpec, GiB, KiB, MiB, Rng, check, ensureBuilt, ensureTree, fmtBytes, fmtSecs,
  PRISM_BIN, gitVersion, loadDist, log, machineInfo, measureEach, parseCommon, printSamples, printTable, prism, prismCmd, prismDf, q,
  requireFree, run, sh, snapshotBuild, summarize, timeRow, timed, treeDirFor, valueRow, which, writeResults,
} from './lib.js'

type ImageMod = typeof import('../src/fs/image.js')
type CloneMod = typeof import('../src/clone/clone.js')

const USAGE = `Usage: node --import tsx bench/scale.ts [options]

  --only LIST        parts: clones,chain,big,million,list (default all but list, which
                     clones repeats quickly)
  --small            smoke test: 1,000 clones, chains 100 deep, 20,000 files
  --runs N           timed runs per figure; medians are reported (default 3)
  --clones N         clones in the clones part (default 10000)
  --depth N          chain depth (default 1000); --long-chain N: the lazy chain that must work (default 10000)
  --list-modes LIST  the list part's clones: lazy, sync or both (default lazy)
  --list-image NAME  the list part's images, NAME-lazy.img and NAME-sync.img: made when
                     missing, kept and reused otherwise
  --files N          files in the million part, in directories of 1,000 (default 1000000; plus one
                     directory of a tenth as many)
  --base DIR         work directory (default /tmp/prism-bench)
  --keep             keep images and trees
  --strict           exit 1 when a goal is missed
  --no-snapshot      run bin/ and dist/ in place

Every option can also be given as PRISM_BENCH_<NAME>.
`

const PARTS = ['clones', 'chain', 'big', 'million', 'list'] as const
type Part = typeof PARTS[number]
/** The parts run when --only is not given (list repeats a part of clones, on its own image). */
const DEFAULT_PARTS: Part[] = ['clones', 'chain', 'big', 'million']

/** The fileset cloned: 1,000 files in 100 directories, small files. */
function thousandSpec(): TreeSpec {
  return {files: 1000, dirs: 100, bytes: 8 * MiB, catSize: 256 * KiB, symlinks: 20, hardlinks: 10, seed: 19}
}

/** Seconds of a CLI run that must succeed. */
function secs(r: RunResult, what: string): number {
  return check(r, what).secs
}

/** A run under GNU time's %M: wall seconds and peak resident memory (bytes) of the command. */
function withRss(cmd: string, args: string[]): {secs: number, rss: number} {
  const f = path.join(os.tmpdir(), `prism-scale-rss-${process.pid}`)
  const r = check(run('/usr/bin/time', ['-f', '%M', '-o', f, cmd, ...args]), `${path.basename(cmd)} ${args[0] ?? ''}`)
  const kb = Number(fs.readFileSync(f, 'utf8').trim().split('\n').pop())
  fs.rmSync(f, {force: true})
  return {secs: r.secs, rss: kb * KiB}
}

async function main(): Promise<number> {
  const opt = parseCommon(USAGE, {
    only: {type: 'string'}, 'list-image': {type: 'string'}, 'list-modes': {type: 'string'}, clones: {type: 'string'}, depth: {type: 'string'}, 'long-chain': {type: 'string'},
    strict: {type: 'boolean'}, 'no-snapshot': {type: 'boolean'},
  })
  const v = opt.values
  const env = (k: string): string | undefined => process.env[`PRISM_BENCH_${k}`]
  const only = (v.only as string | undefined) ?? env('ONLY')
  const parts = new Set<Part>(only ? only.split(',').map((s) => s.trim() as Part) : DEFAULT_PARTS)
  for (const p of parts) if (!PARTS.includes(p)) throw new Error(`unknown part '${p}' (parts: ${PARTS.join(', ')})`)
  const nClones = Number((v.clones as string | undefined) ?? env('CLONES') ?? (opt.small ? 1000 : 10000))
  const depth = Number((v.depth as string | undefined) ?? env('DEPTH') ?? (opt.small ? 100 : 1000))
  const longChain = Number((v['long-chain'] as string | undefined) ?? env('LONG_CHAIN') ?? (opt.small ? 1000 : 10000))
  const nFiles = Number((v.files as string | undefined) ?? env('FILES') ?? (opt.small ? 20000 : 1_000_000))
  const checkpoints = [1, ...[0.1, 0.5, 1].map((x) => Math.round(nClones * x))].filter((c, i, a) => a.indexOf(c) === i)
  const first0 = checkpoints[0]
  const depths = [1, 10, 100, 1000, 10000].filter((d) => d <= depth)
  const listModes = ((v['list-modes'] as string | undefined) ?? env('LIST_MODES') ?? 'lazy').split(',').map((m) => m.trim() as 'lazy' | 'sync')
  for (const m of listModes) if (m !== 'lazy' && m !== 'sync') throw new Error(`unknown --list-modes '${m}' (lazy, sync)`)

  ensureBuilt()
  const work = path.join(opt.base, `scale-work-${process.pid}`)
  const rm = (p: string): void => fs.rmSync(p, {recursive: true, force: true})
  rm(work)
  fs.mkdirSync(work, {recursive: true})
  if (!v['no-snapshot']) log(`using a copy of the build: ${snapshotBuild(path.join(work, 'build'))}`)
  const lib = await loadDist<ImageMod>('fs/image.js')
  const {clone} = await loadDist<CloneMod>('clone/clone.js')

  const rows: Row[] = []
  const results: Record<string, Summary> = {}
  const notes: string[] = []
  const extra: Record<string, unknown> = {}
  const note = (m: string): void => { notes.push(m); log(m) }
  const attempt = (part: string, fn: () => void): void => {
    try {
      fn()
    } catch (e) {
      const msg = (e as Error).message.split('\n').slice(0, 3).join(' / ')
      note(`FAILED: ${part}: ${msg}`)
      rows.push({step: `${part} (failed)`, prism: null, baseline: '-', base: null, ratio: null, goal: '-', pass: false, note: msg.slice(0, 200)})
    }
  }
  const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ')
  log(`load average at start: ${load()}; runs ${opt.runs}; parts ${[...parts].join(', ')}`)
  extra.loadStart = os.loadavg()
  /** Runs `fn` `runs` times (untimed `before` each), returns the summary of what it returns. */
  const sample = (key: string, fn: (i: number) => number, before?: (i: number) => void, runs = opt.runs): Summary => {
    const xs: number[] = []
    for (let i = 0; i < runs; i++) {
      before?.(i)
      xs.push(fn(i))
      log(`  ${key} run ${i + 1}/${runs}: ${fmtSecs(xs[i])} s`)
    }
    results[key] = summarize(xs)
    return results[key]
  }
  const cliClone = (img: string, mode: string, name: string): RunResult =>
    check(prism(['clone', 'root', name, '--mode', mode, '--no-background', '-i', img]), `prism clone ${mode}`)
  const del = (img: string, name: string): void => { check(prism(['fileset', 'delete', name, '-i', img]), `prism fileset delete ${name}`) }

  // ------------------------------------------------------------ the 1,000-file fileset
  const thousand = parts.has('clones') || parts.has('chain') || parts.has('big') || parts.has('list') ? ensureTree(treeDirFor(opt.base, thousandSpec()), thousandSpec()) : null
  /** A new image holding the 1,000-file tree in root. */
  const baseImage = (img: string, size: string, extraArgs: string[] = []): void => {
    check(prism(['mkfs', img, '--size', size, '--force', ...extraArgs]), 'prism mkfs')
    check(prism(['cp', '-r', thousand!.dir, 'root:/', '-i', img]), 'prism cp -r')
  }
  /** A deep file of the tree: the longest path. */
  const deepFile = (): string => {
    let best = ''
    const walk = (d: string, rel: string): void => {
      for (const e of fs.readdirSync(d, {withFileTypes: true})) {
        const r = `${rel}/${e.name}`
        if (e.isDirectory()) walk(path.join(d, e.name), r)
        else if (e.isFile() && r.split('/').length > best.split('/').length) best = r
      }
    }
    walk(thousand!.dir, '')
    return best
  }

  // ------------------------------------------------------------ part 1: 10,000 clones
  if (parts.has('clones')) {
    for (const mode of ['lazy', 'sync'] as const) attempt(`clones (${mode})`, () => {
      const img = path.join(work, `clones-${mode}.img`)
      log(`clones (${mode}): image with the 1,000-file fileset, then up to ${nClones} clones`)
      // A sync clone copies the tree's 101 directories (files are shared whole): 10,000 of
      // them need about a million inodes, twice the default for 8 GiB.
      baseImage(img, '8G', ['--inodes', String(Math.max(524288, (nClones + 100) * 200))])
      let have = 1 // root
      const cli: Record<number, Summary> = {}
      const inproc: Record<number, Summary> = {}
      const oneOpen: Record<number, Summary> = {}
      const space: Record<number, number> = {}
      /** in one process: the clones made with 2..6 filesets in the image (the first one reads the table) */
      const early: number[] = []
      for (const c of checkpoints) {
        // Bring the image to c filesets in one process that holds it open, as a program making
        // clones would; the last clones before c are timed one by one (the in-process figure).
        const times: number[] = []
        const t = timed(() => lib.withImage(img, {write: true}, (vol) => {
          for (; have < c; have++) {
            const one = timed(() => {
              clone(vol, {fileset: 'root', path: '/'}, {fileset: `bulk-${have}`}, {mode})
              vol.maybeCommit()
            })
            if (c - have <= Math.max(opt.runs, 5)) times.push(one.secs)
            if (have >= 2 && have <= 6) early.push(one.secs)
          }
        }))
        if (times.length) inproc[c] = results[`clones.${mode}.in-process@${c}`] = summarize(times)
        if (early.length && !inproc[first0]) inproc[first0] = results[`clones.${mode}.in-process@${first0}`] = summarize(early)
        log(`  ${c} filesets (made in ${fmtSecs(t.secs)} s); load ${load()}`)
        let used0 = 0
        cli[c] = sample(`clones.${mode}.cli@${c}`, (i) => {
          const r = cliClone(img, mode, `m${i}`)
          return r.secs
        }, () => { used0 = prismDf(img).blocksUsed })
        space[c] = (prismDf(img).blocksUsed - used0) * 4096 / opt.runs // the runs' clones, each kept until below
        for (let i = 0; i < opt.runs; i++) del(img, `m${i}`)
        oneOpen[c] = sample(`clones.${mode}.one-open@${c}`, (i) => timed(() => lib.withImage(img, {write: true}, (vol) => {
          clone(vol, {fileset: 'root', path: '/'}, {fileset: `l${i}`}, {mode})
        })).secs)
        for (let i = 0; i < opt.runs; i++) del(img, `l${i}`)
      }
      const first = checkpoints[0]
      const last = checkpoints[checkpoints.length - 1]
      for (const c of checkpoints.slice(1)) {
        const goal = c === last ? 1.2 : null
        rows.push(timeRow(`${mode} clone at ${c} filesets (CLI)`, cli[c], `at ${first}`, cli[first], goal))
        const ms = (s: Summary | undefined): number | null => (s ? s.median * 1000 : null)
        const r = valueRow(`${mode} clone at ${c} filesets (in-process, image open)`, ms(inproc[c]), 'ms', 'at 2-6', ms(inproc[first]), null,
          c === last ? 'clone + maybeCommit in a process holding the image open (the first clone of a process reads the table: not counted)' : undefined)
        if (goal !== null && r.ratio !== null) Object.assign(r, {goal: `<= ${goal.toFixed(2)}`, pass: r.ratio <= goal})
        rows.push(r)
        rows.push(timeRow(`${mode} clone at ${c} filesets (library, one open each)`, oneOpen[c], `at ${first}`, oneOpen[first], null,
          c === last ? 'open + clone + commit + close: the open reads the whole fileset table (linear in filesets)' : undefined))
      }
      rows.push(valueRow(`${mode} clone space at ${last}`, space[last], 'bytes', `at ${first}`, space[first], null, 'df blocks used, after - before'))
      extra[`clones.${mode}.space`] = space
      // At the last count: the commands that look at every fileset.
      for (const [key, args, max] of [
        ['fileset list', ['fileset', 'list'], 1.0], ['fileset list --no-space', ['fileset', 'list', '--no-space'], null], ['df', ['df'], 1.0],
        ['status', ['status'], null], ['fsck', ['fsck'], 2.0],
      ] as Array<[string, string[], number | null]>) {
        const s = sample(`clones.${mode}.${key}`, () => secs(prism([...args, '-i', img]), `prism ${key}`))
        rows.push(valueRow(`${key} at ${last} filesets (${mode})`, s.median, 's', '-', null, max === null ? null : {max, text: `< ${max} s`}))
      }
      // A write deep in the source with every clone in flight (lazy): the write guard's work.
      if (mode === 'lazy') {
        const target = `root:${deepFile()}`
        const w1 = secs(prism(['write', target, '-i', img], {input: 'changed\n'}), 'prism write')
        const w2 = secs(prism(['write', target, '-i', img], {input: 'changed again\n'}), 'prism write')
        results[`clones.lazy.write-first`] = summarize([w1])
        rows.push(valueRow(`write to the source, ${last} lazy clones in flight: first`, w1, 's', 'second (stamped)', w2, null,
          'the guard expands every clone along the path, in as many transactions as needed (once per path)'))
      }
      rm(img)
    })
  }

  // ------------------------------------------------------------ part 2: chains
  if (parts.has('chain')) {
    const file = deepFile()
    for (const mode of ['lazy', 'sync'] as const) attempt(`chain (${mode})`, () => {
      const base = path.join(work, `chain-${mode}-base.img`)
      baseImage(base, '2G')
      const img = path.join(work, `chain-${mode}.img`)
      /** A fresh chain `depth` deep on a copy of the base image. */
      const build = (): number => {
        check(run('cp', ['--sparse=always', base, img]), 'cp image')
        const t = timed(() => lib.withImage(img, {write: true}, (vol) => {
          let prev = 'root'
          for (let i = 1; i <= depth; i++) {
            clone(vol, {fileset: prev, path: '/'}, {fileset: `c${i}`}, {mode})
            prev = `c${i}`
            vol.maybeCommit()
          }
        })).secs
        // The image's pages written back before anything is timed: the kernel's writeback of
        // a just-made chain (up to a GiB dirty) otherwise lands in whichever cat runs next.
        check(run('sync', []), 'sync')
        return t
      }
      log(`chain (${mode}): ${depth} deep, cat of ${file}`)
      const buildSecs = build()
      extra[`chain.${mode}.build`] = buildSecs
      const firsts: Record<number, Summary> = {}
      const seconds: Record<number, Summary> = {}
      const cat = (d: number): number => check(prism(['cat', `c${d}:${file}`, '-i', img]), 'prism cat').secs
      const verifyCat = (d: number): void => {
        const same = sh(`${prismCmd()} cat ${q(`c${d}:${file}`)} -i ${q(img)} | cmp -s - ${q(path.join(thousand!.dir, file))}`).status === 0
        if (!same) note(`MISMATCH: cat c${d}:${file} differs from the tree's file`)
      }
      for (const d of depths) {
        // The first access at depth d on a chain no one has read yet (a fresh copy each run).
        firsts[d] = sample(`chain.${mode}.first@${d}`, () => cat(d), () => build())
        seconds[d] = sample(`chain.${mode}.second@${d}`, () => cat(d))
        verifyCat(d)
      }
      const top = depths[depths.length - 1]
      for (const d of depths.slice(1)) {
        rows.push(timeRow(`${mode} chain: cat at depth ${d}, expanded`, seconds[d], 'depth 1', seconds[1], d === top ? 1.2 : null))
        rows.push(valueRow(`${mode} chain: cat at depth ${d}, first access`, firsts[d].median, 's', 'depth 1, first', firsts[1].median,
          d === top ? {max: 2, text: '<= 2 s'} : null))
      }
      rows.push(valueRow(`${mode} chain ${depth} deep: made in one process`, buildSecs, 's', '-', null, null))
      rm(img)
      rm(base)
    })
    attempt('chain (lazy, long)', () => {
      const img = path.join(work, 'chain-long.img')
      // The first read at the end expands the path in every clone of the chain: each level
      // makes the directories along it and their subdirectories (UNEXPANDED), about 50 inodes.
      baseImage(img, '4G', ['--inodes', String(Math.max(262144, longChain * 100 + 100000))])
      const t = timed(() => lib.withImage(img, {write: true}, (vol) => {
        let prev = 'root'
        for (let i = 1; i <= longChain; i++) {
          clone(vol, {fileset: prev, path: '/'}, {fileset: `c${i}`}, {mode: 'lazy'})
          prev = `c${i}`
          vol.maybeCommit()
        }
      }))
      const r = prism(['cat', `c${longChain}:${file}`, '-i', img])
      const works = r.status === 0 && r.stderr === ''
      const f = prism(['fsck', '-i', img])
      rows.push(valueRow(`lazy chain ${longChain} deep: first cat (${works ? 'works' : 'FAILS'})`, works ? r.secs : null, 's', 'made in', t.secs, null,
        works ? `fsck after: exit ${f.status}` : r.stderr.trim().split('\n')[0]))
      if (!works || f.status !== 0) note(`chain ${longChain}: cat exit ${r.status} ${r.stderr.trim().split('\n')[0] ?? ''}; fsck exit ${f.status}`)
      rm(img)
    })
  }

  // ------------------------------------------------------------ part 3: big images
  if (parts.has('big')) attempt('big', () => {
    const img = path.join(work, 'tib.img')
    const mk = sample('big.mkfs-1T', () => secs(prism(['mkfs', img, '--size', '1T', '--force']), 'prism mkfs 1T'), () => rm(img))
    const disk = fs.statSync(img).blocks * 512
    rows.push(valueRow('mkfs 1 TiB', mk.median, 's', '-', null, {max: 1, text: '< 1 s'}))
    rows.push(valueRow('1 TiB image, disk used', disk, 'bytes', '-', null, {max: 100 * MiB, text: '< 100 MiB'}))
    const df0 = sample('big.df-empty', () => secs(prism(['df', '-i', img]), 'prism df'))
    const fsck0 = sample('big.fsck-empty', () => secs(prism(['fsck', '-i', img]), 'prism fsck'))
    rows.push(valueRow('df, 1 TiB empty', df0.median, 's', '-', null, null))
    rows.push(valueRow('fsck, 1 TiB empty', fsck0.median, 's', '-', null, {max: 0.5, text: '< 0.5 s'}))
    check(prism(['cp', '-r', thousand!.dir, 'root:/', '-i', img]), 'prism cp -r')
    const df1 = sample('big.df-tree', () => secs(prism(['df', '-i', img]), 'prism df'))
    const fsck1 = sample('big.fsck-tree', () => secs(prism(['fsck', '-i', img]), 'prism fsck'))
    rows.push(valueRow('df, 1 TiB with the 1,000-file tree', df1.median, 's', 'empty', df0.median, null))
    rows.push(valueRow('fsck, 1 TiB with the 1,000-file tree', fsck1.median, 's', 'empty', fsck0.median, null, `disk used ${fmtBytes(fs.statSync(img).blocks * 512)}`))
    rm(img)
    const big = path.join(work, 'sixteen.img')
    const r = prism(['mkfs', big, '--size', '16T'])
    const left = fs.existsSync(big) ? fs.statSync(big) : null
    if (r.status === 0) {
      const f = prism(['fsck', '-i', big])
      rows.push(valueRow('16 TiB image: works', r.secs, 's', '-', null, null, `fsck exit ${f.status}`))
    } else {
      rows.push(valueRow('16 TiB image: refused', r.secs, 's', '-', null, null,
        `exit ${r.status}: ${r.stderr.trim()}${left ? ` (a ${left.size}-byte file was left behind)` : ''}`))
    }
    rm(big)
    if (fs.existsSync('/dev/shm')) {
      const shm = fs.mkdtempSync('/dev/shm/prism-scale-')
      const huge = path.join(shm, 'huge.img')
      const m = prism(['mkfs', huge, '--size', '20T'])
      if (m.status === 0) {
        check(prism(['cp', '-r', thousand!.dir, 'root:/', '-i', huge]), 'prism cp -r (20 TiB)')
        const f = prism(['fsck', '-i', huge])
        const l = prism(['fileset', 'list', '-i', huge])
        rows.push(valueRow('20 TiB image on tmpfs (past 2^32 data blocks): fsck', f.secs, 's', 'fileset list', l.secs, null, `fsck exit ${f.status}, list exit ${l.status}`))
      }
      rm(shm)
    }
  })

  // ------------------------------------------------------------ part 4: a million files
  if (parts.has('million')) attempt('million', () => {
    const per = 1000
    const nDirs = Math.ceil(nFiles / per)
    const bigDir = Math.round(nFiles / 10)
    const tree = path.join(opt.base, `tree-million-${nFiles}`)
    const total = nDirs * per + bigDir
    if (!fs.existsSync(path.join(tree, '.complete'))) {
      log(`million: generating ${total} files (${nDirs} directories of ${per}, and big/ with ${bigDir}) in ${tree}`)
      requireFree(opt.base, total * 12 * KiB, `a tree of ${total} small files, two copies and two images`)
      rm(tree)
      const rng = new Rng(1919)
      const pool = rng.bytes(64 * KiB)
      const put = (dir: string, n: number): void => {
        fs.mkdirSync(dir, {recursive: true})
        for (let i = 0; i < n; i++) {
          const size = rng.int(0, 2049)
          const at = rng.int(0, pool.length - size)
          fs.writeFileSync(path.join(dir, `f${String(i).padStart(6, '0')}`), pool.subarray(at, at + size))
        }
      }
      for (let d = 0; d < nDirs; d++) put(path.join(tree, `d${String(d).padStart(4, '0')}`), per)
      put(path.join(tree, 'big'), bigDir)
      fs.writeFileSync(path.join(tree, '.complete'), `${total}\n`)
    }
    const img = path.join(work, 'million.img')
    const ext4 = path.join(work, 'million.ext4')
    const copy = path.join(work, 'million-copy')
    const size = `${Math.max(16, Math.ceil(total * 8 * KiB / GiB))}G`
    const inodes = String(Math.ceil(total * 1.3) + 1000)
    const mke2fs = which('mke2fs')
    const e2fsck = which('e2fsck')
    const rss: number[] = []
    const s = measureEach({
      'prism cp -r (import)': {
        before: () => { rm(img); check(prism(['mkfs', img, '--size', size, '--inodes', inodes]), 'prism mkfs') },
        run: () => {
          const r = withRss(process.execPath, [PRISM_BIN, 'cp', '-r', tree, 'root:/', '-i', img])
          rss.push(r.rss)
          return r.secs
        },
      },
      'cp -a + sync': {before: () => rm(copy), run: () => check(sh(`cp -a ${q(tree)} ${q(copy)} && sync`), 'cp -a'), after: () => rm(copy), createsInodes: true},
      ...(mke2fs ? {'mke2fs -d': {before: () => rm(ext4), run: () => check(run(mke2fs, ['-q', '-t', 'ext4', '-N', inodes, '-d', tree, '-F', ext4, size]), 'mke2fs -d')}} : {}),
    }, {runs: opt.runs, cold: opt.cold, settleDir: opt.base})
    Object.assign(results, {'million.import': s['prism cp -r (import)'], 'million.cp_a_sync': s['cp -a + sync'], ...(s['mke2fs -d'] ? {'million.mke2fs_d': s['mke2fs -d']} : {})})
    rows.push(timeRow(`import ${total} files`, s['prism cp -r (import)'], 'cp -a + sync', s['cp -a + sync'], 1.0))
    if (s['mke2fs -d']) rows.push(timeRow(`import ${total} files`, s['prism cp -r (import)'], 'mke2fs -d', s['mke2fs -d'], null))
    const peak = Math.max(...rss)
    rows.push(valueRow('import: peak resident memory', peak, 'bytes', '-', null, {max: 512 * MiB, text: '<= 512 MiB'}, `runs: ${rss.map(fmtBytes).join(', ')}`))
    const ls = sample('million.ls-big', () => secs(prism(['ls', 'root:/big', '-i', img]), 'prism ls'))
    const one = `root:/big/f${String(Math.floor(bigDir / 2)).padStart(6, '0')}`
    const cat = sample('million.cat-one', () => secs(prism(['cat', one, '-i', img]), 'prism cat'))
    rows.push(valueRow(`ls of the directory of ${bigDir}`, ls.median, 's', '-', null, null))
    rows.push(valueRow(`cat of one file in it`, cat.median, 's', '-', null, null))
    const fsckS = measureEach({
      'prism fsck': {run: () => prism(['fsck', '-i', img])},
      ...(e2fsck && fs.existsSync(ext4) ? {'e2fsck -fn': {run: () => run(e2fsck, ['-fn', ext4])}} : {}),
    }, {runs: opt.runs, cold: opt.cold, warmup: true})
    results['million.fsck'] = fsckS['prism fsck']
    if (fsckS['e2fsck -fn']) results['million.e2fsck'] = fsckS['e2fsck -fn']
    rows.push(timeRow(`fsck of ${total} files`, fsckS['prism fsck'], 'e2fsck -fn', fsckS['e2fsck -fn'] ?? null, 1.5))
    // Clones of all of it: sync, and async with its background expander run to the end.
    const syncS = sample('million.sync-clone', (i) => secs(prism(['clone', 'root', `s${i}`, '--mode', 'sync', '-i', img]), 'prism clone sync'),
      (i) => { if (i > 0) del(img, `s${i - 1}`) })
    del(img, `s${opt.runs - 1}`)
    let asyncCli = 0
    const bg = sample('million.background-expander', (i) => {
      asyncCli = secs(prism(['clone', 'root', `a${i}`, '--mode', 'async', '--no-background', '-i', img]), 'prism clone async')
      return secs(prism(['expand', '--background', '-i', img]), 'prism expand --background')
    }, (i) => { if (i > 0) del(img, `a${i - 1}`) })
    rows.push(valueRow('async clone of all of it (CLI, returns at once)', asyncCli, 's', '-', null, null))
    rows.push(timeRow('sync clone of all of it', syncS, 'background expander', bg, 1.5))
    if (!opt.keep) { rm(img); rm(ext4) }
  })

  // ------------------------------------------------------------ part 5: fileset list at 10,000
  if (parts.has('list')) for (const mode of listModes) attempt(`list (${mode})`, () => {
    const given = (v['list-image'] as string | undefined) ?? env('LIST_IMAGE')
    const img = given ? `${path.resolve(given)}-${mode}.img` : path.join(work, `list-${mode}.img`)
    if (!fs.existsSync(img)) {
      log(`list: image with the 1,000-file fileset and ${nClones} ${mode} clones made in one process (${img})`)
      // A sync clone copies the tree's 101 directories (as in the clones part).
      baseImage(img, '8G', mode === 'sync' ? ['--inodes', String(Math.max(524288, (nClones + 100) * 200))] : [])
      const t = timed(() => lib.withImage(img, {write: true}, (vol) => {
        for (let i = 1; i < nClones; i++) {
          clone(vol, {fileset: 'root', path: '/'}, {fileset: `bulk-${i}`}, {mode})
          vol.maybeCommit()
        }
      }))
      log(`  made in ${fmtSecs(t.secs)} s`)
    } else {
      log(`list: reusing ${img}`)
    }
    // oclif alone: bin/run.js's path for everything its fast paths do not take.
    const root = path.dirname(path.dirname(PRISM_BIN))
    const viaOclif = `const [root, ...argv] = process.argv.slice(1); const {runOclif} = await import(root + 'dist/cli/oclif.js'); await runOclif(argv, root)`
    const oclif = (args: string[]): RunResult => run(process.execPath, ['--input-type=module', '-e', viaOclif, pathToFileURL(root).href + '/', ...args])
    const cmds: Array<[string, string[], number | null]> = [
      ['fileset list', ['fileset', 'list'], 1.0], ['fileset list --no-space', ['fileset', 'list', '--no-space'], null],
      ['fileset list --json', ['fileset', 'list', '--json'], null], ['df', ['df'], 1.0],
    ]
    const fast: Record<string, number[]> = {}
    const slow: Record<string, number[]> = {}
    // Rounds alternate which path goes first; every command's output is compared between them.
    for (let i = 0; i < opt.runs; i++) {
      for (const [key, args] of cmds) {
        const order = i % 2 === 0 ? ['fast', 'oclif'] : ['oclif', 'fast']
        const out: Record<string, RunResult> = {}
        for (const which of order) {
          const r = which === 'fast' ? prism([...args, '-i', img]) : oclif([...args, '-i', img])
          check(r, `prism ${key} (${which})`)
          out[which] = r
          ;(which === 'fast' ? fast : slow)[key] ??= []
          ;(which === 'fast' ? fast : slow)[key].push(r.secs)
        }
        if (out.fast.stdout !== out.oclif.stdout || out.fast.stderr !== out.oclif.stderr) note(`MISMATCH: prism ${key} (${mode}): the fast path's output differs from oclif's`)
        log(`  ${key} (${mode}) run ${i + 1}/${opt.runs}: ${fmtSecs(out.fast.secs)} s (oclif alone ${fmtSecs(out.oclif.secs)} s); load ${load()}`)
      }
    }
    for (const [key, , max] of cmds) {
      const f = results[`list.${mode}.${key}`] = summarize(fast[key])
      const o = results[`list.${mode}.${key} (oclif)`] = summarize(slow[key])
      const r = timeRow(`${key} at ${nClones} filesets (${mode})`, f, 'through oclif alone', o, null)
      if (max !== null) Object.assign(r, {goal: `< ${max} s`, pass: f.median < max})
      rows.push(r)
    }
    if (!given && !opt.keep) rm(img)
  })

  // ------------------------------------------------------------ report
  extra.loadEnd = os.loadavg()
  process.stdout.write(`\nPrism scale benchmark (${gitVersion()}), ${opt.runs} run(s), load average ${(extra.loadStart as number[]).map((x) => x.toFixed(2)).join(' ')} at start, ${load()} at end\n\n`)
  printTable(rows)
  process.stdout.write('\nsamples:\n')
  printSamples(results)
  if (notes.length) process.stdout.write(`\nnotes:\n${notes.map((n) => `  ${n}`).join('\n')}\n`)
  const file = writeResults('scale', {version: gitVersion(), machine: machineInfo(opt.base), runs: opt.runs, parts: [...parts], rows, results, notes, extra})
  log(`results written to ${file}`)
  if (!opt.keep) rm(work)
  const failed = rows.some((r) => r.pass === false)
  return v.strict && failed ? 1 : 0
}

main().then((code) => process.exit(code), (e) => {
  process.stderr.write(`bench/scale.ts: ${(e as Error).stack}\n`)
  process.exit(2)
})
