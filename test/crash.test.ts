// Crash consistency, in the manner of littlefs's "reentrant" tests: a mixed workload of
// commands (cp -r, mkdir -p, rm -r, mv, write, truncate, ln) is run over an in-memory
// device that loses power at its Nth write, for every N. Each crashed image (what was synced,
// plus every unsynced write kept, dropped or torn at 512-byte sectors, chosen by a seed) is
// reopened: the journal is replayed, orphans are reaped, fsck must find nothing, nothing may
// leak, and the tree must be exactly the state before or after the interrupted command.
//
// Environment:
//   PRISM_CRASH_STRIDE=n   test every nth crash point (default 1: all of them)
//   PRISM_CRASH_SEEDS=n    power-loss seeds per crash point (default 2)
//   PRISM_CRASH_FULL=1     longer run: three workload rounds, every point, 6 seeds
//   PRISM_CRASH_ONLY=N     only global crash point N (to replay a failure); with PRISM_CRASH_SEED=s
//   PRISM_CRASH_DEBUG=1    print each command's writes, transactions and free counts
import {expect} from 'chai'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type {BlockDevice} from '../src/device/device.js'
import {MemDevice, mulberry32} from '../src/device/mem.js'
import {PrismError} from '../src/errors.js'
import {BLOCK_SIZE, REFCOUNTS_PER_BLOCK, STATE_CLEAN, STATE_DIRTY} from '../src/format/constants.js'
import {COMMIT_MAGIC} from '../src/format/journal.js'
import {refcountBlockOk} from '../src/format/refcount.js'
import {planGeometry} from '../src/format/superblock.js'
import {dirList} from '../src/fs/dir.js'
import {loadExtents, readData} from '../src/fs/extents.js'
import type {Inode} from '../src/fs/inode.js'
import {listFilesets} from '../src/fs/filesets.js'
import {createEmptyFileset, namespace} from '../src/fs/image.js'
import type {Namespace} from '../src/fs/namespace.js'
import {Volume} from '../src/fs/volume.js'
import {copy} from '../src/ops/copy.js'
import {fsckDevice} from '../src/fsck/index.js'

// ---------------------------------------------------------------- configuration

const FULL = process.env.PRISM_CRASH_FULL === '1'
const STRIDE = Math.max(1, Number(process.env.PRISM_CRASH_STRIDE ?? 1) || 1)
const SEEDS = Math.max(1, Number(process.env.PRISM_CRASH_SEEDS ?? (FULL ? 6 : 2)) || 1)
const ROUNDS = FULL ? 3 : 2
const ONLY = process.env.PRISM_CRASH_ONLY ? Number(process.env.PRISM_CRASH_ONLY) : null
const ONLY_SEED = process.env.PRISM_CRASH_SEED ? Number(process.env.PRISM_CRASH_SEED) : null

const IMAGE_BLOCKS = 640 // 2.5 MiB
/** A small journal, so that transactions wrap it and force checkpoints inside commands. */
const JOURNAL_BLOCKS = 32

// ---------------------------------------------------------------- images and snapshots

function baseImage(): Buffer {
  const dev = new MemDevice(Buffer.alloc(IMAGE_BLOCKS * BLOCK_SIZE))
  const sb = planGeometry({blockCount: IMAGE_BLOCKS, journalBlocks: JOURNAL_BLOCKS, inodeCount: 768, filesetSlots: 16})
  const vol = Volume.format(dev, sb, (v) => { createEmptyFileset(v, 'root') })
  vol.close()
  expect(dev.unsynced).to.equal(0)
  return Buffer.from(dev.durable)
}

/** A read-only device over an image buffer, without copying it; counts attempted writes. */
class ImageView implements BlockDevice {
  readonly readOnly = true
  readonly blocks: number
  writes = 0

  constructor(private img: Buffer) {
    this.blocks = Math.floor(img.length / BLOCK_SIZE)
  }

  read(block: number, buf: Buffer): void {
    const pos = block * BLOCK_SIZE
    if (pos + buf.length > this.img.length) throw new PrismError('EIO', 'read past end of device')
    this.img.copy(buf, 0, pos, pos + buf.length)
  }

  write(): void {
    this.writes++
    throw new PrismError('EROFS', 'read-only view')
  }

  sync(): void {}
  close(): void {}
}

interface Snapshot {
  tree: string[]
  freeBlocks: number
  freeInodes: number
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex').slice(0, 24)
}

/**
 * Every path of fileset root with its type, inode, mode, owner, link count, size, content
 * hash and symlink target. `loose` leaves out what an unreaped orphan can still change
 * (link counts of files also linked from a detached tree).
 */
