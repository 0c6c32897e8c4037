// The allocator's memory of where no long free run starts (src/fs/volume.ts noRunBelow): a
// search for a run of R blocks skips the part of the image an earlier search found without
// one. It must never skip a run that is there: the same allocations, frees, commits and
// savepoints, on two copies of one image, one of them made to forget before every search,
// take the same blocks every time. And it is what keeps a long run's search from reading
// through scattered free space again and again.
import {expect} from 'chai'
import fc from 'fast-check'
import {PrismError} from '../src/errors.js'
import {Volume, type Savepoint} from '../src/fs/volume.js'
import {memImage} from './fsops.js'

type Op =
  | {kind: 'exact', n: number, slack: number}
  | {kind: 'run', want: number, minRun: number}
  | {kind: 'goal', want: number, at: number}
  | {kind: 'free', pick: number, from: number, len: number}
  | {kind: 'commit'}
  | {kind: 'begin'}
  | {kind: 'rollback'}
  | {kind: 'release'}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {weight: 4, arbitrary: fc.record({kind: fc.constant('exact' as const), n: fc.integer({min: 1, max: 40}), slack: fc.integer({min: 0, max: 24})})},
  {weight: 4, arbitrary: fc.record({kind: fc.constant('run' as const), want: fc.integer({min: 1, max: 40}), minRun: fc.integer({min: 1, max: 64})})},
  {weight: 2, arbitrary: fc.record({kind: fc.constant('goal' as const), want: fc.integer({min: 1, max: 20}), at: fc.nat()})},
  {weight: 6, arbitrary: fc.record({kind: fc.constant('free' as const), pick: fc.nat(), from: fc.nat(), len: fc.integer({min: 1, max: 30})})},
  {weight: 2, arbitrary: fc.record({kind: fc.constant('commit' as const)})},
  {weight: 1, arbitrary: fc.record({kind: fc.constant('begin' as const)})},
  {weight: 1, arbitrary: fc.record({kind: fc.constant('rollback' as const)})},
  {weight: 1, arbitrary: fc.record({kind: fc.constant('release' as const)})},
)

/** One image and what it has taken: runs of blocks, each block held once. */
class Side {
  readonly vol: Volume
  held: number[][] = []
  sp: Savepoint | null = null
  spHeld: number[][] | null = null
  constructor(private readonly forget: boolean) {
    this.vol = Volume.openDevice(memImage(4096), {write: true})
  }

  /** Runs op; returns what it took ('-' for none, an error's code). */
  apply(op: Op): string {
    const vol = this.vol
    const take = (f: () => {p: number, n: number} | null): string => {
      if (this.forget) vol.forgetFreeRuns()
      try {
        const r = f()
        if (!r) return '-'
        this.held.push(Array.from({length: r.n}, (_, i) => r.p + i))
        return `${r.p}+${r.n}`
      } catch (e) {
        if (e instanceof PrismError) return e.code
        throw e
      }
    }
    switch (op.kind) {
      case 'exact': return take(() => { const p = vol.allocExact(op.n, undefined, op.slack); return p === null ? null : {p, n: op.n} })
      case 'run': return take(() => vol.allocRun(op.want, undefined, false, op.minRun))
      case 'goal': return take(() => vol.allocRun(op.want, vol.sb.dataStart + (op.at % vol.sb.dataBlocks)))
      case 'free': {
        if (this.held.length === 0) return '-'
        const i = op.pick % this.held.length
        const run = this.held[i]
        const a = op.from % run.length
        const gone = run.splice(a, Math.min(op.len, run.length - a))
        for (const b of gone) vol.decRef(b)
        if (run.length === 0) this.held.splice(i, 1)
        return `free ${gone.length}`
      }
      case 'commit':
        if (this.sp) return '-'
        vol.commit()
        return 'commit'
      case 'begin':
        if (this.sp) return '-'
        this.sp = vol.savepoint()
        this.spHeld = this.held.map((r) => r.slice())
        return 'begin'
      case 'rollback':
        if (!this.sp) return '-'
        this.sp.rollback()
        this.held = this.spHeld!
        this.sp = null
        return 'rollback'
      case 'release':
        if (!this.sp) return '-'
        this.sp.release()
        this.sp = null
        return 'release'
    }
  }

