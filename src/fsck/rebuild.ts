// fsck's last step when repairing: the repairs that need allocation, done through the
// filesystem library once passes 1-4 have made the reference-count table and the free
// counters true (so the allocator cannot hand out a block still in use). It rewrites the
// block maps pass 1 cleaned, rebuilds the directories pass 2 found damaged from the
// entries it kept, gives filesets whose root was lost a new empty root, makes the
// filesets and the lost+found entries lostfound.ts planned. Each item is committed on its
// own (a directory too large for one transaction in several); when an item fails, what
// it had not committed is undone and its problems stay unfixed: an inode that could not
// be reconnected is left as it is, with its data, for a later run.
import {ExtentMap} from '../fs/extentmap.js'
import {newRootDir} from '../fs/image.js'
import {DT_DIR, IF_NOCLONE, S_IFDIR} from '../format/constants.js'
import {encodeFileset} from '../format/fileset.js'
import {FormatError} from '../format/errors.js'
import {PrismError} from '../errors.js'
import {dirAdd, dirInit, dirLookup, dirRemove} from '../fs/dir.js'
import {releaseAll} from '../fs/extents.js'
import {addFileset} from '../fs/filesets.js'
import {touch} from '../fs/inode.js'
import type {FsckContext, LostPlan} from './context.js'
import {LOST_FOUND} from './lostfound.js'
import {slotLocation} from './pass2_dirs.js'
import type {FsckProblem} from './problems.js'

function attempt(ctx: FsckContext, what: string, problems: FsckProblem[], work: () => void): boolean {
  try {
    work()
    ctx.vol.commit()
    for (const p of problems) ctx.fixed(p)
    return true
  } catch (e) {
    if (!(e instanceof PrismError) && !(e instanceof FormatError)) throw e
    ctx.vol.abort()
    ctx.notes.push(`could not ${what}: ${e.message}`)
    return false
  }
}

export function applyDeferred(ctx: FsckContext): void {
  if (!ctx.repair) return
  const vol = ctx.vol
  vol.commit() // everything passes 0-4 changed in place
  vol.abort() // drops the volume's inode cache: the library must read the repaired records
  for (const f of ctx.filesets) {
    if (f.rootOk) continue
    attempt(ctx, `make a new root for fileset ${f.name}`, f.rootProblem ? [f.rootProblem] : [], () => {
      const root = newRootDir(vol)
      f.rootIno = root.ino
      f.rootOk = true
      const {block, off} = slotLocation(ctx, f.slot) // the fixed table or the table file (FORMAT.md §8.7)
      encodeFileset(f, vol.store.getMut(block), off)
      vol.filesetCache = null
      ctx.notes.push(`fileset ${f.name} has a new, empty root directory (inode ${root.ino})`)
    })
  }
  for (const nf of ctx.newFilesets) {
    attempt(ctx, `make fileset ${nf.name}`, nf.problems, () => {
      const root = nf.rootIno || newRootDir(vol).ino
      // A source that comes back (lostfound.ts) keeps its id, which its clones name, and a
      // fresh clone stamp, which turns on the guard that keeps its writes out of them.
      const back = nf.info.id !== 0
      if (back) {
        vol.sb.cloneClock = (vol.sb.cloneClock + 1) >>> 0
        vol.markSbDirty()
      }
      const f = addFileset(vol, nf.name, root, {parentId: nf.info.parentId, ...(back ? {id: nf.info.id, clonestart: vol.sb.cloneClock} : {})})
      Object.assign(nf.info, {slot: f.slot, id: f.id, rootIno: root, rootOk: true, created: f.created})
      ctx.notes.push(back
        ? `fileset ${nf.name} is back under id ${f.id}, the source of clones still expanding (root inode ${root})`
        : `fileset ${nf.name} is new: it holds what no other fileset could take (root inode ${root})`)
    })
  }
  // Reconnections come before the other directories are rebuilt: until they are committed
  // the damaged directories stay as they are, so that a run after a crash finds the same
  // names lost, in the same filesets, and reconnects the same way.
  const done = new Set<number>()
  for (const plan of ctx.lostPlans.values()) reconnect(ctx, plan, done)
  const inos = [...new Set([...ctx.rewrites.keys(), ...ctx.rebuilds.keys()])].filter((i) => !done.has(i)).sort((a, b) => a - b)
  let n = 0
  for (const ino of inos) {
    attempt(ctx, ctx.rebuilds.has(ino) ? `rebuild directory inode ${ino}` : `rewrite the block map of inode ${ino}`, problemsOf(ctx, ino), () => repairInode(ctx, ino))
    ctx.progress('repairing', ++n, inos.length)
  }
}

function problemsOf(ctx: FsckContext, ino: number): FsckProblem[] {
  return [...(ctx.rewrites.get(ino)?.problems ?? []), ...(ctx.rebuilds.get(ino)?.problems ?? [])]
}

