// The Volume: one opened image. It owns the superblock, the block store (cache + running
// transaction), the inode cache, block and inode allocation over the reference-count table,
// and the orphan list. Everything that changes the image goes through it, and nothing is
// written in place before the journal holds it (journal/journal.ts).
import {ExtentMap} from './extentmap.js'
import type {ExpandTally} from './expand.js'
import {crypto} from '../lazy.js'
import type {BlockDevice} from '../device/device.js'
import {FileDevice} from '../device/file.js'
import {openImageDevice, type PreimageSink} from '../device/snapshot.js'
import {
  BLOCK_SIZE, INODES_PER_BLOCK, INODE_SIZE, REFCOUNTS_PER_BLOCK, REFCOUNT_MAX, STATE_CLEAN, STATE_DIRTY,
  IF_ORPHAN, FILESETS_PER_BLOCK, FS_DELETING, FS_EXPANDING, S_IFMT,
} from '../format/constants.js'
import {FormatError} from '../format/errors.js'
import {checkInode, decodeInode, emptyInode, encodeInode, inodeSlotFree, peekVersion, type InodeVersion, type InodeRecord} from '../format/inode.js'
import {refcountBlockOk, refcountBlockOkSparse, sealRefcountBlock} from '../format/refcount.js'
import {INCOMPAT_EXCLUDE_RULES, INCOMPAT_EXPANDING, INCOMPAT_SPARSE_REFCOUNT, RO_COMPAT_SUPPORTED, decodeSuperblock, encodeSuperblock, hasSbMagic, planGeometry, type GeometryOptions, type Superblock} from '../format/superblock.js'
import {PrismError, fail, isDamage} from '../errors.js'
import {checkInterrupt} from '../interrupt.js'
import {Journal} from '../journal/journal.js'
import {BlockStore} from '../journal/store.js'
import {Inode, forgetSnapshot, savepointWatch, type InodeHome, type InodeState} from './inode.js'
import {storeExtents} from './extents.js'
import {filesetTableBlocks} from './filesets.js'

/** One block in this many at the start of the data area is the metadata zone (Volume.metaZoneBlocks). */
const META_ZONE_SHARE = 64
/**
 * Inodes the cache keeps after a commit at most (it trims to 3/4 of that, least recently used
 * first). Only a commit trims, or maybeCommit when the transaction has changed more than a
 * quarter of this many inodes (flushInodes): a changed inode stays in the cache until it is
 * encoded into its block. An Inode object with its record is about 700 bytes, and twice the
 * live heap is what V8 lets grow between collections: 32,768 keeps an import of a million
 * files under 512 MiB resident (issue 19); 65,536 cost it 60 MiB more.
 */
const INODE_CACHE_MAX = 32768
/**
 * A transaction commits at maybeCommit once it holds this many metadata blocks (32 MiB), or
 * half the journal if that is less: the dirty blocks are memory until the commit, and a
 * commit of 32 MiB is large enough that its two syncs cost little beside its writes.
 */
const TXN_MAX_BLOCKS = 4096

export interface OpenOptions {
  write: boolean
  /** seconds to wait for the image lock */
  wait?: number
  onWait?: () => void
  /** told about recoveries made while opening (journal replay, backup superblock) */
  onNotice?: (msg: string) => void
  /** skip orphan processing (fsck does its own) */
  noOrphans?: boolean
  /** orphans to leave on the list, the reap at open included (a server's files open but unlinked) */
  orphanHeld?: (ino: number) => boolean
  /** cache capacity in blocks */
  cacheBlocks?: number
  /** inodes the inode cache keeps at most after a commit (tests make it tiny) */
  inodeCache?: number
}

export interface MkfsOptions extends Omit<GeometryOptions, 'blockCount'> {
  size: number
  force?: boolean
}

/** Called after the first root fileset is laid out by mkfs (set by fs/filesets.ts). */
export type Formatter = (vol: Volume) => void

/** What a Volume tells its observer (Volume.observer). */
export interface VolumeObserver {
  /** an inode changed in the running transaction; `atimeOnly`: only its access time moved (a read) */
  inodeChanged(ino: number, atimeOnly?: boolean): void
  /** directory `dir` gained, lost or repointed the entry `name` */
  entryChanged(dir: number, name: Buffer): void
  /** fileset `fileset` took a private copy `to` of the shared inode `from` (Namespace.own) */
  inodeCopied(fileset: number, from: number, to: number): void
  /** a fileset was added, changed, renamed or removed */
  filesetsChanged(): void
}

/**
 * Orphans another process holds open ($PRISM_HELD_ORPHANS: inode numbers, comma-separated, set
 * by the CLI when a server lent it the image, src/cli/served.ts): every volume this process
 * opens leaves them on the list, at open too, for the server to free once they are closed.
 */
function heldOrphans(): ((ino: number) => boolean) | null {
  const v = process.env.PRISM_HELD_ORPHANS
  if (!v) return null
  const set = new Set(v.split(',').map(Number))
  return (ino) => set.has(ino)
}

/**
 * A prism command run on an image a server holds (src/cli/served.ts) borrows it: the CLI puts
 * what the server said under this key before any volume opens. `open` is every file a mount
 * has open, as FILESET:INO: if this process removes such a file's name while the file is
 * shared with another fileset, the open file keeps a private copy (Namespace.dropName). And
 * every private copy this process makes of a shared inode is handed to `report`, as a
 * "FILESET FROM TO GENERATION" line, so that the server's mounts follow it when they take the
 * image back: a file open there must go on writing to its own fileset's copy, never to the
 * inode another fileset keeps.
 */
const LEND = Symbol.for('prism.lend')

interface Lend {
  report: (line: string) => void
  open: Set<string>
  /** the directories the server's FILESET:/path mounts show (Volume.mountedDirs) */
  mounted?: MountedDir[]
}

/**
 * A directory a `FILESET:/path` mount shows: the inodes from its fileset's root down to it
 * (`chain`, itself last), and where it is mounted.
 */
export interface MountedDir {
  fs: number
  chain: number[]
  at: string
}

function lend(): Lend | null {
  const l = (globalThis as Record<symbol, unknown>)[LEND] as Lend | undefined
  return l && typeof l.report === 'function' && l.open instanceof Set ? l : null
}

function lendObserver(vol: Volume): VolumeObserver | null {
  const l = lend()
  if (!l) return null
  return {
    inodeChanged: () => {},
    entryChanged: () => {},
    filesetsChanged: () => {},
    inodeCopied: (fileset, from, to) => {
      l.report(`${fileset} ${from} ${to} ${vol.tryIget(to)?.r.generation ?? 0}\n`)
    },
  }
}

function lentMounts(): (() => MountedDir[]) | null {
  const m = lend()?.mounted
  return Array.isArray(m) && m.length > 0 ? () => m : null
}

function openElsewhere(): ((fileset: number, ino: number) => boolean) | null {
  const l = lend()
  return l && l.open.size > 0 ? (fileset, ino) => l.open.has(`${fileset}:${ino}`) : null
}

/** A snapshot held (Volume.preserve): where pre-images go, and which data blocks were free at it. */
interface Preservation {
  sink: PreimageSink
  /** data-area positions allocated since the snapshot that were free at it, by refcount-table block */
  fresh: Map<number, Uint8Array>
  /** data-area positions freed since the snapshot that were in use at it */
  freed: Map<number, Uint8Array>
}

export class Volume implements InodeHome {
  sb: Superblock
  readonly store: BlockStore
  readonly journal: Journal
  readonly readOnly: boolean
  /** what opening had to repair or work around */
  readonly notices: string[] = []
  /** journal transactions replayed when the image was opened */
  replayed = 0
  usedBackupSb = false
  /** the superblock as opened from the backup copy (what abort returns to until a commit rewrites block 0) */
  private backupSbImage: Buffer | null = null

