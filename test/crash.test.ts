// Crash consistency, in the manner of littlefs's "reentrant" tests: a mixed workload of
// commands (cp -r, mkdir -p, rm -r, mv, write, truncate, ln, writes into the middle of
// shared and unshared files that make the locality policy rewrite regions, with regions and
// groups of 64 KiB: docs/FORMAT.md §6.6) is run over an in-memory
// device that loses power at its Nth write, for every N. Each crashed image (what was synced,
// plus every unsynced write kept, dropped or torn at 512-byte sectors, chosen by a seed) is
// reopened: the journal is replayed, orphans are reaped, fsck must find nothing, nothing may
// leak, and the tree must be exactly the state before or after the interrupted command.
// The machinery lives in crash-lib.ts (shared with crash-clone.test.ts, which covers clone,
// graft and fileset deletion).
//
// Environment:
//   PRISM_CRASH_STRIDE=n   test every nth crash point (default 1: all of them)
//   PRISM_CRASH_SEEDS=n    power-loss seeds per crash point (default 2)
//   PRISM_CRASH_FULL=1     longer run: three workload rounds, every point, 6 seeds
//   PRISM_CRASH_ONLY=N     only global crash point N (to replay a failure); with PRISM_CRASH_SEED=s
//   PRISM_CRASH_DEBUG=1    print each command's writes, transactions and free counts
//   PRISM_CRASH_FSCK_CRASHED=0  skip the fsck of each crashed image before its recovery
import {expect} from 'chai'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {MemDevice} from '../src/device/mem.js'
import {BLOCK_SIZE, S_IFREG} from '../src/format/constants.js'
import {COMMIT_MAGIC} from '../src/format/journal.js'
import {loadExtents, writeZeros} from '../src/fs/extents.js'
import {namespace} from '../src/fs/image.js'
import type {Namespace} from '../src/fs/namespace.js'
import {Volume} from '../src/fs/volume.js'
import {listFilesets} from '../src/fs/filesets.js'
import {localityTuning} from '../src/fs/locality.js'
import {copy} from '../src/ops/copy.js'
import {chownPath} from '../src/ops/attrs.js'
import {
  FULL, ONLY, SEEDS, STRIDE, JOURNAL_BLOCKS, ImageView, baseImage, bytes, crashWorkload, deepEq, describeVolume, expectClean,
  expectCrash, fsckProblems, multiSummary, recording, recover, runCommand, sha, snapshotImage, visibility, type Op, type Snapshot,
} from './crash-lib.js'
import {importBuffer, mkTar} from './tar-lib.js'

const ROUNDS = FULL ? 3 : 2

// ---------------------------------------------------------------- the workload

