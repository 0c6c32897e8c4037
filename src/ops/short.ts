// The short commands that change the image (mkdir, touch, truncate, noclone, ln, mknod,
// xattr set and rm, set, fileset create and rename), as library operations named in SHORT.
// Their arguments are plain JSON (the command parsed its flags): a command alone runs one on
// the volume it opened (PrismCommand.short, src/cli/base.ts); on a served image the command
// sends its name and arguments and the server runs the very same function on its open volume,
// in one step (src/server/short.ts). So output, errors and the tree are the same either way.
//
// `each` runs a multi-argument command's arguments one by one, as alone (forEachItem): each
// argument is its own change, a bad one is reported and changes nothing.
import {PrismError} from '../errors.js'
import {IF_NOCLONE, MAX_FILE_SIZE} from '../format/constants.js'
import {FILESET_LOCALITY_MASK, type LocalityCode, localityCode, showLocality} from '../format/locality.js'
import {createEmptyFileset, namespace, renameFileset} from '../fs/image.js'
import {setFilesetLocality} from '../fs/locality.js'
import type {Volume} from '../fs/volume.js'
import {parseOwner, touchPath} from './attrs.js'

type ImagePath = {fileset: string, path: string}
type Time = {s: number, ns: number}

/** Runs `fn` on each item, each its own change; a bad item is reported, the next follows. */
export type Each = <T>(items: readonly T[], fn: (item: T) => void) => void

export interface ShortArgs {
  mkdir: {locs: ImagePath[], parents?: boolean, mode: number}
  touch: {locs: ImagePath[], access?: boolean, modification?: boolean, time?: {atime: Time, mtime: Time}, ref?: ImagePath, noCreate?: boolean, noDereference?: boolean}
  truncate: {locs: ImagePath[], rel: number, amount: number, noCreate?: boolean}
  noclone: {locs: ImagePath[], clear?: boolean}
  ln: {target: string, targetLoc?: ImagePath, link: ImagePath, symbolic?: boolean, force?: boolean}
  mknod: {loc: ImagePath, mode: number, rdev: {major: number, minor: number}, owner?: string}
  /** xattr set (`value`, base64) or rm (no value); `name` base64 */
  xattr: {loc: ImagePath, name: string, value?: string, create?: boolean, replace?: boolean, follow: boolean}
  set: {targets: Array<{fileset: string, path?: string}>, code: LocalityCode | null}
  'fileset-create': {name: string}
  'fileset-rename': {from: string, to: string}
}

export type ShortName = keyof ShortArgs

