// Builds the corpus of damaged images in fixtures/fsck/, e2fsprogs style, from scratch:
// for each fixture a small real image is made with the library, one structure is damaged
// with the format's own layout (test/damage.ts), and the real CLI (`prism fsck --repair`,
// dist/ must be built) is run twice to record the expected output of each run.
//
//   npm run fixtures:fsck                 rebuild every fixture
//   npm run fixtures:fsck -- NAME...      rebuild only those
//   npm run fixtures:fsck -- --keep-images [NAME...]
//                                         keep the stored images (a new fixture gets one) and
//                                         record fsck's output anew: after a change of fsck's
//                                         repairs or messages, so that the images stay as they are
//
// Each fixture directory holds:
//   name      one line: what is damaged
//   image.gz  the damaged image (gzip)
//   expect.1  stdout and stderr of the first `prism fsck --repair`, then "Exit status is N"
//   expect.2  the same for the second run
//   expect.ls `prism ls -R` of every fileset after the repair (what survived)
// Add a fixture by adding one function to FIXTURES below (a new base image, if it needs
// one, is another entry in BASES). The script fails if a first run does not exit 1 or 4
// (0 is allowed only for journal fixtures whose damage is a replay), or if a second run of
// a repairable fixture does not exit 0.
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import zlib from 'node:zlib'
import {
  BLOCK_SIZE, DT_LNK, DT_REG, IF_HASHED, IF_INLINE, IF_ORPHAN, IF_UNEXPANDED, IF_XATTR, INODE_SIZE, REFCOUNTS_PER_BLOCK, S_IFREG,
} from '../src/format/constants.js'
import {INCOMPAT_EXPANDING} from '../src/format/superblock.js'
import {ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ, encodeAcl} from '../src/format/xattr.js'
import {saveScanFile, ScanEntries, TreeCache} from '../src/scan/store.js'
import {crc32, nameHash} from '../src/format/checksum.js'
import {BUCKET_HDR} from '../src/format/dirent.js'
import {COMMIT_MAGIC, DESC_MAGIC} from '../src/format/journal.js'
import {emptyInode, encodeInode} from '../src/format/inode.js'
import {createEmptyFileset, mkfs, namespace, withImage} from '../src/fs/image.js'
import {dirRemove} from '../src/fs/dir.js'
import {shareData} from '../src/fs/extents.js'
import {Volume} from '../src/fs/volume.js'
import {clone} from '../src/clone/clone.js'
import {PROBLEMS} from '../src/fsck/problems.js'
import {INLINE_DIRENT, RawImage, entryOffsets} from '../test/damage.js'

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const OUT = path.join(ROOT, 'fixtures', 'fsck')
// PRISM_BIN runs another build of the CLI (a copy of bin/ and dist/, while dist/ is being rebuilt).
const BIN = process.env.PRISM_BIN ?? path.join(ROOT, 'bin', 'run.js')
const IMAGE = 'image.img'

// ---------------------------------------------------------------- base images

/** The standard tree: inline and block files, a hashed directory, links, a fragmented file, a clone. */
function baseStandard(p: string): void {
  const vol = mkfs(p, {size: 4 * 1024 * 1024, inodeCount: 512, filesetSlots: 32})
  const ns = namespace(vol, 'root')
  ns.mkdir('/docs')
  ns.writeFile('/docs/readme.txt', Buffer.alloc(10_000, 'r'))
  ns.writeFile('/docs/small.txt', Buffer.from('hello, prism\n'))
  ns.symlink('readme.txt', '/docs/link')
  ns.link('/docs/readme.txt', '/hard')
  ns.mkdir('/deep/a/b/c/d', {parents: true})
  ns.writeFile('/deep/a/b/c/d/leaf', Buffer.from('leaf\n'))
  ns.mkdir('/many')
  for (let i = 0; i < 300; i++) ns.writeFile(`/many/file-${String(i).padStart(3, '0')}`, Buffer.from(`content ${i}\n`))
  ns.mkdir('/many/sub1')
  ns.mkdir('/many/sub2')
  ns.writeFile('/big', Buffer.from(Array.from({length: 64 * 1024}, (_, i) => (i * 7) & 0xff)))
  vol.commit()
  // Two files written in turns: /two has 2 extents in its root, /frag more than 8 (tree nodes).
  for (let i = 0; i < 12; i++) {
    ns.writeFile(`/spacer${i}`, Buffer.alloc(BLOCK_SIZE, i))
    ns.writeFile('/frag', Buffer.alloc(BLOCK_SIZE, 0x40 + i), {append: true})
    if (i < 2) ns.writeFile('/two', Buffer.alloc(BLOCK_SIZE, 0x60 + i), {append: true})
  }
  vol.commit()
  for (let i = 0; i < 12; i++) ns.unlink(`/spacer${i}`)
  // Blocks shared copy-on-write inside the image (refcount 2), and a clone (share count 2).
  shareData(vol, ns.resolve('/big'), ns.openForWrite('/big-copy'))
  vol.commit()
  clone(vol, {fileset: 'root', path: '/'}, {fileset: 'snap'}, {exclude: ['/many']})
  vol.close()
}

/** A fresh, nearly empty image with a second fileset. */
function baseSmall(p: string): void {
  const vol = mkfs(p, {size: 2 * 1024 * 1024, inodeCount: 512, filesetSlots: 16})
  const ns = namespace(vol, 'root')
  ns.writeFile('/one', Buffer.alloc(BLOCK_SIZE, 1))
  createEmptyFileset(vol, 'other')
  vol.close()
}

/**
 * Clones still expanding (FORMAT.md §8.5-8.6): 'lazy' is a lazy clone of root with an exclude
 * (so it has a clone-state file) whose root alone is expanded (its subdirectories are
 * UNEXPANDED), 'plain' a lazy clone of root with no state file, 'snap' an ordinary sync
 * clone. root carries clonestart, and scan results are stored (superblock scan_ino).
 */
function baseExpanding(p: string): void {
  const vol = mkfs(p, {size: 3 * 1024 * 1024, inodeCount: 256, filesetSlots: 16})
  const ns = namespace(vol, 'root')
  ns.mkdir('/docs')
  ns.writeFile('/docs/readme.txt', Buffer.alloc(6_000, 'r'))
  ns.writeFile('/docs/secret.key', Buffer.from('left out of the clone\n'))
  ns.writeFile('/docs/small.txt', Buffer.from('hello, prism\n'))
  ns.link('/docs/readme.txt', '/hard')
  ns.mkdir('/deep/a/b', {parents: true})
  ns.writeFile('/deep/a/b/leaf', Buffer.from('leaf\n'))
  ns.writeFile('/top', Buffer.alloc(9_000, 't'))
  vol.commit()
  const key = Buffer.alloc(32, 7)
  saveScanFile(vol, {tree: new TreeCache(), sets: [{key, lastUsed: 1_700_000_000_000, entries: ScanEntries.from([ns.resolve('/top'), ns.resolve('/docs/small.txt')].sort((x, y) => x.ino - y.ino).map((i) => ({ino: i.ino, generation: i.r.generation, dataVersion: i.r.dataVersion, found: ''})))}]})
  vol.commit()
  clone(vol, {fileset: 'root', path: '/'}, {fileset: 'snap'}, {mode: 'sync'})
  clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lazy'}, {mode: 'lazy', exclude: ['/docs/secret.key']})
  clone(vol, {fileset: 'root', path: '/'}, {fileset: 'plain'}, {mode: 'lazy'})
  vol.commit()
  // Expand the lazy clone's root only: /docs and /deep become UNEXPANDED directories.
  namespace(vol, 'lazy').readdir('/')
  vol.close()
}

