// Tools to damage a real image in one precise way, shared by the fsck fixture generator
// (scripts/make-fsck-fixtures.ts), the fuzzer and the path-security tests. Every change is
// made to the raw bytes of the image file with the format's own layout (docs/FORMAT.md);
// checksums are recomputed unless the damage under test is the checksum itself.
import fs from 'node:fs'
import {BLOCK_SIZE, FILESETS_PER_BLOCK, FILESET_RECORD_SIZE, IF_INLINE, INODE_SIZE, REFCOUNTS_PER_BLOCK} from '../src/format/constants.js'
import {crc32} from '../src/format/checksum.js'
import {BUCKET_HDR} from '../src/format/dirent.js'
import {decodeSuperblock, encodeSuperblock, type Superblock} from '../src/format/superblock.js'
import {loadExtents} from '../src/fs/extents.js'
import {namespace, withImage} from '../src/fs/image.js'
import '../src/fs/namespace.js'

export interface Located {
  ino: number
  extents: Array<{l: number, n: number, p: number}>
  tree: number[]
  /** physical block of logical block l (hashed directories and files), or -1 */
  phys: (l: number) => number
}

/** An image file opened for raw patching. */
export class RawImage {
  constructor(readonly path: string) {}

  read(pos: number, len: number): Buffer {
    const fd = fs.openSync(this.path, 'r')
    try {
      const b = Buffer.alloc(len)
      fs.readSync(fd, b, 0, len, pos)
      return b
    } finally {
      fs.closeSync(fd)
    }
  }

  write(pos: number, data: Buffer): void {
    const fd = fs.openSync(this.path, 'r+')
    try {
      fs.writeSync(fd, data, 0, data.length, pos)
    } finally {
      fs.closeSync(fd)
    }
  }

  get blocks(): number {
    return Math.floor(fs.statSync(this.path).size / BLOCK_SIZE)
  }

  sb(which: 'primary' | 'backup' = 'primary'): Superblock {
    const at = which === 'primary' ? 0 : this.blocks - 1
    return decodeSuperblock(this.block(at))
  }

  block(b: number): Buffer {
    return this.read(b * BLOCK_SIZE, BLOCK_SIZE)
  }

  patchBlock(b: number, change: (buf: Buffer) => void): void {
    const buf = this.block(b)
    change(buf)
    this.write(b * BLOCK_SIZE, buf)
  }

  /** Re-encodes the primary (or backup) superblock after `change`, with a valid checksum. */
  patchSb(change: (sb: Superblock) => void, which: 'primary' | 'backup' = 'primary'): void {
    const sb = this.sb(which)
    change(sb)
    this.write((which === 'primary' ? 0 : this.blocks - 1) * BLOCK_SIZE, encodeSuperblock(sb))
  }

  inodePos(ino: number): number {
    return this.sb().inodeTableStart * BLOCK_SIZE + ino * INODE_SIZE
  }

  inode(ino: number): Buffer {
    return this.read(this.inodePos(ino), INODE_SIZE)
  }

  /** Changes an inode slot; its checksum is recomputed unless `reseal` is false. */
  patchInode(ino: number, change: (b: Buffer) => void, reseal = true): void {
    const pos = this.inodePos(ino)
    const b = this.read(pos, INODE_SIZE)
    change(b)
    if (reseal && b.readUInt16LE(0) !== 0) b.writeUInt32LE(crc32(b, 0, 0xfc), 0xfc)
    this.write(pos, b)
  }

  filesetPos(slot: number): number {
    const sb = this.sb()
    return (sb.filesetTableStart + Math.floor(slot / FILESETS_PER_BLOCK)) * BLOCK_SIZE + (slot % FILESETS_PER_BLOCK) * FILESET_RECORD_SIZE
  }

  /** Changes a fileset record; its checksum is recomputed unless `reseal` is false. */
  patchFileset(slot: number, change: (b: Buffer) => void, reseal = true): void {
    const pos = this.filesetPos(slot)
    const b = this.read(pos, FILESET_RECORD_SIZE)
    change(b)
    if (reseal) b.writeUInt32LE(crc32(b, 0, 0xfc), 0xfc)
    this.write(pos, b)
  }

  /** Changes a directory bucket (or extent node: same checksum layout) and reseals it. */
  patchBucket(block: number, change: (b: Buffer) => void, reseal = true): void {
    this.patchBlock(block, (b) => {
      change(b)
      if (reseal) sealBucket(b)
    })
  }

