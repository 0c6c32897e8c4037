// Cloning (the Prism paper §3.2): a new fileset, or a subtree grafted into an existing one,
// made from a fileset or subtree by sharing every file's inode. Directories are made anew;
// files and symlinks with one name are shared (their share count rises by one); a file with
// several names is never shared: the clone gets one private copy of it, whose blocks are
// shared through the reference-count table, carrying the clone's own link count. That
// invariant (nlink > 1 implies share == 1) is what keeps hard-link semantics across clones
// (paper Fig. 4) without any per-fileset translation table. A graft into an existing
// fileset copies inodes (never blocks) for the same reason: that fileset may already hold them.
//
// Selective cloning: --exclude patterns (.gitignore's rules, src/fs/match.ts), the
// nonclonable flag, and --replace. A pattern that matches nothing is a warning in every mode:
// an async or lazy clone finds out by a walk of the source's directories (never a file's
// inode) that stops as soon as every pattern has matched.
// The whole clone is built under an orphaned root and linked (or entered in the fileset
// table) by the last transaction, so a crash leaves it whole or not at all.
import {DT_DIR, FS_DELETING, FS_EXPANDING, IF_NOCLONE, IF_ORPHAN, MODE_ASYNC, MODE_LAZY, MODE_SYNC, S_IFREG} from '../format/constants.js'
import {FILESET_LOCALITY_MASK} from '../format/locality.js'
import {nameText} from '../format/name.js'
import {fail} from '../errors.js'
import {dirAdd, dirCopyLayout, dirForEachRaw, dirList, dirListByInode, enterDir} from '../fs/dir.js'
import {shareInto} from '../fs/extents.js'
import {holdXattrs} from '../fs/xattr.js'
import {addFileset, filesetById, findFileset, freeName, getFileset, saveFileset, type Fileset} from '../fs/filesets.js'
import {namespace} from '../fs/image.js'
import {touch, type Inode} from '../fs/inode.js'
import {Namespace, splitPath} from '../fs/namespace.js'
import type {Volume} from '../fs/volume.js'
import {excludeMatcher, patternShown, type ExcludeMatcher} from '../fs/match.js'
import {INCOMPAT_EXPANDING} from '../format/superblock.js'
import {createCloneState, entriesAsExpanded, expandAll, fitsOneStep, needsCloneState, newDirLike, newUnexpandedDir, type ExpandNode} from '../fs/expand.js'

export {excludeMatcher, parseExcludeFile} from '../fs/match.js'
import {copySteps, type Location} from '../ops/copy.js'
import {localSource, type HostSource} from '../ops/hostsource.js'
import {checkInterrupt} from '../interrupt.js'
import {cloneSpecProblem} from '../format/clonestate.js'

export type CloneMode = 'sync' | 'async' | 'lazy'

export interface Replacement {
  /** absolute path inside the clone */
  path: string
  /** '@empty-dir', '@empty-file', a host path, or FILESET:/path */
  source: string
}

export interface CloneOptions {
  exclude?: string[]
  replace?: Replacement[]
  mode?: CloneMode
  onProgress?: (s: CloneStats) => void
  onWarning?: (msg: string) => void
  /** where host replacements are read (default: this process reads the host; a server: what the command streamed) */
  host?: HostSource
}

export interface CloneStats {
  dirs: number
  shared: number
  copiedHardlinked: number
  excluded: number
  replaced: number
}

export interface CloneResult {
  fileset: string
  path: string
  parent: string
  stats: CloneStats
  /** patterns that matched nothing */
  unmatched: string[]
}

/** A free name for a clone of `base`: base-1, base-2, ... */
export function generatedName(vol: Volume, base: string): string {
  return freeName(vol, base)
}

interface Walk {
  vol: Volume
  src: Namespace
  match: ExcludeMatcher
  stats: CloneStats
  /** source inode with several names -> the clone's private copy */
  hardlinks: Map<number, Inode>
  /**
   * False for a graft: the destination fileset may already hold some of these inodes, and a
   * shared inode must have one name per fileset, so a graft gets its own inodes (sharing
   * their blocks).
   */
  shareInodes: boolean
  opts: CloneOptions
  lastReport: number
}