/** The operations, by name: each returns what its command prints (JSON). */
export const SHORT: {[K in ShortName]: (vol: Volume, a: ShortArgs[K], each: Each) => unknown} = {
  mkdir: (vol, a, each) => each(a.locs, (loc) => {
    namespace(vol, loc.fileset).mkdir(loc.path, {parents: a.parents, mode: a.mode})
  }),

  touch: (vol, a, each) => {
    let time = a.time
    if (a.ref) {
      const st = namespace(vol, a.ref.fileset).stat(a.ref.path, true)
      time = {atime: st.atime, mtime: st.mtime}
    }
    const touched: ImagePath[] = []
    each(a.locs, (loc) => {
      const ok = touchPath(namespace(vol, loc.fileset), loc.path, {
        atime: a.access, mtime: a.modification, time, noCreate: a.noCreate, noDereference: a.noDereference,
      })
      if (ok) touched.push(loc)
    })
    return touched
  },

  truncate: (vol, a, each) => each(a.locs, (loc) => {
    const ns = namespace(vol, loc.fileset)
    const exists = ns.exists(loc.path, true)
    if (!exists && a.noCreate) return
    const inode = exists ? ns.resolveOwned(loc.path, true) : ns.openForWrite(loc.path)
    if (inode.isDir) throw new PrismError('EISDIR', `${ns.where(loc.path)}: cannot truncate a directory`)
    const size = a.rel ? Math.max(0, inode.r.size + a.rel * a.amount) : a.amount
    // (as GNU truncate names the file and the size; the file made for it goes with the change)
    if (size > MAX_FILE_SIZE) throw new PrismError('EFBIG', `cannot truncate ${ns.where(loc.path)} to ${size} bytes: a Prism file holds at most ${MAX_FILE_SIZE} (8 TiB)`)
    ns.truncateInode(inode, size)
  }),

  noclone: (vol, a, each) => {
    // What the command says beside: the mark is the file's (an inode flag, FORMAT.md §5.3), so
    // a file with several names (hard links) is marked, or cleared, under all of them.
    const notes: string[] = []
    each(a.locs, (loc) => {
      const ns = namespace(vol, loc.fileset)
      const inode = ns.resolve(loc.path, false)
      // A clone always has its root: marking it would leave out nothing, so say so. (Clearing
      // a mark an older prism let be set there is allowed.)
      if (!a.clear && inode.ino === ns.root().ino) {
        throw new PrismError('EINVAL', `${loc.fileset}:${loc.path}: the root of fileset '${loc.fileset}' cannot be marked nonclonable; mark the paths below it, or clone a subtree (prism clone ${loc.fileset}:/path)`)
      }
      ns.setFlag(loc.path, IF_NOCLONE, !a.clear)
      if (!inode.isDir && inode.r.nlink > 1) {
        notes.push(`${loc.fileset}:${loc.path} has ${inode.r.nlink} names (hard links): the mark is the file's, so it is ${a.clear ? 'cleared' : 'set'} under every name`)
      }
    })
    return notes
  },

  ln: (vol, a) => {
    const ns = namespace(vol, a.link.fileset)
    // -f replaces a file or symlink, never a directory (as ln -fT).
    if (a.symbolic) {
      ns.symlink(a.target, a.link.path, {force: a.force})
      return
    }
    const target = a.targetLoc!
    if (target.fileset !== a.link.fileset) throw new PrismError('EXDEV', `cannot hard-link across filesets (${target.fileset} and ${a.link.fileset})`)
    ns.link(target.path, a.link.path, {force: a.force})
  },

  mknod: (vol, a) => {
    const ns = namespace(vol, a.loc.fileset)
    const owner = a.owner ? parseOwner(ns, a.owner) : {}
    ns.mknod(a.loc.path, a.mode, a.rdev, owner)
  },

  xattr: (vol, a) => {
    const ns = namespace(vol, a.loc.fileset)
    const name = Buffer.from(a.name, 'base64')
    if (a.value !== undefined) ns.setXattr(a.loc.path, name, Buffer.from(a.value, 'base64'), {create: a.create, replace: a.replace}, a.follow)
    else ns.removeXattr(a.loc.path, name, a.follow)
  },

  set: (vol, a, each) => {
    const out: unknown[] = []
    each(a.targets, (t) => {
      const ns = namespace(vol, t.fileset)
      if (t.path !== undefined) {
        const inode = a.code !== null ? ns.setLocality(t.path, a.code) : ns.resolve(t.path, true)
        out.push({target: `${t.fileset}:${t.path}`, fileset: t.fileset, path: t.path, setting: showLocality(localityCode(inode.r.locality)), effective: ns.locality(inode)})
        return
      }
      const rec = a.code !== null ? setFilesetLocality(vol, ns.fs, a.code) : ns.record()
      out.push({target: t.fileset, fileset: t.fileset, setting: showLocality(localityCode(rec.flags & FILESET_LOCALITY_MASK)), effective: namespace(vol, t.fileset).locality(null)})
    })
    return out
  },

  'fileset-create': (vol, a) => {
    const f = createEmptyFileset(vol, a.name)
    return {name: f.name, id: f.id}
  },

  'fileset-rename': (vol, a) => renameFileset(vol, a.from, a.to),
}

/** Runs short operation `name` on `vol`. */
export function runShort<K extends ShortName>(vol: Volume, name: K, args: ShortArgs[K], each: Each): unknown {
  return (SHORT[name] as (vol: Volume, a: ShortArgs[K], each: Each) => unknown)(vol, args, each)
}