/** A fileset table grown past its 16 fixed slots: 21 filesets, the last 5 in the table file (FORMAT.md §8.7). */
function baseGrown(p: string): void {
  const vol = mkfs(p, {size: 2 * 1024 * 1024, inodeCount: 256, filesetSlots: 16})
  const ns = namespace(vol, 'root')
  ns.mkdir('/d')
  ns.writeFile('/d/x', Buffer.from('x\n'))
  ns.writeFile('/top', Buffer.alloc(6_000, 't'))
  for (let i = 1; i <= 20; i++) {
    createEmptyFileset(vol, `g${i}`)
    namespace(vol, `g${i}`).writeFile('/f', Buffer.from(`fileset ${i}\n`))
  }
  vol.close()
}

/**
 * What a root tree holds besides data (FORMAT.md §5.5, §14): a small attribute set inline in
 * its attribute inode, a large one in blocks, one set shared by two files, ACLs on a
 * directory, a FIFO and a character device with attributes of their own, and a clone that
 * shares all of it.
 */
function baseFidelity(p: string): void {
  const vol = mkfs(p, {size: 3 * 1024 * 1024, inodeCount: 256, filesetSlots: 16})
  const ns = namespace(vol, 'root')
  const B = (t: string) => Buffer.from(t)
  ns.mkdir('/etc')
  ns.writeFile('/etc/passwd', B('root:x:0:0:root:/root:/bin/sh\n'))
  ns.setXattr('/etc/passwd', B('security.selinux'), B('system_u:object_r:passwd_file_t:s0'))
  ns.writeFile('/etc/shadow', B('root:*:19000::::::\n'))
  ns.setXattr('/etc/shadow', B('security.selinux'), B('system_u:object_r:passwd_file_t:s0'))
  ns.mkdir('/bin')
  ns.writeFile('/bin/ping', Buffer.alloc(9_000, 'p'))
  ns.setXattr('/bin/ping', B('security.capability'), Buffer.from('0100000200200000000000000000000000000000', 'hex'))
  // 3 KB: past the attribute inode's 140 bytes (so in a block), within what ext4 holds when exported.
  ns.setXattr('/bin/ping', B('user.big'), Buffer.alloc(3_000, 'b'))
  ns.mkdir('/srv')
  ns.setXattr('/srv', B('system.posix_acl_access'), acl())
  ns.mkdir('/dev')
  ns.mknod('/dev/null', 0o020666, {major: 1, minor: 3})
  ns.mknod('/dev/initctl', 0o010600)
  ns.setXattr('/dev/null', B('security.selinux'), B('system_u:object_r:null_device_t:s0'))
  vol.commit()
  clone(vol, {fileset: 'root', path: '/'}, {fileset: 'snap'}, {mode: 'sync'})
  vol.close()
}

/** user::rwx, user:1000:r-x, group::r-x, mask::r-x, other::r-x (Linux's binary ACL) */
function acl(): Buffer {
  return encodeAcl([{tag: ACL_USER_OBJ, perm: 7}, {tag: ACL_USER, perm: 5, id: 1000}, {tag: ACL_GROUP_OBJ, perm: 5}, {tag: ACL_MASK, perm: 5}, {tag: ACL_OTHER, perm: 5}])
}

const BASES: Record<string, (p: string) => void> = {standard: baseStandard, small: baseSmall, expanding: baseExpanding, fidelity: baseFidelity, grown: baseGrown}

// ---------------------------------------------------------------- fixtures

interface Fixture {
  name: string
  desc: string
  base?: keyof typeof BASES
  /** the first run may exit 0 (a journal replay is recovery, not a repair) */
  mayBeClean?: boolean
  damage: (img: RawImage) => void
}

const area = 0x70
const rootEntry = (i: number) => area + 12 + 16 * i // extent entry i in an inode's root

/** The transactions of the current log generation, walked as replay does (FORMAT.md §3.8). */
function logTransactions(img: RawImage): Array<{descs: number[], commit: number}> {
  const sb = img.sb()
  const jsb = img.block(sb.journalStart)
  let seq = Number(jsb.readBigUInt64LE(16))
  const out: Array<{descs: number[], commit: number}> = []
  let descs: number[] = []
  for (let k = 1; k < sb.journalBlocks;) {
    const b = img.block(sb.journalStart + k)
    if (b.readUInt32LE(BLOCK_SIZE - 4) !== crc32(b, 0, BLOCK_SIZE - 4) || Number(b.readBigUInt64LE(8)) !== seq) break
    if (b.readUInt32LE(0) === DESC_MAGIC) {
      descs.push(sb.journalStart + k)
      k += 1 + b.readUInt32LE(4)
    } else if (b.readUInt32LE(0) === COMMIT_MAGIC) {
      out.push({descs, commit: sb.journalStart + k})
      descs = []
      seq++
      k++
    } else break
  }
  return out
}

/** The newest committed transaction of the log. */
function lastCommit(img: RawImage): {block: number, desc: number} {
  const txns = logTransactions(img)
  if (txns.length === 0) throw new Error('no transaction in the log')
  const t = txns[txns.length - 1]
  return {block: t.commit, desc: t.descs[t.descs.length - 1]}
}

/** Leaves transactions in the log: each step is committed, then the volume stops without closing. */
function unreplayed(img: RawImage, steps: Array<(ns: ReturnType<typeof namespace>) => void>): void {
  const vol = Volume.open(img.path, {write: true})
  const ns = namespace(vol, 'root')
  for (const s of steps) {
    s(ns)
    vol.commit()
  }
  vol.closeAbort()
}

/** The attribute inode a path's inode names (xattr_ino at 0x6C). */
function attrIno(img: RawImage, p: string): number {
  return img.inode(img.locate(p).ino).readUInt32LE(0x6c)
}