/**
 * Clones `src` (FILESET or FILESET:/path) to a new fileset `dstName`, or grafts it at
 * `graft` (an existing fileset's path that must not exist yet).
 */
export function clone(vol: Volume, src: {fileset: string, path: string}, dst: {fileset: string, path?: string} | null, opts: CloneOptions = {}): CloneResult {
  const steps = cloneSteps(vol, src, dst, opts)
  for (;;) {
    const r = steps.next()
    if (r.done) return r.value
    vol.maybeCommit()
  }
}

/**
 * clone() in steps: the generator yields at consistent points (after each directory of a
 * sync clone or graft, and every CLONE_STEP_ENTRIES entries inside one), where its caller may
 * commit (clone() alone: Volume.maybeCommit) or, a prism server (src/server/slicedclone.ts), answer
 * its mounts' requests between slices. The tree is built under a pinned orphan root until the
 * last step, so what a caller that stops early (return()) or a crash leaves is reaped.
 * Between steps the image may change under the walk (a server freezes the source, but not the
 * target: src/server/slicedclone.ts): a source changed meanwhile is read as it is when each
 * directory is reached, a source directory gone meanwhile is cloned empty, and the graft's
 * place is checked again before it is linked.
 */
export function* cloneSteps(vol: Volume, src: {fileset: string, path: string}, dst: {fileset: string, path?: string} | null, opts: CloneOptions = {}): Generator<void, CloneResult> {
  const mode = opts.mode ?? 'sync'
  // A malformed pattern is refused before anything changes, and so are patterns an async or
  // lazy clone's state file cannot keep (a sync clone uses them once, whatever their number).
  const match = excludeMatcher(opts.exclude ?? [])
  if (mode !== 'sync') {
    const why = cloneSpecProblem({srcPath: src.path || '/', exclude: opts.exclude ?? []})
    if (why) fail('EUSAGE', `${why}: clone with --mode sync, or with fewer patterns`)
  }
  const srcFs = getFileset(vol, src.fileset)
  const sns = new Namespace(vol, srcFs)
  const resolved = sns.resolveFull(src.path, true)
  const top = resolved.inode
  if (!top.isDir) fail('ENOTDIR', `${sns.where(src.path)}: can only clone a directory or a whole fileset`)

  const grafting = !!dst && dst.path !== undefined
  let dstNs: Namespace | null = null
  let graftParent: GraftPlace | null = null
  let newName = ''
  if (grafting) {
    dstNs = namespace(vol, dst!.fileset)
    let target = dst!.path!
    if (dstNs.exists(target, true) && dstNs.resolve(target, true).isDir) {
      const base = splitPath(src.path).pop() ?? srcFs.name
      target = (target.endsWith('/') ? target : target + '/') + base
    }
    const p = dstNs.resolveParent(target)
    if (dstNs.lookupEntry(p.dir, p.name)) fail('EEXIST', `${dstNs.where(target)}: already exists`)
    if (dstNs.fs.id === srcFs.id && [...p.chain].some((d) => d.ino === top.ino)) fail('EINVAL', `cannot graft ${sns.where(src.path)} inside itself`)
    graftParent = {dir: p.dir, generation: p.dir.r.generation, name: p.name}
    dst = {fileset: dst!.fileset, path: target}
  } else {
    newName = dst?.fileset ?? generatedName(vol, srcFs.name)
    if (findFileset(vol, newName)) fail('EEXIST', `fileset '${newName}' already exists`)
    // A graft is always synchronous: it changes an existing fileset in one step.
    if (mode !== 'sync') return yield* cloneLater(vol, srcFs, resolved.names, top, newName, mode, opts, match)
  }
  // The walk below reads and shares the source tree directly: a source still expanding is
  // expanded completely first (its hard-linked copies get their final counts).
  if (srcFs.state === FS_EXPANDING) expandAll(vol, srcFs)

  const w: Walk = {
    vol, src: sns, match, hardlinks: new Map(), opts, lastReport: 0, shareInodes: !grafting,
    stats: {dirs: 0, shared: 0, copiedHardlinked: 0, excluded: 0, replaced: 0},
  }
  // Build the copy of the top directory as an orphan: if we crash, it is reaped on open.
  const root = newDirLike(vol, top)
  vol.addOrphan(root)
  vol.pinnedOrphans.add(root.ino)
  try {
    return yield* finish()
  } finally {
    // Whether the clone finished or failed, this process no longer builds it: a failed
    // clone's root (if already committed) is reaped like any orphan.
    vol.pinnedOrphans.delete(root.ino)
  }

  function* finish(): Generator<void, CloneResult> {
    // (each private copy was marked changed with its last name: a graft's are all its files,
    // which marked again here would make one transaction of their inode blocks, past a small
    // journal's capacity)
    yield* cloneDir(w, top, root, '')

    if (opts.replace?.length) {
      // Replacements are made inside the clone before it becomes visible, through a
      // namespace over the unfinished root that is never entered in the fileset table.
      const draft = new Namespace(vol, {...srcFs, slot: -1, id: 0, name: grafting ? dst!.fileset : newName, rootIno: root.ino})
      for (const r of opts.replace) yield* applyReplacement(vol, draft, r, w.stats, opts.host)
    }

    let result: CloneResult
    if (grafting) {
      const ns = dstNs!
      const dir = graftPlace(vol, ns, graftParent!, dst!.path!)
      dirAdd(vol, dir, root.ino, DT_DIR, graftParent!.name)
      dir.r.nlink++
      touch(dir.r, {m: true, c: true})
      vol.idirty(dir)
      root.r.nlink = 2 + countSubdirs(vol, root)
      vol.removeOrphan(root)
      result = {fileset: ns.fs.name, path: dst!.path!, parent: srcFs.name, stats: w.stats, unmatched: w.match.unmatched()}
    } else {
      vol.removeOrphan(root)
      root.r.nlink = 2 + countSubdirs(vol, root)
      // A clone keeps its source's locality setting (FORMAT.md §6.6); its counters start at 0.
      addFileset(vol, newName, root.ino, {parentId: srcFs.id, mode: MODE_SYNC, flags: srcFs.flags & FILESET_LOCALITY_MASK})
      result = {fileset: newName, path: '/', parent: srcFs.name, stats: w.stats, unmatched: w.match.unmatched()}
    }
    vol.idirty(root)
    for (const p of result.unmatched) opts.onWarning?.(`--exclude '${patternShown(p)}' matched nothing`)
    opts.onProgress?.(w.stats)
    return result
  }
}

