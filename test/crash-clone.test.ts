// Crash consistency of cloning (crash-lib.ts has the machinery, crash.test.ts the plain
// file commands): clone with --exclude and --replace, writes into a clone (inode
// copy-on-write of shared inodes, block copy-on-write of shared blocks), a clone of a clone,
// grafts, fileset rename, fileset deletion (of a fileset sharing inodes with others, of one
// with unique data, of a large one whose freeing spans transactions), and a clone large
// enough to span several transactions of the tiny journal. Every write is a crash point: the
// recovered image must hold every fileset (names, parents, whole trees) and the free counts
// exactly as before or after the interrupted command (a clone whole or not at all, even
// when some of its transactions were committed: the orphaned partial clone is reaped), fsck
// must be clean (on the crashed image before recovery too), and nothing may leak. A second
// test loses power again at every write of the recovery that reaps a partial clone or a
// deleted fileset; a third keeps a scattered fileset deletion within a tiny journal.
//
// Environment: the PRISM_CRASH_* variables of crash-lib.ts.
import {expect} from 'chai'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {MemDevice} from '../src/device/mem.js'
import {clone} from '../src/clone/clone.js'
import {createEmptyFileset, deleteFileset, namespace, renameFileset} from '../src/fs/image.js'
import {Volume} from '../src/fs/volume.js'
import {copy} from '../src/ops/copy.js'
import {move} from '../src/ops/move.js'
import {
  ONLY, SEEDS, STRIDE, baseImage, bytes, crashWorkload, deepEq, dryRun, expectClean, expectCrash, multiSummary, recover, runCommand,
  snapshotImage, type Op,
} from './crash-lib.js'

/** Directories of fileset big, whose clone must span several transactions. */
const BIG_DIRS = 32

/** Fileset root with a small tree (hard links, a symlink, multi-block files), and fileset big. */
function setupOps(bigDirs = BIG_DIRS): Op[] {
  return [
    {name: 'setup root', run: (ns) => {
      ns.mkdir('/etc')
      ns.writeFile('/etc/hostname', Buffer.from('prism-host\n'))
      ns.writeFile('/etc/passwd', bytes(6000, 1))
      ns.link('/etc/passwd', '/etc/passwd.bak')
      ns.symlink('hostname', '/etc/hn')
      ns.mkdir('/home/alice', {parents: true, mode: 0o700})
      ns.writeFile('/home/alice/notes.txt', bytes(30_000, 2))
      ns.mkdir('/home/bob')
      ns.writeFile('/home/bob/.profile', bytes(300, 3))
      ns.mkdir('/var/log', {parents: true})
      ns.writeFile('/var/log/syslog', bytes(5000, 4))
      ns.mkdir('/var/cache')
      ns.writeFile('/var/cache/pkg.bin', bytes(20_000, 5))
      ns.mkdir('/tmp')
      ns.writeFile('/tmp/x.tmp', bytes(100, 6))
      ns.writeFile('/tmp/keep', bytes(100, 7))
      ns.mkdir('/srv/site/assets', {parents: true})
      ns.writeFile('/srv/site/index.html', bytes(700, 8))
      ns.writeFile('/srv/site/about.html', bytes(1500, 9))
      ns.writeFile('/srv/site/assets/app.js', bytes(9000, 10))
      ns.writeFile('/srv/site/assets/logo.svg', bytes(2500, 11))
      ns.link('/srv/site/assets/app.js', '/srv/app.js') // one name inside the graft, one outside
      ns.mkdir('/srv/site/sub')
      ns.writeFile('/srv/site/pw1', bytes(64, 12))
      ns.link('/srv/site/pw1', '/srv/site/sub/pw2') // both names inside the graft
      ns.symlink('/srv/site/index.html', '/srv/site/home')
      ns.mkdir('/data')
      ns.writeFile('/data/big.bin', bytes(40_000, 13))
    }},
    {name: 'setup big', run: (_ns, vol) => {
      createEmptyFileset(vol, 'big')
      const big = namespace(vol, 'big')
      for (let i = 0; i < bigDirs; i++) {
        const d = `/d${String(i).padStart(2, '0')}`
        big.mkdir(`${d}/sub`, {parents: true})
        big.writeFile(`${d}/f`, bytes(40 + i, 500 + i))
        for (let j = 0; j < 4; j++) big.writeFile(`${d}/a-longer-file-name-${j}`, bytes(20, 700 + 10 * i + j))
        if (i % 4 === 0) big.writeFile(`${d}/sub/g`, bytes(5000, 600 + i))
        vol.maybeCommit()
      }
      // Hard links across directories far apart in the clone's walk, so that the clone's
      // private copy gets its names in different transactions.
      for (let i = 1; i < bigDirs / 2; i += 2) {
        big.link(`/d${String(i).padStart(2, '0')}/f`, `/d${String(bigDirs - 1 - i).padStart(2, '0')}/sub/link-${i}`)
        vol.maybeCommit()
      }
    }},
  ]
}

