// The extent tree written at commit (docs/FORMAT.md §6.4): built whole with room in each node,
// then patched, each later commit rewriting only the nodes whose entries changed. The map
// read back from the image must be the map in memory after every commit, whatever the order
// of writes, truncations and punched holes, and fsck must find the tree sound.
import {expect} from 'chai'
import fc from 'fast-check'
import fs from 'node:fs'
import path from 'node:path'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {LOCALITY_OFF} from '../src/format/locality.js'
import {BUILD_FILL, loadExtents, unmapRange} from '../src/fs/extents.js'
import {mkfs, namespace, withImage} from '../src/fs/image.js'
import {setImageLocality} from '../src/fs/locality.js'
import {fsckImage} from '../src/fsck/index.js'
import type {Volume} from '../src/fs/volume.js'
import {tmpDir} from './helpers.js'

/** A new image with the locality policy off: every scattered write is an extent of its own. */
function plainImage(dir: string, size = 256 * 1024 * 1024): string {
  const img = path.join(dir, 'disk.img')
  const vol = mkfs(img, {size})
  setImageLocality(vol, LOCALITY_OFF)
  vol.close()
  return img
}

/** The raw bytes of blocks of an image file. */
function rawBlocks(img: string, blocks: number[]): Buffer[] {
  const fd = fs.openSync(img, 'r')
  try {
    return blocks.map((b) => {
      const buf = Buffer.alloc(BLOCK_SIZE)
      fs.readSync(fd, buf, 0, BLOCK_SIZE, b * BLOCK_SIZE)
      return buf
    })
  } finally {
    fs.closeSync(fd)
  }
}

