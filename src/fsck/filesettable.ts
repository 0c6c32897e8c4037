// fsck and the fileset table file (docs/FORMAT.md §8.7): the inode the superblock's
// fileset_ext_ino names holds the fileset records past the fixed table. Before pass 2 reads
// the records, tableFileBlocks() says which blocks hold them: the file must be a regular
// inode in use, not on the orphan list, its blocks mapped from logical block 0 on without a
// hole (a size that disagrees with them is set to them: FILESET_TABLE_SIZE).
// After pass 2, checkTableFile() counts it as referenced (one link, share 1) and reports it
// if a directory also names it. A file that cannot be used is dropped, with every record it
// held: fsck cannot tell which blocks held records, and the trees of those filesets are then
// found unreachable like any tree whose fileset record was lost.
import {IF_ORPHAN} from '../format/constants.js'
import {R_FILESET, T_FREE, T_REG, type FsckContext} from './context.js'
import {keptMap} from './pass1_inodes.js'
import {freeInode} from './pass3_links.js'

/** Why the table file cannot be used, or null; `blocks` gets its blocks by logical block. */
function problemOf(ctx: FsckContext, ino: number, blocks: number[]): string | null {
  const sb = ctx.sb
  if (ino > sb.inodeCount) return `inode number ${ino} is outside the inode table`
  if (ctx.itype[ino] === T_FREE) return `inode ${ino} is not in use`
  if (ctx.itype[ino] !== T_REG) return `inode ${ino} is not a regular file`
  if (ctx.iflags[ino] & IF_ORPHAN) return `inode ${ino} is on the orphan list`
  const {ext} = keptMap(ctx, ino)
  for (const e of ext) {
    if (e.l !== blocks.length) return `logical block ${blocks.length} is not mapped`
    for (let i = 0; i < e.n; i++) blocks.push(e.p + i)
  }
  return null
}

/**
 * The blocks of the fileset table file, by logical block ([] when there is none or it is
 * dropped). Called before pass 2 reads the fileset records.
 */
export function tableFileBlocks(ctx: FsckContext): number[] {
  const sb = ctx.vol.sb
  const ino = sb.filesetExtIno
  if (!ino) return []
  const blocks: number[] = []
  const why = problemOf(ctx, ino, blocks)
  if (why === null) {
    ctx.tableIno = ino
    // Its blocks are sound and say how large it is: a size that disagrees is set to them.
    const {buf, off} = ctx.inodeAt(ino)
    const size = Number(buf.readBigUInt64LE(off + 0x18))
    if (size !== blocks.length * 4096) {
      const p = ctx.report('FILESET_TABLE_SIZE', `inode ${ino}`, {have: size, want: blocks.length * 4096})
      ctx.editInode(ino, (b, o) => b.writeBigUInt64LE(BigInt(blocks.length * 4096), o + 0x18))
      ctx.fixed(p)
    }
    return blocks
  }
  // The backup superblock may still name the right one (the primary's field was damaged).
  const alt = ctx.backupExtIno
  const altBlocks: number[] = []
  if (alt !== 0 && alt !== ino && problemOf(ctx, alt, altBlocks) === null && ctx.reach[alt] === 0) {
    const p = ctx.report('FILESET_TABLE_BAD', 'superblock fileset_ext_ino', {ino, detail: why, outcome: `the one the backup superblock names (inode ${alt}) is used`})
    if (ctx.repair) {
      sb.filesetExtIno = alt
      ctx.vol.markSbDirty()
    }
    ctx.fixed(p)
    ctx.tableIno = alt
    return altBlocks
  }
  const p = ctx.report('FILESET_TABLE_BAD', 'superblock fileset_ext_ino', {ino, detail: why, outcome: 'it is dropped with the filesets it held'})
  if (ctx.repair) {
    sb.filesetExtIno = 0
    ctx.vol.markSbDirty()
    // Ours to free if it is a file no one else uses (pass 3 would otherwise call it unreachable).
    if (ino <= sb.inodeCount && ctx.itype[ino] === T_REG && !(ctx.iflags[ino] & IF_ORPHAN)) freeInode(ctx, ino)
    ctx.fixed(p)
  }
  return []
}

/** After pass 2: the table file counts as named once; a directory must not name it too. */
export function checkTableFile(ctx: FsckContext): void {
  const ino = ctx.tableIno
  if (!ino) return
  if (ctx.reach[ino] !== 0) {
    ctx.report('FILESET_TABLE_NAMED', `inode ${ino}`)
    return
  }
  ctx.reach[ino] |= R_FILESET
  ctx.trees[ino] = 1
  ctx.filesetTrees[ino] = 1
  ctx.firstCount[ino] = 1
  ctx.totalNames[ino] = 1
}
