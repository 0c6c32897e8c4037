// prism mount against fuse2fs (an ext4 image of the same size, served by FUSE) and against a
// host directory, in the same run: the same workloads on the three, in alternating order, each
// figure the median of several runs.
// Workloads: untar of the host's /usr/include (made into a tar first), `du -s`,
// `find -type f | xargs cat`, `rm -rf` of it, a sequential write and read with dd (conv=fsync),
// `fallocate -l` of as much (then sync), `cp` of a file of as much (GNU cp: copy_file_range),
// `git init` + add + commit of N small files, fsstress-like parallel metadata churn
// (P processes, K operations each: create, write, rename, unlink, mkdir, rmdir, chmod, stat),
// and `npm ci` + `npx tsc` of this project's own source. Then, on prism alone, the paper's
// measure of a lazy clone: the same build (`npx tsc`) inside a lazy clone and inside a fully
// expanded (sync) clone of the fileset that holds the project, in alternating order.
//
//   node --import tsx bench/mount.ts                 # 1 GiB dd, 5000 files, 4x10000 ops, 3 runs
//   node --import tsx bench/mount.ts --small         # 128 MiB dd, 500 files, 4x1000 ops, 1 run
//   node --import tsx bench/mount.ts --only untar,git  # some workloads (and what they need) only
//   node --import tsx bench/mount.ts --base /tmp/base   # also another build of prism (A/B), same run
//
// Needs root, the FUSE addon, fuse2fs and mke2fs; prints why and exits otherwise. The prism
// mount is made through the real CLI (bin/run.js: run `npm run build` first).
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {fuseSkipReason, PYTHON, run, runOk} from '../test/fuse-support.js'
import {cli, cliOk, Scratch} from '../test/mount-support.js'
import {forceUnmount} from '../test/fuse-support.js'