const FIXTURES: Fixture[] = [
  // Extended attributes and special files (FORMAT.md §5.5, §14).
  {name: 'xattr-ref-bad', base: 'fidelity', desc: 'a file naming, as its attribute inode, an ordinary file', damage: (img) => {
    const other = img.locate('/etc/shadow').ino
    img.patchInode(img.locate('/etc/passwd').ino, (b) => b.writeUInt32LE(img.locate('/bin/ping').ino === other ? 0 : other, 0x6c))
  }},
  {name: 'xattr-set-crc', base: 'fidelity', desc: 'an inline attribute set whose checksum does not match (its inode resealed)', damage: (img) => {
    img.patchInode(attrIno(img, '/dev/null'), (b) => { b[area + 30] ^= 0x20 })
  }},
  {name: 'xattr-set-block', base: 'fidelity', desc: 'a block of an attribute set stored in blocks, overwritten', damage: (img) => {
    const a = attrIno(img, '/bin/ping')
    const f = img.extentsOf(a)
    img.patchBlock(f[0].p, (b) => b.fill(0x41, 100, 300))
  }},
  {name: 'xattr-share-count', base: 'fidelity', desc: 'an attribute inode two inodes name, with share count 7', damage: (img) => img.patchInode(attrIno(img, '/etc/passwd'), (b) => b.writeUInt32LE(7, 0x08))},
  {name: 'xattr-link-count', base: 'fidelity', desc: 'an attribute inode with link count 3', damage: (img) => img.patchInode(attrIno(img, '/dev/null'), (b) => b.writeUInt32LE(3, 0x04))},
  {name: 'xattr-unreferenced', base: 'fidelity', desc: 'an attribute inode no inode names any more', damage: (img) => {
    for (const f of ['root', 'snap']) img.patchInode(img.locate('/bin/ping', f).ino, (b) => b.writeUInt32LE(0, 0x6c))
  }},
  {name: 'xattr-flag-on-named-file', base: 'fidelity', desc: 'a file a directory names, flagged as an attribute inode', damage: (img) => img.patchInode(img.locate('/etc/shadow').ino, (b) => b.writeUInt16LE(b.readUInt16LE(2) | IF_XATTR, 2))},
  {name: 'dirent-attr-inode', base: 'fidelity', desc: 'a directory entry naming an attribute inode', damage: (img) => {
    const a = attrIno(img, '/bin/ping')
    img.rewriteInlineEntry(img.locate('/dev').ino, 'initctl', (e) => { e.ino = a; e.type = DT_REG })
  }},
  {name: 'special-bad', base: 'fidelity', desc: 'a FIFO with a size, a block count and bytes in its area', damage: (img) => img.patchInode(img.locate('/dev/initctl').ino, (b) => {
    b.writeBigUInt64LE(4096n, 0x18)
    b.writeBigUInt64LE(1n, 0x20)
    b[area + 3] = 9
  })},
  {name: 'dirent-type-special', base: 'fidelity', desc: 'a directory entry typed as a regular file for a character device', damage: (img) => {
    img.rewriteInlineEntry(img.locate('/dev').ino, 'null', (e) => { e.type = DT_REG })
  }},

  // ---- superblocks
  {name: 'sb-primary-zeroed', desc: 'primary superblock overwritten with zeros', damage: (img) => img.write(0, Buffer.alloc(BLOCK_SIZE))},
  {name: 'sb-primary-bad-geometry', desc: 'primary superblock: data_blocks too large (checksum valid)', damage: (img) => img.patchSb((sb) => { sb.dataBlocks += 10 })},
  {name: 'sb-backup-garbage', desc: 'backup superblock overwritten with garbage', damage: (img) => img.write((img.blocks - 1) * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0xee))},
  {name: 'sb-backup-mismatch', desc: 'backup superblock has another creation time', damage: (img) => img.patchSb((sb) => { sb.created -= 1000 }, 'backup')},
  {name: 'sb-bad-state', desc: 'superblock state 9', damage: (img) => img.patchSb((sb) => { sb.state = 9 })},
  {name: 'sb-next-fileset-id', desc: 'next fileset id below the ids in use', damage: (img) => img.patchSb((sb) => { sb.nextFilesetId = 1 })},
  {name: 'sb-free-counts', desc: 'free block and inode counters wrong', damage: (img) => img.patchSb((sb) => { sb.freeBlocks -= 17; sb.freeInodes += 3 })},
  {name: 'sb-orphan-head-free', desc: 'orphan list head names a free inode', damage: (img) => { const ino = img.freeInode(); img.patchSb((sb) => { sb.orphanHead = ino }) }},
  {name: 'sb-clone-clock', desc: 'a fileset clone stamp ahead of the clone clock', damage: (img) => img.patchFileset(1, (b) => b.writeUInt32LE(7, 0x18))},

  // ---- journal
  {name: 'journal-super-magic', desc: 'journal superblock magic destroyed', damage: (img) => img.patchBlock(img.sb().journalStart, (b) => b.fill(0x33, 0, 8))},
  {name: 'journal-super-size', desc: 'journal superblock with a wrong size (checksums valid)', damage: (img) => img.patchBlock(img.sb().journalStart, (b) => {
    b.writeUInt32LE(b.readUInt32LE(12) + 1, 12)
    b.writeUInt32LE(crc32(b, 0, 0x1fc), 0x1fc)
    b.writeUInt32LE(crc32(b, 0, BLOCK_SIZE - 4), BLOCK_SIZE - 4)
  })},
  {name: 'journal-replay', desc: 'two committed transactions never replayed (writer killed)', mayBeClean: true, damage: (img) => unreplayed(img, [
    (ns) => ns.writeFile('/journal-a', Buffer.from('committed a\n')),
    (ns) => { ns.writeFile('/journal-b', Buffer.from('committed b\n')); ns.unlink('/docs/small.txt') },
  ])},
  {name: 'journal-torn', desc: 'the newest transaction lost its commit block (torn write)', mayBeClean: true, damage: (img) => {
    unreplayed(img, [(ns) => ns.writeFile('/journal-a', Buffer.from('kept\n')), (ns) => ns.writeFile('/journal-b', Buffer.from('torn\n'))])
    const c = lastCommit(img)
    img.write(c.block * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE))
  }},
  {name: 'journal-bad-block-crc', desc: 'a logged block of the newest transaction does not match its tag checksum', mayBeClean: true, damage: (img) => {
    unreplayed(img, [(ns) => ns.writeFile('/journal-a', Buffer.from('kept\n')), (ns) => ns.writeFile('/journal-b', Buffer.from('dropped\n'))])
    img.patchBlock(lastCommit(img).desc + 1, (b) => { b[100] ^= 0xff })
  }},
  {name: 'journal-bad-commit-crc', desc: 'the newest commit block fails its checksum', mayBeClean: true, damage: (img) => {
    unreplayed(img, [(ns) => ns.writeFile('/journal-a', Buffer.from('kept\n')), (ns) => ns.mkdir('/journal-dir')])
    const c = lastCommit(img)
    img.patchBlock(c.block, (b) => { b[0x20] ^= 1 })
  }},
  {name: 'journal-replay-then-damage', desc: 'a transaction to replay, and a damaged backup superblock', damage: (img) => {
    unreplayed(img, [(ns) => ns.writeFile('/journal-a', Buffer.from('replayed\n'))])
    img.write((img.blocks - 1) * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0x11))
  }},

  // ---- inodes
  {name: 'inode-reserved-slot', desc: 'inode slot 0 is not zero', damage: (img) => img.patchInode(0, (b) => { b[10] = 1 }, false)},
  {name: 'inode-free-dirty', desc: 'a free inode slot holds a stray byte', damage: (img) => img.patchInode(img.freeInode(), (b) => { b[0x20] = 9 }, false)},
  {name: 'inode-crc', desc: 'a file inode with a bad checksum (it has two names)', damage: (img) => img.patchInode(img.locate('/docs/readme.txt').ino, (b) => { b[0x0c] ^= 0x55 }, false)},
  {name: 'inode-crc-garbage', desc: 'a file inode with a bad checksum and invalid flags (garbage: cleared)', damage: (img) => img.patchInode(img.locate('/docs/readme.txt').ino, (b) => { b[0x0c] ^= 0x55; b.writeUInt16LE(0x4000, 2) }, false)},
  {name: 'inode-bad-type', desc: 'an inode with a file type no version defines (0o070000)', damage: (img) => img.patchInode(img.locate('/deep/a/b/c/d/leaf').ino, (b) => b.writeUInt16LE(0o070644, 0))},
  {name: 'inode-bad-flags', desc: 'a regular file flagged as a hashed directory', damage: (img) => img.patchInode(img.locate('/docs/small.txt').ino, (b) => b.writeUInt16LE(b.readUInt16LE(2) | IF_HASHED, 2))},
  {name: 'inode-unknown-flags', desc: 'an inode with flag bits no version defines', damage: (img) => img.patchInode(img.locate('/big').ino, (b) => b.writeUInt16LE(b.readUInt16LE(2) | 0x0400, 2))},
  {name: 'inode-bad-size-inline', desc: 'an inline file claiming 500 bytes', damage: (img) => img.patchInode(img.locate('/docs/small.txt').ino, (b) => b.writeBigUInt64LE(500n, 0x18))},
  {name: 'inode-bad-size-symlink', desc: 'a symlink of length 0', damage: (img) => img.patchInode(img.locate('/docs/link').ino, (b) => b.writeBigUInt64LE(0n, 0x18))},
  {name: 'symlink-nul', desc: 'a symlink whose size grew past its target: zeros follow it (cut back to the target)', damage: (img) => img.patchInode(img.locate('/docs/link').ino, (b) => b.writeBigUInt64LE(b.readBigUInt64LE(0x18) + 7n, 0x18))},
  {name: 'inode-blocks-count', desc: 'a block count that disagrees with the map', damage: (img) => img.patchInode(img.locate('/big').ino, (b) => b.writeBigUInt64LE(7n, 0x20))},
  {name: 'inode-link-count-file', desc: 'a file with link count 5 (it has 2 names)', damage: (img) => img.patchInode(img.locate('/docs/readme.txt').ino, (b) => b.writeUInt32LE(5, 0x04))},
  {name: 'inode-link-count-dir', desc: 'a directory with link count 9', damage: (img) => img.patchInode(img.locate('/many').ino, (b) => b.writeUInt32LE(9, 0x04))},
  {name: 'inode-share-too-high', desc: 'a file share count 3 where two filesets hold it', damage: (img) => img.patchInode(img.locate('/big').ino, (b) => b.writeUInt32LE(3, 0x08))},
  {name: 'inode-share-too-low', desc: 'a file held by two filesets with share count 1', damage: (img) => img.patchInode(img.locate('/docs/small.txt').ino, (b) => b.writeUInt32LE(1, 0x08))},
  {name: 'inode-unreachable', desc: 'an in-use file no directory names', damage: (img) => {
    const r = emptyInode()
    r.mode = S_IFREG | 0o644
    r.nlink = 1
    r.share = 1
    r.flags = IF_INLINE
    r.size = 3
    r.generation = 99
    r.area.write('abc')
    const b = Buffer.alloc(INODE_SIZE)
    encodeInode(r, b, 0)
    img.write(img.inodePos(img.freeInode()), b)
  }},

  // ---- block maps
  {name: 'extent-root-magic', desc: 'a file whose extent root lost its magic', damage: (img) => img.patchInode(img.locate('/big').ino, (b) => b.writeUInt16LE(0x1234, area))},
  {name: 'extent-node-crc', desc: 'an extent-tree node with a bad checksum', damage: (img) => img.patchBlock(img.locate('/frag').tree[0], (b) => { b[200] ^= 1 })},
  {name: 'extent-node-owner', desc: 'an extent-tree node naming another owner (checksum valid)', damage: (img) => img.patchBucket(img.locate('/frag').tree[0], (b) => b.writeUInt32LE(b.readUInt32LE(8) + 1, 8))},
  {name: 'extent-index-key', desc: 'an index entry whose key disagrees with its node', damage: (img) => {
    const f = img.locate('/frag')
    img.patchInode(f.ino, (b) => b.writeUInt32LE(b.readUInt32LE(rootEntry(0)) + 3, rootEntry(0)))
  }},
  {name: 'extent-empty', desc: 'an extent of length 0', damage: (img) => img.patchInode(img.locate('/two').ino, (b) => b.writeUInt32LE(0, rootEntry(1) + 4))},
  {name: 'extent-out-of-range', desc: 'an extent pointing past the image', damage: (img) => img.patchInode(img.locate('/docs/readme.txt').ino, (b) => b.writeBigUInt64LE(BigInt(img.blocks + 100), rootEntry(0) + 8))},
  {name: 'extent-in-metadata', desc: 'an extent pointing into the inode table', damage: (img) => img.patchInode(img.locate('/docs/readme.txt').ino, (b) => b.writeBigUInt64LE(BigInt(img.sb().inodeTableStart), rootEntry(0) + 8))},
  {name: 'extent-logical-range', desc: 'an extent past the largest file', damage: (img) => img.patchInode(img.locate('/two').ino, (b) => b.writeUInt32LE(0x8000_0000, rootEntry(1)))},
  {name: 'extent-overlap', desc: 'two extents mapping the same logical block', damage: (img) => img.patchInode(img.locate('/two').ino, (b) => b.writeUInt32LE(0, rootEntry(1)))},
  {name: 'extent-beyond-eof', desc: 'a file size smaller than its map', damage: (img) => img.patchInode(img.locate('/big').ino, (b) => b.writeBigUInt64LE(4096n, 0x18))},
  {name: 'block-claimed-by-file-and-dir', desc: 'a file mapping a directory bucket', damage: (img) => {
    const bucket0 = img.locate('/many').phys(0)
    img.patchInode(img.locate('/docs/readme.txt').ino, (b) => b.writeBigUInt64LE(BigInt(bucket0), rootEntry(0) + 8))
  }},
  {name: 'block-claimed-by-two-dirs', desc: 'two directories mapping the same bucket', damage: (img) => {
    const bucket0 = img.locate('/many').phys(0)
    img.patchInode(img.locate('/deep/a').ino, (b) => {
      b.writeUInt16LE((b.readUInt16LE(2) & ~IF_INLINE) | IF_HASHED, 2)
      b.fill(0, area, 0xfc)
      b.writeUInt16LE(0xf30a, area)
      b.writeUInt16LE(1, area + 2)
      b.writeUInt16LE(8, area + 4)
      b.writeUInt32LE(0, rootEntry(0))
      b.writeUInt32LE(1, rootEntry(0) + 4)
      b.writeBigUInt64LE(BigInt(bucket0), rootEntry(0) + 8)
      b.writeUInt8(0, 0x64)
      b.writeUInt32LE(1, 0x68)
      b.writeBigUInt64LE(1n, 0x20)
    })
  }},

  // ---- reference counts
  {name: 'refcount-high', desc: 'a counter above the references', damage: (img) => img.setRefcount(img.locate('/docs/readme.txt').extents[0].p, 3)},
  {name: 'refcount-low', desc: 'a block in use marked free', damage: (img) => img.setRefcount(img.locate('/frag').extents[0].p, 0)},
  {name: 'refcount-low-shared', desc: 'a block shared by two files counted once', damage: (img) => img.setRefcount(img.locate('/big').extents[0].p + 3, 1)},
  {name: 'refcount-leaked', desc: 'a counted block nothing references', damage: (img) => img.setRefcount(img.freeBlock(), 1)},
  {name: 'refcount-table-crc', desc: 'a refcount-table block with a bad checksum', damage: (img) => img.patchBlock(img.sb().refcountStart, (b) => { b[100] ^= 0xff })},
  {name: 'refcount-padding', desc: 'a counter set past the end of the data area', damage: (img) => {
    const sb = img.sb()
    const i = sb.dataBlocks % REFCOUNTS_PER_BLOCK
    img.patchTailSealed(sb.refcountStart + sb.refcountBlocks - 1, (b) => { b[i + 1] = 1 })
  }},
  {name: 'refcount-overflow', desc: 'a block referenced 256 times (a counter holds 255): cannot be repaired', base: 'small', damage: (img) => {
    withImage(img.path, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      ns.mkdir('/s')
      const src = ns.resolve('/one')
      for (let i = 0; i < 254; i++) {
        shareData(vol, src, ns.openForWrite(`/s/${i}`))
        vol.maybeCommit()
      }
      ns.writeFile('/extra', Buffer.alloc(BLOCK_SIZE, 2))
    })
    const one = img.locate('/one').extents[0].p
    const extra = img.locate('/extra')
    img.patchInode(extra.ino, (b) => b.writeBigUInt64LE(BigInt(one), rootEntry(0) + 8))
  }},

  // ---- directories
  {name: 'dir-inline-corrupt', desc: 'an inline directory whose entry runs past its area', damage: (img) => img.patchInode(img.locate('/deep/a/b/c').ino, (b) => { b[INLINE_DIRENT.nameLen] = 200 })},
  {name: 'dir-bad-geometry', desc: 'a hashed directory with 5000 buckets', damage: (img) => img.patchInode(img.locate('/many').ino, (b) => b.writeUInt32LE(5000, 0x68))},
  {name: 'dir-missing-block', desc: 'a hashed directory whose bucket 1 is unmapped', damage: (img) => {
    const many = img.locate('/many')
    // Shrink the extent holding bucket 1 (or drop it) so that logical block 1 is a hole.
    img.patchInode(many.ino, (b) => {
      const depth = b.readUInt16LE(area + 6)
      if (depth !== 0) throw new Error('expected a depth-0 root')
      const count = b.readUInt16LE(area + 2)
      for (let i = 0; i < count; i++) {
        const l = b.readUInt32LE(rootEntry(i))
        const n = b.readUInt32LE(rootEntry(i) + 4)
        if (l <= 1 && 1 < l + n) {
          if (l === 1 && n === 1) {
            b.copy(b, rootEntry(i), rootEntry(i + 1), rootEntry(count))
            b.fill(0, rootEntry(count - 1), rootEntry(count))
            b.writeUInt16LE(count - 1, area + 2)
          } else if (l === 0) b.writeUInt32LE(1, rootEntry(i) + 4)
          else throw new Error('unexpected bucket layout')
          return
        }
      }
      throw new Error('bucket 1 not found')
    })
  }},
  {name: 'dir-extra-block', desc: 'a hashed directory mapping a block past its buckets', damage: (img) => {
    const many = img.locate('/many')
    const spare = img.freeBlock()
    img.setRefcount(spare, 1)
    img.patchInode(many.ino, (b) => {
      const count = b.readUInt16LE(area + 2)
      if (count >= 8) throw new Error('root full')
      // Entries are sorted by logical block: logical 100 goes before the pointer table.
      let at = 0
      while (at < count && b.readUInt32LE(rootEntry(at)) < 100) at++
      b.copy(b, rootEntry(at + 1), rootEntry(at), rootEntry(count))
      b.writeUInt32LE(100, rootEntry(at))
      b.writeUInt32LE(1, rootEntry(at) + 4)
      b.writeBigUInt64LE(BigInt(spare), rootEntry(at) + 8)
      b.writeUInt16LE(count + 1, area + 2)
      b.writeBigUInt64LE(b.readBigUInt64LE(0x20) + 1n, 0x20)
    })
  }},
  {name: 'dir-ptr-crc', desc: 'a directory pointer block with a bad checksum', damage: (img) => img.patchBlock(img.locate('/many').phys(0x8000_0000), (b) => { b[0] ^= 1 })},
  {name: 'dir-ptr-bad', desc: 'a directory pointer naming a bucket that does not exist', damage: (img) => img.patchTailSealed(img.locate('/many').phys(0x8000_0000), (b) => b.writeUInt32LE(77, 0))},
  {name: 'dir-bucket-unreferenced', desc: 'every pointer leads to bucket 0, bucket 1 unreachable', damage: (img) => {
    const many = img.locate('/many')
    // Bucket 0 claims every hash (local depth 0), and the pointer table agrees: the other buckets hang loose.
    img.patchTailSealed(many.phys(0x8000_0000), (b) => { for (let i = 0; i < 1023; i++) if (b.readUInt32LE(i * 4) !== 0) b.writeUInt32LE(0, i * 4) })
    img.patchBucket(many.phys(0), (b) => { b[2] = 0 })
  }},
  {name: 'dir-bucket-crc', desc: 'a directory bucket with a bad checksum', damage: (img) => img.patchBlock(img.locate('/many').phys(0), (b) => { b[BLOCK_SIZE - 1] ^= 0x80 })},
  {name: 'dir-bucket-corrupt', desc: 'a directory bucket whose used bytes exceed the block (checksum valid)', damage: (img) => img.patchBucket(img.locate('/many').phys(0), (b) => b.writeUInt16LE(5000, 6))},
  {name: 'dir-bucket-magic', desc: 'a directory bucket with a bad magic (checksum valid)', damage: (img) => img.patchBucket(img.locate('/many').phys(1), (b) => b.writeUInt16LE(0xbad0, 0))},
  {name: 'dir-hash-misplaced', desc: 'an entry moved to a bucket its hash does not lead to', damage: (img) => {
    const many = img.locate('/many')
    const p0 = many.phys(0)
    const p1 = many.phys(1)
    const b0 = img.block(p0)
    const b1 = img.block(p1)
    const len = 14 + b0[BUCKET_HDR + 13]
    const entry = Buffer.from(b0.subarray(BUCKET_HDR, BUCKET_HDR + len))
    const used0 = b0.readUInt16LE(6)
    b0.copy(b0, BUCKET_HDR, BUCKET_HDR + len, BUCKET_HDR + used0)
    b0.fill(0, BUCKET_HDR + used0 - len, BUCKET_HDR + used0)
    b0.writeUInt16LE(b0.readUInt16LE(4) - 1, 4)
    b0.writeUInt16LE(used0 - len, 6)
    const used1 = b1.readUInt16LE(6)
    entry.copy(b1, BUCKET_HDR + used1)
    b1.writeUInt16LE(b1.readUInt16LE(4) + 1, 4)
    b1.writeUInt16LE(used1 + len, 6)
    img.patchBucket(p0, (b) => b0.copy(b))
    img.patchBucket(p1, (b) => b1.copy(b))
  }},
  {name: 'dir-count', desc: 'a directory entry count that is wrong', damage: (img) => img.patchInode(img.locate('/many').ino, (b) => b.writeBigUInt64LE(17n, 0x18))},
  {name: 'dirent-bad-hash', desc: 'an entry whose stored hash is wrong', damage: (img) => img.patchBucket(img.locate('/many').phys(0), (b) => b.writeUInt32LE((b.readUInt32LE(BUCKET_HDR + 8) ^ 0x5a5a5a5b) >>> 0, BUCKET_HDR + 8))},
  {name: 'dirent-type-mismatch', desc: 'an entry typed as a symlink for a regular file', damage: (img) => img.patchBucket(img.locate('/many').phys(0), (b) => { b[BUCKET_HDR + 12] = DT_LNK })},
  {name: 'dirent-bad-inode', desc: 'an entry naming an inode past the inode table', damage: (img) => img.patchInode(img.locate('/deep/a/b/c/d').ino, (b) => b.writeUInt32LE(img.sb().inodeCount + 5, INLINE_DIRENT.ino))},
  {name: 'dirent-dangling', desc: 'an entry naming a free inode', damage: (img) => img.patchInode(img.locate('/deep/a/b/c/d/leaf').ino, (b) => b.fill(0), false)},
  {name: 'dirent-dup-name', desc: 'two entries with one name in an inline directory', damage: (img) => {
    img.patchInode(img.locate('/docs').ino, (b) => rewriteInline(b, (es) => {
      // The second entry takes the first one's name and hash, keeping its own inode and type.
      es[1] = {...es[1], hash: es[0].hash, name: es[0].name}
      return es
    }))
  }},
  {name: 'dirent-name-slash', desc: "an entry name containing '/'", damage: (img) => img.patchInode(img.locate('/docs').ino, (b) => { b[INLINE_DIRENT.name + b[INLINE_DIRENT.nameLen] - 1] = 0x2f })},
  {name: 'dirent-name-nul', desc: 'an entry name containing NUL', damage: (img) => img.patchInode(img.locate('/deep').ino, (b) => { b[INLINE_DIRENT.name] = 0 })},
  {name: 'dirent-name-dotdot', desc: "an entry named '..' pointing at a file", damage: (img) => renameFirstEntry(img, '/deep/a/b/c/d', '..')},
  {name: 'dirent-name-dot', desc: "an entry named '.'", damage: (img) => renameFirstEntry(img, '/deep/a/b/c/d', '.')},
  {name: 'dirent-name-taken', desc: "an entry name containing '/' whose repaired name ('/' as '.') is taken", damage: (img) => {
    withImage(img.path, {write: true}, (vol) => { namespace(vol, 'root').writeFile('/deep/a/b/c/d/x.', Buffer.from('already named x.\n')) })
    renameFirstEntry(img, '/deep/a/b/c/d', 'x/')
  }},
  {name: 'dir-loop', desc: 'a directory entry naming the root (an ancestor)', damage: (img) => {
    const root = img.locate('/')
    img.patchInode(img.locate('/deep/a/b/c').ino, (b) => b.writeUInt32LE(root.ino, INLINE_DIRENT.ino))
  }},
  {name: 'dir-multiple-parents', desc: 'a directory named by two parents', damage: (img) => {
    const sub1 = img.locate('/many/sub1')
    img.patchInode(img.locate('/deep').ino, (b) => b.writeUInt32LE(sub1.ino, INLINE_DIRENT.ino))
  }},

  // ---- lost+found (FORMAT.md §13): what a damaged directory named is reconnected, never freed
  {name: 'lostfound-docs', desc: 'an inline directory zeroed: a file with another name, shared files, a symlink', damage: (img) => {
    img.patchInode(img.locate('/docs').ino, (b) => b.fill(0, area, 0xfc))
  }},
  {name: 'lostfound-root-dir', desc: "the bucket of a fileset's root directory zeroed: its files and trees", damage: (img) => {
    const root = img.locate('/')
    if (root.extents.length === 0) throw new Error('expected a hashed root directory')
    img.patchBlock(root.phys(0), (b) => b.fill(0))
  }},
  {name: 'lostfound-clone', desc: "a clone's directory zeroed: files it shares with its parent go back to the clone only", damage: (img) => {
    img.patchInode(img.locate('/docs', 'snap').ino, (b) => b.fill(0, area, 0xfc))
  }},
  {name: 'lostfound-not-dir', desc: 'lost+found exists as a regular file when a directory is damaged', damage: (img) => {
    withImage(img.path, {write: true}, (vol) => { namespace(vol, 'root').writeFile('/lost+found', Buffer.from('a file named lost+found\n')) })
    img.patchInode(img.locate('/deep/a/b/c').ino, (b) => b.fill(0, area, 0xfc))
  }},
  {name: 'lostfound-no-inode', desc: 'no free inode for lost+found: the names go in the root directory', base: 'small', damage: (img) => {
    withImage(img.path, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      ns.mkdir('/d')
      ns.writeFile('/d/kept', Buffer.from('reconnected in the root\n'))
      ns.symlink('kept', '/d/link')
      ns.mkdir('/fill')
      for (let i = 0; vol.sb.freeInodes > 0; i++) {
        ns.writeFile(`/fill/f${i}`, Buffer.from('x'))
        vol.maybeCommit()
      }
    })
    img.patchInode(img.locate('/d').ino, (b) => b.fill(0, area, 0xfc))
  }},
  {name: 'unattached-empty-file', desc: 'an in-use zero-length file no directory names (cleared, as e2fsck does)', damage: (img) => {
    const r = emptyInode()
    r.mode = S_IFREG | 0o644
    r.nlink = 1
    r.share = 1
    r.flags = IF_INLINE
    r.generation = 98
    const b = Buffer.alloc(INODE_SIZE)
    encodeInode(r, b, 0)
    img.write(img.inodePos(img.freeInode()), b)
  }},

  // ---- orphans
  {name: 'orphan-linked-and-flag', desc: 'a named file on the orphan list, another flagged as orphan', damage: (img) => {
    const a = img.locate('/docs/readme.txt')
    const b = img.locate('/deep/a/b/c/d/leaf')
    img.patchSb((sb) => { sb.orphanHead = a.ino })
    img.patchInode(a.ino, (x) => x.writeUInt16LE(x.readUInt16LE(2) | IF_ORPHAN, 2))
    img.patchInode(b.ino, (x) => x.writeUInt16LE(x.readUInt16LE(2) | IF_ORPHAN, 2))
  }},
  {name: 'orphan-lost-from-list', desc: 'an unlinked file whose place on the orphan list was lost', damage: (img) => {
    const vol = Volume.open(img.path, {write: true, noOrphans: true})
    const ns = namespace(vol, 'root')
    const f = ns.resolve('/frag')
    dirRemove(vol, ns.root(), Buffer.from('frag'))
    f.r.nlink = 0
    vol.addOrphan(f)
    vol.close()
    img.patchSb((sb) => { sb.orphanHead = 0 })
  }},
  {name: 'orphan-list-loop', desc: 'an orphan list that loops on itself', damage: (img) => {
    const vol = Volume.open(img.path, {write: true, noOrphans: true})
    const ns = namespace(vol, 'root')
    const f = ns.resolve('/frag')
    dirRemove(vol, ns.root(), Buffer.from('frag'))
    f.r.nlink = 0
    vol.addOrphan(f)
    vol.close()
    const {orphanHead} = img.sb()
    img.patchInode(orphanHead, (b) => b.writeUInt32LE(orphanHead, 0x54))
  }},

  // ---- fileset table
  {name: 'fileset-crc', desc: 'a fileset record with a bad checksum', damage: (img) => img.patchFileset(0, (b) => { b[0xfc] ^= 0xff }, false)},
  {name: 'fileset-garbage', desc: 'a fileset record overwritten with garbage', damage: (img) => img.patchFileset(1, (b) => b.fill(0xa5), false)},
  {name: 'fileset-bad-name', desc: 'a fileset named with a slash', damage: (img) => img.patchFileset(1, (b) => { b[0x30 + 1] = 0x2f })},
  {name: 'fileset-bad-name-len', desc: 'a fileset name of length 0', damage: (img) => img.patchFileset(1, (b) => { b[0x0e] = 0 })},
  {name: 'fileset-bad-state', desc: 'a fileset in state 9', damage: (img) => img.patchFileset(1, (b) => { b[0x0c] = 9 })},
  {name: 'fileset-bad-root', desc: "a fileset whose root directory inode is free", damage: (img) => img.patchInode(img.locate('/', 'snap').ino, (b) => b.fill(0), false)},
  {name: 'fileset-root-is-file', desc: 'a fileset whose root is a regular file', damage: (img) => {
    const f = img.locate('/big').ino
    img.patchFileset(1, (b) => b.writeUInt32LE(f, 0x04))
  }},
  {name: 'fileset-dup-name', desc: 'two filesets with one name', damage: (img) => img.patchFileset(1, (b) => {
    b.fill(0, 0x30, 0xb0)
    b.write('root', 0x30, 'latin1')
    b[0x0e] = 4
  })},
  {name: 'fileset-dup-id', desc: 'two filesets with one id', damage: (img) => img.patchFileset(1, (b) => b.writeUInt32LE(1, 0))},
  {name: 'fileset-bad-parent', desc: 'a fileset whose parent id names no fileset', damage: (img) => img.patchFileset(1, (b) => b.writeUInt32LE(99, 0x08))},
  {name: 'fileset-slot-dirty', desc: 'a free fileset slot holding a stray byte', damage: (img) => img.patchFileset(5, (b) => { b[0x40] = 1 }, false)},

  // ---- clones still expanding (FORMAT.md §5.7, §8.3, §8.5) and scan results (§12)
  {name: 'clone-bad-source', base: 'expanding', desc: 'an expanding clone whose source fileset does not exist', damage: (img) => img.patchFileset(filesetSlot(img, 'lazy'), (b) => b.writeUInt32LE(77, 0x20))},
  {name: 'clone-source-lost', base: 'expanding', desc: 'the record of the source of two lazy clones overwritten with garbage (its tree whole)', damage: (img) => img.patchFileset(filesetSlot(img, 'root'), (b) => b.fill(0xa5), false)},
  {name: 'clone-source-root-bad', base: 'expanding', desc: 'the source of two lazy clones naming a regular file as its root', damage: (img) => {
    const f = img.locate('/top').ino
    img.patchFileset(filesetSlot(img, 'root'), (b) => b.writeUInt32LE(f, 0x04))
  }},
  {name: 'clone-root-is-source-root', base: 'expanding', desc: "a lazy clone naming its source's root as its own", damage: (img) => {
    const root = img.read(img.filesetPos(filesetSlot(img, 'root')) + 0x04, 4).readUInt32LE(0)
    img.patchFileset(filesetSlot(img, 'lazy'), (b) => b.writeUInt32LE(root, 0x04))
  }},
  {name: 'clone-bad-mode', base: 'expanding', desc: 'an expanding clone whose clone mode is sync', damage: (img) => img.patchFileset(filesetSlot(img, 'plain'), (b) => { b[0x0d] = 1 })},
  {name: 'clone-state-stale', base: 'expanding', desc: 'an ordinary fileset naming a source fileset and a state inode', damage: (img) => {
    const st = img.read(img.filesetPos(filesetSlot(img, 'lazy')) + 0x1c, 4).readUInt32LE(0)
    img.patchFileset(filesetSlot(img, 'snap'), (b) => { b.writeUInt32LE(1, 0x20); b.writeUInt32LE(st, 0x1c) })
  }},
  {name: 'clone-state-bad-magic', base: 'expanding', desc: "a clone-state file whose magic is destroyed", damage: (img) => {
    const ino = img.read(img.filesetPos(filesetSlot(img, 'lazy')) + 0x1c, 4).readUInt32LE(0)
    if (!ino) throw new Error('no clone-state file')
    patchData(img, ino, (b) => b.writeUInt32LE(0x12345678, 0))
  }},
  {name: 'clone-state-not-file', base: 'expanding', desc: 'a clone-state inode number naming a directory', damage: (img) => {
    const docs = img.locate('/docs').ino
    img.patchFileset(filesetSlot(img, 'plain'), (b) => b.writeUInt32LE(docs, 0x1c))
  }},
  {name: 'clonestart-missing', base: 'expanding', desc: 'a source with clones in flight whose clonestart is 0', damage: (img) => img.patchFileset(0, (b) => b.writeUInt32LE(0, 0x18))},
  {name: 'unexpanded-src-not-dir', base: 'expanding', desc: 'an UNEXPANDED directory whose src_ino names a regular file', damage: (img) => {
    const deep = img.locate('/deep').ino
    const top = img.locate('/top').ino
    img.patchInode(unexpandedWithSource(img, deep), (b) => b.writeUInt32LE(top, 0x4c))
  }},
  {name: 'unexpanded-bad-fileset', base: 'expanding', desc: 'an UNEXPANDED directory whose src_fileset does not exist', damage: (img) => {
    img.patchInode(unexpandedWithSource(img, img.locate('/docs').ino), (b) => b.writeUInt32LE(55, 0x50))
  }},
  {name: 'lastclone-ahead', base: 'expanding', desc: 'a directory entry whose lastclone is ahead of the clone clock', damage: (img) => {
    img.patchInode(img.locate('/deep/a').ino, (b) => b.writeUInt32LE(1000, INLINE_DIRENT.lastclone))
  }},
  {name: 'sb-incompat-expanding-clear', base: 'expanding', desc: 'clones in flight but the superblock lacks the expanding-clones feature bit', damage: (img) => img.patchSb((sb) => { sb.incompat &= ~INCOMPAT_EXPANDING })},
  {name: 'sb-incompat-expanding-set', desc: 'the expanding-clones feature bit set with no clone in flight', damage: (img) => img.patchSb((sb) => { sb.incompat |= INCOMPAT_EXPANDING })},
  // ---- the fileset table file (FORMAT.md §8.7)
  {name: 'fileset-table-bad-size', base: 'grown', desc: 'the fileset table file has a size that is not a whole number of blocks', damage: (img) => {
    img.patchInode(img.sb().filesetExtIno, (b) => b.writeBigUInt64LE(b.readBigUInt64LE(0x18) + 100n, 0x18))
  }},
  {name: 'fileset-table-free-inode', base: 'grown', desc: 'fileset_ext_ino names a free inode', damage: (img) => {
    const ino = img.freeInode()
    img.patchSb((sb) => { sb.filesetExtIno = ino })
  }},
  {name: 'fileset-table-named', base: 'grown', desc: 'a directory entry names the fileset table file', damage: (img) => {
    const ext = img.sb().filesetExtIno
    img.patchInode(img.locate('/d').ino, (b) => b.writeUInt32LE(ext, INLINE_DIRENT.ino))
  }},
  {name: 'scan-results-bad', base: 'expanding', desc: 'the scan results file with garbage in its data', damage: (img) => {
    patchData(img, img.sb().scanIno, (b) => b.write('garbage!', 0x20, 'latin1'))
  }},
  {name: 'scan-results-free-inode', base: 'expanding', desc: 'scan_ino naming a free inode', damage: (img) => {
    const ino = img.freeInode()
    img.patchSb((sb) => { sb.scanIno = ino })
  }},

  // ---- several at once
  {name: 'many-at-once', desc: 'a dozen kinds of damage in one image', damage: (img) => {
    img.setRefcount(img.freeBlock(), 1)
    img.patchInode(img.locate('/docs/readme.txt').ino, (b) => b.writeUInt32LE(5, 0x04))
    img.patchBucket(img.locate('/many').phys(0), (b) => { b[BUCKET_HDR + 12] = DT_LNK })
    img.patchInode(img.locate('/big').ino, (b) => b.writeBigUInt64LE(7n, 0x20))
    img.patchSb((sb) => { sb.freeInodes += 3 })
    img.patchFileset(0, (b) => { b[0xfc] ^= 0xff }, false)
    img.write((img.blocks - 1) * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0xee))
  }},
]