  private inodes = new Map<number, Inode>()
  private dirtyInodes = new Set<Inode>()
  /** inode table blocks (index) the dirty inodes live in: what they add to the transaction */
  private dirtyInodeBlocks = new Set<number>()
  private dirtyRc = new Set<number>()
  /** changed blocks whose checksum is computed once, at commit (directory buckets) */
  private unsealed = new Map<number, (buf: Buffer) => void>()
  /** refcount slots freed in this transaction: not reusable until it commits */
  private freedNow = new Map<number, Uint8Array>()
  /**
   * refcount slots allocated in this transaction: no committed state references them, so
   * their content may be written again before the commit (the locality policy's in-place
   * rewrite of a block written twice in one transaction, FORMAT.md §6.6)
   */
  private allocNow = new Map<number, Uint8Array>()
  /** how many blocks freedNow holds: counted free, but not reusable before the commit */
  freedInTxn = 0
  private blockHint = 0
  /** where the next metadata block is looked for (allocRun) */
  private metaHint = 0
  /**
   * For a search for a free run of at least R blocks (findDataRun, by R): a data-area position
   * below which no such run starts (as findFree counts runs), learnt from searches that found
   * none there (R = 1: any block that may be taken). Without it, a search for a long run in an
   * image whose free space is scattered in short pieces (the locality policy filling a sparse
   * file at random) read through every piece each time, and a search for any block, once the
   * hint had gone round, read through every block freed in the transaction (they are free
   * but pinned): random writes grew with the square of their number. Only blocks
   * becoming free can make a new run: they do at commit (until then a freed block is pinned,
   * freedNow), which lowers each position below the lowest block freed; a rollback or an abort
   * forgets them all.
   */
  private readonly noRunBelow = new Map<number, number>()
  private sbDirty = false
  /** write the backup superblock after the next commit (a field it must not lack was set) */
  private backupDue = false
  private closed = false
  /** a commit that failed: the session writes nothing more (commit) */
  private failure: Error | null = null
  /** hooks run by commit() before anything is encoded (extent maps, directories) */
  private flushers: Array<(vol: Volume) => void> = []
  /** orphans this process is still building (a clone in progress): reaping skips them */
  readonly pinnedOrphans = new Set<number>()
  /**
   * Owner of what is created, when not this process's user: a server running a command's
   * short step (src/server/short.ts) sets the command's user and group meanwhile.
   */
  creator: {uid: number, gid: number} | null = null
  /** fileset table cache, owned by fs/filesets.ts */
  filesetCache: unknown = null
  /** per-clone expansion state (src/fs/expand.ts), dropped with the transaction on abort */
  cloneCache: unknown = null
  /**
   * Clones whose expansion is counted, by fileset id (src/fs/expand.ts ExpandTally): a sync
   * clone a server makes in slices reports what a sync clone reports. Kept across abort.
   */
  expandTally: Map<number, ExpandTally> | null = null
  /** inodes the cache keeps at most after a commit (trimInodeCache) */
  inodeCacheMax = INODE_CACHE_MAX
  /** decoded attribute sets and the session's sets by content (src/fs/xattr.ts), dropped on abort */
  xattrCache: unknown = null
  /**
   * Told about every change as it is made, for whoever shows this image elsewhere (a server's
   * kernel caches); null when nobody listens. It must not change the volume.
   */
  observer: VolumeObserver | null = lendObserver(this)
  /**
   * Orphans the reaper leaves alone, for now, besides pinnedOrphans: files unlinked while a
   * server still has them open (freed once released, or by the next open after a crash).
   * Unlike pinnedOrphans, it survives abort().
   */
  orphanHeld: ((ino: number) => boolean) | null = heldOrphans()
  /**
   * Files a server's mounts hold open, by fileset: in a process the server lent the image to
   * (lend), and in the server itself for the work it runs on its own volume (a copy into the
   * image, src/server/image.ts). Namespace.dropName gives such a file, when shared, a private
   * unnamed copy.
   */
  openElsewhere: ((fileset: number, ino: number) => boolean) | null = openElsewhere()
  /**
   * The directories a server's `FILESET:/path` mounts show: in the server itself, and in a
   * process it lent the image to. Such a directory, and every one above it, can be neither
   * removed nor moved (nor replaced) while mounted (Namespace.beforeDirGoes: EBUSY, as
   * rmdir(2) and rename(2) of a mount point are); the mount would answer "stale file handle"
   * from then on, or show a path that no longer leads to it.
   */
  mountedDirs: (() => MountedDir[]) | null = lentMounts()
  /** orphans this process made for another process to free (keepOrphan) */
  readonly keptOrphans = new Set<number>()

  /** Leaves orphan `ino` to the server that holds it open: the reaper here passes it by. */
  keepOrphan(ino: number): void {
    this.keptOrphans.add(ino)
  }
  /** a reap of the orphan list is running (fs/namespace.ts reapOrphans) */
  reaping = false

  private constructor(readonly dev: BlockDevice, sb: Superblock, journal: Journal, opts: {cacheBlocks?: number, write?: boolean, inodeCache?: number}) {
    this.sb = sb
    if (opts.inodeCache !== undefined) this.inodeCacheMax = opts.inodeCache
    this.journal = journal
    // Opened without write access, nothing is written (close() would otherwise mark an image
    // with an unreplayed journal clean), even on a device that allows it. Changes made
    // meanwhile (a reader expanding a clone in memory, src/fs/expand.ts) are never
    // committed: they live in this process until it closes the image.
    this.readOnly = dev.readOnly || opts.write === false
    this.store = new BlockStore(dev, journal, opts.cacheBlocks)
    this.store.readOnly = this.readOnly
    // A block allocated in this transaction is free in the committed state: written in place before the log (FORMAT.md §3.6).
    this.store.unreferenced = (block) => this.allocatedNow(block)
  }

  // ---------------------------------------------------------------- opening

  /** Creates a new image file and formats it; `init` lays out the first fileset. */
  static mkfs(path: string, opts: MkfsOptions, init: Formatter): Volume {
    const blocks = Math.floor(opts.size / BLOCK_SIZE)
    let sb: Superblock
    try {
      sb = planGeometry({blockCount: blocks, inodeCount: opts.inodeCount, journalBlocks: opts.journalBlocks, filesetSlots: opts.filesetSlots})
    } catch (e) {
      // A size or setting the image cannot be made with: a bad argument.
      throw new PrismError('EUSAGE', (e as Error).message)
    }
    const dev = FileDevice.create(path, blocks, !!opts.force)
    try {
      return Volume.format(dev, sb, init)
    } catch (e) {
      dev.discard() // a file this mkfs created goes again; one it was told to overwrite stays
      throw e
    }
  }

  /** Formats any block device (tests use memory devices). */
  static format(dev: BlockDevice, sb: Superblock, init: Formatter): Volume {
    sb.uuid = crypto().randomBytes(16)
    sb.freeInodes = sb.inodeCount
    sb.freeBlocks = sb.dataBlocks
    // Zero every metadata region: refcount blocks sealed, inode and fileset tables empty. A
    // new sparse file is zero already: its inode table stays a hole until inodes are used
    // there, which lets fsck skip the never-used part (as e2fsck skips unused inode tables).
    // With INCOMPAT_SPARSE_REFCOUNT (every image this build makes) an all-zero refcount block
    // reads as free, so the table, like the others, is written only where it is used.
    const zeroed = dev.createdZero === true
    const zero = Buffer.alloc(BLOCK_SIZE * 256)
    if (!(sb.incompat & INCOMPAT_SPARSE_REFCOUNT)) {
      const rc = Buffer.alloc(BLOCK_SIZE)
      sealRefcountBlock(rc)
      for (let b = sb.refcountStart; b < sb.refcountStart + sb.refcountBlocks; b++) dev.write(b, rc)
    }
    const firstZeroed = sb.incompat & INCOMPAT_SPARSE_REFCOUNT ? sb.refcountStart : sb.inodeTableStart
    for (let b = firstZeroed; b < sb.dataStart && !zeroed; b += 256) {
      dev.write(b, zero.subarray(0, Math.min(256, sb.dataStart - b) * BLOCK_SIZE))
    }
    Journal.format(dev, sb.journalStart, sb.journalBlocks)
    dev.write(0, encodeSuperblock(sb))
    dev.write(sb.blockCount - 1, encodeSuperblock(sb))
    dev.sync()
    const journal = new Journal(dev, sb.journalStart, sb.journalBlocks)
    journal.loadSuper()
    const vol = new Volume(dev, sb, journal, {})
    init(vol)
    vol.commit()
    return vol
  }

  static open(path: string, opts: OpenOptions): Volume {
    const dev = openImageDevice(path, {write: opts.write, wait: opts.wait, onWait: opts.onWait})
    try {
      return Volume.openDevice(dev, opts)
    } catch (e) {
      dev.close()
      if (e instanceof FormatError) throw new PrismError('EBADIMAGE', `${path}: ${e.message}`)
      // (an image that is not one, or is damaged past opening: said of the file, as fsck says it)
      if (e instanceof PrismError && e.code === 'EBADIMAGE' && !e.message.startsWith(`${path}: `)) throw new PrismError('EBADIMAGE', `${path}: ${e.message}`)
      throw e
    }
  }

  static openDevice(dev: BlockDevice, opts: OpenOptions): Volume {
    const {sb, backup, problem} = readSuperblock(dev)
    if (sb.blockCount > dev.blocks) fail('EBADIMAGE', `image is truncated (${dev.blocks} of ${sb.blockCount} blocks)`)
    const journal = new Journal(dev, sb.journalStart, sb.journalBlocks)
    try {
      journal.loadSuper()
    } catch (e) {
      throw new PrismError('EBADIMAGE', `${(e as Error).message}; run 'prism fsck --repair'`)
    }
    if (opts.write && sb.roCompat & ~RO_COMPAT_SUPPORTED) {
      fail('EROFS', `image uses features this prism can only read (ro_compat 0x${sb.roCompat.toString(16)}); open it read-only`)
    }
    const vol = new Volume(dev, sb, journal, opts)
    if (opts.orphanHeld) vol.orphanHeld = opts.orphanHeld
    const notice = (m: string) => { vol.notices.push(m); opts.onNotice?.(m) }
    if (backup) {
      vol.usedBackupSb = true
      notice(`primary superblock damaged (${problem}); using the backup copy`)
    }
    if (opts.write) {
      const r = journal.replay()
      vol.replayed = r.transactions
      if (r.transactions > 0) {
        notice(`replayed ${r.transactions} journal transaction(s)`)
        if (r.blocks.has(0)) vol.sb = decodeSuperblock(r.blocks.get(0)!)
      }
    } else {
      const r = journal.scan()
      vol.replayed = r.transactions
      if (r.transactions > 0) {
        vol.store.setOverlay(r.blocks)
        if (r.blocks.has(0)) vol.sb = decodeSuperblock(r.blocks.get(0)!)
      }
    }
    if (backup) {
      vol.recountFree()
      vol.backupSbImage = encodeSuperblock(vol.sb)
    }
    // Counters that could not be written back (fsck, which opens with noOrphans, corrects them).
    if (!opts.noOrphans && (vol.sb.freeBlocks > vol.sb.dataBlocks || vol.sb.freeInodes > vol.sb.inodeCount)) {
      fail('EBADIMAGE', "superblock free counts are out of range; run 'prism fsck --repair'")
    }
    if (opts.write && !opts.noOrphans && vol.sb.orphanHead !== 0) {
      vol.reapOrphansHook?.(vol)
    }
    return vol
  }

