// Read-only commands on a mounted image (issue 17): how long calls on the mount wait while
// `prism cat`, `ls -R`, `du`, `scan`, `cp -r` out, `diff`, `export` and `fsck` run on the
// served image, when the command reads a snapshot (the default) and when it borrows the image
// (PRISM_SERVED_SNAPSHOT=0: the server holds every request until the command exits), in the
// same run, in alternating order.
//
// A probe process (Python, not the server) makes calls on the mount every ~1 ms: an lstat of
// a new name (a LOOKUP the kernel cannot answer from its cache) and a 100-byte pwrite into a
// file of its own, and records how long each pair took. For each command the figures are the
// p99 and the maximum of the pairs started while the command ran, and the command's time;
// medians over the runs.
//
//   node --import tsx bench/served-read.ts             # 60,000 files, 1 GiB, 3 runs
//   node --import tsx bench/served-read.ts --small     # 3,000 files, 64 MiB, 1 run
//   node --import tsx bench/served-read.ts --only cat,ls --runs 5 --base /tmp/mine
//   node --import tsx bench/served-read.ts --no-probe  # the commands' own time, nothing else on the mount
//
// Needs root and the FUSE addon (prints why and exits otherwise); runs bin/run.js (run
// `npm run build` first).
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fuseSkipReason, PYTHON} from '../test/fuse-support.js'
import {check, defaultSpec, ensureBuilt, ensureTree, fmtBytes, gitVersion, log, median, MiB, prism, q, sh, prismCmd, type TreeSpec} from './lib.js'

const args = process.argv.slice(2)
const small = args.includes('--small')
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1]! : process.env[`PRISM_BENCH_${name.toUpperCase().replace(/-/g, '_')}`] ?? def
}
const RUNS = Number(opt('runs', small ? '1' : '3'))
const FILES = Number(opt('files', small ? '3000' : '60000'))
const BASE = path.resolve(opt('base', path.join(os.tmpdir(), `prism-served-read-${process.pid}`)))
const NO_PROBE = args.includes('--no-probe')
const KEYS = ['cat', 'ls', 'du', 'scan', 'cp', 'diff', 'export', 'fsck']
const ONLY = opt('only', KEYS.join(',')).split(',').map((s) => s.trim()).filter(Boolean)
for (const k of ONLY) {
  if (!KEYS.includes(k)) {
    console.error(`bench/served-read.ts: unknown command '${k}' in --only (known: ${KEYS.join(', ')})`)
    process.exit(2)
  }
}

const why = fuseSkipReason()
if (why) {
  console.error(`bench/served-read.ts: ${why}`)
  process.exit(1)
}

// The probe: pairs of calls every ~1 ms until a line arrives on stdin, then one line per pair
// on stdout: start (CLOCK_MONOTONIC seconds, as process.hrtime) and duration (seconds).
const PROBE = `
import os, sys, time, select
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
fd = os.open(os.path.join(d, 'w'), os.O_WRONLY | os.O_CREAT, 0o644)
buf = b'x' * 100
out = []
i = 0
while not select.select([sys.stdin], [], [], 0)[0]:
    t0 = time.monotonic()
    try:
        os.lstat(os.path.join(d, 'missing-%d' % i))
    except FileNotFoundError:
        pass
    os.pwrite(fd, buf, (i % 1000) * 100)
    out.append('%.6f %.6f' % (t0, time.monotonic() - t0))
    i += 1
    time.sleep(0.001)
os.close(fd)
sys.stdout.write('\\n'.join(out) + '\\n')
`

interface Probe {
  stop: () => Promise<Array<[number, number]>>
}

function startProbe(dir: string): Promise<Probe> {
  if (NO_PROBE) return Promise.resolve({stop: () => Promise.resolve([])})
  const child = spawn(PYTHON, ['-c', PROBE, dir], {stdio: ['pipe', 'pipe', 'inherit']})
  let out = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d: string) => { out += d })
  const done = new Promise<void>((resolve) => child.on('close', () => resolve()))
  return new Promise((resolve) => setTimeout(() => resolve({
    stop: async () => {
      child.stdin.end('stop\n')
      await done
      return out.trim().split('\n').filter(Boolean).map((l) => l.split(' ').map(Number) as [number, number])
    },
  }), 300))
}

