// fsck pass 3: the orphan list, then in-use inodes nothing reaches, then link and share
// counts against the names pass 2 counted. Unreachable inodes are reconnected to
// lost+found (lostfound.ts decides where and counts the new names; rebuild.ts makes them),
// never freed while they hold anything; counts are set in place. It never changes a
// directory: entries were settled in pass 2.
import {IF_INLINE, IF_ORPHAN} from '../format/constants.js'
import {R_FILESET, R_ORPHAN_LIST, T_DIR, T_FREE, T_XATTR, type FsckContext} from './context.js'
import {KIND_NAME, keptMap} from './pass1_inodes.js'
import {walkOrphanTrees} from './pass2_dirs.js'
import {planReconnections} from './lostfound.js'

/** Frees an in-use inode: zeroes its slot and releases its claims. */
export function freeInode(ctx: FsckContext, ino: number): void {
  if (!(ctx.iflags[ino] & IF_INLINE)) {
    const {ext, nodes} = keptMap(ctx, ino)
    for (const e of ext) ctx.unclaim(e.p, e.n)
    for (const b of nodes) ctx.unclaim(b, 1)
  }
  ctx.clearInode(ino)
  ctx.itype[ino] = T_FREE
  ctx.dirs.delete(ino)
  ctx.rewrites.delete(ino)
  ctx.rebuilds.delete(ino)
}

function nextOrphanOf(ctx: FsckContext, ino: number, rebuilt: number[] | null): number {
  if (rebuilt) {
    const i = rebuilt.indexOf(ino)
    return i >= 0 ? rebuilt[i + 1] ?? 0 : 0
  }
  const {buf, off} = ctx.inodeAt(ino)
  return buf.readUInt32LE(off + 0x54)
}

/**
 * Walks sb.orphanHead -> nextOrphan. The chain is cut at a link that leaves the inode
 * table, reaches a free inode or loops; an inode that still has a name leaves the list.
 * Returns the inodes left on the list.
 */