  /** Set by fs/namespace.ts: frees what the orphan list holds (the library never calls upward). */
  static defaultReaper: ((vol: Volume) => void) | null = null

  get reapOrphansHook(): ((vol: Volume) => void) | null {
    return Volume.defaultReaper
  }

  // ---------------------------------------------------------------- transactions

  addFlusher(f: (vol: Volume) => void): void {
    if (!this.flushers.includes(f)) this.flushers.push(f)
  }

  /** Marks a block changed in this transaction whose checksum `seal` computes at commit. */
  sealAtCommit(block: number, seal: (buf: Buffer) => void): void {
    const sp = this.sp
    if (sp && !sp.broken && !sp.unsealed?.has(block)) (sp.unsealed ??= new Map()).set(block, this.unsealed.get(block))
    this.unsealed.set(block, seal)
  }

  /** True when a block has changes waiting for their checksum (do not verify it yet). */
  isUnsealed(block: number): boolean {
    return this.unsealed.has(block)
  }

  markSbDirty(): void {
    this.sbDirty = true
  }

  /** The refcount-table block `index` changed in this transaction. */
  private rcDirty(index: number): void {
    if (this.sp && !this.dirtyRc.has(index)) this.sp.rc.push(index)
    this.dirtyRc.add(index)
  }

  /**
   * Sets slots [slot, slot + n) of the running transaction's bit array `index` of `map`
   * (freedNow, allocNow). They were clear: a block is taken only when free and not freed in
   * this transaction, and freed only once (its count cannot come back from 0). So a savepoint
   * records where, and a rollback clears them again.
   */
  private setTxnBits(map: Map<number, Uint8Array>, index: number, slot: number, n: number): void {
    let bits = map.get(index)
    if (!bits) map.set(index, (bits = new Uint8Array(REFCOUNTS_PER_BLOCK)))
    bits.fill(1, slot, slot + n)
    const sp = this.sp
    if (sp && !sp.broken) sp.bits.push({map, index, slot, n})
  }

  // ---------------------------------------------------------------- savepoints

  /** the savepoint running (savepoint), or null */
  private sp: SavepointState | null = null

  /**
   * Starts a savepoint inside the running transaction: until release() or rollback(), what
   * changes is recorded so that rollback() can put the transaction back as it was here (a
   * server runs each request of a mount inside one: a request that fails part way, out of
   * space or on a bad argument found late, leaves nothing of itself in the transaction that
   * later commits with the other requests). Recorded: the blocks changed (BlockStore.mark),
   * every Inode object used (told by savepointWatch before its first use; a deep copy of those
   * with uncommitted changes), the free-space bookkeeping of the transaction and the
   * superblock, and file data queued for the device (BlockStore.rollback). A commit,
   * flushInodes or abort inside it ends what it can undo (`broken`): rollback() then leaves
   * everything as it is, as if there were none. Not on a read-only volume (its changes are
   * never committed), and not nested: null then, and the caller has nothing to end.
   */
  savepoint(): Savepoint | null {
    if (this.readOnly || this.sp || this.closed) return null
    const sp = new SavepointState(this, {...this.sb}, this.sbDirty, this.backupDue, this.freedInTxn, this.blockHint, this.metaHint,
      this.pinnedOrphans.size ? [...this.pinnedOrphans] : NONE, this.keptOrphans.size ? [...this.keptOrphans] : NONE)
    this.sp = sp
    this.store.mark()
    savepointWatch.epoch++
    savepointWatch.fn = this.watchInode
    return sp
  }

  /** Told of each Inode object before its first use in the running savepoint (savepointWatch). */
  private readonly watchInode = (inode: Inode): void => {
    const sp = this.sp
    if (sp && !sp.broken) sp.inodes.push({inode, state: this.dirtyInodes.has(inode) ? inode.snapshot() : null})
  }

  /**
   * Has `undo` run if the running savepoint is rolled back, after the volume's own state is
   * put back (for state kept outside the volume that followed a change: a server's mounts
   * repointed to a private copy, VolumeObserver.inodeCopied). Nothing when none runs.
   */
  atRollback(undo: () => void): void {
    if (this.sp && !this.sp.broken) this.sp.undo.push(undo)
  }

  /** A commit, flushInodes or abort: the running savepoint (if any) can undo nothing from here on. */
  private breakSavepoint(): void {
    if (!this.sp || this.sp.broken) return
    this.sp.broken = true
    this.store.unmark()
  }

  /** Ends savepoint `sp` (SavepointState.release and rollback); true when it was rolled back. @internal */
  endSavepoint(sp: SavepointState, rollback: boolean): boolean {
    if (this.sp !== sp) return false
    this.sp = null
    savepointWatch.fn = null
    if (!rollback || sp.broken || this.closed) {
      this.store.unmark()
      for (const {state} of sp.inodes) if (state) forgetSnapshot(state)
      return false
    }
    this.store.rollback()
    for (const {inode, state} of sp.inodes) {
      if (state) continue
      // Clean then: the inode table (as restored) holds its state; an object made in the
      // savepoint (ialloc) finds its slot free there.
      this.dirtyInodes.delete(inode)
      if (this.inodes.get(inode.ino) === inode) this.inodes.delete(inode.ino)
      inode.drop(this)
    }
    for (const {inode, state} of sp.inodes) {
      if (!state) continue
      // Changed before the savepoint: its state then, still to be committed, and the cache's
      // object for its inode again (a slot freed and taken again in the savepoint has another).
      inode.restore(state)
      this.inodes.set(inode.ino, inode)
    }
    for (const b of sp.inodeBlocks) this.dirtyInodeBlocks.delete(b)
    for (const i of sp.rc) this.dirtyRc.delete(i)
    for (const [block, seal] of sp.unsealed ?? []) {
      if (seal) this.unsealed.set(block, seal)
      else this.unsealed.delete(block)
    }
    for (const b of sp.bits) b.map.get(b.index)?.fill(0, b.slot, b.slot + b.n)
    this.noRunBelow.clear() // (blocks taken in the savepoint are free again)
    Object.assign(this.sb, sp.sb)
    this.sbDirty = sp.sbDirty
    this.backupDue = sp.backupDue
    this.freedInTxn = sp.freedInTxn
    this.blockHint = sp.blockHint
    this.metaHint = sp.metaHint
    this.pinnedOrphans.clear()
    for (const i of sp.pinned) this.pinnedOrphans.add(i)
    this.keptOrphans.clear()
    for (const i of sp.kept) this.keptOrphans.add(i)
    // Caches of what the blocks hold, rebuilt from them when next needed.
    this.filesetCache = null
    this.cloneCache = null
    this.xattrCache = null
    for (let i = sp.undo.length - 1; i >= 0; i--) sp.undo[i]()
    return true
  }

  /**
   * The running transaction sets a superblock field that the backup copy must not lack even
   * before the next clean close (the fileset table file, FORMAT.md §8.7): once it commits,
   * the backup is rewritten too.
   */
  backupAfterCommit(): void {
    this.backupDue = true
    this.markSbDirty()
  }

  /** Metadata blocks the running transaction will write (roughly: what its commit costs). */
  get txnBlocks(): number {
    return this.store.dirtyCount + this.dirtyInodeBlocks.size + this.dirtyRc.size
  }

  private ident: {dev: bigint, ino: bigint} | null | undefined

  /**
   * Whether the host file `st` (from a bigint stat) is this image's own file: a command that
   * writes host files must refuse to write over it (prism export root disk.img -i disk.img).
   */
  isImageFile(st: {dev: bigint, ino: bigint}): boolean {
    if (this.ident === undefined) this.ident = this.dev.identity?.() ?? null
    return this.ident !== null && this.ident.dev === st.dev && this.ident.ino === st.ino
  }

  /**
   * The blocks the transaction freed, which it may not take again before it commits, are at
   * least 1,024 and as many as the blocks it may take: work that frees as it writes (the
   * locality policy's region rewrites) would otherwise run out of blocks in an image with room
   * to spare. (1,024 at least: `rm -r` in a full image, which frees all it finds, commits
   * once for the first 1,024 blocks, then for as many again, and so on: a few times in all.)
   */
  private get pinnedMost(): boolean {
    return this.freedInTxn >= 1024 && this.freedInTxn * 2 >= this.sb.freeBlocks
  }

  /** True when what the running transaction will log has grown past half the journal (or the transaction past TXN_MAX_BLOCKS). */
  get txnFull(): boolean {
    return this.txnLogged >= this.journal.maxBlocks / 2 || this.txnBlocks >= TXN_MAX_BLOCKS
  }

  /**
   * Of txnBlocks, those the commit will log (at most): blocks allocated in this transaction
   * are written in place instead (BlockStore.inPlaceFirst), and take no room in the journal.
   */
  get txnLogged(): number {
    return this.store.loggedCount + this.dirtyInodeBlocks.size + this.dirtyRc.size
  }

