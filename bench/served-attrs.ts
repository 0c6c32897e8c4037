// `prism chmod -R`, `prism chown -R` and `prism write` on a mounted image: the server running
// them in slices (src/server/servedattrs.ts) against the image lent to each command
// (PRISM_SERVED_SLICES=0, the mounts held until it ends), in the same run, in alternating
// order; and `prism mkdir`, one step in the server (src/server/short.ts), against its lend (the
// lend's own cost). Meanwhile the
// probe (test/mount-cpin-probe.py) makes calls on another fileset's mount of the same image
// and gives its latency p50, p99 and max. Each figure is the median over the runs (max: the
// largest).
//
//   node --import tsx bench/served-attrs.ts                          # 20,000 files, 64 MiB, 3 runs
//   node --import tsx bench/served-attrs.ts --files 100000 --mib 1024 --runs 1 --only chmod,write
//
// The image: fileset big (FILES tiny files in directories of 200), fileset p (the probe's).
// Needs root and the FUSE addon (npm run build first); prints why and exits otherwise.
import {spawn} from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {BIN, edit} from '../test/helpers.js'
import {fuseSkipReason} from '../test/fuse-support.js'
import {cli, Scratch} from '../test/mount-support.js'
import {startProbe, type Probe} from './probe.js'

const args = process.argv.slice(2)
const arg = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : def
}
const FILES = Number(arg('files', '20000'))
const MIB = Number(arg('mib', '64'))
const RUNS = Number(arg('runs', '3'))
type Cmd = 'chmod' | 'chown' | 'write' | 'mkdir'
const ONLY = arg('only', 'chmod,chown,write,mkdir').split(',') as Cmd[]

const skip = fuseSkipReason() ?? (process.getuid?.() !== 0 ? 'needs root' : undefined)
if (skip) {
  console.log(`bench/served-attrs.ts: skipped: ${skip}`)
  process.exit(0)
}

interface Result {seconds: number, probe: Probe}
type Mode = 'slices' | 'lend'

const ARGS: Record<Cmd, string[]> = {
  chmod: ['chmod', '-R', 'go-r', 'big:/'],
  chown: ['chown', '-R', '1000:1000', 'big:/'],
  write: ['write', 'big:/w'],
  mkdir: ['mkdir', 'big:/new'],
}

async function ok(a: string[]): Promise<void> {
  const r = await cli(a, {timeoutMs: 3_600_000})
  if (r.code !== 0) throw new Error(`prism ${a.join(' ')}: ${r.stderr}`)
}

/** The image every run starts from (made once). */
async function template(dir: string): Promise<string> {
  const t = new Scratch({size: Math.max(1024, 2 * MIB + 512) * 1024 * 1024, inodeCount: Math.max(65536, Math.ceil(FILES * 1.5 / 16384) * 16384)})
  const host = path.join(dir, 'probe')
  fs.mkdirSync(host)
  for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(host, `p${i}`), 'probe'.repeat(100))
  for (const f of ['big', 'p']) await ok(['fileset', 'create', '-i', t.image, f])
  await ok(['cp', '-r', '-i', t.image, host, 'p:/'])
  edit(t.image, (ns, vol) => {
    for (let d = 0; d * 200 < FILES; d++) {
      ns.mkdir(`/d${d}`)
      for (let f = 0; f < 200 && d * 200 + f < FILES; f++) ns.writeFile(`/d${d}/f${f}`, Buffer.from(`${d}/${f}`), {mode: 0o644})
      vol.maybeCommit()
    }
  }, 'big')
  const img = path.join(dir, 'template.img')
  fs.copyFileSync(t.image, img)
  await t.cleanup()
  return img
}

/** The CLI with its standard input from `input` (or none). */
function run(a: string[], input: string | null, env: NodeJS.ProcessEnv): Promise<{code: number | null, stderr: string}> {
  const fd = input === null ? 'ignore' : fs.openSync(input, 'r')
  const child = spawn(process.execPath, [BIN, ...a], {stdio: [fd, 'ignore', 'pipe'], env: {...process.env, ...env}})
  if (typeof fd === 'number') fs.closeSync(fd)
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
  })
  return new Promise((resolve) => child.on('close', (code) => resolve({code, stderr})))
}

async function once(tpl: string, input: string, cmd: Cmd, mode: Mode): Promise<Result> {
  const s = new Scratch({size: 16 * 1024 * 1024})
  fs.copyFileSync(tpl, s.image)
  try {
    const mp = s.mountpoint()
    await s.mount('p', mp)
    const stop = startProbe(path.join(mp, 'probe'), s.dir)
    await new Promise((r) => setTimeout(r, 500))
    const t0 = performance.now()
    const r = await run([ARGS[cmd][0], '-i', s.image, ...ARGS[cmd].slice(1)], cmd === 'write' ? input : null, mode === 'lend' ? {PRISM_SERVED_SLICES: '0'} : {})
    const seconds = (performance.now() - t0) / 1000
    await new Promise((r) => setTimeout(r, 200))
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

const dir = fs.mkdtempSync('/tmp/prism-bench-sattr-')
try {
  const tpl = await template(dir)
  const input = path.join(dir, 'input')
  const fd = fs.openSync(input, 'w')
  for (let i = 0; i < MIB; i++) fs.writeSync(fd, crypto.randomBytes(1024 * 1024))
  fs.closeSync(fd)
  const MODES: Mode[] = ['slices', 'lend']
  const results = new Map<string, Result[]>()
  console.log(`${FILES} files, ${MIB} MiB; ${RUNS} runs; load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
  for (let r = 0; r < RUNS; r++) {
    for (const cmd of ONLY) {
      // alternating order: each mode goes first in turn
      for (const m of r % 2 ? [...MODES].reverse() : MODES) {
        const res = await once(tpl, input, cmd, m)
        const key = `${cmd} ${m}`
        results.set(key, [...(results.get(key) ?? []), res])
        console.log(`run ${r + 1} ${key}: ${res.seconds.toFixed(2)} s; probe ${JSON.stringify(res.probe)}`)
      }
    }
  }
  console.log(`\n| command | mode | wall s (median) | probe calls | probe p50 ms | probe p99 ms | probe max ms |`)
  console.log('|---|---|---|---|---|---|---|')
  const f = (x: number) => x.toFixed(1)
  for (const cmd of ONLY) {
    for (const m of MODES) {
      const rs = results.get(`${cmd} ${m}`)
      if (!rs) continue
      console.log(`| ${ARGS[cmd].join(' ')}${cmd === 'write' ? ` < ${MIB} MiB` : ''} | ${m === 'slices' ? (cmd === 'mkdir' ? 'in one step' : 'in slices') : 'lent (PRISM_SERVED_SLICES=0)'} | ${median(rs.map((x) => x.seconds)).toFixed(2)} | ${median(rs.map((x) => x.probe.calls))} | ${f(median(rs.map((x) => x.probe.p50)))} | ${f(median(rs.map((x) => x.probe.p99)))} | ${f(Math.max(...rs.map((x) => x.probe.max)))} |`)
    }
  }
  console.log(`load at the end ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
} finally {
  fs.rmSync(dir, {recursive: true, force: true})
}
