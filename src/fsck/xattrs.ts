// fsck and extended attributes (docs/FORMAT.md §14), after pass 3 has settled which inodes
// stay: every xattr_ino must name an attribute inode, every attribute inode must decode and
// be named by some inode, and its share count must equal the inodes naming it (its link
// count is 1). A bad reference or an unreadable set costs attributes, never a file: the
// reference is cleared and the file kept. An attribute inode nothing names is freed.
import {BLOCK_SIZE, IF_INLINE} from '../format/constants.js'
import {INODE_AREA_OFF, INODE_AREA_SIZE} from '../format/inode.js'
import {decodeXattrs, XATTR_SET_MAX} from '../format/xattr.js'
import {T_FREE, T_XATTR, type FsckContext} from './context.js'
import {keptMap} from './pass1_inodes.js'
import {freeInode} from './pass3_links.js'

/** Runs after pass 3 (counts and reachability) and before pass 4 (the refcount table). */
export function checkXattrs(ctx: FsckContext): void {
  const n = ctx.sb.inodeCount
  const refs = new Uint32Array(n + 1)
  const clearRef = (ino: number) => {
    ctx.xattrOf[ino] = 0
    ctx.editInode(ino, (b, o) => b.writeUInt32LE(0, o + 0x6c))
  }
  for (let ino = 1; ino < ctx.inoEnd; ino++) { // past inoEnd every inode is free
    const t = ctx.xattrOf[ino]
    const kind = ctx.itype[ino]
    if (t === 0 || kind === T_FREE) continue
    let why = ''
    if (kind === T_XATTR) why = 'an attribute inode may not name (attribute sets have no attributes)'
    else if (t > n) why = 'is outside the inode table'
    else if (ctx.itype[t] === T_FREE) why = 'is not in use'
    else if (ctx.itype[t] !== T_XATTR) why = 'is not an attribute inode'
    if (why) {
      const p = ctx.report('XATTR_REF_BAD', `inode ${ino}`, {ref: t, detail: why})
      clearRef(ino)
      ctx.fixed(p)
      continue
    }
    refs[t]++
  }
  for (let ino = 1; ino < ctx.inoEnd; ino++) {
    if (ctx.itype[ino] !== T_XATTR) continue
    if (refs[ino] === 0) {
      const p = ctx.report('XATTR_UNREFERENCED', `inode ${ino}`)
      freeInode(ctx, ino)
      ctx.fixed(p)
      continue
    }
    const why = setProblem(ctx, ino)
    if (why) {
      const owners: number[] = []
      for (let o = 1; o < ctx.inoEnd; o++) if (ctx.xattrOf[o] === ino && ctx.itype[o] !== T_FREE) owners.push(o)
      const p = ctx.report('XATTR_SET_BAD', `inode ${ino}`, {detail: why, owners: owners.map((o) => `inode ${o}`).join(', ')})
      if (ctx.repair) {
        for (const o of owners) clearRef(o)
        freeInode(ctx, ino)
      }
      ctx.fixed(p)
      continue
    }
    if (ctx.share[ino] !== refs[ino]) {
      const p = ctx.report('XATTR_SHARE_COUNT', `inode ${ino}`, {have: ctx.share[ino], want: refs[ino]})
      const v = refs[ino]
      ctx.share[ino] = v
      ctx.editInode(ino, (b, o) => b.writeUInt32LE(v, o + 0x08))
      ctx.fixed(p)
    }
    if (ctx.nlink[ino] !== 1) {
      const p = ctx.report('XATTR_LINK_COUNT', `inode ${ino}`, {have: ctx.nlink[ino]})
      ctx.nlink[ino] = 1
      ctx.editInode(ino, (b, o) => b.writeUInt32LE(1, o + 0x04))
      ctx.fixed(p)
    }
  }
}

/** Why an attribute inode's content does not decode, or null. */
function setProblem(ctx: FsckContext, ino: number): string | null {
  if (ctx.rewrites.has(ino)) return 'its block map is damaged'
  const {buf, off} = ctx.inodeAt(ino)
  const size = Number(buf.readBigUInt64LE(off + 0x18))
  let content: Buffer
  // (the size is checked against what holds the content before anything that size is made:
  // a damaged size must not ask for gigabytes)
  if (size > XATTR_SET_MAX) return `its size (${size}) is larger than an attribute set can be`
  if (ctx.iflags[ino] & IF_INLINE) {
    if (size > INODE_AREA_SIZE) return `its size (${size}) is larger than its inode holds`
    content = Buffer.from(buf.subarray(off + INODE_AREA_OFF, off + INODE_AREA_OFF + size))
  } else {
    const ext = keptMap(ctx, ino).ext
    let end = 0
    for (const e of ext) end = Math.max(end, (e.l + e.n) * BLOCK_SIZE)
    if (size > end) return `its size (${size}) is past its blocks (${end} bytes)`
    content = Buffer.alloc(size)
    const blk = Buffer.alloc(BLOCK_SIZE)
    for (const e of ext) {
      for (let k = 0; k < e.n; k++) {
        const at = (e.l + k) * BLOCK_SIZE
        if (at >= size) break
        ctx.vol.store.readData(e.p + k, blk)
        blk.copy(content, at, 0, Math.min(BLOCK_SIZE, size - at))
      }
    }
  }
  try {
    decodeXattrs(content, `attribute inode ${ino}`)
    return null
  } catch (e) {
    return (e as Error).message
  }
}
