// The machinery of the crash-consistency tests (crash.test.ts, crash-clone.test.ts), in the
// manner of littlefs's "reentrant" tests: a workload of commands is run over an in-memory
// device that loses power at its Nth write, for every N. Each crashed image (what was synced,
// plus every unsynced write kept, dropped or torn at 512-byte sectors, chosen by a seed) is
// reopened: the journal is replayed, orphans are reaped, fsck must find nothing, nothing may
// leak, and every fileset (names, parents, whole trees) and the free counts must be exactly
// the state before or after the interrupted command.
//
// Environment (read by both tests):
//   PRISM_CRASH_STRIDE=n   test every nth crash point (default 1: all of them)
//   PRISM_CRASH_SEEDS=n    power-loss seeds per crash point (default 2)
//   PRISM_CRASH_FULL=1     longer run: more workload rounds, every point, 6 seeds
//   PRISM_CRASH_ONLY=N     only crash point N of the test file's numbering (to replay a failure);
//                          with PRISM_CRASH_SEED=s only that seed
//   PRISM_CRASH_DEBUG=1    print each command's writes, transactions and free counts
//   PRISM_CRASH_FSCK_CRASHED=0  skip the fsck of each crashed image before its recovery
import {expect} from 'chai'
import {createHash} from 'node:crypto'
import type {BlockDevice} from '../src/device/device.js'
import {MemDevice, mulberry32} from '../src/device/mem.js'
import {PrismError} from '../src/errors.js'
import {BLOCK_SIZE, REFCOUNTS_PER_BLOCK, STATE_CLEAN, STATE_DIRTY} from '../src/format/constants.js'
import {COMMIT_MAGIC} from '../src/format/journal.js'
import {refcountBlockOk, refcountBlockOkSparse} from '../src/format/refcount.js'
import {INCOMPAT_SPARSE_REFCOUNT, planGeometry} from '../src/format/superblock.js'
import {dirList} from '../src/fs/dir.js'
import {loadExtents, readData} from '../src/fs/extents.js'
import type {Inode} from '../src/fs/inode.js'
import {listXattrs} from '../src/fs/xattr.js'
import {listFilesets} from '../src/fs/filesets.js'
import {createEmptyFileset, namespace} from '../src/fs/image.js'
import {Namespace} from '../src/fs/namespace.js'
import {Volume} from '../src/fs/volume.js'
import {setImageLocality} from '../src/fs/locality.js'
import {fsckDevice} from '../src/fsck/index.js'

// ---------------------------------------------------------------- configuration

export const FULL = process.env.PRISM_CRASH_FULL === '1'
export const STRIDE = Math.max(1, Number(process.env.PRISM_CRASH_STRIDE ?? 1) || 1)
export const SEEDS = Math.max(1, Number(process.env.PRISM_CRASH_SEEDS ?? (FULL ? 6 : 2)) || 1)
export const ONLY = process.env.PRISM_CRASH_ONLY ? Number(process.env.PRISM_CRASH_ONLY) : null
export const ONLY_SEED = process.env.PRISM_CRASH_SEED ? Number(process.env.PRISM_CRASH_SEED) : null
export const DEBUG = !!process.env.PRISM_CRASH_DEBUG
/** Also fsck each crashed image before recovery (PRISM_CRASH_FSCK_CRASHED=0 skips it). */
export const FSCK_CRASHED = process.env.PRISM_CRASH_FSCK_CRASHED !== '0'

export const IMAGE_BLOCKS = 640 // 2.5 MiB
/** A small journal, so that transactions wrap it and force checkpoints inside commands. */
export const JOURNAL_BLOCKS = 32

// ---------------------------------------------------------------- images and snapshots

/**
 * A formatted image holding the empty fileset root, everything synced. Its locality policy
 * has the smallest regions (64 KiB), so that writes into shared files rewrite regions often.
 */
export function baseImage(): Buffer {
  const dev = new MemDevice(Buffer.alloc(IMAGE_BLOCKS * BLOCK_SIZE))
  const sb = planGeometry({blockCount: IMAGE_BLOCKS, journalBlocks: JOURNAL_BLOCKS, inodeCount: 768, filesetSlots: 16})
  const vol = Volume.format(dev, sb, (v) => {
    createEmptyFileset(v, 'root')
    setImageLocality(v, 16)
  })
  vol.close()
  expect(dev.unsynced).to.equal(0)
  return Buffer.from(dev.durable)
}