/** The table slot of a fileset, by name. */
function filesetSlot(img: RawImage, name: string): number {
  for (let slot = 0; slot < img.sb().filesetSlots; slot++) {
    const b = img.read(img.filesetPos(slot), 0xb0)
    if (b.readUInt32LE(0) !== 0 && b.toString('latin1', 0x30, 0x30 + b[0x0e]) === name) return slot
  }
  throw new Error(`no fileset ${name}`)
}

/** Changes the first bytes of a regular file's data: its inline area or its first block. */
function patchData(img: RawImage, ino: number, change: (b: Buffer) => void): void {
  const b = img.inode(ino)
  if (b.readUInt16LE(2) & IF_INLINE) {
    img.patchInode(ino, (x) => {
      const data = x.subarray(area, 0xfc)
      change(data)
    })
    return
  }
  if (b.readUInt16LE(area + 6) !== 0) throw new Error(`inode ${ino} has an extent tree`)
  img.patchBlock(Number(b.readBigUInt64LE(rootEntry(0) + 8)), change)
}

/** The UNEXPANDED directory whose src_ino is `srcIno`. */
function unexpandedWithSource(img: RawImage, srcIno: number): number {
  for (let ino = 1; ino <= img.sb().inodeCount; ino++) {
    const b = img.inode(ino)
    if (b.readUInt16LE(0) !== 0 && (b.readUInt16LE(2) & IF_UNEXPANDED) && b.readUInt32LE(0x4c) === srcIno) return ino
  }
  throw new Error(`no UNEXPANDED directory stands for inode ${srcIno}`)
}