describe('extent tree: patched at commit', () => {
  let dir: string
  beforeEach(() => { dir = tmpDir() })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('a one-block write into a file of 5,000 extents rewrites one leaf, not the tree', () => {
    const img = plainImage(dir)
    const blocks = 10_000
    let tree: number[] = []
    withImage(img, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      const f = ns.openForWrite('/f')
      ns.truncate('/f', blocks * BLOCK_SIZE)
      // every other block: 5,000 extents
      for (let b = 0; b < blocks; b += 2) ns.writeInode(f, b * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 1 + (b % 200)))
      vol.commit()
      expect(loadExtents(vol, f).length).to.equal(5000)
      tree = [...f.treeBlocks].sort((a, b) => a - b)
      // Built whole: leaves hold BUILD_FILL extents, so about 5000 / BUILD_FILL leaves and their parents.
      expect(tree.length).to.be.within(Math.ceil(5000 / BUILD_FILL), Math.ceil(5000 / BUILD_FILL) + 4)
    })
    const before = rawBlocks(img, tree)
    // (within the open volume, what the commits wrote: the store holds it until checkpointed)
    const held = (vol: Volume) => tree.map((b) => Buffer.from(vol.store.get(b)))
    withImage(img, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      const f = ns.openForWrite('/f')
      // The first commit of this process builds the tree whole (the shape is not kept across
      // opens); the second patches it.
      ns.writeInode(f, 4001 * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0xaa))
      vol.commit()
      const built = held(vol)
      ns.writeInode(f, 7001 * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0xbb))
      vol.commit()
      expect([...f.treeBlocks].sort((a, b) => a - b), 'the same node blocks').to.deep.equal([...tree].sort((a, b) => a - b))
      const after = held(vol)
      const changed = after.filter((b, i) => !b.equals(built[i])).length
      expect(changed, 'nodes rewritten by a one-block write').to.equal(1)
      expect(before.filter((b, i) => !b.equals(after[i])).length, 'nodes changed by both writes').to.equal(2)
    })
    const r = fsckImage(img, {repair: false})
    expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
    withImage(img, {write: false}, (vol) => {
      const ns = namespace(vol, 'root')
      const data = ns.readFile('/f')
      for (let b = 0; b < blocks; b++) {
        const want = b === 4001 ? 0xaa : b === 7001 ? 0xbb : b % 2 === 0 ? 1 + (b % 200) : 0
        if (data[b * BLOCK_SIZE] !== want) expect.fail(`block ${b} reads ${data[b * BLOCK_SIZE]}, not ${want}`)
      }
    })
  })

  it('a leaf that fills up is split under its parent; the tree stays sound', () => {
    const img = plainImage(dir)
    withImage(img, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      const f = ns.openForWrite('/f')
      // 2,000 extents at every fourth block, then 300 more into one leaf's range, a commit each.
      for (let b = 0; b < 8000; b += 4) ns.writeInode(f, b * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 7))
      vol.commit()
      const nodes = f.treeBlocks.length
      for (let b = 2; b < 1200; b += 4) { ns.writeInode(f, b * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 9)); vol.commit() }
      expect(loadExtents(vol, f).length).to.equal(2300)
      expect(f.treeBlocks.length, 'leaves split').to.be.greaterThan(nodes)
    })
    const r = fsckImage(img, {repair: false})
    expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
  })

  it('reads back, after every commit, the map and content the writes made (fast-check)', function () {
    this.timeout(300_000)
    const op = fc.oneof(
      {arbitrary: fc.record({kind: fc.constant('write' as const), at: fc.nat(3999), len: fc.integer({min: 1, max: 3}), seed: fc.nat(250)}), weight: 8},
      {arbitrary: fc.record({kind: fc.constant('punch' as const), at: fc.nat(3999), len: fc.integer({min: 1, max: 400})}), weight: 2},
      {arbitrary: fc.record({kind: fc.constant('truncate' as const), to: fc.nat(4000)}), weight: 1},
    )
    fc.assert(fc.property(fc.array(fc.array(op, {minLength: 1, maxLength: 30}), {minLength: 1, maxLength: 8}), fc.nat(3999), (txns, start) => {
      const sub = fs.mkdtempSync(path.join(dir, 'p-'))
      const img = plainImage(sub, 64 * 1024 * 1024)
      const model = Buffer.alloc(4010 * BLOCK_SIZE)
      let size = 4000 * BLOCK_SIZE
      withImage(img, {write: true}, (vol) => {
        const ns = namespace(vol, 'root')
        const f = ns.openForWrite('/f')
        // a start of about a thousand extents: a tree two levels deep once built with room
        for (let b = start % 3; b < 4000; b += 3) {
          const data = Buffer.alloc(BLOCK_SIZE, 1 + (b % 250))
          ns.writeInode(f, b * BLOCK_SIZE, data)
          data.copy(model, b * BLOCK_SIZE)
        }
        ns.truncate('/f', size)
        vol.commit()
        for (const txn of txns) {
          for (const o of txn) {
            if (o.kind === 'write') {
              const data = Buffer.alloc(o.len * BLOCK_SIZE, o.seed + 1)
              ns.writeInode(f, o.at * BLOCK_SIZE, data)
              data.copy(model, o.at * BLOCK_SIZE)
              size = Math.max(size, (o.at + o.len) * BLOCK_SIZE)
            } else if (o.kind === 'punch') {
              const end = Math.min(o.at + o.len, Math.ceil(size / BLOCK_SIZE))
              if (end <= o.at) continue
              // as the mount's fallocate(PUNCH_HOLE) does (src/server/adapter.ts punch)
              const g = ns.resolveOwned('/f')
              for (const old of unmapRange(loadExtents(vol, g), o.at, end - o.at)) {
                vol.decRefRun(old.p, old.n)
                g.r.blocks -= old.n
              }
              g.extentsDirty = true
              vol.idirty(g)
              model.fill(0, o.at * BLOCK_SIZE, end * BLOCK_SIZE)
            } else {
              ns.truncate('/f', o.to * BLOCK_SIZE)
              if (o.to * BLOCK_SIZE < size) model.fill(0, o.to * BLOCK_SIZE)
              size = o.to * BLOCK_SIZE
            }
          }
          vol.commit()
          const inMemory = loadExtents(vol, f).toArray().map((e) => ({...e}))
          // What the commit wrote: the map decoded again from the tree, the inode cache dropped.
          vol.abort()
          const written = loadExtents(vol, ns.resolve('/f')).toArray().map((e) => ({...e}))
          expect(written).to.deep.equal(inMemory)
        }
      })
      const r = fsckImage(img, {repair: false})
      expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
      withImage(img, {write: false}, (vol) => {
        const got = namespace(vol, 'root').readFile('/f')
        expect(got.length).to.equal(size)
        expect(got.equals(model.subarray(0, size)), 'content').to.equal(true)
      })
      fs.rmSync(sub, {recursive: true, force: true})
    }), {numRuns: 25})
  })
})
