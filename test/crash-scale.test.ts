// Crash consistency of what scale added (issue 19): the growth of the fileset table past its
// fixed slots (the table file, FORMAT.md §8.7), and the write guard split into transactions
// when a source has many lazy clones in flight. crash-lib.ts has the machinery: every write
// is a crash point, recovered with several power-loss seeds.
//
// 1. A workload over the 16-slot image of crash-lib: filling the fixed table, the command
//    that makes the table file, clones and plain filesets in its slots, deletes in both
//    parts, reuse of freed slots and a second growth, a rename and a write in the file's
//    slots. The recovered image must hold every fileset and tree exactly as before or after
//    the interrupted command, fsck must be clean, and nothing may leak.
// 2. A write deep in a fileset with 80 lazy clones in flight, on a 32-block journal: the guard
//    expands every clone along the path in many transactions before the write. After a crash
//    anywhere, fsck is clean before and after recovery, nothing leaks, every clone still shows
//    the tree as it was when cloned, and the source shows the old content or the new one.
//
// Environment: the PRISM_CRASH_* variables of crash-lib.ts.
import {expect} from 'chai'
import {clone} from '../src/clone/clone.js'
import {MemDevice} from '../src/device/mem.js'
import {listFilesets} from '../src/fs/filesets.js'
import {createEmptyFileset, deleteFileset, namespace, renameFileset, Namespace} from '../src/fs/image.js'
import {Volume} from '../src/fs/volume.js'
import {
  SEEDS, STRIDE, baseImage, bytes, crashWorkload, expectClean, expectCrash, fsckProblems, multiSummary, recover,
  snapshotImage, structuralProblems, type Op,
} from './crash-lib.js'
import {snapshot} from './helpers.js'

function tree(ns: Namespace): void {
  ns.mkdir('/etc')
  ns.writeFile('/etc/hostname', Buffer.from('crash\n'))
  ns.mkdir('/a/b/c', {parents: true})
  ns.writeFile('/a/one', bytes(300, 1))
  ns.writeFile('/a/b/two', bytes(5000, 2))
  ns.writeFile('/a/b/c/deep', bytes(60, 3))
  ns.mkdir('/a/b/c/d/e', {parents: true})
  ns.writeFile('/a/b/c/d/e/deep', bytes(70, 6))
}

describe('crash: the fileset table grows', function () {
  this.timeout(1800000)

  it('recovers every fileset to the state before or after the interrupted command, at every write', () => {
    const ops: Op[] = [
      {name: 'setup root', run: (ns) => tree(ns)},
      {name: 'fill the fixed slots', run: (_ns, vol) => { for (let i = 1; i <= 15; i++) createEmptyFileset(vol, `f${i}`) }},
      {name: 'grow: the table file is made', run: (_ns, vol) => {
        createEmptyFileset(vol, 'g1')
        namespace(vol, 'g1').writeFile('/in-the-file', bytes(200, 4))
      }},
      {name: 'sync clones into the table file', run: (_ns, vol) => {
        for (let i = 1; i <= 3; i++) {
          clone(vol, {fileset: 'root', path: '/'}, {fileset: `s${i}`}, {mode: 'sync'})
          vol.maybeCommit()
        }
      }, visibleAt: 'last'},
      {name: 'delete in both parts', run: (_ns, vol) => {
        deleteFileset(vol, 'f3')
        deleteFileset(vol, 's2')
        deleteFileset(vol, 'f10')
      }},
      {name: 'reuse the freed slots and grow again', run: (_ns, vol) => {
        for (let i = 1; i <= 22; i++) {
          createEmptyFileset(vol, `n${i}`)
          vol.maybeCommit()
        }
      }, visibleAt: 'last'},
      {name: 'rename and write in the file', run: (_ns, vol) => {
        renameFileset(vol, 'n20', 'renamed')
        namespace(vol, 'renamed').writeFile('/x', bytes(7000, 5))
        namespace(vol, 's3').writeFile('/etc/hostname', Buffer.from('changed in s3\n'))
      }},
    ]
    const r = crashWorkload(baseImage(), ops)
    console.log(`      ${r.points} crash points, ${r.recoveries} recoveries (${r.before} before, ${r.after} after)${multiSummary(r)}`)
    expect(r.failures, r.failures.slice(0, 8).join('\n')).to.deep.equal([])
    const end = snapshotImage(r.final)
    expect(end.filesets).to.have.length(1 + 15 + 1 + 3 - 3 + 22)
    expectClean(r.final, 'final image')
  })
})

