// The image a server holds: one writable Volume (opened with the exclusive lock for the
// server's whole life), the mounts that show it (src/server/adapter.ts), when to commit, the
// files unlinked while still open, the expansion of asynchronous clones in slices, the
// kernel caches of every mount kept coherent with changes made elsewhere, lending the image to
// a command, and snapshots for read-only commands (the pre-image of every block overwritten
// while one is held goes to its log first: src/device/snapshot.ts).
//
// Transactions, as ext4's data=ordered: the requests of every mount add to one running
// transaction; fsync, fdatasync and fsyncdir commit it before they are answered; a timer
// commits at least every `commit=` seconds; a transaction past its size limit commits at
// once; unmounting commits, and the last unmount checkpoints and marks the image clean. File
// data reaches the image before the commit that makes it reachable (src/journal/store.ts),
// so a kill -9 at any moment leaves an image that replays to the last commit, with every
// fsync'd write in it.
//
// It must never: touch a mount it serves (that deadlocks); send a cache notification from the
// loop thread or wait for one inside a request's handler (src/fuse/index.ts's rules); drop a
// transaction holding what a request was told was done; or let another process write the
// image (a lend, closing it) while a snapshot of it is read.
import {pushAll} from '../arrays.js'
import fs from 'node:fs'
import {FS_EXPANDING, IF_ORPHAN, MODE_ASYNC} from '../format/constants.js'
import {PrismError, isArgumentError} from '../errors.js'
import {clone, settleSyncClone, type CloneResult} from '../clone/clone.js'
import {Expander, finishExpanded, mayFinishExpanded, tallyExpansion, type ExpandTally} from '../fs/expand.js'
import {filesetById, findFileset, getFileset, listFilesets} from '../fs/filesets.js'
import {checkDeletable, deleteFileset, namespace} from '../fs/image.js'
import {clonesInFlight} from '../fs/expand.js'
import {reapOrphans, reapSteps} from '../fs/namespace.js'
import {type MountedDir, type OpenOptions, Volume, type VolumeObserver} from '../fs/volume.js'
import type {ImageId} from './paths.js'
import {PreimageLog} from '../device/snapshot.js'
import {type FuseSession, type MountOptions, mount as fuseMount, requestsWaiting} from '../fuse/index.js'
import {type AdapterOptions, PrismFs} from './adapter.js'
import {LockTable} from './locks.js'

export interface MountSpec {
  /** FILESET[:/path], or null for the whole image */
  top: {fileset: string, path: string} | null
  mountpoint: string
  readOnly?: boolean
  suid?: boolean
  dev?: boolean
  allowOther?: boolean
}

export interface Mount {
  readonly spec: MountSpec
  readonly fs: PrismFs
  readonly session: FuseSession
  /** the mount point as /proc/self/mountinfo shows it */
  readonly mountpoint: string
  /**
   * For a `FILESET:/path` mount, the directory it shows and those above it (Volume.mountedDirs):
   * their inode numbers stay while mounted, since none of them can be moved or removed.
   */
  readonly shows: MountedDir | null
}

export interface ImageOptions {
  /** seconds between commits when nothing asks for one (commit=); default 5 */
  commitSeconds?: number
  /** seconds the kernel keeps attributes and entries; default 60 (changes made elsewhere are invalidated) */
  cacheSeconds?: number
  /** told about failures the server cannot answer to anyone (a commit that failed) */
  onError?: (msg: string) => void
  /** seconds to wait for the image lock; default 0 */
  wait?: number
  /** the libfuse binding to mount with (tests) */
  mountFn?: typeof fuseMount
}

/** What a borrower is told once the image is lent: orphans and shared inodes the mounts hold open. */
export interface Lent {
  held: number[]
  open: string[]
  /** the directories FILESET:/path mounts show, which the borrower must not move or remove */
  mounted: MountedDir[]
}

/** Where a borrower reported its copies (src/cli/served.ts), and the uid it ran as. */
export interface LendReport {
  path: string
  uid: number
}

/**
 * A clone a client waits for (src/server/server.ts: `prism expand`, and `prism clone --mode
 * sync`): expanded ahead of every other clone, in the same slices.
 */
export interface ExpandJob {
  readonly filesetId: number
  /** settled as a sync clone once expanded (settleSyncClone) */
  readonly sync: boolean
  /** the fileset's directories expanded when the job began */
  readonly startDone: number
  /** called after each slice while the job runs */
  onProgress: (() => void) | null
  /** settles once the fileset is an ordinary fileset and that is committed: the directories expanded since the job began */
  readonly done: Promise<number>
}

interface Job extends ExpandJob {
  resolve: (dirs: number) => void
  reject: (e: Error) => void
}

/** The server stopped before a job was done: its client finishes the work itself. */
export class ServerStopped extends Error {}

/** One slice of expansion between requests, in ms. */
const SLICE_MS = 8
/**
 * A slice ends, and its transaction commits, at this many blocks: a commit of 256 blocks took
 * 20-40 ms on the 2-core machine of bench/README.md ("Clone and expand on a mounted image"),
 * one of 2,048 (the background expander's SLICE_TXN_BLOCKS) 240-440 ms, which requests waited.
 */
const SLICE_BLOCKS = 256

/** One slice of a removal's freeing, in ms at most, and at least when a request waits (ServedImage.reapSliced). */
const REAP_SLICE_MS = 4
const REAP_MIN_SLICE_MS = 0.5
/** A removal's freeing commits between slices once its transaction holds this many blocks (as src/server/copyin.ts). */
const REAP_COMMIT_BLOCKS = 128

/** A command the server runs in slices: abort() stops it at its next slice; `done` settles when it has ended. */
export interface SlicedWork {
  abort(): void
  readonly done: Promise<void>
  /** clones are not expanded while it runs (a failed expansion slice aborts the running transaction, with its steps) */
  readonly pausesExpansion?: boolean
}

/** What a request gets once the server is stopping (or its image failed). */
export function shuttingDown(): PrismError {
  return new PrismError('EBUSY', 'the prism server of this image is shutting down')
}

/** Changes seen by the observer since they were last sent to the kernel. */
interface Pending {
  inodes: Set<number>
  entries: Map<number, Buffer[]>
  filesets: boolean
}

const emptyPending = (): Pending => ({inodes: new Set(), entries: new Map(), filesets: false})