const nowS = (): number => Number(process.hrtime.bigint()) / 1e9

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench/served-read.ts: needs root (FUSE mounts)')
    process.exit(1)
  }
  ensureBuilt()
  fs.mkdirSync(BASE, {recursive: true})
  const spec: TreeSpec = {...defaultSpec(small), files: FILES, dirs: Math.round(FILES / 7), bytes: small ? 64 * MiB : 1024 * MiB,
    catSize: small ? 16 * MiB : 256 * MiB, symlinks: Math.round(FILES / 50), hardlinks: Math.round(FILES / 100)}
  const tree = ensureTree(path.join(BASE, `tree-${spec.files}`), spec)
  const work = fs.mkdtempSync(path.join(BASE, 'work-'))
  const img = path.join(work, 'disk.img')
  const mp = path.join(work, 'mp')
  fs.mkdirSync(mp)
  log(`prism ${gitVersion()}; tree ${tree.files} files, ${tree.dirs} dirs, ${fmtBytes(tree.bytes)}; ${RUNS} run(s); ${work}`)
  check(prism(['mkfs', img, '--size', `${Math.ceil((tree.bytes * 3) / 1024 / 1024 / 1024) + 2}G`]), 'mkfs')
  check(prism(['cp', '-r', tree.dir, 'root:/usr', '-i', img]), 'import')
  check(prism(['clone', 'root', '--mode', 'sync', '-i', img]), 'clone')
  check(prism(['write', 'root-1:/usr/changed', '-i', img], {input: 'a change\n', stdio: ['pipe', 'pipe', 'pipe']}), 'write')
  // One signature that matches nothing: scan reads every file and hashes it.
  const sig = path.join(work, 'none.hdb')
  fs.writeFileSync(sig, `${'0'.repeat(32)}:1234567:Bench.NoMatch\n`)
  const hostOut = path.join(work, 'out')
  const tar = path.join(work, 'out.tar')
  const commands: Record<string, {args: string[], after?: () => void}> = {
    cat: {args: ['cat', `root:/usr/${tree.catFile}`]},
    ls: {args: ['ls', '-R', '-l', 'root:/usr']},
    du: {args: ['du', '-s', 'root:/usr']},
    scan: {args: ['scan', '-s', sig, 'root']},
    cp: {args: ['cp', '-r', 'root:/usr', hostOut], after: () => fs.rmSync(hostOut, {recursive: true, force: true})},
    diff: {args: ['diff', 'root', 'root-1']},
    export: {args: ['export', 'root', tar], after: () => fs.rmSync(tar, {force: true})},
    fsck: {args: ['fsck']},
  }
  check(prism(['mount', 'root', mp, '-i', img]), 'mount')
  const rows: Array<{cmd: string, mode: string, secs: number[], p99: number[], max: number[], calls: number[]}> = []
  try {
    for (const cmd of ONLY) {
      const c = commands[cmd]!
      const res = {snapshot: {secs: [] as number[], p99: [] as number[], max: [] as number[], calls: [] as number[]}, lend: {secs: [] as number[], p99: [] as number[], max: [] as number[], calls: [] as number[]}}
      for (let r = 0; r < RUNS; r++) {
        const order: Array<'snapshot' | 'lend'> = r % 2 === 0 ? ['snapshot', 'lend'] : ['lend', 'snapshot']
        for (const mode of order) {
          const probe = await startProbe(path.join(mp, `probe-${cmd}-${mode}-${r}`))
          const t0 = nowS()
          const out = sh(`${prismCmd()} ${c.args.map(q).join(' ')} -i ${q(img)} > /dev/null`, {env: {...process.env, PRISM_SERVED_SNAPSHOT: mode === 'snapshot' ? '1' : '0'}})
          const t1 = nowS()
          const pairs = await probe.stop()
          c.after?.()
          if (out.status !== 0 && !(cmd === 'diff' && out.status === 1)) throw new Error(`prism ${c.args.join(' ')} (${mode}) failed (${out.status}): ${out.stderr.trim()}`)
          const during = pairs.filter(([s]) => s >= t0 && s <= t1).map(([, d]) => d * 1000)
          res[mode].secs.push(t1 - t0)
          res[mode].p99.push(pct(during, 99))
          res[mode].max.push(during.length ? Math.max(...during) : NaN)
          res[mode].calls.push(during.length)
          log(`${cmd} ${mode} run ${r + 1}: ${(t1 - t0).toFixed(2)} s, ${during.length} probe pairs, p99 ${pct(during, 99).toFixed(1)} ms, max ${Math.max(...during).toFixed(1)} ms`)
        }
      }
      for (const mode of ['snapshot', 'lend'] as const) rows.push({cmd, mode, ...res[mode]})
    }
  } finally {
    prism(['umount', mp])
    fs.rmSync(work, {recursive: true, force: true})
  }
  console.log(`\nprobe pairs (lstat of a new name + 100-byte pwrite, every ~1 ms) started while each command ran; medians of ${RUNS} run(s)`)
  console.log('| command | mode | command s | probe pairs | p99 ms | max ms |')
  console.log('|---|---|---|---|---|---|')
  for (const r of rows) {
    console.log(`| ${r.cmd} | ${r.mode} | ${median(r.secs).toFixed(2)} | ${median(r.calls)} | ${median(r.p99).toFixed(1)} | ${median(r.max).toFixed(1)} |`)
  }
}

main().catch((e: unknown) => {
  console.error((e as Error).stack ?? String(e))
  process.exit(1)
})