/** The start: root's tree and 80 lazy clones of it (the table grows past its 16 slots). */
function guardStart(): Buffer {
  const dev = new MemDevice(baseImage())
  const vol = Volume.openDevice(dev, {write: true})
  tree(namespace(vol, 'root'))
  vol.commit()
  for (let i = 0; i < 80; i++) {
    clone(vol, {fileset: 'root', path: '/'}, {fileset: `l${i}`}, {mode: 'lazy'})
    vol.maybeCommit()
  }
  vol.close()
  return Buffer.from(dev.durable)
}

/** The command: a write deep in root, which first expands every clone along the path. */
function guardedWrite(dev: MemDevice, out: {commits?: number} = {}): void {
  const vol = Volume.openDevice(dev, {write: true})
  const before = vol.journal.committedSeqs.length
  namespace(vol, 'root').writeFile('/a/b/c/d/e/deep', bytes(90, 99))
  out.commits = vol.journal.committedSeqs.length - before
  vol.close()
}

/** Every fileset's tree, expanding what is not expanded yet (in memory: the image is not changed). */
function trees(img: Buffer): Record<string, Record<string, string>> {
  const vol = Volume.openDevice(new MemDevice(img), {write: true})
  try {
    const out: Record<string, Record<string, string>> = {}
    for (const f of listFilesets(vol)) out[f.name] = snapshot(new Namespace(vol, f))
    return out
  } finally {
    vol.closeAbort()
  }
}

describe('crash: a write guarded over many lazy clones', function () {
  this.timeout(1800000)

  it('after a crash at any write, every clone shows the old tree, the source the old or new file, and nothing leaks', () => {
    const start = guardStart()
    expect([...structuralProblems(start), ...fsckProblems(start)]).to.deep.equal([])
    const before = trees(start)
    const dry = new MemDevice(start)
    const out: {commits?: number} = {}
    guardedWrite(dry, out)
    const final = Buffer.from(dry.durable)
    const after = trees(final)
    expect(out.commits, 'the guard spans several transactions').to.be.at.least(3)
    for (let i = 0; i < 80; i++) expect(after[`l${i}`]).to.deep.equal(before.root)
    expect(after.root).to.not.deep.equal(before.root)
    const writes = dry.counts.write

    const failures: string[] = []
    let points = 0
    for (let n = 1; n <= writes; n++) {
      if (n % STRIDE !== 0) continue
      points++
      const dev = new MemDevice(start)
      dev.crashAtWrite = n
      expectCrash(dev, () => guardedWrite(dev))
      for (let s = 0; s < SEEDS; s++) {
        const where = `write ${n}/${writes}, seed ${s}`
        try {
          const crashed = dev.afterPowerLoss(n * 1000 + s)
          const early = fsckProblems(crashed)
          if (early.length) failures.push(`${where}: before recovery: ${early.slice(0, 5).join('; ')}`)
          const rec = recover(crashed).img
          const probs = [...structuralProblems(rec), ...fsckProblems(rec)]
          if (probs.length) failures.push(`${where}: ${probs.slice(0, 5).join('; ')}`)
          const got = trees(rec)
          for (let i = 0; i < 80; i++) if (JSON.stringify(got[`l${i}`]) !== JSON.stringify(before.root)) failures.push(`${where}: clone l${i} changed`)
          if (JSON.stringify(got.root) !== JSON.stringify(before.root) && JSON.stringify(got.root) !== JSON.stringify(after.root)) failures.push(`${where}: root is neither before nor after`)
          // The interrupted command, run again, finishes the job.
          const again = new MemDevice(rec)
          guardedWrite(again)
          const done = Buffer.from(again.durable)
          const d = trees(done)
          if (JSON.stringify(d) !== JSON.stringify(after)) failures.push(`${where}: running the write again does not give the state after`)
          expectClean(done, where)
        } catch (e) {
          failures.push(`${where}: ${(e as Error).stack}`)
        }
        if (failures.length > 20) break
      }
      if (failures.length > 20) break
    }
    console.log(`      ${points} crash points over ${writes} writes (${out.commits} transactions)`)
    expect(failures, failures.slice(0, 10).join('\n')).to.deep.equal([])
  })
})
