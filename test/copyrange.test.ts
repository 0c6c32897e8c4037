// copy_file_range in the library (Namespace.copyRange, extents.ts shareBlocks), against a
// model of bytes: random copies between two files of two filesets (a clone's and its
// source's) and within one file, block-aligned (whole blocks shared, not copied) or not,
// mixed with writes, truncates and commits. After each step every file reads as its model;
// at the end fsck finds nothing, and once everything is deleted every block is free again (no
// reference gained or lost). A file may then map one block at several places, which the
// scattered read (readBlocks) once laid end to end: every read here goes through it.
import {expect} from 'chai'
import fc from 'fast-check'
import {clone} from '../src/clone/clone.js'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {readData} from '../src/fs/extents.js'
import {deleteFileset, namespace} from '../src/fs/image.js'
import {Volume} from '../src/fs/volume.js'
import {setImageLocality} from '../src/fs/locality.js'
import {INCOMPAT_REPEATED_BLOCKS} from '../src/format/superblock.js'
import {fsckDevice} from '../src/fsck/index.js'
import {memImage} from './fsops.js'

const SIZE = 24 * BLOCK_SIZE

type Step =
  | {kind: 'copy', from: number, to: number, sOff: number, dOff: number, len: number}
  | {kind: 'write', file: number, off: number, len: number, byte: number}
  | {kind: 'truncate', file: number, size: number}
  | {kind: 'commit'}

/** Offsets on a block boundary, or near one, or anywhere. */
const offArb = fc.oneof(
  fc.integer({min: 0, max: SIZE / BLOCK_SIZE}).map((b) => b * BLOCK_SIZE),
  fc.integer({min: 0, max: SIZE}),
  fc.integer({min: 0, max: SIZE / BLOCK_SIZE}).chain((b) => fc.integer({min: -3, max: 3}).map((d) => Math.max(0, b * BLOCK_SIZE + d))),
)
const lenArb = fc.oneof(fc.integer({min: 1, max: 6}).map((b) => b * BLOCK_SIZE), fc.integer({min: 0, max: 8 * BLOCK_SIZE}))
const fileArb = fc.integer({min: 0, max: 2})
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {weight: 4, arbitrary: fc.record({kind: fc.constant('copy' as const), from: fileArb, to: fileArb, sOff: offArb, dOff: offArb, len: lenArb})},
  // equally placed in their blocks: the whole blocks between are shared
  {weight: 3, arbitrary: fc.record({kind: fc.constant('copy' as const), from: fileArb, to: fileArb, sOff: offArb, dOff: fc.integer({min: 0, max: SIZE / BLOCK_SIZE}), len: lenArb})
    .map((c) => ({...c, dOff: c.dOff * BLOCK_SIZE + c.sOff % BLOCK_SIZE}))},
  {weight: 2, arbitrary: fc.record({kind: fc.constant('write' as const), file: fileArb, off: offArb, len: fc.integer({min: 1, max: 2 * BLOCK_SIZE}), byte: fc.integer({min: 1, max: 255})})},
  {weight: 1, arbitrary: fc.record({kind: fc.constant('truncate' as const), file: fileArb, size: offArb})},
  {weight: 1, arbitrary: fc.record({kind: fc.constant('commit' as const)})},
)

/** Files: 0 and 1 in fileset root, 2 in fileset c, a clone of root made after they were written. */
const FILES: Array<[string, string]> = [['root', '/a'], ['root', '/b'], ['c', '/a']]

