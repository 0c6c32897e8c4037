// File locks of a served image: one table per image, shared by every mount of it, so that a
// lock taken through one mount (a fileset, the whole image, a subtree) excludes the others as
// the kernel would on one filesystem. Pure: no I/O, no FUSE; the adapter (adapter.ts) calls it
// from the getlk, setlk, flock, flush and release requests and the server (image.ts) when a
// mount goes away or a copy-on-write moves a file to a new inode number.
//
// Files are named by a key the caller chooses (the adapter: `${fileset id}:${inode}`), owners by
// an opaque string (the adapter: `${mount}/${lock_owner}`, the kernel's token being per
// connection). Two kinds of locks that never interact, as on Linux:
// - POSIX (fcntl F_SETLK/F_SETLKW/F_GETLK, lockf, OFD locks): byte ranges [start, end), end
//   Infinity for "to the end of any file", read (shared) or write (exclusive); an owner's own
//   locks never conflict with each other: a new lock replaces the owner's locks on the range it
//   covers (splitting them), and adjoining or overlapping locks of one type are merged; unlock
//   of a range removes that range only. A wait that would close a cycle of owners each waiting
//   for the next fails with EDEADLK (as Linux's posix_locks_deadlock).
// - flock: the whole file, per open file description (the owner); a conversion first drops
//   the owner's lock, as Linux does (not atomic: flock(2)).
// (Directories never get here: Linux's FUSE keeps their locks in each mount's kernel.)
// Waits are granted in the order they came, each as soon as nothing conflicts with it; a wait
// can be cancelled (an interrupted request).

export const F_RDLCK = 0
export const F_WRLCK = 1
export const F_UNLCK = 2

export type LockKind = 'posix' | 'flock'

export interface Lock {
  owner: string
  /** F_RDLCK or F_WRLCK */
  type: number
  start: number
  /** exclusive; Infinity: to the end of any file */
  end: number
  /** the process that took it (F_GETLK shows it) */
  pid: number
  /** the mount it came through (dropMount) */
  mount: number
}

export interface LockRequest {
  file: string
  kind: LockKind
  owner: string
  mount: number
  /** F_RDLCK, F_WRLCK or F_UNLCK */
  type: number
  start: number
  end: number
  pid: number
}

export interface Waiter {
  readonly req: LockRequest
  /** called once, when the lock is granted (already applied) */
  readonly grant: () => void
  /** called once, when the wait ends without the lock (dropMount) */
  readonly fail: (code: string) => void
}

interface FileLocks {
  posix: Lock[]
  flock: Lock[]
  waiters: Waiter[]
}

const overlaps = (a: {start: number, end: number}, b: {start: number, end: number}): boolean => a.start < b.end && b.start < a.end

/** Whether `l` (held) conflicts with request `r` by another owner. */
function conflicts(l: Lock, r: LockRequest): boolean {
  return l.owner !== r.owner && (l.type === F_WRLCK || r.type === F_WRLCK) && overlaps(l, r)
}

export type SetResult = {ok: true} | {ok: false, code: 'EAGAIN' | 'EDEADLK' | 'EINVAL', blocker?: Lock}

export class LockTable {
  private readonly files = new Map<string, FileLocks>()

  private entry(file: string): FileLocks {
    let f = this.files.get(file)
    if (!f) this.files.set(file, f = {posix: [], flock: [], waiters: []})
    return f
  }

  private tidy(file: string): void {
    const f = this.files.get(file)
    if (f && f.posix.length === 0 && f.flock.length === 0 && f.waiters.length === 0) this.files.delete(file)
  }

  /** The locks held on `file` (copies), POSIX ones in start order. */
  locks(file: string, kind: LockKind): Lock[] {
    const f = this.files.get(file)
    return f ? f[kind].map((l) => ({...l})) : []
  }

