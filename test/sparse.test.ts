// Sparse files keep their holes both ways (issue 15, point 10). Real host files with holes
// (made with ftruncate and writes at offsets) are imported and exported again: the image maps
// exactly the 4 KiB blocks that hold a non-zero byte (a host hole, and an all-zero block, is
// a hole in the image, as cp --sparse=always makes them), the exported file takes no more
// host blocks than the original and ends with the right size, a copy inside the image shares
// the same blocks, and the content is identical every way. Several fixed hole patterns, the
// issue's own case (100 MiB with 5 bytes at its end), and a fast-check property over random
// layouts.
import {expect} from 'chai'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import {BLOCK_SIZE, IF_INLINE} from '../src/format/constants.js'
import {INODE_AREA_SIZE} from '../src/format/inode.js'
import {loadExtents, mappedBlocks} from '../src/fs/extents.js'
import {namespace, withImage} from '../src/fs/image.js'
import type {Volume} from '../src/fs/volume.js'
import {fsckImage} from '../src/fsck/index.js'
import {copy} from '../src/ops/copy.js'
import {newImage, prism, read, tmpDir} from './helpers.js'

const MiB = 1024 * 1024
const namespaceOf = (vol: Volume) => namespace(vol, 'root')

/** A sparse layout: a size and the byte runs that hold data (zeros elsewhere). */
interface Layout {
  size: number
  runs: Array<{off: number, data: Buffer}>
}

function makeFile(p: string, l: Layout): void {
  const fd = fs.openSync(p, 'w')
  try {
    fs.ftruncateSync(fd, l.size)
    for (const r of l.runs) fs.writeSync(fd, r.data, 0, r.data.length, r.off)
  } finally {
    fs.closeSync(fd)
  }
}

/** The 4 KiB blocks of a host file that hold a non-zero byte. */
function dataBlocks(p: string, size: number): Set<number> {
  const out = new Set<number>()
  const fd = fs.openSync(p, 'r')
  const buf = Buffer.alloc(BLOCK_SIZE)
  try {
    for (let b = 0; b * BLOCK_SIZE < size; b++) {
      const n = fs.readSync(fd, buf, 0, BLOCK_SIZE, b * BLOCK_SIZE)
      if (buf.subarray(0, n).some((x) => x !== 0)) out.add(b)
    }
  } finally {
    fs.closeSync(fd)
  }
  return out
}

function sha(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex')
}

const text = (s: string) => Buffer.from(s)
const filled = (n: number, byte: number) => Buffer.alloc(n, byte)

const PATTERNS: Record<string, Layout> = {
  'the issue\'s case: 100 MiB, 5 bytes at its end': {size: 100 * MiB, runs: [{off: 100 * MiB - 5, data: text('hello')}]},
  'leading hole, data at the end of the first 8 MiB chunk and past it': {size: 20 * MiB, runs: [{off: 8 * MiB - 3, data: text('across')}, {off: 19 * MiB, data: filled(9000, 7)}]},
  'trailing hole': {size: 50 * MiB, runs: [{off: 0, data: filled(3 * BLOCK_SIZE + 17, 1)}]},
  'holes in the middle, unaligned data': {
    size: 33 * MiB + 123,
    runs: [{off: 5, data: text('head')}, {off: 9 * MiB + 4000, data: filled(200, 2)}, {off: 17 * MiB + 1, data: filled(5 * BLOCK_SIZE, 3)}, {off: 33 * MiB + 100, data: text('tail')}],
  },
  'written zeros inside data (not host holes) become holes': {
    size: 12 * MiB,
    runs: [{off: 0, data: Buffer.concat([filled(BLOCK_SIZE, 9), Buffer.alloc(10 * BLOCK_SIZE), filled(100, 9)])}, {off: 10 * MiB, data: Buffer.alloc(MiB)}],
  },
  'small file with a hole (read whole)': {size: 1 * MiB, runs: [{off: 0, data: text('a')}, {off: MiB - 1, data: text('z')}]},
  'all hole': {size: 64 * MiB, runs: []},
  'one byte (inline in the inode)': {size: 1, runs: [{off: 0, data: text('a')}]},
  '140 bytes, the last one set (inline)': {size: 140, runs: [{off: 139, data: text('z')}]},
  '141 bytes (one block)': {size: 141, runs: [{off: 140, data: text('z')}]},
  'a small file of written zeros': {size: 100, runs: [{off: 0, data: Buffer.alloc(100)}]},
}