/** A read-only device over an image buffer, without copying it; counts attempted writes. */
export class ImageView implements BlockDevice {
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

export interface Snapshot {
  /** every fileset: name, id, parent, state, mode (and root inode unless loose) */
  filesets: string[]
  /** every path of every fileset, prefixed with the fileset's name */
  tree: string[]
  freeBlocks: number
  freeInodes: number
}

export function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex').slice(0, 24)
}

/**
 * Every path of a fileset (its root first) with its type, inode, mode, owner, link and share
 * counts, size, content hash and symlink target. `loose` leaves out what an unreaped orphan
 * can still change (link and share counts of files also linked from a detached tree) and
 * inode numbers.
 */
export function treeOf(ns: Namespace, loose = false): string[] {
  const out: string[] = []
  const line = (p: string, inode: Inode) => {
    const st = ns.statInode(inode)
    // Extended attributes (values hashed) and a device's number belong to the state too.
    const xs = listXattrs(ns.vol, inode).map((x) => `${x.name.toString('latin1')}=${sha(x.value)}`)
    const extra = (xs.length ? ` x={${xs.join(',')}}` : '') + (st.rdev && (st.type === 'chardev' || st.type === 'blockdev') ? ` rdev=${st.rdev.major}:${st.rdev.minor}` : '')
    const head = (loose ? `${p} ${st.type} ${st.mode.toString(8)}` : `${p} ${st.type} ino=${st.ino} ${st.mode.toString(8)} ${st.uid}:${st.gid} nlink=${st.nlink} share=${st.share}`) + extra
    if (st.type === 'dir') out.push(`${head} entries=${st.entries}`)
    else if (st.type === 'symlink') out.push(`${head} -> ${st.target}`)
    else out.push(`${head} size=${st.size} sha=${sha(readData(ns.vol, inode, 0, st.size))}`)
  }
  const walk = (dir: Inode, at: string) => {
    for (const e of ns.readdirInode(dir)) {
      const p = at + '/' + e.name
      const inode = ns.vol.iget(e.ino)
      line(p, inode)
      if (inode.isDir) walk(inode, p)
    }
  }
  const root = ns.root()
  line(`${ns.fs.name}:/`, root)
  walk(root, `${ns.fs.name}:`)
  return out
}

/** Every fileset and its whole tree, as the volume sees them. */
export function describeVolume(vol: Volume, loose = false): {filesets: string[], tree: string[]} {
  const all = listFilesets(vol)
  const name = (id: number) => id === 0 ? '-' : all.find((f) => f.id === id)?.name ?? `#${id}`
  const filesets = all.map((f) => `${f.name} id=${f.id} parent=${name(f.parentId)} state=${f.state} mode=${f.mode}` + (loose ? '' : ` root=${f.rootIno}`))
  const tree = all.flatMap((f) => treeOf(new Namespace(vol, f), loose))
  return {filesets, tree}
}

/** Opens the image read-only (no replay, no writes) and describes every fileset. */
export function snapshotImage(img: Buffer, loose = false): Snapshot {
  const dev = new ImageView(img)
  const vol = Volume.openDevice(dev, {write: false})
  try {
    return {...describeVolume(vol, loose), freeBlocks: vol.sb.freeBlocks, freeInodes: vol.sb.freeInodes}
  } finally {
    vol.close()
    if (dev.writes !== 0) throw new Error('a read-only open wrote to the device')
  }
}

// ---------------------------------------------------------------- structural check

/**
 * A cheap independent check of a closed image: valid state, empty journal and orphan list,
 * refcount table checksums, free counters equal to the tables, every used inode reachable,
 * every directory in exactly one place, link counts right (a file has, in every fileset that
 * reaches it, as many names as its link count), every share count equal to the number of
 * filesets that reach the inode, and every block counter equal to the number of inodes that
 * map it. That is what "nothing leaks" means. Returns the problems found.
 */