function treeOf(ns: Namespace, loose = false): string[] {
  const out: string[] = []
  const walk = (dir: Inode, at: string) => {
    for (const e of ns.readdirInode(dir)) {
      const p = at + '/' + e.name
      const inode = ns.vol.iget(e.ino)
      const st = ns.statInode(inode)
      const head = loose ? `${p} ${st.type} ${st.mode.toString(8)}` : `${p} ${st.type} ino=${st.ino} ${st.mode.toString(8)} ${st.uid}:${st.gid} nlink=${st.nlink}`
      if (st.type === 'dir') {
        out.push(`${head} entries=${st.entries}`)
        walk(inode, p)
      } else if (st.type === 'symlink') {
        out.push(`${head} -> ${st.target}`)
      } else {
        out.push(`${head} size=${st.size} sha=${sha(readData(ns.vol, inode, 0, st.size))}`)
      }
    }
  }
  walk(ns.root(), '')
  return out
}

/** Opens the image read-only (no replay, no writes) and describes fileset root. */
function snapshotImage(img: Buffer, loose = false): Snapshot {
  const dev = new ImageView(img)
  const vol = Volume.openDevice(dev, {write: false})
  try {
    return {tree: treeOf(namespace(vol, 'root'), loose), freeBlocks: vol.sb.freeBlocks, freeInodes: vol.sb.freeInodes}
  } finally {
    vol.close()
    if (dev.writes !== 0) throw new Error('a read-only open wrote to the device')
  }
}

// ---------------------------------------------------------------- structural check

/**
 * A cheap independent check of a closed image: valid state, empty journal and orphan list,
 * refcount table checksums, free counters equal to the tables, every used inode reachable,
 * link counts right, and every block counter equal to the number of inodes that map it.
 * That is what "nothing leaks" means. Returns the problems found.
 */
function structuralProblems(img: Buffer): string[] {
  const problems: string[] = []
  const dev = new ImageView(img)
  const vol = Volume.openDevice(dev, {write: false})
  try {
    const sb = vol.sb
    if (vol.replayed !== 0) problems.push(`journal still holds ${vol.replayed} transaction(s) after a clean close`)
    if (sb.state !== STATE_CLEAN && sb.state !== STATE_DIRTY) problems.push(`superblock state ${sb.state}`)
    if (sb.orphanHead !== 0) problems.push(`orphan list not empty (head ${sb.orphanHead})`)
    const counts = new Uint8Array(sb.dataBlocks)
    const tables = Math.ceil(sb.dataBlocks / REFCOUNTS_PER_BLOCK)
    for (let i = 0; i < tables; i++) {
      const buf = vol.store.get(sb.refcountStart + i)
      if (!refcountBlockOk(buf)) problems.push(`refcount block ${i} checksum mismatch`)
      const limit = Math.min(REFCOUNTS_PER_BLOCK, sb.dataBlocks - i * REFCOUNTS_PER_BLOCK)
      counts.set(buf.subarray(0, limit), i * REFCOUNTS_PER_BLOCK)
    }
    const zeros = counts.reduce((n, c) => n + (c === 0 ? 1 : 0), 0)
    if (zeros !== sb.freeBlocks) problems.push(`superblock says ${sb.freeBlocks} free blocks, the refcount table ${zeros}`)
    const used = new Set<number>()
    for (let ino = 1; ino <= sb.inodeCount; ino++) if (vol.inodeSlotUsed(ino)) used.add(ino)
    if (sb.inodeCount - used.size !== sb.freeInodes) problems.push(`superblock says ${sb.freeInodes} free inodes, the table ${sb.inodeCount - used.size}`)

    const expected = new Uint32Array(sb.dataBlocks)
    const names = new Map<number, number>()
    const subdirs = new Map<number, number>()
    const seen = new Set<number>()
    const account = (ino: number) => {
      const inode = vol.iget(ino)
      for (const e of loadExtents(vol, inode)) for (let b = e.p; b < e.p + e.n; b++) expected[b - sb.dataStart]++
      for (const b of inode.treeBlocks) expected[b - sb.dataStart]++
    }
    const walk = (dirIno: number) => {
      for (const e of dirList(vol, vol.iget(dirIno))) {
        names.set(e.ino, (names.get(e.ino) ?? 0) + 1)
        const child = vol.iget(e.ino)
        if (child.isDir) subdirs.set(dirIno, (subdirs.get(dirIno) ?? 0) + 1)
        if (seen.has(e.ino)) {
          if (child.isDir) problems.push(`directory ${e.ino} has two names`)
          continue
        }
        seen.add(e.ino)
        account(e.ino)
        if (child.isDir) walk(e.ino)
      }
    }
    for (const f of listFilesets(vol)) {
      seen.add(f.rootIno)
      account(f.rootIno)
      walk(f.rootIno)
    }
    for (const ino of used) if (!seen.has(ino)) problems.push(`inode ${ino} is in use but unreachable`)
    for (const ino of seen) if (!used.has(ino)) problems.push(`inode ${ino} is reachable but free`)
    for (const ino of seen) {
      const inode = vol.iget(ino)
      const want = inode.isDir ? 2 + (subdirs.get(ino) ?? 0) : names.get(ino) ?? 0
      if (inode.r.nlink !== want) problems.push(`inode ${ino} nlink ${inode.r.nlink}, expected ${want}`)
    }
    for (let i = 0; i < sb.dataBlocks; i++) {
      if (counts[i] !== expected[i]) problems.push(`block ${sb.dataStart + i}: refcount ${counts[i]}, mapped by ${expected[i]} inode(s)`)
      if (problems.length > 20) break
    }
  } finally {
    vol.close()
  }
  if (dev.writes !== 0) problems.push('a read-only open wrote to the device')
  return problems
}

