// Snapshots of an image being written (issue 17, src/device/snapshot.ts): while a writer goes
// on changing a real image file (files written, rewritten in place, removed, filesets cloned
// and deleted, commits and journal checkpoints, blocks freed and reused), a reader of the
// snapshot, in this process and in another one, sees exactly the state at the snapshot, every
// file and its content, and so does one of a second snapshot taken meanwhile;
// after the snapshot is released the image is sound and no space is lost.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fc from 'fast-check'
import fs from 'node:fs'
import path from 'node:path'
import {clone} from '../src/clone/clone.js'
import {PreimageLog, SnapshotDevice, type HeldSnapshot} from '../src/device/snapshot.js'
import {Expander} from '../src/fs/expand.js'
import {listFilesets} from '../src/fs/filesets.js'
import {deleteFileset, mkfs, namespace} from '../src/fs/image.js'
import {Volume} from '../src/fs/volume.js'
import {fsckImage} from '../src/fsck/index.js'
import {ROOT, tmpDir} from './helpers.js'
import {readsOnly} from '../src/cli/served.js'
import {PrismError} from '../src/errors.js'
import {Model} from './model.js'
import {apply, opArb, setupArb, type Op} from './fsops.js'
import {dumpAll} from './snapshot-dump.js'

type Step = {kind: 'op', fileset: number, op: Op} | {kind: 'clone', from: number, async: boolean} | {kind: 'delete', fileset: number}
  | {kind: 'expand'} | {kind: 'commit'} | {kind: 'checkpoint'} | {kind: 'check'} | {kind: 'second'}

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {weight: 12, arbitrary: fc.tuple(fc.nat(3), opArb.filter((o) => o.op !== 'reopen')).map(([fileset, op]): Step => ({kind: 'op', fileset, op}))},
  {weight: 1, arbitrary: fc.tuple(fc.nat(3), fc.boolean()).map(([from, async]): Step => ({kind: 'clone', from, async}))},
  {weight: 1, arbitrary: fc.nat(3).map((fileset): Step => ({kind: 'delete', fileset}))},
  {weight: 1, arbitrary: fc.constant<Step>({kind: 'expand'})},
  {weight: 2, arbitrary: fc.constant<Step>({kind: 'commit'})},
  {weight: 1, arbitrary: fc.constant<Step>({kind: 'checkpoint'})},
  {weight: 2, arbitrary: fc.constant<Step>({kind: 'check'})},
  {weight: 1, arbitrary: fc.constant<Step>({kind: 'second'})},
)

/** `n` blocks of data, each block different. */
function blocksOf(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n * 4096)
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 12) * 13 + seed) & 255
  return b
}

/** Runs one step on the writer (failures are expected: the step is then dropped). */
function run(vol: Volume, s: Step): void {
  try {
    step(vol, s)
  } catch (e) {
    if (!(e instanceof PrismError) || e.code === 'EBADIMAGE') throw e
    vol.abort()
  }
}

function step(vol: Volume, s: Step): void {
  const names = listFilesets(vol).map((f) => f.name)
  const pick = (i: number) => names[i % names.length]
  switch (s.kind) {
    case 'op': {
      const r = apply(namespace(vol, pick(s.fileset)), new Model(), s.op)
      if (r.commit) vol.maybeCommit()
      else vol.abort()
      break
    }
    case 'clone':
      clone(vol, {fileset: pick(s.from), path: '/'}, null, {mode: s.async ? 'async' : 'sync'})
      vol.commit()
      break
    case 'delete':
      if (names.length > 1) deleteFileset(vol, pick(s.fileset))
      vol.commit()
      break
    case 'expand':
      for (const f of listFilesets(vol)) new Expander(f.id).slice(vol, 5)
      vol.commit()
      break
    case 'commit':
      vol.commit()
      break
    case 'checkpoint':
      vol.commit()
      vol.journal.checkpoint()
      break
  }
}