  /**
   * Commits if the running transaction is large. Call only where the image is consistent.
   * Short of that, when the transaction has changed more than a quarter of the inodes the
   * cache keeps, their records are encoded into their inode-table blocks (flushInodes): a
   * transaction of up to 131,072 new files (TXN_MAX_BLOCKS of inode-table blocks) then holds
   * their 256-byte records in dirty blocks rather than as objects of about 1 KiB each.
   * `onlyAtJournalHalf`: commit only when the transaction must be split to fit the journal,
   * not at TXN_MAX_BLOCKS (a staged copy's last transaction, src/ops/stage.ts, is split only
   * then, as docs/FORMAT.md §10.2 says).
   */
  maybeCommit(onlyAtJournalHalf = false): void {
    checkInterrupt() // a consistent point: stopping here drops only the running transaction
    if (onlyAtJournalHalf ? this.txnLogged >= this.journal.maxBlocks / 2 : this.txnFull || this.pinnedMost) this.commit()
    else if (this.dirtyInodes.size > this.inodeCacheMax / 4) this.flushInodes()
  }

  /**
   * Encodes every changed inode (its extent map first) into its inode-table block, which joins
   * the running transaction's dirty blocks, and lets the cache trim as a commit does: the
   * Inode objects callers hold go stale here exactly as across a commit, and read their
   * record back from the dirty block. Nothing reaches the journal or the device; abort()
   * forgets the blocks with the rest of the transaction.
   */
  private flushInodes(): void {
    this.breakSavepoint()
    for (const f of this.flushers) f(this)
    for (const inode of this.dirtyInodes) if (inode.extentsDirty) storeExtents(this, inode)
    for (const inode of this.dirtyInodes) this.encodeInodeNow(inode)
    this.dirtyInodes.clear()
    this.dirtyInodeBlocks.clear()
    this.trimInodeCache()
  }

  get hasChanges(): boolean {
    return this.store.dirtyCount > 0 || this.dirtyInodes.size > 0 || this.dirtyRc.size > 0 || this.unsealed.size > 0 || this.sbDirty
  }

  /** Writes the running transaction to the journal and then in place. */
  commit(): void {
    if (this.readOnly) return
    // After a failed commit the journal and the device may hold part of a transaction: as a
    // journaling file system aborts its journal, nothing more is written in this session, and
    // the next open replays what was committed.
    if (this.failure) throw new PrismError('EIO', `an earlier write to the image failed (${this.failure.message}); nothing more is written until the image is opened again`)
    this.breakSavepoint()
    for (const f of this.flushers) f(this)
    if (!this.hasChanges) {
      this.trimInodeCache()
      return
    }
    for (const inode of this.dirtyInodes) if (inode.extentsDirty) storeExtents(this, inode)
    for (const inode of this.dirtyInodes) this.encodeInodeNow(inode)
    this.dirtyInodes.clear()
    this.dirtyInodeBlocks.clear()
    for (const idx of this.dirtyRc) sealRefcountBlock(this.store.getMut(this.sb.refcountStart + idx))
    this.dirtyRc.clear()
    for (const [block, seal] of this.unsealed) seal(this.store.getMut(block))
    this.unsealed.clear()
    this.sb.state = STATE_DIRTY
    this.sb.lastWrite = Date.now()
    encodeSuperblock(this.sb, this.store.getMut(0))
    this.sbDirty = false
    // The backup, when due, is written once the commit is durable and before the primary's
    // home write: a crash in between leaves it equal to the primary that replay writes, which
    // fsck accepts (pass 0), never a new primary beside an old backup.
    const backup = this.backupDue ? () => {
      this.dev.write(this.sb.blockCount - 1, encodeSuperblock(this.sb))
      this.dev.sync()
    } : undefined
    this.backupDue = false
    try {
      this.store.commit(backup)
    } catch (e) {
      this.failure = e as Error
      throw e
    }
    if (this.freedInTxn > 0 && this.noRunBelow.size > 0) this.lowerNoRunBelow()
    this.freedNow.clear()
    this.allocNow.clear()
    this.trimInodeCache()
    this.freedInTxn = 0
  }

  /** At commit: the blocks freed in the transaction become free; a run of R blocks may now start R - 1 below the lowest. */
  private lowerNoRunBelow(): void {
    let low = Infinity
    for (const [index, bits] of this.freedNow) {
      if (index * REFCOUNTS_PER_BLOCK >= low) continue
      const s = bits.indexOf(1)
      if (s >= 0) low = Math.min(low, index * REFCOUNTS_PER_BLOCK + s)
    }
    if (low === Infinity) return
    for (const [r, below] of this.noRunBelow) if (low - r + 1 < below) this.noRunBelow.set(r, Math.max(0, low - r + 1))
  }

  /** The table of reference counts was changed behind the allocator's back (fsck's repair): what it learnt of free runs goes. */
  forgetFreeRuns(): void {
    this.noRunBelow.clear()
  }

  /** the snapshots held (preserve): each is told of every block about to be overwritten */
  private readonly preservers: Preservation[] = []

  /**
   * Starts a snapshot (src/device/snapshot.ts): commits, checkpoints the journal and waits for
   * every write handed over, so that the image file itself holds the committed state, with
   * nothing left to replay; from then on, until the returned release is called, every block
   * the snapshot may read is handed to `sink` before the device overwrites it (the journal's
   * log and superblock, metadata written in place, file data, the superblock and its backup).
   *
   * The only blocks left out are those free at the snapshot: no state it holds references
   * them, so its reader never uses what they hold (any more than it uses a free block's stale
   * content now). That spares the log what the mounts write into free space meanwhile (new
   * files, copies made on write), which is most of what they write. A block in use at the
   * snapshot and freed since is not kept from reuse (quarantined): allocating it again and
   * writing it is an overwrite like any other, and its pre-image is saved then. Which blocks
   * were free at the snapshot is followed from allocation and freeing (take, decRef): one
   * allocated that was not freed since the snapshot was free at it ("fresh"); one freed that
   * is not fresh was in use at it.
   */
  preserve(sink: PreimageSink): () => void {
    if (this.readOnly) fail('EROFS', 'a snapshot is taken by the process that writes the image')
    this.commit()
    // A checkpoint syncs first, which waits for the writes handed over; without one, so does sync().
    if (this.journal.hasLog) this.journal.checkpoint()
    else this.dev.sync()
    const p: Preservation = {sink, fresh: new Map(), freed: new Map()}
    this.preservers.push(p)
    const read = (block: number, buf: Buffer): void => this.dev.read(block, buf)
    this.dev.beforeWrite = (block, count) => {
      for (const q of this.preservers) this.eachNotFresh(q, block, count, (b, n) => q.sink.preserve(b, n, read))
    }
    let held = true
    return () => {
      if (!held) return
      held = false
      this.preservers.splice(this.preservers.indexOf(p), 1)
      if (this.preservers.length === 0) this.dev.beforeWrite = null
    }
  }

  /** Calls fn for each run of [block, block + count) that is not fresh in `p` (was not free at its snapshot). */
  private eachNotFresh(p: Preservation, block: number, count: number, fn: (block: number, count: number) => void): void {
    const {dataStart, dataBlocks} = this.sb
    let runStart = -1
    for (let b = block; b < block + count; b++) {
      const rel = b - dataStart
      const fresh = rel >= 0 && rel < dataBlocks && p.fresh.get(Math.floor(rel / REFCOUNTS_PER_BLOCK))?.[rel % REFCOUNTS_PER_BLOCK] === 1
      if (!fresh && runStart < 0) runStart = b
      if (fresh && runStart >= 0) { fn(runStart, b - runStart); runStart = -1 }
    }
    if (runStart >= 0) fn(runStart, block + count - runStart)
  }

  /** Notes, for the snapshots held, data-area positions [rel, rel + n) allocated (true) or freed (false). */
  private noteForSnapshots(rel: number, n: number, allocated: boolean): void {
    for (const p of this.preservers) {
      for (let r = rel; r < rel + n; r++) {
        const index = Math.floor(r / REFCOUNTS_PER_BLOCK)
        const slot = r % REFCOUNTS_PER_BLOCK
        // Allocated and not freed since the snapshot: it was free then. Freed and not fresh: it was in use.
        const [mark, unless] = allocated ? [p.fresh, p.freed] : [p.freed, p.fresh]
        if (unless.get(index)?.[slot] === 1) continue
        let bits = mark.get(index)
        if (!bits) mark.set(index, bits = new Uint8Array(REFCOUNTS_PER_BLOCK))
        bits[slot] = 1
      }
    }
  }

  /** Forgets every change since the last commit. */
  abort(): void {
    this.breakSavepoint()
    this.store.abort()
    // Objects callers still hold read their inode again (its committed state) when next used.
    for (const inode of this.inodes.values()) inode.drop(this)
    this.inodes.clear()
    this.dirtyInodes.clear()
    this.dirtyInodeBlocks.clear()
    this.dirtyRc.clear()
    this.unsealed.clear()
    this.freedNow.clear()
    this.allocNow.clear()
    this.noRunBelow.clear()
    this.freedInTxn = 0
    this.pinnedOrphans.clear()
    this.filesetCache = null
    this.cloneCache = null
    this.xattrCache = null
    this.sbDirty = false
    this.backupDue = false
    try {
      this.sb = readSuperblockFrom(this.store.get(0)).sb
    } catch (e) {
      // Opened on the backup and nothing committed yet: block 0 is still the damaged primary.
      if (!(e instanceof FormatError) || !this.backupSbImage) throw e
      this.sb = decodeSuperblock(this.backupSbImage)
    }
  }

  /** Commits, checkpoints the journal, marks the image clean and releases the lock. */
  close(): void {
    if (this.closed) return
    this.closed = true
    try {
      if (!this.readOnly && (this.hasChanges || this.journal.committedSeqs.length > 0 || this.replayed > 0 || this.usedBackupSb)) {
        this.commit()
        this.journal.checkpoint(false)
        this.sb.state = STATE_CLEAN
        const sbBuf = encodeSuperblock(this.sb)
        this.dev.write(0, sbBuf)
        this.dev.sync()
        this.dev.write(this.sb.blockCount - 1, sbBuf)
        this.dev.sync()
      }
    } finally {
      this.dev.close()
    }
  }