  /** Changes a block sealed by a CRC in its last 4 bytes (refcount, pointer table). */
  patchTailSealed(block: number, change: (b: Buffer) => void, reseal = true): void {
    this.patchBlock(block, (b) => {
      change(b)
      if (reseal) b.writeUInt32LE(crc32(b, 0, BLOCK_SIZE - 4), BLOCK_SIZE - 4)
    })
  }

  refcountPos(block: number): {table: number, byte: number} {
    const sb = this.sb()
    const i = block - sb.dataStart
    return {table: sb.refcountStart + Math.floor(i / REFCOUNTS_PER_BLOCK), byte: i % REFCOUNTS_PER_BLOCK}
  }

  setRefcount(block: number, v: number): void {
    const {table, byte} = this.refcountPos(block)
    this.patchTailSealed(table, (b) => { b[byte] = v })
  }

  getRefcount(block: number): number {
    const {table, byte} = this.refcountPos(block)
    return this.block(table)[byte]
  }

  /** Finds a path through the library (read-only) and returns its inode and block map. */
  locate(p: string, fileset = 'root'): Located {
    return withImage(this.path, {write: false}, (vol) => {
      const inode = namespace(vol, fileset).resolve(p, false)
      const extents = inode.r.flags & IF_INLINE ? [] : loadExtents(vol, inode).toArray().map((e) => ({...e}))
      return {
        ino: inode.ino, extents, tree: [...inode.treeBlocks],
        phys: (l: number) => {
          const e = extents.find((x) => x.l <= l && l < x.l + x.n)
          return e ? e.p + (l - e.l) : -1
        },
      }
    })
  }

  /** The extents of an inode (by number: one no path names, such as an attribute inode). */
  extentsOf(ino: number): Array<{l: number, n: number, p: number}> {
    return withImage(this.path, {write: false}, (vol) => loadExtents(vol, vol.iget(ino)).toArray().map((e) => ({...e})))
  }

  /** Changes the inode number or type of entry `name` of an inline directory, keeping its name and hash. */
  rewriteInlineEntry(dirIno: number, name: string, change: (e: {ino: number, type: number}) => void): void {
    this.patchInode(dirIno, (b) => {
      for (const o of entryOffsets(b, INLINE_DIRENT.ino, 0xfc)) {
        if (b.subarray(o + 14, o + 14 + b[o + 13]).toString('latin1') !== name) continue
        const e = {ino: b.readUInt32LE(o), type: b[o + 12]}
        change(e)
        b.writeUInt32LE(e.ino, o)
        b[o + 12] = e.type
        return
      }
      throw new Error(`no inline entry ${name} in directory inode ${dirIno}`)
    })
  }

  /** The highest data block no inode uses. */
  freeBlock(): number {
    return withImage(this.path, {write: false}, (vol) => {
      for (let b = vol.sb.dataStart + vol.sb.dataBlocks - 1; b >= vol.sb.dataStart; b--) if (vol.refcount(b) === 0) return b
      throw new Error('image full')
    })
  }

  /** The highest free inode number. */
  freeInode(): number {
    return withImage(this.path, {write: false}, (vol) => {
      for (let ino = vol.sb.inodeCount; ino > 1; ino--) if (!vol.inodeSlotUsed(ino)) return ino
      throw new Error('no free inode')
    })
  }
}

export function sealBucket(b: Buffer): void {
  b.writeUInt32LE(crc32(b, BUCKET_HDR, BLOCK_SIZE, crc32(b, 0, 12)), 12)
}

/** Offsets of the first inline directory entry's fields inside an inode slot (FORMAT.md §7.1). */
export const INLINE_DIRENT = {ino: 0x70, lastclone: 0x74, hash: 0x78, type: 0x7c, nameLen: 0x7d, name: 0x7e}

/** Byte offset, inside an inode slot or bucket, of each entry of a packed entry list. */
export function entryOffsets(buf: Buffer, start: number, end: number): number[] {
  const out: number[] = []
  let o = start
  while (o + 14 <= end) {
    const len = buf[o + 13]
    if (buf.readUInt32LE(o) === 0 || len === 0) break
    out.push(o)
    o += 14 + len
  }
  return out
}
