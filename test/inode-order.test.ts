// Walks over a large directory visit its entries in the order of their inode numbers, not in
// hash order (src/fs/dir.ts INODE_ORDER_MIN): in hash order every entry's inode lay at a
// random place in the inode table, and once the table outgrew the block cache each entry cost
// a device read (and, for a walk that changes inodes, a journaled block of its own), so these
// walks grew with the square of the directory (400,000 files: a sync clone 38 s, expand 58 s,
// rm -r 79 s). Each walker is run with a block cache far smaller than the directory's part of
// the inode table, and must read that part about once, with every file still there and right.
import {expect} from 'chai'
import fc from 'fast-check'
import fs from 'node:fs'
import path from 'node:path'
import {clone} from '../src/clone/clone.js'
import {INODES_PER_BLOCK} from '../src/format/constants.js'
import {diff} from '../src/diff/diff.js'
import {INODE_ORDER_MIN, inInodeOrder, type RawEntryFn} from '../src/fs/dir.js'
import {expandAll} from '../src/fs/expand.js'
import {findFileset, listFilesets} from '../src/fs/filesets.js'
import * as image from '../src/fs/image.js'
import {filesetSpace} from '../src/fs/space.js'
import type {Volume} from '../src/fs/volume.js'
import {fsckImage} from '../src/fsck/index.js'
import {chmodPath, duPath} from '../src/ops/attrs.js'
import {copy} from '../src/ops/copy.js'
import {edit, newImage, read, tmpDir} from './helpers.js'

/** Files in the large directory: their inodes fill 375 inode-table blocks. */
const N = INODE_ORDER_MIN + 1900
/** The block cache of every walk below: a sixth of those blocks. */
const CACHE = 64
/**
 * Device reads a walk may make: fewer than the directory's inode-table blocks (read in order,
 * eight to a read-ahead, they take about 47). In hash order the walks below made 1,336 to
 * 1,675; in inode order 84 to 274.
 */
const READS_MAX = Math.ceil(N / INODES_PER_BLOCK)

const content = (i: number) => Buffer.from(`file ${i} `.repeat(1 + (i % 7)))
/** File i's name: in no order of i (a listing sorted by name is in no order of inode either). */
const nameOf = (i: number) => `${((i * 2654435761) >>> 0).toString(36)}-${i}`
const numberOf = (name: string) => Number(name.split('-')[1])

