// fsck pass 3, reconnection: every in-use inode that no tree reaches, and every shared
// inode a fileset lost its name for, is named again in /lost+found of the fileset that
// lost it (`#INO`, as e2fsck names what it reconnects), never freed while it holds
// anything: docs/FORMAT.md §13 gives the rules this module follows to decide which
// fileset that is. A reconnected directory is walked (and checked) as part of its new
// fileset, and every new name is counted before pass 3 checks link and share counts, so
// the counts come out right for the names the repair adds. Only files that hold nothing a
// user made (zero-length, as e2fsck clears them, or scan results and clone state no longer
// referenced) are freed; every directory is reconnected. This module decides and counts;
// rebuild.ts makes the directories and entries. It never changes a directory itself.
import {DT_DIR, FS_ACTIVE, FS_DELETING, IF_UNEXPANDED, MODE_NONE} from '../format/constants.js'
import {CLONE_STATE_MAGIC, decodeCloneState} from '../format/clonestate.js'
import {decodeInode} from '../format/inode.js'
import {SCAN_MAGIC, decodeScanFile} from '../format/scan.js'
import {readData} from '../fs/extents.js'
import {Inode} from '../fs/inode.js'
import {
  DT_OF_KIND, R_FILESET, R_ORPHAN_TREE, T_DIR, T_FREE, T_REG, T_XATTR, type FilesetInfo, type FsckContext, type LostItem, type LostPlan,
} from './context.js'
import {KIND_NAME} from './pass1_inodes.js'
import {LostWalker, filesetsNaming, keptEntries, writeRecord, type ListedEntry} from './pass2_dirs.js'
import type {FsckProblem} from './problems.js'
import {freeInode} from './pass3_links.js'
import {clearUnexpanded} from './clonestate.js'

export const LOST_FOUND = Buffer.from('lost+found')
const TWO32 = 0x1_0000_0000

/**
 * Decides where every unreachable inode goes and counts its new name (the pass 3 counts
 * that follow include them). Runs after the orphan trees are walked.
 */
export function planReconnections(ctx: FsckContext): void {
  const n = ctx.inoEnd - 1 // past it the inode table is a hole: every inode free
  const {itype, reach} = ctx
  const lostDirs: number[] = []
  const lostOther: number[] = []
  const partial: number[] = []
  for (let ino = 1; ino <= n; ino++) {
    const t = itype[ino]
    if (t === T_FREE || t === T_XATTR) continue // attribute inodes are named by inodes (xattrs.ts)
    if (reach[ino] === 0) (t === T_DIR ? lostDirs : lostOther).push(ino)
    else if (t !== T_DIR && reach[ino] & (R_FILESET | R_ORPHAN_TREE) && ctx.share[ino] > ctx.trees[ino] &&
      !ctx.pendingLinks.has(ino) && !ctx.inconsistent.has(ino)) partial.push(ino)
  }
  if (lostDirs.length === 0 && lostOther.length === 0 && !(partial.length > 0 && ctx.filesets.some((f) => f.lost > 0))) return
  new Reconnect(ctx, lostDirs, lostOther, partial).run()
}

class Reconnect {
  /** the entries of each unreachable directory */
  private readonly kids = new Map<number, ListedEntry[]>()
  /** the filesets (indexes into ctx.filesets, or past it for filesets made here) that name an inode */
  private readonly members = new Map<number, number[]>()
  /** lost names each fileset still has room for (FilesetInfo.lost, used up as inodes go there) */
  private readonly room: number[]
  private readonly family: number[]
  private readonly plans = new Map<number, LostPlan | null>()
  /** filesets made here, as FilesetInfo (index ctx.filesets.length + k) */
  private readonly made: FilesetInfo[] = []
  private readonly walker: LostWalker
  /** free inode slots left for new lost+found directories (-1: not counted yet) */
  private spare = -1

  constructor(private readonly ctx: FsckContext, private readonly lostDirs: number[], private readonly lostOther: number[], private readonly partial: number[]) {
    this.room = ctx.filesets.map((f) => f.lost)
    this.family = families(ctx.filesets)
    this.walker = new LostWalker(ctx)
  }

