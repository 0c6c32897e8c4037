// fsck's last step when repairing: the repairs that need allocation, done through the
// filesystem library once passes 1-4 have made the reference-count table and the free
// counters true (so the allocator cannot hand out a block still in use). It rewrites the
// block maps pass 1 cleaned, rebuilds the directories pass 2 found damaged from the
// entries it kept, and gives filesets whose root was lost a new empty root. Each item is
// committed on its own (a directory too large for one transaction in several); when an
// item fails, what it had not committed is undone and its problems stay unfixed.
import {newRootDir} from '../fs/image.js'
import {FILESETS_PER_BLOCK, FILESET_RECORD_SIZE} from '../format/constants.js'
import {encodeFileset} from '../format/fileset.js'
import {FormatError} from '../format/errors.js'
import {PrismError} from '../errors.js'
import {dirAdd, dirInit} from '../fs/dir.js'
import {releaseAll} from '../fs/extents.js'
import type {FsckContext} from './context.js'
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
  const inos = [...new Set([...ctx.rewrites.keys(), ...ctx.rebuilds.keys()])].sort((a, b) => a - b)
  let done = 0
  for (const ino of inos) {
    const rw = ctx.rewrites.get(ino)
    const rb = ctx.rebuilds.get(ino)
    const problems = [...(rw?.problems ?? []), ...(rb?.problems ?? [])]
    attempt(ctx, rb ? `rebuild directory inode ${ino}` : `rewrite the block map of inode ${ino}`, problems, () => {
      const inode = vol.iget(ino)
      if (rw) {
        let mapped = 0
        for (const e of rw.ext) mapped += e.n
        inode.extents = rw.ext.map((e) => ({...e}))
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
    })
    ctx.progress('repairing', ++done, inos.length)
  }
  for (const f of ctx.filesets) {
    if (f.rootOk) continue
    attempt(ctx, `make a new root for fileset ${f.name}`, f.rootProblem ? [f.rootProblem] : [], () => {
      const root = newRootDir(vol)
      f.rootIno = root.ino
      f.rootOk = true
      const block = ctx.sb.filesetTableStart + Math.floor(f.slot / FILESETS_PER_BLOCK)
      encodeFileset(f, vol.store.getMut(block), (f.slot % FILESETS_PER_BLOCK) * FILESET_RECORD_SIZE)
      vol.filesetCache = null
      ctx.notes.push(`fileset ${f.name} has a new, empty root directory (inode ${root.ino})`)
    })
  }
}