/**
 * An asynchronous or lazy clone (paper §3.3, §3.4): one transaction makes the fileset with an
 * UNEXPANDED root that names the source directory; src/fs/expand.ts does the rest, in the
 * background, on demand, or on `prism expand`. The superblock's clone clock is bumped and
 * the source's clonestart takes its value, which arms the source's write guard.
 */
function* cloneLater(vol: Volume, srcFs: Fileset, names: Buffer[], top: Inode, name: string, mode: 'async' | 'lazy', opts: CloneOptions, match: ExcludeMatcher): Generator<void, CloneResult> {
  const spec = {srcPath: '/' + names.map(nameText).join('/'), exclude: opts.exclude ?? [], rules: 'gitignore' as const}
  const unmatched = spec.exclude.length ? unmatchedPatterns(vol, srcFs, top, spec.srcPath, match) : []
  const clock = vol.tickCloneClock()
  vol.sb.incompat |= INCOMPAT_EXPANDING
  const root = newUnexpandedDir(vol, top, srcFs.id)
  const stateIno = needsCloneState(spec) ? createCloneState(vol, spec).ino : 0
  const building = !!opts.replace?.length
  // With replacements to apply (which may take several transactions), the record says
  // DELETING until they are in: a crash meanwhile leaves a fileset the next open removes.
  const rec = addFileset(vol, name, root.ino, {
    parentId: srcFs.id, mode: mode === 'async' ? MODE_ASYNC : MODE_LAZY, state: building ? FS_DELETING : FS_EXPANDING,
    srcFileset: srcFs.id, stateIno, dirsDone: 0, dirsTotal: 1, flags: srcFs.flags & FILESET_LOCALITY_MASK,
  })
  saveFileset(vol, {...filesetById(vol, srcFs.id)!, clonestart: clock})
  const stats: CloneStats = {dirs: 0, shared: 0, copiedHardlinked: 0, excluded: 0, replaced: 0}
  if (building) {
    vol.pinnedOrphans.add(root.ino) // marks the fileset as being built by this process
    try {
      const ns = new Namespace(vol, rec)
      for (const r of opts.replace!) yield* applyReplacement(vol, ns, r, stats, opts.host)
      saveFileset(vol, {...filesetById(vol, rec.id)!, state: FS_EXPANDING})
    } finally {
      vol.pinnedOrphans.delete(root.ino)
    }
  }
  for (const p of unmatched) opts.onWarning?.(`--exclude '${patternShown(p)}' matched nothing`)
  opts.onProgress?.(stats)
  return {fileset: name, path: '/', parent: srcFs.name, stats, unmatched}
}