interface RawEntry {
  ino: number
  lastclone: number
  hash: number
  type: number
  name: Buffer
}

/** Decodes an inode's inline directory area, lets `change` edit the entries, and packs them back. */
function rewriteInline(b: Buffer, change: (es: RawEntry[]) => RawEntry[]): void {
  const es: RawEntry[] = entryOffsets(b, area, 0xfc).map((o) => ({
    ino: b.readUInt32LE(o), lastclone: b.readUInt32LE(o + 4), hash: b.readUInt32LE(o + 8), type: b[o + 12],
    name: Buffer.from(b.subarray(o + 14, o + 14 + b[o + 13])),
  }))
  const out = change(es)
  b.fill(0, area, 0xfc)
  let o = area
  for (const e of out) {
    if (o + 14 + e.name.length > 0xfc) throw new Error('inline area overflow')
    b.writeUInt32LE(e.ino, o)
    b.writeUInt32LE(e.lastclone, o + 4)
    b.writeUInt32LE(e.hash, o + 8)
    b[o + 12] = e.type
    b[o + 13] = e.name.length
    e.name.copy(b, o + 14)
    o += 14 + e.name.length
  }
}

/** Renames the first inline entry of a directory in place (same length or shorter), with a valid hash. */
function renameFirstEntry(img: RawImage, dir: string, name: string): void {
  img.patchInode(img.locate(dir).ino, (b) => {
    const seed = b.readUInt32LE(0x60)
    rewriteInline(b, (es) => {
      const nb = Buffer.from(name, 'latin1')
      es[0] = {...es[0], name: nb, hash: nameHash(nb, seed)}
      return es
    })
  })
}