  close(): void {
    this.sp?.release()
    this.vol.closeAfterFailure(new Error('test over'))
  }
}

describe('allocator: where no long free run starts', function () {
  this.timeout(300_000)

  it('takes the same blocks as an allocator that forgets before every search (allocations, frees, commits, savepoints)', () => {
    fc.assert(fc.property(fc.array(opArb, {minLength: 20, maxLength: 400}), (ops) => {
      const a = new Side(false)
      const b = new Side(true)
      try {
        ops.forEach((op, i) => {
          expect(a.apply(op), `op ${i}: ${JSON.stringify(op)}`).to.equal(b.apply(op))
        })
      } finally {
        a.close()
        b.close()
      }
    }), {numRuns: 150})
  })

  it('searches scattered free space for a long run once, not at every allocation', () => {
    // Free space in pieces of 3 blocks: every other block of 6 taken, committed.
    const vol = Volume.openDevice(memImage(16384), {write: true})
    const taken: number[] = []
    for (;;) {
      try {
        taken.push(vol.allocRun(1).p)
      } catch {
        break
      }
    }
    for (let i = 0; i < taken.length; i++) if (i % 6 < 3) vol.decRef(taken[i])
    vol.commit()
    // Each search for a run of 8 finds none; the allocator must not look through the whole
    // table again each time (a table read is a refcount-block lookup).
    const counted = vol as unknown as {rcBuf: (i: number) => Buffer}
    const rcBuf = counted.rcBuf.bind(vol)
    let looks = 0
    counted.rcBuf = (i: number) => { looks++; return rcBuf(i) }
    for (let k = 0; k < 200; k++) expect(vol.allocExact(8, undefined, 0)).to.equal(null)
    const tables = Math.ceil(taken.length / 4096) + 1
    expect(looks, 'refcount-table lookups for 200 searches').to.be.at.most(2 * tables + 10)
    // A run freed later is found: the commit lowers the mark.
    for (let i = 600; i < 612; i++) if (i % 6 >= 3) vol.decRef(taken[i])
    expect(vol.allocExact(8, undefined, 0), 'not before the commit: the freed blocks are pinned').to.equal(null)
    vol.commit()
    const p = vol.allocExact(8, undefined, 0)
    expect(p).to.be.a('number')
    expect(p! >= taken[600] && p! + 8 <= taken[611] + 1, `run at ${p} within the blocks freed`).to.equal(true)
    vol.closeAfterFailure(new Error('test over'))
  })

  it('commits at maybeCommit once the blocks a transaction freed are as many as those it may take, so that work freeing as it writes does not run out', () => {
    const vol = Volume.openDevice(memImage(16384), {write: true})
    const free0 = vol.sb.freeBlocks
    const owned: number[] = []
    while (vol.sb.freeBlocks > 3000) owned.push(vol.allocRun(1).p)
    vol.commit()
    const commit = vol.commit.bind(vol)
    let commits = 0
    vol.commit = () => { commits++; commit() }
    // 6,000 blocks written, each freeing an older one: twice what may be taken at the start.
    for (let k = 0; k < 6000; k++) {
      owned.push(vol.allocRun(1).p)
      vol.decRef(owned.shift()!)
      vol.maybeCommit()
    }
    expect(commits, 'commits made by maybeCommit').to.be.within(2, 8)
    expect(vol.sb.freeBlocks).to.equal(3000)
    // and a few frees in a nearly full image commit nothing (fewer than 1,024)
    commits = 0
    while (vol.sb.freeBlocks > 10) owned.push(vol.allocRun(1).p)
    for (let k = 0; k < 500; k++) { vol.decRef(owned.pop()!); vol.maybeCommit() }
    expect(commits).to.equal(0)
    expect(free0).to.be.greaterThan(3000)
    vol.closeAfterFailure(new Error('test over'))
  })
})