function workload(host: string): Op[] {
  const ops: Op[] = []
  const op = (name: string, run: Op['run'], visibleAt?: Op['visibleAt']) => ops.push({name, run, visibleAt})
  const cloneOp = (name: string, run: Op['run']) => op(name, run, 'last')

  cloneOp('clone root c1 --exclude /var/cache --exclude *.tmp --exclude /srv/app.js --replace /home=@empty-dir', (_ns, vol) => {
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c1'}, {exclude: ['/var/cache', '*.tmp', '/srv/app.js'], replace: [{path: '/home', source: '@empty-dir'}]})
  })
  op('write c1:/etc/hostname (copy of a shared inline inode)', (_ns, vol) => { namespace(vol, 'c1').writeFile('/etc/hostname', Buffer.from('clone-1\n')) })
  op('write c1:/home/new.txt (in the replaced directory)', (_ns, vol) => { namespace(vol, 'c1').writeFile('/home/new.txt', bytes(3000, 20)) })
  op('write 4096 B at 8192 of c1:/data/big.bin (inode and block copy-on-write)', (_ns, vol) => {
    const c1 = namespace(vol, 'c1')
    c1.writeInode(c1.resolveOwned('/data/big.bin'), 8192, bytes(4096, 21))
  })
  op('write -a c1:/etc/passwd (hard-linked private copy, shared last block)', (_ns, vol) => {
    namespace(vol, 'c1').writeFile('/etc/passwd', bytes(500, 22), {append: true})
  })
  op('chmod 600 c1:/srv/site/index.html (copy of a shared inode)', (_ns, vol) => { namespace(vol, 'c1').chmod('/srv/site/index.html', 0o600) })
  op('rm c1:/var/log/syslog (drops a share)', (_ns, vol) => { namespace(vol, 'c1').remove('/var/log/syslog') })
  op('mv c1:/etc/hn c1:/hn (moves a shared symlink)', (_ns, vol) => { namespace(vol, 'c1').rename('/etc/hn', '/hn') })
  op('ln c1:/srv/site/assets/logo.svg c1:/logo.svg (copy, then a second name)', (_ns, vol) => {
    namespace(vol, 'c1').link('/srv/site/assets/logo.svg', '/logo.svg')
  })
  cloneOp('clone c1 c2 --replace /etc/hostname=@empty-file --replace /srv/site/sub=root:/var/log (a clone of a clone)', (_ns, vol) => {
    clone(vol, {fileset: 'c1', path: '/'}, {fileset: 'c2'}, {replace: [{path: '/etc/hostname', source: '@empty-file'}, {path: '/srv/site/sub', source: 'root:/var/log'}]})
  })
  op('write -a root:/srv/site/about.html (shared by three filesets)', (ns) => { ns.writeFile('/srv/site/about.html', bytes(100, 23), {append: true}) })
  op('truncate -s 5000 c2:/data/big.bin (shared blocks)', (_ns, vol) => { namespace(vol, 'c2').truncate('/data/big.bin', 5000) })
  op('fileset create web; mkdir -p web:/srv', (_ns, vol) => {
    createEmptyFileset(vol, 'web')
    namespace(vol, 'web').mkdir('/srv', {parents: true})
  })
  cloneOp('clone root:/srv/site web:/srv/site --replace /sub=HOSTDIR (graft)', (_ns, vol) => {
    clone(vol, {fileset: 'root', path: '/srv/site'}, {fileset: 'web', path: '/srv/site'}, {replace: [{path: '/sub', source: host}]})
  })
  op('write web:/srv/site/assets/app.js (grafted copy, shared blocks)', (_ns, vol) => {
    const web = namespace(vol, 'web')
    web.writeInode(web.resolveOwned('/srv/site/assets/app.js'), 100, bytes(6000, 24))
  })
  op('write web:/srv/unique.bin (unique data)', (_ns, vol) => { namespace(vol, 'web').writeFile('/srv/unique.bin', bytes(16_000, 25)) })
  // Between filesets a copy is staged and published with the source's removal (mv) in one
  // transaction: the tree is in one place or the other.
  op('cp -r c1:/srv/site web:/srv/copy (between filesets, staged)', (_ns, vol) => {
    copy(vol, [{kind: 'image', fileset: 'c1', path: '/srv/site'}], {kind: 'image', fileset: 'web', path: '/srv/copy'}, {recursive: true})
  }, 'last')
  op('mv web:/srv/copy root:/moved-site (between filesets)', (_ns, vol) => {
    move(vol, [{fileset: 'web', path: '/srv/copy'}], {fileset: 'root', path: '/moved-site'}, (n) => namespace(vol, n))
  }, 'last')
  cloneOp('clone c2:/etc root:/etc-c2 (graft into the origin)', (_ns, vol) => { clone(vol, {fileset: 'c2', path: '/etc'}, {fileset: 'root', path: '/etc-c2'}) })
  op('fileset rename c2 staging', (_ns, vol) => { renameFileset(vol, 'c2', 'staging') })
  op('fileset delete c1 (shares inodes with root and staging, has a child)', (_ns, vol) => { deleteFileset(vol, 'c1') })
  op('fileset delete web (unique inodes and data)', (_ns, vol) => { deleteFileset(vol, 'web') })
  cloneOp(`clone big big2 (${BIG_DIRS * 2 + 1} directories, spans transactions)`, (_ns, vol) => { clone(vol, {fileset: 'big', path: '/'}, {fileset: 'big2'}) })
  cloneOp('clone big:/ root:/bigcopy --exclude /d3* (graft, spans transactions)', (_ns, vol) => {
    clone(vol, {fileset: 'big', path: '/'}, {fileset: 'root', path: '/bigcopy'}, {exclude: ['/d3*']})
  })
  op('write -a big2:/d05/f (hard-linked private copy)', (_ns, vol) => { namespace(vol, 'big2').writeFile('/d05/f', bytes(50, 26), {append: true}) })
  op('fileset delete big (shares its files with big2, spans transactions)', (_ns, vol) => { deleteFileset(vol, 'big') })
  op('fileset delete staging (clone of a deleted clone)', (_ns, vol) => { deleteFileset(vol, 'staging') })
  return ops
}