  /**
   * Closes after the work failed with `e`: what it did since its last commit is dropped
   * (abort), and what it committed before and left on the orphan list (a staged copy's tree, a
   * partial clone: src/ops/stage.ts, src/clone/clone.ts) is freed now, so that the image is as
   * it was before the command and its journal is checkpointed: the next command has nothing to
   * replay or reap, and `df` counts nothing of it. When nothing was committed this is
   * closeAbort, which writes nothing. Not after an interrupt (EINTR: the process is leaving,
   * and the next writable open reaps) or damage (fsck's job), nor when freeing fails itself:
   * then the orphans stay for the next writable open, as after a crash.
   */
  closeAfterFailure(e: unknown): void {
    if (this.closed) return
    // (an error other than a PrismError is a fault of prism's: the image is left as it is)
    const reap = !this.readOnly && this.journal.committedSeqs.length > 0 && e instanceof PrismError && e.code !== 'EINTR' && e.code !== 'EIO' && !isDamage(e)
    if (!reap) return this.closeAbort()
    try {
      this.abort()
      if (this.sb.orphanHead !== 0) this.reapOrphansHook?.(this)
      this.close()
    } catch {
      this.closeAbort() // (nothing more if close() itself failed: it released the device)
    }
  }

  /** Releases the device without committing (after a failure). */
  closeAbort(): void {
    if (this.closed) return
    this.closed = true
    try {
      this.abort()
    } finally {
      this.dev.close()
    }
  }

  // ---------------------------------------------------------------- inodes

  inodeLocation(ino: number): {block: number, off: number} {
    return {block: this.sb.inodeTableStart + Math.floor(ino / INODES_PER_BLOCK), off: (ino % INODES_PER_BLOCK) * INODE_SIZE}
  }

  validIno(ino: number): boolean {
    return Number.isInteger(ino) && ino >= 1 && ino <= this.sb.inodeCount
  }

  /** The inode `ino`, which must be in use. */
  iget(ino: number): Inode {
    const cached = this.inodes.get(ino)
    if (cached) {
      cached.used = true
      return cached
    }
    const buf = this.usedSlot(ino)
    const inode = new Inode(ino, this.decodeAt(buf, (ino % INODES_PER_BLOCK) * INODE_SIZE, ino))
    this.inodes.set(ino, inode)
    // A read-only open never commits: it trims here, which is safe as nothing it holds changes.
    if (this.readOnly && this.inodes.size > this.inodeCacheMax) this.trimInodeCache()
    return inode
  }

  /** The inode-table block holding `ino`, which must be a valid number of an inode in use. */
  private usedSlot(ino: number): Buffer {
    if (!this.validIno(ino)) fail('EBADIMAGE', `inode number ${ino} out of range; run 'prism fsck'`)
    const buf = this.store.get(this.sb.inodeTableStart + Math.floor(ino / INODES_PER_BLOCK))
    if (inodeSlotFree(buf, (ino % INODES_PER_BLOCK) * INODE_SIZE)) fail('EBADIMAGE', `inode ${ino} is referenced but free; run 'prism fsck'`)
    return buf
  }

  /**
   * Inode `ino`'s record in place in the inode table, checked as iget checks it (the same
   * errors), without building or caching an Inode: for walks over whole trees that read a few
   * fields of each inode (src/fs/space.ts; format/inode.ts INODE_FIELD). Sets `at` and returns
   * true; returns false when an Inode object holds the inode (its current state, which the
   * table may not have yet), or when `inPlace` says the record is not one to read in place
   * (it sees the record before any check, so it may only choose: the caller then uses iget,
   * which checks it the same way). `at.buf` must not be changed.
   */
  inodeInTable(ino: number, at: {buf: Buffer, off: number}, inPlace: (buf: Buffer, off: number) => boolean): boolean {
    if (this.inodes.has(ino)) return false
    const buf = this.usedSlot(ino)
    const off = (ino % INODES_PER_BLOCK) * INODE_SIZE
    if (!inPlace(buf, off)) return false
    try {
      checkInode(buf, off, ino)
    } catch (e) {
      if (e instanceof FormatError) fail('EBADIMAGE', `${e.message}; run 'prism fsck'`)
      throw e
    }
    at.buf = buf
    at.off = off
    return true
  }

  /**
   * Reads the inode-table blocks that hold `inos` into the block cache, one device read per
   * run of neighbouring blocks (gaps of a few blocks are read through: a read costs more than
   * 32 KiB), instead of one read per cache miss as a walk would meet them. Numbers out of
   * range are left to iget to refuse.
   */
  prefetchInodes(inos: ArrayLike<number>): void {
    const blocks: number[] = []
    for (let i = 0; i < inos.length; i++) if (this.validIno(inos[i])) blocks.push(Math.floor(inos[i] / INODES_PER_BLOCK))
    if (blocks.length === 0) return
    blocks.sort((a, b) => a - b)
    const GAP = 8
    let start = blocks[0]
    let end = start + 1
    for (let i = 1; i <= blocks.length; i++) {
      const b = blocks[i]
      if (i < blocks.length && b - end <= GAP && b + 1 - start <= 256) { if (b + 1 > end) end = b + 1; continue }
      this.store.prefetch(this.sb.inodeTableStart + start, end - start)
      if (i < blocks.length) { start = b; end = b + 1 }
    }
  }

  private decodeAt(buf: Buffer, off: number, ino: number): InodeRecord {
    try {
      return decodeInode(buf, off, ino)
    } catch (e) {
      if (e instanceof FormatError) fail('EBADIMAGE', `${e.message}; run 'prism fsck'`)
      throw e
    }
  }

  /**
   * A stale Inode object (one the cache let go, at a commit, when it was clean) is used again:
   * the live object for its inode, if there is one, or the object itself made live again,
   * its record read from the inode table, which holds its last committed state.
   */
  reattach(stale: Inode): Inode {
    const live = this.inodes.get(stale.ino)
    if (live && live !== stale) return live
    const {block, off} = this.inodeLocation(stale.ino)
    const buf = this.store.get(block)
    stale.revive(inodeSlotFree(buf, off) ? emptyInode() : this.decodeAt(buf, off, stale.ino))
    this.inodes.set(stale.ino, stale)
    return stale
  }

  /**
   * An inode's type, size, generation and data_version, read from the inode table without
   * building or caching an Inode (an incremental scan of 100,000 unchanged files needs
   * nothing else). With `verify` false the inode's checksum is not checked: for a caller
   * that only compares the version with one it remembers, and decodes the inode in full
   * (checksum and all) before using anything else of it. An inode held in memory, or
   * anything unusual, goes through iget and its errors.
   */
  inodeVersion(ino: number, out: InodeVersion, verify = true): InodeVersion {
    const held = this.inodes.get(ino)
    if (!held && this.validIno(ino)) {
      const block = this.sb.inodeTableStart + Math.floor(ino / INODES_PER_BLOCK)
      if (peekVersion(this.store.get(block), (ino % INODES_PER_BLOCK) * INODE_SIZE, out, verify)) return out
    }
    const r = (held ?? this.iget(ino)).r
    out.type = r.mode & S_IFMT
    out.size = r.size
    out.generation = r.generation
    out.dataVersion = r.dataVersion
    return out
  }

  /**
   * inodeVersion (unverified) for each of `inos` (increasing): fills `generations` and
   * `versions` and returns the sum of the sizes. The inode table is read in runs, around
   * the cache (readRun); inodes held in memory, and anything unusual, go through iget. An
   * inode the damage keeps from being read (out of range, free, failing its checks) gets
   * version -1, which matches nothing remembered: its reader meets the damage itself.
   */
  inodeVersions(inos: Uint32Array, generations: Uint32Array, versions: Float64Array): number {
    const v: InodeVersion = {type: 0, size: 0, generation: 0, dataVersion: 0}
    const slow = (ino: number): void => {
      try {
        this.inodeVersion(ino, v)
      } catch (e) {
        if (!isDamage(e)) throw e
        v.type = 0
        v.size = 0
        v.generation = 0
        v.dataVersion = -1
      }
    }
    const scratch = Buffer.allocUnsafe(256 * BLOCK_SIZE)
    let total = 0
    let i = 0
    while (i < inos.length) {
      if (!this.validIno(inos[i])) {
        slow(inos[i])
        generations[i] = v.generation
        versions[i] = v.dataVersion
        i++
        continue
      }
      // The table blocks from this inode's up to the last inode of the list within 256 blocks.
      const first = Math.floor(inos[i] / INODES_PER_BLOCK)
      let j = i
      while (j + 1 < inos.length && this.validIno(inos[j + 1]) && Math.floor(inos[j + 1] / INODES_PER_BLOCK) < first + 256) j++
      const last = Math.floor(inos[j] / INODES_PER_BLOCK)
      let k = i
      this.store.readRun(this.sb.inodeTableStart + first, last - first + 1, scratch, (block, buf) => {
        const t = block - this.sb.inodeTableStart
        for (; k <= j && Math.floor(inos[k] / INODES_PER_BLOCK) === t; k++) {
          const ino = inos[k]
          if (this.inodes.has(ino) || !peekVersion(buf, (ino % INODES_PER_BLOCK) * INODE_SIZE, v, false)) slow(ino)
          generations[k] = v.generation
          versions[k] = v.dataVersion
          total += v.size
        }
      })
      i = j + 1
    }
    return total
  }