  run(): void {
    const ctx = this.ctx
    // What each unreachable directory names, and which of them some other one names: the
    // tops of the unreachable trees are the others (e2fsck reconnects only those).
    const named = new Set<number>()
    for (const d of this.lostDirs) {
      const es = keptEntries(ctx, d)
      this.kids.set(d, es)
      for (const e of es) if (e.ino !== d) named.add(e.ino)
    }
    // Unattached files that hold nothing go first (their inodes may be what lost+found needs).
    for (const ino of this.lostOther) {
      const why = named.has(ino) ? null : garbage(ctx, ino)
      if (!why) continue
      const p = ctx.report('INODE_UNATTACHED_EMPTY', `inode ${ino}`, {kind: KIND_NAME[ctx.itype[ino]], detail: why})
      freeInode(ctx, ino)
      ctx.fixed(p)
    }
    const interesting = new Set<number>([...this.lostOther.filter((i) => ctx.itype[i] !== T_FREE), ...this.partial])
    for (const es of this.kids.values()) for (const e of es) if (ctx.itype[e.ino] !== T_DIR) interesting.add(e.ino)
    this.loadMembers(interesting)

    // The trees of sources of clones in flight go back first (their fileset's root may come
    // back with one, before anything is planned for its lost+found); then the others
    // (they bring their files back with them), in inode order; a loop of unreachable
    // directories with no top gets its lowest directory as one.
    for (const top of ctx.lostSources.keys()) if (ctx.reach[top] === 0 && ctx.itype[top] === T_DIR) this.tree(top)
    let tops = this.lostDirs.filter((d) => !named.has(d))
    for (;;) {
      for (const t of tops) if (ctx.reach[t] === 0 && ctx.itype[t] === T_DIR) this.tree(t)
      const left = this.lostDirs.find((d) => ctx.reach[d] === 0 && ctx.itype[d] === T_DIR)
      if (left === undefined) break
      tops = [left]
    }
    // Then files and symlinks: those no tree names, and shared ones some fileset lost.
    const files = [...interesting].sort((a, b) => a - b)
    for (const ino of files) this.file(ino)
  }

  /** ctx.firstFs/lastFs for inodes at most two filesets name; another walk for the rest. */
  private loadMembers(inos: Set<number>): void {
    const ctx = this.ctx
    const more = new Set<number>()
    for (const ino of inos) {
      const t = ctx.filesetTrees[ino]
      if (t === 0) this.members.set(ino, [])
      else if (t === 1) this.members.set(ino, [ctx.firstFs[ino] - 1])
      else if (t === 2) this.members.set(ino, [ctx.firstFs[ino] - 1, ctx.lastFs[ino] - 1])
      else more.add(ino)
    }
    if (more.size > 0) for (const [ino, l] of filesetsNaming(ctx, more)) this.members.set(ino, l)
  }

  private infoOf(k: number): FilesetInfo {
    return k < this.ctx.filesets.length ? this.ctx.filesets[k] : this.made[k - this.ctx.filesets.length]
  }

  /**
   * The lost+found plan of fileset k, or null when the fileset cannot take anything: it is
   * being deleted, its root (or its lost+found) is an unexpanded clone directory, which
   * has no entries of its own to add to, or it was made here.
   */
  private planOf(k: number): LostPlan | null {
    const cached = this.plans.get(k)
    if (cached !== undefined) return cached
    const ctx = this.ctx
    let plan: LostPlan | null = null
    const f = k < ctx.filesets.length ? ctx.filesets[k] : null
    if (f && f.state !== FS_DELETING && !(f.rootOk && ctx.iflags[f.rootIno] & IF_UNEXPANDED)) {
      plan = {fileset: f, lfIno: 0, moveAside: 0, noclone: f.clonestart !== 0, inRoot: false, items: [], names: new Set()}
      const e = f.rootOk ? keptEntries(ctx, f.rootIno).find((x) => x.name.equals(LOST_FOUND)) : undefined
      if (e && ctx.itype[e.ino] === T_DIR) {
        if (ctx.iflags[e.ino] & IF_UNEXPANDED) plan = null
        else {
          plan.lfIno = e.ino
          plan.noclone = false
          for (const x of keptEntries(ctx, e.ino)) plan.names.add(x.name.toString('latin1'))
        }
      } else if (e) plan.moveAside = e.ino
      if (plan && !plan.lfIno && !this.takeInode()) {
        // No inode for a new lost+found: the fileset's root takes the names (a file named
        // lost+found then stays as it is).
        plan.inRoot = true
        plan.moveAside = 0
        if (f.rootOk) for (const x of keptEntries(ctx, f.rootIno)) plan.names.add(x.name.toString('latin1'))
      }
    }
    this.plans.set(k, plan)
    return plan
  }

