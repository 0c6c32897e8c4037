// fsck and asynchronous cloning (docs/FORMAT.md §5.7, §8.3, §8.5): the fileset fields of
// clones still expanding, their clone-state files, the sources' clonestart, and every
// UNEXPANDED directory. Runs between pass 2 (names; it records where each UNEXPANDED
// directory sits) and pass 3 (counts and reachability).
//
// Repairs never invent data: a clone that cannot go on expanding (its source is gone) keeps
// what it has expanded, and its UNEXPANDED directories become empty ordinary directories. A
// source whose record alone is lost, or names a root that is not its own, is not gone: its
// tree comes back as a fileset under its old id, or as its root (findLostSources,
// lostfound.ts), and its clones go on expanding from it. A clone in flight whose record names
// a wrong root gets its own tree back the same way.
import {FS_ACTIVE, FS_DELETING, FS_EXPANDING, IF_ORPHAN, IF_UNEXPANDED, MODE_ASYNC, MODE_LAZY} from '../format/constants.js'
import {CLONE_STATE_V2, cloneStateVersion, decodeCloneState, decodeRemap} from '../format/clonestate.js'
import {decodeInode} from '../format/inode.js'
import {INCOMPAT_CLONES, INCOMPAT_EXCLUDE_RULES, INCOMPAT_EXPANDING} from '../format/superblock.js'
import {readData} from '../fs/extents.js'
import {Inode} from '../fs/inode.js'
import {R_FILESET, T_BLK, T_CHR, T_DIR, T_FIFO, T_FREE, T_LNK, T_REG, T_SOCK, type FilesetInfo, type FsckContext} from './context.js'

/** The kinds of inode a hard-link map may hold a copy of (every kind but a directory). */
const LINKABLE = new Set([T_REG, T_LNK, T_CHR, T_BLK, T_FIFO, T_SOCK])
import {keptEntries, writeRecord} from './pass2_dirs.js'
import {freeInode} from './pass3_links.js'