function checkOrphanList(ctx: FsckContext): number[] {
  const sb = ctx.vol.sb
  const onList: number[] = []
  const setLink = (prev: number, to: number) => {
    if (!ctx.repair) return
    if (prev === 0) {
      sb.orphanHead = to
      ctx.vol.markSbDirty()
    } else {
      ctx.editInode(prev, (b, o) => b.writeUInt32LE(to, o + 0x54))
    }
  }
  // Opening on the backup superblock rechained every flagged inode in number order
  // (Volume.recountFree). Without repair that chain exists only in the volume's memory.
  let rebuilt: number[] | null = null
  if (ctx.vol.usedBackupSb && !ctx.repair) {
    rebuilt = []
    for (let ino = 1; ino < ctx.inoEnd; ino++) if (ctx.itype[ino] !== T_FREE && ctx.iflags[ino] & IF_ORPHAN) rebuilt.push(ino)
  }
  let prev = 0
  let cur = sb.orphanHead
  const seen = new Set<number>()
  while (cur !== 0) {
    let bad: string | null = null
    if (cur > sb.inodeCount) bad = `link ${prev ? `from inode ${prev}` : 'from the superblock'} to inode number ${cur}, outside the inode table`
    else if (ctx.itype[cur] === T_FREE) bad = `link ${prev ? `from inode ${prev}` : 'from the superblock'} to inode ${cur}, which is not in use`
    else if (seen.has(cur)) bad = `the list loops back to inode ${cur}`
    if (bad) {
      const p = ctx.report('ORPHAN_LIST', 'orphan list', {detail: bad})
      setLink(prev, 0)
      ctx.fixed(p)
      break
    }
    seen.add(cur)
    const next = nextOrphanOf(ctx, cur, rebuilt)
    if (ctx.reach[cur] & R_FILESET) {
      const p = ctx.report('ORPHAN_LINKED', `inode ${cur}`)
      setLink(prev, next)
      const flags = ctx.iflags[cur] & ~IF_ORPHAN
      ctx.iflags[cur] = flags
      ctx.editInode(cur, (b, o) => { b.writeUInt16LE(flags, o + 2); b.writeUInt32LE(0, o + 0x54) })
      ctx.fixed(p)
      cur = next
      continue
    }
    if (!(ctx.iflags[cur] & IF_ORPHAN)) {
      const p = ctx.report('ORPHAN_LIST', `inode ${cur}`, {detail: `inode ${cur} is on the list but not flagged as an orphan`})
      const flags = ctx.iflags[cur] | IF_ORPHAN
      ctx.iflags[cur] = flags
      ctx.editInode(cur, (b, o) => b.writeUInt16LE(flags, o + 2))
      ctx.fixed(p)
    }
    ctx.reach[cur] |= R_ORPHAN_LIST
    onList.push(cur)
    prev = cur
    cur = next
  }
  // Flagged inodes the list does not hold: one that still has a name loses the flag; the
  // others are orphans whose link was lost, and go back on the list (at its end).
  for (let ino = 1; ino < ctx.inoEnd; ino++) {
    if (ctx.itype[ino] === T_FREE || !(ctx.iflags[ino] & IF_ORPHAN) || ctx.reach[ino] & R_ORPHAN_LIST) continue
    if (ctx.reach[ino] & R_FILESET) {
      const p = ctx.report('ORPHAN_FLAG', `inode ${ino}`)
      const flags = ctx.iflags[ino] & ~IF_ORPHAN
      ctx.iflags[ino] = flags
      ctx.editInode(ino, (b, o) => { b.writeUInt16LE(flags, o + 2); b.writeUInt32LE(0, o + 0x54) })
      ctx.fixed(p)
      continue
    }
    if (ctx.nlink[ino] !== 0) {
      // An orphan is unlinked (nlink 0) in the transaction that flags it: with links left,
      // the flag is the damage. The file is kept: a tree reconnected below may name it, or
      // it goes to lost+found, rather than onto the list that frees it.
      const p = ctx.report('ORPHAN_LIST', `inode ${ino}`, {detail: `inode ${ino} is flagged as an orphan but not on the list, and has ${ctx.nlink[ino]} links: the flag is dropped`})
      const flags = ctx.iflags[ino] & ~IF_ORPHAN
      ctx.iflags[ino] = flags
      ctx.editInode(ino, (b, o) => { b.writeUInt16LE(flags, o + 2); b.writeUInt32LE(0, o + 0x54) })
      ctx.fixed(p)
      continue
    }
    const p = ctx.report('ORPHAN_LIST', `inode ${ino}`, {detail: `inode ${ino} is flagged as an orphan but not on the list`})
    setLink(prev, ino)
    ctx.editInode(ino, (b, o) => b.writeUInt32LE(0, o + 0x54))
    ctx.fixed(p)
    ctx.reach[ino] |= R_ORPHAN_LIST
    onList.push(ino)
    prev = ino
  }
  return onList
}

/**
 * An inode on the orphan list that a tree reconnected to lost+found names (its directory
 * was unreachable when the list was checked) leaves the list, as checkOrphanList takes off
 * one a fileset names: the name wins, so the file is kept rather than freed at the next
 * writable open. The chain is relinked without it.
 */
function leaveListIfNamed(ctx: FsckContext, orphans: number[]): void {
  const named = orphans.filter((ino) => ctx.itype[ino] !== T_FREE && ctx.reach[ino] & R_FILESET)
  if (named.length === 0) return
  for (const ino of named) {
    const p = ctx.report('ORPHAN_LINKED', `inode ${ino}`)
    const flags = ctx.iflags[ino] & ~IF_ORPHAN
    ctx.iflags[ino] = flags
    ctx.reach[ino] &= ~R_ORPHAN_LIST
    ctx.editInode(ino, (b, o) => { b.writeUInt16LE(flags, o + 2); b.writeUInt32LE(0, o + 0x54) })
    ctx.fixed(p)
  }
  if (!ctx.repair) return
  const left = orphans.filter((ino) => ctx.reach[ino] & R_ORPHAN_LIST)
  const head = left[0] ?? 0
  if (ctx.vol.sb.orphanHead !== head) {
    ctx.vol.sb.orphanHead = head
    ctx.vol.markSbDirty()
  }
  for (let i = 0; i < left.length; i++) {
    const next = left[i + 1] ?? 0
    if (nextOrphanOf(ctx, left[i], null) !== next) ctx.editInode(left[i], (b, o) => b.writeUInt32LE(next, o + 0x54))
  }
}

