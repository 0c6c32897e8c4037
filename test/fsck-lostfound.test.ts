// fsck --repair never destroys what it cannot reach: damaged directory blocks (inline
// directories in the inode area, buckets and pointer blocks of hashed directories, the
// parent of a whole subtree, a fileset's root, deep directories, in a clone that shares
// its files with its parent, with hard links) lose names, never data. Every file that held
// data before the damage must afterwards be reachable (in its place or in /lost+found of
// the fileset that lost it) with the same inode, generation and content, and a second
// fsck must find nothing. Bad names are renamed, never kept or dropped. A property test
// (fast-check) damages random directory blocks of random trees and checks the same.
import {expect} from 'chai'
import fc from 'fast-check'
import {createHash} from 'node:crypto'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {MemDevice, SimulatedCrash, mulberry32} from '../src/device/mem.js'
import {BLOCK_SIZE, DIR_PTR_BASE, IF_INLINE, IF_NOCLONE} from '../src/format/constants.js'
import {nameHash} from '../src/format/checksum.js'
import {BUCKET_HDR} from '../src/format/dirent.js'
import {dirList} from '../src/fs/dir.js'
import {loadExtents, readData} from '../src/fs/extents.js'
import {listFilesets} from '../src/fs/filesets.js'
import {mkfs, namespace, withImage} from '../src/fs/image.js'
import {Namespace} from '../src/fs/namespace.js'
import type {Volume} from '../src/fs/volume.js'
import {clone} from '../src/clone/clone.js'
import {fsckDevice, fsckImage, type FsckResult} from '../src/fsck/index.js'
import {RawImage, entryOffsets} from './damage.js'
import {BIN} from './helpers.js'

// ---------------------------------------------------------------- what an image holds

/** A file or symlink as one fileset shows it. */
interface Held {
  sha: string
  paths: string[]
}

/** Per fileset, every file and symlink it reaches, by inode and generation ("ino:gen"). */
type Inventory = Map<string, Map<string, Held>>

function inventory(img: string, skip: string[] = []): Inventory {
  return withImage(img, {write: false}, (vol) => {
    const out: Inventory = new Map()
    for (const f of listFilesets(vol)) {
      if (skip.includes(f.name)) continue
      const ns = new Namespace(vol, f)
      const held = new Map<string, Held>()
      const walk = (dirIno: number, at: string) => {
        const dir = vol.iget(dirIno)
        for (const e of dirList(vol, dir)) {
          const p = `${at === '/' ? '' : at}/${e.name.toString('latin1')}`
          const inode = vol.iget(e.ino)
          if (inode.isDir) { walk(e.ino, p); continue }
          const id = `${e.ino}:${inode.r.generation}`
          const data = readData(vol, inode, 0, inode.r.size)
          const sha = `${inode.isLnk ? 'link' : 'file'}:${createHash('sha256').update(data).digest('hex').slice(0, 16)}`
          const h = held.get(id)
          if (h) h.paths.push(p)
          else held.set(id, {sha, paths: [p]})
        }
      }
      walk(ns.root().ino, '/')
      out.set(f.name, held)
    }
    return out
  })
}

/** Ids of files that hold data (zero-length files may be cleared, as e2fsck clears them). */
function withData(h: Map<string, Held>): string[] {
  return [...h.entries()].filter(([, v]) => !v.sha.endsWith(EMPTY_SHA)).map(([k]) => k)
}
const EMPTY_SHA = createHash('sha256').update(Buffer.alloc(0)).digest('hex').slice(0, 16)

/**
 * Nothing lost: every file that held data is reachable after with the same content: in
 * each fileset that held it when `perFileset`, else in some fileset.
 */
function expectNothingLost(before: Inventory, after: Inventory, perFileset: boolean): void {
  const anywhere = new Map<string, string>()
  for (const h of after.values()) for (const [id, v] of h) anywhere.set(id, v.sha)
  const missing: string[] = []
  for (const [fsName, h] of before) {
    for (const id of withData(h)) {
      const want = h.get(id)!
      const got = perFileset ? after.get(fsName)?.get(id)?.sha : anywhere.get(id)
      if (got !== want.sha) missing.push(`${fsName}:${want.paths[0]} (inode ${id}) ${got === undefined ? 'is gone' : 'has other content'}`)
    }
  }
  expect(missing, 'files lost by the repair').to.deep.equal([])
}

function show(r: FsckResult): string {
  return [...r.notes, ...r.problems.map((p) => `${p.code} ${p.where}: ${p.message}${p.fixed ? ' [fixed]' : ''}`)].join('\n')
}

function sha(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex')
}

/**
 * fsck without repair reports and changes nothing (exit 4), --repair fixes (exit 1), a
 * second run finds nothing; then nothing the image held before is lost.
 */