/** A small host tree: nested dirs, a symlink, a hard link, an empty file, a hashed directory. */
function makeHostTree(dir: string): {tree: string, batches: string[], big: string, overlay: string} {
  const t = path.join(dir, 'tree')
  fs.mkdirSync(path.join(t, 'etc'), {recursive: true})
  fs.mkdirSync(path.join(t, 'home', 'alice'), {recursive: true})
  fs.mkdirSync(path.join(t, 'var', 'log'), {recursive: true})
  fs.mkdirSync(path.join(t, 'many'))
  fs.writeFileSync(path.join(t, 'etc', 'hostname'), 'prism-host\n')
  fs.writeFileSync(path.join(t, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n'.repeat(50))
  fs.writeFileSync(path.join(t, 'home', 'alice', 'notes.txt'), bytes(70000, 11))
  fs.writeFileSync(path.join(t, 'var', 'log', 'syslog'), 'boot\n')
  fs.writeFileSync(path.join(t, 'empty'), '')
  fs.writeFileSync(path.join(t, 'tool'), bytes(9000, 12), {mode: 0o755})
  for (let i = 0; i < 16; i++) fs.writeFileSync(path.join(t, 'many', `entry-${String(i).padStart(2, '0')}`), bytes(20 + i * 37, 100 + i))
  fs.symlinkSync('hostname', path.join(t, 'etc', 'hn'))
  fs.linkSync(path.join(t, 'etc', 'passwd'), path.join(t, 'etc', 'passwd.bak'))
  fs.chmodSync(path.join(t, 'home', 'alice'), 0o700)
  // Batches of small files, imported one cp -r at a time and removed together by one
  // rm -r, whose freeing then spans several transactions (and wraps the journal).
  const batches: string[] = []
  for (let b = 0; b < 5; b++) {
    const d = path.join(dir, `batch${b}`)
    fs.mkdirSync(path.join(d, 'sub'), {recursive: true})
    for (let i = 0; i < 34; i++) fs.writeFileSync(path.join(d, `f${i}`), bytes(i % 3 === 0 ? 5000 : 60, 1000 * b + i))
    for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(d, 'sub', `g${i}`), bytes(300, 2000 * b + i))
    batches.push(d)
  }
  // A tree whose import spans several transactions (it is staged, then published by the
  // last one), and one merged onto it: files replaced, entries added in existing and new
  // directories, a directory that would replace a file refused.
  const big = path.join(dir, 'big')
  for (let d = 0; d < 8; d++) {
    fs.mkdirSync(path.join(big, `d${d}`, 'sub'), {recursive: true})
    for (let i = 0; i < 16; i++) fs.writeFileSync(path.join(big, `d${d}`, i % 4 ? `f${i}` : path.join('sub', `f${i}`)), bytes(i % 5 === 0 ? 6000 : 40 + i * 13, 3000 + d * 100 + i))
  }
  fs.symlinkSync('d0/f1', path.join(big, 'link'))
  fs.linkSync(path.join(big, 'd1', 'f1'), path.join(big, 'd2', 'hard'))
  const overlay = path.join(dir, 'overlay')
  fs.mkdirSync(path.join(overlay, 'd0', 'new'), {recursive: true})
  fs.mkdirSync(path.join(overlay, 'd9'), {recursive: true})
  fs.mkdirSync(path.join(overlay, 'd1'), {recursive: true})
  fs.mkdirSync(path.join(overlay, 'd3', 'f1'), {recursive: true}) // a directory over a file: refused
  fs.writeFileSync(path.join(overlay, 'd0', 'f1'), bytes(5000, 4000))
  fs.writeFileSync(path.join(overlay, 'd0', 'new', 'x'), bytes(100, 4001))
  fs.writeFileSync(path.join(overlay, 'd9', 'y'), bytes(300, 4002))
  fs.writeFileSync(path.join(overlay, 'd1', 'f2'), bytes(70, 4003))
  return {tree: t, batches, big, overlay}
}

function workload(host: {tree: string, batches: string[], big: string, overlay: string}, rounds: number): Op[] {
  const ops: Op[] = []
  // A copy into the image is staged and published by its last transaction (src/ops/stage.ts).
  const op = (name: string, run: Op['run']) => ops.push({name, run, visibleAt: name.startsWith('cp -r') ? 'last' : 'first'})
  const cpIn = (src: string, dst: string, errors = 0) => (ns: Namespace, vol: Volume) => {
    const st = copy(vol, [{kind: 'host', path: src}], {kind: 'image', fileset: 'root', path: dst}, {recursive: true})
    expect(st.errors.length, JSON.stringify(st.errors)).to.equal(errors)
  }
  for (let r = 0; r < rounds; r++) {
    const R = `/r${r}`
    const s = r * 100
    op(`mkdir -p ${R}/srv/www/static`, (ns) => { ns.mkdir(`${R}/srv/www/static`, {parents: true}) })
    op(`cp -r tree ${R}/srv/tree`, cpIn(host.tree, `${R}/srv/tree`))
    // Copy-on-abundant-write: a 40-block file, a reflink copy sharing its blocks, writes into
    // both (each a region rewrite: groups are one region here), a truncate, then both go.
    op(`write ${R}/vm.img (40 blocks)`, (ns) => { ns.writeFile(`${R}/vm.img`, bytes(40 * BLOCK_SIZE, s + 20)) })
    op(`cp (in image, reflink) ${R}/vm.img ${R}/vm.snap`, (ns, vol) => {
      copy(vol, [{kind: 'image', fileset: 'root', path: `${R}/vm.img`}], {kind: 'image', fileset: 'root', path: `${R}/vm.snap`})
    })
    op(`pwrite ${R}/vm.img (5 blocks into shared regions: rewritten)`, (ns) => {
      const f = ns.openForWrite(`${R}/vm.img`)
      for (const b of [3, 17, 18, 33, 5]) ns.writeInode(f, b * BLOCK_SIZE + 7, bytes(BLOCK_SIZE - 100, s + b))
    })
    op(`pwrite ${R}/vm.img again (regions now its own)`, (ns) => {
      const f = ns.openForWrite(`${R}/vm.img`)
      for (const b of [4, 20, 39]) ns.writeInode(f, b * BLOCK_SIZE, bytes(2 * BLOCK_SIZE, s + 40 + b))
    })
    op(`pwrite ${R}/vm.snap (shared) and truncate -s 90000`, (ns) => {
      const f = ns.openForWrite(`${R}/vm.snap`)
      ns.writeInode(f, 10 * BLOCK_SIZE, bytes(300, s + 50))
      ns.truncateInode(f, 90_000)
    })
    op(`rm ${R}/vm.img ${R}/vm.snap`, (ns) => { ns.remove(`${R}/vm.img`); ns.remove(`${R}/vm.snap`) })
    // fallocate (the mount's): zeroed blocks, and a write over some of them in the same
    // transaction (test/zero-range.test.ts crashes one over blocks that held a file's data).
    op(`fallocate ${R}/zeros (32 blocks) + pwrite into it`, (ns, vol) => {
      const f = ns.openForWrite(`${R}/zeros`)
      writeZeros(vol, f, 0, 32 * BLOCK_SIZE)
      ns.writeInode(f, 7 * BLOCK_SIZE + 5, bytes(2 * BLOCK_SIZE, s + 60))
    })
    op(`rm ${R}/zeros`, (ns) => { ns.remove(`${R}/zeros`) })
    op(`write ${R}/srv/www/index.html (100 B, inline)`, (ns) => { ns.writeFile(`${R}/srv/www/index.html`, bytes(100, s + 1)) })
    op(`write ${R}/srv/www/app.js (4096 B)`, (ns) => { ns.writeFile(`${R}/srv/www/app.js`, bytes(4096, s + 2)) })
    op(`write ${R}/srv/www/bundle.bin (100 KB)`, (ns) => { ns.writeFile(`${R}/srv/www/bundle.bin`, bytes(100_000, s + 3)) })
    // open(O_TMPFILE) in a mount, written, then named by a linkat (FORMAT.md §9: an orphan
    // until then); one command here, so that a crash leaves the file named or nothing of it.
    op(`O_TMPFILE in ${R}/srv/www, 9000 B written, linkat as tmp.bin`, (ns) => {
      const dir = ns.resolve(`${R}/srv/www`)
      const f = ns.createUnnamed(dir, S_IFREG | 0o600)
      ns.writeInode(f, 0, bytes(9000, s + 13))
      ns.linkInode(f, dir, Buffer.from('tmp.bin'))
    })
    // copy_file_range (the mount's): whole blocks shared into a new file, edges copied.
    op(`copy_file_range ${R}/srv/www/tmp.bin -> cfr.bin (2 blocks shared, the tail copied; then a copy placed alike)`, (ns) => {
      const src = ns.resolve(`${R}/srv/www/tmp.bin`)
      const dst = ns.openForWrite(`${R}/srv/www/cfr.bin`)
      ns.copyRange(src, 0, dst, 0, 9000)
      ns.copyRange(src, 100, dst, 3 * BLOCK_SIZE + 100, 8000)
    })
    op(`write -a ${R}/srv/www/index.html (+30 B)`, (ns) => { ns.writeFile(`${R}/srv/www/index.html`, bytes(30, s + 4), {append: true}) })
    op(`write -a ${R}/srv/www/index.html (+200 B, leaves the inode)`, (ns) => { ns.writeFile(`${R}/srv/www/index.html`, bytes(200, s + 5), {append: true}) })
    op(`write -a ${R}/srv/www/bundle.bin (+5000 B)`, (ns) => { ns.writeFile(`${R}/srv/www/bundle.bin`, bytes(5000, s + 6), {append: true}) })
    // Extended attributes (FORMAT.md §14): a small set inline in its attribute inode, one
    // that spills to blocks, a change that rewrites only some of them, one shared by two
    // files, removal; special files (§5.5) and owners.
    op(`setxattr user.mime ${R}/srv/www/index.html`, (ns) => { ns.setXattr(`${R}/srv/www/index.html`, Buffer.from('user.mime'), Buffer.from('text/html')) })
    op(`setxattr user.big ${R}/srv/www/bundle.bin (20 KB, spills to blocks)`, (ns) => { ns.setXattr(`${R}/srv/www/bundle.bin`, Buffer.from('user.big'), bytes(20_000, s + 11)) })
    op(`setxattr security.selinux ${R}/srv/www (a directory)`, (ns) => { ns.setXattr(`${R}/srv/www`, Buffer.from('security.selinux'), Buffer.from('system_u:object_r:httpd_sys_content_t:s0')) })
    op(`setxattr user.big2 ${R}/srv/www/bundle.bin (rewrites the set's tail)`, (ns) => { ns.setXattr(`${R}/srv/www/bundle.bin`, Buffer.from('user.zbig2'), bytes(9_000, s + 12)) })
    op(`setxattr security.selinux ${R}/srv/www/app.js (same set as the directory: shared)`, (ns) => { ns.setXattr(`${R}/srv/www/app.js`, Buffer.from('security.selinux'), Buffer.from('system_u:object_r:httpd_sys_content_t:s0')) })
    op(`removexattr user.big ${R}/srv/www/bundle.bin`, (ns) => { ns.removeXattr(`${R}/srv/www/bundle.bin`, Buffer.from('user.big')) })
    op(`mknod ${R}/srv/null c 1 3`, (ns) => { ns.mknod(`${R}/srv/null`, 0o020666, {major: 1, minor: 3}) })
    op(`mknod ${R}/srv/fifo p`, (ns) => { ns.mknod(`${R}/srv/fifo`, 0o010600) })
    op(`setxattr trusted.t ${R}/srv/fifo`, (ns) => { ns.setXattr(`${R}/srv/fifo`, Buffer.from('trusted.t'), Buffer.from('on a fifo')) })
    op(`chown -R 1000:1000 ${R}/srv/www`, (ns) => { chownPath(ns, `${R}/srv/www`, {uid: 1000, gid: 1000}, {recursive: true}) })
    op(`rm ${R}/srv/null`, (ns) => { ns.remove(`${R}/srv/null`) })
    op(`truncate -s 50001 ${R}/srv/www/bundle.bin`, (ns) => { ns.truncate(`${R}/srv/www/bundle.bin`, 50_001) })
    op(`truncate -s 180000 ${R}/srv/www/bundle.bin`, (ns) => { ns.truncate(`${R}/srv/www/bundle.bin`, 180_000) })
    op(`truncate -s 0 ${R}/srv/www/app.js`, (ns) => { ns.truncate(`${R}/srv/www/app.js`, 0) })
    op(`truncate -s 10 ${R}/srv/www/index.html`, (ns) => { ns.truncate(`${R}/srv/www/index.html`, 10) })
    op(`ln ${R}/srv/www/bundle.bin ${R}/srv/bundle.hard`, (ns) => { ns.link(`${R}/srv/www/bundle.bin`, `${R}/srv/bundle.hard`) })
    op(`ln -s www/index.html ${R}/srv/index.link`, (ns) => { ns.symlink('www/index.html', `${R}/srv/index.link`) })
    op(`ln -s (absolute) ${R}/srv/www/pw`, (ns) => { ns.symlink(`${R}/srv/tree/etc/passwd`, `${R}/srv/www/pw`) })
    op(`mv ${R}/srv/tree ${R}/srv/www/static/tree`, (ns) => { ns.rename(`${R}/srv/tree`, `${R}/srv/www/static/tree`) })
    op(`mv ${R}/srv/www/app.js ${R}/srv/www/app.old`, (ns) => { ns.rename(`${R}/srv/www/app.js`, `${R}/srv/www/app.old`) })
    op(`write ${R}/srv/www/app.js (3000 B)`, (ns) => { ns.writeFile(`${R}/srv/www/app.js`, bytes(3000, s + 7)) })
    op(`mv ${R}/srv/www/bundle.bin ${R}/srv/www/app.old (replaces)`, (ns) => { ns.rename(`${R}/srv/www/bundle.bin`, `${R}/srv/www/app.old`) })
    op(`mv ${R}/srv/www/app.js ${R}/srv/www/app.old (replaces, frees)`, (ns) => { ns.rename(`${R}/srv/www/app.js`, `${R}/srv/www/app.old`) })
    op(`rm ${R}/srv/bundle.hard`, (ns) => { ns.remove(`${R}/srv/bundle.hard`) })
    op(`cp -r (in image, reflink) ${R}/srv/www ${R}/srv/www2`, (ns, vol) => {
      copy(vol, [{kind: 'image', fileset: 'root', path: `${R}/srv/www`}], {kind: 'image', fileset: 'root', path: `${R}/srv/www2`}, {recursive: true})
    })
    op(`write ${R}/srv/www2/static/tree/etc/passwd (shared, 6000 B)`, (ns) => { ns.writeFile(`${R}/srv/www2/static/tree/etc/passwd`, bytes(6000, s + 8)) })
    op(`cp -r tree ${R}/copy2`, cpIn(host.tree, `${R}/copy2`))
    op(`mkdir -p ${R}/srv/d/e/f/g`, (ns) => { ns.mkdir(`${R}/srv/d/e/f/g`, {parents: true}) })
    op(`write ${R}/srv/www/app.old (20 B, back inline)`, (ns) => { ns.writeFile(`${R}/srv/www/app.old`, bytes(20, s + 9)) })
    op(`rm -r ${R}/srv/www/static/tree`, (ns) => { ns.remove(`${R}/srv/www/static/tree`, {recursive: true}) })
    op(`mkdir ${R}/bulk`, (ns) => { ns.mkdir(`${R}/bulk`) })
    host.batches.forEach((b, i) => op(`cp -r batch${i} ${R}/bulk/b${i}`, cpIn(b, `${R}/bulk/b${i}`)))
    op(`ln ${R}/bulk/b0/f1 ${R}/keep.hard`, (ns) => { ns.link(`${R}/bulk/b0/f1`, `${R}/keep.hard`) })
    op(`rm -r ${R}/bulk (spans transactions)`, (ns) => { ns.remove(`${R}/bulk`, {recursive: true}) })
    op(`mv ${R}/copy2 ${R}/moved`, (ns) => { ns.rename(`${R}/copy2`, `${R}/moved`) })
    op(`write ${R}/moved/etc/hostname (replace)`, (ns) => { ns.writeFile(`${R}/moved/etc/hostname`, bytes(64, s + 10)) })
    op(`ln ${R}/moved/etc/passwd ${R}/moved/pw3`, (ns) => { ns.link(`${R}/moved/etc/passwd`, `${R}/moved/pw3`) })
    op(`truncate -s 8192 ${R}/moved/home/alice/notes.txt`, (ns) => { ns.truncate(`${R}/moved/home/alice/notes.txt`, 8192) })
    op(`mv ${R}/moved/many ${R}/many`, (ns) => { ns.rename(`${R}/moved/many`, `${R}/many`) })
    op(`rm -r ${R}/srv/d`, (ns) => { ns.remove(`${R}/srv/d`, {recursive: true}) })
    op(`rm -r ${R}/many`, (ns) => { ns.remove(`${R}/many`, {recursive: true}) })
    op(`rm -r ${R}/srv/www2`, (ns) => { ns.remove(`${R}/srv/www2`, {recursive: true}) })
    if (r === 0) {
      op(`cp -r big ${R}/big (staged, spans transactions)`, cpIn(host.big, `${R}/big`))
      op(`cp -rT overlay ${R}/big (merge: replaces, adds, refuses one)`, (ns, vol) => {
        const st = copy(vol, [{kind: 'host', path: host.overlay}], {kind: 'image', fileset: 'root', path: `${R}/big`}, {recursive: true, noTargetDirectory: true})
        expect(st.errors.map((e) => e.code)).to.deep.equal(['ENOTDIR'])
      })
      op(`cp -r (in image) ${R}/big ${R}/big2 (staged, spans transactions)`, (ns, vol) => {
        copy(vol, [{kind: 'image', fileset: 'root', path: `${R}/big`}], {kind: 'image', fileset: 'root', path: `${R}/big2`}, {recursive: true})
      })
      op(`rm -r ${R}/big2`, (ns) => { ns.remove(`${R}/big2`, {recursive: true}) })
    }
    // An import from tar builds out of sight and shows in one transaction: a new directory,
    // then a merge over it that replaces files (freed after the visible transaction).
    const tarIn = (label: string, path: string, archive: Buffer) => ops.push({name: label, visibleAt: 'marked', run: (_ns, vol) => {
      importBuffer(vol, {fileset: 'root', path}, archive, {onVisible: () => { visibility.mark = vol.journal.committedSeqs.length }})
    }})
    const files = (seed: number) => mkTar([
      {name: 'etc/', type: 'dir', mode: 0o750},
      {name: 'etc/hostname', data: bytes(30, s + seed)},
      {name: 'etc/big', data: bytes(9000, s + seed + 1), pax: [['SCHILY.xattr.user.k', 'v'], ['mtime', '1600000000.123456789']]},
      {name: 'etc/hn', type: 'symlink', link: 'hostname'},
      {name: 'etc/hard', type: 'hardlink', link: 'etc/big'},
      {name: 'dev/fifo', type: 'fifo'},
      ...Array.from({length: 12}, (_, i) => ({name: `many/f${i}`, data: bytes(50 + i * 300, s + seed + 10 + i)})),
    ])
    tarIn(`import tar ${R}/imp (new directory)`, `${R}/imp`, files(20))
    tarIn(`import tar ${R}/imp (merge: replaces every file)`, `${R}/imp`, files(40))
    op(`rm -r ${R}/imp`, (ns) => { ns.remove(`${R}/imp`, {recursive: true}) })
  }
  return ops
}

let tmp = ''
let host: {tree: string, batches: string[], big: string, overlay: string}
let base: Buffer

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-crash-'))
  host = makeHostTree(tmp)
  base = baseImage()
})