  /** Reserves a free inode for a new directory; false when none is left. */
  private takeInode(): boolean {
    const ctx = this.ctx
    if (this.spare < 0) {
      this.spare = 0
      // Inodes from inoEnd on are in never-written parts of the table: all free.
      this.spare = ctx.sb.inodeCount - (ctx.inoEnd - 1)
      for (let ino = 1; ino < ctx.inoEnd; ino++) if (ctx.itype[ino] === T_FREE) this.spare++
      // New roots for filesets whose root was lost come first (rebuild.ts).
      this.spare -= ctx.filesets.filter((f) => !f.rootOk).length
    }
    if (this.spare <= 0) return false
    this.spare--
    return true
  }

  /** Adds an item to fileset k's lost+found (its plan exists): returns the name given. */
  private add(k: number, ino: number, problems: (path: string, name: string) => FsckProblem[]): void {
    const ctx = this.ctx
    const plan = this.planOf(k)!
    if (!ctx.lostPlans.has(plan.fileset)) {
      ctx.lostPlans.set(plan.fileset, plan)
      if (plan.moveAside) {
        // As e2fsck ("/lost+found is not a directory. Unlink?"), which then reconnects the
        // inode it unlinked: the file keeps its data, under the new directory.
        const x = plan.moveAside
        const name = uniqueName(plan.names, x)
        const p = ctx.report('LOST_FOUND_NOT_DIR', `fileset ${plan.fileset.name}:/lost+found`, {kind: KIND_NAME[ctx.itype[x]], name})
        plan.items.push({ino: x, type: DT_OF_KIND[ctx.itype[x]], name: Buffer.from(name, 'latin1'), problems: [p]})
      }
    }
    const name = uniqueName(plan.names, ino)
    const path = `fileset ${plan.fileset.name}:/${plan.inRoot ? '' : 'lost+found/'}${name}`
    const item: LostItem = {ino, type: DT_OF_KIND[ctx.itype[ino]], name: Buffer.from(name, 'latin1'), problems: problems(path, name)}
    plan.items.push(item)
    if (ctx.itype[ino] === T_DIR && plan.lfIno) ctx.subdirs[plan.lfIno]++
    else if (ctx.itype[ino] === T_DIR && plan.inRoot && plan.fileset.rootOk) ctx.subdirs[plan.fileset.rootIno]++
    if (k < this.room.length) this.room[k]--
  }

  /** Fileset indexes that may take something, best first: room for lost names, then slot order. */
  private rank(ks: number[]): number[] {
    return ks.filter((k) => this.planOf(k) !== null).sort((a, b) => {
      const ra = this.room[a] > 0 ? 0 : 1
      const rb = this.room[b] > 0 ? 0 : 1
      return ra - rb || this.infoOf(a).slot - this.infoOf(b).slot
    })
  }

  private all(): number[] {
    return this.ctx.filesets.map((_, k) => k)
  }

  // ---------------------------------------------------------------- trees

