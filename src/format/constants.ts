// Geometry and magic numbers of the Prism image format (docs/FORMAT.md).
// Pure constants: no I/O, no imports from other layers.

export const BLOCK_SIZE = 4096
export const FORMAT_VERSION = 1
/** Superblock magic, bytes 0..7 of block 0 and of the backup superblock. */
export const SB_MAGIC = Buffer.from('PRISMIMG', 'latin1')
export const JSB_MAGIC = Buffer.from('PRISMJNL', 'latin1')

export const INODE_SIZE = 256
export const INODES_PER_BLOCK = BLOCK_SIZE / INODE_SIZE
export const FILESET_RECORD_SIZE = 256
export const FILESETS_PER_BLOCK = BLOCK_SIZE / FILESET_RECORD_SIZE
/** Reference counters per refcount-table block: the last 4 bytes hold a CRC. */
export const REFCOUNTS_PER_BLOCK = BLOCK_SIZE - 4
export const REFCOUNT_MAX = 255

export const ROOT_FILESET_NAME = 'root'
export const NAME_MAX = 255
export const FILESET_NAME_MAX = 128

/** Inode numbers start at 1; 0 means "none". */
export const INO_NONE = 0

// File types, as the S_IFMT bits of st_mode.
export const S_IFMT = 0o170000
export const S_IFREG = 0o100000
export const S_IFDIR = 0o040000
export const S_IFLNK = 0o120000
// Special files (FORMAT.md §5.5): kept as inodes with a device number and no data.
export const S_IFCHR = 0o020000
export const S_IFBLK = 0o060000
export const S_IFIFO = 0o010000
export const S_IFSOCK = 0o140000

/** Directory-entry file type codes (byte 12 of an entry). */
export const DT_REG = 1
export const DT_DIR = 2
export const DT_LNK = 7
// The codes of ext2's directory entries (FT_CHRDEV ...), as the three above.
export const DT_CHR = 3
export const DT_BLK = 4
export const DT_FIFO = 5
export const DT_SOCK = 6

// Inode flags (u16 at offset 0x02).
export const IF_INLINE = 0x0001 // data lives in the inode's 140-byte area
export const IF_NOCLONE = 0x0002 // left out of every later clone
export const IF_ORPHAN = 0x0004 // on the orphan list: free on next open
export const IF_UNEXPANDED = 0x0008 // directory whose entries still live in srcino
export const IF_HASHED = 0x0010 // directory stored as an extendible hash (else inline)
export const IF_XATTR = 0x0020 // an attribute inode: holds another inode's extended attributes (FORMAT.md §14)
export const IF_KNOWN = IF_INLINE | IF_NOCLONE | IF_ORPHAN | IF_UNEXPANDED | IF_HASHED | IF_XATTR

// Superblock state.
export const STATE_CLEAN = 1
export const STATE_DIRTY = 2

// Fileset states and clone modes.
export const FS_FREE = 0
export const FS_ACTIVE = 1
export const FS_EXPANDING = 2
export const FS_DELETING = 3

export const MODE_NONE = 0
export const MODE_SYNC = 1
export const MODE_ASYNC = 2
export const MODE_LAZY = 3

/** Logical block where a hashed directory's pointer table begins (sparse). */
export const DIR_PTR_BASE = 0x8000_0000
export const DIR_PTRS_PER_BLOCK = (BLOCK_SIZE - 4) / 4
/** 2^16 pointers (65 blocks): a split rewrites the table, so it must fit any journal. */
export const DIR_MAX_DEPTH = 16

/** Largest file: logical block numbers are u32, and the pointer table starts at 2^31. */
export const MAX_FILE_BLOCKS = DIR_PTR_BASE
export const MAX_FILE_SIZE = MAX_FILE_BLOCKS * BLOCK_SIZE

export function isDir(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR
}
export function isReg(mode: number): boolean {
  return (mode & S_IFMT) === S_IFREG
}
export function isLnk(mode: number): boolean {
  return (mode & S_IFMT) === S_IFLNK
}
/** A character or block device, a FIFO or a socket: an inode with no data (FORMAT.md §5.5). */
export function isSpecial(mode: number): boolean {
  const t = mode & S_IFMT
  return t === S_IFCHR || t === S_IFBLK || t === S_IFIFO || t === S_IFSOCK
}
/** Every file type an inode may have. */
export function knownType(mode: number): boolean {
  const t = mode & S_IFMT
  return t === S_IFREG || t === S_IFDIR || t === S_IFLNK || isSpecial(mode)
}
export function dtOfMode(mode: number): number {
  switch (mode & S_IFMT) {
    case S_IFDIR: return DT_DIR
    case S_IFLNK: return DT_LNK
    case S_IFCHR: return DT_CHR
    case S_IFBLK: return DT_BLK
    case S_IFIFO: return DT_FIFO
    case S_IFSOCK: return DT_SOCK
    default: return DT_REG
  }
}
/** The S_IFMT bits of a directory-entry type, 0 for an unknown code. */
export function modeOfDt(dt: number): number {
  switch (dt) {
    case DT_REG: return S_IFREG
    case DT_DIR: return S_IFDIR
    case DT_LNK: return S_IFLNK
    case DT_CHR: return S_IFCHR
    case DT_BLK: return S_IFBLK
    case DT_FIFO: return S_IFIFO
    case DT_SOCK: return S_IFSOCK
    default: return 0
  }
}
