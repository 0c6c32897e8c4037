// Changing and reporting what a tree's inodes say about themselves: owners (chown, with user
// and group names looked up in the fileset's own /etc/passwd and /etc/group, as `chroot
// --userspec` resolves them inside the new root), times (touch, to the nanosecond), modes
// recursively (chmod -R), and space (du: apparent size, blocks used, blocks shared). Each
// works on one path of one fileset; the CLI runs it for every argument. Changes go into the
// running transaction (callers commit); walks of large trees commit as they go.
import {IF_INLINE, S_IFMT} from '../format/constants.js'
import {nameText} from '../format/name.js'
import {EXIT, PrismError, fail, isDamage} from '../errors.js'
import {dirListByInode, enterDir} from '../fs/dir.js'
import {loadExtents} from '../fs/extents.js'
import {now, touch, type Inode, type Timestamp} from '../fs/inode.js'
import type {Namespace} from '../fs/namespace.js'
import {chmodAcl, getXattr, removeXattr} from '../fs/xattr.js'
import {call, runNow, type Frame} from '../frames.js'
import {checkInterrupt} from '../interrupt.js'

// ---------------------------------------------------------------- owners

export interface Owner {
  uid?: number
  gid?: number
}

/** Parses /etc/passwd or /etc/group text: name -> [id, primary gid for passwd]. */
function parseDb(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>()
  for (const line of text.split('\n')) {
    const f = line.split(':')
    if (f.length < 3 || f[0] === '' || line.startsWith('#')) continue
    const id = Number(f[2])
    if (!/^\d+$/.test(f[2]) || id > 0xffffffff) continue
    if (!out.has(f[0])) out.set(f[0], [id, /^\d+$/.test(f[3] ?? '') ? Number(f[3]) : -1])
  }
  return out
}

function readDb(ns: Namespace, path: string): Map<string, number[]> {
  try {
    return parseDb(ns.readFile(path).toString('utf8'))
  } catch {
    return new Map()
  }
}

const ID = /^\d+$/

/** A usage error for an owner spec that cannot be one, before any fileset is read. */
export function checkOwnerSpec(spec: string): void {
  if (spec === '' || spec === ':' || spec.split(':').length > 2) fail('EUSAGE', `invalid owner '${spec}': write OWNER, OWNER:GROUP, OWNER: or :GROUP`)
}

/**
 * OWNER[:GROUP], OWNER:, :GROUP (also with '.' for ':' as old chown): numeric ids, or names
 * looked up in this fileset's /etc/passwd and /etc/group. `OWNER:` takes the owner's login
 * group, as chown does.
 */
export function parseOwner(ns: Namespace, spec: string): Owner {
  checkOwnerSpec(spec)
  const m = /^([^:]*)(?:(:)(.*))?$/.exec(spec)!
  const [, user, sep, group] = m
  const out: Owner = {}
  let passwd: Map<string, number[]> | null = null
  if (user) {
    if (ID.test(user)) out.uid = Number(user)
    else {
      passwd = readDb(ns, '/etc/passwd')
      const e = passwd.get(user)
      if (!e) fail('EINVAL', `invalid user '${user}': not in ${ns.where('/etc/passwd')} (give a number to use an id as it is)`)
      out.uid = e[0]
    }
    // (4294967295 is (uid_t)-1, which chown(2) takes as "leave it": no file can have it)
    if (out.uid! >= 0xffffffff) fail('EINVAL', `user id ${user} is out of range`)
  }
  if (sep !== undefined && group) {
    if (ID.test(group)) out.gid = Number(group)
    else {
      const e = readDb(ns, '/etc/group').get(group)
      if (!e) fail('EINVAL', `invalid group '${group}': not in ${ns.where('/etc/group')} (give a number to use an id as it is)`)
      out.gid = e[0]
    }
    if (out.gid! >= 0xffffffff) fail('EINVAL', `group id ${group} is out of range`)
  } else if (sep !== undefined && user) {
    // OWNER: the owner's login group.
    const e = ID.test(user) ? [...(passwd ?? readDb(ns, '/etc/passwd')).values()].find((v) => v[0] === out.uid) : (passwd ?? readDb(ns, '/etc/passwd')).get(user)
    if (!e || e[1] < 0) fail('EINVAL', `no login group for '${user}' in ${ns.where('/etc/passwd')}`)
    out.gid = e[1]
  }
  return out
}

