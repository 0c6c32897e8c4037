// Random 4 KiB writes, each committed on its own (what an fsync after every write through a
// mount costs: a database, a VM disk image), into a file already split into many extents,
// next to the same writes with fdatasync into a plain host file (the peer: the host's own
// file system), in the same run, the two alternating rounds. With the locality policy off a
// random write splits an extent, so the map grows to hundreds of thousands of extents; the
// commit must write only the nodes of the extent tree that changed (FORMAT.md §6.4), not the
// whole tree.
//
//   node --import tsx bench/fsync-writes.ts [--mib 1024] [--extents 200000] [--writes 1000] [--runs 3] [--base DIR]
import fs from 'node:fs'
import path from 'node:path'
import {parseArgs} from 'node:util'
import {MiB, check, log, median, prism, writeResults} from './lib.js'
import * as image from '../src/fs/image.js'
import {loadExtents} from '../src/fs/extents.js'

const {values: v} = parseArgs({options: {
  mib: {type: 'string'}, extents: {type: 'string'}, writes: {type: 'string'}, runs: {type: 'string'}, base: {type: 'string'},
}})
const mib = Number(v.mib ?? 1024)
const scatter = Number(v.extents ?? 200_000)
const writes = Number(v.writes ?? 1000)
const runs = Number(v.runs ?? 3)
const base = v.base ?? fs.mkdtempSync('/tmp/prism-fsync-')
fs.mkdirSync(base, {recursive: true})
const blocks = (mib * MiB) / 4096

let seed = 12345
const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0)

/** An image (policy off or on) holding one file of `mib` MiB, scattered by `scatter` batched writes. */
function setup(mode: 'off' | 'on'): string {
  const img = path.join(base, `${mode}.img`)
  fs.rmSync(img, {force: true})
  check(prism(['mkfs', img, '--size', `${Math.ceil(mib / 1024) * 2 + 2}G`, ...(mode === 'off' ? ['--coaw-region', 'off'] : [])]), 'prism mkfs')
  const host = path.join(base, 'data')
  fs.writeFileSync(host, Buffer.alloc(mib * MiB, 7))
  check(prism(['cp', host, 'root:/big', '-i', img]), 'prism cp')
  fs.rmSync(host)
  image.withImage(img, {write: true}, (vol) => {
    const ns = image.namespace(vol, 'root')
    const big = ns.resolveOwned('/big')
    const data = Buffer.alloc(4096, 9)
    for (let i = 0; i < scatter; i++) { ns.writeInode(big, (rnd() % blocks) * 4096, data); vol.maybeCommit() }
  })
  return img
}

/** Seconds for `writes` random 4 KiB writes into the image's file, each committed. */
function prismRound(img: string): {secs: number, extents: number} {
  let out = {secs: 0, extents: 0}
  image.withImage(img, {write: true}, (vol) => {
    const ns = image.namespace(vol, 'root')
    const big = ns.resolveOwned('/big')
    const data = Buffer.alloc(4096, 3)
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < writes; i++) { ns.writeInode(big, (rnd() % blocks) * 4096, data); vol.commit() }
    out = {secs: Number(process.hrtime.bigint() - t0) / 1e9, extents: loadExtents(vol, big).length}
  })
  return out
}

/** The same writes with fdatasync into a host file of the same size (made once). */
function hostRound(file: string): number {
  const fd = fs.openSync(file, 'r+')
  const data = Buffer.alloc(4096, 3)
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < writes; i++) { fs.writeSync(fd, data, 0, 4096, (rnd() % blocks) * 4096); fs.fdatasyncSync(fd) }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  fs.closeSync(fd)
  return secs
}

const hostFile = path.join(base, 'host.data')
fs.writeFileSync(hostFile, Buffer.alloc(mib * MiB, 7))
const results: Record<string, {prism: number[], host: number[], extents: number}> = {}
for (const mode of ['off', 'on'] as const) {
  log(`${mode}: ${mib} MiB file, ${scatter} scattered writes first`)
  const img = setup(mode)
  const r = {prism: [] as number[], host: [] as number[], extents: 0}
  for (let k = 0; k < runs; k++) {
    // (alternating which goes first: the VM is noisy, and the first of a pair pays more)
    if (k % 2 === 0) { const p = prismRound(img); r.prism.push(p.secs); r.extents = p.extents; r.host.push(hostRound(hostFile)) }
    else { r.host.push(hostRound(hostFile)); const p = prismRound(img); r.prism.push(p.secs); r.extents = p.extents }
  }
  results[mode] = r
  fs.rmSync(img, {force: true})
}
fs.rmSync(hostFile, {force: true})
console.log(`\n${writes} random 4 KiB writes, each committed (prism) or fdatasync'd (host file), medians of ${runs}:`)
console.log('policy  extents    prism ms/write   host ms/write   prism/host')
for (const [mode, r] of Object.entries(results)) {
  const p = (median(r.prism) / writes) * 1000
  const h = (median(r.host) / writes) * 1000
  console.log(`${mode.padEnd(6)}  ${String(r.extents).padStart(7)}    ${p.toFixed(3).padStart(14)}   ${h.toFixed(3).padStart(13)}   ${(p / h).toFixed(2).padStart(10)}`)
}
writeResults('fsync-writes', {mib, scatter, writes, runs, results})
