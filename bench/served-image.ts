// `prism cp -r` and `prism mv` within a mounted image, and `prism defrag` on it: the server
// running them in slices (src/server/sliced.ts) against the image lent to each command
// (PRISM_SERVED_SLICES=0, the mounts held until it ends), in the same run, in alternating
// order. Meanwhile the probe (test/mount-cpin-probe.py) makes calls on another fileset's
// mount of the same image and gives its latency p50, p99 and max. Each figure is the median
// over the runs (max: the largest).
//
//   node --import tsx bench/served-image.ts                         # 10,000 files, 3 runs
//   node --import tsx bench/served-image.ts --files 30000 --runs 1 --only cp,defrag
//
// The image: root:/big (FILES tiny files in directories of 100), fileset frag (64 files of
// 1 MiB written a block each in turn, so fragmented, and a copy of root:/big), fileset p (the
// probe's). cp: root:/big -> root:/big2; mv: root:/big -> other:/big; defrag: frag.
// Needs root and the FUSE addon (npm run build first); prints why and exits otherwise.
import fs from 'node:fs'
import path from 'node:path'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {fuseSkipReason} from '../test/fuse-support.js'
import {edit} from '../test/helpers.js'
import {cli, Scratch} from '../test/mount-support.js'
import {startProbe, type Probe} from './probe.js'

const args = process.argv.slice(2)
const arg = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : def
}
const FILES = Number(arg('files', '10000'))
const RUNS = Number(arg('runs', '3'))
type Cmd = 'cp' | 'mv' | 'defrag'
const ONLY = arg('only', 'cp,mv,defrag').split(',') as Cmd[]

const skip = fuseSkipReason() ?? (process.getuid?.() !== 0 ? 'needs root' : undefined)
if (skip) {
  console.log(`bench/served-image.ts: skipped: ${skip}`)
  process.exit(0)
}

interface Result {seconds: number, probe: Probe}
type Mode = 'slices' | 'lend'

const ARGS: Record<Cmd, string[]> = {
  cp: ['cp', '-r', 'root:/big', 'root:/big2'],
  mv: ['mv', 'root:/big', 'other:/big'],
  defrag: ['defrag', 'frag'],
}

async function ok(a: string[]): Promise<void> {
  const r = await cli(a, {timeoutMs: 3_600_000})
  if (r.code !== 0) throw new Error(`prism ${a.join(' ')}: ${r.stderr}`)
}

/** The image every run starts from (made once). */
async function template(dir: string): Promise<string> {
  const t = new Scratch({size: 1024 * 1024 * 1024, inodeCount: Math.max(65536, Math.ceil(FILES * 2.5 / 16384) * 16384)})
  const host = path.join(dir, 'host')
  for (let d = 0; d * 100 < FILES; d++) {
    const sub = path.join(host, 'big', `d${String(d).padStart(4, '0')}`)
    fs.mkdirSync(sub, {recursive: true})
    for (let f = 0; f < 100 && d * 100 + f < FILES; f++) fs.writeFileSync(path.join(sub, `f${f}`), `${d}/${f} `.repeat(f % 7))
  }
  fs.mkdirSync(path.join(host, 'probe'))
  for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(host, 'probe', `p${i}`), 'probe'.repeat(100))
  for (const f of ['other', 'frag', 'p']) await ok(['fileset', 'create', '-i', t.image, f])
  await ok(['cp', '-r', '-i', t.image, path.join(host, 'big'), 'root:/big'])
  await ok(['cp', '-r', '-i', t.image, path.join(host, 'big'), 'frag:/big'])
  await ok(['cp', '-r', '-i', t.image, path.join(host, 'probe'), 'p:/'])
  edit(t.image, (ns, vol) => {
    const files = Array.from({length: 64}, (_, i) => ns.openForWrite(`/f${i}`))
    for (let b = 0; b < 256; b++) {
      files.forEach((f, i) => ns.writeInode(f, b * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, (i * 7 + b) & 0xff)))
      if (b % 32 === 31) vol.commit()
    }
  }, 'frag')
  fs.rmSync(host, {recursive: true, force: true})
  const img = path.join(dir, 'template.img')
  fs.copyFileSync(t.image, img)
  await t.cleanup()
  return img
}

async function once(tpl: string, cmd: Cmd, mode: Mode): Promise<Result> {
  const s = new Scratch({size: 16 * 1024 * 1024})
  fs.copyFileSync(tpl, s.image)
  try {
    const mp = s.mountpoint()
    await s.mount('p', mp)
    const stop = startProbe(path.join(mp, 'probe'), s.dir)
    await new Promise((r) => setTimeout(r, 500))
    const t0 = performance.now()
    const r = await cli([ARGS[cmd][0], '-i', s.image, ...ARGS[cmd].slice(1)], {timeoutMs: 3_600_000, env: mode === 'lend' ? {PRISM_SERVED_SLICES: '0'} : {}})
    const seconds = (performance.now() - t0) / 1000
    const probe = await stop()
    if (r.code !== 0) throw new Error(`${cmd} ${mode}: failed (${r.code}): ${r.stderr.trim()}`)
    return {seconds, probe}
  } finally {
    await s.cleanup()
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

const dir = fs.mkdtempSync('/tmp/prism-bench-simg-')
try {
  const tpl = await template(dir)
  const MODES: Mode[] = ['slices', 'lend']
  const results = new Map<string, Result[]>()
  console.log(`${FILES} files; ${RUNS} runs; load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
  for (let run = 0; run < RUNS; run++) {
    for (const cmd of ONLY) {
      // alternating order: each mode goes first in turn
      for (const m of run % 2 ? [...MODES].reverse() : MODES) {
        const r = await once(tpl, cmd, m)
        const key = `${cmd} ${m}`
        results.set(key, [...(results.get(key) ?? []), r])
        console.log(`run ${run + 1} ${key}: ${r.seconds.toFixed(2)} s; probe ${JSON.stringify(r.probe)}`)
      }
    }
  }
  console.log(`\n| command | mode | wall s (median) | probe calls | probe p50 ms | probe p99 ms | probe max ms |`)
  console.log('|---|---|---|---|---|---|---|')
  const f = (x: number) => x.toFixed(1)
  for (const cmd of ONLY) {
    for (const m of MODES) {
      const rs = results.get(`${cmd} ${m}`)!
      console.log(`| ${ARGS[cmd].join(' ')} | ${m === 'slices' ? 'in slices' : 'lent (PRISM_SERVED_SLICES=0)'} | ${median(rs.map((r) => r.seconds)).toFixed(2)} | ${median(rs.map((r) => r.probe.calls))} | ${f(median(rs.map((r) => r.probe.p50)))} | ${f(median(rs.map((r) => r.probe.p99)))} | ${f(Math.max(...rs.map((r) => r.probe.max)))} |`)
    }
  }
  console.log(`load at the end ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
} finally {
  fs.rmSync(dir, {recursive: true, force: true})
}