/** Problem codes allowed to have no fixture (none: every code must be covered). */
export const DEFERRED = new Set<string>()

export {FIXTURES, BASES}

// ---------------------------------------------------------------- running

function runFsck(dir: string): {text: string, status: number} {
  const r = spawnSync(process.execPath, [BIN, 'fsck', '--repair', '--image', IMAGE], {cwd: dir, env: {...process.env, PRISM_IMAGE: ''}})
  const status = r.status ?? -1
  return {text: `${r.stdout.toString()}${r.stderr.toString()}Exit status is ${status}\n`, status}
}

function cli(dir: string, args: string[]): {stdout: string, stderr: string, status: number} {
  const r = spawnSync(process.execPath, [BIN, ...args, '--image', IMAGE], {cwd: dir, env: {...process.env, PRISM_IMAGE: ''}})
  return {stdout: r.stdout.toString(), stderr: r.stderr.toString(), status: r.status ?? -1}
}

/** `prism ls -R` of every fileset, as the fixture test runs it. */
export function listing(dir: string, run = cli): string {
  const fl = run(dir, ['fileset', 'list', '--json', '--no-space'])
  if (fl.status !== 0) throw new Error(`fileset list failed: ${fl.stderr}`)
  const names = (JSON.parse(fl.stdout) as Array<{name: string}>).map((f) => `${f.name}:/`)
  const ls = run(dir, ['ls', '-R', ...names])
  if (ls.status !== 0) throw new Error(`ls failed: ${ls.stderr}`)
  return `${names.join(' ')}\n${ls.stdout}`
}

