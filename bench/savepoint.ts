// What the per-request savepoint costs (Volume.savepoint, which a server opens around each
// request of a mount so that a failed one changes nothing): the mount's request handlers
// (PrismFs.ops) called in this process, without the kernel, with savepoints and without
// (Volume.savepoint stubbed to return null), alternating which goes first, the same requests
// on the same image in the same run. Prints the median time per request of each, and the ratio.
//
//   node --import tsx bench/savepoint.ts [--rounds 8] [--n 2000]
//
// Workloads: a lookup of a missing name (fails: a rollback); create + write 100 bytes + release
// of a new file (three requests); a random 4 KiB write into a sparse file of 8,000 extents
// (its map goes to its tree at the end of each request).
import fs from 'node:fs'
import {Volume} from '../src/fs/volume.js'
import {newImage, tmpDir} from '../test/helpers.js'
import {inProcessMount, ROOT_CTX} from '../test/inprocess.js'

const args = process.argv.slice(2)
const opt = (name: string, def: number): number => (args.includes(`--${name}`) ? Number(args[args.indexOf(`--${name}`) + 1]) : def)
const ROUNDS = opt('rounds', 8)
const N = opt('n', 2000)

const dir = tmpDir('prism-bench-savepoint-')
try {
  const img = newImage(dir, 1024 * 1024 * 1024, {inodeCount: 200_000})
  const vol = Volume.open(img, {write: true})
  const {pfs} = inProcessMount(vol)
  // (the handlers' exact parameter types are the binding's; called here as the binding calls them)
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const ops = pfs.ops as any
  const ctx = ROOT_CTX
  const real = vol.savepoint.bind(vol)
  const big = ops.create(ctx, 1, Buffer.from('big'), 0o644, 2)
  const blk = Buffer.alloc(4096, 7)
  for (let i = 0; i < 16000; i += 2) ops.write(ctx, big.entry.ino, big.open.fh, i * 4096, blk, {flags: 2})
  vol.commit()
  let seed = 1
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed }
  let made = 0
  const work: Record<string, () => void> = {
    'lookup of a missing name': () => {
      for (let i = 0; i < N; i++) {
        try { ops.lookup(ctx, 1, Buffer.from(`missing${i}`)) } catch { /* ENOENT */ }
      }
    },
    'create + write + release': () => {
      for (let i = 0; i < N; i++) {
        const c = ops.create(ctx, 1, Buffer.from(`f${made++}`), 0o644, 2)
        ops.write(ctx, c.entry.ino, c.open.fh, 0, Buffer.alloc(100, 1), {flags: 2})
        ops.release(ctx, c.entry.ino, c.open.fh, 0, '')
      }
    },
    'random 4 KiB write, 8,000 extents': () => {
      for (let i = 0; i < N; i++) ops.write(ctx, big.entry.ino, big.open.fh, (rnd() % 16000) * 4096, blk, {flags: 2})
    },
  }
  const times: Record<string, {on: number[], off: number[]}> = {}
  for (const k of Object.keys(work)) times[k] = {on: [], off: []}
  for (let r = 0; r < ROUNDS; r++) {
    for (const on of (r % 2 ? [true, false] : [false, true])) {
      vol.savepoint = on ? real : () => null
      for (const [k, f] of Object.entries(work)) {
        const t = process.hrtime.bigint()
        f()
        times[k][on ? 'on' : 'off'].push(Number(process.hrtime.bigint() - t) / N / 1000)
        vol.commit()
      }
    }
  }
  vol.savepoint = real
  vol.close()
  const med = (a: number[]): number => a.slice().sort((x, y) => x - y)[a.length >> 1]
  console.log(`per request set, µs (median of ${ROUNDS} rounds of ${N}, alternating order)`)
  console.log('workload\twith savepoints\twithout\tratio')
  for (const [k, v] of Object.entries(times)) console.log(`${k}\t${med(v.on).toFixed(1)}\t${med(v.off).toFixed(1)}\t${(med(v.on) / med(v.off)).toFixed(2)}`)
} finally {
  fs.rmSync(dir, {recursive: true, force: true})
}