export function checkCloneState(ctx: FsckContext): void {
  const ids = new Map(ctx.filesets.map((f) => [f.id, f]))
  const changed = new Set<FilesetInfo>()
  const sb = ctx.vol.sb

  // Sources whose record is lost but whose tree is whole come back (lostfound.ts makes them);
  // a parent that names no fileset, and does not come back, is forgotten (pass 2 left those
  // that name a source of a clone in flight to here).
  const restored = findLostSources(ctx, ids)
  for (const f of ctx.filesets) {
    if (f.parentId === 0 || ids.has(f.parentId) || restored.has(f.parentId)) continue
    const p = ctx.report('FILESET_BAD_PARENT', `fileset ${f.name}`, {parent: f.parentId})
    f.parentId = 0
    changed.add(f)
    ctx.fixed(p)
  }

  for (const f of ctx.filesets) {
    if (f.state === FS_EXPANDING) {
      const src = ids.get(f.srcFileset)
      const modeOk = f.mode === MODE_ASYNC || f.mode === MODE_LAZY
      if ((!src && !restored.has(f.srcFileset)) || src === f || !modeOk) {
        const p = ctx.report('CLONE_BAD_SOURCE', `fileset ${f.name}`, {
          detail: !modeOk ? `clone mode ${f.mode} is not async or lazy` : `source fileset ${f.srcFileset} ${src === f ? 'is itself' : 'does not exist'}`,
        })
        // It cannot go on expanding: it keeps what it has, as an ordinary fileset.
        f.state = FS_ACTIVE
        f.srcFileset = 0
        if (f.stateIno) dropStateFile(ctx, f)
        changed.add(f)
        ctx.fixed(p)
      }
    } else if (f.srcFileset !== 0 || (f.stateIno !== 0 && f.state === FS_ACTIVE)) {
      const p = ctx.report('CLONE_STATE_STALE', `fileset ${f.name}`, {src: f.srcFileset, ino: f.stateIno})
      f.srcFileset = 0
      if (f.stateIno) dropStateFile(ctx, f)
      changed.add(f)
      ctx.fixed(p)
    }
  }

  // Whether a clone in flight keeps patterns with the .gitignore rules (FORMAT.md §8.5).
  let rules = false
  for (const f of ctx.filesets) {
    if (!f.stateIno) continue
    const why = stateFileProblem(ctx, f.stateIno)
    if (why === null) {
      account(ctx, f.stateIno)
      if (f.state === FS_EXPANDING) markCopies(ctx, f.stateIno)
      if ((f.state === FS_EXPANDING || f.state === FS_DELETING) && stateFileVersion(ctx, f.stateIno) === CLONE_STATE_V2) rules = true
      continue
    }
    const p = ctx.report('CLONE_STATE_BAD', `fileset ${f.name}`, {detail: why})
    dropStateFile(ctx, f)
    // Without its excludes the clone could go on to show what it was made to leave out (a
    // secret kept out of a sandbox): it stops expanding instead, keeping what it has, and its
    // unexpanded directories become empty (UNEXPANDED_BAD below), as for a lost source.
    if (f.state === FS_EXPANDING) {
      f.state = FS_ACTIVE
      f.srcFileset = 0
    }
    changed.add(f)
    ctx.fixed(p)
  }

  // Sources with a clone in flight, found once (not by comparing every fileset with every other).
  const sources = new Set<number>()
  for (const c of ctx.filesets) if (c.state === FS_EXPANDING) sources.add(c.srcFileset)
  for (const f of ctx.filesets) {
    const inFlight = sources.has(f.id)
    if (f.clonestart !== 0 && !inFlight) {
      const p = ctx.report('CLONESTART_STALE', `fileset ${f.name}`, {value: f.clonestart})
      f.clonestart = 0
      changed.add(f)
      ctx.fixed(p)
    } else if (f.clonestart === 0 && inFlight) {
      // Without it the source's write guard is off: a fresh stamp turns it back on.
      const p = ctx.report('CLONESTART_MISSING', `fileset ${f.name}`)
      if (ctx.repair) {
        sb.cloneClock = (sb.cloneClock + 1) >>> 0
        ctx.vol.markSbDirty()
      }
      f.clonestart = sb.cloneClock
      changed.add(f)
      ctx.fixed(p)
    }
  }

  for (const [ino, u] of ctx.unexpanded) {
    if (!u.owner) continue // in an orphan tree: the reaper frees it
    const {dir: srcIno, fileset: srcFs} = ctx.unexpandedSource(ino)
    let why: string | null = null
    if (u.owner.state !== FS_EXPANDING) why = 'its fileset is not expanding'
    else if (u.count !== 0) why = `it already has ${u.count} entries`
    else if (!ids.has(srcFs) && !restored.has(srcFs)) why = `source fileset ${srcFs} does not exist`
    else if (srcIno < 1 || srcIno > sb.inodeCount || ctx.itype[srcIno] !== T_DIR) why = `source inode ${srcIno} is not a directory`
    if (why === null) continue
    const p = ctx.report('UNEXPANDED_BAD', `fileset ${u.owner.name}:${u.path}`, {ino, detail: why})
    clearUnexpanded(ctx, ino)
    ctx.fixed(p)
  }

  for (const f of changed) writeRecord(ctx, f, f.slot)

  // The incompat bits keep builds without async cloning, or without the .gitignore rules of
  // exclude patterns, away while a clone that needs them is in flight. The second may stay
  // set while any clone is in flight (an open from the backup superblock sets it unasked).
  const building = ctx.filesets.some((f) => f.state === FS_EXPANDING || f.state === FS_DELETING)
  const expected = (building ? INCOMPAT_EXPANDING : 0) | (rules ? INCOMPAT_EXCLUDE_RULES : 0)
  const have = sb.incompat & INCOMPAT_CLONES
  const tolerated = building ? have & INCOMPAT_EXCLUDE_RULES : 0
  const missing = expected & ~have
  const stale = have & ~expected & ~tolerated
  if (missing || stale) {
    const detail = missing & INCOMPAT_EXPANDING ? 'a clone is expanding but the superblock does not say so'
      : missing ? 'a clone in flight keeps exclude patterns with the .gitignore rules but the superblock does not say so'
        : 'no clone is expanding'
    const p = ctx.report('SB_INCOMPAT_EXPANDING', 'superblock', {detail})
    if (ctx.repair) {
      sb.incompat = (sb.incompat & ~INCOMPAT_CLONES) | expected | tolerated
      ctx.vol.markSbDirty()
    }
    ctx.fixed(p)
  }
}

/**
 * The sources of clones in flight whose fileset record is lost (a damaged table block), or
 * names a root that is not one, while their tree is whole: the top of the unreachable tree
 * that holds the directories the clones' UNEXPANDED directories stand for. Each is recorded
 * in ctx.lostSources, for pass 3 to make it a fileset again under its old id, or the root of
 * its fileset again (lostfound.ts), so that the clones go on expanding from it at its paths
 * rather than losing every directory they have not expanded yet (or, with the tree moved to
 * lost+found, seeing the source's later changes there). Returns the ids.
 */