export interface WalkOptions {
  /** act on every inode below a directory (symlinks are not followed, as chown -R -P) */
  recursive?: boolean
  /** act on a symlink itself rather than what it points to (chown -h; always so inside -R) */
  noDereference?: boolean
  /** called every so often during a large walk */
  onProgress?: (done: number) => void
}

/**
 * The inode at `path` (owned: copied first if shared, so other filesets keep theirs) and, with
 * `recursive`, every inode below it, each once, handed to `fn`. Commits as it goes on a large
 * tree (each inode's change is whole by itself, as chown -R's are).
 */
function walkOwned(ns: Namespace, path: string, opts: WalkOptions, fn: (inode: Inode) => void): number {
  const steps = walkOwnedSteps(ns, path, opts, fn)
  for (;;) {
    const r = steps.next()
    if (r.done) return r.value
  }
}

/**
 * walkOwned() in steps: it yields after each inode it hands to `fn`, so that a server can
 * answer its mounts between them (src/server/sliced.ts). `changes` moves whenever they may
 * have changed the image meanwhile: the directory being listed is then found again by its
 * path, and an entry that has gone from it is passed over (as chmod -R passes over a file
 * removed under it).
 */
export function* walkOwnedSteps(ns: Namespace, path: string, opts: WalkOptions, fn: (inode: Inode) => void, changes?: () => number): Generator<void, number> {
  const top = ns.resolveOwned(path, !opts.noDereference)
  fn(top)
  let done = 1
  if (!opts.recursive || !top.isDir) return done
  yield
  ns.materialize(path)
  const start = ns.resolveFull(path, !opts.noDereference)
  // Each directory to list with the count of changes at which its path was found.
  const stack: Array<{ino: number, path: string, at: number}> = [{ino: start.inode.ino, path: pathOf(start.names), at: changes?.() ?? 0}]
  const seen = new Set<number>()
  while (stack.length) {
    const {ino, path: dirPath, at} = stack.pop()!
    let dir: Inode | null = ns.vol.iget(ino)
    let known = at
    if (changes && changes() !== known) {
      known = changes()
      dir = ns.dirIfStill(dirPath, ino)
      if (!dir) continue
    }
    enterDir(seen, ino, ns.where(dirPath))
    for (const e of dirListByInode(ns.vol, dir)) {
      if (changes && changes() !== known) {
        known = changes()
        dir = ns.dirIfStill(dirPath, ino)
        if (!dir) break
      }
      if (changes && !ns.lookupEntry(dir, e.name)) continue
      const childPath = `${dirPath === '/' ? '' : dirPath}/${nameText(e.name)}`
      const child = ns.resolveOwned(childPath, false)
      fn(child)
      done++
      if (child.isDir) stack.push({ino: child.ino, path: childPath, at: known})
      // Each inode's change is whole by itself: a large directory commits as it goes (a
      // shared inode's copy changes two inode-table blocks, and 20,000 of them outgrow a
      // 256 MiB image's journal).
      ns.vol.maybeCommit()
      yield
    }
    opts.onProgress?.(done)
    ns.vol.maybeCommit()
  }
  return done
}


function pathOf(names: Buffer[]): string {
  return names.length === 0 ? '/' : names.map((n) => '/' + nameText(n)).join('')
}

/**
 * chown(2) semantics: a change of owner or group clears the set-user-ID bit, and the
 * set-group-ID bit when group execution is set, of anything but a directory, and removes a
 * file capability (security.capability), as Linux does even for root.
 */