describe('copy_file_range in the library: shared whole blocks, copied edges, against a model', function () {
  this.timeout(300_000)

  it('a file that comes to map one block at two places sets INCOMPAT_REPEATED_BLOCKS (older builds would misread it); copies that do not, leave it clear', () => {
    const dev = memImage(2048)
    const vol = Volume.openDevice(dev, {write: true})
    const ns = namespace(vol, 'root')
    ns.writeFile('/a', Buffer.alloc(8 * BLOCK_SIZE, 7))
    ns.writeFile('/b', Buffer.alloc(0))
    vol.commit()
    const bit = () => (vol.sb.incompat & INCOMPAT_REPEATED_BLOCKS) !== 0
    const a = () => ns.openForWrite('/a', {truncate: false})
    const b = () => ns.openForWrite('/b', {truncate: false})
    // a to b, then the same range again over it (b's old blocks go first): no block twice
    ns.copyRange(a(), 0, b(), 0, 4 * BLOCK_SIZE)
    ns.copyRange(a(), 0, b(), 0, 4 * BLOCK_SIZE)
    // bytes copied, not blocks
    ns.copyRange(a(), 1, b(), 4 * BLOCK_SIZE, 100)
    vol.commit()
    expect(bit(), 'after copies that map no block twice').to.equal(false)
    // the same range of a to another place of b: b maps those blocks twice
    ns.copyRange(a(), 0, b(), 8 * BLOCK_SIZE, 2 * BLOCK_SIZE)
    expect(bit(), 'after a range copied twice into one file').to.equal(true)
    vol.commit()
    vol.close()
    const again = Volume.openDevice(dev, {write: false})
    expect((again.sb.incompat & INCOMPAT_REPEATED_BLOCKS) !== 0, 'committed').to.equal(true)
    again.close()
    // within one file, on a fresh image
    const dev2 = memImage(2048)
    const v2 = Volume.openDevice(dev2, {write: true})
    const n2 = namespace(v2, 'root')
    n2.writeFile('/a', Buffer.alloc(8 * BLOCK_SIZE, 9))
    n2.copyRange(n2.openForWrite('/a', {truncate: false}), 0, n2.openForWrite('/a', {truncate: false}), 16 * BLOCK_SIZE, 2 * BLOCK_SIZE)
    expect((v2.sb.incompat & INCOMPAT_REPEATED_BLOCKS) !== 0, 'after a copy within one file').to.equal(true)
    v2.commit()
    v2.close()
    expect(fsckDevice(dev2, {repair: false}).problems).to.deep.equal([])
  })

  it('a block shared past its counter (255) is copied instead, in a range shared 300 times; fsck clean, every block back', () => {
    const dev = memImage(2048)
    let vol = Volume.openDevice(dev, {write: true})
    const ns = namespace(vol, 'root')
    const data = Buffer.alloc(3 * BLOCK_SIZE)
    for (let k = 0; k < data.length; k++) data[k] = (k * 13) & 0xff
    ns.writeFile('/a', data)
    vol.commit()
    const before = vol.sb.freeBlocks
    for (let i = 0; i < 300; i++) ns.writeFile(`/c${i}`, Buffer.alloc(0))
    vol.commit()
    // (the root directory's own growth, which it keeps when its names go)
    const dirBlocks = before - vol.sb.freeBlocks
    const free = vol.sb.freeBlocks
    for (let i = 0; i < 300; i++) {
      expect(ns.copyRange(ns.openForWrite('/a', {truncate: false}), 0, ns.openForWrite(`/c${i}`, {truncate: false}), 0, data.length)).to.equal(data.length)
      if (i % 50 === 49) vol.commit()
    }
    vol.commit()
    // 254 more references fill the counters of a's 3 blocks; the other 46 copies got their own
    expect(free - vol.sb.freeBlocks).to.equal(46 * 3)
    for (let i = 0; i < 300; i += 37) expect(readData(vol, ns.openForWrite(`/c${i}`, {truncate: false}), 0, data.length).equals(data), `c${i}`).to.equal(true)
    vol.close()
    expect(fsckDevice(dev, {repair: false}).problems).to.deep.equal([])
    vol = Volume.openDevice(dev, {write: true})
    const n2 = namespace(vol, 'root')
    n2.remove('/a')
    for (let i = 0; i < 300; i++) n2.remove(`/c${i}`)
    vol.commit()
    expect(vol.sb.freeBlocks).to.equal(vol.sb.dataBlocks - dirBlocks)
    vol.close()
  })

  for (const locality of [false, true]) {
    it(`matches the model over 300 random sequences${locality ? ' (locality policy on, regions of 64 KiB)' : ''}; fsck clean; every block back at the end`, () => {
      let shared = 0
      fc.assert(fc.property(fc.array(stepArb, {minLength: 1, maxLength: 40}), fc.integer({min: 0, max: 2 ** 31 - 1}), (steps, seed) => {
        const dev = memImage(2048)
        let vol = Volume.openDevice(dev, {write: true})
        if (locality) setImageLocality(vol, 16)
        const init = [0, 1].map((i) => {
          const b = Buffer.alloc(10 * BLOCK_SIZE + 123 * (i + 1))
          for (let k = 0; k < b.length; k++) b[k] = (k * 31 + seed + i * 7) & 0xff
          return b
        })
        namespace(vol, 'root').writeFile('/a', init[0])
        namespace(vol, 'root').writeFile('/b', init[1])
        vol.commit()
        clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'sync'})
        vol.commit()
        const models = [Buffer.from(init[0]), Buffer.from(init[1]), Buffer.from(init[0])]
        const inode = (f: number) => namespace(vol, FILES[f][0]).openForWrite(FILES[f][1], {truncate: false})
        for (const s of steps) {
          const where = JSON.stringify(s)
          if (s.kind === 'copy') {
            const src = inode(s.from)
            const dst = inode(s.to)
            const m = models[s.from]
            const want = Math.max(0, Math.min(s.len, m.length - s.sOff))
            const overlap = s.from === s.to && s.sOff < s.dOff + want && s.dOff < s.sOff + want
            let got: number
            try {
              got = namespace(vol, FILES[s.to][0]).copyRange(src, s.sOff, dst, s.dOff, s.len)
            } catch (e) {
              // (refused before it changed anything: the files are checked below as they were)
              expect(overlap && want > 0, `${where}: ${(e as Error).message}`).to.equal(true)
              got = -1
            }
            if (got < 0) continue
            expect(overlap && want > 0, where).to.equal(false)
            expect(got, where).to.equal(want)
            if (got > 0 && s.sOff % BLOCK_SIZE === s.dOff % BLOCK_SIZE && got >= 2 * BLOCK_SIZE) shared++
            const piece = Buffer.from(m.subarray(s.sOff, s.sOff + got))
            const d = models[s.to]
            const grown = Math.max(d.length, s.dOff + got)
            const nd = Buffer.alloc(grown)
            d.copy(nd)
            piece.copy(nd, s.dOff)
            models[s.to] = got > 0 ? nd : d
          } else if (s.kind === 'write') {
            const data = Buffer.alloc(s.len, s.byte)
            namespace(vol, FILES[s.file][0]).writeInode(inode(s.file), s.off, data)
            const d = models[s.file]
            const nd = Buffer.alloc(Math.max(d.length, s.off + s.len))
            d.copy(nd)
            data.copy(nd, s.off)
            models[s.file] = nd
          } else if (s.kind === 'truncate') {
            namespace(vol, FILES[s.file][0]).truncateInode(inode(s.file), s.size)
            const d = models[s.file]
            const nd = Buffer.alloc(s.size)
            d.copy(nd, 0, 0, Math.min(d.length, s.size))
            models[s.file] = nd
          } else {
            vol.commit()
          }
          for (let f = 0; f < FILES.length; f++) {
            const i = inode(f)
            expect(i.r.size, `${FILES[f].join(':')} size after ${where}`).to.equal(models[f].length)
            const got = readData(vol, i, 0, i.r.size)
            if (!got.equals(models[f])) {
              let k = 0
              while (got[k] === models[f][k]) k++
              expect.fail(`${FILES[f].join(':')} after ${where}: first difference at byte ${k}`)
            }
          }
        }
        vol.commit()
        vol.close()
        const r = fsckDevice(dev, {repair: false})
        expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
        vol = Volume.openDevice(dev, {write: true})
        deleteFileset(vol, 'c')
        namespace(vol, 'root').remove('/a')
        namespace(vol, 'root').remove('/b')
        vol.commit()
        expect([vol.sb.freeBlocks, vol.sb.freeInodes]).to.deep.equal([vol.sb.dataBlocks, vol.sb.inodeCount - 1])
        vol.close()
      }), {numRuns: Number(process.env.PRISM_COPYRANGE_RUNS ?? 300)})
      expect(shared, 'copies that shared whole blocks').to.be.greaterThan(100)
    })
  }
})