export class ServedImage {
  vol: Volume
  readonly mounts: Mount[] = []
  /** the file locks of every mount of the image: one table, so that they exclude each other */
  readonly locks = new LockTable()
  private readonly holds = new Map<number, number>()
  private pending = emptyPending()
  /** the mount whose request is being answered (its own changes need no notification) */
  private origin: PrismFs | null = null
  private commitTimer: NodeJS.Timeout | null = null
  private expandTimer: NodeJS.Immediate | NodeJS.Timeout | null = null
  private readonly expanders = new Map<number, Expander>()
  /** clones clients wait for, first come first expanded */
  private readonly jobs: Job[] = []
  /** async clones whose background expansion failed: left alone until the image is lent and back */
  private readonly stalled = new Set<number>()
  /** set by every request that may have changed the image: the next slice commits that first */
  private requestsChanged = false
  private closed = false
  private lastCommit = Date.now()
  commitMs: number
  readonly cacheSeconds: number
  private readonly onError: (msg: string) => void
  /** set while changes must not be committed (a command running: src/server/server.ts) */
  holdCommits = false

  /**
   * The works running that another connection may interrupt (request 'interrupt', by the
   * token their own request gave). A work fed by a stream (a copy-in, an import, a clone's
   * replacements) stops reading its own connection while its stream is full, so that a line
   * or the end of the client's side would be read only after the stream had been taken: the
   * work would run to its end, and the command, told "interrupted", would leave it done.
   */
  private readonly interruptible = new Map<string, () => void>()

  /** Calls `f` when the token `token` (the work's request's `interrupt`) is interrupted; returns the undo. */
  whenInterrupted(token: unknown, f: () => void): () => void {
    if (typeof token !== 'string' || token.length < 16) return () => {}
    this.interruptible.set(token, f)
    return () => {
      if (this.interruptible.get(token) === f) this.interruptible.delete(token)
    }
  }

  /** Interrupts the work of token `token`: false when none runs (it ended, or never came). */
  interrupt(token: unknown): boolean {
    const f = typeof token === 'string' ? this.interruptible.get(token) : undefined
    f?.()
    return f !== undefined
  }
  private failed: Error | null = null

  constructor(readonly image: string, options: ImageOptions = {}) {
    this.commitMs = Math.max(0.1, options.commitSeconds ?? 5) * 1000
    this.cacheSeconds = options.cacheSeconds ?? 60
    this.onError = options.onError ?? ((m) => process.stderr.write(`prism: ${m}\n`))
    this.mountFn = options.mountFn ?? fuseMount
    // The image file, held open read-only for the server's whole life, lent or not: no other
    // file can be given its inode number meanwhile (the socket, the sidecar locks and the
    // clients' check are named after it, src/server/paths.ts), and the image is opened again
    // after a lend through it when its path has moved on (openVolume).
    this.pin = fs.openSync(image, fs.constants.O_RDONLY) // (libuv opens close-on-exec)
    try {
      const st = fs.fstatSync(this.pin)
      this.id = {dev: st.dev, ino: st.ino}
      this.vol = this.openVolume({write: true, wait: options.wait ?? 0})
    } catch (e) {
      fs.closeSync(this.pin)
      throw e
    }
    this.vol.orphanHeld = (ino) => (this.holds.get(ino) ?? 0) > 0
    this.vol.observer = this.observer()
    this.vol.openElsewhere = this.openInMounts
    this.vol.mountedDirs = this.mountedDirs
    this.commitTimer = setInterval(() => this.tick(), Math.min(this.commitMs, 1000))
    this.commitTimer.unref()
    this.scheduleExpansion()
  }

  private readonly mountFn: typeof fuseMount
  /** the image file, open read-only until close() (see the constructor) */
  private readonly pin: number
  /** the image file's device and inode numbers */
  readonly id: ImageId

  /**
   * Opens the image this server holds (`pin`): by its path while that still leads to it,
   * else, when the file was moved or removed meanwhile (a lend lasts as long as a command),
   * through the held descriptor, so that the mounts go on with their own image and never
   * with another file that took its name.
   */
  private openVolume(opts: OpenOptions): Volume {
    let same = false
    try {
      const st = fs.statSync(this.image)
      same = st.dev === this.id.dev && st.ino === this.id.ino
    } catch {
      // removed
    }
    if (same) {
      const vol = Volume.open(this.image, opts)
      if (vol.isImageFile(fs.fstatSync(this.pin, {bigint: true}))) return vol
      vol.closeAbort() // (replaced between the stat and the open: nothing more is written to it)
    }
    this.onError(`${this.image} is no longer the file this server holds (moved or removed): it goes on with the file it holds`)
    return Volume.open(`/proc/self/fd/${this.pin}`, opts)
  }

  private observer(): VolumeObserver {
    return {
      inodeChanged: (ino, atimeOnly) => {
        this.pending.inodes.add(ino)
        for (const w of this.watchers) w(ino, atimeOnly ?? false)
      },
      entryChanged: (dir, name) => {
        for (const w of this.watchers) w(dir, false)
        let list = this.pending.entries.get(dir)
        if (!list) this.pending.entries.set(dir, list = [])
        if (!list.some((n) => n.equals(name))) list.push(Buffer.from(name))
      },
      inodeCopied: (fileset, from, to) => {
        this.locks.repoint(`${fileset}:${from}`, `${fileset}:${to}`)
        for (const m of this.mounts) m.fs.repoint(fileset, from, to)
        // A request that fails after the copy leaves none (Volume.savepoint): back to the shared inode.
        this.vol.atRollback(() => {
          this.locks.repoint(`${fileset}:${to}`, `${fileset}:${from}`)
          for (const m of this.mounts) m.fs.repoint(fileset, to, from)
        })
      },
      filesetsChanged: () => {
        this.pending.filesets = true
      },
    }
  }

  /** A mount asked for commit=SECONDS: the image commits at least that often from now on. */
  setCommitSeconds(seconds: number): void {
    this.commitMs = Math.min(this.commitMs, Math.max(0.1, seconds) * 1000)
  }

  // ---------------------------------------------------------------- mounts

  async addMount(spec: MountSpec): Promise<Mount> {
    if (this.closed) throw shuttingDown()
    const opts: AdapterOptions = {
      top: spec.top, readOnly: Boolean(spec.readOnly), attrTimeout: this.cacheSeconds, entryTimeout: this.cacheSeconds,
      rootOwner: imageOwner(this.image),
    }
    const pfs = new PrismFs(this.adapterHost(), opts)
    const fsname = `prism:${this.image}` + (spec.top ? `:${spec.top.fileset}${spec.top.path === '/' ? '' : spec.top.path}` : '')
    const mo: MountOptions = {
      fsname: fsname.replace(/[,\\]/g, '_'), subtype: 'prism', readOnly: spec.readOnly, suid: spec.suid, dev: spec.dev,
      allowOther: spec.allowOther, posixAcl: true, dontMask: true, exportSupport: true, readdirplusAuto: false,
      onError: (op, e) => this.onError(`${spec.mountpoint}: ${op}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`),
    }
    const session = await this.mountFn(spec.mountpoint, pfs.ops, mo)
    const m: Mount = {spec, fs: pfs, session, mountpoint: session.mountpoint, shows: this.shownDir(spec, session.mountpoint)}
    this.mounts.push(m)
    session.closed.then(() => this.mountEnded(m), () => this.mountEnded(m))
    return m
  }