const args = process.argv.slice(2)
const small = args.includes('--small')
const opt = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? Number(args[i + 1]) : Number(process.env[`PRISM_BENCH_${name.toUpperCase()}`] ?? def)
}
const MIB = opt('mib', small ? 128 : 1024)
const FILES = opt('files', small ? 500 : 5000)
const OPS = opt('ops', small ? 1000 : 10_000)
const PROCS = opt('procs', 4)
const RUNS = opt('runs', small ? 1 : 3)
const SIZE_MIB = Math.max(2048, MIB * 2 + 1024)
// --only LIST: untar, du, find, reread, rm, ddwrite, ddread, falloc, cp, git, churn, exec, npm, rtt, lazy
// (default all); du, find, reread and rm work on the untar's tree and ddread on ddwrite's file, so
// those come along
const KEYS = ['untar', 'du', 'find', 'reread', 'rm', 'ddwrite', 'ddread', 'falloc', 'cp', 'git', 'churn', 'exec', 'npm', 'rtt', 'lazy']
const NEEDS: Record<string, string[]> = {du: ['untar'], find: ['untar'], reread: ['untar', 'find'], rm: ['untar'], ddread: ['ddwrite']}
// exec: a program copied into the mount, run EXEC_N times (each run maps it and its reads go
// through the page cache: what a build that runs its tools thousands of times does)
const EXEC_N = opt('exec', small ? 200 : 2000)
const onlyArg = args.includes('--only') ? args[args.indexOf('--only') + 1] : process.env.PRISM_BENCH_ONLY
const only = new Set(onlyArg ? onlyArg.split(',').map((x) => x.trim()).filter((x) => x !== '') : KEYS)
// --base DIR: a checkout of another prism build (dist/ and the FUSE addon built) mounted too, as
// a fourth target "base" on its own image of the same size: an A/B of two builds in one run
const baseArg = args.includes('--base') ? args[args.indexOf('--base') + 1] : process.env.PRISM_BENCH_BASE
const BASE_BIN = baseArg ? path.resolve(baseArg, 'bin', 'run.js') : undefined
if (BASE_BIN && !fs.existsSync(BASE_BIN)) {
  console.error(`bench/mount.ts: --base: ${BASE_BIN} is missing`)
  process.exit(2)
}
for (const k of only) {
  if (!KEYS.includes(k)) {
    console.error(`bench/mount.ts: unknown workload '${k}' in --only (known: ${KEYS.join(', ')})`)
    process.exit(2)
  }
  for (const need of NEEDS[k] ?? []) only.add(need)
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

async function timed(cmd: string, a: string[]): Promise<number> {
  const t = process.hrtime.bigint()
  await runOk(cmd, a, {timeoutMs: 1_800_000})
  return Number(process.hrtime.bigint() - t) / 1e9
}

const sh = (script: string): Promise<number> => timed('sh', ['-c', script])

// fsstress-like churn: P processes, each K random operations in its own directory.
const CHURN = `
import os, random, sys
root, k, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
d = os.path.join(root, 'p%d' % seed)
os.makedirs(d, exist_ok=True)
names = ['n%d' % i for i in range(50)]
for i in range(k):
    a = os.path.join(d, rnd.choice(names)); b = os.path.join(d, rnd.choice(names))
    op = rnd.randrange(8)
    try:
        if op == 0:
            with open(a, 'wb') as f: f.write(b'x' * rnd.choice([0, 100, 5000]))
        elif op == 1: os.rename(a, b)
        elif op == 2: os.unlink(a)
        elif op == 3: os.mkdir(a)
        elif op == 4: os.rmdir(a)
        elif op == 5: os.chmod(a, 0o600)
        elif op == 6: os.stat(a)
        else:
            with open(a, 'ab') as f: f.write(b'y' * 100)
    except OSError:
        pass
`

// The round trip of one small request, in a loop of one process (python): N stats of a
// missing name (a lookup each), N pwrites of 100 bytes, N/4 create + write + close.
const RTT = `
import os, sys, time
d, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(d, exist_ok=True)
if what == 'lookup':
    for i in range(n):
        try: os.stat(os.path.join(d, 'missing%d' % i))
        except FileNotFoundError: pass
elif what == 'pwrite':
    fd = os.open(os.path.join(d, 'w'), os.O_CREAT | os.O_WRONLY, 0o644)
    for i in range(n): os.pwrite(fd, b'x' * 100, (i % 1000) * 100)
    os.close(fd)
else:
    for i in range(n // 4):
        fd = os.open(os.path.join(d, 'c%d' % i), os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b'abc')
        os.close(fd)
`
const RTT_N = small ? 5000 : 20_000

interface Target {
  name: string
  dir: string
  cleanup(): Promise<void>
}

async function main(): Promise<void> {
  const why = fuseSkipReason()
  if (why) return void console.log(`bench/mount.ts skipped: ${why}`)
  for (const tool of ['fuse2fs', 'mke2fs', 'git', 'tar']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return void console.log(`bench/mount.ts skipped: ${tool} is not installed`)
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-bench-mount-'))
  const tarball = path.join(work, 'include.tar')
  await runOk('tar', ['-cf', tarball, '-C', '/usr', 'include'], {timeoutMs: 600_000})
  // the small files of the git workload
  const gitSrc = path.join(work, 'gitsrc')
  fs.mkdirSync(gitSrc)
  for (let i = 0; i < FILES; i++) {
    const d = path.join(gitSrc, `d${i % 50}`)
    fs.mkdirSync(d, {recursive: true})
    fs.writeFileSync(path.join(d, `f${i}.txt`), `file ${i}\n`.repeat(1 + (i % 40)))
  }

  const churn = path.join(work, 'churn.py')
  fs.writeFileSync(churn, CHURN)
  const rtt = path.join(work, 'rtt.py')
  fs.writeFileSync(rtt, RTT)

  // this project's own source, to install and build: package.json, the lock, tsconfig, src/
  const repo = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
  const proj = path.join(work, 'proj')
  fs.mkdirSync(proj)
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json']) fs.copyFileSync(path.join(repo, f), path.join(proj, f))
  fs.cpSync(path.join(repo, 'src'), path.join(proj, 'src'), {recursive: true})
  // --ignore-scripts: the build of prism's own addons is not the workload; the registry or
  // npm's cache serves the packages (the same for every target, warmed by the first run)
  const npmCi = 'npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null'
  const tsc = 'npx --no-install tsc -p tsconfig.json'

  const targets: Target[] = []
  // prism: one fileset mounted through the CLI
  const s = new Scratch({size: SIZE_MIB * 1024 * 1024, inodeCount: 262_144})
  const pmp = s.mountpoint('prism')
  await s.mount('root', pmp)
  targets.push({name: 'prism', dir: pmp, cleanup: async () => {
    // unmounted clean, and fsck agrees: a benchmark must not hide a damaged image
    await s.umount(pmp).catch((e: unknown) => console.log(`prism umount failed: ${(e as Error).message}`))
    const r = await cli(['fsck', '-i', s.image])
    if (r.code !== 0) console.log(`fsck after the benchmark (exit ${r.code}):\n${r.stdout}${r.stderr}`)
    await s.cleanup()
  }})
  if (BASE_BIN) {
    const b = new Scratch({size: SIZE_MIB * 1024 * 1024, inodeCount: 262_144})
    const bmp = b.mountpoint('base')
    await runOk(process.execPath, [BASE_BIN, 'mount', '-i', b.image, 'root', bmp], {timeoutMs: 60_000})
    targets.push({name: 'base', dir: bmp, cleanup: async () => {
      await runOk(process.execPath, [BASE_BIN, 'umount', bmp], {timeoutMs: 60_000}).catch((e: unknown) => console.log(`base umount failed: ${(e as Error).message}`))
      await b.cleanup()
    }})
  }
  // fuse2fs: an ext4 image of the same size
  const ext = path.join(work, 'ext4.img')
  fs.writeFileSync(ext, '')
  fs.truncateSync(ext, SIZE_MIB * 1024 * 1024)
  await runOk('mke2fs', ['-q', '-F', '-t', 'ext4', ext], {timeoutMs: 120_000})
  const emp = path.join(work, 'fuse2fs')
  fs.mkdirSync(emp)
  await runOk('fuse2fs', [ext, emp, '-o', 'fakeroot'], {timeoutMs: 60_000})
  targets.push({name: 'fuse2fs', dir: emp, cleanup: async () => {
    await run('umount', [emp], {timeoutMs: 60_000}).catch(() => undefined)
    await forceUnmount(emp).catch(() => undefined)
  }})
  const host = path.join(work, 'host')
  fs.mkdirSync(host)
  targets.push({name: 'host', dir: host, cleanup: async () => {}})

  const all: Array<{key: string, name: string, run: (dir: string, i: number) => Promise<number>, before?: (dir: string, i: number) => Promise<unknown>, after?: (dir: string, i: number) => Promise<unknown>}> = [
    {key: 'untar', name: 'untar /usr/include', run: (d, i) => sh(`mkdir -p ${d}/u${i} && tar -xf ${tarball} -C ${d}/u${i}`)},
    {key: 'du', name: 'du -s', run: (d, i) => sh(`du -s ${d}/u${i} >/dev/null`)},
    {key: 'find', name: 'find -type f | xargs cat', run: (d, i) => sh(`find ${d}/u${i} -type f -print0 | xargs -0 cat >/dev/null`)},
    // the same files read again: from the page cache where it is kept across opens
    {key: 'reread', name: 'find -type f | xargs cat, again (warm)', run: (d, i) => sh(`find ${d}/u${i} -type f -print0 | xargs -0 cat >/dev/null`)},
    {key: 'rm', name: 'rm -rf', run: (d, i) => sh(`rm -rf ${d}/u${i}`)},
    {key: 'ddwrite', name: `dd write ${MIB} MiB (conv=fsync)`, run: (d, i) => sh(`dd if=/dev/zero of=${d}/dd${i} bs=1M count=${MIB} conv=fsync status=none`)},
    // cold: the page cache is dropped first, untimed
    {key: 'ddread', name: `dd read ${MIB} MiB (cold)`, before: () => sh('sync; echo 3 > /proc/sys/vm/drop_caches'), run: (d, i) => sh(`dd if=${d}/dd${i} of=/dev/null bs=1M status=none`), after: (d, i) => sh(`rm -f ${d}/dd${i}`)},
    // fallocate of a file's worth: ext4 (fuse2fs) marks extents unwritten; prism has the host zero them
    {key: 'falloc', name: `fallocate -l ${MIB}M`, run: (d, i) => sh(`fallocate -l ${MIB}M ${d}/fa${i} && sync`), after: (d, i) => sh(`rm -f ${d}/fa${i}`)},
    // cp of a file of random bytes in the same directory: GNU cp copies with copy_file_range,
    // which prism answers by sharing the whole blocks (no data written); ext4 copies them
    {key: 'cp', name: `cp of a ${MIB} MiB file (+ sync)`, before: (d, i) => sh(`head -c ${MIB}M /dev/urandom > ${d}/cps${i} && sync`), run: (d, i) => sh(`cp ${d}/cps${i} ${d}/cpd${i} && sync`), after: (d, i) => sh(`cmp ${d}/cps${i} ${d}/cpd${i} && rm -f ${d}/cps${i} ${d}/cpd${i}`)},
    {key: 'git', name: `git add + commit ${FILES} files`, run: (d, i) => sh(`cp -r ${gitSrc} ${d}/g${i} && cd ${d}/g${i} && git init -q && git add -A && git -c user.email=b@b -c user.name=b commit -qm x && cd / && rm -rf ${d}/g${i}`)},
    {key: 'churn', name: `churn ${PROCS}x${OPS} ops`, run: (d, i) => sh(Array.from({length: PROCS}, (_, p) => `"${PYTHON}" ${churn} ${d}/c${i} ${OPS} ${p} &`).join(' ') + ` wait; rm -rf ${d}/c${i}`)},
    {key: 'exec', name: `${EXEC_N} runs of a program in the mount`, before: (d, i) => sh(`mkdir -p ${d}/x${i} && cp /usr/bin/env ${d}/x${i}/env && ${d}/x${i}/env true`), run: (d, i) => sh(`for j in $(seq ${EXEC_N}); do ${d}/x${i}/env true; done`), after: (d, i) => sh(`rm -rf ${d}/x${i}`)},
    {key: 'rtt', name: `${RTT_N} stat of a missing name`, run: (d, i) => sh(`"${PYTHON}" ${rtt} ${d}/r${i} lookup ${RTT_N}`)},
    {key: 'rtt', name: `${RTT_N} pwrite of 100 bytes`, run: (d, i) => sh(`"${PYTHON}" ${rtt} ${d}/r${i} pwrite ${RTT_N}`)},
    {key: 'rtt', name: `${RTT_N / 4} create + write + close`, run: (d, i) => sh(`"${PYTHON}" ${rtt} ${d}/r${i} create ${RTT_N}`), after: (d, i) => sh(`rm -rf ${d}/r${i}`)},
    {key: 'npm', name: 'npm ci + npx tsc (this project)', run: (d, i) => sh(`cp -r ${proj} ${d}/p${i} && cd ${d}/p${i} && ${npmCi} && ${tsc}`), after: (d, i) => sh(`rm -rf ${d}/p${i}`)},
  ]
  const workloads = all.filter((w) => only.has(w.key))

  const times = new Map<string, number[]>()
  const build = {lazy: [] as number[], expanded: [] as number[]}
  try {
    for (let r = 0; r < RUNS; r++) {
      // alternating order: each run starts with another target
      const order = targets.map((_, k) => targets[(k + r) % targets.length]!)
      for (const w of workloads) {
        for (const t of order) {
          await w.before?.(t.dir, r)
          const sec = await w.run(t.dir, r)
          await w.after?.(t.dir, r)
          const key = `${w.name}\t${t.name}`
          times.set(key, [...(times.get(key) ?? []), sec])
        }
      }
    }
    // The build in a lazy clone against the same build in an expanded one (paper §5: an Apache
    // build in clones). The fileset holds the project after npm ci; each run makes a lazy and a
    // sync clone of it through the CLI while it is mounted, mounts both, and times `npx tsc`
    // in each, the order alternating. tsc reads the tree (node_modules/typescript, @types, src)
    // and writes dist/, so the lazy clone expands what the build touches as it goes.
    if (only.has('lazy')) await sh(`cp -r ${proj} ${pmp}/build && cd ${pmp}/build && ${npmCi}`)
    for (let r = 0; r < RUNS && only.has('lazy'); r++) {
      const mps: Record<'lazy' | 'expanded', string> = {lazy: s.mountpoint(`lazy${r}`), expanded: s.mountpoint(`full${r}`)}
      await cliOk(['clone', 'root', `lazy${r}`, '--mode', 'lazy', '-i', s.image])
      await cliOk(['clone', 'root', `full${r}`, '--mode', 'sync', '-i', s.image])
      await s.mount(`lazy${r}`, mps.lazy)
      await s.mount(`full${r}`, mps.expanded)
      const order: Array<'lazy' | 'expanded'> = r % 2 === 0 ? ['lazy', 'expanded'] : ['expanded', 'lazy']
      for (const k of order) build[k].push(await sh(`cd ${mps[k]}/build && ${tsc}`))
      await s.umount(mps.lazy)
      await s.umount(mps.expanded)
    }
  } finally {
    for (const t of targets) await t.cleanup()
    fs.rmSync(work, {recursive: true, force: true})
  }
  console.log(`prism mount vs fuse2fs vs host directory: median of ${RUNS} run(s), seconds`)
  const base = BASE_BIN !== undefined
  console.log(['workload', 'prism', 'fuse2fs', 'host', 'prism/fuse2fs', 'prism/host', ...(base ? ['base', 'base/fuse2fs', 'prism/base'] : [])].join('\t'))
  for (const w of workloads) {
    const m = (t: string): number => median(times.get(`${w.name}\t${t}`) ?? [NaN])
    const [p, f, h, b] = [m('prism'), m('fuse2fs'), m('host'), m('base')]
    console.log([w.name, p.toFixed(2), f.toFixed(2), h.toFixed(2), (p / f).toFixed(2), (p / h).toFixed(2),
      ...(base ? [b.toFixed(2), (b / f).toFixed(2), (p / b).toFixed(2)] : [])].join('\t'))
  }
  console.log('samples (s):')
  for (const [k, v] of times) console.log(`  ${k.replace('\t', ' / ')}: ${v.map((x) => x.toFixed(2)).join(' ')}`)
  if (!only.has('lazy')) return
  const [lz, ex] = [median(build.lazy), median(build.expanded)]
  console.log(`\nnpx tsc inside a clone of the built project (prism; median of ${RUNS}, alternating order), seconds`)
  console.log(['lazy clone', 'expanded clone', 'lazy/expanded', 'goal'].join('\t'))
  console.log([lz.toFixed(2), ex.toFixed(2), (lz / ex).toFixed(3), '<= 1.05'].join('\t'))
  console.log(`samples: lazy ${build.lazy.map((x) => x.toFixed(2)).join(' ')}; expanded ${build.expanded.map((x) => x.toFixed(2)).join(' ')}`)
}

await main()