  /** The first lock of another owner that conflicts with `r` (F_GETLK), or null. */
  test(r: LockRequest): Lock | null {
    if (r.type === F_UNLCK) return null
    const f = this.files.get(r.file)
    if (!f) return null
    const hit = f[r.kind].find((l) => conflicts(l, r))
    return hit ? {...hit} : null
  }

  /**
   * Sets, changes or removes a lock without waiting. Fails with EAGAIN (and the lock in the
   * way) on a conflict; EINVAL for a bad range or type.
   */
  set(r: LockRequest): SetResult {
    if (!valid(r)) return {ok: false, code: 'EINVAL'}
    const f = this.entry(r.file)
    if (r.kind === 'flock') this.remove(f, r) // a conversion drops the old lock first (Linux)
    const blocker = r.type === F_UNLCK ? undefined : f[r.kind].find((l) => conflicts(l, r))
    if (blocker) {
      if (r.kind === 'flock') this.wake(r.file)
      else this.tidy(r.file)
      return {ok: false, code: 'EAGAIN', blocker: {...blocker}}
    }
    this.apply(f, r)
    this.wake(r.file)
    return {ok: true}
  }

  /**
   * Sets a lock, waiting while another owner's lock is in the way: `grant` is called once it
   * is applied (at once when nothing is in the way). Returns the waiter to cancel, null when
   * granted at once; fails (without waiting) with EDEADLK when this wait would close a cycle
   * of POSIX owners each waiting for the next, EINVAL for a bad request.
   */
  wait(r: LockRequest, grant: () => void, fail: (code: string) => void): SetResult & {waiter?: Waiter} {
    const now = this.set(r)
    if (now.ok) {
      grant()
      return now
    }
    if (now.code !== 'EAGAIN') return now
    if (r.kind === 'posix' && this.wouldDeadlock(r)) {
      this.tidy(r.file)
      return {ok: false, code: 'EDEADLK'}
    }
    const w: Waiter = {req: {...r}, grant, fail}
    this.entry(r.file).waiters.push(w)
    return {ok: false, code: 'EAGAIN', waiter: w}
  }

  /** Stops a wait (an interrupted request): true if it was still waiting. */
  cancel(w: Waiter): boolean {
    const f = this.files.get(w.req.file)
    const i = f ? f.waiters.indexOf(w) : -1
    if (i < 0) return false
    f!.waiters.splice(i, 1)
    this.wake(w.req.file) // a wait queued behind it may go now; also tidies
    return true
  }

  /** Removes every POSIX lock of `owner` on `file` (a close: flush's lock owner). */
  releasePosix(file: string, owner: string): void {
    const f = this.files.get(file)
    if (!f || !f.posix.some((l) => l.owner === owner)) return
    f.posix = f.posix.filter((l) => l.owner !== owner)
    this.wake(file)
  }

  /** Removes the flock lock of `owner` (an open file description) on `file` (its release). */
  releaseFlock(file: string, owner: string): void {
    const f = this.files.get(file)
    if (!f || !f.flock.some((l) => l.owner === owner)) return
    f.flock = f.flock.filter((l) => l.owner !== owner)
    this.wake(file)
  }

  /** A mount went away: its locks go, its waits fail (`code`). */
  dropMount(mount: number, code = 'EIO'): void {
    const failed: Waiter[] = []
    for (const [file, f] of [...this.files]) {
      const before = f.posix.length + f.flock.length + f.waiters.length
      f.posix = f.posix.filter((l) => l.mount !== mount)
      f.flock = f.flock.filter((l) => l.mount !== mount)
      for (const w of f.waiters) if (w.req.mount === mount) failed.push(w)
      f.waiters = f.waiters.filter((w) => w.req.mount !== mount)
      if (f.posix.length + f.flock.length + f.waiters.length !== before) this.wake(file)
    }
    for (const w of failed) w.fail(code)
  }