  /** The directory a `FILESET:/path` mount shows, with those above it; null for a whole fileset or image. */
  private shownDir(spec: MountSpec, at: string): MountedDir | null {
    if (!spec.top || spec.top.path.replace(/\/+$/, '') === '') return null
    try {
      const f = getFileset(this.vol, spec.top.fileset)
      const r = namespace(this.vol, spec.top.fileset).resolveFull(spec.top.path, true)
      return {fs: f.id, chain: [...r.chain.map((d) => d.ino), r.inode.ino], at}
    } catch {
      return null // (the mount itself says what is wrong with the path)
    }
  }

  /** What Volume.mountedDirs answers, in this process and in one the image is lent to. */
  private readonly mountedDirs = (): MountedDir[] => this.mounts.flatMap((m) => (m.shows ? [m.shows] : []))

  /** Called once a mount's session has ended (unmounted by anyone, or aborted). */
  onMountEnded: ((m: Mount) => void) | null = null

  private mountEnded(m: Mount): void {
    // Its locks go with it, at once (its kernel answered the waits still open, EIO).
    this.locks.dropMount(m.fs.mountId)
    if (this.lentUntil) {
      void this.lentUntil.then(() => this.mountEnded(m))
      return
    }
    const i = this.mounts.indexOf(m)
    if (i < 0) return
    this.mounts.splice(i, 1)
    // The kernel forgets everything of a mount that has gone: so does its node table.
    for (const n of m.fs.allNodes()) if ((n.nlookup > 0 || n.opens > 0) && n.fs !== 0 && !n.retired) this.hold(n.ino, -1)
    this.commitNow()
    this.onMountEnded?.(m)
  }

  /** Unmounts `m` and commits (fails with EBUSY while it is in use, unless lazy). */
  async unmount(m: Mount, lazy = false): Promise<void> {
    await m.session.unmount({lazy})
    this.mountEnded(m)
  }

  private adapterHost() {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this
    return {
      get vol() {
        return self.vol
      },
      changed: (from: PrismFs, answerWaits = true) => {
        this.requestsChanged = true
        this.changes++
        return this.afterRequest(from, answerWaits)
      },
      sync: () => this.commitNow(true),
      gate: () => this.lentUntil,
      frozen: (fs: number) => this.freezes.get(fs)?.thawed ?? null,
      hold: (ino: number, delta: number) => this.hold(ino, delta),
      locks: this.locks,
    }
  }

  // ---------------------------------------------------------------- lending the image

  /** Set while another process has the image: resolves when it is back and open here again. */
  private lentUntil: Promise<void> | null = null
  private lendChain: Promise<void> = Promise.resolve()

  /**
   * Lends the image to another process (a prism command run while the image is served,
   * src/cli/served.ts): commits, closes the volume clean (its lock goes), and holds every FUSE
   * request until `back` settles (the borrower's connection closed: it exited, whatever way);
   * then opens the image again (replaying what the borrower committed, or its crash), drops
   * everything the kernels cached, and answers the requests held meanwhile. Resolves with the
   * orphans the mounts hold open (the borrower must not free them) once the image is lent.
   * Lends go one at a time, in order.
   */
  lend(back: Promise<void>, report?: LendReport): Promise<Lent> {
    return new Promise((lent, refused) => {
      this.lendChain = this.lendChain.then(async () => {
        // Work running in slices holds the open volume, and a snapshot reads the image file
        // while this process writes it: the image can be lent (closed here, written by another
        // process) only once neither is left.
        while (this.work.size > 0 || this.snapshots > 0) {
          if (this.work.size > 0) await Promise.allSettled([...this.work].map((w) => w.done))
          else await this.snapshotsEnded
        }
        if (this.closed || this.failed) {
          refused(shuttingDown())
          return
        }
        let release!: () => void
        this.lentUntil = new Promise((r) => {
          release = r
        })
        let open: string[] = []
        // The command may set attributes the mounts' bindings answer for without asking.
        for (const m of this.mounts) m.session.forgetAnswers()
        try {
          this.commitNow()
          open = this.openFiles()
          this.vol.observer = null
          this.vol.orphanHeld = null
          this.vol.close()
        } catch (e) {
          this.lentUntil = null
          release()
          refused(e)
          return
        }
        lent({held: [...this.holds.keys()].filter((ino) => (this.holds.get(ino) ?? 0) > 0), open, mounted: this.mountedDirs()})
        await back
        try {
          // The borrower's copies are read first: an unnamed one waits for its node (the
          // open that reaps orphans must leave it).
          const copies = report ? this.readReport(report) : []
          const waiting = new Set(copies.map((c) => c.to))
          const tally = this.vol.expandTally
          this.vol = this.openVolume({write: true, wait: 60, orphanHeld: (ino) => (this.holds.get(ino) ?? 0) > 0 || waiting.has(ino)})
          this.vol.expandTally = tally // (what the borrower expanded of such a clone is not counted)
          this.vol.observer = this.observer()
          this.vol.openElsewhere = this.openInMounts
          this.vol.mountedDirs = this.mountedDirs
          this.stalled.clear()
          this.lastCommit = Date.now()
          this.followCopies(copies)
          this.vol.orphanHeld = (ino) => (this.holds.get(ino) ?? 0) > 0
        } catch (e) {
          this.failed = e as Error
          this.onError(`the image could not be opened again after a command: ${(e as Error).message}`)
          this.stopJobs(new ServerStopped('the image could not be opened again'))
        }
        this.lentUntil = null
        release()
        await this.invalidateAll()
        this.scheduleExpansion()
      })
    })
  }

  // ---------------------------------------------------------------- snapshots

  /** snapshots held (snapshot) */
  private snapshots = 0
  /** resolves when the number of snapshots held falls to 0 (then replaced) */
  private snapshotsEnded: Promise<void> = Promise.resolve()
  private snapshotsDone: () => void = () => {}