export function structuralProblems(img: Buffer): string[] {
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
      if (!(sb.incompat & INCOMPAT_SPARSE_REFCOUNT ? refcountBlockOkSparse(buf) : refcountBlockOk(buf))) problems.push(`refcount block ${i} checksum mismatch`)
      const limit = Math.min(REFCOUNTS_PER_BLOCK, sb.dataBlocks - i * REFCOUNTS_PER_BLOCK)
      counts.set(buf.subarray(0, limit), i * REFCOUNTS_PER_BLOCK)
    }
    const zeros = counts.reduce((n, c) => n + (c === 0 ? 1 : 0), 0)
    if (zeros !== sb.freeBlocks) problems.push(`superblock says ${sb.freeBlocks} free blocks, the refcount table ${zeros}`)
    const used = new Set<number>()
    for (let ino = 1; ino <= sb.inodeCount; ino++) if (vol.inodeSlotUsed(ino)) used.add(ino)
    if (sb.inodeCount - used.size !== sb.freeInodes) problems.push(`superblock says ${sb.freeInodes} free inodes, the table ${sb.inodeCount - used.size}`)

    const expected = new Uint32Array(sb.dataBlocks)
    /** inode -> filesets that reach it */
    const reachedBy = new Map<number, number>()
    const subdirs = new Map<number, number>()
    const dirs = new Set<number>()
    const accounted = new Set<number>()
    const account = (ino: number) => {
      if (accounted.has(ino)) return
      accounted.add(ino)
      const inode = vol.iget(ino)
      for (const e of loadExtents(vol, inode)) for (let b = e.p; b < e.p + e.n; b++) expected[b - sb.dataStart]++
      for (const b of inode.treeBlocks) expected[b - sb.dataStart]++
    }
    const enterDir = (ino: number, where: string): boolean => {
      if (dirs.has(ino)) {
        problems.push(`directory ${ino} has two names (again at ${where})`)
        return false
      }
      dirs.add(ino)
      reachedBy.set(ino, 1)
      account(ino)
      return true
    }
    // The fileset table file (FORMAT.md §8.7) is named by the superblock, not by a directory.
    if (sb.filesetExtIno) {
      reachedBy.set(sb.filesetExtIno, 1)
      account(sb.filesetExtIno)
      if (vol.iget(sb.filesetExtIno).r.nlink !== 1) problems.push(`fileset table file ${sb.filesetExtIno} nlink ${vol.iget(sb.filesetExtIno).r.nlink}`)
    }
    for (const f of listFilesets(vol)) {
      /** names of each file in this fileset */
      const names = new Map<number, number>()
      const walk = (dirIno: number) => {
        for (const e of dirList(vol, vol.iget(dirIno))) {
          const child = vol.iget(e.ino)
          if (child.isDir) {
            subdirs.set(dirIno, (subdirs.get(dirIno) ?? 0) + 1)
            if (enterDir(e.ino, `${f.name}: entry ${e.name.toString()} of ${dirIno}`)) walk(e.ino)
            continue
          }
          names.set(e.ino, (names.get(e.ino) ?? 0) + 1)
          account(e.ino)
        }
      }
      if (enterDir(f.rootIno, `root of fileset ${f.name}`)) walk(f.rootIno)
      for (const [ino, n] of names) {
        reachedBy.set(ino, (reachedBy.get(ino) ?? 0) + 1)
        const nlink = vol.iget(ino).r.nlink
        if (nlink !== n) problems.push(`inode ${ino} nlink ${nlink}, but ${n} name(s) in fileset ${f.name}`)
      }
    }
    // Attribute inodes (docs/FORMAT.md §13) are reached through the xattr_ino of the inodes
    // that name them, and their share count is how many do.
    const attrRefs = new Map<number, number>()
    for (const ino of reachedBy.keys()) {
      const x = vol.iget(ino).r.xattrIno
      if (x) attrRefs.set(x, (attrRefs.get(x) ?? 0) + 1)
    }
    for (const [x, n] of attrRefs) {
      reachedBy.set(x, n)
      account(x)
    }
    for (const ino of used) if (!reachedBy.has(ino)) problems.push(`inode ${ino} is in use but unreachable`)
    for (const [ino, n] of reachedBy) {
      if (!used.has(ino)) {
        problems.push(`inode ${ino} is reachable but free`)
        continue
      }
      const inode = vol.iget(ino)
      if (inode.r.share !== n) problems.push(`inode ${ino} share ${inode.r.share}, reached by ${n} fileset(s)`)
      if (inode.isDir) {
        const want = 2 + (subdirs.get(ino) ?? 0)
        if (inode.r.nlink !== want) problems.push(`directory ${ino} nlink ${inode.r.nlink}, expected ${want}`)
      }
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

export function fsckProblems(img: Buffer): string[] {
  const dev = new ImageView(img)
  const r = fsckDevice(dev, {repair: false})
  const out = r.problems.map((p) => `fsck ${p.code} ${p.where}: ${p.message}`)
  if (r.exitCode !== 0) out.push(`fsck exit code ${r.exitCode}${r.notes.length ? ` (${r.notes.join('; ')})` : ''}`)
  if (dev.writes !== 0) out.push('fsck without repair wrote to the device')
  return out
}

// ---------------------------------------------------------------- commands

export interface Op {
  name: string
  run: (ns: Namespace, vol: Volume) => void
  /**
   * Which durable commit record makes the command's change durable. 'first' (the default):
   * the first one, later transactions only finish it (reaping what it orphaned). 'last': the
   * command builds out of sight and shows its result in its last transaction (clone), so a
   * crash before that commit must recover the state before, whatever was committed already.
   */
  visibleAt?: 'first' | 'last' | 'marked'
}

/**
 * For visibleAt 'marked': the command records here how many of its transactions were
 * committed when its change became visible (an import, whose later transactions only free
 * what it replaced).
 */
export const visibility = {mark: 0}

/** Deterministic file content. */
export function bytes(n: number, seed: number): Buffer {
  const rnd = mulberry32(seed)
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = 32 + Math.floor(rnd() * 95)
  return b
}

/** Runs one op as a command: open (replay), change, close (commit + checkpoint). */
export function runCommand(dev: MemDevice, op: Op, k: number, out: {vol?: Volume, commitsInRun?: number} = {}): void {
  // Directory hash seeds come from Math.random: make them deterministic so that the dry
  // run and every crash run of an op write the same blocks in the same order.
  const random = Math.random
  Math.random = mulberry32(0x5eed + k)
  try {
    const vol = Volume.openDevice(dev, {write: true})
    out.vol = vol
    const before = vol.journal.committedSeqs.length
    op.run(namespace(vol, 'root'), vol)
    out.commitsInRun = vol.journal.committedSeqs.length - before
    vol.close()
  } finally {
    Math.random = random
  }
}

/** Runs `fn`, which must be stopped by the simulated power loss (possibly wrapped by a layer). */
export function expectCrash(dev: MemDevice, fn: () => void): void {
  try {
    fn()
  } catch (e) {
    if (dev.crashed) return
    throw e
  }
  throw new Error('the operation finished before the crash point')
}

/** A MemDevice that remembers every write (block and content), for choosing crash points. */
export function recording(img: Buffer): {dev: MemDevice, writes: Array<{block: number, data: Buffer}>} {
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
export function recover(img: Buffer): {img: Buffer, replayed: number} {
  const dev = new MemDevice(img)
  const vol = Volume.openDevice(dev, {write: true})
  const replayed = vol.replayed
  vol.close()
  expect(dev.unsynced, 'recovery left writes unsynced').to.equal(0)
  return {img: Buffer.from(dev.durable), replayed}
}

export function expectClean(img: Buffer, what: string): void {
  expect([...structuralProblems(img), ...fsckProblems(img)], what).to.deep.equal([])
}

export function deepEq(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

export function diff(got: Snapshot, before: Snapshot, after: Snapshot): string {
  const lines: string[] = []
  const show = (label: string, want: Snapshot) => {
    lines.push(`  vs ${label}: free blocks ${got.freeBlocks}/${want.freeBlocks}, free inodes ${got.freeInodes}/${want.freeInodes}`)
    for (const key of ['filesets', 'tree'] as const) {
      const g = new Set(got[key])
      const w = new Set(want[key])
      for (const x of got[key].filter((x) => !w.has(x)).slice(0, 6)) lines.push(`    + ${x}`)
      for (const x of want[key].filter((x) => !g.has(x)).slice(0, 6)) lines.push(`    - ${x}`)
    }
  }
  show('before', before)
  show('after', after)
  return lines.join('\n')
}

// ---------------------------------------------------------------- the crash loop

/** Where an image's journal lies. */
export function journalOf(img: Buffer): {start: number, blocks: number} {
  const vol = Volume.openDevice(new ImageView(img), {write: false})
  const g = {start: vol.sb.journalStart, blocks: vol.sb.journalBlocks}
  vol.close()
  return g
}

export interface DryRun {
  /** the image after the command */
  next: Buffer
  writes: number
  /** 1-based indices of the writes of the command's commit records */
  commitWrites: number[]
  /** transactions committed, close() included */
  commits: number
  /** of which before close() */
  commitsInRun: number
  /** the journal filled up and was checkpointed inside the command */
  wrapped: boolean
  /** visibleAt 'marked': the commits that make the change visible */
  marked: number
}

/**
 * Every other command runs on a device with write-behind (file data written later, as
 * FileDevice's O_DIRECT thread does), the others on one that writes at once.
 */
export function behindLag(k: number): number {
  return k % 2 === 1 ? 2 : 0
}

/** Runs a command without a crash, noting its writes and where its commit records go. */
export function dryRun(img: Buffer, op: Op, k: number, journal = journalOf(img)): DryRun {
  const dev = new MemDevice(img)
  dev.behindLag = behindLag(k)
  // Writes of the journal superblock: more than the one of close() means the journal
  // filled up and was checkpointed inside the command.
  let superWrites = 0
  const commitWrites: number[] = []
  const write = dev.write.bind(dev)
  dev.write = (b: number, buf: Buffer) => {
    if (b === journal.start) superWrites++
    if (b > journal.start && b < journal.start + journal.blocks && buf.length === BLOCK_SIZE && buf.readUInt32LE(0) === COMMIT_MAGIC) commitWrites.push(dev.counts.write + 1)
    write(b, buf)
  }
  const out: {vol?: Volume, commitsInRun?: number} = {}
  visibility.mark = 0
  runCommand(dev, op, k, out)
  expect(dev.unsynced, `${op.name}: writes left unsynced after close()`).to.equal(0)
  return {
    next: Buffer.from(dev.durable), writes: dev.counts.write, commitWrites, commits: out.vol!.journal.committedSeqs.length,
    commitsInRun: out.commitsInRun ?? 0, wrapped: superWrites > 1, marked: visibility.mark,
  }
}

export interface OpReport {
  name: string
  writes: number
  /** transactions committed by the command, close() included */
  commits: number
  /** of which committed while the command ran (maybeCommit, reaping), before close() */
  commitsInRun: number
  /** the journal filled up and was checkpointed inside the command */
  wrapped: boolean
  /** recoveries whose crash came after a durable commit of the command, yet recovered the state before */
  beforeDespiteCommit: number
}

export interface CrashResult {
  ops: OpReport[]
  failures: string[]
  points: number
  recoveries: number
  totalWrites: number
  before: number
  after: number
  /** the image after the last command */
  final: Buffer
}

/**
 * Runs `ops` one after the other from `start`, each as a command (open, change, close). For
 * each, a dry run gives the state after it and its number of writes; then every write is a
 * crash point (subject to STRIDE and ONLY), recovered with SEEDS power-loss seeds: the
 * recovered image must show exactly the state before or after the command (the after state
 * once its deciding commit record was durable, see Op.visibleAt), must be clean for fsck and
 * the structural check, and a read-only open before replay must see the same trees.
 */
export function crashWorkload(start: Buffer, ops: Op[], pointBase = 0): CrashResult {
  const res: CrashResult = {ops: [], failures: [], points: 0, recoveries: 0, totalWrites: 0, before: 0, after: 0, final: start}
  const failures = res.failures
  let img = start
  let prev = snapshotImage(img)
  let prevLoose = snapshotImage(img, true)
  const journal = journalOf(start)

  for (let k = 0; k < ops.length; k++) {
    const op = ops[k]
    // Dry run of the command: the state after it, and how many writes it makes.
    const dry = dryRun(img, op, pointBase + k, journal)
    const {next, writes, commits, commitWrites} = dry
    const nextState = snapshotImage(next)
    const nextLoose = snapshotImage(next, true)
    const dryProblems = [...structuralProblems(next), ...fsckProblems(next)]
    if (dryProblems.length) failures.push(`op ${k + 1} '${op.name}' without a crash: ${dryProblems.slice(0, 8).join('; ')}`)
    if (deepEq(nextState, prev)) failures.push(`op ${k + 1} '${op.name}' changed nothing`)
    if (commitWrites.length !== commits) failures.push(`op ${k + 1} '${op.name}': ${commits} commits, but ${commitWrites.length} commit record writes seen`)
    const report: OpReport = {name: op.name, writes, commits, commitsInRun: dry.commitsInRun, wrapped: dry.wrapped, beforeDespiteCommit: 0}
    res.ops.push(report)
    if (DEBUG) console.log(`${k + 1} ${op.name}: ${writes} writes, ${commits} txns (${report.commitsInRun} before close), ${nextState.freeBlocks} free blocks, ${nextState.freeInodes} free inodes`)

    for (let n = 1; n <= writes; n++) {
      const N = res.totalWrites + n
      if (ONLY !== null ? N !== ONLY : N % STRIDE !== 0) continue
      res.points++
      const dev = new MemDevice(img)
      dev.behindLag = behindLag(pointBase + k)
      dev.crashAtWrite = n
      const cout: {vol?: Volume} = {}
      expectCrash(dev, () => runCommand(dev, op, pointBase + k, cout))
      // Commit records of this command that were synced before the power went, and those
      // that may have reached the disk (the interrupted write may be one, and land whole).
      const durable = cout.vol?.journal.committedSeqs.length ?? 0
      const written = commitWrites.filter((w) => w <= n).length
      if (durable !== commitWrites.filter((w) => w < n).length) failures.push(`op ${k + 1} '${op.name}', write ${n}: ${durable} commits durable, expected ${commitWrites.filter((w) => w < n).length}`)
      const needed = op.visibleAt === 'marked' ? dry.marked : commits
      if (op.visibleAt === 'marked' && n === 1 && dry.marked === 0) failures.push(`op ${k + 1} '${op.name}': marked no visible commit`)
      const mustBeAfter = op.visibleAt === 'last' || op.visibleAt === 'marked' ? durable >= needed : durable > 0
      const mustBeBefore = (op.visibleAt === 'last' || op.visibleAt === 'marked') && written < needed
      for (let s = 0; s < SEEDS; s++) {
        const seed = ONLY_SEED ?? N * 1000 + s
        if (ONLY_SEED !== null && s > 0) break
        res.recoveries++
        const where = `op ${k + 1} '${op.name}', write ${n}/${writes} (crash point N=${N}, ${durable}/${commits} commits durable), seed ${seed}`
        try {
          const crashed = dev.afterPowerLoss(seed)
          // A read-only open sees a committed state without replaying or writing.
          const ro = snapshotImage(crashed, true)
          // The crashed image itself is consistent: fsck (reading the journal in memory,
          // following the orphan list) finds nothing to repair before any recovery.
          if (FSCK_CRASHED) {
            const early = fsckProblems(crashed)
            if (early.length) failures.push(`${where}: before recovery: ${early.slice(0, 8).join('; ')}`)
          }
          // Reopen for writing: replay the journal, reap orphans, close.
          const rec = recover(crashed).img
          const got = snapshotImage(rec)
          const isBefore = deepEq(got, prev)
          const isAfter = deepEq(got, nextState)
          if (!isBefore && !isAfter) {
            failures.push(`${where}: recovered state is neither the state before nor after\n${diff(got, prev, nextState)}`)
            continue
          }
          if (mustBeAfter && !isAfter) {
            failures.push(`${where}: a committed change was lost (recovered the state before)`)
            continue
          }
          if (mustBeBefore && !isBefore) {
            failures.push(`${where}: the change is visible before its last transaction committed`)
            continue
          }
          if (isAfter) res.after++
          else res.before++
          if (isBefore && durable > 0) report.beforeDespiteCommit++
          const roWant = isAfter ? nextLoose : prevLoose
          if (!deepEq(ro.filesets, roWant.filesets) || !deepEq(ro.tree, roWant.tree)) failures.push(`${where}: the read-only view before replay differs from the recovered state`)
          const probs = [...structuralProblems(rec), ...fsckProblems(rec)]
          if (probs.length) failures.push(`${where}: ${probs.slice(0, 8).join('; ')}`)
        } catch (e) {
          failures.push(`${where}: ${(e as Error).stack}`)
        }
      }
      if (failures.length > 30) break
    }
    if (failures.length > 30) break
    res.totalWrites += writes
    img = next
    prev = nextState
    prevLoose = nextLoose
  }
  res.final = img
  return res
}

/** The multi-transaction commands of a run, for the summary line. */
export function multiSummary(res: CrashResult): string {
  const multi = res.ops.filter((o) => o.commits > 1).map((o) => `${o.name} (${o.commits} transactions${o.wrapped ? ', journal wrapped' : ''})`)
  return multi.length ? `; multi-transaction: ${multi.join(', ')}` : ''
}
