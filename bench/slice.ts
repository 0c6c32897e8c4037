// Long commands on a mounted image (issue 17, "Serve filesets as real filesystems"): while
// `prism clone --mode sync`, `prism expand` of a lazy clone, `prism clone` (async) + `prism
// expand`, a graft (`prism clone root:/usr scratch:/gN`) and a sync clone with `--replace`
// (a host file and an empty directory) run on a served image, a probe process (test/mount-probe.py) makes small
// calls on another fileset of the mount (create, write, close, open, read, readdir, unlink) and
// times each. Two contenders in the same run, in alternating order:
//   slices  the server does the work in slices between FUSE requests (the default)
//   lend    PRISM_SERVED_SLICES=0: the server lends the image to the command and holds every
//           request until it exits (how every command ran before)
// For each, the probe's p99 and max latency and the command's wall time (medians over runs).
// The tree is /usr-shaped: ~100,000 tiny files in ~8,000 directories (a few large ones), a
// symlink and a hard link in every 50 directories; it is built once through the library and
// kept in --base.
//
//   npm run bench:slice                       # 100,000 files, 3 runs
//   npm run bench:slice -- --small            # 5,000 files: a smoke test
//   npm run bench:slice -- --base DIR --runs N --files N
//   npm run bench:slice -- --only graft,replace   # some commands only (names below)
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {
  GiB, ROOT, Rng, check, ensureBuilt, gitVersion, loadDist, log, machineInfo, median, parseCommon, prism, snapshotBuild, writeResults,
} from './lib.js'

type ImageMod = typeof import('../src/fs/image.js')

const USAGE = `Usage: npm run bench:slice -- [options]

  --small          5,000 files (smoke test)
  --files N        files in the tree (default 100000; directories: one per 12 files)
  --runs N         runs per contender (default 3)
  --base DIR       work directory (default /tmp/prism-bench): the image is kept there for
                   the next run (--regen builds it again)
  --only LIST      commands to time, comma-separated: sync, lazy, async, graft, replace
                   (default: all)

Every option can also be given as PRISM_BENCH_<NAME>.
`

const PROBE = path.join(ROOT, 'test', 'mount-probe.py')

interface Probe {
  calls: number
  p99: number
  max: number
}

/** Builds the /usr-shaped tree in fileset root of a new image, and fileset scratch for the probe. */
async function buildImage(img: string, files: number, seed: number): Promise<void> {
  const {mkfs, namespace, createEmptyFileset} = await loadDist<ImageMod>('fs/image.js')
  const rng = new Rng(seed)
  const dirsWanted = Math.max(10, Math.round(files / 12))
  const vol = mkfs(img, {size: Math.max(GiB, files * 24 * 1024)})
  try {
    const ns = namespace(vol, 'root')
    const dirs = ['/usr']
    ns.mkdir('/usr')
    for (let i = 1; i < dirsWanted; i++) {
      // Mostly shallow fan-out, as /usr/share/* and /usr/lib/*: parents picked near the top.
      const parent = dirs[Math.floor(rng.next() ** 2 * dirs.length)]
      const d = `${parent}/d${i}`
      ns.mkdir(d)
      dirs.push(d)
    }
    for (let f = 0; f < files; f++) {
      // A few directories hold thousands (as /usr/bin, /usr/share/man/man1).
      const d = f % 10 === 0 ? dirs[f % 7] : dirs[Math.floor(rng.next() * dirs.length)]
      ns.writeFile(`${d}/f${f}`, Buffer.from(`file ${f}\n`.repeat(1 + (f % 5))))
      if (f % 600 === 0) {
        ns.symlink(`f${f}`, `${d}/l${f}`)
        ns.link(`${d}/f${f}`, `${d}/h${f}`)
      }
      if (f % 2000 === 0) vol.maybeCommit()
    }
    createEmptyFileset(vol, 'scratch')
  } finally {
    vol.close()
  }
}

/** Runs `work` while the probe makes calls in `dir`; the probe's figures. */
async function probed(dir: string, stop: string, work: () => void): Promise<Probe> {
  fs.rmSync(stop, {force: true})
  const child = spawn('python3', [PROBE, dir, stop, '--seconds', '900'], {stdio: ['ignore', 'pipe', 'inherit']})
  let out = ''
  const ready = new Promise<void>((resolve) => child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d
    if (out.includes('ready\n')) resolve()
  }))
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()))
  await Promise.race([ready, closed])
  await new Promise((r) => setTimeout(r, 200))
  try {
    work()
  } finally {
    await new Promise((r) => setTimeout(r, 200))
    fs.writeFileSync(stop, '')
    await closed
  }
  return JSON.parse(out.trim().split('\n').pop()!) as Probe
}

const COMMANDS = ['clone --mode sync', 'expand (lazy clone)', 'clone + expand (async)', 'graft', 'clone --mode sync --replace'] as const
const SHORT = ['sync', 'lazy', 'async', 'graft', 'replace']
const CONTENDERS = ['slices', 'lend'] as const
type Contender = typeof CONTENDERS[number]