function fsckProblems(img: Buffer): string[] {
  const dev = new ImageView(img)
  const r = fsckDevice(dev, {repair: false})
  const out = r.problems.map((p) => `fsck ${p.code} ${p.where}: ${p.message}`)
  if (r.exitCode !== 0) out.push(`fsck exit code ${r.exitCode}${r.notes.length ? ` (${r.notes.join('; ')})` : ''}`)
  if (dev.writes !== 0) out.push('fsck without repair wrote to the device')
  return out
}

// ---------------------------------------------------------------- the workload

interface Op {
  name: string
  run: (ns: Namespace, vol: Volume) => void
}

/** Deterministic file content. */
function bytes(n: number, seed: number): Buffer {
  const rnd = mulberry32(seed)
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = 32 + Math.floor(rnd() * 95)
  return b
}

/** A small host tree: nested dirs, a symlink, a hard link, an empty file, a hashed directory. */
function makeHostTree(dir: string): {tree: string, batches: string[]} {
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
  return {tree: t, batches}
}

function workload(host: {tree: string, batches: string[]}, rounds: number): Op[] {
  const ops: Op[] = []
  const op = (name: string, run: Op['run']) => ops.push({name, run})
  const cpIn = (src: string, dst: string) => (ns: Namespace, vol: Volume) => {
    copy(vol, [{kind: 'host', path: src}], {kind: 'image', fileset: 'root', path: dst}, {recursive: true})
  }
  for (let r = 0; r < rounds; r++) {
    const R = `/r${r}`
    const s = r * 100
    op(`mkdir -p ${R}/srv/www/static`, (ns) => { ns.mkdir(`${R}/srv/www/static`, {parents: true}) })
    op(`cp -r tree ${R}/srv/tree`, cpIn(host.tree, `${R}/srv/tree`))
    op(`write ${R}/srv/www/index.html (100 B, inline)`, (ns) => { ns.writeFile(`${R}/srv/www/index.html`, bytes(100, s + 1)) })
    op(`write ${R}/srv/www/app.js (4096 B)`, (ns) => { ns.writeFile(`${R}/srv/www/app.js`, bytes(4096, s + 2)) })
    op(`write ${R}/srv/www/bundle.bin (100 KB)`, (ns) => { ns.writeFile(`${R}/srv/www/bundle.bin`, bytes(100_000, s + 3)) })
    op(`write -a ${R}/srv/www/index.html (+30 B)`, (ns) => { ns.writeFile(`${R}/srv/www/index.html`, bytes(30, s + 4), {append: true}) })
    op(`write -a ${R}/srv/www/index.html (+200 B, leaves the inode)`, (ns) => { ns.writeFile(`${R}/srv/www/index.html`, bytes(200, s + 5), {append: true}) })
    op(`write -a ${R}/srv/www/bundle.bin (+5000 B)`, (ns) => { ns.writeFile(`${R}/srv/www/bundle.bin`, bytes(5000, s + 6), {append: true}) })
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
  }
  return ops
}