function repairAndCheck(img: string, before: Inventory, perFileset = true, skip: string[] = []): {check: FsckResult, repair: FsckResult, after: Inventory} {
  const bytes = sha(img)
  const check = fsckImage(img, {repair: false})
  expect(sha(img), 'fsck without --repair changed the image').to.equal(bytes)
  expect(check.exitCode, show(check)).to.equal(4)
  const repair = fsckImage(img, {repair: true})
  expect(repair.exitCode, show(repair)).to.equal(1)
  // The check run announces exactly what the repair does.
  expect(check.problems.map((p) => `${p.code} ${p.where}: ${p.message}`)).to.deep.equal(repair.problems.map((p) => `${p.code} ${p.where}: ${p.message}`))
  const again = fsckImage(img, {repair: true})
  expect(again.problems, show(again)).to.deep.equal([])
  expect(again.exitCode).to.equal(0)
  const after = inventory(img, skip)
  expectNothingLost(before, after, perFileset)
  return {check, repair, after}
}

// ---------------------------------------------------------------- the tree

const BIG = Buffer.from(Array.from({length: 3 * BLOCK_SIZE + 123}, (_, i) => (i * 13 + 7) & 0xff))

/**
 * root: an inline directory, a hashed one (with a pointer table), a deep chain, hard links
 * within one directory and across two, symlinks, empty and multi-block files; `snap`, a
 * sync clone sharing every file; then each side changes a little (a copy-on-write, new
 * files), so that some inodes are shared (share 2) and some are not.
 */
function buildTree(p: string): void {
  const vol = mkfs(p, {size: 16 * 1024 * 1024, inodeCount: 2048})
  const ns = namespace(vol, 'root')
  ns.mkdir('/inline')
  ns.writeFile('/inline/a', Buffer.from('alpha\n'))
  ns.symlink('a', '/inline/s')
  ns.writeFile('/inline/empty', Buffer.alloc(0))
  ns.mkdir('/hashed')
  for (let i = 0; i < 400; i++) ns.writeFile(`/hashed/f${i}`, Buffer.from(`file ${i}\n`.repeat(1 + (i % 3))))
  ns.mkdir('/hashed/sub')
  ns.writeFile('/hashed/sub/x', Buffer.from('x in sub\n'))
  ns.mkdir('/hashed/emptydir')
  ns.mkdir('/deep/a/b/c/d', {parents: true})
  ns.writeFile('/deep/a/b/c/d/leaf', Buffer.from('leaf\n'))
  ns.writeFile('/deep/a/mid', BIG)
  ns.mkdir('/links')
  ns.writeFile('/links/h1', Buffer.from('linked across directories\n'))
  ns.link('/links/h1', '/hashed/h2')
  ns.writeFile('/links/h3', Buffer.from('linked within one directory\n'))
  ns.link('/links/h3', '/links/h4')
  ns.writeFile('/big', BIG)
  ns.writeFile('/small', Buffer.from('small\n'))
  vol.commit()
  clone(vol, {fileset: 'root', path: '/'}, {fileset: 'snap'})
  ns.writeFile('/after-root', Buffer.from('made in root after the clone\n'))
  const sn = namespace(vol, 'snap')
  sn.writeFile('/after-snap', Buffer.from('made in snap after the clone\n'))
  sn.writeFile('/inline/a', Buffer.from('alpha, changed in snap\n'))
  sn.writeFile('/hashed/f7', Buffer.from('f7, changed in snap\n'))
  vol.close()
}

interface DirInfo {
  ino: number
  inline: boolean
  /** physical blocks of the buckets, then of the pointer table */
  buckets: number[]
  ptrs: number[]
}

function dirInfo(img: string, p: string, fileset = 'root'): DirInfo {
  return withImage(img, {write: false}, (vol) => dirInfoOf(vol, namespace(vol, fileset).resolve(p).ino))
}

function dirInfoOf(vol: Volume, ino: number): DirInfo {
  const d = vol.iget(ino)
  if (d.r.flags & IF_INLINE) return {ino, inline: true, buckets: [], ptrs: []}
  const buckets: number[] = []
  const ptrs: number[] = []
  for (const e of loadExtents(vol, d)) {
    for (let k = 0; k < e.n; k++) (e.l + k >= DIR_PTR_BASE ? ptrs : buckets).push(e.p + k)
  }
  return {ino, inline: false, buckets, ptrs}
}

const INO = (img: string, p: string, fileset = 'root') => withImage(img, {write: false}, (vol) => namespace(vol, fileset).resolve(p, false).ino)

// ---------------------------------------------------------------- damage

type Kind = 'inline-zero' | 'inline-garbage' | 'inline-nocrc' | 'bucket-zero' | 'bucket-garbage' | 'bucket-entries' | 'ptr-garbage' | 'all-blocks'

