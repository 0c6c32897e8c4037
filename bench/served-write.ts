// A large `prism cp -r HOST root:/usr` into a mounted image: the server copying in slices
// (src/server/copyin.ts) against the image lent to the command (PRISM_SERVED_SLICES=0, the
// mounts held until it ends) and against the same copy into an image nobody serves, in the
// same run, in alternating order. Meanwhile the probe (test/mount-cpin-probe.py) makes calls
// on other files of a mount (of the image copied into; for the unserved copy, of another
// image, as a measure of the machine's load) and gives its latency p50, p99 and max. Each
// figure is the median over the runs (max: the largest).
//
//   node --import tsx bench/served-write.ts                      # /usr/share, 3 runs
//   node --import tsx bench/served-write.ts --src DIR --runs 1
//
// Needs root and the FUSE addon (npm run build first); prints why and exits otherwise.
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fuseSkipReason} from '../test/fuse-support.js'
import {cli, Scratch} from '../test/mount-support.js'
import {startProbe, type Probe} from './probe.js'

const args = process.argv.slice(2)
const arg = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : def
}
const SRC = path.resolve(arg('src', '/usr/share'))
const RUNS = Number(arg('runs', '3'))
const OP = arg('op', 'cp')
if (OP !== 'cp' && OP !== 'import') throw new Error(`--op cp or --op import, not ${OP}`)

const skip = fuseSkipReason() ?? (process.getuid?.() !== 0 ? 'needs root' : undefined)
if (skip) {
  console.log(`bench/served-write.ts: skipped: ${skip}`)
  process.exit(0)
}

interface Result {seconds: number, probe: Probe, files: number}
type Mode = 'alone' | 'slices' | 'lend'

/** The entries below `dir` and their bytes. */
function counted(dir: string): {entries: number, bytes: number} {
  let entries = 0
  let bytes = 0
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, {withFileTypes: true})) {
      entries++
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) bytes += fs.lstatSync(p).size
    }
  }
  walk(dir)
  return {entries, bytes}
}

const {entries: ENTRIES, bytes: BYTES} = counted(SRC)
const MIB = 1024 * 1024
const SIZE = Math.max(512 * MIB, Math.ceil(BYTES * 1.5 / MIB) * MIB + 256 * MIB)
const INODES = Math.max(16384, Math.ceil(ENTRIES * 1.3 / 16384) * 16384)

/** The archive an import reads (made once), and its directory. */
let ARCHIVE = ''
const archiveDir = OP === 'import' ? fs.mkdtempSync(path.join(os.tmpdir(), 'prism-bench-import-')) : ''
if (OP === 'import') {
  ARCHIVE = path.join(archiveDir, 'src.tar')
  execFileSync('tar', ['--format=pax', '-cf', ARCHIVE, '-C', SRC, '.'])
  if (args.includes('--zstd')) {
    execFileSync('zstd', ['-q', '-3', '--rm', ARCHIVE, '-o', `${ARCHIVE}.zst`])
    ARCHIVE += '.zst'
  }
}

async function once(mode: Mode): Promise<Result> {
  const s = new Scratch({size: SIZE, inodeCount: INODES})
  // The unserved copy goes to an image of its own; the probe then runs on a mount of this one.
  const other = mode === 'alone' ? new Scratch({size: 256 * 1024 * 1024}) : null
  try {
    const probed = other ?? s
    const pmp = probed.mountpoint()
    await probed.mount('root', pmp)
    // (the probe's files exist before the copy starts)
    const stop = startProbe(path.join(pmp, 'probe'), s.dir)
    await new Promise((r) => setTimeout(r, 500))
    const t0 = performance.now()
    const cmd = OP === 'cp' ? ['cp', '-r', '-i', s.image, SRC, 'root:/usr', '--json'] : ['import', '-i', s.image, 'root:/usr', ARCHIVE, '--json']
    const r = await cli(cmd, {timeoutMs: 3_600_000, env: mode === 'lend' ? {PRISM_SERVED_SLICES: '0'} : {}})
    const seconds = (performance.now() - t0) / 1000
    const probe = await stop()
    if (r.code !== 0 && r.code !== 1) throw new Error(`${mode}: prism ${OP} failed (${r.code}): ${r.stderr.trim()}`)
    const stats = JSON.parse(r.stdout) as {files: number}
    return {seconds, probe, files: stats.files}
  } finally {
    await s.cleanup()
    await other?.cleanup()
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

const MODES: Mode[] = ['alone', 'slices', 'lend']
const results: Record<Mode, Result[]> = {alone: [], slices: [], lend: []}
console.log(`prism ${OP}: source ${SRC}${ARCHIVE ? ` (archive ${path.basename(ARCHIVE)}, ${(fs.statSync(ARCHIVE).size / 1024 / 1024).toFixed(0)} MiB)` : ''}: ${ENTRIES} entries, ${(BYTES / MIB).toFixed(0)} MiB; images of ${SIZE / MIB} MiB; ${RUNS} runs; load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
for (let run = 0; run < RUNS; run++) {
  // alternating order: each mode goes first in turn
  const order = MODES.map((_, i) => MODES[(i + run) % MODES.length])
  for (const m of order) {
    const r = await once(m)
    results[m].push(r)
    console.log(`run ${run + 1} ${m}: ${r.seconds.toFixed(2)} s, ${r.files} files; probe ${JSON.stringify(r.probe)}`)
  }
}
console.log(`\n| ${OP} | wall s (median) | vs alone | probe calls | probe p50 ms | probe p99 ms | probe max ms |`)
console.log('|---|---|---|---|---|---|---|')
const alone = median(results.alone.map((r) => r.seconds))
for (const m of MODES) {
  const rs = results[m]
  const w = median(rs.map((r) => r.seconds))
  const f = (x: number) => x.toFixed(1)
  console.log(`| ${m === 'alone' ? 'unserved (probe on another image)' : m === 'slices' ? 'served, in slices' : 'served, lent (PRISM_SERVED_SLICES=0)'} | ${w.toFixed(2)} | ${(w / alone).toFixed(2)} | ${median(rs.map((r) => r.probe.calls))} | ${f(median(rs.map((r) => r.probe.p50)))} | ${f(median(rs.map((r) => r.probe.p99)))} | ${f(Math.max(...rs.map((r) => r.probe.max)))} |`)
}
if (archiveDir) fs.rmSync(archiveDir, {recursive: true, force: true})
console.log(`load at the end ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