function main(): void {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'commands', 'fsck.js'))) throw new Error('build first: npm run build')
  const args = process.argv.slice(2)
  const keep = args.includes('--keep-images')
  const only = new Set(args.filter((a) => a !== '--keep-images'))
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-fixtures-'))
  const bases = new Map<string, string>()
  const covered = new Set<string>()
  const failures: string[] = []
  try {
    for (const f of FIXTURES) {
      if (only.size > 0 && !only.has(f.name)) continue
      const baseName = f.base ?? 'standard'
      const dir = path.join(OUT, f.name)
      const stored = path.join(dir, 'image.gz')
      const reuse = keep && fs.existsSync(stored)
      if (!reuse && !bases.has(baseName)) {
        const p = path.join(tmp, `base-${baseName}.img`)
        BASES[baseName](p)
        bases.set(baseName, p)
      }
      const work = path.join(tmp, f.name)
      fs.mkdirSync(work)
      const img = path.join(work, IMAGE)
      if (reuse) {
        fs.writeFileSync(img, zlib.gunzipSync(fs.readFileSync(stored)))
        for (const e of ['expect.1', 'expect.2', 'expect.ls']) fs.rmSync(path.join(dir, e), {force: true})
      } else {
        fs.copyFileSync(bases.get(baseName)!, img)
        f.damage(new RawImage(img))
        fs.rmSync(dir, {recursive: true, force: true})
        fs.mkdirSync(dir, {recursive: true})
        fs.writeFileSync(stored, zlib.gzipSync(fs.readFileSync(img), {level: 9}))
      }
      fs.writeFileSync(path.join(dir, 'name'), `${f.desc}\n`)
      const r1 = runFsck(work)
      const r2 = runFsck(work)
      fs.writeFileSync(path.join(dir, 'expect.1'), r1.text)
      fs.writeFileSync(path.join(dir, 'expect.2'), r2.text)
      if (r2.status === 0) fs.writeFileSync(path.join(dir, 'expect.ls'), listing(work))
      for (const m of r1.text.matchAll(/^([A-Z][A-Z0-9_]+) /gm)) if (m[1] in PROBLEMS) covered.add(m[1])
      if (/internal error|ModuleLoadError|MODULE_NOT_FOUND/.test(r1.text + r2.text)) throw new Error(`${f.name}: the CLI failed:\n${r1.text}${r2.text}`)
      const firstOk = r1.status === 1 || r1.status === 4 || (r1.status === 0 && f.mayBeClean)
      const secondOk = r2.status === 0 || (r1.status === 4 && r2.status === 4)
      const line = `${f.name.padEnd(32)} first ${r1.status}, second ${r2.status}`
      if (!firstOk || !secondOk) failures.push(line)
      console.log(`${firstOk && secondOk ? '  ' : '! '}${line}`)
    }
  } finally {
    fs.rmSync(tmp, {recursive: true, force: true})
  }
  const all = Object.keys(PROBLEMS)
  console.log(`\n${covered.size} of ${all.length} problem codes covered`)
  const missing = all.filter((c) => !covered.has(c) && !DEFERRED.has(c))
  if (missing.length > 0 && only.size === 0) console.log(`not covered: ${missing.join(' ')}`)
  if (failures.length > 0) {
    console.error(`\n${failures.length} fixture(s) do not behave:\n${failures.join('\n')}`)
    process.exitCode = 1
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main()