/** Damages the blocks that hold a directory's entries (its inode area, or its buckets). */
function damageDir(raw: RawImage, d: DirInfo, kind: Kind, rnd: () => number): void {
  const noise = (b: Buffer, from: number, to: number) => { for (let i = from; i < to; i++) b[i] = Math.floor(rnd() * 256) }
  const pick = (l: number[]) => l[Math.floor(rnd() * l.length)]
  switch (kind) {
    case 'inline-zero': return raw.patchInode(d.ino, (b) => b.fill(0, 0x70, 0xfc))
    case 'inline-garbage': return raw.patchInode(d.ino, (b) => noise(b, 0x70, 0xfc))
    case 'inline-nocrc': return raw.patchInode(d.ino, (b) => noise(b, 0x70, 0xfc), false)
    case 'bucket-zero': return raw.patchBlock(pick(d.buckets), (b) => b.fill(0))
    case 'bucket-garbage': return raw.patchBlock(pick(d.buckets), (b) => noise(b, 0, BLOCK_SIZE))
    case 'bucket-entries': return raw.patchBucket(pick(d.buckets), (b) => noise(b, BUCKET_HDR, BUCKET_HDR + b.readUInt16LE(6)))
    case 'ptr-garbage': return raw.patchBlock(pick(d.ptrs), (b) => noise(b, 0, BLOCK_SIZE))
    case 'all-blocks': for (const p of [...d.buckets, ...d.ptrs]) raw.patchBlock(p, (b) => noise(b, 0, BLOCK_SIZE))
  }
}

function kindsFor(d: DirInfo): Kind[] {
  if (d.inline) return ['inline-zero', 'inline-garbage', 'inline-nocrc']
  return d.ptrs.length > 0 ? ['bucket-zero', 'bucket-garbage', 'bucket-entries', 'ptr-garbage', 'all-blocks'] : ['bucket-zero', 'bucket-garbage', 'bucket-entries', 'all-blocks']
}

// ---------------------------------------------------------------- tests