  /**
   * Takes a snapshot for a read-only command (src/cli/served.ts, src/device/snapshot.ts):
   * commits, and from then on logs into a new pre-image log at `log` every block about to be
   * overwritten, until `end` settles (the command's connection closed: it exited, whatever
   * way); the log is then removed. Resolves once the snapshot is taken. The mounts go on
   * being served meanwhile. Snapshots start in turn with lends (a lend asked for first is
   * over before a snapshot starts; one asked for later waits for every snapshot to end).
   */
  snapshot(log: string, end: Promise<void>): Promise<void> {
    return new Promise((taken, refused) => {
      this.lendChain = this.lendChain.then(() => {
        if (this.closed || this.failed) {
          refused(shuttingDown())
          return
        }
        let pl: PreimageLog
        let release: () => void
        try {
          pl = PreimageLog.create(log, (why) => this.onError(`a snapshot was lost: ${why}`))
        } catch (e) {
          refused(new PrismError('EIO', `cannot make the snapshot's pre-image log ${log}: ${(e as Error).message}`))
          return
        }
        try {
          this.commitNow()
          release = this.vol.preserve(pl)
        } catch (e) {
          pl.close()
          refused(e)
          return
        }
        if (this.snapshots++ === 0) {
          this.snapshotsEnded = new Promise((r) => {
            this.snapshotsDone = r
          })
        }
        taken()
        void end.then(() => {
          release()
          try {
            pl.close()
          } catch (e) {
            this.onError(`removing ${log}: ${(e as Error).message}`)
          }
          if (--this.snapshots === 0) this.snapshotsDone()
        })
      })
    })
  }

  /** Resolves once no snapshot is held (at once when none is). */
  async whenNoSnapshots(): Promise<void> {
    while (this.snapshots > 0) await this.snapshotsEnded
  }