  /** The inode if slot `ino` is in range and in use, else null (no error). */
  tryIget(ino: number): Inode | null {
    if (!this.validIno(ino)) return null
    if (!this.inodes.has(ino)) {
      const {block, off} = this.inodeLocation(ino)
      if (inodeSlotFree(this.store.get(block), off)) return null
    }
    return this.iget(ino)
  }

  /**
   * After a commit (or flushInodes), when the cache holds more than INODE_CACHE_MAX inodes: lets go of the
   * least recently used down to INODE_CACHE_LOW, in insertion order with a second chance for
   * those used since the last pass (a clock). Amortized O(1) per inode read. Only clean
   * inodes go, and only here (never inside a read), so a caller's Inode object can go stale
   * only across a commit, and then forwards to the live one (fs/inode.ts).
   */
  private trimInodeCache(): void {
    let excess = this.inodes.size - Math.floor(this.inodeCacheMax * 3 / 4)
    if (this.inodes.size <= this.inodeCacheMax) return
    for (const [ino, inode] of this.inodes) {
      if (excess <= 0) break
      if (this.dirtyInodes.has(inode)) continue
      this.inodes.delete(ino)
      if (inode.used) {
        // Used since the last pass: once more round (it is met again at the end of the walk).
        inode.used = false
        this.inodes.set(ino, inode)
        continue
      }
      inode.drop(this)
      excess--
    }
  }

  /** Inodes held in the cache (for tests and benchmarks). */
  get cachedInodes(): number {
    return this.inodes.size
  }

  /** Marks an inode changed in this transaction; `atimeOnly` when a read moved its access time alone. */
  idirty(inode: Inode, atimeOnly = false): void {
    inode = inode.live()
    this.dirtyInodes.add(inode)
    const b = Math.floor(inode.ino / INODES_PER_BLOCK)
    if (this.sp && !this.dirtyInodeBlocks.has(b)) this.sp.inodeBlocks.push(b)
    this.dirtyInodeBlocks.add(b)
    this.observer?.inodeChanged(inode.ino, atimeOnly)
  }

  private encodeInodeNow(inode: Inode): void {
    const {block, off} = this.inodeLocation(inode.ino)
    encodeInode(inode.r, this.store.getMut(block), off)
  }

  /** Allocates a fresh inode (share count 1, link count 0) near `goal`. */
  ialloc(mode: number, goal = this.sb.inodeHint): Inode {
    if (this.sb.freeInodes === 0) this.noInodes()
    const n = this.sb.inodeCount
    // The goal keeps related inodes together when its slot is free; otherwise continue from
    // the running hint, so allocation never rescans the used part of the table.
    const atGoal = goal >= 1 && goal <= n && !this.inodeSlotUsed(goal)
    let ino = atGoal ? goal : this.sb.inodeHint
    if (ino < 1 || ino > n) ino = 1
    for (let tries = 0; tries <= n; tries++, ino = ino >= n ? 1 : ino + 1) {
      if (this.inodeSlotUsed(ino)) continue
      const r = emptyInode()
      r.generation = this.sb.nextGeneration
      this.sb.nextGeneration = (this.sb.nextGeneration + 1) >>> 0 || 1
      r.mode = mode
      r.share = 1
      const inode = new Inode(ino, r)
      this.inodes.set(ino, inode)
      this.idirty(inode)
      this.sb.freeInodes--
      this.markSbDirty()
      // A search from the hint passed only used slots: the next search may start after this one.
      if (!atGoal || ino === this.sb.inodeHint) this.sb.inodeHint = ino + 1
      return inode
    }
    this.noInodes()
  }

  private noInodes(): never {
    fail('ENOSPC', `no free inodes (the image has ${this.sb.inodeCount} in all); make a larger image, or one with more --inodes`)
  }

  inodeSlotUsed(ino: number): boolean {
    const c = this.inodes.get(ino)
    if (c) return c.r.mode !== 0
    const {block, off} = this.inodeLocation(ino)
    return !inodeSlotFree(this.store.get(block), off)
  }

  /** Frees an inode slot; its blocks must already be released. */
  ifree(inode: Inode): void {
    inode.r = emptyInode()
    inode.extents = new ExtentMap()
    inode.treeBlocks = []
    inode.extentsDirty = false
    this.idirty(inode)
    this.sb.freeInodes++
    this.markSbDirty()
    if (inode.ino < this.sb.inodeHint) this.sb.inodeHint = inode.ino
  }

  // ---------------------------------------------------------------- reference counts

  private rcBlock(block: number): {index: number, slot: number} {
    if (block < this.sb.dataStart || block >= this.sb.dataStart + this.sb.dataBlocks) {
      fail('EBADIMAGE', `block ${block} is outside the data area; run 'prism fsck'`)
    }
    const i = block - this.sb.dataStart
    return {index: Math.floor(i / REFCOUNTS_PER_BLOCK), slot: i % REFCOUNTS_PER_BLOCK}
  }

  private rcBuf(index: number): Buffer {
    const b = this.sb.refcountStart + index
    const buf = this.store.get(b)
    if (!this.store.isDirty(b) && !this.store.verifyOnce(buf, this.sb.incompat & INCOMPAT_SPARSE_REFCOUNT ? refcountBlockOkSparse : refcountBlockOk)) {
      fail('EBADIMAGE', `refcount table block ${index} checksum mismatch; run 'prism fsck --repair'`)
    }
    return buf
  }

  refcount(block: number): number {
    const {index, slot} = this.rcBlock(block)
    return this.rcBuf(index)[slot]
  }

  /**
   * Calls fn(first, counts) for blocks [block, block + n), a refcount-table block's part at a
   * time: `counts` holds the reference counts of blocks first.. (a view: read only).
   */
  forEachRefcounts(block: number, n: number, fn: (first: number, counts: Uint8Array) => void): void {
    for (let b = block; b < block + n;) {
      const lim = Math.min(block + n, b + REFCOUNTS_PER_BLOCK - ((b - this.sb.dataStart) % REFCOUNTS_PER_BLOCK))
      fn(b, this.refcountsOf(b, lim - b))
      b = lim
    }
  }

  /** The reference counts of blocks [block, block + n), which lie in one refcount-table block (a view: read only). */
  refcountsOf(block: number, n: number): Uint8Array {
    const {index, slot} = this.rcBlock(block)
    this.rcBlock(block + n - 1)
    if (slot + n > REFCOUNTS_PER_BLOCK) throw new Error('refcountsOf: the blocks span two table blocks')
    return this.rcBuf(index).subarray(slot, slot + n)
  }

  private setRc(block: number, v: number): void {
    const {index, slot} = this.rcBlock(block)
    this.rcBuf(index)
    this.store.getMut(this.sb.refcountStart + index)[slot] = v
    this.rcDirty(index)
  }

  /** Adds a reference to a block. Returns false (and changes nothing) when the counter is full. */
  incRef(block: number): boolean {
    const c = this.refcount(block)
    if (c === 0) fail('EBADIMAGE', `block ${block} is in use but marked free; run 'prism fsck --repair'`)
    if (c >= REFCOUNT_MAX) return false
    this.setRc(block, c + 1)
    return true
  }

  /** Drops a reference; a block that reaches 0 is free, but not reusable before this transaction commits. */
  decRef(block: number): void {
    const c = this.refcount(block)
    if (c === 0) fail('EBADIMAGE', `block ${block} freed twice; run 'prism fsck --repair'`)
    this.setRc(block, c - 1)
    if (c === 1) {
      const {index, slot} = this.rcBlock(block)
      this.setTxnBits(this.freedNow, index, slot, 1)
      if (this.preservers.length > 0) this.noteForSnapshots(block - this.sb.dataStart, 1, false)
      this.freedInTxn++
      this.sb.freeBlocks++
      this.markSbDirty()
    }
  }

  /**
   * Adds a reference to each block of [p, p+n). Blocks whose counter is already at the
   * maximum are left alone and returned, for the caller to copy (paper §3.5).
   */
  incRefRun(p: number, n: number): number[] {
    const saturated: number[] = []
    const end = p + n
    let b = p
    while (b < end) {
      const {index, slot} = this.rcBlock(b)
      this.rcBuf(index)
      const buf = this.store.getMut(this.sb.refcountStart + index)
      const lim = Math.min(REFCOUNTS_PER_BLOCK, slot + (end - b))
      for (let s = slot; s < lim; s++) {
        const c = buf[s]
        if (c === 0) fail('EBADIMAGE', `block ${b + s - slot} is in use but marked free; run 'prism fsck --repair'`)
        if (c >= REFCOUNT_MAX) saturated.push(b + s - slot)
        else buf[s] = c + 1
      }
      this.rcDirty(index)
      b += lim - slot
    }
    return saturated
  }

  decRefRun(p: number, n: number): void {
    for (let i = 0; i < n; i++) this.decRef(p + i)
  }

  /**
   * Blocks at the start of the data area that directory blocks and extent-tree nodes take
   * first, so that a walk of every directory (fsck, scan, clone) reads them in a few large
   * reads instead of one per directory (docs/FORMAT.md §4.3). File data goes there only when
   * the rest of the image is full. The placement is policy, not format: any block is valid.
   */
  get metaZoneBlocks(): number {
    const {dataBlocks} = this.sb
    return Math.min(dataBlocks, Math.max(64, Math.floor(dataBlocks / META_ZONE_SHARE)))
  }