describe('fsck --repair reconnects what it cannot reach (lost+found)', function () {
  this.timeout(300_000)
  let tmp: string
  let template: string
  let img: string
  let raw: RawImage
  let clean: Inventory

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-lostfound-'))
    template = path.join(tmp, 'template.img')
    buildTree(template)
    img = path.join(tmp, 'disk.img')
    raw = new RawImage(img)
    clean = inventory(template)
    const r = fsckImage(template, {repair: false})
    expect(r.exitCode, show(r)).to.equal(0)
  })
  beforeEach(() => fs.copyFileSync(template, img))
  after(() => fs.rmSync(tmp, {recursive: true, force: true}))

  const lf = (inv: Inventory, fsName: string) => [...inv.get(fsName)!.values()].flatMap((h) => h.paths).filter((p) => p.startsWith('/lost+found/')).sort()

  describe('every kind of directory block, at every depth', () => {
    for (const kind of ['inline-zero', 'inline-garbage', 'inline-nocrc'] as Kind[]) {
      it(`an inline directory in the inode area (${kind})`, () => {
        damageDir(raw, dirInfo(img, '/inline'), kind, mulberry32(1))
        const {after} = repairAndCheck(img, clean)
        // root's own copy of a, the symlink: back in root's lost+found, nowhere else.
        expect(lf(after, 'root').length, lf(after, 'root').join(' ')).to.be.greaterThan(0)
        expect(lf(after, 'snap')).to.deep.equal([])
      })
    }

    for (const kind of ['bucket-zero', 'bucket-garbage', 'bucket-entries', 'all-blocks'] as Kind[]) {
      it(`the buckets of a hashed directory (${kind})`, () => {
        const d = dirInfo(img, '/hashed')
        expect(d.ptrs.length, 'the test directory should have a pointer table').to.be.greaterThan(0)
        damageDir(raw, d, kind, mulberry32(2))
        const {after} = repairAndCheck(img, clean)
        // The files are shared with snap: root lost its names, snap did not.
        expect(lf(after, 'root').length).to.be.greaterThan(0)
        expect(lf(after, 'snap')).to.deep.equal([])
      })
    }

    it('the pointer table of a hashed directory (every entry is still found)', () => {
      damageDir(raw, dirInfo(img, '/hashed'), 'ptr-garbage', mulberry32(3))
      const {after} = repairAndCheck(img, clean)
      expect(after).to.deep.equal(clean)
    })

    it('the parent of a whole subtree: the top of the subtree is reconnected, with everything under it', () => {
      const a = INO(img, '/deep/a')
      damageDir(raw, dirInfo(img, '/deep'), 'inline-zero', mulberry32(4))
      const {repair, after} = repairAndCheck(img, clean)
      const reconnected = repair.problems.filter((p) => p.code === 'INODE_UNREACHABLE')
      // One reconnection: the top of the tree (e2fsck's rule), not every inode inside it.
      expect(reconnected.map((p) => p.where), show(repair)).to.deep.equal([`inode ${a}`])
      expect(lf(after, 'root')).to.deep.equal([`/lost+found/#${a}/b/c/d/leaf`, `/lost+found/#${a}/mid`])
    })

    it('deep in the tree', () => {
      const leaf = INO(img, '/deep/a/b/c/d/leaf')
      damageDir(raw, dirInfo(img, '/deep/a/b/c/d'), 'inline-garbage', mulberry32(5))
      const {repair, after} = repairAndCheck(img, clean)
      // leaf is shared with snap (share 2): root lost its name, snap still has it.
      expect(repair.problems.map((p) => p.code)).to.include('INODE_NAME_LOST')
      expect(lf(after, 'root')).to.deep.equal([`/lost+found/#${leaf}`])
    })

    for (const fsName of ['root', 'snap']) {
      it(`the root directory of fileset ${fsName}`, () => {
        const d = dirInfo(img, '/', fsName)
        damageDir(raw, d, d.inline ? 'inline-zero' : 'all-blocks', mulberry32(6))
        const {after} = repairAndCheck(img, clean)
        const other = fsName === 'root' ? 'snap' : 'root'
        expect(lf(after, other)).to.deep.equal([])
        expect(lf(after, fsName).length).to.be.greaterThan(0)
      })
    }
  })

  describe('clones and hard links', () => {
    it('a clone that shares its files with its parent: the clone gets them back, the parent is untouched', () => {
      damageDir(raw, dirInfo(img, '/hashed', 'snap'), 'all-blocks', mulberry32(7))
      const {repair, after} = repairAndCheck(img, clean)
      expect(after.get('root')).to.deep.equal(clean.get('root'))
      // Shared files are reconnected in snap only (INODE_NAME_LOST); snap's own copy of f7 as unreachable.
      const codes = new Set(repair.problems.map((p) => p.code))
      expect([...codes]).to.include.members(['INODE_NAME_LOST', 'INODE_UNREACHABLE'])
      for (const p of repair.problems.filter((x) => x.code === 'INODE_NAME_LOST')) expect(p.message).to.include('fileset snap:/lost+found/#')
    })

    it('the same directory damaged in both: a shared file is reconnected in each fileset that held it', () => {
      damageDir(raw, dirInfo(img, '/hashed', 'snap'), 'all-blocks', mulberry32(8))
      damageDir(raw, dirInfo(img, '/hashed', 'root'), 'all-blocks', mulberry32(9))
      const {after} = repairAndCheck(img, clean)
      const f0 = INO(img, '/lost+found', 'root') // both have a lost+found now
      expect(f0).to.be.greaterThan(0)
      // Every shared file is in both lost+found directories, one inode with share 2.
      const shared = withImage(img, {write: false}, (vol) => {
        const a = namespace(vol, 'root').readdir('/lost+found').map((e) => e.ino)
        const b = new Set(namespace(vol, 'snap').readdir('/lost+found').map((e) => e.ino))
        return a.filter((i) => b.has(i)).map((i) => vol.iget(i).r.share)
      })
      expect(shared.length).to.be.greaterThan(300)
      expect(new Set(shared)).to.deep.equal(new Set([2]))
      expect(after.get('root')!.size).to.equal(clean.get('root')!.size)
    })

    it('a tree that lost its parent in a clone goes back to the clone, not to the fileset sharing its files', () => {
      const a = INO(img, '/deep/a', 'snap')
      damageDir(raw, dirInfo(img, '/deep', 'snap'), 'inline-zero', mulberry32(10))
      const {after} = repairAndCheck(img, clean)
      expect(lf(after, 'snap')).to.deep.equal([`/lost+found/#${a}/b/c/d/leaf`, `/lost+found/#${a}/mid`])
      expect(after.get('root')).to.deep.equal(clean.get('root'))
    })

    it('hard links: nlink is the names found plus the lost+found name', () => {
      const h1 = INO(img, '/links/h1')
      const h3 = INO(img, '/links/h3')
      damageDir(raw, dirInfo(img, '/links'), 'inline-zero', mulberry32(11))
      const {repair} = repairAndCheck(img, clean)
      withImage(img, {write: false}, (vol) => {
        const ns = namespace(vol, 'root')
        // h1 keeps its other name (/hashed/h2): it is reachable, nothing to reconnect.
        expect(ns.stat('/hashed/h2').ino).to.equal(h1)
        expect(ns.stat('/hashed/h2').nlink).to.equal(1)
        // h3 lost both names: one name in lost+found, link count 1.
        expect(ns.stat(`/lost+found/#${h3}`).nlink).to.equal(1)
        expect(ns.readFile(`/lost+found/#${h3}`).toString()).to.equal('linked within one directory\n')
      })
      expect(repair.problems.filter((p) => p.code === 'INODE_UNREACHABLE').map((p) => p.where)).to.deep.equal([`inode ${h3}`])
    })

    it('a third fileset: a file shared by three is reconnected only where it was lost', () => {
      withImage(img, {write: true}, (vol) => { clone(vol, {fileset: 'root', path: '/'}, {fileset: 'third'}) })
      const before = inventory(img)
      damageDir(raw, dirInfo(img, '/hashed', 'third'), 'all-blocks', mulberry32(12))
      const {after} = repairAndCheck(img, before)
      expect(after.get('root')).to.deep.equal(before.get('root'))
      expect(after.get('snap')).to.deep.equal(before.get('snap'))
      expect(lf(after, 'third').length).to.be.greaterThan(300)
    })

    it('a fileset whose record is destroyed comes back as a fileset of its own', () => {
      const slot = withImage(img, {write: false}, (vol) => listFilesets(vol).find((f) => f.name === 'snap')!.slot)
      raw.patchFileset(slot, (b) => b.fill(0xa5), false)
      const {repair, after} = repairAndCheck(img, clean, false)
      const made = repair.problems.find((p) => p.code === 'FILESET_RECOVERED')
      expect(made, show(repair)).to.not.equal(undefined)
      const name = [...after.keys()].find((n) => n.startsWith('recovered-'))!
      // It holds exactly what snap held.
      expect(after.get(name)).to.deep.equal(clean.get('snap'))
      expect(after.get('root')).to.deep.equal(clean.get('root'))
    })
  })

  describe('lost+found itself', () => {
    it('exists: entries are added to it; a name already taken gets a suffix', () => {
      const a = INO(img, '/inline/a')
      withImage(img, {write: true}, (vol) => {
        const ns = namespace(vol, 'root')
        ns.mkdir('/lost+found')
        ns.writeFile(`/lost+found/#${a}`, Buffer.from('a user file with a lost+found name\n'))
      })
      const before = inventory(img)
      damageDir(raw, dirInfo(img, '/inline'), 'inline-zero', mulberry32(13))
      const {after} = repairAndCheck(img, before)
      expect(lf(after, 'root')).to.include(`/lost+found/#${a}.2`)
      expect(lf(after, 'root')).to.include(`/lost+found/#${a}`)
    })

    it('is a file: it is moved into a new lost+found as #INO, as e2fsck does', () => {
      withImage(img, {write: true}, (vol) => { namespace(vol, 'root').writeFile('/lost+found', Buffer.from('not a directory\n')) })
      const file = INO(img, '/lost+found')
      const before = inventory(img)
      damageDir(raw, dirInfo(img, '/inline'), 'inline-zero', mulberry32(14))
      const {repair, after} = repairAndCheck(img, before)
      expect(repair.problems.map((p) => p.code)).to.include('LOST_FOUND_NOT_DIR')
      expect(lf(after, 'root')).to.include(`/lost+found/#${file}`)
      withImage(img, {write: false}, (vol) => {
        const st = namespace(vol, 'root').stat('/lost+found')
        expect(st.type).to.equal('dir')
        expect(st.perm).to.equal(0o700)
        expect(st.uid).to.equal(0)
      })
    })

    it('cannot be made (no free inode): the names go in the fileset\'s root directory', () => {
      withImage(img, {write: true}, (vol) => {
        const ns = namespace(vol, 'root')
        ns.mkdir('/fill')
        for (let i = 0; vol.sb.freeInodes > 0; i++) {
          ns.writeFile(`/fill/${i}`, Buffer.alloc(0))
          vol.maybeCommit()
        }
      })
      const a = INO(img, '/inline/a')
      const before = inventory(img)
      damageDir(raw, dirInfo(img, '/inline'), 'inline-zero', mulberry32(15))
      const {repair} = repairAndCheck(img, before)
      expect(repair.notes.join('\n')).to.include('no free inode for fileset root:/lost+found')
      withImage(img, {write: false}, (vol) => expect(namespace(vol, 'root').readFile(`/#${a}`).toString()).to.equal('alpha\n'))
    })

    it('cannot be made and the root is full (no inode, no block): left unconnected with their data, exit 4, until there is room', () => {
      const small = path.join(tmp, 'full.img')
      fs.rmSync(small, {force: true})
      const vol = mkfs(small, {size: 2 * 1024 * 1024, inodeCount: 64, filesetSlots: 16})
      const ns = namespace(vol, 'root')
      ns.mkdir('/d')
      ns.writeFile('/d/one', Buffer.from('one\n'))
      ns.writeFile('/d/two', Buffer.from('two\n'))
      ns.mkdir('/f')
      // The root's inline area nearly full, then no inode and no block left.
      // d and f take 30 of the 140 bytes, two 49-byte entries 98 more: 12 are left, less than an entry #N needs.
      for (let i = 0; i < 2; i++) ns.writeFile(`/pad-${i}-${'x'.repeat(29)}`, Buffer.alloc(0))
      expect(ns.resolve('/').r.flags & IF_INLINE).to.equal(IF_INLINE)
      for (let i = 0; vol.sb.freeInodes > 1; i++) ns.writeFile(`/f/${i}`, Buffer.alloc(0))
      vol.commit()
      const big = ns.openForWrite('/f/big')
      try {
        for (;;) { ns.writeFile('/f/big', Buffer.alloc(BLOCK_SIZE, 1), {append: true}); vol.commit() }
      } catch {
        vol.abort()
      }
      void big
      vol.close()
      expect(withImage(small, {write: false}, (v) => [v.sb.freeInodes, v.sb.freeBlocks])).to.deep.equal([0, 0])
      const before = inventory(small)
      const sraw = new RawImage(small)
      const d = dirInfo(small, '/d')
      expect(d.inline).to.equal(true)
      damageDir(sraw, d, 'inline-zero', mulberry32(20))
      const first = fsckImage(small, {repair: true})
      expect(first.exitCode, show(first)).to.equal(4)
      expect(first.notes.join('\n')).to.match(/2 inode\(s\) left unconnected, their data kept/)
      const second = fsckImage(small, {repair: true})
      expect(second.exitCode, show(second)).to.equal(4)
      // Nothing was freed: make room, and the next repair reconnects both.
      withImage(small, {write: true}, (v) => { namespace(v, 'root').unlink('/f/big') })
      for (const [id, h] of before.get('root')!) if (h.paths.includes('/f/big')) before.get('root')!.delete(id)
      const third = fsckImage(small, {repair: true})
      expect(third.exitCode, show(third)).to.equal(1)
      expect(fsckImage(small, {repair: true}).exitCode).to.equal(0)
      expectNothingLost(before, inventory(small), true)
    })

    it('in a fileset with clones in flight, a new lost+found is left out of them (IF_NOCLONE)', () => {
      withImage(img, {write: true}, (vol) => { clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lazy'}, {mode: 'lazy'}) })
      const before = inventory(img, ['lazy'])
      damageDir(raw, dirInfo(img, '/inline'), 'inline-zero', mulberry32(16))
      repairAndCheck(img, before, true, ['lazy'])
      withImage(img, {write: true}, (vol) => {
        expect(namespace(vol, 'root').resolve('/lost+found').r.flags & IF_NOCLONE).to.equal(IF_NOCLONE)
        // The lazy clone shows root as it was when cloned: no lost+found.
        expect(namespace(vol, 'lazy').readdir('/').map((e) => e.name)).to.not.include('lost+found')
      })
    })
  })

  describe('garbage', () => {
    it('an unattached zero-length file is cleared (e2fsck: "Unattached zero-length inode"); an empty directory is reconnected', () => {
      // /inline/empty is shared with snap, which still has it; empty2 is root's alone.
      withImage(img, {write: true}, (vol) => { namespace(vol, 'root').writeFile('/inline/empty2', Buffer.alloc(0)) })
      const empty = INO(img, '/inline/empty2')
      const dir = INO(img, '/hashed/emptydir')
      const before = inventory(img)
      damageDir(raw, dirInfo(img, '/inline'), 'inline-zero', mulberry32(17))
      damageDir(raw, dirInfo(img, '/hashed'), 'all-blocks', mulberry32(18))
      const {repair, after} = repairAndCheck(img, before)
      expect(repair.problems.filter((p) => p.code === 'INODE_UNATTACHED_EMPTY').map((p) => p.where)).to.deep.equal([`inode ${empty}`])
      withImage(img, {write: false}, (vol) => expect(namespace(vol, 'root').stat(`/lost+found/#${dir}`).type).to.equal('dir'))
      expect(after.get('snap')).to.deep.equal(clean.get('snap'))
    })
  })

  describe('bad names are renamed, never kept', () => {
    /** Renames /inline/a to `from`, then rewrites that name in the raw inode area with `change`. */
    function badName(from: string, change: (n: Buffer) => void, extra?: string): Inventory {
      withImage(img, {write: true}, (vol) => {
        const ns = namespace(vol, 'root')
        ns.rename('/inline/a', `/inline/${from}`)
        if (extra) ns.writeFile(`/inline/${extra}`, Buffer.from('already there\n'))
      })
      const before = inventory(img)
      const d = dirInfo(img, '/inline')
      raw.patchInode(d.ino, (b) => {
        const at = entryOffsets(b, 0x70, 0xfc).find((o) => b.toString('latin1', o + 14, o + 14 + b[o + 13]) === from)!
        const name = b.subarray(at + 14, at + 14 + b[at + 13])
        change(name)
        b.writeUInt32LE(nameHash(Buffer.from(name), b.readUInt32LE(0x60)), at + 8)
      })
      return before
    }

    const cases: Array<[string, string, (n: Buffer) => void, RegExp, string?]> = [
      ["containing '/'", 'alp', (n) => { n[2] = 0x2f }, /^al\.$/],
      ['containing NUL', 'alp', (n) => { n[0] = 0 }, /^\.lp$/],
      ["'.'", 'x', (n) => n.fill(0x2e), /^#\d+$/],
      ["'..'", 'xy', (n) => n.fill(0x2e), /^#\d+$/],
      ["containing '/', whose repaired name is taken", 'alp', (n) => { n[2] = 0x2f }, /^#\d+$/, 'al.'],
    ]
    for (const [what, from, change, want, extra] of cases) {
      it(`a name ${what}`, () => {
        const a = INO(img, '/inline/a')
        const before = badName(from, change, extra)
        const {repair, after} = repairAndCheck(img, before)
        expect(repair.problems.map((p) => p.code)).to.include('DIRENT_BAD_NAME')
        // Still in its directory, under a valid name, with its other names and counts intact.
        const names = withImage(img, {write: false}, (vol) => namespace(vol, 'root').readdir('/inline'))
        const renamed = names.find((e) => e.ino === a)!
        expect(renamed.name, names.map((e) => e.name).join(' ')).to.match(want)
        if (want.source.startsWith('^#')) expect(renamed.name).to.equal(`#${a}`)
        expect(lf(after, 'root')).to.deep.equal([])
      })
    }
  })

  it('survives a power loss at any write of a reconnecting repair: the next repair reconnects the same way', () => {
    // root:/d (hashed) holds files shared with snap, one of root's own, and a subtree; its
    // bucket is destroyed. Whatever write the power fails at, repairing again (twice at most)
    // leaves every file in each fileset that held it, and a clean image.
    const small = path.join(tmp, 'crash.img')
    fs.rmSync(small, {force: true})
    const vol = mkfs(small, {size: 4 * 1024 * 1024, journalBlocks: 64, inodeCount: 512})
    const ns = namespace(vol, 'root')
    ns.mkdir('/d/sub', {parents: true})
    ns.writeFile('/d/sub/x', Buffer.from('in the subtree\n'))
    for (let i = 0; i < 30; i++) ns.writeFile(`/d/shared-${i}`, Buffer.from(`shared ${i}\n`))
    vol.commit()
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'snap'})
    ns.writeFile('/d/own', Buffer.from("root's own\n"))
    vol.close()
    const before = inventory(small)
    const d = dirInfo(small, '/d')
    expect(d.inline).to.equal(false)
    new RawImage(small).patchBlock(d.buckets[0], (b) => b.fill(0))
    const damaged = fs.readFileSync(small)
    const probe = new MemDevice(Buffer.from(damaged))
    expect(fsckDevice(probe, {repair: true}).exitCode).to.equal(1)
    const total = probe.counts.write
    const stride = Math.max(1, Math.floor(total / 16))
    for (let at = 1; at <= total; at += stride) {
      const dev = new MemDevice(Buffer.from(damaged))
      dev.crashAtWrite = at
      expect(() => fsckDevice(dev, {repair: true})).to.throw(SimulatedCrash)
      const crashed = dev.afterPowerLoss(at)
      const again = new MemDevice(crashed)
      const r1 = fsckDevice(again, {repair: true})
      expect([0, 1], `crash at write ${at}:\n${show(r1)}`).to.include(r1.exitCode)
      const r2 = fsckDevice(new MemDevice(again.durable), {repair: false})
      expect(r2.problems, `crash at write ${at}:\n${show(r2)}`).to.deep.equal([])
      fs.writeFileSync(small, again.durable)
      expectNothingLost(before, inventory(small), true)
    }
  })

  it('through the CLI: one line per reconnection, exit 1, then 0', () => {
    damageDir(raw, dirInfo(img, '/deep'), 'inline-zero', mulberry32(19))
    const a = INO(template, '/deep/a')
    const run = () => spawnSync(process.execPath, [BIN, 'fsck', '--repair', '--image', img], {env: {...process.env, PRISM_IMAGE: ''}})
    const r1 = run()
    expect(r1.status, r1.stderr.toString()).to.equal(1)
    expect(r1.stdout.toString()).to.include(`INODE_UNREACHABLE inode ${a}: directory inode is in use but no directory names it; it is reconnected as fileset root:/lost+found/#${a} [fixed]`)
    expect(run().status).to.equal(0)
    const ls = spawnSync(process.execPath, [BIN, 'ls', '-R', `root:/lost+found`, '--image', img], {env: {...process.env, PRISM_IMAGE: ''}})
    expect(ls.stdout.toString()).to.include('leaf')
  })

  // ---------------------------------------------------------------- property

  describe('property: random directory blocks of random trees', () => {
    interface Op { kind: 'dir' | 'file' | 'link' | 'sym', dir: number, size: number }
    const opArb: fc.Arbitrary<Op> = fc.record({
      kind: fc.constantFrom<Op['kind']>('dir', 'dir', 'file', 'file', 'file', 'link', 'sym'),
      dir: fc.nat(1000),
      size: fc.constantFrom(0, 5, 100, 200, 5000, 9000),
    })

    /** Builds a random tree from ops, clones it `clones` times, changes the clones a little. */
    function build(p: string, ops: Op[], clones: number, seed: number): void {
      const rnd = mulberry32(seed)
      const vol = mkfs(p, {size: 8 * 1024 * 1024, inodeCount: 1024})
      const ns = namespace(vol, 'root')
      const dirs = ['/']
      const files: string[] = []
      let n = 0
      for (const op of ops) {
        const at = dirs[op.dir % dirs.length]
        const name = `${at === '/' ? '' : at}/${op.kind}${n++}`
        if (op.kind === 'dir') { ns.mkdir(name); dirs.push(name) } else if (op.kind === 'file') {
          ns.writeFile(name, Buffer.alloc(op.size, n & 0xff).fill(String(n), 0, Math.min(op.size, 4)))
          files.push(name)
        } else if (op.kind === 'link' && files.length > 0) ns.link(files[op.dir % files.length], name)
        else if (op.kind === 'sym') ns.symlink(`target-${n}`, name)
      }
      // Many entries in one directory, so that it is hashed with a pointer table.
      if (rnd() < 0.6) for (let i = 0; i < 300; i++) ns.writeFile(`${dirs[dirs.length - 1] === '/' ? '' : dirs[dirs.length - 1]}/many${i}`, Buffer.from(`m${i}`))
      vol.commit()
      for (let c = 0; c < clones; c++) {
        const name = `clone${c}`
        clone(vol, {fileset: c === 0 || rnd() < 0.5 ? 'root' : `clone${c - 1}`, path: '/'}, {fileset: name})
        const cn = namespace(vol, name)
        if (files.length > 0) cn.writeFile(files[Math.floor(rnd() * files.length)], Buffer.from(`changed in ${name}`))
        cn.writeFile(`/new-in-${name}`, Buffer.from(`new in ${name}`))
      }
      if (files.length > 0) ns.writeFile(files[Math.floor(rnd() * files.length)], Buffer.from('changed in root'))
      vol.close()
    }

    it('never loses a file that held data, and a second run is clean', () => {
      const dir = path.join(tmp, 'prop')
      fs.mkdirSync(dir, {recursive: true})
      const p = path.join(dir, 'p.img')
      fc.assert(fc.property(
        fc.array(opArb, {minLength: 3, maxLength: 40}), fc.nat(2), fc.integer({min: 1, max: 2 ** 30}), fc.integer({min: 1, max: 3}), fc.boolean(),
        (ops, clones, seed, howMany, oneFileset) => {
          fs.rmSync(p, {force: true})
          build(p, ops, clones, seed)
          const before = inventory(p)
          const rnd = mulberry32(seed ^ 0x5bd1e995)
          // Pick directories to damage: in one fileset, or anywhere.
          const targets = withImage(p, {write: false}, (vol) => {
            const out: DirInfo[] = []
            const fsl = listFilesets(vol)
            const only = fsl[Math.floor(rnd() * fsl.length)]
            const all: number[] = []
            for (const f of fsl) {
              if (oneFileset && f !== only) continue
              const stack = [f.rootIno]
              while (stack.length > 0) {
                const d = stack.pop()!
                all.push(d)
                for (const e of dirList(vol, vol.iget(d))) if (vol.iget(e.ino).isDir) stack.push(e.ino)
              }
            }
            for (let k = 0; k < howMany; k++) out.push(dirInfoOf(vol, all[Math.floor(rnd() * all.length)]))
            return out
          })
          const raw = new RawImage(p)
          const done = new Set<number>()
          for (const d of targets) {
            if (done.has(d.ino)) continue
            done.add(d.ino)
            const kinds = kindsFor(d)
            damageDir(raw, d, kinds[Math.floor(rnd() * kinds.length)], rnd)
          }
          const repair = fsckImage(p, {repair: true})
          expect(repair.exitCode, show(repair)).to.be.oneOf([0, 1])
          const again = fsckImage(p, {repair: true})
          expect(again.problems, show(repair) + '\n--- second run:\n' + show(again)).to.deep.equal([])
          expectNothingLost(before, inventory(p), oneFileset)
        }), {numRuns: Number(process.env.PRISM_LOSTFOUND_RUNS ?? 30)})
    })
  })
})