/**
 * The patterns that match nothing in the tree a clone of directory `top` (at `srcPath` of
 * `srcFs`) shows, found as a sync clone finds them but without making anything: the source's
 * directories are walked, entries only (no file's inode is read; a part of the source still
 * unexpanded is listed from its own source), skipping excluded and noclone directories as
 * the clone does, and directories below which no pattern still unmatched can match; the walk
 * ends as soon as every pattern has matched.
 */
function unmatchedPatterns(vol: Volume, srcFs: Fileset, top: Inode, srcPath: string, m: ExcludeMatcher): string[] {
  const base = srcPath === '/' ? '' : srcPath
  const stack: Array<{node: ExpandNode, path: string}> = [{node: {ino: top.ino}, path: ''}]
  while (stack.length) {
    checkInterrupt() // (Ctrl-C: a directory at a time; nothing is made yet)
    const {node, path} = stack.pop()!
    if (!m.mayMatchBelow(path)) continue
    for (const e of entriesAsExpanded(vol, srcFs, node, base + path)) {
      const childPath = `${path}/${nameText(e.name)}`
      const isDir = e.type === DT_DIR
      if (m.test(childPath, isDir) >= 0 || !isDir || !m.mayMatchBelow(childPath)) continue
      if (vol.iget(e.ino).r.flags & IF_NOCLONE) continue
      stack.push({node: e.node!, path: childPath})
    }
  }
  return m.unmatched()
}

function countSubdirs(vol: Volume, dir: Inode): number {
  let n = 0
  for (const e of dirList(vol, dir)) if (e.type === DT_DIR) n++
  return n
}

interface GraftPlace {
  dir: Inode
  /** the directory's generation when the graft began */
  generation: number
  name: Buffer
}

/**
 * The directory a graft is linked into, checked again just before (the image may have changed
 * since the graft began, when a server makes it in steps): still a directory of the same
 * fileset, and the name still free.
 */
function graftPlace(vol: Volume, ns: Namespace, p: GraftPlace, target: string): Inode {
  const dir = vol.tryIget(p.dir.ino)
  if (!filesetById(vol, ns.fs.id) || !dir || dir.r.generation !== p.generation || !dir.isDir || (dir.r.flags & IF_ORPHAN) || dir.r.nlink === 0) {
    fail('ENOENT', `${ns.where(target)}: its directory was removed while the graft was made`)
  }
  if (ns.lookupEntry(dir, p.name)) fail('EEXIST', `${ns.where(target)}: already exists`)
  return dir
}

/**
 * A sync clone or graft yields inside a directory after this many entries, or fewer on a
 * small journal (cloneStep): a step changes an inode-table block or two per entry and a few
 * directory blocks, and must fit the half of the journal a transaction may still take.
 */
const CLONE_STEP_ENTRIES = 64

function cloneStep(vol: Volume): number {
  return Math.max(1, Math.min(CLONE_STEP_ENTRIES, Math.floor(vol.journal.maxBlocks / 8)))
}

/**
 * A directory of a sync clone whose every entry is cloned, of at most this many entries, is
 * made in one step as a copy of its source's layout (dirCopyLayout, as expansion makes one:
 * a block copy per bucket instead of an insertion per entry, half a sync clone's time on a
 * tree of small directories: bench/README.md, "Scale"). Larger ones go entry by entry, a step
 * every CLONE_STEP_ENTRIES, as do directories that leave entries out.
 */
const LAYOUT_COPY_MAX = 4096