/**
 * The link and share counts an in-use file or symlink must have (docs/FORMAT.md §5.6, §5.8):
 * on the orphan list, nlink 0 and share 1; named by one tree, share 1 and one link per name.
 * Named by several trees it is either shared (share = the number of trees, one name in
 * each, nlink 1) or, when the trees are a fileset and directories orphaned from it (an
 * interrupted rm -r), unshared (share 1, nlink = all its names). Whichever the inode already
 * satisfies is right; otherwise it is shared when several filesets name it, else unshared.
 */
function wantCounts(ctx: FsckContext, ino: number, onList: boolean): {nlink: number, share: number} {
  if (onList) return {nlink: 0, share: 1}
  const trees = ctx.trees[ino]
  const total = ctx.totalNames[ino]
  if (trees <= 1) return {nlink: total, share: 1}
  const canShare = !ctx.inconsistent.has(ino) && ctx.firstCount[ino] === 1
  if (canShare && ctx.share[ino] === trees && ctx.nlink[ino] === 1) return {nlink: 1, share: trees}
  if (ctx.share[ino] === 1 && ctx.nlink[ino] === total) return {nlink: total, share: 1}
  return canShare && ctx.filesetTrees[ino] >= 2 ? {nlink: 1, share: trees} : {nlink: total, share: 1}
}

/** Pass 3: orphans, then link counts, share counts and reachability of every inode. */
export function pass3(ctx: FsckContext): void {
  const orphans = checkOrphanList(ctx)
  walkOrphanTrees(ctx, orphans)
  planReconnections(ctx)
  leaveListIfNamed(ctx, orphans)
  const n = ctx.inoEnd - 1
  for (let ino = 1; ino <= n; ino++) {
    const kind = ctx.itype[ino]
    if (kind === T_FREE || kind === T_XATTR) continue // attribute inodes: checkXattrs (xattrs.ts)
    const r = ctx.reach[ino]
    if (r === 0) {
      // planReconnections gave every unreachable inode a place: this one it could not.
      ctx.report('INODE_UNREACHABLE', `inode ${ino}`, {kind: KIND_NAME[kind], path: 'nowhere: it is left unconnected'})
      continue
    }
    // A directory has 2 + its subdirectories and is never shared. One on the orphan list
    // has 0 (or, the root of a clone being built, still its count): not checked. A file
    // one tree names has one link per name (the common case, settled here without wantCounts).
    const onList = (r & R_ORPHAN_LIST) !== 0
    let wantNlink: number
    let wantShare = 1
    if (kind === T_DIR) wantNlink = onList ? -1 : 2 + ctx.subdirs[ino]
    else if (!onList && ctx.trees[ino] <= 1) wantNlink = ctx.totalNames[ino]
    else {
      const want = wantCounts(ctx, ino, onList)
      wantNlink = want.nlink
      wantShare = want.share
    }
    if (wantNlink >= 0 && ctx.nlink[ino] !== wantNlink && !(ctx.pendingLinks.has(ino) && ctx.nlink[ino] > wantNlink)) {
      const p = ctx.report('LINK_COUNT', `inode ${ino}`, {have: ctx.nlink[ino], want: wantNlink})
      const v = wantNlink
      ctx.nlink[ino] = v
      ctx.editInode(ino, (b, o) => b.writeUInt32LE(v, o + 0x04))
      ctx.fixed(p)
    }
    if (ctx.share[ino] !== wantShare) {
      const p = ctx.report('SHARE_COUNT', `inode ${ino}`, {have: ctx.share[ino], want: wantShare})
      const v = wantShare
      ctx.share[ino] = v
      ctx.editInode(ino, (b, o) => b.writeUInt32LE(v, o + 0x08))
      ctx.fixed(p)
    }
    if ((ino & 0xfff) === 0) ctx.progress('pass 3: links', ino, n)
  }
  ctx.progress('pass 3: links', n, n, true)
}
