// Crash consistency of background expansion (issue: asynchronous and lazy cloning). An
// async clone with excludes and hard links across directories, whose source was changed
// after the clone (so the write guard expanded part of it), is expanded in small slices,
// one transaction each, as the background expander does, on a journal small enough to wrap.
// Every write of that run is a crash point, recovered with several power-loss seeds: fsck
// must find nothing on the crashed image; after the next open (replay) a new expander
// resumes and finishes; the clone must then equal a synchronous clone taken at the same
// moment, fsck must find nothing, and the free block and inode counts must equal those of
// the run without a crash (nothing leaks).
//
// Environment: PRISM_CRASH_STRIDE, PRISM_CRASH_SEEDS, PRISM_CRASH_FULL (crash-lib.ts).
import {expect} from 'chai'
import {clone} from '../src/clone/clone.js'
import {Expander} from '../src/fs/expand.js'
import {FS_EXPANDING} from '../src/format/constants.js'
import {MemDevice} from '../src/device/mem.js'
import {getFileset} from '../src/fs/filesets.js'
import {namespace, Namespace} from '../src/fs/image.js'
import {Volume} from '../src/fs/volume.js'
import {SEEDS, STRIDE, baseImage, bytes, expectCrash, fsckProblems, treeOf} from './crash-lib.js'

/** The image with fileset root, its async clone c (not expanded) and a sync clone s taken at the same moment. */
function startImage(): Buffer {
  const dev = new MemDevice(baseImage())
  const vol = Volume.openDevice(dev, {write: true})
  const ns = namespace(vol, 'root')
  for (let i = 0; i < 20; i++) {
    const d = `/d${String(i).padStart(2, '0')}`
    ns.mkdir(`${d}/sub/deeper`, {parents: true})
    ns.writeFile(`${d}/f`, bytes(100 + 37 * i, i))
    ns.writeFile(`${d}/sub/g`, bytes(i % 3 === 0 ? 6000 : 60, 100 + i))
    ns.writeFile(`${d}/sub/deeper/h.log`, bytes(30, 200 + i))
    vol.maybeCommit()
  }
  ns.link('/d01/f', '/d18/sub/link-to-d01')
  ns.link('/d03/sub/g', '/d16/link-to-d03')
  ns.link('/d03/sub/g', '/d19/sub/deeper/second-link')
  ns.symlink('../d02/f', '/d04/sym')
  vol.commit()
  clone(vol, {fileset: 'root', path: '/'}, {fileset: 's'}, {mode: 'sync', exclude: ['*.log', '/d07']})
  clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'async', exclude: ['*.log', '/d07']})
  vol.commit()
  // Source changes after the clone: the guard expands the paths they touch first.
  ns.writeFile('/d03/sub/g', bytes(50, 999), {append: true})
  ns.remove('/d05', {recursive: true})
  ns.rename('/d02', '/d02-renamed')
  vol.close()
  return Buffer.from(dev.durable)
}

/** The expander's run: slices of two directories, each its own transaction. */
function expandRun(dev: MemDevice, out: {slices: number} = {slices: 0}): void {
  const vol = Volume.openDevice(dev, {write: true})
  const e = new Expander(getFileset(vol, 'c').id)
  while (e.slice(vol, 60_000, 2) === 'more') {
    vol.commit()
    out.slices++
  }
  vol.close()
}

/** The clone's tree in the terms of the sync clone (names, types, modes, content; no inode numbers). */
function cloneTree(img: Buffer, name: string): string[] {
  const vol = Volume.openDevice(new MemDevice(img), {write: true}) // reading may expand (in memory only)
  try {
    return treeOf(new Namespace(vol, getFileset(vol, name)), true).map((l) => l.replace(/^[a-z]+:/, ''))
  } finally {
    vol.closeAbort()
  }
}

function counts(img: Buffer): {freeBlocks: number, freeInodes: number, expanding: number} {
  const vol = Volume.openDevice(new MemDevice(img), {write: false})
  try {
    const f = getFileset(vol, 'c')
    return {freeBlocks: vol.sb.freeBlocks, freeInodes: vol.sb.freeInodes, expanding: f.state === FS_EXPANDING ? 1 : 0}
  } finally {
    vol.close()
  }
}

describe('crash: background expansion', function () {
  this.timeout(900000)

  it('recovers at every write of an expansion run: resume gives the right clone, fsck is clean, nothing leaks', () => {
    const start = startImage()
    expect(fsckProblems(start), 'start image').to.deep.equal([])
    const want = cloneTree(start, 's')
    expect(counts(start).expanding).to.equal(1)

    // The run without a crash: how many writes, and the final counts.
    const dry = new MemDevice(start)
    const out = {slices: 0}
    expandRun(dry, out)
    const final = Buffer.from(dry.durable)
    const writes = dry.counts.write
    expect(cloneTree(final, 'c')).to.deep.equal(want)
    expect(fsckProblems(final)).to.deep.equal([])
    const end = counts(final)
    expect(end.expanding).to.equal(0)
    expect(out.slices).to.be.greaterThan(5)

    const failures: string[] = []
    let points = 0
    let recoveries = 0
    for (let n = 1; n <= writes; n++) {
      if (n % STRIDE !== 0) continue
      points++
      const dev = new MemDevice(start)
      dev.crashAtWrite = n
      expectCrash(dev, () => expandRun(dev))
      for (let s = 0; s < SEEDS; s++) {
        recoveries++
        const where = `write ${n}/${writes}, seed ${s}`
        try {
          const crashed = dev.afterPowerLoss(n * 1000 + s)
          const early = fsckProblems(crashed)
          if (early.length) failures.push(`${where}: before recovery: ${early.slice(0, 5).join('; ')}`)
          const rdev = new MemDevice(crashed)
          expandRun(rdev) // the next expander: replays, then resumes and finishes
          const done = Buffer.from(rdev.durable)
          const tree = cloneTree(done, 'c')
          if (JSON.stringify(tree) !== JSON.stringify(want)) failures.push(`${where}: the resumed clone differs from the sync clone`)
          const probs = fsckProblems(done)
          if (probs.length) failures.push(`${where}: after resuming: ${probs.slice(0, 5).join('; ')}`)
          const c = counts(done)
          if (c.freeBlocks !== end.freeBlocks || c.freeInodes !== end.freeInodes || c.expanding !== 0) {
            failures.push(`${where}: free blocks ${c.freeBlocks} (want ${end.freeBlocks}), free inodes ${c.freeInodes} (want ${end.freeInodes}), expanding ${c.expanding}`)
          }
        } catch (e) {
          failures.push(`${where}: ${(e as Error).stack}`)
        }
        if (failures.length > 20) break
      }
      if (failures.length > 20) break
    }
    console.log(`      ${points} crash points over ${writes} writes (${out.slices} slices), ${recoveries} recoveries`)
    expect(failures, failures.slice(0, 10).join('\n')).to.deep.equal([])
  })
})
