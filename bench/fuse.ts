// The FUSE binding's own cost, measured through a MemFs mount (test/fuse-memfs.ts served by
// test/fuse-server.ts in a child process, as in the tests) against the same work on a host
// directory: the time per request (a loop of stat calls, each one a GETATTR because the
// attribute timeout is 0, and of lookups of missing names), and 1 GiB written and read with dd
// (buffered and O_DIRECT). It measures the binding and the kernel's FUSE path, not Prism:
// the filesystem behind it answers from memory.
//
//   node --import tsx bench/fuse.ts                 # 200,000 stats, 1 GiB, 3 runs
//   node --import tsx bench/fuse.ts --small         # 20,000 stats, 128 MiB, 1 run
//
// Needs root and the built addon (npm run build:fuse); prints why and exits otherwise.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {FuseServer, fuseSkipReason, PYTHON, runOk} from '../test/fuse-support.js'

const args = process.argv.slice(2)
const small = args.includes('--small')
const opt = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? Number(args[i + 1]) : Number(process.env[`PRISM_BENCH_${name.toUpperCase()}`] ?? def)
}
const STATS = opt('stats', small ? 20_000 : 200_000)
const MIB = opt('mib', small ? 128 : 1024)
const RUNS = opt('runs', small ? 1 : 3)

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

// A python loop, so that the figure is the kernel round trip, not process start-up. It
// prints its wall time and its own CPU time.
const STAT_LOOP = `
import os, sys, time
p, n, missing = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1'
t = time.perf_counter()
c = time.process_time()
for i in range(n):
    try:
        os.stat(p)
    except FileNotFoundError:
        pass
print(time.perf_counter() - t, time.process_time() - c)`

/** Wall seconds, and CPU seconds of the caller and of the FUSE server (when given). */
async function statLoop(p: string, n: number, missing = false, srv?: FuseServer): Promise<{wall: number, caller: number, server: number}> {
  const before = srv ? await srv.call<number>('cpu') : 0
  const [wall, caller] = (await runOk(PYTHON, ['-c', STAT_LOOP, p, String(n), missing ? '1' : '0'], {timeoutMs: 600_000})).trim().split(' ').map(Number)
  const server = srv ? (await srv.call<number>('cpu') - before) / 1e6 : 0
  return {wall: wall!, caller: caller!, server}
}

async function dd(args: string[]): Promise<number> {
  const t = process.hrtime.bigint()
  await runOk('dd', [...args, 'status=none'], {timeoutMs: 600_000})
  return Number(process.hrtime.bigint() - t) / 1e9
}

async function main(): Promise<void> {
  const why = fuseSkipReason()
  if (why !== undefined) {
    console.log(`bench/fuse.ts: cannot run here: ${why}`)
    return
  }
  const host = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-fuse-bench-host-'))
  const srv = await FuseServer.start({memfs: {attrTimeout: 0, entryTimeout: 0}})
  const rows: [string, number[], number[]][] = []
  const wF: number[] = [], wH: number[] = [], rF: number[] = [], rH: number[] = [], dF: number[] = [], dH: number[] = []
  try {
    for (const dir of [host, srv.mountpoint]) fs.writeFileSync(path.join(dir, 'f'), 'x')
    const per = (secs: number): number => secs / STATS * 1e6
    const statF: number[] = [], statH: number[] = [], missF: number[] = [], missH: number[] = []
    const statSrv: number[] = [], missSrv: number[] = [], statCaller: number[] = [], statCallerH: number[] = []
    for (let run = 0; run < RUNS; run++) {
      const sf = await statLoop(srv.path('f'), STATS, false, srv)
      const sh = await statLoop(path.join(host, 'f'), STATS)
      const mf = await statLoop(srv.path('missing'), STATS, true, srv)
      const mh = await statLoop(path.join(host, 'missing'), STATS, true)
      statF.push(per(sf.wall))
      statH.push(per(sh.wall))
      missF.push(per(mf.wall))
      missH.push(per(mh.wall))
      statSrv.push(per(sf.server))
      missSrv.push(per(mf.server))
      statCaller.push(per(sf.caller))
      statCallerH.push(per(sh.caller))
      for (const [dir, w, r, d] of [[srv.mountpoint, wF, rF, dF], [host, wH, rH, dH]] as const) {
        const big = path.join(dir, 'big')
        w.push(await dd(['if=/dev/zero', `of=${big}`, 'bs=1M', `count=${MIB}`, 'conv=fsync']))
        r.push(await dd([`if=${big}`, 'of=/dev/null', 'bs=1M']))
        d.push(await dd([`if=${big}`, 'of=/dev/null', 'bs=1M', 'iflag=direct']))
        fs.rmSync(big)
      }
      await srv.call('resetStats')
    }
    rows.push(['stat, µs per call (GETATTR)', statF, statH])
    rows.push(['stat of a missing name, µs (LOOKUP)', missF, missH])
    rows.push(['stat: caller CPU, µs per call', statCaller, statCallerH])
    rows.push(['stat: FUSE server CPU, µs per request', statSrv, statSrv.map(() => NaN)])
    rows.push(['LOOKUP: FUSE server CPU, µs per request', missSrv, missSrv.map(() => NaN)])
    rows.push([`dd write ${MIB} MiB conv=fsync, s`, wF, wH])
    rows.push([`dd read ${MIB} MiB, s`, rF, rH])
    rows.push([`dd read ${MIB} MiB iflag=direct, s`, dF, dH])
  } finally {
    await srv.cleanup()
    fs.rmSync(host, {recursive: true, force: true})
  }
  console.log(`FUSE binding over MemFs vs host ${os.tmpdir()} (${os.cpus().length} CPUs, ${os.release()}); medians of ${RUNS} run(s)`)
  console.log(`${'workload'.padEnd(40)} ${'FUSE'.padStart(10)} ${'host'.padStart(10)} ${'ratio'.padStart(8)}`)
  for (const [name, f, h] of rows) {
    const mf = median(f)
    const mh = median(h)
    const ratio = Number.isNaN(mh) ? '' : (mf / mh).toFixed(2)
    console.log(`${name.padEnd(40)} ${mf.toFixed(2).padStart(10)} ${(Number.isNaN(mh) ? '-' : mh.toFixed(2)).padStart(10)} ${ratio.padStart(8)}`)
  }
  const gib = MIB / 1024
  const [w, r, d] = [wF, rF, dF].map(median) as [number, number, number]
  console.log(`throughput through FUSE: write ${(gib / w).toFixed(2)} GiB/s, read ${(gib / r).toFixed(2)} GiB/s, direct read ${(gib / d).toFixed(2)} GiB/s`)
  console.log(`load average at the end: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} (wall-clock figures grow with it; CPU figures much less)`)
}

await main()