  /** Reconnects the unreachable tree whose top is directory `top`. */
  private tree(top: number): void {
    const ctx = this.ctx
    const files = this.filesIn(top)
    // The evidence the tree's files give (FORMAT.md §13.2): a file with share 1 that a
    // fileset names elsewhere (a hard link) says the tree is that fileset's; a shared file
    // says it is not the tree of any fileset that already names it (a shared inode has one
    // name per fileset), but of one in the same family of clones.
    const links = new Map<number, number>()
    const holds = new Set<number>()
    const fams = new Set<number>()
    for (const ino of files) {
      const m = this.members.get(ino) ?? []
      for (const k of m) {
        fams.add(this.familyOf(k))
        if (ctx.share[ino] > 1) holds.add(k)
        else links.set(k, (links.get(k) ?? 0) + 1)
      }
    }
    const source = ctx.lostSources.get(top)
    const own = source ? ctx.filesets.findIndex((f) => f.id === source.id) : -1
    if (source && own >= 0) {
      // The tree of a source, or of a clone in flight, whose record names a root that is not
      // one (clonestate.ts): its root again, rather than a new empty one with this tree in
      // its lost+found.
      const f = ctx.filesets[own]
      f.rootIno = top
      f.rootOk = true
      f.lost = 0
      this.room[own] = 0
      if (f.rootProblem) ctx.fixed(f.rootProblem)
      f.rootProblem = null
      const why = source.cloneOf !== undefined ? `its unexpanded directories expand from fileset ${source.cloneOf}, as this clone does`
        : `clones in flight (${source.clones.join(', ')}) expand from it`
      ctx.fixed(ctx.report('FILESET_ROOT_RECOVERED', `fileset ${f.name}`, {ino: top, why}))
      writeRecord(ctx, f, f.slot)
      this.fold(this.walker.walk(top, f, `fileset ${f.name}:`), own)
      return
    }
    if (source) {
      // The tree of a source whose record is lost (clonestate.ts): its own fileset again,
      // under its old id, for the clones expanding from it.
      const f = this.newFileset(`recovered-${top}`, top)
      f.id = source.id
      const p = ctx.report('FILESET_SOURCE_RECOVERED', `inode ${top}`, {ino: top, id: source.id, clones: source.clones.join(', '), name: f.name})
      this.recovered(top, f, p)
      return
    }
    let k: number | undefined
    if (links.size > 0) {
      const ks = this.rank([...links.keys()]).sort((a, b) => (holds.has(a) ? 1 : 0) - (holds.has(b) ? 1 : 0) || links.get(b)! - links.get(a)!)
      k = ks[0]
    }
    if (k === undefined) {
      const eligible = this.all().filter((j) => !holds.has(j) && (fams.size === 0 || fams.has(this.familyOf(j))))
      k = this.rank(eligible.filter((j) => this.ctx.filesets[j].lost > 0))[0] ?? this.rank(eligible)[0]
    }
    if (k === undefined) {
      // No fileset can take it: the tree becomes a fileset of its own.
      const f = this.newFileset(`recovered-${top}`, top)
      // Its parent is a fileset its shared files come from, so the family stays one.
      const from = [...holds].filter((j) => j < this.ctx.filesets.length).sort((a, b) => a - b)[0]
      if (from !== undefined) f.parentId = this.ctx.filesets[from].id
      this.recovered(top, f, ctx.report('FILESET_RECOVERED', `inode ${top}`, {ino: top, name: f.name}))
      return
    }
    let path = ''
    this.add(k, top, (pth) => {
      path = pth
      return [ctx.report('INODE_UNREACHABLE', `inode ${top}`, {kind: 'directory', path: pth})]
    })
    const owner = this.ctx.filesets[k]
    const touched = this.walker.walk(top, owner, path)
    this.fold(touched, k)
    this.unexpandedIn(touched, path, 'it was reconnected to lost+found, away from its source\'s path')
  }

  /**
   * Walks the tree under `top`, the root of fileset f just planned (the last made), reported
   * by p. An UNEXPANDED directory in it was its fileset's while that fileset was a clone in
   * flight: its record, with the clone's source and exclude patterns, is lost, so the new
   * fileset is not one, and they become empty (a clone of it sees the same).
   */
  private recovered(top: number, f: FilesetInfo, p: FsckProblem): void {
    this.ctx.newFilesets[this.ctx.newFilesets.length - 1].problems.push(p)
    const prefix = `fileset ${f.name}:`
    const touched = this.walker.walk(top, f, prefix)
    this.fold(touched, this.ctx.filesets.length + this.made.length - 1)
    this.unexpandedIn(touched, prefix, 'its fileset\'s record is lost, with the source and exclude patterns of the clone it was')
  }