export function chownInode(ns: Namespace, inode: Inode, o: Owner): void {
  const uid = o.uid ?? inode.r.uid
  const gid = o.gid ?? inode.r.gid
  if (!inode.isDir && !inode.isLnk && (o.uid !== undefined || o.gid !== undefined)) {
    let mode = inode.r.mode & ~0o4000
    if (mode & 0o010) mode &= ~0o2000
    inode.r.mode = mode
    if (getXattr(ns.vol, inode, CAP)) removeXattr(ns.vol, inode, CAP)
  }
  ns.chown(inode, uid, gid)
}

const CAP = Buffer.from('security.capability')

export function chownPath(ns: Namespace, path: string, o: Owner, opts: WalkOptions = {}): number {
  return walkOwned(ns, path, opts, (inode) => chownInode(ns, inode, o))
}

/** chownPath() in steps (walkOwnedSteps). */
export function chownSteps(ns: Namespace, path: string, o: Owner, opts: WalkOptions, changes?: () => number): Generator<void, number> {
  return walkOwnedSteps(ns, path, opts, (inode) => chownInode(ns, inode, o), changes)
}

/** chmod -R: `modeOf(current mode, is a directory)` gives each inode's new permission bits; symlinks are left alone (a symlink given as the path is followed). */
export function chmodPath(ns: Namespace, path: string, modeOf: (perm: number, isDir: boolean) => number, opts: WalkOptions = {}): number {
  return walkOwned(ns, path, {...opts, recursive: true}, chmodInode(ns, modeOf))
}

/** chmodPath() in steps (walkOwnedSteps). */
export function chmodSteps(ns: Namespace, path: string, modeOf: (perm: number, isDir: boolean) => number, changes?: () => number): Generator<void, number> {
  return walkOwnedSteps(ns, path, {recursive: true}, chmodInode(ns, modeOf), changes)
}

function chmodInode(ns: Namespace, modeOf: (perm: number, isDir: boolean) => number): (inode: Inode) => void {
  return (inode) => {
    if (inode.isLnk) return
    inode.r.mode = (inode.r.mode & S_IFMT) | (modeOf(inode.r.mode & 0o7777, inode.isDir) & 0o7777)
    touch(inode.r, {c: true})
    ns.vol.idirty(inode)
    chmodAcl(ns.vol, inode)
  }
}

/** Parses an octal mode (755) or a symbolic one (u+x, go-w, a=r) against the current mode. */
export function parseMode(spec: string, current: number, isDir: boolean): number {
  if (/^[0-7]{1,4}$/.test(spec)) return parseInt(spec, 8)
  let mode = current & 0o7777
  for (const clause of spec.split(',')) {
    const m = /^([ugoa]*)([-+=])([rwxXst]*)$/.exec(clause)
    if (!m) throw new Error(`invalid mode '${spec}'`)
    const who = m[1] === '' || m[1].includes('a') ? 'ugo' : m[1]
    let bits = 0
    for (const ch of m[3]) {
      for (const w of who) {
        const shift = w === 'u' ? 6 : w === 'g' ? 3 : 0
        if (ch === 'r') bits |= 4 << shift
        if (ch === 'w') bits |= 2 << shift
        if (ch === 'x' || (ch === 'X' && (isDir || current & 0o111))) bits |= 1 << shift
        if (ch === 's' && w === 'u') bits |= 0o4000
        if (ch === 's' && w === 'g') bits |= 0o2000
        if (ch === 't') bits |= 0o1000
      }
    }
    let mask = 0
    for (const w of who) mask |= w === 'u' ? 0o4700 : w === 'g' ? 0o2070 : 0o1007
    if (m[2] === '+') mode |= bits
    else if (m[2] === '-') mode &= ~bits
    else mode = (mode & ~mask) | bits
  }
  return mode
}

// ---------------------------------------------------------------- times