after(() => {
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true})
})

// ---------------------------------------------------------------- the big test

describe('crash consistency', function () {
  this.timeout(FULL ? 0 : 900_000)
  const savedGroup = localityTuning.groupBytes
  // A group of one region: every run placed outside its windows rewrites its region.
  before(() => { localityTuning.groupBytes = 64 * 1024 })
  after(() => { localityTuning.groupBytes = savedGroup })

  it('recovers to the state before or after the interrupted command, at every write', () => {
    const t0 = Date.now()
    const ops = workload(host, ROUNDS)
    const r = crashWorkload(base, ops)
    const secs = ((Date.now() - t0) / 1000).toFixed(1)
    console.log(`      crash test: ${r.points} crash points of ${r.totalWrites} writes over ${ops.length} commands (${ROUNDS} rounds), ` +
      `${SEEDS} seed(s) each, ${r.recoveries} recoveries (${r.before} to the state before, ${r.after} after), ` +
      `${ops.length + 1} states, stride ${STRIDE}, ${secs} s` + multiSummary(r))
    if (r.failures.length) expect.fail(`${r.failures.length} failure(s):\n${r.failures.slice(0, 10).join('\n')}`)
    // The workload rewrote regions (so crash points fell inside region rewrites).
    const v = Volume.openDevice(new ImageView(r.final), {write: false})
    const rewrites = listFilesets(v).reduce((n, f) => n + f.coawRewrites, 0)
    v.close()
    console.log(`      region rewrites in the workload: ${rewrites}`)
    if (ONLY === null) expect(rewrites).to.be.greaterThan(0)
    if (ONLY === null) {
      expect(r.totalWrites).to.be.at.least(500)
      expect(r.points).to.be.at.least(STRIDE === 1 ? 500 : 1)
    }
  })
})