  /** The files (not directories) named in the unreachable tree under `top`. */
  private filesIn(top: number): number[] {
    const ctx = this.ctx
    const out: number[] = []
    const seen = new Set<number>([top])
    const stack = [top]
    while (stack.length > 0) {
      const d = stack.pop()!
      for (const e of this.kids.get(d) ?? []) {
        if (ctx.itype[e.ino] !== T_DIR) out.push(e.ino)
        else if (this.kids.has(e.ino) && ctx.reach[e.ino] === 0 && !seen.has(e.ino)) { seen.add(e.ino); stack.push(e.ino) }
      }
    }
    return out
  }

  /**
   * An UNEXPANDED directory stands for the directory at its own path in its source
   * (FORMAT.md §8.6): under lost+found it no longer sits there, so it cannot expand.
   */
  private unexpandedIn(touched: Uint32Array, path: string, detail: string): void {
    const ctx = this.ctx
    for (const ino of touched) {
      if (ctx.itype[ino] !== T_DIR || !(ctx.iflags[ino] & IF_UNEXPANDED)) continue
      const p = ctx.report('UNEXPANDED_BAD', path, {ino, detail})
      clearUnexpanded(ctx, ino)
      ctx.fixed(p)
    }
  }

  /** Adds the names a walk of fileset k counted (ctx.curCount) to the totals, as pass 2 folds a tree. */
  private fold(touched: Uint32Array, k: number): void {
    const ctx = this.ctx
    for (const ino of touched) {
      const c = ctx.curCount[ino]
      ctx.curCount[ino] = 0
      this.name(ino, k, c)
    }
  }

  /** Counts `c` more names of inode `ino` in fileset k. */
  private name(ino: number, k: number, c: number): void {
    const ctx = this.ctx
    ctx.reach[ino] |= R_FILESET
    const m = this.members.get(ino)
    if (m && m.includes(k)) {
      // Named in that fileset already (a hard link): the same tree, more names.
      ctx.totalNames[ino] += c
      if (ctx.trees[ino] === 1) ctx.firstCount[ino] += c
      else ctx.inconsistent.add(ino)
      return
    }
    if (ctx.trees[ino] === 0) ctx.firstCount[ino] = c
    else if (ctx.firstCount[ino] !== c) ctx.inconsistent.add(ino)
    if (ctx.trees[ino] < 0xffff) ctx.trees[ino]++
    if (ctx.filesetTrees[ino] < 0xffff) ctx.filesetTrees[ino]++
    ctx.totalNames[ino] += c
    if (m) m.push(k)
    else if (ctx.itype[ino] !== T_DIR) this.members.set(ino, [k])
  }

  // ---------------------------------------------------------------- files

  /** Reconnects a file or symlink where filesets lost it (FORMAT.md §13.3). */
  private file(ino: number): void {
    const ctx = this.ctx
    if (ctx.itype[ino] === T_FREE) return
    const r = ctx.trees[ino]
    const want = Math.max(1, ctx.share[ino])
    if (r >= want) return
    if (r === 0) {
      const why = garbage(ctx, ino)
      if (why) {
        const p = ctx.report('INODE_UNATTACHED_EMPTY', `inode ${ino}`, {kind: KIND_NAME[ctx.itype[ino]], detail: why})
        freeInode(ctx, ino)
        ctx.fixed(p)
        return
      }
    } else if (ctx.itype[ino] === T_REG && sizeOf(ctx, ino) === 0) {
      return // an empty file another tree still holds: no data to give back
    }
    const m = this.members.get(ino) ?? []
    const fams = new Set(m.map((k) => this.familyOf(k)))
    const open = this.all().filter((k) => !m.includes(k) && (fams.size === 0 || fams.has(this.familyOf(k))))
    const lost = this.rank(open.filter((k) => ctx.filesets[k].lost > 0))
    let to = lost.slice(0, want - r)
    if (to.length === 0 && r === 0) to = this.rank(open).slice(0, 1)
    if (to.length === 0 && r === 0) to = [this.recoveredFileset()]
    const kind = KIND_NAME[ctx.itype[ino]]
    for (const k of to) {
      const f = this.infoOf(k)
      this.add(k, ino, (path) => [r === 0
        ? ctx.report('INODE_UNREACHABLE', `inode ${ino}`, {kind, path})
        : ctx.report('INODE_NAME_LOST', `inode ${ino}`, {kind, share: ctx.share[ino], fileset: f.name, path})])
      this.name(ino, k, 1)
    }
  }

