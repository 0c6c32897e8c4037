// Random writes that leave a file of very many extents (issue 19: every cost grows linearly
// or better). N one-byte writes land in a sparse file, one every 8 KiB, in a shuffled order,
// so that no two blocks ever join and the map ends at N extents, each write inserting one in
// the middle. Prism writes them in this process (namespace.writeInode, committed as a
// transaction fills), with the locality policy off and on; the peer writes the same bytes at
// the same offsets into a sparse file on the host's file system (pwrite, one fsync at the
// end). The two alternate which goes first. The table gives the medians, Prism's time per
// write, and how that grew from the smallest N: about 1.0 is linear.
//
// Before the map was held in chunks (src/fs/extentmap.ts), each insert moved every extent
// after it: with the policy off, 100,000 / 200,000 / 400,000 writes took 5.5 / 16.1 / 68.1 s
// (bench/README.md, "A file of many extents").
//
//   node --import tsx bench/extents.ts [--writes 50000,100000,200000,400000] [--runs 2] [--policy off,on] [--base DIR]
import fs from 'node:fs'
import path from 'node:path'
import {parseArgs} from 'node:util'
import {check, ensureBuilt, gitVersion, log, median, prism, writeResults} from './lib.js'
import * as image from '../src/fs/image.js'
import {loadExtents} from '../src/fs/extents.js'

const {values: v} = parseArgs({options: {
  writes: {type: 'string'}, runs: {type: 'string'}, policy: {type: 'string'}, base: {type: 'string'},
}})
const sizes = (v.writes ?? '50000,100000,200000,400000').split(',').map(Number)
const runs = Number(v.runs ?? 2)
const policies = (v.policy ?? 'off,on').split(',') as Array<'off' | 'on'>
const base = v.base ?? fs.mkdtempSync('/tmp/prism-extents-')
fs.mkdirSync(base, {recursive: true})
ensureBuilt()
const STRIDE = 8192

/** The slots 0..n-1 in a shuffled order (the same for every run and contender). */
function shuffled(n: number): number[] {
  const order = Array.from({length: n}, (_, i) => i)
  let seed = 7
  for (let i = n - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j], order[i]]
  }
  return order
}

/** Seconds for Prism's writes into a fresh image, and the extents the file ends with. */
function prismRun(order: number[], policy: 'off' | 'on'): {secs: number, extents: number} {
  const img = path.join(base, `${policy}.img`)
  fs.rmSync(img, {force: true})
  const gib = Math.ceil((order.length * STRIDE * 1.5) / 2 ** 30) + 1
  check(prism(['mkfs', img, '--size', `${gib}G`, ...(policy === 'off' ? ['--coaw-region', 'off'] : [])]), 'prism mkfs')
  check(prism(['touch', 'root:/f', '-i', img]), 'prism touch')
  let extents = 0
  const byte = Buffer.from([1])
  const t0 = process.hrtime.bigint()
  image.withImage(img, {write: true}, (vol) => {
    const ns = image.namespace(vol, 'root')
    const f = ns.resolveOwned('/f')
    for (const k of order) {
      ns.writeInode(f, k * STRIDE, byte)
      vol.maybeCommit()
    }
    extents = loadExtents(vol, f).length
  })
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  fs.rmSync(img, {force: true})
  return {secs, extents}
}

/** Seconds for the same writes into a sparse host file. */
function hostRun(order: number[]): number {
  const file = path.join(base, 'host.data')
  fs.rmSync(file, {force: true})
  const byte = Buffer.from([1])
  const t0 = process.hrtime.bigint()
  const fd = fs.openSync(file, 'w')
  for (const k of order) fs.writeSync(fd, byte, 0, 1, k * STRIDE)
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  fs.rmSync(file, {force: true})
  return secs
}

interface Row { writes: number, policy: string, prism: number[], host: number[], extents: number }
const rows: Row[] = []
for (const n of sizes) {
  const order = shuffled(n)
  for (const policy of policies) {
    const row: Row = {writes: n, policy, prism: [], host: [], extents: 0}
    for (let r = 0; r < runs; r++) {
      const hostFirst = r % 2 === 1
      if (hostFirst) row.host.push(hostRun(order))
      const p = prismRun(order, policy)
      row.prism.push(p.secs)
      row.extents = p.extents
      if (!hostFirst) row.host.push(hostRun(order))
      log(`${n} writes, policy ${policy}, run ${r + 1}: prism ${p.secs.toFixed(2)} s (${p.extents} extents), host ${row.host[row.host.length - 1].toFixed(2)} s`)
    }
    rows.push(row)
  }
}

console.log(`\nRandom one-byte writes 8 KiB apart into one sparse file, medians of ${runs} runs (prism ${gitVersion()})`)
console.log('| writes | policy | extents | prism | host (pwrite + fsync) | prism / host | prism per write | per write / smallest |')
console.log('|---|---|---|---|---|---|---|---|')
for (const policy of policies) {
  const mine = rows.filter((x) => x.policy === policy)
  const first = median(mine[0].prism) / mine[0].writes
  for (const x of mine) {
    const p = median(x.prism)
    const h = median(x.host)
    const per = p / x.writes
    console.log(`| ${x.writes.toLocaleString('en')} | ${policy} | ${x.extents.toLocaleString('en')} | ${p.toFixed(2)} s | ${h.toFixed(2)} s | ${(p / h).toFixed(1)} | ${(per * 1e6).toFixed(1)} µs | ${(per / first).toFixed(2)} |`)
  }
}
writeResults('extents', rows)