async function main(): Promise<void> {
  const o = parseCommon(USAGE, {only: {type: 'string'}})
  const only = ((o.values.only as string | undefined) ?? SHORT.join(',')).split(',')
  for (const x of only) if (!SHORT.includes(x)) throw new Error(`--only: unknown command '${x}' (${SHORT.join(', ')})`)
  const commands = COMMANDS.filter((_, k) => only.includes(SHORT[k]))
  ensureBuilt()
  const files = o.values.files ? o.spec.files : o.small ? 5000 : 100_000
  const dir = path.join(o.base, `slice-${files}f-s${o.spec.seed}`)
  fs.mkdirSync(dir, {recursive: true})
  // A copy of the build: a rebuild of dist/ meanwhile neither breaks the run nor mixes builds.
  log(`using a copy of the build: ${snapshotBuild(path.join(dir, 'build'))}`)
  const img = path.join(dir, 'disk.img')
  if (!fs.existsSync(img) || o.regen) {
    log(`building the image: ${files} files`)
    fs.rmSync(img, {force: true})
    await buildImage(img + '.new', files, o.spec.seed)
    fs.renameSync(img + '.new', img)
  }
  const mp = path.join(dir, 'mp')
  fs.mkdirSync(mp, {recursive: true})
  const i = ['-i', img]
  check(prism(['mount', ...i, mp]), 'prism mount')
  const samples: Record<string, {wall: number[], p99: number[], max: number[]}> = {}
  let n = 0
  try {
    for (let run = 0; run < o.runs; run++) {
      // Alternate order: each contender goes first in every other run.
      const order = run % 2 === 0 ? [...CONTENDERS] : [...CONTENDERS].reverse()
      for (const cmd of commands) {
        for (const who of order) {
          const env = {...process.env, PRISM_SERVED_SLICES: who === 'lend' ? '0' : '1'}
          const name = `b${process.pid}-${n++}`
          if (cmd === 'expand (lazy clone)') check(prism(['clone', ...i, 'root', name, '--mode', 'lazy']), 'lazy clone')
          let wall = 0
          const probe = await probed(path.join(mp, 'scratch', 'probe'), path.join(dir, 'stop'), () => {
            const t0 = process.hrtime.bigint()
            if (cmd === 'clone --mode sync') check(prism(['clone', ...i, 'root', name, '--mode', 'sync'], {env}), cmd)
            else if (cmd === 'expand (lazy clone)') check(prism(['expand', ...i, name], {env}), cmd)
            else if (cmd === 'graft') check(prism(['clone', ...i, 'root:/usr', `scratch:/${name}`], {env}), cmd)
            else if (cmd === 'clone --mode sync --replace') {
              check(prism(['clone', ...i, 'root', name, '--mode', 'sync', '-r', '/usr/d1=@empty-dir', '-r', `/etc/hosts=${path.join(ROOT, 'package.json')}`], {env}), cmd)
            } else {
              check(prism(['clone', ...i, 'root', name], {env}), cmd)
              check(prism(['expand', ...i, name], {env}), cmd)
            }
            wall = Number(process.hrtime.bigint() - t0) / 1e9
          })
          const key = `${cmd} | ${who}`
          samples[key] ??= {wall: [], p99: [], max: []}
          samples[key].wall.push(wall)
          samples[key].p99.push(probe.p99)
          samples[key].max.push(probe.max)
          log(`run ${run + 1}: ${key}: ${wall.toFixed(2)} s, probe ${probe.calls} calls, p99 ${probe.p99} ms, max ${probe.max} ms`)
          if (cmd === 'graft') check(prism(['rm', ...i, '-r', `scratch:/${name}`]), 'rm')
          else check(prism(['fileset', 'delete', ...i, name]), 'fileset delete')
        }
      }
    }
  } finally {
    check(prism(['umount', mp]), 'prism umount')
  }
  const rows = Object.entries(samples).map(([k, v]) => ({step: k, wall: median(v.wall), p99: median(v.p99), max: median(v.max), runs: v}))
  const w = Math.max(...rows.map((r) => r.step.length))
  process.stdout.write(`\n${'command | contender'.padEnd(w)}  ${'wall (s)'.padStart(9)}  ${'p99 (ms)'.padStart(9)}  ${'max (ms)'.padStart(9)}\n`)
  for (const r of rows) process.stdout.write(`${r.step.padEnd(w)}  ${r.wall.toFixed(2).padStart(9)}  ${r.p99.toFixed(1).padStart(9)}  ${r.max.toFixed(1).padStart(9)}\n`)
  process.stdout.write(`\n(medians of ${o.runs} runs; ${files} files; ${gitVersion()})\n`)
  const file = writeResults('slice', {version: gitVersion(), machine: machineInfo(o.base), files, runs: o.runs, rows})
  log(`results: ${file}`)
}

await main()