export interface TouchOptions {
  /** change only the access time (-a) / only the modification time (-m); both by default */
  atime?: boolean
  mtime?: boolean
  /** the time to set; now by default */
  time?: {atime: Timestamp, mtime: Timestamp}
  /** do not create a missing file (-c) */
  noCreate?: boolean
  /** change a symlink itself (-h) */
  noDereference?: boolean
}

/** touch: returns false when the file is missing and -c says not to create it. */
export function touchPath(ns: Namespace, path: string, opts: TouchOptions = {}): boolean {
  if (!ns.exists(path, !opts.noDereference)) {
    if (opts.noCreate) return false
    if (opts.noDereference && ns.exists(path, false)) return touchPath(ns, path, {...opts, noCreate: true})
    ns.openForWrite(path, {mode: 0o644})
  }
  const inode = ns.resolveOwned(path, !opts.noDereference)
  const both = !opts.atime && !opts.mtime
  const t = now()
  const a = opts.time?.atime ?? t
  const m = opts.time?.mtime ?? t
  if (both || opts.atime) { inode.r.atimeS = a.s; inode.r.atimeNs = a.ns }
  if (both || opts.mtime) { inode.r.mtimeS = m.s; inode.r.mtimeNs = m.ns }
  touch(inode.r, {c: true}, t)
  ns.vol.idirty(inode)
  return true
}

/**
 * A time as touch -d takes it: `@SECONDS[.FRACTION]` (to the nanosecond), an ISO 8601 date
 * and time with up to nine fractional digits (`2024-01-02T03:04:05.123456789Z`, or with an
 * offset; without one, UTC), `YYYY-MM-DD HH:MM[:SS[.frac]]`, or `now`.
 */
export function parseTime(text: string): Timestamp {
  const t = text.trim()
  if (t === 'now') return now()
  let m = /^@(-?\d+)(?:\.(\d{1,9}))?$/.exec(t)
  if (m) return {s: Number(m[1]), ns: Number((m[2] ?? '').padEnd(9, '0'))}
  m = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d{1,9}))?)?\s*(Z|[+-]\d{2}:?\d{2}|UTC)?$/i.exec(t)
  if (m) {
    const zone = !m[4] || /^(z|utc)$/i.test(m[4]) ? 'Z' : m[4].length === 5 ? `${m[4].slice(0, 3)}:${m[4].slice(3)}` : m[4]
    const time = m[2] ? (m[2].length === 5 ? `${m[2]}:00` : m[2]) : '00:00:00'
    const ms = Date.parse(`${m[1]}T${time}${zone}`)
    // (a day the calendar has: Date.parse takes 2024-02-30 for March 1st)
    const [y, mo, d] = m[1].split('-').map(Number)
    const day = new Date(Date.UTC(y, mo - 1, d))
    const real = day.getUTCFullYear() === y && day.getUTCMonth() === mo - 1 && day.getUTCDate() === d
    if (Number.isFinite(ms) && real) return {s: Math.floor(ms / 1000), ns: Number((m[3] ?? '').padEnd(9, '0'))}
  }
  fail('EUSAGE', `invalid date '${text}' (examples: 2024-05-01T12:00:00.123456789Z, '2024-05-01 12:00', @1714564800.5, now)`)
}

// ---------------------------------------------------------------- space

export interface DuEntry {
  path: string
  /** sum of file sizes (symlink targets included), as du --apparent-size */
  apparentBytes: number
  /** data-area blocks the subtree maps, each block counted once (data, tree nodes, directory blocks, attribute sets) */
  usedBlocks: number
  /** of those, blocks something else also uses: another fileset (a shared inode), another file (a shared block) */
  sharedBlocks: number
  /** regular files, directories, others */
  files: number
  dirs: number
}

/**
 * du of one subtree: every directory's totals (deepest first, as du prints them) unless
 * `summarize`, then only the top. A block counts once however many names or inodes map it.
 */
