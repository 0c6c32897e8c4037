// A savepoint inside the running transaction (Volume.savepoint), which a server opens around
// each request of a mount: rollback() must put everything back as it was at the savepoint,
// whatever ran since (succeeded or failed part way, out of space), while what earlier steps
// of the same transaction did stays and commits. Random steps of file operations on the
// filesets of one image (its root, a sync clone and a lazy clone, which the operations expand)
// each run inside a savepoint that is then released or rolled back; after a rollback every
// fileset's tree, content, attributes and the free counts must equal what they were before
// the step. Commits come at random between steps. At the end the image is committed and
// closed, fsck must find nothing, and the image opened again must hold exactly the last state.
// The image is small, so that writes and copies run out of blocks part way.
// PRISM_SAVEPOINT_RUNS sets the number of runs (default 150).
import {expect} from 'chai'
import fc from 'fast-check'
import {clone} from '../src/clone/clone.js'
import {namespace} from '../src/fs/image.js'
import {listFilesets} from '../src/fs/filesets.js'
import {tallyExpansion} from '../src/fs/expand.js'
import {Volume} from '../src/fs/volume.js'
import {fsckDevice} from '../src/fsck/index.js'
import {Model} from './model.js'
import {snapshot} from './helpers.js'
import {apply, memImage, opArb, setupArb, type Op} from './fsops.js'
import {BLOCK_SIZE} from '../src/format/constants.js'
import fs from 'node:fs'
import {fsckImage} from '../src/fsck/index.js'
import {inProcessMount, ROOT_CTX} from './inprocess.js'
import {newImage, tmpDir} from './helpers.js'

interface Step {
  target: number
  ops: Op[]
  rollback: boolean
  commitAfter: boolean
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  target: fc.nat(2),
  // (not 'reopen': it closes the volume, and with it the savepoint)
  ops: fc.array(opArb.filter((o) => o.op !== 'reopen'), {minLength: 1, maxLength: 4}),
  rollback: fc.boolean(),
  commitAfter: fc.boolean(),
})

/** Every fileset's tree, plus the free counts: what a rollback must give back exactly. */
function digest(vol: Volume): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const f of listFilesets(vol)) out[f.name] = snapshot(namespace(vol, f.name))
  // (after the walk: reading a lazy clone expands what it reads, in the running transaction)
  out.free = [vol.sb.freeBlocks, vol.sb.freeInodes]
  return out
}

describe('savepoints: a rollback gives back the transaction as it was', function () {
  this.timeout(900000)
  const runs = Number(process.env.PRISM_SAVEPOINT_RUNS ?? 150)

  it(`puts back every fileset and the free counts after ${runs} random sequences of steps`, () => {
    let rolledBack = 0
    let failedInside = 0
    let released = 0
    fc.assert(fc.property(setupArb, fc.array(stepArb, {minLength: 4, maxLength: 14}), fc.constantFrom(640, 1024, 4096), (setup, steps, blocks) => {
      const dev = memImage(blocks)
      let vol = Volume.openDevice(dev, {write: true})
      try {
        const root = namespace(vol, 'root')
        for (const o of setup) apply(root, new Model(), o)
        vol.commit()
        clone(vol, {fileset: 'root', path: '/'}, {fileset: 'sync'}, {mode: 'sync'})
        clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lazy'}, {mode: 'lazy'})
        vol.commit()
        const names = ['root', 'sync', 'lazy']
        for (const s of steps) {
          const before = digest(vol)
          const sp = vol.savepoint()
          expect(sp, 'a savepoint on a writable volume').to.not.equal(null)
          for (const o of s.ops) {
            // (a failed op, its errors PrismErrors other than damage, is what a server rolls back)
            if (!apply(namespace(vol, names[s.target % names.length]), new Model(), o).real) failedInside++
          }
          if (s.rollback) {
            sp!.rollback()
            rolledBack++
            expect(digest(vol), `after rolling back ${JSON.stringify(s.ops)}`).to.deep.equal(before)
          } else {
            sp!.release()
            released++
          }
          if (s.commitAfter) vol.commit()
        }
        const last = digest(vol)
        vol.close()
        const r = fsckDevice(dev, {repair: false})
        expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
        vol = Volume.openDevice(dev, {write: true})
        expect(digest(vol), 'the image opened again').to.deep.equal(last)
      } finally {
        vol.close()
      }
    }), {numRuns: runs})
    console.log(`      ${runs} runs: ${rolledBack} steps rolled back, ${released} released, ${failedInside} operations failed inside them`)
    expect(rolledBack).to.be.greaterThan(0)
    expect(failedInside).to.be.greaterThan(0)
  })
})