  /**
   * Allocates up to `want` contiguous free blocks, preferring `goal`, each with count 1.
   * Returns the first block and how many were taken (at least 1). `meta` asks for a block
   * of metadata (a directory block, an extent-tree node): the metadata zone first. `minRun`
   * (file data only) makes a search that does not start at the goal skip free runs shorter
   * than that, while a longer one exists (the locality policy starts new runs of data on free
   * stretches, FORMAT.md §4.3).
   */
  allocRun(want: number, goal?: number, meta = false, minRun = 1): {p: number, n: number} {
    if (this.sb.freeBlocks === 0) fail('ENOSPC', 'no free blocks left in the image')
    const {dataStart, dataBlocks} = this.sb
    const zone = this.metaZoneBlocks
    // Start at the goal (for contiguity) only if it is free; otherwise at the running hint.
    const g = goal !== undefined && goal >= dataStart && goal < dataStart + dataBlocks && this.refcount(goal) === 0 ? goal - dataStart : -1
    let run: {rel: number, n: number} | null = null
    if (meta) {
      const hint = Math.min(this.metaHint, zone)
      run = (g >= 0 && g < zone ? this.findFree(g, zone, want) : null) ?? this.findFree(hint, zone, want) ?? this.findFree(0, hint, want)
    }
    if (!run && minRun > 1 && g < 0) run = this.findDataRun(this.blockHint, want, minRun)
    if (!run) {
      // File data leaves the metadata zone alone while there is room elsewhere.
      let start = g >= 0 ? g : this.blockHint
      if (start >= dataBlocks) start = 0
      if (g < 0 && start < zone) start = zone
      // (a search from the hint round the data area: one that finds none below some place
      // remembers it, findDataRun; a transaction's freed blocks are not free until it commits,
      // and a search once read through all of them at every allocation)
      run = (start >= zone ? this.findDataRun(start, want, 1) : this.findFree(start, dataBlocks, want)) ?? this.findFree(0, Math.min(start, zone), want)
      if (!run) fail('ENOSPC', 'no free blocks left in the image')
    }
    return this.take(run.rel, run.n, meta)
  }

  /**
   * Allocates up to `want` contiguous free blocks inside [lo, hi) (absolute block numbers,
   * clipped to the data area outside the metadata zone), the first run of at least `minRun`
   * that fits; null if none.
   */
  allocIn(lo: number, hi: number, want: number, minRun = 1): {p: number, n: number} | null {
    if (this.sb.freeBlocks === 0) return null
    const {dataStart, dataBlocks} = this.sb
    const from = Math.max(lo - dataStart, this.metaZoneBlocks)
    const to = Math.min(hi - dataStart, dataBlocks)
    if (from >= to) return null
    const run = this.findFree(from, to, want, minRun)
    return run ? this.take(run.rel, run.n, false) : null
  }

  /**
   * Allocates exactly `n` contiguous blocks of file data: at `goal` when the n blocks there
   * are free, else in the first free run of at least n + `slack` blocks (so that `slack`
   * free blocks stay after them), else of n. Null when no run of n is free.
   */
  allocExact(n: number, goal: number | undefined, slack = 0): number | null {
    if (this.sb.freeBlocks < n) return null
    const {dataStart, dataBlocks} = this.sb
    const zone = this.metaZoneBlocks
    if (goal !== undefined && goal - dataStart >= zone && goal - dataStart + n <= dataBlocks) {
      const at = this.findFree(goal - dataStart, goal - dataStart + n, n)
      if (at && at.rel === goal - dataStart && at.n === n) return this.take(at.rel, n, false).p
    }
    const run = this.findDataRun(this.blockHint, n, n + slack) ?? (slack > 0 ? this.findDataRun(this.blockHint, n, n) : null)
    return run && run.n === n ? this.take(run.rel, n, false).p : null
  }

  /**
   * The start of the highest stretch of at least `size` free data blocks (outside the
   * metadata zone); -1 if there is none. Nothing is allocated: a file's overflow zones
   * (FORMAT.md §6.6) are taken a run at a time, at the top of the free space, away from where
   * new data goes (the allocator's hint climbs from the bottom).
   */
  freeStretchFromTop(size: number): number {
    const {dataStart, dataBlocks} = this.sb
    const zone = this.metaZoneBlocks
    let run = 0
    for (let index = Math.floor((dataBlocks - 1) / REFCOUNTS_PER_BLOCK); index >= 0; index--) {
      const buf = this.rcBuf(index)
      const pinned = this.freedNow.get(index)
      const base = index * REFCOUNTS_PER_BLOCK
      for (let slot = Math.min(REFCOUNTS_PER_BLOCK, dataBlocks - base) - 1; slot >= 0; slot--) {
        if (base + slot < zone) return -1
        if (buf[slot] === 0 && !(pinned && pinned[slot])) {
          if (++run >= size) return dataStart + base + slot
        } else run = 0
      }
    }
    return -1
  }

  /** A free data run of at least minRun blocks (taking up to want), from `from` round the data area, outside the zone first. */
  private findDataRun(from: number, want: number, minRun: number): {rel: number, n: number} | null {
    const {dataBlocks} = this.sb
    const zone = this.metaZoneBlocks
    const start = from >= dataBlocks || from < zone ? zone : from
    // (none starts below w: the search skips [zone, w))
    const w = Math.max(zone, this.noRunBelow.get(minRun) ?? zone)
    const up = this.findFree(Math.max(start, w), dataBlocks, want, minRun)
    if (up) {
      if (start <= w) this.learnNoRun(minRun, up.rel)
      return up
    }
    if (start <= w) { this.learnNoRun(minRun, dataBlocks); return null }
    const down = this.findFree(w, start, want, minRun)
    // (none: a run that starts below `start` but reaches past it was cut there, and may be
    // long enough for a search that goes on past it)
    this.learnNoRun(minRun, down ? down.rel : Math.max(w, start - minRun + 1))
    return down
  }

  /** No free run of minRun blocks starts below `below` (a search from the last such position found the first at `below`, or none). */
  private learnNoRun(minRun: number, below: number): void {
    if (this.noRunBelow.size >= 64 && !this.noRunBelow.has(minRun)) this.noRunBelow.clear()
    this.noRunBelow.set(minRun, below)
  }

  /** Takes the free run at data-area position rel (count 1 each) and moves the hints past it. */
  private take(rel: number, n: number, meta: boolean): {p: number, n: number} {
    const {dataStart} = this.sb
    const zone = this.metaZoneBlocks
    const index = Math.floor(rel / REFCOUNTS_PER_BLOCK)
    const z = rel % REFCOUNTS_PER_BLOCK
    this.store.getMut(this.sb.refcountStart + index).fill(1, z, z + n)
    this.rcDirty(index)
    this.setTxnBits(this.allocNow, index, z, n)
    if (this.preservers.length > 0) this.noteForSnapshots(rel, n, true)
    this.sb.freeBlocks -= n
    this.markSbDirty()
    if (meta && rel < zone) this.metaHint = rel + n
    else this.blockHint = rel + n
    return {p: dataStart + rel, n}
  }

  /** True when file data may be allocated at `block` now: a free data block outside the metadata zone, not freed in this transaction. */
  allocatable(block: number): boolean {
    const i = block - this.sb.dataStart
    if (i < this.metaZoneBlocks || i >= this.sb.dataBlocks) return false
    const index = Math.floor(i / REFCOUNTS_PER_BLOCK)
    const slot = i % REFCOUNTS_PER_BLOCK
    return this.rcBuf(index)[slot] === 0 && this.freedNow.get(index)?.[slot] !== 1
  }

  /** True when `block` was allocated in the running transaction (no committed state references it). */
  allocatedNow(block: number): boolean {
    const i = block - this.sb.dataStart
    return this.allocNow.get(Math.floor(i / REFCOUNTS_PER_BLOCK))?.[i % REFCOUNTS_PER_BLOCK] === 1
  }

  /**
   * The first free block in data-area positions [from, to) that this transaction has not
   * freed, extended to a run of up to `want` (within one refcount block); null if none.
   * With `minRun`, free runs shorter than minRun (within a table block) are passed over.
   */
  private findFree(from: number, to: number, want: number, minRun = 1): {rel: number, n: number} | null {
    if (from >= to) return null
    let index = Math.floor(from / REFCOUNTS_PER_BLOCK)
    let slot = from % REFCOUNTS_PER_BLOCK
    const reach = Math.max(want, minRun)
    for (; index * REFCOUNTS_PER_BLOCK < to; index++, slot = 0) {
      const buf = this.rcBuf(index)
      const pinned = this.freedNow.get(index)
      const base = index * REFCOUNTS_PER_BLOCK
      const limit = Math.min(REFCOUNTS_PER_BLOCK, to - base)
      while (slot < limit) {
        const z = buf.indexOf(0, slot)
        if (z < 0 || z >= limit) break
        if (pinned && pinned[z]) { slot = z + 1; continue }
        // Extend the run as far as it goes (within this table block and the range).
        let e = z + 1
        while (e < limit && e - z < reach && buf[e] === 0 && !(pinned && pinned[e])) e++
        if (e - z >= minRun) return {rel: base + z, n: Math.min(e - z, want)}
        slot = e
      }
    }
    return null
  }