/** Runs one op as a command: open (replay), change, close (commit + checkpoint). */
function runCommand(dev: MemDevice, op: Op, k: number, out: {vol?: Volume} = {}): void {
  // Directory hash seeds come from Math.random: make them deterministic so that the dry
  // run and every crash run of an op write the same blocks in the same order.
  const random = Math.random
  Math.random = mulberry32(0x5eed + k)
  try {
    const vol = Volume.openDevice(dev, {write: true})
    out.vol = vol
    op.run(namespace(vol, 'root'), vol)
    vol.close()
  } finally {
    Math.random = random
  }
}

/** Runs `fn`, which must be stopped by the simulated power loss (possibly wrapped by a layer). */
function expectCrash(dev: MemDevice, fn: () => void): void {
  try {
    fn()
  } catch (e) {
    if (dev.crashed) return
    throw e
  }
  throw new Error('the operation finished before the crash point')
}

let tmp = ''
let host: {tree: string, batches: string[]}
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
  this.timeout(FULL ? 0 : 300_000)

  it('recovers to the state before or after the interrupted command, at every write', () => {
    const t0 = Date.now()
    const ops = workload(host, ROUNDS)
    const failures: string[] = []
    let points = 0
    let recoveries = 0
    let totalWrites = 0
    let afterCount = 0
    let beforeCount = 0
    let img = base
    let prev = snapshotImage(img)
    let prevLoose = snapshotImage(img, true)
    const multi: string[] = []

    for (let k = 0; k < ops.length; k++) {
      const op = ops[k]
      // Dry run of the command: the state after it, and how many writes it makes.
      const dry = new MemDevice(img)
      // Writes of the journal superblock (block 1): more than the one of close() means the
      // journal filled up and was checkpointed inside the command.
      let superWrites = 0
      const write = dry.write.bind(dry)
      dry.write = (b: number, buf: Buffer) => { if (b === 1) superWrites++; write(b, buf) }
      const out: {vol?: Volume} = {}
      runCommand(dry, op, k, out)
      expect(dry.unsynced, `${op.name}: writes left unsynced after close()`).to.equal(0)
      const next = Buffer.from(dry.durable)
      const nextState = snapshotImage(next)
      const nextLoose = snapshotImage(next, true)
      const dryProblems = [...structuralProblems(next), ...fsckProblems(next)]
      if (dryProblems.length) failures.push(`op ${k + 1} '${op.name}' without a crash: ${dryProblems.slice(0, 8).join('; ')}`)
      const writes = dry.counts.write
      const commits = out.vol!.journal.committedSeqs.length
      if (commits > 1) multi.push(`${op.name} (${commits} transactions${superWrites > 1 ? ', journal wrapped' : ''})`)
      if (process.env.PRISM_CRASH_DEBUG) console.log(`${k + 1} ${op.name}: ${writes} writes, ${commits} txns, ${nextState.freeBlocks} free blocks, ${nextState.freeInodes} free inodes`)

      for (let n = 1; n <= writes; n++) {
        const N = totalWrites + n
        if (ONLY !== null ? N !== ONLY : N % STRIDE !== 0) continue
        points++
        const dev = new MemDevice(img)
        dev.crashAtWrite = n
        const cout: {vol?: Volume} = {}
        expectCrash(dev, () => runCommand(dev, op, k, cout))
        // Once the first commit record is synced, the command's change is durable.
        const committed = (cout.vol?.journal.committedSeqs.length ?? 0) > 0
        for (let s = 0; s < SEEDS; s++) {
          const seed = ONLY_SEED ?? N * 1000 + s
          if (ONLY_SEED !== null && s > 0) break
          recoveries++
          const where = `op ${k + 1} '${op.name}', write ${n}/${writes} (crash point N=${N}), seed ${seed}`
          try {
            const crashed = dev.afterPowerLoss(seed)
            // A read-only open sees a committed state without replaying or writing.
            const ro = snapshotImage(crashed, true)
            // Reopen for writing: replay the journal, reap orphans, close.
            const rdev = new MemDevice(crashed)
            const vol = Volume.openDevice(rdev, {write: true})
            vol.close()
            if (rdev.unsynced !== 0) throw new Error('recovery left writes unsynced')
            const rec = Buffer.from(rdev.durable)
            const got = snapshotImage(rec)
            const isBefore = deepEq(got, prev)
            const isAfter = deepEq(got, nextState)
            if (!isBefore && !isAfter) {
              failures.push(`${where}: recovered tree is neither the state before nor after\n${diff(got, prev, nextState)}`)
              continue
            }
            if (committed && !isAfter) {
              failures.push(`${where}: a committed transaction was lost (recovered the state before)`)
              continue
            }
            if (isAfter) afterCount++
            else beforeCount++
            const roWant = isAfter ? nextLoose : prevLoose
            if (!deepEq(ro.tree, roWant.tree)) failures.push(`${where}: the read-only view before replay differs from the recovered tree`)
            const probs = [...structuralProblems(rec), ...fsckProblems(rec)]
            if (probs.length) failures.push(`${where}: ${probs.slice(0, 8).join('; ')}`)
          } catch (e) {
            failures.push(`${where}: ${(e as Error).stack}`)
          }
        }
        if (failures.length > 30) break
      }
      if (failures.length > 30) break
      totalWrites += writes
      img = next
      prev = nextState
      prevLoose = nextLoose
    }

    const secs = ((Date.now() - t0) / 1000).toFixed(1)
    console.log(`      crash test: ${points} crash points of ${totalWrites} writes over ${ops.length} commands (${ROUNDS} rounds), ` +
      `${SEEDS} seed(s) each, ${recoveries} recoveries (${beforeCount} to the state before, ${afterCount} after), ` +
      `${ops.length + 1} states, stride ${STRIDE}, ${secs} s` + (multi.length ? `; multi-transaction: ${multi.join(', ')}` : ''))
    if (failures.length) expect.fail(`${failures.length} failure(s):\n${failures.slice(0, 10).join('\n')}`)
    if (ONLY === null) {
      expect(totalWrites).to.be.at.least(500)
      expect(points).to.be.at.least(STRIDE === 1 ? 500 : 1)
    }
  })
})