function findLostSources(ctx: FsckContext, ids: Map<number, FilesetInfo>): Set<number> {
  const found = new Map<number, number>() // id → top
  let parentOf: Map<number, number> | null = null
  const topOf = (dir: number): number => {
    parentOf ??= unreachableParents(ctx)
    let top = dir
    const seen = new Set<number>([top])
    for (let up = parentOf.get(top); up !== undefined && !seen.has(up); up = parentOf.get(top)) {
      seen.add(up)
      top = up
    }
    return top
  }
  for (const f of ctx.filesets) {
    const id = f.srcFileset
    if (!expandsFromSource(f) || id === f.id || ids.get(id)?.rootOk) continue
    let top = found.get(id)
    if (top === undefined) {
      const dir = sourceDirOf(ctx, f, id)
      if (dir === 0) continue
      top = topOf(dir)
      if (ctx.lostSources.has(top)) continue // another lost id claimed that tree first
      found.set(id, top)
      ctx.lostSources.set(top, {id, clones: []})
    }
    ctx.lostSources.get(top)!.clones.push(f.name)
  }

  // A clone in flight whose record names a root that is not one: its own tree is the one
  // unreachable tree whose UNEXPANDED directories expand from its source, when it is the
  // only such clone of that source (nothing else says which clone an unexpanded directory is in).
  const rootless = new Map<number, FilesetInfo[]>()
  for (const c of ctx.filesets) {
    if (!expandsFromSource(c) || c.rootOk) continue
    const l = rootless.get(c.srcFileset)
    if (l) l.push(c)
    else rootless.set(c.srcFileset, [c])
  }
  if (rootless.size > 0) {
    const tops = new Map<number, Set<number>>()
    for (const ino of ctx.unexpanded.keys()) {
      if (ctx.reach[ino] !== 0) continue
      const srcFs = ctx.unexpandedSource(ino).fileset
      if (!rootless.has(srcFs)) continue
      let t = tops.get(srcFs)
      if (!t) tops.set(srcFs, t = new Set())
      t.add(topOf(ino))
    }
    for (const [src, clones] of rootless) {
      const t = tops.get(src)
      if (clones.length !== 1 || t?.size !== 1) continue
      const top = [...t][0]
      if (ctx.lostSources.has(top)) continue
      ctx.lostSources.set(top, {id: clones[0].id, clones: [], cloneOf: ids.get(src)?.name ?? `id ${src}`})
    }
  }
  return new Set(found.keys())
}

/** A clone in flight, async or lazy, that names a source. */
function expandsFromSource(f: FilesetInfo): boolean {
  return f.state === FS_EXPANDING && f.srcFileset !== 0 && (f.mode === MODE_ASYNC || f.mode === MODE_LAZY)
}

/**
 * A directory of source fileset `id` that clone f's UNEXPANDED directories stand for, when
 * no fileset reaches it (0 if none): its root's source when the root is not expanded yet,
 * else that of any of its UNEXPANDED directories.
 */
function sourceDirOf(ctx: FsckContext, f: FilesetInfo, id: number): number {
  const sourceOf = (ino: number): number => {
    const {dir, fileset} = ctx.unexpandedSource(ino)
    if (fileset !== id) return 0
    const ok = dir >= 1 && dir <= ctx.sb.inodeCount && ctx.itype[dir] === T_DIR && ctx.reach[dir] === 0
    return ok ? dir : 0
  }
  if (f.rootOk && ctx.iflags[f.rootIno] & IF_UNEXPANDED) return sourceOf(f.rootIno)
  for (const [ino, u] of ctx.unexpanded) {
    if (u.owner !== f) continue
    const dir = sourceOf(ino)
    if (dir !== 0) return dir
  }
  return 0
}

/** The directory that names each unreachable directory (the first found). */
function unreachableParents(ctx: FsckContext): Map<number, number> {
  const parentOf = new Map<number, number>()
  for (let d = 1; d < ctx.inoEnd; d++) {
    if (ctx.itype[d] !== T_DIR || ctx.reach[d] !== 0) continue
    for (const e of keptEntries(ctx, d)) {
      if (e.ino !== d && ctx.itype[e.ino] === T_DIR && !parentOf.has(e.ino)) parentOf.set(e.ino, d)
    }
  }
  return parentOf
}

/**
 * Makes an unexpanded directory an ordinary one holding what it holds now: the flag and its
 * source fields (inode 0x4C, 0x50) cleared. The caller reports it.
 */
export function clearUnexpanded(ctx: FsckContext, ino: number): void {
  ctx.editInode(ino, (b, o) => {
    b.writeUInt16LE(b.readUInt16LE(o + 2) & ~IF_UNEXPANDED, o + 2)
    b.writeUInt32LE(0, o + 0x4c)
    b.writeUInt32LE(0, o + 0x50)
  })
  ctx.iflags[ino] &= ~IF_UNEXPANDED
}