  /** The file `from` is now `to` (a copy-on-write gave it a new inode number). */
  repoint(from: string, to: string): void {
    if (from === to) return
    const f = this.files.get(from)
    if (!f) return
    this.files.delete(from)
    const g = this.files.get(to)
    if (!g) {
      this.files.set(to, f)
    } else { // (not expected: two names for one file) keep both sets
      g.posix.push(...f.posix)
      g.posix.sort((a, b) => a.start - b.start)
      g.flock.push(...f.flock)
      g.waiters.push(...f.waiters)
    }
    for (const w of f.waiters) w.req.file = to
    this.wake(to)
  }

  /** Number of files with locks or waits (for tests). */
  get size(): number {
    return this.files.size
  }

  // ------------------------------------------------------------------------------------

  /** Removes the owner's locks on r's range (splitting those that reach past it). */
  private remove(f: FileLocks, r: LockRequest): void {
    const out: Lock[] = []
    for (const l of f[r.kind]) {
      if (l.owner !== r.owner || !overlaps(l, r)) {
        out.push(l)
        continue
      }
      if (l.start < r.start) out.push({...l, end: r.start})
      if (l.end > r.end) out.push({...l, start: r.end})
    }
    f[r.kind] = out
  }

  private apply(f: FileLocks, r: LockRequest): void {
    this.remove(f, r)
    if (r.type !== F_UNLCK) {
      const l: Lock = {owner: r.owner, type: r.type, start: r.start, end: r.end, pid: r.pid, mount: r.mount}
      // merge with the owner's locks of the same type that overlap or adjoin it
      const rest: Lock[] = []
      for (const o of f[r.kind]) {
        if (o.owner === r.owner && o.type === l.type && o.start <= l.end && l.start <= o.end) {
          l.start = Math.min(l.start, o.start)
          l.end = Math.max(l.end, o.end)
        } else {
          rest.push(o)
        }
      }
      rest.push(l)
      f[r.kind] = rest
    }
    f[r.kind].sort((a, b) => a.start - b.start || (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0))
  }

  /** Grants the waits on `file` that nothing blocks any more, in the order they came. */
  private wake(file: string): void {
    const f = this.files.get(file)
    if (!f) return
    const granted: Waiter[] = []
    for (let i = 0; i < f.waiters.length;) {
      const w = f.waiters[i]!
      const r = w.req
      if (r.kind === 'flock') this.remove(f, r)
      if (f[r.kind].some((l) => conflicts(l, r))) {
        i++
        continue
      }
      f.waiters.splice(i, 1)
      this.apply(f, r)
      granted.push(w)
    }
    this.tidy(file)
    for (const w of granted) w.grant()
  }

  /** Whether owner r.owner waiting for r would wait, through other waiting owners, for itself. */
  private wouldDeadlock(r: LockRequest): boolean {
    // owner -> the requests it waits with (POSIX only)
    const waits = new Map<string, LockRequest[]>()
    for (const f of this.files.values()) {
      for (const w of f.waiters) {
        if (w.req.kind !== 'posix') continue
        let list = waits.get(w.req.owner)
        if (!list) waits.set(w.req.owner, list = [])
        list.push(w.req)
      }
    }
    const blockersOf = (q: LockRequest): string[] => (this.files.get(q.file)?.posix ?? []).filter((l) => conflicts(l, q)).map((l) => l.owner)
    const seen = new Set<string>()
    const stack = blockersOf(r)
    while (stack.length > 0) {
      const o = stack.pop()!
      if (o === r.owner) return true
      if (seen.has(o)) continue
      seen.add(o)
      for (const q of waits.get(o) ?? []) stack.push(...blockersOf(q))
    }
    return false
  }
}

function valid(r: LockRequest): boolean {
  return (r.type === F_RDLCK || r.type === F_WRLCK || r.type === F_UNLCK) && Number.isInteger(r.start) && r.start >= 0 &&
    (r.end === Infinity || Number.isInteger(r.end)) && r.end > r.start
}