/** Every fileset of the snapshot, as a reader in this process sees it. */
function readSnapshot(img: string, held: HeldSnapshot): Record<string, Record<string, string>> {
  const vol = Volume.openDevice(SnapshotDevice.open(img, held), {write: false})
  try {
    return dumpAll(vol)
  } finally {
    vol.close()
  }
}

describe('snapshot: a reader sees the image as it was while it is written', function () {
  this.timeout(600000)
  const runs = Number(process.env.PRISM_SNAPSHOT_RUNS ?? 10)

  it(`every file and its content, in this process and another, over ${runs} random runs`, () => {
    const dir = tmpDir()
    let n = 0
    try {
      fc.assert(fc.property(setupArb, fc.array(opArb.filter((o) => o.op !== 'reopen'), {maxLength: 30}), fc.array(stepArb, {minLength: 10, maxLength: 60}), (setup, before, steps) => {
        const img = path.join(dir, `run${n}.img`)
        const logPath = path.join(dir, `run${n++}.log`)
        const vol = mkfs(img, {size: 24 * 1024 * 1024, journalBlocks: 64, inodeCount: 2048})
        let closed = false
        try {
          for (const o of [...setup, ...before]) run(vol, {kind: 'op', fileset: 0, op: o})
          run(vol, {kind: 'clone', from: 0, async: true})
          // Little free space left: blocks freed while the snapshot is held are soon reused.
          namespace(vol, 'root').writeFile('/filler', Buffer.alloc((vol.sb.freeBlocks - 64) * 4096, 7))
          vol.commit()
          const expected = dumpAll(vol)
          const log = PreimageLog.create(logPath)
          const release = vol.preserve(log)
          const st = fs.statSync(img, {bigint: true})
          const held: HeldSnapshot = {dev: st.dev, ino: st.ino, logFd: fs.openSync(logPath, 'r'), alive: () => true}
          let second: {expected: ReturnType<typeof dumpAll>, log: PreimageLog, release: () => void, held: HeldSnapshot} | null = null
          try {
            // A reader that started before the changes and reads after them (its own cache
            // holds some blocks from before: the rest must come from the log).
            const early = Volume.openDevice(SnapshotDevice.open(img, held), {write: false})
            const first = listFilesets(early)[0].name
            expect(namespace(early, first).readdir('/').length).to.be.at.least(0)
            for (const s of steps) {
              if (s.kind === 'check') expect(readSnapshot(img, held)).to.deep.equal(expected)
              else if (s.kind === 'second') {
                // Another snapshot, taken while the first is held, of the state now.
                if (second) continue
                const log2 = PreimageLog.create(`${logPath}.2`)
                const release2 = vol.preserve(log2)
                second = {expected: dumpAll(vol), log: log2, release: release2, held: {...held, logFd: fs.openSync(`${logPath}.2`, 'r')}}
              } else run(vol, s)
            }
            vol.commit()
            if (second) expect(readSnapshot(img, second.held)).to.deep.equal(second.expected)
            expect(dumpAll(early)).to.deep.equal(expected)
            early.close()
            expect(readSnapshot(img, held)).to.deep.equal(expected)
            const other = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test', 'snapshot-reader.ts'), img, logPath], {encoding: 'utf8', maxBuffer: 1 << 28})
            expect(other.stderr).to.equal('')
            expect(JSON.parse(other.stdout)).to.deep.equal(expected)
          } finally {
            release()
            log.close()
            fs.closeSync(held.logFd)
            if (second) {
              second.release()
              second.log.close()
              fs.closeSync(second.held.logFd)
            }
          }
          // The writer's state, closed and opened again, is sound; nothing it freed is lost.
          const after = dumpAll(vol)
          vol.close()
          closed = true
          const r = fsckImage(img, {repair: false})
          expect(r.problems).to.deep.equal([])
          const again = Volume.open(img, {write: false})
          try {
            expect(dumpAll(again)).to.deep.equal(after)
            expect(r.stats.blocksFree).to.equal(again.sb.freeBlocks)
          } finally {
            again.close()
          }
        } finally {
          if (!closed) vol.closeAbort()
          fs.rmSync(img, {force: true})
          fs.rmSync(logPath, {force: true})
          fs.rmSync(`${logPath}.2`, {force: true})
        }
      }), {
        numRuns: runs,
        // Blocks allocated between the two snapshots, freed and then reused while both are
        // held: fresh for the first, in use at the second.
        examples: [[[], [], [
          ...['/a', '/b'].map((p): Step => ({kind: 'op', fileset: 0, op: {op: 'write', p, data: blocksOf(20, p.charCodeAt(1))}})),
          {kind: 'second'}, {kind: 'op', fileset: 0, op: {op: 'unlink', p: '/a'}}, {kind: 'commit'},
          ...[['/c', 15], ['/d', 15], ['/e', 10]].flatMap(([p, n]): Step[] => [
            {kind: 'op', fileset: 0, op: {op: 'write', p: p as string, data: blocksOf(n as number, (p as string).charCodeAt(1))}}, {kind: 'commit'}]),
        ]]],
      })
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })

  it('a reader fails when the log is given up or its server has gone', () => {
    const dir = tmpDir()
    try {
      const img = path.join(dir, 'disk.img')
      const vol = mkfs(img, {size: 16 * 1024 * 1024})
      namespace(vol, 'root').writeFile('/f', Buffer.alloc(10000, 1))
      vol.commit()
      const logPath = path.join(dir, 'log')
      const log = PreimageLog.create(logPath)
      const release = vol.preserve(log)
      const st = fs.statSync(img, {bigint: true})
      let alive = true
      const held: HeldSnapshot = {dev: st.dev, ino: st.ino, logFd: fs.openSync(logPath, 'r'), alive: () => alive}
      expect(readSnapshot(img, held).root['/f']).to.match(/^file 644 size=10000/)
      alive = false
      expect(() => readSnapshot(img, held)).to.throw(/stopped while this command read it/)
      alive = true
      // What a server does when it cannot write the log (host file system full).
      fs.truncateSync(logPath, 0)
      expect(() => readSnapshot(img, held)).to.throw(/snapshot of the served image was lost/)
      release()
      log.close()
      fs.closeSync(held.logFd)
      vol.close()
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })

  it('the CLI takes a snapshot for the commands that only read the image (scan --incremental saves later), and lends it to the others', () => {
    const reads = [['cat', 'root:/f'], ['ls', '-R', 'root:/'], ['stat', 'root:/f'], ['status'], ['df'], ['du', 'root:/'], ['diff', 'a', 'b'],
      ['export', 'root', 'x.tar'], ['fsck'], ['scan', 'root'], ['scan', '--incremental', 'root'], ['fileset', 'list'], ['fileset', '-i', 'img', 'list'], ['xattr', 'get', 'root:/f', 'user.a'],
      ['xattr', '-e', 'hex', 'list', 'root:/f'], ['cp', '-r', 'root:/a', '/tmp/out'], ['cp', '-i', 'root:/x', 'root:/a', 'root:/b', 'out'], ['cp', '--wait', '3', 'root:/a', '--', '-out']]
    const writes = [['cp', '/tmp/in', 'root:/a'], ['cp', 'root:/a', 'root:/b'], ['fileset', 'delete', 'x'],
      ['fileset', 'create', 'list'], ['xattr', 'set', 'root:/f', 'user.a', 'v'], ['xattr', '-f', 'get', 'set', 'root:/f', 'user.a'], ['rm', 'root:/f'], ['clone', 'root'], ['import', 'root', 'x.tar'], ['write', 'root:/f']]
    for (const a of reads) expect(readsOnly(a), a.join(' ')).to.equal(true)
    for (const a of writes) expect(readsOnly(a), a.join(' ')).to.equal(false)
  })
})
