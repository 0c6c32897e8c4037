// The fsck problem table, as e2fsprogs' problem.c: every inconsistency fsck can report has
// one entry here with a stable code, a message template and whether it can be repaired.
// The codes are the contract of `prism fsck --json` and of the tests: never rename or
// reuse one. This module only describes problems; it never looks at an image.

export type Severity = 'error' | 'warning'

export interface ProblemDef {
  /** message template; {name} is replaced by the detail of that name */
  message: string
  /** false when fsck can only report it */
  fixable: boolean
  /** 'warning': harmless for the data (a counter or a leaked block), still reported and repaired */
  severity: Severity
}

const e = (message: string, fixable = true): ProblemDef => ({message, fixable, severity: 'error'})
const w = (message: string, fixable = true): ProblemDef => ({message, fixable, severity: 'warning'})

export const PROBLEMS = {
  // pass 0: superblocks and journal
  SB_PRIMARY_BAD: e('primary superblock is damaged ({detail}); the backup copy was used'),
  SB_BACKUP_BAD: w('backup superblock is damaged ({detail})'),
  SB_BACKUP_MISMATCH: w('backup superblock disagrees with the primary ({detail})'),
  SB_BAD_STATE: w('superblock state {value} is invalid'),
  SB_NEXT_FILESET_ID: w('next fileset id {value} is not above the largest id in use ({max})'),
  SB_CLONE_CLOCK: w('clone clock {value} is behind a fileset clone stamp ({max})'),
  JOURNAL_SUPER: e('journal superblock is damaged ({detail})'),

  // pass 1: inode table and block maps
  INODE_RESERVED: w('reserved inode slot is not zeroed'),
  INODE_FREE_DIRTY: w('free inode slot holds leftover bytes'),
  INODE_CRC: e('inode checksum mismatch; {fix}'),
  INODE_BAD_TYPE: e('inode has an invalid file type (mode 0o{mode})'),
  INODE_BAD_FLAGS: e('inode flags 0x{flags} are invalid for a {kind}'),
  INODE_BAD_SIZE: e('inode size {size} is invalid ({detail})'),
  SYMLINK_NUL: e('symlink target of {size} bytes holds a NUL byte at {at} ({fix})'),
  INODE_BLOCKS_COUNT: w('inode block count is {have}, should be {want}'),
  EXTENT_ROOT_BAD: e('extent tree root is damaged ({detail})'),
  EXTENT_NODE_BAD: e('extent tree node {block} is damaged ({detail})'),
  EXTENT_NODE_CRC: e('extent tree node {block} checksum mismatch'),
  EXTENT_INDEX_KEY: w('extent index key {key} does not match its node ({first})'),
  EXTENT_EMPTY: e('extent at logical block {l} has length 0'),
  EXTENT_OUT_OF_RANGE: e('extent {l}+{n} maps physical blocks {p}..{last}, outside the data area'),
  EXTENT_LOGICAL_RANGE: e('extent {l}+{n} maps logical blocks past the largest file'),
  EXTENT_OVERLAP: e('extent {l}+{n} overlaps or precedes the previous extent'),
  EXTENT_BEYOND_EOF: e('extent {l}+{n} lies past the end of the file (size {size})'),
  BLOCK_MULTIPLY_CLAIMED: e('block is claimed by {claims}; {keeper} keeps it'),

  // pass 2: fileset table and directories
  FILESET_CRC: e('fileset record checksum mismatch'),
  FILESET_BAD: e('fileset record is unreadable ({detail})'),
  FILESET_BAD_NAME: e('fileset name {name} is invalid'),
  FILESET_BAD_STATE: e('fileset state {state} / clone mode {mode} is invalid'),
  FILESET_BAD_ROOT: e('fileset root inode {ino} {detail}; the fileset gets a new empty root'),
  FILESET_DUP_NAME: e('fileset name {name} is used twice'),
  FILESET_DUP_ID: e('fileset id {id} is used twice'),
  FILESET_BAD_PARENT: w('fileset parent id {parent} names no fileset'),
  FILESET_SLOT_DIRTY: w('free fileset slot holds leftover bytes'),
  FILESET_TABLE_BAD: e('fileset table file (inode {ino}) is unusable ({detail}); {outcome}'),
  FILESET_TABLE_NAMED: e('the fileset table file is also named by a directory', false),
  FILESET_TABLE_SIZE: e('fileset table file size is {have}, its blocks make {want}'),
  DIRENT_ATTR_INODE: e('entry names attribute inode {ino}, which no directory may name'),
  DIR_INLINE_CORRUPT: e('inline directory entries are malformed ({detail})'),
  DIR_BAD_GEOMETRY: e('hashed directory geometry is invalid ({detail})'),
  DIR_MISSING_BLOCK: e('directory is missing logical block {l}'),
  DIR_EXTRA_BLOCK: e('directory maps logical blocks {l}+{n} it does not use'),
  DIR_PTR_CRC: e('directory pointer block {index} checksum mismatch'),
  DIR_PTR_BAD: e('directory pointer table is inconsistent ({detail})'),
  DIR_BUCKET_CRC: e('directory bucket {l} {detail}'),
  DIR_BUCKET_CORRUPT: e('directory bucket {l} is malformed ({detail})'),
  DIR_BUCKET_UNREFERENCED: e('directory bucket {l} is not reachable from the pointer table'),
  DIR_HASH_MISPLACED: e('entry {name} (hash 0x{hash}) is in a bucket its hash does not lead to'),
  DIR_COUNT: w('directory entry count is {have}, should be {want}'),
  DIRENT_BAD_NAME: e('entry name {name} is invalid ({detail}); it is renamed {new}'),
  DIRENT_BAD_INODE: e('entry points to inode number {ino}, outside the inode table'),
  DIRENT_DANGLING: e('entry points to inode {ino}, which is not in use'),
  DIRENT_TYPE_MISMATCH: e('entry type {have} does not match inode {ino} ({want})'),
  DIRENT_DUP_NAME: e('entry name appears twice in its directory'),
  DIRENT_BAD_HASH: e('entry hash 0x{have} should be 0x{want}'),
  DIR_LOOP: e('entry makes directory inode {ino} its own ancestor'),
  DIR_MULTIPLE_PARENTS: e('directory inode {ino} already has a parent ({other})'),

  // pass 3: links, shares, reachability, orphans
  INODE_UNREACHABLE: e('{kind} inode is in use but no directory names it; it is reconnected as {path}'),
  INODE_NAME_LOST: e('{kind} inode shared by {share} filesets lost its name in fileset {fileset}; it is reconnected as {path}'),
  INODE_UNATTACHED_EMPTY: w('unattached {kind} holds nothing ({detail}); it is cleared'),
  LOST_FOUND_NOT_DIR: e('lost+found is a {kind}, not a directory; it moves into a new lost+found as {name}'),
  FILESET_RECOVERED: e('directory inode {ino} heads a tree no fileset can take (its shared files are held by every fileset that could); it becomes the root of a new fileset {name}'),
  FILESET_ROOT_RECOVERED: e('directory inode {ino} heads the fileset\'s tree ({why}): it is its root again, rather than a new empty one'),
  FILESET_SOURCE_RECOVERED: e('directory inode {ino} heads the tree of fileset id {id}, whose record is lost, the source of {clones} still expanding; it becomes fileset {name} again, under that id, and the clones go on expanding from it'),
  LINK_COUNT: e('link count is {have}, should be {want}'),
  SHARE_COUNT: e('share count is {have}, should be {want}'),
  ORPHAN_LIST: e('orphan list is damaged: {detail}'),
  ORPHAN_LINKED: e('inode is on the orphan list but still has a name'),
  ORPHAN_FLAG: e('inode has a name but is flagged as an orphan'),
  // clones still expanding (src/fsck/clonestate.ts)
  CLONE_BAD_SOURCE: e('expanding clone cannot go on ({detail}); it keeps what is expanded and its unexpanded directories become empty'),
  CLONE_STATE_STALE: w('fileset is not expanding but keeps clone fields (source {src}, state inode {ino})'),
  CLONE_STATE_BAD: e('clone-state file is unusable ({detail}); the clone stops expanding: it keeps what is expanded and its unexpanded directories become empty'),
  CLONESTART_STALE: w('clonestart is {value} but no clone of this fileset is expanding'),
  CLONESTART_MISSING: e('clones of this fileset are expanding but its clonestart is 0'),
  UNEXPANDED_BAD: e('unexpanded directory (inode {ino}) is invalid: {detail}; it becomes an empty directory'),
  LASTCLONE_AHEAD: w('entry lastclone {value} is ahead of the clone clock {clock}'),
  SB_INCOMPAT_EXPANDING: w('superblock feature bit for expanding clones is wrong ({detail})'),
  SCAN_RESULTS_BAD: e('scan results file is unusable ({detail}); it is dropped (a cache)'),

  // pass 4: reference counts and counters
  REFCOUNT_BLOCK_CRC: e('refcount table block checksum mismatch'),
  REFCOUNT_HIGH: e('{detail}'),
  // attribute sets (FORMAT.md §14), checked after pass 3
  XATTR_REF_BAD: e('inode names attribute inode {ref}, which {detail}; its attributes are dropped'),
  XATTR_SET_BAD: e('attribute set is unreadable ({detail}); the attributes of {owners} are dropped'),
  XATTR_UNREFERENCED: w('attribute inode is named by no inode'),
  XATTR_SHARE_COUNT: w('attribute inode share count is {have}, should be {want} (the inodes naming it)'),
  XATTR_LINK_COUNT: w('attribute inode link count is {have}, should be 1'),
  SPECIAL_BAD: e('{kind} inode holds {detail}'),
  REFCOUNT_LOW: e('{detail}'),
  BLOCK_LEAKED: w('{detail}'),
  REFCOUNT_OVERFLOW: e('block has {refs} references, more than a counter holds', false),
  REFCOUNT_PADDING: w('refcount table holds counters past the end of the data area'),
  FREE_BLOCKS_COUNT: w('free block count is {have}, should be {want}'),
  FREE_INODES_COUNT: w('free inode count is {have}, should be {want}'),
} as const satisfies Record<string, ProblemDef>

export type ProblemCode = keyof typeof PROBLEMS

export interface FsckProblem {
  code: string
  message: string
  where: string
  fixable: boolean
  fixed: boolean
}

export type Details = Record<string, string | number>

export function formatMessage(code: ProblemCode, details: Details = {}): string {
  return PROBLEMS[code].message.replace(/\{(\w+)\}/g, (m, k: string) => (k in details ? String(details[k]) : m))
}

export function makeProblem(code: ProblemCode, where: string, details: Details = {}): FsckProblem {
  const def: ProblemDef = PROBLEMS[code]
  return {code, message: formatMessage(code, details), where, fixable: def.fixable, fixed: false}
}

export function severityOf(code: string): Severity | null {
  return (PROBLEMS as Record<string, ProblemDef>)[code]?.severity ?? null
}