describe('savepoints: file data written twice in one transaction', () => {
  // A block this transaction allocated is written again where it is (FORMAT.md §6.6): in the
  // data queue, or on the device once the queue was written out. A rollback gives the first
  // content back in both cases.
  for (const [what, queuedInSavepoint] of [['still queued', 0], ['after the queue went to the device', 20 * 1024 * 1024]] as Array<[string, number]>) {
    it(`a rollback gives back the content written before the savepoint (${what})`, () => {
      const dev = memImage(16384)
      let vol = Volume.openDevice(dev, {write: true})
      try {
        const ns = namespace(vol, 'root')
        const first = Buffer.alloc(8 * BLOCK_SIZE)
        for (let i = 0; i < first.length; i++) first[i] = (i * 7 + 3) & 0xff
        ns.writeFile('/f', first) // allocated in this transaction, not committed
        const sp = vol.savepoint()!
        const f = ns.openForWrite('/f')
        ns.writeInode(f, 2 * BLOCK_SIZE, Buffer.alloc(2 * BLOCK_SIZE, 0xee))
        ns.writeInode(f, 2 * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0xdd)) // twice in the savepoint too
        if (queuedInSavepoint) ns.writeFile('/big', Buffer.alloc(queuedInSavepoint, 1))
        expect(ns.readFile('/f').subarray(2 * BLOCK_SIZE, 3 * BLOCK_SIZE).equals(Buffer.alloc(BLOCK_SIZE, 0xdd))).to.equal(true)
        sp.rollback()
        expect(ns.readFile('/f').equals(first), 'read back in the transaction').to.equal(true)
        expect(() => ns.stat('/big')).to.throw(/no such file/)
        vol.close()
        expect(fsckDevice(dev, {repair: false}).problems).to.deep.equal([])
        vol = Volume.openDevice(dev, {write: true})
        expect(namespace(vol, 'root').readFile('/f').equals(first), 'read back after the commit').to.equal(true)
      } finally {
        vol.close()
      }
    })
  }
})

describe('savepoints: a file of many extents written by many requests', () => {
  // A changed map of more than 32 extents is not copied at each savepoint: its changes are
  // recorded and replayed backwards by a rollback (src/fs/extundo.ts).
  it('a rollback gives back its map and content, between requests that stand', () => {
    const dev = memImage(16384)
    let vol = Volume.openDevice(dev, {write: true})
    try {
      const ns = namespace(vol, 'root')
      // A sparse file: every other block written, 200 extents.
      ns.writeFile('/a', Buffer.alloc(0))
      const a = ns.openForWrite('/a')
      const want = Buffer.alloc(400 * BLOCK_SIZE)
      for (let i = 0; i < 400; i += 2) {
        const blk = Buffer.alloc(BLOCK_SIZE, (i >> 1) & 0xff)
        blk.copy(want, i * BLOCK_SIZE)
        ns.writeInode(a, i * BLOCK_SIZE, blk)
      }
      ns.truncate('/a', want.length)
      vol.commit()
      const f = ns.openForWrite('/a')
      expect(f.extents!.length, 'extents of /a').to.be.greaterThan(64)
      // Requests that succeed, each in its own savepoint, without a commit between them.
      for (let i = 0; i < 20; i++) {
        const sp = vol.savepoint()!
        const at = ((i * 37) % 400) * BLOCK_SIZE
        const blk = Buffer.alloc(BLOCK_SIZE, 200 + i)
        ns.writeInode(ns.openForWrite('/a'), at, blk)
        blk.copy(want, at)
        sp.release()
        // Every fourth request is followed by one that is rolled back, writing the same blocks and others.
        if (i % 4 === 3) {
          const back = vol.savepoint()!
          for (let k = 0; k < 12; k++) ns.writeInode(ns.openForWrite('/a'), ((i * 37 + k * 29) % 400) * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0xfd))
          ns.truncate('/a', 300 * BLOCK_SIZE + 17)
          back.rollback()
          expect(ns.readFile('/a').equals(want), `read back after the rollback at ${i}`).to.equal(true)
        }
      }
      // One that is rolled back.
      const sp = vol.savepoint()!
      for (let i = 0; i < 30; i++) ns.writeInode(ns.openForWrite('/a'), ((i * 13) % 400) * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0xfe))
      sp.rollback()
      expect(ns.readFile('/a').equals(want), 'read back in the transaction').to.equal(true)
      expect(ns.openForWrite('/a').extents!.length, 'extents of /a').to.be.greaterThan(64)
      vol.close()
      expect(fsckDevice(dev, {repair: false}).problems).to.deep.equal([])
      vol = Volume.openDevice(dev, {write: true})
      expect(namespace(vol, 'root').readFile('/a').equals(want), 'read back after the commit').to.equal(true)
    } finally {
      vol.close()
    }
  })
})