/** The version of a sound clone-state file (stateFileProblem found nothing). */
function stateFileVersion(ctx: FsckContext, ino: number): number {
  const {buf, off} = ctx.inodeAt(ino)
  const inode = new Inode(ino, decodeInode(buf, off, ino))
  return cloneStateVersion(decodeCloneState(readData(ctx.vol, inode, 0, inode.r.size)).spec)
}

/** Why inode `ino` cannot be a clone-state file, or null if it is a sound one. */
function stateFileProblem(ctx: FsckContext, ino: number): string | null {
  if (ino > ctx.vol.sb.inodeCount) return `inode number ${ino} is outside the inode table`
  if (ctx.itype[ino] === T_FREE) return `inode ${ino} is not in use`
  if (ctx.itype[ino] !== T_REG) return `inode ${ino} is not a regular file`
  if (ctx.reach[ino] !== 0) return `inode ${ino} is also named elsewhere`
  if (ctx.iflags[ino] & IF_ORPHAN) return `inode ${ino} is on the orphan list`
  if (ctx.rewrites.has(ino)) return `inode ${ino} has a damaged block map`
  try {
    const {buf, off} = ctx.inodeAt(ino)
    const inode = new Inode(ino, decodeInode(buf, off, ino))
    const data = readData(ctx.vol, inode, 0, inode.r.size)
    decodeRemap(data, decodeCloneState(data).mapOffset)
  } catch (e) {
    return (e as Error).message
  }
  return null
}

/**
 * The copies in a sound hard-link map are referenced by it even while none of their names
 * is expanded yet, and may count more links than the names found so far.
 */
function markCopies(ctx: FsckContext, stateIno: number): void {
  const {buf, off} = ctx.inodeAt(stateIno)
  const inode = new Inode(stateIno, decodeInode(buf, off, stateIno))
  const data = readData(ctx.vol, inode, 0, inode.r.size)
  for (const e of decodeRemap(data, decodeCloneState(data).mapOffset)) {
    // An entry whose copy has gone (all its names removed; the number maybe reused) is stale.
    const ino = e.copyIno
    // Any file that takes hard links has them: a FIFO, socket or device node as well.
    if (ino < 1 || ino > ctx.vol.sb.inodeCount || !LINKABLE.has(ctx.itype[ino])) continue
    const c = ctx.inodeAt(ino)
    if (c.buf.readUInt32LE(c.off + 0x14) !== e.copyGeneration || (ctx.iflags[ino] & IF_ORPHAN)) continue
    ctx.pendingLinks.add(e.copyIno)
    if (ctx.reach[e.copyIno] === 0) {
      ctx.reach[e.copyIno] |= R_FILESET
      ctx.trees[e.copyIno] = 1
      ctx.filesetTrees[e.copyIno] = 1
    }
  }
}

/** The state file counts as one name in one fileset (nothing else names it). */
function account(ctx: FsckContext, ino: number): void {
  ctx.reach[ino] |= R_FILESET
  ctx.trees[ino] = 1
  ctx.filesetTrees[ino] = 1
  ctx.firstCount[ino] = 1
  ctx.totalNames[ino] = 1
}

/** State-file inodes the filesets' records name now (kept up to date as dropStateFile clears them). */
const usersOf = new WeakMap<FsckContext, Map<number, number>>()
function stateFileUsers(ctx: FsckContext): Map<number, number> {
  let m = usersOf.get(ctx)
  if (!m) {
    m = new Map()
    for (const o of ctx.filesets) if (o.stateIno) m.set(o.stateIno, (m.get(o.stateIno) ?? 0) + 1)
    usersOf.set(ctx, m)
  }
  return m
}

function dropStateFile(ctx: FsckContext, f: FilesetInfo): void {
  const users = stateFileUsers(ctx)
  const left = (users.get(f.stateIno) ?? 1) - 1
  if (left > 0) users.set(f.stateIno, left)
  else users.delete(f.stateIno)
  const ino = f.stateIno
  f.stateIno = 0
  // Ours only if nothing else uses that inode (a directory entry, or another fileset's
  // record: a stale field may name a state file another clone still needs); otherwise just
  // forget the reference.
  const ours = ino <= ctx.vol.sb.inodeCount && ctx.itype[ino] === T_REG && ctx.reach[ino] === 0 &&
    !stateFileUsers(ctx).has(ino)
  if (!ours) return
  if (ctx.repair) freeInode(ctx, ino)
  else account(ctx, ino) // until repaired it is still referenced: not also unreachable
}