// ---------------------------------------------------------------- focused tests

describe('crash consistency: journal', function () {
  this.timeout(120_000)
  let setup: Buffer
  let beforeState: Snapshot
  let afterImg: Buffer
  let afterState: Snapshot
  /** one command that changes data and metadata in one transaction */
  const change: Op = {
    name: 'write /a/g, mkdir -p /b/c, rm /a/f, mv /t/etc /b/etc',
    run: (ns) => {
      ns.writeFile('/a/g', bytes(20_000, 5))
      ns.mkdir('/b/c', {parents: true})
      ns.remove('/a/f')
      ns.rename('/t/etc', '/b/etc')
    },
  }
  let writes: Array<{block: number, data: Buffer}>
  /** 1-based index of the commit record's write */
  let commitAt: number

  before(() => {
    const dev = new MemDevice(base)
    runCommand(dev, {name: 'setup', run: (ns, vol) => {
      ns.mkdir('/a')
      ns.writeFile('/a/f', bytes(10_000, 4))
      copy(vol, [{kind: 'host', path: host.tree}], {kind: 'image', fileset: 'root', path: '/t'}, {recursive: true})
    }}, 0)
    setup = Buffer.from(dev.durable)
    beforeState = snapshotImage(setup)
    const rec = recording(setup)
    runCommand(rec.dev, change, 1)
    afterImg = Buffer.from(rec.dev.durable)
    afterState = snapshotImage(afterImg)
    writes = rec.writes
    const journalEnd = 1 + JOURNAL_BLOCKS
    const commits = writes.flatMap((w, i) => (w.block > 1 && w.block < journalEnd && w.data.length === BLOCK_SIZE && w.data.readUInt32LE(0) === COMMIT_MAGIC ? [i + 1] : []))
    expect(commits, 'the command commits exactly one transaction').to.have.length(1)
    commitAt = commits[0]
    expect(deepEq(beforeState, afterState)).to.equal(false)
  })

  it('discards a transaction whose commit record is torn, and replays it when whole', () => {
    const dev = new MemDevice(setup)
    dev.crashAtWrite = commitAt
    expectCrash(dev, () => runCommand(dev, change, 1))
    const block = writes[commitAt - 1].block
    const record = writes[commitAt - 1].data
    let torn = 0
    let whole = 0
    // Every combination of the record's eight 512-byte sectors reaching the disk.
    for (let mask = 0; mask < 256; mask++) {
      const img = Buffer.from(dev.durable)
      for (let sct = 0; sct < 8; sct++) if (mask & (1 << sct)) record.copy(img, block * BLOCK_SIZE + sct * 512, sct * 512, (sct + 1) * 512)
      const complete = img.subarray(block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE).equals(record)
      const r = recover(img)
      const got = snapshotImage(r.img)
      if (complete) {
        whole++
        expect(r.replayed, `mask ${mask}`).to.equal(1)
        expect(got, `mask ${mask}: a whole commit record is replayed`).to.deep.equal(afterState)
      } else {
        torn++
        expect(r.replayed, `mask ${mask}`).to.equal(0)
        expect(got, `mask ${mask}: a torn commit record discards the transaction`).to.deep.equal(beforeState)
      }
      if (mask % 37 === 0 || mask === 255) expectClean(r.img, `mask ${mask}`)
    }
    expect(torn).to.be.greaterThan(0)
    expect(whole).to.be.greaterThan(0)
  })

  it('replays idempotently: a crash during replay, at every write, recovers the same state', () => {
    let checked = 0
    // Crashes after the commit record: during the in-place writes and the close.
    for (let n = commitAt + 1; n <= writes.length; n++) {
      const dev = new MemDevice(setup)
      dev.crashAtWrite = n
      expectCrash(dev, () => runCommand(dev, change, 1))
      for (const seed of [n, n + 1000]) {
        const crashed = dev.afterPowerLoss(seed)
        const first = new MemDevice(crashed)
        const vol = Volume.openDevice(first, {write: true})
        vol.close()
        const replayWrites = first.counts.write
        // Power lost again at every write of the recovery itself.
        for (let m = 1; m <= replayWrites; m++) {
          const again = new MemDevice(crashed)
          again.crashAtWrite = m
          expectCrash(again, () => { Volume.openDevice(again, {write: true}).close() })
          const r = recover(again.afterPowerLoss(seed * 31 + m))
          expect(snapshotImage(r.img), `crash at write ${n}, seed ${seed}, recovery crashed at write ${m}`).to.deep.equal(afterState)
          expectClean(r.img, `crash at write ${n}, seed ${seed}, recovery crashed at write ${m}`)
          checked++
        }
        // Reopening a recovered image replays nothing and writes nothing.
        const twice = new MemDevice(first.durable)
        const v2 = Volume.openDevice(twice, {write: true})
        expect(v2.replayed).to.equal(0)
        v2.close()
        expect(twice.counts.write).to.equal(0)
        expect(snapshotImage(Buffer.from(twice.durable))).to.deep.equal(afterState)
      }
    }
    expect(checked).to.be.greaterThan(0)
  })

  it('a read-only open of an image with an unreplayed journal sees the committed state and writes nothing', () => {
    // Power lost right after the commit record was synced: nothing is in place yet.
    const dev = new MemDevice(setup)
    dev.crashAtWrite = commitAt + 1
    expectCrash(dev, () => runCommand(dev, change, 1))
    const img = Buffer.from(dev.durable)
    const view = new ImageView(img)
    const vol = Volume.openDevice(view, {write: false})
    expect(vol.replayed).to.equal(1)
    expect(describeVolume(vol).tree).to.deep.equal(afterState.tree)
    vol.close()
    expect(view.writes).to.equal(0)
    // Also on a device that could write: opening without write access must not write.
    const rw = new MemDevice(img)
    const v2 = Volume.openDevice(rw, {write: false})
    expect(describeVolume(v2).tree).to.deep.equal(afterState.tree)
    v2.close()
    expect(rw.counts.write, 'writes by a read-only open').to.equal(0)
    expect(rw.volatile.equals(img)).to.equal(true)
    // fsck reads the journal in memory, finds nothing, and writes nothing.
    expect(fsckProblems(img)).to.deep.equal([])
    // The image still recovers to the committed state.
    expect(snapshotImage(recover(img).img)).to.deep.equal(afterState)
  })

  it('a command that returned has made its change durable: any power loss keeps all of it', () => {
    const dev = new MemDevice(setup)
    const ops = workload(host, 1).slice(0, 12)
    ops.forEach((op, k) => {
      runCommand(dev, op, k)
      expect(dev.unsynced, `${op.name}: unsynced writes after close()`).to.equal(0)
      const state = snapshotImage(Buffer.from(dev.volatile))
      for (let seed = 1; seed <= 8; seed++) {
        const img = dev.afterPowerLoss(seed)
        expect(img.equals(dev.volatile), `${op.name}: seed ${seed}`).to.equal(true)
      }
      expect(snapshotImage(recover(dev.afterPowerLoss(k)).img)).to.deep.equal(state)
    })
    expectClean(Buffer.from(dev.durable), 'after the commands')
  })

  it('a block freed by a logged transaction and reused for file data in the same open survives replay', () => {
    // A hashed directory whose blocks are logged (rm -r changes them) and freed, then file
    // data written into the lowest free blocks, in later transactions of the same open.
    // Directory blocks sit in the metadata zone, where file data goes only once the rest of
    // the data area is full (docs/FORMAT.md §4.3): /filler fills it first.
    const dev = new MemDevice(base)
    runCommand(dev, {name: 'mkdir /d with many names, then fill the space outside the metadata zone', run: (ns, vol) => {
      ns.mkdir('/d')
      for (let i = 0; i < 60; i++) ns.writeFile(`/d/name-${String(i).padStart(3, '0')}`, bytes(50, i))
      let free = 0
      for (let b = vol.sb.dataStart + vol.metaZoneBlocks; b < vol.sb.dataStart + vol.sb.dataBlocks; b++) if (vol.refcount(b) === 0) free++
      ns.writeFile('/filler', bytes(free * BLOCK_SIZE, 5))
    }}, 0)
    const start = Buffer.from(dev.durable)
    const dirBlocks = (() => {
      const vol = Volume.openDevice(new ImageView(start), {write: false})
      const d = namespace(vol, 'root').resolve('/d')
      const blocks = loadExtents(vol, d).toArray().flatMap((e) => Array.from({length: e.n}, (_, i) => e.p + i))
      vol.close()
      return blocks
    })()
    expect(dirBlocks.length, '/d is a hashed directory with blocks').to.be.greaterThan(0)
    const data = bytes(200_000, 77)
    const run = new MemDevice(start)
    const vol = Volume.openDevice(run, {write: true})
    const ns = namespace(vol, 'root')
    ns.remove('/d', {recursive: true})
    vol.commit()
    ns.writeFile('/f', data)
    vol.commit()
    const fBlocks = loadExtents(vol, ns.resolve('/f')).toArray().flatMap((e) => Array.from({length: e.n}, (_, i) => e.p + i))
    expect(fBlocks.some((b) => dirBlocks.includes(b)), 'the file reuses blocks of the removed directory').to.equal(true)
    // Power lost before close(): both transactions are committed, not checkpointed.
    for (let seed = 0; seed < 8; seed++) {
      const r = recover(run.afterPowerLoss(seed))
      const v = Volume.openDevice(new ImageView(r.img), {write: false})
      const got = namespace(v, 'root').readFile('/f')
      const gone = !namespace(v, 'root').exists('/d')
      v.close()
      expect(gone).to.equal(true)
      expect(sha(got), `seed ${seed}: content of /f after replay`).to.equal(sha(data))
      expectClean(r.img, `seed ${seed}`)
    }
  })
})