describe('sparse files keep their holes, both ways', function () {
  this.timeout(300_000)
  let dir: string
  let img: string
  let holesWork = true
  before(function () {
    dir = tmpDir('prism-sparse-')
    img = newImage(dir, 512 * MiB)
    // A host file system that does not make holes cannot show them kept.
    const probe = path.join(dir, 'probe')
    makeFile(probe, {size: 16 * MiB, runs: [{off: 0, data: text('x')}]})
    holesWork = fs.statSync(probe).blocks * 512 < MiB
    if (!holesWork) console.log(`      (host file system at ${dir} does not make holes: the host-side block counts are not checked)`)
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  let k = 0
  /** Imports, checks the image's map, copies in the image, exports, checks the host side. */
  function roundTrip(l: Layout, label: string): void {
    const name = `f${k++}`
    const src = path.join(dir, `${name}.src`)
    makeFile(src, l)
    // A file of at most 140 bytes with a non-zero byte is stored in its inode (FORMAT.md §5.5)
    // and maps no block at all.
    const inline = l.size <= INODE_AREA_SIZE && dataBlocks(src, l.size).size > 0
    const want = inline ? new Set<number>() : dataBlocks(src, l.size)
    const before = fs.statSync(src)
    withImage(img, {write: true}, (vol) => {
      const st = copy(vol, [{kind: 'host', path: src}], {kind: 'image', fileset: 'root', path: `/${name}`})
      expect(st.errors, label).to.deep.equal([])
      copy(vol, [{kind: 'image', fileset: 'root', path: `/${name}`}], {kind: 'image', fileset: 'root', path: `/${name}.copy`})
    })
    read(img, (ns, vol) => {
      for (const p of [`/${name}`, `/${name}.copy`]) {
        const inode = ns.resolve(p)
        expect(inode.r.size, `${label}: ${p} size`).to.equal(l.size)
        expect(Boolean(inode.r.flags & IF_INLINE), `${label}: ${p} inline`).to.equal(inline)
        const mapped = new Set<number>()
        for (const e of loadExtents(vol, inode)) for (let i = 0; i < e.n; i++) mapped.add(e.l + i)
        expect([...mapped].sort((a, b) => a - b), `${label}: ${p} maps exactly the blocks holding data`).to.deep.equal([...want].sort((a, b) => a - b))
        expect(mappedBlocks(vol, inode)).to.equal(want.size)
      }
      // The copy shares every block.
      expect(loadExtents(vol, ns.resolve(`/${name}.copy`)).toArray().map((e) => e.p)).to.deep.equal(loadExtents(vol, ns.resolve(`/${name}`)).toArray().map((e) => e.p))
      expect(ns.stat(`/${name}`).blocks, `${label}: stat blocks (data and tree nodes)`).to.be.within(want.size, want.size + 2)
    })
    const out = path.join(dir, `${name}.out`)
    withImage(img, {write: false}, (vol) => copy(vol, [{kind: 'image', fileset: 'root', path: `/${name}`}], {kind: 'host', path: out}))
    const after = fs.statSync(out)
    expect(after.size, `${label}: exported size`).to.equal(l.size)
    expect(sha(out), `${label}: exported content`).to.equal(sha(src))
    if (holesWork) {
      expect(after.blocks, `${label}: exported host blocks (${after.blocks}) within the original's (${before.blocks})`).to.be.at.most(before.blocks)
      expect(after.blocks * 512, `${label}: exported host bytes allocated`).to.be.at.least((inline ? 1 : want.size) * BLOCK_SIZE)
    }
    fs.rmSync(src)
    fs.rmSync(out)
    withImage(img, {write: true}, (vol) => {
      for (const p of [`/${name}`, `/${name}.copy`]) namespaceOf(vol).remove(p)
    })
  }

  for (const [label, l] of Object.entries(PATTERNS)) {
    it(`${label}: image blocks, host blocks and content`, () => roundTrip(l, label))
  }

  it('random sparse layouts (fast-check)', () => {
    const runArb = fc.record({
      off: fc.integer({min: 0, max: 40 * MiB}),
      len: fc.oneof(fc.integer({min: 1, max: 64}), fc.integer({min: 4000, max: 3 * BLOCK_SIZE}), fc.integer({min: 100_000, max: 2 * MiB})),
      byte: fc.oneof(fc.constant(0), fc.integer({min: 1, max: 255})),
    })
    // Runs are written in order, so a later one (zeros too) may overwrite part of an earlier one.
    const rawArb = fc.record({extra: fc.integer({min: 0, max: 12 * MiB}), runs: fc.array(runArb, {maxLength: 8})})
    let n = 0
    fc.assert(fc.property(rawArb, ({extra, runs}) => {
      const data = runs.map((r) => ({off: r.off, data: Buffer.alloc(r.len, r.byte)}))
      const l: Layout = {size: data.reduce((m, r) => Math.max(m, r.off + r.data.length), 0) + extra, runs: data}
      roundTrip(l, `layout ${++n}: size ${l.size}, runs ${runs.map((r) => `${r.off}+${r.len}x${r.byte}`).join(' ')}`)
    }), {numRuns: Number(process.env.PRISM_SPARSE_RUNS ?? 25), ...(process.env.PRISM_SPARSE_SEED ? {seed: Number(process.env.PRISM_SPARSE_SEED)} : {})})
    expect(fsckImage(img, {repair: false}).exitCode).to.equal(0)
  })

  it('through the CLI: the issue\'s 100 MiB file takes one block in the image and 4 KiB when exported', () => {
    const src = path.join(dir, 'issue.bin')
    makeFile(src, PATTERNS['the issue\'s case: 100 MiB, 5 bytes at its end'])
    const image = newImage(tmpDir('prism-sparse-cli-'), 256 * MiB)
    try {
      expect(prism(['cp', src, 'root:/issue.bin', '-i', image]).status).to.equal(0)
      const [st] = JSON.parse(prism(['stat', 'root:/issue.bin', '--json', '-i', image]).stdout)
      expect(st.size).to.equal(100 * MiB)
      expect(st.blocks).to.equal(1)
      const out = path.join(dir, 'issue.out')
      expect(prism(['cp', 'root:/issue.bin', out, '-i', image]).status).to.equal(0)
      expect(sha(out)).to.equal(sha(src))
      if (holesWork) expect(fs.statSync(out).blocks * 512).to.equal(BLOCK_SIZE)
    } finally {
      fs.rmSync(path.dirname(image), {recursive: true, force: true})
    }
  })
})