export function duPath(ns: Namespace, path: string, summarize: boolean, onUnreadable?: (e: PrismError) => void): DuEntry[] {
  ns.materialize(path)
  const vol = ns.vol
  const r = ns.resolveFull(path, true)
  const topPath = pathOf(r.names)
  const seenBlock = new Set<number>()
  const seenIno = new Set<number>()
  const out: DuEntry[] = []
  const account = (inode: Inode, e: DuEntry) => {
    if (seenIno.has(inode.ino)) return
    const shared = inode.r.share > 1
    // (everything read first: an inode whose extent map is damaged counts for nothing)
    const blocks: Array<[number, number]> = []
    if (!(inode.r.flags & IF_INLINE) && !inode.isSpecial) {
      for (const x of loadExtents(vol, inode)) blocks.push([x.p, x.n])
      for (const t of inode.treeBlocks) blocks.push([t, 1])
    }
    const a = inode.r.xattrIno ? vol.tryIget(inode.r.xattrIno) : null
    const attrs = a && !(a.r.flags & IF_INLINE) && !seenIno.has(a.ino)
    if (attrs) {
      for (const x of loadExtents(vol, a)) blocks.push([x.p, x.n])
      for (const t of a.treeBlocks) blocks.push([t, 1])
      seenIno.add(a.ino)
    }
    seenIno.add(inode.ino)
    if (!inode.isDir) e.apparentBytes += inode.r.size
    for (const [p, n] of blocks) {
      for (let b = p; b < p + n; b++) {
        if (seenBlock.has(b)) continue
        seenBlock.add(b)
        e.usedBlocks++
        if (shared || vol.refcount(b) > 1) e.sharedBlocks++
      }
    }
  }
  const add = (into: DuEntry, from: DuEntry) => {
    into.apparentBytes += from.apparentBytes
    into.usedBlocks += from.usedBlocks
    into.sharedBlocks += from.sharedBlocks
    into.files += from.files
    into.dirs += from.dirs
  }
  const where = ns.where(topPath)
  // (a frame per directory level, run off the JavaScript stack: src/frames.ts)
  function* visit(dir: Inode, p: string, ancestors: Set<number>): Frame<DuEntry> {
    checkInterrupt() // (Ctrl-C: a directory at a time)
    enterDir(ancestors, dir.ino, ns.where(p))
    const e: DuEntry = {path: `${ns.fs.name}:${p}`, apparentBytes: 0, usedBlocks: 0, sharedBlocks: 0, files: 0, dirs: 1}
    // With onUnreadable, what the damage keeps from being read (a directory's entries, an
    // inode, an extent map) is handed there, named, and left out; the rest is counted, as du
    // goes on past a directory it cannot read.
    const unreadable = <T>(what: string, fn: () => T): T | null => {
      if (!onUnreadable) return fn()
      try {
        return fn()
      } catch (err) {
        if (!isDamage(err)) throw err
        onUnreadable(new PrismError('EBADIMAGE', `cannot read '${ns.where(what)}': ${err.message}`, EXIT.FAIL))
        return null
      }
    }
    unreadable(p, () => account(dir, e))
    for (const d of unreadable(p, () => dirListByInode(vol, dir)) ?? []) {
      const cp = `${p === '/' ? '' : p}/${nameText(d.name)}`
      const child = unreadable(cp, () => vol.iget(d.ino))
      if (!child) continue
      if (child.isDir) add(e, yield* call(visit(child, cp, ancestors)))
      else {
        e.files++
        unreadable(cp, () => account(child, e))
      }
    }
    ancestors.delete(dir.ino)
    if (!summarize || p === topPath) out.push(e)
    return e
  }
  if (!r.inode.isDir) {
    const e: DuEntry = {path: where, apparentBytes: 0, usedBlocks: 0, sharedBlocks: 0, files: 1, dirs: 0}
    account(r.inode, e)
    return [e]
  }
  runNow(visit(r.inode, topPath, new Set()))
  return out
}