describe('walks over a large directory go in inode order', function () {
  this.timeout(600_000)
  let dir: string
  let base: string

  before(() => {
    dir = tmpDir('prism-inode-order-')
    base = newImage(dir, 256 << 20, {inodeCount: 4 * N})
    edit(base, (ns) => {
      ns.mkdir('/big')
      for (let i = 0; i < N; i++) ns.writeFile(`/big/${nameOf(i)}`, content(i))
    })
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  /** A copy of image `from`, `work` run on it with the small cache; returns the device reads it made. */
  const walk = (name: string, work: (vol: Volume) => void, opts: {cacheBlocks?: number, from?: string} = {}): {img: string, reads: number} => {
    const img = path.join(dir, `${name}.img`)
    fs.copyFileSync(opts.from ?? base, img)
    const cacheBlocks = opts.cacheBlocks ?? CACHE
    let reads = 0
    image.withImage(img, {write: true, cacheBlocks}, (vol) => {
      const before = vol.store.stats.reads
      work(vol)
      reads = vol.store.stats.reads - before
    })
    return {img, reads}
  }

  /** Every file of the large directory at `at` in fileset `fileset` holds its content. */
  const allThere = (img: string, fileset: string, at: string) => {
    read(img, (ns) => {
      expect(ns.readdir(at).length).to.equal(N)
      for (let i = 0; i < N; i++) expect(ns.readFile(`${at}/${nameOf(i)}`).equals(content(i)), `${at}/${nameOf(i)}`).to.equal(true)
    }, fileset)
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
  }

  it('a sync clone: every file shared, each inode-table block read about once', () => {
    const {img, reads} = walk('sync', (vol) => { clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'sync'}) })
    expect(reads).to.be.below(READS_MAX)
    allThere(img, 'c', '/big')
    allThere(img, 'root', '/big')
  })

  it('expansion of a lazy clone', () => {
    const img = path.join(dir, 'lazy-src.img')
    fs.copyFileSync(base, img)
    image.withImage(img, {write: true}, (vol) => { clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'lazy'}) })
    const r = walk('expand', (vol) => { expandAll(vol, findFileset(vol, 'c')!) }, {from: img})
    expect(r.reads).to.be.below(READS_MAX)
    allThere(r.img, 'c', '/big')
  })

  it('fileset space (fileset list, df) and du', () => {
    let space = {files: 0}
    const a = walk('space', (vol) => { space = filesetSpace(vol, listFilesets(vol).find((f) => f.name === 'root')!) })
    expect(a.reads).to.be.below(READS_MAX)
    expect(space.files).to.equal(N)
    let files = 0
    const b = walk('du', (vol) => { files = duPath(image.namespace(vol, 'root'), '/big', true)[0].files })
    expect(b.reads).to.be.below(READS_MAX)
    expect(files).to.equal(N)
  })

  it('a listing with attributes (ls -l): each entry its own, in the order of the directory', () => {
    let names: string[] = []
    let listed: Array<{name: string, size: number}> = []
    const {reads} = walk('ls', (vol) => {
      const ns = image.namespace(vol, 'root')
      names = ns.readdir('/big').map((e) => e.name)
      listed = ns.readdirStat('/big').map((e) => ({name: e.name, size: e.st.size}))
    })
    expect(reads).to.be.below(READS_MAX)
    expect(listed.map((e) => e.name)).to.deep.equal(names)
    for (const e of listed) expect(e.size, e.name).to.equal(content(numberOf(e.name)).length)
  })

  it('chmod -R: every mode changed', () => {
    // chmod -R finds each entry again by its path (to copy an inode shared with a clone
    // before changing it: Namespace.own), which reads the directory's buckets in no order: a
    // cache that holds them is given here, as the default one holds those of a directory of
    // some 400,000 entries. The inode table is still far larger than the cache.
    let buckets = 0
    image.withImage(base, {write: false}, (vol) => { buckets = image.namespace(vol, 'root').resolve('/big').r.dirBuckets })
    expect(buckets).to.be.below(READS_MAX / 2)
    const {img, reads} = walk('chmod', (vol) => { chmodPath(image.namespace(vol, 'root'), '/big', () => 0o600, {recursive: true}) }, {cacheBlocks: CACHE + 2 * buckets})
    expect(reads).to.be.below(READS_MAX)
    read(img, (ns) => {
      for (let i = 0; i < N; i++) expect(ns.stat(`/big/${nameOf(i)}`).mode & 0o7777).to.equal(0o600)
    })
    allThere(img, 'root', '/big')
  })

  it('cp -r inside the image: every file copied', () => {
    const {img, reads} = walk('cp', (vol) => { copy(vol, [{kind: 'image', fileset: 'root', path: '/big'}], {kind: 'image', fileset: 'root', path: '/copy'}, {recursive: true}) })
    expect(reads).to.be.below(READS_MAX)
    allThere(img, 'root', '/copy')
    allThere(img, 'root', '/big')
  })

  it('rm -r: every inode and block given back', () => {
    let free = {blocks: 0, inodes: 0}
    image.withImage(base, {write: false}, (vol) => { free = {blocks: vol.sb.freeBlocks, inodes: vol.sb.freeInodes} })
    const {img, reads} = walk('rm', (vol) => { image.namespace(vol, 'root').remove('/big', {recursive: true}) })
    expect(reads).to.be.below(READS_MAX)
    image.withImage(img, {write: false}, (vol) => {
      expect(vol.sb.freeInodes).to.equal(free.inodes + N + 1)
      expect(vol.sb.freeBlocks).to.be.above(free.blocks)
    })
    read(img, (ns) => { expect(ns.exists('/big')).to.equal(false) })
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
  })

  it('diff of two copies whose files are other inodes: the changed ones named, and only they', () => {
    const img = path.join(dir, 'diff-src.img')
    fs.copyFileSync(base, img)
    const changed = [3, 1000, N - 1]
    edit(img, (ns) => {
      ns.mkdir('/other')
      for (let i = 0; i < N; i++) ns.writeFile(`/other/${nameOf(i)}`, changed.includes(i) ? Buffer.from('changed') : content(i))
    })
    let names: string[] = []
    const r = walk('diff', (vol) => { names = diff(vol, {fileset: 'root', path: '/big'}, {fileset: 'root', path: '/other'}).entries.filter((e) => e.code !== 'A').map((e) => `${e.code} ${e.path}`) }, {from: img})
    // (two trees, each read about once; their times differ, so every file is also 'A')
    expect(r.reads).to.be.below(2 * READS_MAX)
    expect(names).to.deep.equal(changed.map((i) => `M /${nameOf(i)}`).sort())
  })
})

describe('inInodeOrder', () => {
  it('gives every entry once, with its name and type; in inode order from INODE_ORDER_MIN entries, as walked below it', () => {
    const entry = fc.record({ino: fc.integer({min: 1, max: 2 ** 32 - 1}), type: fc.integer({min: 0, max: 14}), name: fc.uint8Array({minLength: 1, maxLength: 255})})
    fc.assert(fc.property(fc.array(entry, {minLength: INODE_ORDER_MIN - 50, maxLength: INODE_ORDER_MIN + 50}), (list) => {
      // The walk hands out names as views into one scratch buffer, as a bucket read does.
      const scratch = Buffer.alloc(300)
      const walkAll = (fn: RawEntryFn) => {
        for (const e of list) {
          scratch.fill(0)
          scratch.set(e.name, 7)
          fn(e.ino, e.type, scratch, 7, e.name.length)
        }
      }
      const seen: Array<{ino: number, type: number, name: string}> = []
      inInodeOrder(list.length, walkAll, (ino, type, buf, off, len) => { seen.push({ino, type, name: buf.toString('hex', off, off + len)}) })
      const given = list.map((e) => ({ino: e.ino, type: e.type, name: Buffer.from(e.name).toString('hex')}))
      if (list.length < INODE_ORDER_MIN) {
        expect(seen).to.deep.equal(given)
      } else {
        for (let i = 1; i < seen.length; i++) expect(seen[i - 1].ino <= seen[i].ino).to.equal(true)
        const key = (e: {ino: number, type: number, name: string}) => `${e.ino}/${e.type}/${e.name}`
        expect(seen.map(key).sort()).to.deep.equal(given.map(key).sort())
      }
    }), {numRuns: 12})
  })
})