interface DirJob {
  src: number
  generation: number
  dst: Inode
  path: string
}

/** Fills `dst` (new, empty) with a clone of source directory `src` at clone path `path`. */
function* cloneDir(w: Walk, src: Inode, dst: Inode, path: string): Generator<void> {
  const vol = w.vol
  // Iterative, so deep trees do not exhaust the stack. A source directory is held by number
  // and generation: between steps it may be removed (its number reused).
  const step = cloneStep(vol)
  const stack: DirJob[] = [{src: src.ino, generation: src.r.generation, dst, path}]
  const seen = new Set<number>()
  while (stack.length) {
    const job = stack.pop()!
    enterDir(seen, job.src, job.path || '/')
    w.stats.dirs++
    const dir = vol.tryIget(job.src)
    const live = dir !== null && dir.r.generation === job.generation && dir.isDir
    if (live && copyLayout(w, dir, job, stack)) {
      progress(w)
      yield
      continue
    }
    const entries = live ? dirListByInode(vol, dir) : []
    let n = 0
    for (const e of entries) {
      if (++n % step === 0) yield
      const childPath = `${job.path}/${nameText(e.name)}`
      if (w.match.test(childPath, e.type === DT_DIR) >= 0) { w.stats.excluded++; continue }
      // (after a step, a file listed before it may have been freed)
      const child = n < step ? vol.iget(e.ino) : vol.tryIget(e.ino)
      if (!child) continue
      if (child.r.flags & IF_NOCLONE) { w.stats.excluded++; continue }
      if (child.isDir) {
        const d = newDirLike(vol, child)
        dirAdd(vol, job.dst, d.ino, DT_DIR, e.name, 0)
        // (counted as each is added: a commit may fall inside a large directory, and the
        // partial tree it leaves on the orphan list must be sound to fsck)
        job.dst.r.nlink++
        vol.idirty(job.dst)
        stack.push({src: child.ino, generation: child.r.generation, dst: d, path: childPath})
        continue
      }
      if (child.r.nlink > 1 || !w.shareInodes) {
        // Hard-linked (or grafted): one private copy per clone, blocks shared, nlink = names cloned.
        let cp = w.hardlinks.get(child.ino)
        if (!cp) {
          cp = vol.ialloc(child.r.mode, child.ino + 1)
          const generation = cp.r.generation
          cp.r = {...child.r, area: Buffer.alloc(child.r.area.length), share: 1, nlink: 0, generation, nextOrphan: 0}
          shareInto(vol, child, cp)
          holdXattrs(vol, cp)
          w.hardlinks.set(child.ino, cp)
          w.stats.copiedHardlinked++
        }
        cp.r.nlink++
        vol.idirty(cp) // a commit may fall between its names: each must log the count
        dirAdd(vol, job.dst, cp.ino, e.type, e.name, 0)
        continue
      }
      child.r.share++
      vol.idirty(child)
      dirAdd(vol, job.dst, child.ino, e.type, e.name, 0)
      w.stats.shared++
    }
    vol.idirty(job.dst)
    progress(w)
    yield
  }
}

/**
 * Clones source directory `dir` into job.dst (new, empty) whole, as a copy of its layout,
 * when that fits one step: every entry cloned (none excluded, none noclone, no hard-linked
 * file, each entry's type its inode's), not a graft (whose files are copies), at most
 * LAYOUT_COPY_MAX entries, and the blocks the step changes within a quarter of the journal
 * (fitsOneStep, as expansion decides; clone() commits at each yield). Returns false, having
 * changed nothing, otherwise: the caller goes entry by entry.
 */