/** Runs ops without crashing; returns the image before each op and after the last. */
function imagesAlong(start: Buffer, ops: Op[]): Buffer[] {
  const out = [start]
  ops.forEach((op, k) => {
    const dev = new MemDevice(out[out.length - 1])
    runCommand(dev, op, k)
    out.push(Buffer.from(dev.durable))
  })
  return out
}

describe('crash consistency: clone, graft, fileset delete', function () {
  this.timeout(600_000)
  let tmp = ''
  let start: Buffer
  let ops: Op[]

  before(() => {
    // A host directory for a --replace from the host.
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-crash-clone-'))
    fs.mkdirSync(path.join(tmp, 'sub', 'deeper'), {recursive: true})
    fs.writeFileSync(path.join(tmp, 'sub', 'readme'), bytes(900, 30))
    fs.writeFileSync(path.join(tmp, 'sub', 'deeper', 'data'), bytes(7000, 31))
    // The starting image: fileset root with a small tree and fileset big (not crash-tested:
    // crash.test.ts covers these commands).
    const dev = new MemDevice(baseImage())
    setupOps().forEach((op, k) => runCommand(dev, op, 1000 + k))
    expect(dev.unsynced).to.equal(0)
    start = Buffer.from(dev.durable)
    expectClean(start, 'the starting image')
    ops = workload(path.join(tmp, 'sub'))
  })

  after(() => {
    if (tmp) fs.rmSync(tmp, {recursive: true, force: true})
  })

  it('recovers every fileset to the state before or after the interrupted command, at every write', () => {
    const t0 = Date.now()
    const r = crashWorkload(start, ops)
    const secs = ((Date.now() - t0) / 1000).toFixed(1)
    const none = {commits: 0, commitsInRun: 0, beforeDespiteCommit: 0}
    const big = r.ops.find((o) => o.name.startsWith('clone big big2')) ?? none
    const graft = r.ops.find((o) => o.name.startsWith('clone big:/ root:/bigcopy')) ?? none
    console.log(`      clone crash test: ${r.points} crash points of ${r.totalWrites} writes over ${ops.length} commands, ` +
      `${SEEDS} seed(s) each, ${r.recoveries} recoveries (${r.before} to the state before, ${r.after} after), ` +
      `${ops.length + 1} states, stride ${STRIDE}, ${secs} s; big clone: ${big.commits} transactions, ` +
      `${big.beforeDespiteCommit} recoveries reaped a committed partial clone; big graft: ${graft.commits} transactions, ` +
      `${graft.beforeDespiteCommit} reaped` + multiSummary(r))
    if (r.failures.length) expect.fail(`${r.failures.length} failure(s):\n${r.failures.slice(0, 10).join('\n')}`)

    // The large clone and graft really span transactions (maybeCommit fired while they were built) ...
    expect(big.commitsInRun, 'transactions committed while the big clone was built').to.be.at.least(1)
    expect(big.commits).to.be.at.least(2)
    expect(graft.commitsInRun, 'transactions committed while the big graft was built').to.be.at.least(1)
    if (ONLY === null) {
      // ... and crashes after their first commit left an orphaned partial tree that recovery reaped.
      if (STRIDE === 1) {
        expect(big.beforeDespiteCommit, 'recoveries that reaped a committed partial clone').to.be.greaterThan(0)
        expect(graft.beforeDespiteCommit, 'recoveries that reaped a committed partial graft').to.be.greaterThan(0)
      }
      expect(r.points).to.be.at.least(Math.floor(r.totalWrites / STRIDE))
      // The workload did what it says: the final filesets.
      const end = snapshotImage(r.final)
      expect(end.filesets.map((f) => f.split(' ')[0])).to.deep.equal(['root', 'big2'])
      expect(end.filesets[1]).to.match(/parent=- /) // big2's parent, big, was deleted
      expect(end.tree.some((l) => l.startsWith('root:/etc-c2/passwd '))).to.equal(true)
      expect(end.tree.some((l) => l.startsWith('root:/bigcopy/d29/sub '))).to.equal(true)
      expect(end.tree.some((l) => l.startsWith('root:/bigcopy/d30'))).to.equal(false)
    }
  })

  it('a crash while recovery reaps a partial clone (or a deleted fileset) recovers the same state, at every write', () => {
    // Multi-transaction commands: crashed just before their last commit record, the image
    // holds a committed partial clone (or a fileset deleted but not yet freed), which the
    // next open reaps in several transactions of its own. Power is lost again at every write
    // of that recovery; the recovery after it must reach the same state.
    const images = imagesAlong(start, ops)
    let checked = 0
    const recoveryTxns: number[] = []
    const t0 = Date.now()
    for (const prefix of ['clone big big2', 'clone big:/ root:/bigcopy', 'fileset delete big ']) {
      const k = ops.findIndex((o) => o.name.startsWith(prefix))
      expect(k, prefix).to.be.at.least(0)
      const op = ops[k]
      const want = snapshotImage(images[op.visibleAt === 'last' ? k : k + 1])
      // Crash at the write before the last commit record: that record is never written.
      const dry = dryRun(images[k], op, k)
      expect(dry.commits, `${op.name}: transactions`).to.be.at.least(2)
      const dev = new MemDevice(images[k])
      dev.crashAtWrite = dry.commitWrites[dry.commitWrites.length - 1] - 1
      expectCrash(dev, () => runCommand(dev, op, k))
      for (const seed of [1, 2]) {
        const crashed = dev.afterPowerLoss(seed)
        const first = new MemDevice(crashed)
        const v = Volume.openDevice(first, {write: true})
        v.close()
        const recoveryWrites = first.counts.write
        recoveryTxns.push(v.journal.committedSeqs.length)
        expect(snapshotImage(Buffer.from(first.durable)), `${op.name}, seed ${seed}: recovery`).to.deep.equal(want)
        for (let m = 1; m <= recoveryWrites; m++) {
          const again = new MemDevice(crashed)
          again.crashAtWrite = m
          expectCrash(again, () => { Volume.openDevice(again, {write: true}).close() })
          const r = recover(again.afterPowerLoss(seed * 7919 + m))
          const got = snapshotImage(r.img)
          const where = `${op.name}, seed ${seed}, recovery crashed at write ${m}/${recoveryWrites}`
          if (!deepEq(got, want)) expect.fail(`${where}: recovered a different state`)
          expectClean(r.img, where)
          checked++
        }
      }
    }
    console.log(`      crash during recovery: ${checked} double crashes (recoveries of ${recoveryTxns.join(', ')} transactions), ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    expect(checked).to.be.greaterThan(0)
    expect(Math.max(...recoveryTxns), 'a recovery that itself spans transactions').to.be.at.least(2)
  })

  it('deleting a large fileset whose inodes lie scattered keeps every transaction within a tiny journal', () => {
    // Reaping touches inodes all over the inode table: the transaction must be committed by
    // the number of inode table blocks it changes, not by its number of inodes / 16.
    const dev = new MemDevice(baseImage())
    const cmds: Op[] = [
      ...setupOps(48),
      {name: 'clone big big2', run: (_ns, vol) => { clone(vol, {fileset: 'big', path: '/'}, {fileset: 'big2'}) }},
      {name: 'fileset delete big', run: (_ns, vol) => { deleteFileset(vol, 'big') }},
      {name: 'fileset delete big2', run: (_ns, vol) => { deleteFileset(vol, 'big2') }},
    ]
    cmds.forEach((op, k) => runCommand(dev, op, 2000 + k))
    const end = Buffer.from(dev.durable)
    expectClean(end, 'after the deletes')
    expect(snapshotImage(end).filesets.map((f) => f.split(' ')[0])).to.deep.equal(['root'])
  })
})