  // ---------------------------------------------------------------- new filesets

  /** Plans a fileset rooted at `root` (0: a new empty root); returns its FilesetInfo. */
  private newFileset(base: string, root: number): FilesetInfo {
    const ctx = this.ctx
    const taken = new Set([...ctx.filesets.map((f) => f.name), ...ctx.newFilesets.map((f) => f.name)])
    let name = base
    for (let i = 2; taken.has(name); i++) name = `${base}-${i}`
    const info: FilesetInfo = {
      slot: -1, id: 0, rootIno: root, parentId: 0, state: FS_ACTIVE, mode: MODE_NONE, flags: 0, created: Date.now(),
      clonestart: 0, stateIno: 0, srcFileset: 0, dirsDone: 0, dirsTotal: 0, name, coawCopied: 0, coawRewrites: 0, rootOk: root !== 0, rootProblem: null, lost: 0,
    }
    this.made.push(info)
    this.room.push(0)
    this.family.push(-1 - this.made.length)
    ctx.newFilesets.push({name, rootIno: root, problems: [], info})
    return info
  }

  /** The fileset for files when no fileset is left at all: `recovered`, with a new empty root. */
  private recoveredFileset(): number {
    const k0 = this.made.findIndex((f) => f.rootIno === 0)
    if (k0 >= 0) return this.ctx.filesets.length + k0
    this.takeInode() // its root
    const info = this.newFileset('recovered', 0)
    const k = this.ctx.filesets.length + this.made.length - 1
    this.plans.set(k, {fileset: info, lfIno: 0, moveAside: 0, noclone: false, inRoot: !this.takeInode(), items: [], names: new Set()})
    return k
  }

  private familyOf(k: number): number {
    return this.family[k]
  }
}

/** Filesets related by cloning share a family (an index of one of them): parent links, followed both ways. */
function families(filesets: FilesetInfo[]): number[] {
  const byId = new Map(filesets.map((f, k) => [f.id, k]))
  const up = filesets.map((_, k) => k)
  const find = (k: number): number => {
    while (up[k] !== k) { up[k] = up[up[k]]; k = up[k] }
    return k
  }
  filesets.forEach((f, k) => {
    const p = byId.get(f.parentId)
    if (p !== undefined) up[find(k)] = find(p)
  })
  return filesets.map((_, k) => find(k))
}

/** `#INO`, or `#INO.2`, ... if lost+found already holds that name; adds it to `names`. */
function uniqueName(names: Set<string>, ino: number): string {
  let name = `#${ino}`
  for (let k = 2; names.has(name); k++) name = `#${ino}.${k}`
  names.add(name)
  return name
}

function sizeOf(ctx: FsckContext, ino: number): number {
  const {buf, off} = ctx.inodeAt(ino)
  return buf.readUInt32LE(off + 0x18) + buf.readUInt32LE(off + 0x1c) * TWO32
}

/**
 * Why an unattached file holds nothing a user made, or null: e2fsck clears a zero-length
 * inode ("Unattached zero-length inode. Clear?"); scan results (a cache, FORMAT.md §12) and
 * a clone-state file (FORMAT.md §8.5) that nothing references any more are Prism's own
 * bookkeeping, recognised by their content.
 */
function garbage(ctx: FsckContext, ino: number): string | null {
  if (ctx.itype[ino] !== T_REG) return null
  const size = sizeOf(ctx, ino)
  if (size === 0) return 'zero-length'
  const {buf, off} = ctx.inodeAt(ino)
  if ((buf.readUInt16LE(off) & 0o7777) !== 0o600 || size < 8) return null
  try {
    const inode = new Inode(ino, decodeInode(buf, off, ino))
    const head = readData(ctx.vol, inode, 0, 8)
    if (head.equals(SCAN_MAGIC)) {
      decodeScanFile(readData(ctx.vol, inode, 0, size))
      return 'scan results nothing refers to, a cache'
    }
    if (head.readUInt32LE(0) === CLONE_STATE_MAGIC) {
      decodeCloneState(readData(ctx.vol, inode, 0, size))
      return 'clone state of no expanding clone'
    }
  } catch {
    // Not what it looked like: a user's file.
  }
  return null
}
