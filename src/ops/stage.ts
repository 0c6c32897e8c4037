// A staged tree: what one operation adds to a fileset, built out of sight and put in place by
// one last transaction. An import (cp -r into the image, later tar import) may commit many
// transactions as it goes (Volume.maybeCommit); everything it makes lives under a detached
// directory on the orphan list, pinned while this process builds it, as a sync clone's tree
// does (src/clone/clone.ts, docs/FORMAT.md §9). A crash or a failure before publish() leaves
// the fileset as it was, and the next writable open frees what was built.
//
// New entries of an existing directory X are made in a "bucket" standing for X. publish()
// moves each bucket's entries into their directory (a staged file or symlink replaces the
// file or symlink X holds under that name; a staged directory replaces only an empty one, as
// rename(2)) and applies the attribute changes queued for existing directories, all in the
// running transaction. Deciding what may replace what is the caller's job (src/ops/copy.ts);
// publish() refuses anything else as an internal error. It never commits, except when the
// moves alone outgrow half the journal (docs/FORMAT.md §10.2).
import {DT_DIR, S_IFDIR} from '../format/constants.js'
import {nameBytes} from '../format/name.js'
import {dirAdd, dirCount, dirList, dirLookup, dirRemove, type Dirent} from '../fs/dir.js'
import {releaseAll} from '../fs/extents.js'
import {touch, type Inode} from '../fs/inode.js'
import {newDetachedDir, type Namespace} from '../fs/namespace.js'

interface Bucket {
  /** the existing directory the entries go to, and its path in the fileset */
  target: number
  path: string
  dir: Inode
}

export class Stage {
  /** the detached directory holding the buckets; made on first use */
  private root: Inode | null = null
  private buckets: Bucket[] = []
  private byTarget = new Map<number, Bucket>()
  private pending: Array<{target: number, path: string, fn: (dir: Inode) => void}> = []
  private published = false

  constructor(readonly ns: Namespace) {}

  /** True while nothing has been staged. */
  get empty(): boolean {
    return this.buckets.length === 0 && this.pending.length === 0
  }

  /** The directory in which new entries of existing directory `target` (at `path`) are built. */
  bucket(target: Inode, path: string): Inode {
    const known = this.byTarget.get(target.ino)
    if (known) return known.dir
    const vol = this.ns.vol
    this.root ??= newDetachedDir(vol, 0o700, {uid: 0, gid: 0})
    const dir = this.ns.createIn(this.root, nameBytes(String(this.buckets.length)), S_IFDIR | 0o700, {uid: 0, gid: 0})
    const b = {target: target.ino, path, dir}
    this.buckets.push(b)
    this.byTarget.set(target.ino, b)
    return dir
  }

  /** The entry `name` this stage already holds for existing directory `target`, if any. */
  staged(target: Inode, name: Buffer): Dirent | null {
    const b = this.byTarget.get(target.ino)
    return b ? dirLookup(this.ns.vol, b.dir, name) : null
  }

  /** Runs `fn` on existing directory `target` (at `path`) when the stage is published. */
  onPublish(target: Inode, path: string, fn: (dir: Inode) => void): void {
    this.pending.push({target: target.ino, path, fn})
  }

  /** Puts everything staged in place, in the running transaction. */
  publish(): void {
    const ns = this.ns
    const vol = ns.vol
    const resolve = (path: string, ino: number): Inode => {
      const x = ns.dirForChange(path)
      if (x.ino !== ino) throw new Error(`internal: ${ns.where(path)} is no longer the directory that was staged for`)
      return x
    }
    for (const b of this.buckets) {
      const x = resolve(b.path, b.target)
      for (const e of dirList(vol, b.dir)) {
        const old = ns.lookupEntry(x, e.name)
        if (old) {
          const oldInode = vol.iget(old.ino)
          const ok = e.type === DT_DIR ? oldInode.isDir && dirCount(oldInode) === 0 : !oldInode.isDir
          if (!ok) throw new Error(`internal: a staged entry would replace ${ns.where(b.path)}/${e.name.toString()}`)
          ns.detachChild(x, e.name, b.path)
        }
        dirRemove(vol, b.dir, e.name)
        dirAdd(vol, x, e.ino, e.type, e.name)
        if (e.type === DT_DIR) {
          b.dir.r.nlink--
          x.r.nlink++
        }
        vol.maybeCommit(true)
      }
      touch(x.r, {m: true, c: true})
      vol.idirty(x)
      vol.idirty(b.dir)
    }
    for (const p of this.pending) p.fn(resolve(p.path, p.target))
    this.published = true
  }

  /**
   * After publish(): frees the emptied buckets and the detached directory, without a commit in
   * between. Otherwise (a failure): lets go of the detached tree, which the next reaping frees.
   */
  close(): void {
    const root = this.root
    if (!root) return
    this.root = null
    const vol = this.ns.vol
    vol.pinnedOrphans.delete(root.ino)
    if (!this.published) return
    for (const b of this.buckets) {
      releaseAll(vol, b.dir)
      vol.ifree(b.dir)
    }
    vol.removeOrphan(root)
    releaseAll(vol, root)
    vol.ifree(root)
  }
}