  /** Recomputes the free counters from the tables (after using the backup superblock). */
  recountFree(): void {
    // Holes of the refcount table (never used) are all free: only the parts with data are read.
    let freeBlocks = this.sb.dataBlocks
    const tables = Math.ceil(this.sb.dataBlocks / REFCOUNTS_PER_BLOCK)
    for (const [a, b] of this.dataRunsOf(this.sb.refcountStart, tables)) {
      for (let t = a; t < b; t += 256) {
        this.store.prefetch(t, Math.min(256, b - t))
        for (let i = t - this.sb.refcountStart; i < Math.min(b, t + 256) - this.sb.refcountStart; i++) {
          const buf = this.store.get(this.sb.refcountStart + i)
          const limit = Math.min(REFCOUNTS_PER_BLOCK, this.sb.dataBlocks - i * REFCOUNTS_PER_BLOCK)
          for (let s = 0; s < limit; s++) if (buf[s] !== 0) freeBlocks--
        }
      }
    }
    let freeInodes = this.sb.inodeCount
    const orphans: number[] = []
    for (const [a, b] of this.dataRunsOf(this.sb.inodeTableStart, this.sb.inodeTableBlocks)) {
      for (let t = a; t < b; t += 256) {
        this.store.prefetch(t, Math.min(256, b - t))
        for (let blk = t; blk < Math.min(b, t + 256); blk++) {
          const buf = this.store.get(blk)
          for (let s = 0; s < INODES_PER_BLOCK; s++) {
            const ino = (blk - this.sb.inodeTableStart) * INODES_PER_BLOCK + s
            if (ino < 1 || ino > this.sb.inodeCount || inodeSlotFree(buf, s * INODE_SIZE)) continue
            freeInodes--
            if (buf.readUInt16LE(s * INODE_SIZE + 2) & IF_ORPHAN) orphans.push(ino)
          }
        }
      }
    }
    let maxId = 0
    let maxClone = this.sb.cloneClock
    let expanding = false
    const tableBlocks: number[] = []
    for (const [a, b] of this.dataRunsOf(this.sb.filesetTableStart, this.sb.filesetTableBlocks)) for (let x = a; x < b; x++) tableBlocks.push(x)
    try {
      for (const b of filesetTableBlocks(this)) tableBlocks.push(b)
    } catch (e) {
      if (!(e instanceof PrismError)) throw e // a damaged table file is left to fsck
    }
    for (const block of tableBlocks) {
      const buf = this.store.get(block)
      for (let s = 0; s < FILESETS_PER_BLOCK; s++) {
        maxId = Math.max(maxId, buf.readUInt32LE(s * 256))
        maxClone = Math.max(maxClone, buf.readUInt32LE(s * 256 + 0x18))
        // The backup may predate an async clone (its expanding-clones bit is then stale).
        if (buf.readUInt32LE(s * 256) !== 0 && (buf[s * 256 + 0x0c] === FS_EXPANDING || buf[s * 256 + 0x0c] === FS_DELETING)) expanding = true
      }
    }
    // Which clone-state files are version 2 is not looked up here: the bit that keeps older
    // builds away from them is set whenever a clone is in flight (fsck allows that).
    if (expanding) this.sb.incompat |= INCOMPAT_EXPANDING | INCOMPAT_EXCLUDE_RULES
    this.sb.freeBlocks = freeBlocks
    this.sb.freeInodes = freeInodes
    // The backup's orphan list may be stale: chain every readable inode flagged as an
    // orphan (a damaged one is left to fsck rather than failing the open).
    const readable: Inode[] = []
    for (const ino of orphans) {
      try {
        readable.push(this.iget(ino))
      } catch (e) {
        if (!(e instanceof PrismError)) throw e
      }
    }
    this.sb.orphanHead = readable[0]?.ino ?? 0
    readable.forEach((inode, i) => {
      inode.r.nextOrphan = readable[i + 1]?.ino ?? 0
      this.idirty(inode)
    })
    this.sb.nextFilesetId = Math.max(this.sb.nextFilesetId, maxId + 1)
    this.sb.cloneClock = maxClone
    this.markSbDirty()
  }

  /**
   * The runs [first, end) of blocks in [start, start + count) that may hold something: the
   * device's data runs (the rest are holes of the sparse image, all zeros) plus any block
   * held in memory (changed in this transaction, or read from an unreplayed journal).
   */
  dataRunsOf(start: number, count: number): Array<[number, number]> {
    const runs = this.dev.dataRuns?.(start, count) ?? [[start, start + count]]
    const held = this.store.heldIn(start, start + count)
    if (held.length === 0) return runs
    const marks: Array<[number, number]> = [...runs, ...held.map((b): [number, number] => [b, b + 1])].sort((x, y) => x[0] - y[0])
    const out: Array<[number, number]> = []
    for (const [a, b] of marks) {
      const last = out[out.length - 1]
      if (last && a <= last[1]) last[1] = Math.max(last[1], b)
      else out.push([a, b])
    }
    return out
  }

  // ---------------------------------------------------------------- orphans

  /** Puts an unlinked inode on the orphan list: it is freed even if we crash first. */
  addOrphan(inode: Inode): void {
    if (inode.r.flags & IF_ORPHAN) return
    inode.r.flags |= IF_ORPHAN
    inode.r.nextOrphan = this.sb.orphanHead
    this.sb.orphanHead = inode.ino
    this.idirty(inode)
    this.markSbDirty()
  }

  removeOrphan(inode: Inode): void {
    if (!(inode.r.flags & IF_ORPHAN)) return
    if (this.sb.orphanHead === inode.ino) {
      this.sb.orphanHead = inode.r.nextOrphan
      this.markSbDirty()
    } else {
      let prev = this.iget(this.sb.orphanHead)
      for (let guard = 0; prev.r.nextOrphan !== inode.ino; guard++) {
        if (prev.r.nextOrphan === 0 || guard > this.sb.inodeCount) fail('EBADIMAGE', 'orphan list is damaged; run prism fsck --repair')
        prev = this.iget(prev.r.nextOrphan)
      }
      prev.r.nextOrphan = inode.r.nextOrphan
      this.idirty(prev)
    }
    inode.r.flags &= ~IF_ORPHAN
    inode.r.nextOrphan = 0
    this.idirty(inode)
  }

  /** Bumps and returns the global logical clone clock (paper §3.3). */
  tickCloneClock(): number {
    this.sb.cloneClock = (this.sb.cloneClock + 1) >>> 0
    this.markSbDirty()
    return this.sb.cloneClock
  }
}

function readSuperblockFrom(buf: Buffer): {sb: Superblock} {
  return {sb: decodeSuperblock(buf)}
}

/** Reads the primary superblock, falling back to the backup in the image's last block. */
function readSuperblock(dev: BlockDevice): {sb: Superblock, backup: boolean, problem?: string} {
  // (a file shorter than one block cannot hold a superblock, whatever its first bytes: as fsck says it)
  if (dev.blocks < 1) throw new PrismError('EBADIMAGE', 'not a Prism image (smaller than one 4 KiB block)')
  const buf = Buffer.alloc(BLOCK_SIZE)
  dev.read(0, buf)
  try {
    return {sb: decodeSuperblock(buf), backup: false}
  } catch (e) {
    if (!(e instanceof FormatError)) throw e
    if (e.field === 'version' && hasSbMagic(buf)) throw new PrismError('EBADIMAGE', e.message)
    const last = Buffer.alloc(BLOCK_SIZE)
    if (dev.blocks > 1) dev.read(dev.blocks - 1, last)
    try {
      const sb = decodeSuperblock(last)
      if (sb.blockCount !== dev.blocks) throw e
      return {sb, backup: true, problem: e.message}
    } catch (e2) {
      if (e2 instanceof FormatError && e2.field === 'version' && hasSbMagic(last)) throw new PrismError('EBADIMAGE', e2.message)
      if (!hasSbMagic(buf) && !hasSbMagic(last)) throw new PrismError('EBADIMAGE', 'not a Prism image')
      throw new PrismError('EBADIMAGE', `superblock and its backup are both damaged (${e.message})`)
    }
  }
}

export {planGeometry}

/** A running savepoint (Volume.savepoint): end it once, either way. */
export interface Savepoint {
  /** Keeps what was done since the savepoint (it stays in the running transaction). */
  release(): void
  /**
   * Puts the running transaction back as it was at the savepoint. False when it could not: a
   * commit inside it (what came before the commit stays).
   */
  rollback(): boolean
}

const NONE: number[] = []

/** What a savepoint keeps to roll back (Volume.savepoint); it is also the Savepoint handed out. */
class SavepointState implements Savepoint {
  /** a commit, flushInodes or abort ran inside it: nothing to undo any more */
  broken = false
  /** each Inode object used, with its state when it had uncommitted changes (else null) */
  inodes: Array<{inode: Inode, state: InodeState | null}> = []
  /** what others asked to undo (atRollback), in order */
  undo: Array<() => void> = []
  /** inode-table blocks and refcount-table blocks first made dirty in the savepoint */
  inodeBlocks: number[] = []
  rc: number[] = []
  /** blocks given a seal in the savepoint, with the seal they had before (or none) */
  unsealed: Map<number, ((buf: Buffer) => void) | undefined> | null = null
  /** slots of freedNow and allocNow set in the savepoint (setTxnBits) */
  bits: Array<{map: Map<number, Uint8Array>, index: number, slot: number, n: number}> = []

  constructor(
    private readonly vol: Volume,
    /** the volume's state then (Volume.savepoint) */
    readonly sb: Superblock,
    readonly sbDirty: boolean,
    readonly backupDue: boolean,
    readonly freedInTxn: number,
    readonly blockHint: number,
    readonly metaHint: number,
    readonly pinned: number[],
    readonly kept: number[],
  ) {}

  release(): void { this.vol.endSavepoint(this, false) }
  rollback(): boolean { return this.vol.endSavepoint(this, true) }
}