/** Writes the block map pass 1 cleaned and rebuilds the directory pass 2 found damaged. */
function repairInode(ctx: FsckContext, ino: number): void {
  const vol = ctx.vol
  const rw = ctx.rewrites.get(ino)
  const rb = ctx.rebuilds.get(ino)
  const inode = vol.iget(ino)
  if (rw) {
    let mapped = 0
    for (const e of rw.ext) mapped += e.n
    inode.extents = ExtentMap.of(rw.ext.map((e) => ({...e})))
    inode.treeBlocks = [...rw.nodes]
    inode.r.blocks = mapped + rw.nodes.length
    inode.extentsDirty = true
    vol.idirty(inode)
    for (const e of rw.released) vol.decRefRun(e.p, e.n)
  }
  if (rb) {
    releaseAll(vol, inode)
    dirInit(inode)
    for (const e of rb.entries) {
      dirAdd(vol, inode, e.ino, e.type, e.name, e.lastclone)
      vol.maybeCommit() // a huge directory may not fit one transaction
    }
    vol.idirty(inode)
  }
}

/** Entries added to lost+found per transaction. */
const CHUNK = 512

/**
 * Makes a fileset's lost+found (if it has none) and names the plan's inodes in it. With
 * no free inode for a new lost+found, the names go in the fileset's root directory
 * instead; when even that fails (no space), the inodes are left as they are, unnamed but
 * whole, for a run after space is freed.
 */
function reconnect(ctx: FsckContext, plan: LostPlan, done: Set<number>): void {
  const vol = ctx.vol
  const f = plan.fileset
  if (!f.rootOk) {
    ctx.notes.push(`fileset ${f.name} has no root: ${plan.items.length} inode(s) left unconnected, their data kept`)
    return
  }
  // Without a free inode for a new lost+found the names go in the root directory (a file
  // named lost+found then stays where it is).
  const inRoot = plan.inRoot || (plan.lfIno === 0 && vol.sb.freeInodes === 0)
  const all = inRoot ? plan.items.filter((i) => i.ino !== plan.moveAside) : plan.items
  if (inRoot) ctx.notes.push(`no free inode for fileset ${f.name}:/lost+found: ${all.length} inode(s) are reconnected in its root directory instead`)
  const dirs = all.filter((i) => i.type === DT_DIR).length
  // The directories that take the names are repaired with the first of them, in one
  // transaction where they fit.
  const first = [f.rootIno, plan.lfIno].filter((i) => i !== 0 && !done.has(i) && (ctx.rewrites.has(i) || ctx.rebuilds.has(i)))
  for (let at = 0; at < all.length; at += CHUNK) {
    const items = all.slice(at, at + CHUNK)
    let made = 0
    const where = inRoot ? `fileset ${f.name}:/` : `fileset ${f.name}:/lost+found`
    const repaired = at === 0 ? first : []
    const ok = attempt(ctx, `reconnect inodes in ${where}`, [...repaired.flatMap((i) => problemsOf(ctx, i)), ...items.flatMap((i) => i.problems)], () => {
      for (const i of repaired) repairInode(ctx, i)
      const root = vol.iget(f.rootIno)
      let lf
      if (inRoot) {
        lf = root
        // Pass 3 counted the planned subdirectories already; not those of a late change of plan.
        if (at === 0 && !plan.inRoot) root.r.nlink += dirs
      } else if (plan.lfIno) lf = vol.iget(plan.lfIno)
      else {
        if (plan.moveAside) dirRemove(vol, root, LOST_FOUND)
        // As e2fsck makes it: mode 0700, owned by root.
        lf = vol.ialloc(S_IFDIR | 0o700, root.ino + 1)
        dirInit(lf)
        lf.r.nlink = 2 + dirs
        if (plan.noclone) lf.r.flags |= IF_NOCLONE
        touch(lf.r, {a: true, m: true, c: true})
        lf.r.dataVersion = 1
        dirAdd(vol, root, lf.ino, DT_DIR, LOST_FOUND)
        root.r.nlink++
        touch(root.r, {m: true, c: true})
        vol.idirty(root)
      }
      for (const item of items) {
        let name = item.name
        // The root's names were not looked at when the names were chosen.
        for (let k = 2; inRoot && dirLookup(vol, lf, name); k++) name = Buffer.from(`#${item.ino}.${k}`)
        dirAdd(vol, lf, item.ino, item.type, name)
      }
      touch(lf.r, {m: true, c: true})
      vol.idirty(lf)
      if (!inRoot && !plan.lfIno) made = lf.ino
    })
    if (ok) for (const i of repaired) done.add(i)
    if (ok && made) {
      plan.lfIno = made
      ctx.notes.push(`fileset ${f.name}: made /lost+found (inode ${made})`)
    }
    if (!ok) {
      const left = all.slice(at).map((i) => i.ino)
      ctx.notes.push(`fileset ${f.name}: ${left.length} inode(s) left unconnected, their data kept (inode ${left.slice(0, 8).join(', ')}${left.length > 8 ? ', ...' : ''}); free space and run 'prism fsck --repair' again`)
      return
    }
  }
}