  /**
   * The borrower's private copies of shared inodes (src/fs/volume.ts lendObserver): each node
   * of a mount that stood for the inode copied, in that fileset, now stands for the copy, as
   * when a mount's own write makes one. A copy the image does not hold (the borrower died
   * before its commit) is passed over. The report file must be a regular file of the
   * borrower's own user; it is removed once read.
   */
  private readReport(report: LendReport): Array<{fileset: number, from: number, to: number, generation: number}> {
    let text = ''
    try {
      const fd = fs.openSync(report.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
      try {
        const st = fs.fstatSync(fd)
        if (!st.isFile() || st.uid !== report.uid || st.size > 256 * 1024 * 1024) {
          this.onError(`ignored the report file ${report.path}: not a regular file of the command's user`)
          return []
        }
        text = fs.readFileSync(fd, 'latin1')
      } finally {
        fs.closeSync(fd)
      }
      fs.rmSync(report.path, {force: true})
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.onError(`reading the report file ${report.path}: ${(e as Error).message}`)
      return []
    }
    const out: Array<{fileset: number, from: number, to: number, generation: number}> = []
    for (const line of text.split('\n')) {
      const f = line.split(' ').map(Number)
      if (f.length !== 4 || !f.every((x) => Number.isSafeInteger(x) && x >= 0)) continue
      out.push({fileset: f[0], from: f[1], to: f[2], generation: f[3]})
    }
    return out
  }

  private followCopies(copies: Array<{fileset: number, from: number, to: number, generation: number}>): void {
    for (const c of copies) {
      if (this.vol.tryIget(c.to)?.r.generation !== c.generation) continue
      this.locks.repoint(`${c.fileset}:${c.from}`, `${c.fileset}:${c.to}`)
      for (const m of this.mounts) m.fs.repoint(c.fileset, c.from, c.to)
    }
  }

  /**
   * Whether a mount has inode `ino` of fileset `fs` open: work the server runs on its own
   * volume (a copy into the image) that removes the name of such a file while it is shared
   * leaves the open file a private copy (Namespace.dropName), as a borrower does.
   */
  private readonly openInMounts = (fs: number, ino: number): boolean => this.mounts.some((m) => m.fs.isOpen(fs, ino))

  /**
   * FILESET:INO of every file a mount has open: a borrower that removes the name of one while
   * it is shared (a clone may share it only once the borrower expands that clone) leaves the
   * open file a private copy.
   */
  private openFiles(): string[] {
    const out = new Set<string>()
    for (const m of this.mounts) {
      for (const n of m.fs.allNodes()) if (n.opens > 0 && n.fs !== 0 && !n.retired) out.add(`${n.fs}:${n.ino}`)
    }
    return [...out]
  }

  /** True once the server has closed the image (it is stopping). */
  get isClosed(): boolean {
    return this.closed
  }

  /** True while another process has the image. */
  get lent(): boolean {
    return this.lentUntil !== null
  }

  /** Resolves once no other process has the image (at once when none has). */
  async whenHeld(): Promise<void> {
    while (this.lentUntil) await this.lentUntil
  }

  /** Drops everything every mount's kernel caches (after another process changed the image). */
  private async invalidateAll(): Promise<void> {
    const waits: Promise<boolean>[] = []
    for (const m of this.mounts) {
      for (const n of m.fs.allNodes()) {
        waits.push(m.session.invalidateInode(n.id, 0, 0))
        if (n.parent) waits.push(m.session.invalidateEntry(n.parent.id, n.name))
      }
      if (m.spec.top === null) for (const name of m.fs.rootNamesChanged()) waits.push(m.session.invalidateEntry(1, name))
    }
    await Promise.allSettled(waits)
  }

  // ---------------------------------------------------------------- orphans held open

  hold(ino: number, delta: number): void {
    this.requestsChanged = true
    const n = (this.holds.get(ino) ?? 0) + delta
    if (n > 0) {
      this.holds.set(ino, n)
      return
    }
    this.holds.delete(ino)
    // The last hold on an unlinked file: its space comes back now.
    const i = this.vol.tryIget(ino)
    if (i && (i.r.flags & IF_ORPHAN) && !this.closed && !this.holdCommits) {
      // (inside a request's savepoint when a request lets go; else in its own: a reap that
      // fails part way leaves nothing of itself to be committed with the mounts' requests)
      const sp = this.vol.savepoint()
      try {
        reapOrphans(this.vol)
        sp?.release()
      } catch (e) {
        sp?.rollback()
        this.onError(`freeing unlinked inode ${ino}: ${(e as Error).message}`)
      }
    }
  }

  // ---------------------------------------------------------------- transactions

  private afterRequest(from: PrismFs, answerWaits: boolean): Promise<void> | undefined {
    if (this.vol.txnFull && !this.holdCommits) this.commitNow()
    const p = this.pending
    if (this.mounts.length <= 1 || (p.inodes.size === 0 && p.entries.size === 0 && !p.filesets)) {
      this.pending = emptyPending()
      return undefined
    }
    this.origin = from
    try {
      return this.notify(false, answerWaits)
    } finally {
      this.origin = null
    }
  }

  /**
   * Commits the running transaction now. A failed commit stops the session's writes (the
   * volume refuses more): every later request then fails with EIO, and the image replays to
   * the last good commit when opened again.
   */
  commitNow(checkpoint = false): void {
    if (this.failed) throw new PrismError('EIO', `the image could not be written: ${this.failed.message}`)
    try {
      this.vol.commit()
      this.lastCommit = Date.now()
      if (checkpoint) { /* the journal checkpoints itself when it fills; fsync needs only the commit */ }
    } catch (e) {
      this.failed = e as Error
      this.onError(`commit failed: ${(e as Error).message}`)
      throw e
    }
  }

  private tick(): void {
    if (this.closed || this.holdCommits || this.failed || this.lentUntil) return
    if (this.work.size === 0 && !this.freeing && this.jobs.length === 0 && mayFinishExpanded(this.vol)) {
      // A lazy clone the mounts' reads and writes expanded whole ends its expansion (it
      // commits what the requests did first; nothing a mount shows changes), between requests
      // and outside any work the server runs in slices (which may hold a freeze, or the clone).
      try {
        finishExpanded(this.vol)
        this.lastCommit = Date.now()
      } catch (e) {
        this.failed ??= e as Error
        this.onError(`commit failed: ${(e as Error).message}`)
        return
      } finally {
        this.dropPending()
      }
    }
    if (Date.now() - this.lastCommit >= this.commitMs - 50 && this.vol.hasChanges) {
      try {
        this.commitNow()
      } catch {
        // reported; later requests fail
      }
    }
  }

  // ---------------------------------------------------------------- frozen filesets

  /** filesets frozen (freeze): by how many, and what their changing requests wait for */
  private readonly freezes = new Map<number, {count: number, thawed: Promise<void>, thaw: () => void}>()
  /**
   * What notify kept back from the nodes of frozen filesets: a request held there may hold
   * the kernel's locks that the notification takes (a write its pages, a create its
   * directory), and would wait for it forever.
   */
  private deferred = emptyPending()

  /**
   * Freezes fileset `fs` (a clone of it is being made in slices, src/server/slicedclone.ts):
   * the mounts' requests that would change it wait until it thaws, the others (reads, other
   * filesets) go on. Returns the thaw, which lets the held requests run and resolves once the
   * notifications kept back meanwhile were taken (at once while another freeze still holds it).
   */
  freeze(fs: number): () => Promise<void> {
    let f = this.freezes.get(fs)
    if (!f) {
      let thaw!: () => void
      const thawed = new Promise<void>((r) => {
        thaw = r
      })
      f = {count: 0, thawed, thaw}
      this.freezes.set(fs, f)
    }
    f.count++
    const frozen = f
    let done = false
    return async () => {
      if (done) return
      done = true
      if (--frozen.count > 0) return
      this.freezes.delete(fs)
      frozen.thaw()
      const d = this.deferred
      this.deferred = emptyPending()
      for (const ino of d.inodes) this.pending.inodes.add(ino)
      for (const [dir, names] of d.entries) {
        let list = this.pending.entries.get(dir)
        if (!list) this.pending.entries.set(dir, list = [])
        pushAll(list, names)
      }
      if (!this.closed) await this.notify(true)
    }
  }

  /** While fileset `name` is frozen (freeze): what the server's own changes of it (copies into it, removals) wait for. */
  thawed(name: string): Promise<void> | null {
    const f = this.closed || this.lentUntil ? undefined : findFileset(this.vol, name)
    return f ? this.freezes.get(f.id)?.thawed ?? null : null
  }

  // ---------------------------------------------------------------- kernel caches

  /**
   * Whose answers wait on whose kernel: `waitsFor.get(a).get(b)` counts the requests of mount
   * `a` (by its PrismFs) whose answers wait until mount `b`'s kernel has taken a notification.
   * A notification needs the kernel's locks of what it names (an entry: its directory's inode
   * lock), and a request of that mount in progress may hold them until it is answered. So a
   * request of A waiting on B while one of B waits on A is a deadlock: each kernel's notify
   * write waits for the other's request (`mkdir A/x & mkdir B/y` in one directory, through two
   * mounts of one fileset, hung this way). notify() keeps this graph free of cycles.
   */
  private readonly waitsFor = new Map<PrismFs, Map<PrismFs, number>>()

  /** Whether a request of `from`'s that waited on a mount could, through waiting requests, wait on `to`. */
  private reaches(from: PrismFs, to: PrismFs): boolean {
    const seen = new Set<PrismFs>()
    const stack = [from]
    while (stack.length > 0) {
      const a = stack.pop()!
      if (a === to) return true
      if (seen.has(a)) continue
      seen.add(a)
      for (const b of this.waitsFor.get(a)?.keys() ?? []) stack.push(b)
    }
    return false
  }

  private waitEdge(from: PrismFs, to: PrismFs, delta: 1 | -1): void {
    let out = this.waitsFor.get(from)
    if (!out) this.waitsFor.set(from, out = new Map())
    const n = (out.get(to) ?? 0) + delta
    if (n > 0) out.set(to, n)
    else out.delete(to)
    if (out.size === 0) this.waitsFor.delete(from)
  }

  /**
   * Sends the kernel what changed since the last call, to every mount but the one whose request
   * made the change (its kernel knows), and resolves once the kernel has taken it all.
   *
   * One exception keeps the mounts from deadlocking: when a request of a mount that this one's
   * notifications go to waits itself, directly or through others, on this request's mount (see
   * waitsFor), what goes to that mount is sent but not waited for. The two requests then run at
   * the same time, and for that short while the other mount may still show what it cached
   * before this change; every notification still arrives.
   *
   * `answerWaits` false: the request is answered without waiting (a read that moved an atime, a
   * request that failed). Its notifications are sent, and no edge goes into waitsFor: an edge
   * for a wait that nobody does would make a later change through the other mount look like a
   * cycle, and that change would then be answered before this mount's kernel took it (a file
   * unlinked through one mount, still found through another after the unlink returned).
   */
  async notify(all = false, answerWaits = true): Promise<void> {
    const p = this.pending
    this.pending = emptyPending()
    const origin = all ? null : this.origin
    const waits: Promise<void>[] = []
    for (const m of this.mounts) {
      if (m.fs === origin) continue
      const sent: Promise<boolean>[] = []
      for (const ino of p.inodes) {
        for (const n of m.fs.nodesOfIno(ino)) {
          if (this.freezes.has(n.fs)) this.deferred.inodes.add(ino)
          else sent.push(m.session.invalidateInode(n.id, 0, 0))
        }
      }
      for (const [dir, names] of p.entries) {
        for (const n of m.fs.nodesOfIno(dir)) {
          if (!this.freezes.has(n.fs)) {
            for (const name of names) sent.push(m.session.invalidateEntry(n.id, name))
            continue
          }
          let list = this.deferred.entries.get(dir)
          if (!list) this.deferred.entries.set(dir, list = [])
          pushAll(list, names)
        }
      }
      if (p.filesets && m.spec.top === null) {
        for (const name of m.fs.rootNamesChanged()) sent.push(m.session.invalidateEntry(1, name))
        sent.push(m.session.invalidateInode(1, -1, 0))
      }
      if (sent.length === 0) continue
      const taken = Promise.allSettled(sent).then((results) => {
        for (const r of results) if (r.status === 'rejected') this.onError(`cache notification: ${(r.reason as Error).message}`)
      })
      if (origin === null) {
        waits.push(taken)
      } else if (!answerWaits) {
        void taken // (nobody waits: no edge)
      } else if (!this.reaches(m.fs, origin)) {
        this.waitEdge(origin, m.fs, 1)
        waits.push(taken.finally(() => this.waitEdge(origin, m.fs, -1)))
      } else {
        void taken // (a cycle: sent, not waited for)
      }
    }
    await Promise.all(waits)
  }

  /** Forgets what the observer saw (changes nobody else can have cached). */
  dropPending(): void {
    this.pending = emptyPending()
  }

  // ---------------------------------------------------------------- expansion

  /**
   * Expands clones in slices of SLICE_MS between requests, until none is left: first the
   * clones clients wait for (jobs), then asynchronous clones. Before a slice, what requests
   * changed is committed, so that a slice that fails is dropped alone (abort): it never leaves
   * a half-expanded directory for a later commit, nor takes a request's change with it. A slice
   * ends when its transaction reaches SLICE_BLOCKS, and that transaction is committed then
   * (else every later slice would end at once, until a timer committed).
   */
  scheduleExpansion(delayMs = 0): void {
    if (this.expandTimer || this.closed) return
    const run = () => {
      this.expandTimer = null
      if (this.closed || this.failed) return
      // (a tree being freed in slices: a failed expansion slice would drop its steps too)
      if (this.holdCommits || this.lentUntil || this.freeing || [...this.work].some((w) => w.pausesExpansion)) {
        this.scheduleExpansion(20)
        return
      }
      let more = false
      try {
        if (this.requestsChanged && this.vol.hasChanges) this.commitNow()
        this.requestsChanged = false
        more = this.expandSlice(SLICE_MS)
        this.dropPending() // expansion changes nothing a mount shows
        if (this.vol.txnFull || this.vol.txnBlocks >= SLICE_BLOCKS) this.commitNow()
        this.settleJobs()
        if (!more && this.vol.hasChanges) this.commitNow()
      } catch (e) {
        // A commit that failed (the image takes no more writes), or the fileset table unreadable.
        const failed = this.failed as Error | null
        this.stopJobs(failed ? new PrismError('EIO', `the image could not be written: ${failed.message}`) : e as Error)
        if (!failed) this.onError(`expanding clones: ${(e as Error).message}`)
        return
      }
      if (more) this.scheduleExpansion(0)
    }
    this.expandTimer = delayMs > 0 ? setTimeout(run, delayMs) : setImmediate(run)
  }

  /** One slice of about `ms` of expansion; true if more is left. */
  expandSlice(ms: number): boolean {
    const job = this.jobs.find((j) => filesetById(this.vol, j.filesetId)?.state === FS_EXPANDING)
    const todo = job ? [] : listFilesets(this.vol).filter((f) => f.state === FS_EXPANDING && f.mode === MODE_ASYNC && !this.stalled.has(f.id))
    const f = job ? filesetById(this.vol, job.filesetId)! : todo[0]
    if (!f) return this.jobs.length > 0
    let e = this.expanders.get(f.id)
    if (!e) this.expanders.set(f.id, e = new Expander(f.id))
    try {
      if (e.slice(this.vol, ms, Infinity, undefined, SLICE_BLOCKS) !== 'more') this.expanders.delete(f.id)
    } catch (err) {
      if (this.failed) throw err
      this.sliceFailed(f.id, err as Error)
    }
    return true
  }

  /**
   * A slice of fileset `id` failed: its transaction is dropped (only the slice's work is in
   * it) and the walk starts again from the top next time. A client waiting for that clone is
   * told the error, and a sync clone it asked for is deleted (a standalone sync clone that
   * fails leaves nothing either). An async clone nobody waits for is left alone until the
   * image is lent and back (the error is logged).
   */
  private sliceFailed(id: number, err: Error): void {
    this.vol.abort()
    this.dropPending()
    this.expanders.delete(id)
    const waiting = this.jobs.filter((j) => j.filesetId === id)
    if (waiting.length === 0) {
      this.stalled.add(id)
      this.onError(`expanding a clone: ${err.message}`)
      return
    }
    for (const j of waiting) this.jobs.splice(this.jobs.indexOf(j), 1)
    if (waiting.some((j) => j.sync)) {
      try {
        this.dropNow(id)
        void this.notify(true) // (its name leaves the whole-image mounts)
      } catch (e) {
        this.onError(`deleting the clone that failed: ${(e as Error).message}`)
      }
    }
    for (const j of waiting) j.reject(err)
  }

  /** Answers the jobs whose clone is an ordinary fileset now (settled and committed), or gone. */
  private settleJobs(): void {
    const ready: Array<{job: Job, dirs: number}> = []
    const gone: Job[] = []
    for (const j of this.jobs) {
      const rec = filesetById(this.vol, j.filesetId)
      if (!rec) gone.push(j)
      else if (rec.state !== FS_EXPANDING) ready.push({job: j, dirs: rec.dirsDone - j.startDone})
    }
    if (ready.length === 0 && gone.length === 0) {
      for (const j of this.jobs) j.onProgress?.()
      return
    }
    for (const r of ready) if (r.job.sync) settleSyncClone(this.vol, r.job.filesetId)
    this.commitNow()
    for (const j of [...ready.map((r) => r.job), ...gone]) {
      this.jobs.splice(this.jobs.indexOf(j), 1)
      this.vol.expandTally?.delete(j.filesetId)
    }
    for (const r of ready) r.job.resolve(r.dirs)
    for (const j of gone) j.reject(new PrismError('ENOENT', `fileset ${j.filesetId} was deleted before it was expanded`))
  }

  /** Fails every job (the server stops, or cannot write). */
  private stopJobs(e: Error): void {
    for (const j of this.jobs.splice(0)) j.reject(e)
  }

  /**
   * Expands fileset `name` ahead of every other clone (a client waits: `prism expand`); `sync`
   * settles it as a sync clone at the end. A fileset that is not expanding is done at once.
   */
  expandFirst(name: string, sync = false): ExpandJob {
    if (this.closed || this.failed) throw shuttingDown()
    const rec = getFileset(this.vol, name)
    let resolve!: (dirs: number) => void
    let reject!: (e: Error) => void
    const done = new Promise<number>((res, rej) => {
      resolve = res
      reject = rej
    })
    done.catch(() => {}) // (a client that went away no longer listens)
    const job: Job = {filesetId: rec.id, sync, startDone: rec.dirsDone, onProgress: null, done, resolve, reject}
    this.jobs.push(job)
    this.stalled.delete(rec.id)
    this.scheduleExpansion(0)
    return job
  }

  /**
   * A clone asked of the server (src/server/server.ts, for `prism clone` making a new fileset):
   * made in one short transaction as an async or lazy clone. A sync one is then expanded
   * ahead of every other clone (its job), counting what a sync clone counts, and settled as a
   * sync clone at the end (settleSyncClone); a crash before that leaves an ordinary async clone.
   */
  async cloneNew(src: {fileset: string, path: string}, dst: {fileset: string} | null, opts: {exclude: string[], mode: 'async' | 'lazy' | 'sync', onMade?: (name: string) => void}): Promise<{result: CloneResult, job: ExpandJob | null, tally: ExpandTally | null}> {
    await this.whenHeld()
    if (this.closed || this.failed) throw shuttingDown()
    // What requests changed is committed first: a clone that fails drops only its own work.
    if (this.vol.hasChanges) this.commitNow()
    let result: CloneResult
    let tally: ExpandTally | null = null
    try {
      result = clone(this.vol, src, dst, {exclude: opts.exclude, mode: opts.mode === 'lazy' ? 'lazy' : 'async'})
      if (opts.mode === 'sync') tally = tallyExpansion(this.vol, getFileset(this.vol, result.fileset).id)
      this.commitNow()
    } catch (e) {
      if (!this.failed) this.vol.abort()
      throw e
    }
    opts.onMade?.(result.fileset)
    // The whole-image mounts show the new fileset at once.
    await this.notify(true)
    const job = opts.mode === 'sync' ? this.expandFirst(result.fileset, true) : null
    this.scheduleExpansion(0)
    return {result, job, tally}
  }

  /**
   * Deletes the clone of `job`, made for a sync clone whose client was interrupted or went
   * away (a standalone sync clone interrupted leaves nothing either). Its job ends.
   */
  async dropClone(job: ExpandJob): Promise<void> {
    await this.whenHeld()
    const i = this.jobs.indexOf(job as Job)
    if (i >= 0) this.jobs.splice(i, 1)
    ;(job as Job).reject(new PrismError('EINTR', 'interrupted'))
    if (this.closed || this.failed || !filesetById(this.vol, job.filesetId)) return
    if (this.vol.hasChanges) this.commitNow()
    this.dropNow(job.filesetId)
    await this.notify(true)
  }

  /** Deletes fileset `id` and commits. */
  private dropNow(id: number): void {
    const rec = filesetById(this.vol, id)
    this.vol.expandTally?.delete(id)
    this.expanders.delete(id)
    if (!rec) return
    try {
      deleteFileset(this.vol, rec.name)
    } catch (e) {
      if (!this.failed) this.vol.abort()
      throw e
    }
    this.commitNow()
  }

  // ---------------------------------------------------------------- work in slices

  /** requests of the mounts that may have changed the image, so far (requestChanges) */
  private changes = 0
  /** told of each inode changed, and each directory whose entries changed (watch) */
  private readonly watchers = new Set<(ino: number, atimeOnly: boolean) => void>()
  /** the end of the last work in slices asked for (takeTurn) */
  private turnChain: Promise<void> = Promise.resolve()

  /** A count that moves whenever a mount's request may have changed the image. */
  get requestChanges(): number {
    return this.changes
  }

  /**
   * Calls `fn` with each inode changed (`atimeOnly`: a read through a mount moved its access
   * time, nothing else), and each directory whose entries changed, until the returned function
   * is called.
   */
  watch(fn: (ino: number, atimeOnly: boolean) => void): () => void {
    this.watchers.add(fn)
    return () => {
      this.watchers.delete(fn)
    }
  }

  /**
   * Waits for the work in slices asked for before (removals, copies, defrag: src/server/sliced.ts)
   * to end: they go one at a time, in order, as commands alone take the image's lock in turn.
   * Call the function it resolves with once this work has ended.
   */
  async takeTurn(): Promise<() => void> {
    let done!: () => void
    const before = this.turnChain
    this.turnChain = new Promise<void>((r) => {
      done = r
    })
    await before
    return done
  }

  /** Commands the server runs in slices on the open volume (src/server/sliced.ts, remove). */
  private readonly work = new Set<SlicedWork>()

  /**
   * Registers work that runs in slices on this.vol (call once the image is held, and before the
   * first slice): a lend waits for it to end, the server's stop aborts it. Returns its end.
   */
  beginWork(w: SlicedWork): () => void {
    this.work.add(w)
    return () => {
      this.work.delete(w)
    }
  }

  /**
   * Work in slices changed the volume (src/server/slicedclone.ts): the next expansion slice commits
   * that first, as it does the requests' changes, so that one that fails (vol.abort()) drops
   * only its own.
   */
  workChanged(): void {
    this.requestsChanged = true
  }

  /** Aborts all work in slices and waits for it to end (the server is stopping). */
  async stopWork(): Promise<void> {
    for (const w of this.work) w.abort()
    await Promise.allSettled([...this.work].map((w) => w.done))
  }

  // ---------------------------------------------------------------- removals in slices

  /** a removal is freeing what it detached (expansion waits meanwhile: scheduleExpansion) */
  private freeing = false

  /**
   * `prism fileset delete` and `prism rm` asked of the server (src/server/server.ts): each item
   * is detached in a short transaction of its own, exactly as the command's first step alone
   * (the fileset leaves the table, the name goes; clones still expanding from a fileset are
   * expanded first, in the usual slices), committed and shown to the mounts at once; `onItem`
   * hears of each (with the error about it, which changed nothing: the others go on, as
   * alone). An error that is not about one item ends the removal. Then all that was detached
   * is freed in slices between the mounts' requests (reapSliced). Resolves once it is all
   * freed and committed: the command returns then, as alone, with the space back.
   * vol.reaping is set from the first detach to the end, so that no other reap (an unlink
   * through a mount) frees the detached tree inside one request; the orphan list keeps it
   * on the image meanwhile, so a crash leaves it for the next open to free, as alone.
   * `stop`: the client asks to stop (Ctrl-C): no item is detached after that (a wait for
   * clones to expand, a freeze, its turn or the image ends there), and those detached are
   * freed all the same. `onDetached` is told how many items the detaching went through and
   * whether that was all of them, before the freeing.
   */
  async remove(what: {filesets: string[], force: boolean} | {paths: Array<{fileset: string, path: string}>, recursive: boolean, force: boolean}, onItem: (i: number, e?: PrismError) => void,
    stop?: {requested: () => boolean, asked: Promise<void>, onDetached: (n: number, all: boolean) => void}): Promise<void> {
    const stopped = () => stop?.requested() === true
    const orStop = <T>(p: Promise<T>): Promise<unknown> => stop ? Promise.race([p, stop.asked]) : p
    let ended!: () => void
    let aborted = false
    const work: SlicedWork = {
      abort: () => {
        aborted = true
      },
      done: new Promise<void>((r) => {
        ended = r
      }),
    }
    // Asked to stop while it waits for its turn (another removal freeing) or for the image:
    // nothing will be detached (the loop stops before its first item), and the client is told now.
    let entered = false
    if (stop) void stop.asked.then(() => { if (!entered) stop.onDetached(0, false) })
    const done = await this.takeTurn()
    try {
      await this.whenHeld()
      if (this.closed || this.failed) throw new PrismError('EBUSY', 'the prism server of this image is shutting down')
      const end = this.beginWork(work)
      const vol = this.vol
      try {
        const items = 'filesets' in what ? what.filesets : what.paths
        entered = true
        let i = 0
        for (; i < items.length; i++) {
          if (aborted || this.closed) throw new ServerStopped('the prism server stopped')
          if (stopped()) break
          if ('filesets' in what) {
            // Clones still expanding from it read its tree: they are expanded first, in slices.
            let f
            try {
              f = checkDeletable(vol, what.filesets[i], what.force)
            } catch (e) {
              if (!isArgumentError(e)) throw e
              onItem(i, e)
              continue
            }
            for (const c of clonesInFlight(vol, f.id)) {
              if (stopped()) break
              await orStop(this.expandFirst(c.name).done)
            }
          }
          // A fileset being cloned is changed once the clone no longer reads it (freeze).
          const name = 'filesets' in what ? what.filesets[i] : what.paths[i].fileset
          for (let t = this.thawed(name); t && !stopped(); t = this.thawed(name)) await orStop(t)
          if (aborted || this.closed) throw new ServerStopped('the prism server stopped')
          if (stopped()) break
          // What requests changed is committed first: an item that fails drops only its own work.
          if (vol.hasChanges) this.commitNow()
          vol.reaping = true // (the reap of deleteFileset and remove: done below, in slices)
          try {
            if ('filesets' in what) {
              checkDeletable(vol, what.filesets[i], what.force)
              this.refuseMounted(what.filesets[i], null)
              deleteFileset(vol, what.filesets[i])
            } else {
              const p = what.paths[i]
              this.refuseMounted(p.fileset, p.path)
              try {
                namespace(vol, p.fileset).remove(p.path, {recursive: what.recursive})
              } catch (e) {
                if (!(what.force && e instanceof PrismError && e.code === 'ENOENT')) throw e
              }
            }
          } catch (e) {
            if (this.failed) throw e
            vol.abort()
            this.dropPending()
            if (!isArgumentError(e)) throw e
            onItem(i, e)
            continue
          }
          this.commitNow()
          await this.notify(true)
          onItem(i)
        }
        stop?.onDetached(i, i === items.length)
        await this.reapSliced(vol, () => aborted)
      } finally {
        vol.reaping = false
        end()
      }
    } finally {
      done()
      ended()
    }
  }

  /**
   * A fileset that a mount shows (`prism mount FILESET` or `FILESET:/path`), or a path whose
   * removal would take the directory such a mount shows: EBUSY, as rmdir(2) of a mount point
   * and `zfs destroy` of a mounted dataset are refused (the mount would answer every request
   * with "stale file handle" from then on). The whole-image mount shows filesets as its
   * directories and follows their deletion, so it never refuses one.
   */
  private refuseMounted(fileset: string, p: string | null): void {
    const f = findFileset(this.vol, fileset)
    if (!f) return // (the removal says so)
    for (const m of this.mounts) {
      const top = m.fs.root
      if (m.spec.top === null || top.fs !== f.id) continue
      if (p !== null) {
        let r
        try {
          r = namespace(this.vol, fileset).resolveFull(p, false)
        } catch {
          return // (the removal says why)
        }
        // (the path, or a directory above the mount's: its names start the mount's own)
        const names = top.topNames ?? []
        const above = r.names.length <= names.length && r.names.every((n, k) => n.equals(names[k]))
        if (r.inode.ino !== top.ino && !above) continue
      }
      throw new PrismError('EBUSY', `${p === null ? `fileset ${fileset}` : `${fileset}:${p}`} is mounted on ${m.mountpoint}: unmount it first (prism umount ${m.mountpoint})`)
    }
  }

  /**
   * Frees the orphan list (what removals detached, and what the mounts unlinked meanwhile and
   * no longer hold) in slices of about REAP_SLICE_MS between the mounts' requests: a slice
   * ends as soon as a request waits (after REAP_MIN_SLICE_MS). Every step leaves the image
   * consistent; the running transaction commits between slices once it holds COMMIT_BLOCKS.
   */
  private reapSliced(vol: Volume, aborted: () => boolean): Promise<void> {
    const steps = reapSteps(vol)
    this.freeing = true
    return new Promise<void>((resolve, reject) => {
      const finish = (e?: unknown) => {
        this.freeing = false
        this.dropPending() // (nothing a mount shows: the tree was out of reach)
        if (e) reject(e)
        else resolve()
      }
      const slice = () => {
        if (aborted() || this.closed) {
          // The rest stays on the orphan list: the close, or the next open, frees it.
          finish(new ServerStopped('the prism server stopped'))
          return
        }
        const start = performance.now()
        try {
          for (;;) {
            if (steps.next().done) {
              this.commitNow()
              finish()
              return
            }
            const t = performance.now() - start
            if (t >= REAP_SLICE_MS || (t >= REAP_MIN_SLICE_MS && requestsWaiting() > 0)) break
          }
          this.dropPending()
          if (vol.txnBlocks >= REAP_COMMIT_BLOCKS) this.commitNow()
        } catch (e) {
          finish(e)
          return
        }
        setImmediate(slice)
      }
      setImmediate(slice)
    })
  }

  // ---------------------------------------------------------------- closing

  /** Commits, checkpoints, marks the image clean and releases it (after the last unmount). */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.stopJobs(new ServerStopped('the prism server stopped'))
    if (this.commitTimer) clearInterval(this.commitTimer)
    if (this.expandTimer) {
      clearTimeout(this.expandTimer as NodeJS.Timeout)
      clearImmediate(this.expandTimer as NodeJS.Immediate)
    }
    this.vol.observer = null
    this.vol.orphanHeld = null
    try {
      if (this.failed) {
        this.vol.closeAbort()
        return
      }
      // Files unlinked while open through a mount that is gone now are freed here.
      try {
        reapOrphans(this.vol)
      } catch (e) {
        this.onError(`freeing unlinked files: ${(e as Error).message}`)
      }
      this.vol.close()
    } finally {
      fs.closeSync(this.pin)
    }
  }
}

/** The image file's owner: the whole-image mount's root shows it. */
function imageOwner(image: string): {uid: number, gid: number} {
  try {
    const st = fs.statSync(image)
    return {uid: st.uid, gid: st.gid}
  } catch {
    return {uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0}
  }
}