function copyLayout(w: Walk, dir: Inode, job: DirJob, stack: DirJob[]): boolean {
  const vol = w.vol
  if (!w.shareInodes || dir.r.size > LAYOUT_COPY_MAX || dir.r.size === 0) return false
  const patterns = (w.opts.exclude?.length ?? 0) > 0
  if (!fitsOneStep(vol, dir)) return false
  const kids: Inode[] = []
  const dirPaths: Array<string | undefined> = []
  let all = true
  dirForEachRaw(vol, dir, (ino, type, buf, off, len) => {
    if (!all) return
    const child = vol.iget(ino)
    const isDir = type === DT_DIR
    const childPath = isDir || patterns ? `${job.path}/${nameText(buf.subarray(off, off + len))}` : undefined
    if ((child.r.flags & IF_NOCLONE) || child.isDir !== isDir || (!isDir && child.r.nlink > 1) || (patterns && w.match.test(childPath!, isDir) >= 0)) {
      all = false
      return
    }
    kids.push(child)
    dirPaths.push(isDir ? childPath : undefined)
  })
  if (!all || kids.length !== dir.r.size) return false
  let subdirs = 0
  const inos = new Array<number>(kids.length)
  for (let i = 0; i < kids.length; i++) {
    const child = kids[i]
    const p = dirPaths[i]
    if (p !== undefined) {
      const d = newDirLike(vol, child)
      stack.push({src: child.ino, generation: child.r.generation, dst: d, path: p})
      inos[i] = d.ino
      subdirs++
      continue
    }
    child.r.share++
    vol.idirty(child)
    w.stats.shared++
    inos[i] = child.ino
  }
  dirCopyLayout(vol, dir, job.dst, inos)
  job.dst.r.nlink = 2 + subdirs
  vol.idirty(job.dst)
  return true
}

function progress(w: Walk): void {
  checkInterrupt()
  if (!w.opts.onProgress) return
  const t = Date.now()
  if (t - w.lastReport < 100) return
  w.lastReport = t
  w.opts.onProgress(w.stats)
}

/** Where a replacement's SOURCE (neither @empty-dir nor @empty-file) is: FILESET:/path, or a host path. */
export function replacementSource(source: string): Location {
  const m = /^([A-Za-z0-9_][A-Za-z0-9._-]*):(.*)$/s.exec(source)
  return m ? {kind: 'image', fileset: m[1], path: m[2] || '/'} : {kind: 'host', path: source}
}

function* applyReplacement(vol: Volume, ns: Namespace, r: Replacement, stats: CloneStats, host: HostSource = localSource): Generator<void> {
  if (!r.path.startsWith('/') || splitPath(r.path).length === 0) fail('EUSAGE', `--replace path '${r.path}' must be an absolute path below the clone's root`)
  if (ns.exists(r.path, false)) ns.remove(r.path, {recursive: true})
  const parent = '/' + splitPath(r.path).slice(0, -1).join('/')
  ns.mkdir(parent, {parents: true})
  if (r.source === '@empty-dir') ns.mkdir(r.path)
  else if (r.source === '@empty-file') ns.openForWrite(r.path, {mode: 0o644 | S_IFREG})
  else {
    const from = replacementSource(r.source)
    const done = yield* copySteps(vol, [from], {kind: 'image', fileset: ns.fs.name, path: r.path, ns}, {recursive: true, noTargetDirectory: true}, host)
    // A replacement is made whole or the clone fails: it never holds part of what was asked.
    const e = done.errors[0]
    if (e) fail(e.code, `--replace ${r.path}=${r.source}: ${e.message}${done.errors.length > 1 ? ` (and ${done.errors.length - 1} more)` : ''}`)
  }
  stats.replaced++
}

/**
 * A sync clone made in slices (while a prism server holds the image, src/server/image.ts):
 * made as an async clone, in one short transaction, expanded by the server ahead of other
 * work, and then settled here, in the transaction where its expansion ended: its record
 * becomes what a sync clone's is (mode SYNC, no directory counts). Until then it is an
 * ordinary async clone, which is also what a crash leaves (fsck accepts it; expansion
 * finishes it, as an async clone).
 */
export function settleSyncClone(vol: Volume, id: number): void {
  const rec = filesetById(vol, id)
  if (!rec || rec.state === FS_EXPANDING) fail('EBUSY', `fileset ${rec?.name ?? id} is not expanded yet`)
  saveFileset(vol, {...rec, mode: MODE_SYNC, dirsDone: 0, dirsTotal: 0})
}

/** Expands clone `name` to the end and settles it as a sync clone (settleSyncClone). */
export function finishSyncClone(vol: Volume, name: string): Fileset {
  const rec = getFileset(vol, name)
  expandAll(vol, rec)
  settleSyncClone(vol, rec.id)
  return filesetById(vol, rec.id)!
}