// ---------------------------------------------------------------- focused tests

/** A MemDevice that remembers every write (block and content), for choosing crash points. */
function recording(img: Buffer): {dev: MemDevice, writes: Array<{block: number, data: Buffer}>} {
  const dev = new MemDevice(img)
  const writes: Array<{block: number, data: Buffer}> = []
  const write = dev.write.bind(dev)
  dev.write = (block: number, buf: Buffer) => {
    writes.push({block, data: Buffer.from(buf)})
    write(block, buf)
  }
  return {dev, writes}
}

/** Recovers a crashed image as the next command would: open for writing, close. */
function recover(img: Buffer): {img: Buffer, replayed: number} {
  const dev = new MemDevice(img)
  const vol = Volume.openDevice(dev, {write: true})
  const replayed = vol.replayed
  vol.close()
  expect(dev.unsynced, 'recovery left writes unsynced').to.equal(0)
  return {img: Buffer.from(dev.durable), replayed}
}

function expectClean(img: Buffer, what: string): void {
  expect([...structuralProblems(img), ...fsckProblems(img)], what).to.deep.equal([])
}

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
    expect(treeOf(namespace(vol, 'root'))).to.deep.equal(afterState.tree)
    vol.close()
    expect(view.writes).to.equal(0)
    // Also on a device that could write: opening without write access must not write.
    const rw = new MemDevice(img)
    const v2 = Volume.openDevice(rw, {write: false})
    expect(treeOf(namespace(v2, 'root'))).to.deep.equal(afterState.tree)
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
    const dev = new MemDevice(base)
    runCommand(dev, {name: 'mkdir /d with many names', run: (ns) => {
      ns.mkdir('/d')
      for (let i = 0; i < 60; i++) ns.writeFile(`/d/name-${String(i).padStart(3, '0')}`, bytes(50, i))
    }}, 0)
    const start = Buffer.from(dev.durable)
    const dirBlocks = (() => {
      const vol = Volume.openDevice(new ImageView(start), {write: false})
      const d = namespace(vol, 'root').resolve('/d')
      const blocks = loadExtents(vol, d).flatMap((e) => Array.from({length: e.n}, (_, i) => e.p + i))
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
    const fBlocks = loadExtents(vol, ns.resolve('/f')).flatMap((e) => Array.from({length: e.n}, (_, i) => e.p + i))
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

function deepEq(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

function diff(got: Snapshot, before: Snapshot, after: Snapshot): string {
  const lines: string[] = []
  const show = (label: string, want: Snapshot) => {
    const g = new Set(got.tree)
    const w = new Set(want.tree)
    const extra = got.tree.filter((x) => !w.has(x)).slice(0, 6)
    const missing = want.tree.filter((x) => !g.has(x)).slice(0, 6)
    lines.push(`  vs ${label}: free blocks ${got.freeBlocks}/${want.freeBlocks}, free inodes ${got.freeInodes}/${want.freeInodes}`)
    for (const x of extra) lines.push(`    + ${x}`)
    for (const x of missing) lines.push(`    - ${x}`)
  }
  show('before', before)
  show('after', after)
  return lines.join('\n')
}