describe('a mount request out of space while blocks freed in its transaction wait for the commit', () => {
  // Blocks freed in the running transaction are reused only after it commits. A request that
  // fails for want of them is rolled back, the transaction committed, and the request run once
  // more (PrismFs, mutating): the write of a file the size of one just removed succeeds on a
  // full image, and leaves nothing of the first try.
  it('is rolled back, committed and run again: it succeeds and its data reads back', () => {
    const dir = tmpDir()
    try {
      const img = newImage(dir, 8 * 1024 * 1024)
      let vol = Volume.open(img, {write: true})
      const {pfs} = inProcessMount(vol)
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const ops = pfs.ops as any
      const ctx = ROOT_CTX
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      // Most of the image taken by a file that stays; then the rest filled by one file,
      // committed. (Under 1,024 blocks: freeing that many in a full image, maybeCommit would
      // commit at once, Volume.pinnedMost, and no request would meet them pinned.)
      const pad = ops.create(ctx, 1, Buffer.from('pad'), 0o644, 2)
      for (let off = 0; vol.sb.freeBlocks > 700; off += chunk.length) ops.write(ctx, pad.entry.ino, pad.open.fh, off, chunk, {flags: 2})
      ops.release(ctx, pad.entry.ino, pad.open.fh, 0, '')
      vol.commit()
      const big = ops.create(ctx, 1, Buffer.from('big'), 0o644, 2)
      let size = 0
      for (;;) {
        try {
          ops.write(ctx, big.entry.ino, big.open.fh, size, chunk, {flags: 2})
          size += chunk.length
        } catch (e) {
          expect((e as {code?: string}).code).to.equal('ENOSPC')
          break
        }
      }
      ops.release(ctx, big.entry.ino, big.open.fh, 0, '')
      vol.commit()
      expect(size, 'the file that fills the image').to.be.greaterThan(2 * 1024 * 1024)
      // Remove it (its blocks freed in the running transaction) and write as much again.
      ops.unlink(ctx, 1, Buffer.from('big'))
      expect(vol.freedInTxn, 'blocks waiting for the commit').to.be.greaterThan(0)
      const commitsBefore = vol.store.stats.commits
      const f = ops.create(ctx, 1, Buffer.from('again'), 0o644, 2)
      const data = Buffer.alloc(size - 16 * 64 * 1024, 0x62)
      for (let off = 0; off < data.length; off += chunk.length) {
        ops.write(ctx, f.entry.ino, f.open.fh, off, data.subarray(off, off + chunk.length), {flags: 2})
      }
      ops.release(ctx, f.entry.ino, f.open.fh, 0, '')
      expect(vol.store.stats.commits, 'a commit made the freed blocks usable').to.be.greaterThan(commitsBefore)
      vol.close()
      expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
      vol = Volume.open(img, {write: true})
      try {
        const ns = namespace(vol, 'root')
        expect(ns.readFile('/again').equals(data)).to.equal(true)
        expect(() => ns.stat('/big')).to.throw(/no such file/)
      } finally {
        vol.close()
      }
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})

describe('savepoints: what a server counts of a clone it expands', () => {
  it('a rolled-back expansion is not counted (Volume.expandTally)', () => {
    const dev = memImage(4096)
    const vol = Volume.openDevice(dev, {write: true})
    try {
      const root = namespace(vol, 'root')
      root.mkdir('/d')
      root.writeFile('/d/f', Buffer.from('x'))
      vol.commit()
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz'}, {mode: 'lazy'})
      vol.commit()
      const id = listFilesets(vol).find((f) => f.name === 'lz')!.id
      const tally = tallyExpansion(vol, id)
      const sp = vol.savepoint()!
      namespace(vol, 'lz').readdir('/d') // expands / and /d
      expect(tally.dirs, 'counted while the savepoint runs').to.equal(2)
      sp.rollback()
      expect(tally, 'after the rollback').to.deep.equal({dirs: 0, shared: 0, copiedHardlinked: 0, excluded: 0})
      const again = vol.savepoint()!
      namespace(vol, 'lz').readdir('/d')
      again.release()
      expect(tally.dirs, 'expanded again and kept').to.equal(2)
      expect(tally.shared).to.equal(1)
    } finally {
      vol.close()
    }
  })
})
