// The first read at the end of a lazy chain of clones (issue 19): expanding a directory whose
// source entries are all kept copies the source's layout (src/fs/dir.ts dirCopyLayout: the
// same dir_seed, buckets and pointer table, each entry repointed, every lastclone 0), and the
// blocks a transaction allocates are written in place rather than logged (FORMAT.md §3.5).
// Crash safety of both is covered by crash-expand, crash-clone and crash.test.ts.
import {expect} from 'chai'
import {clone} from '../src/clone/clone.js'
import {IF_HASHED, IF_NOCLONE} from '../src/format/constants.js'
import {dirList, dirLookup} from '../src/fs/dir.js'
import {loadExtents} from '../src/fs/extents.js'
import {namespace, withImage} from '../src/fs/image.js'
import {Journal} from '../src/journal/journal.js'
import {fsckImage} from '../src/fsck/index.js'
import {edit, newImage, read, snapshot, tmpDir} from './helpers.js'

/** 600 entries with long names: a hashed directory of many buckets and a pointer table. */
function bigDir(ns: ReturnType<typeof namespace>, dir: string): void {
  ns.mkdir(`${dir}/sub`, {parents: true})
  for (let i = 0; i < 600; i++) ns.writeFile(`${dir}/a-rather-long-file-name-to-fill-the-buckets-${i}`, Buffer.from(`f${i}\n`))
}

describe('expansion copies the source directory as it is laid out', () => {
  it('every clone of a lazy chain shows the source tree; a kept directory has its source\'s seed, buckets and entry order; one with an entry left out is built entry by entry', () => {
    const img = newImage(tmpDir('prism-expcopy-'))
    edit(img, (ns) => {
      bigDir(ns, '/big')
      ns.link('/big/a-rather-long-file-name-to-fill-the-buckets-1', '/big/sub/hard')
      ns.symlink('a-rather-long-file-name-to-fill-the-buckets-2', '/big/sym')
      ns.writeFile('/big/sub/deep', Buffer.from('deep\n'))
      ns.mkdir('/mixed')
      ns.writeFile('/mixed/kept', Buffer.from('kept\n'))
      ns.writeFile('/mixed/secret', Buffer.from('secret\n'))
      ns.setFlag('/mixed/secret', IF_NOCLONE, true)
    })
    const want = read(img, (ns) => snapshot(ns))
    delete want['/mixed/secret']
    const depth = 4
    withImage(img, {write: true}, (vol) => {
      let prev = 'root'
      for (let i = 1; i <= depth; i++) {
        clone(vol, {fileset: prev, path: '/'}, {fileset: `c${i}`}, {mode: 'lazy'})
        prev = `c${i}`
      }
    })
    withImage(img, {write: true}, (vol) => {
      // The first read at the end expands /big, /big/sub and /mixed in every clone of the chain.
      const end = namespace(vol, `c${depth}`)
      expect(end.readFile('/big/sub/deep').toString()).to.equal('deep\n')
      expect(end.readFile('/mixed/kept').toString()).to.equal('kept\n')
      const src = namespace(vol, 'root').resolve('/big')
      expect(src.r.flags & IF_HASHED).to.not.equal(0)
      expect(src.r.dirDepth).to.be.at.least(2)
      const names = (d: typeof src) => dirList(vol, d).map((e) => e.name.toString())
      for (let i = 1; i <= depth; i++) {
        const ns = namespace(vol, `c${i}`)
        const big = ns.resolve('/big')
        expect([big.r.dirSeed, big.r.dirDepth, big.r.dirBuckets, big.r.size], `c${i}:/big`).to.deep.equal([src.r.dirSeed, src.r.dirDepth, src.r.dirBuckets, src.r.size])
        expect(names(big), `c${i}:/big entries in the source's order`).to.deep.equal(names(src))
        // Files are shared, the hard-linked one copied, the subdirectory made anew.
        const shared = dirLookup(vol, big, Buffer.from('a-rather-long-file-name-to-fill-the-buckets-7'))!
        expect(shared.ino).to.equal(dirLookup(vol, src, shared.name)!.ino)
        expect(ns.resolve('/big/a-rather-long-file-name-to-fill-the-buckets-1').ino).to.not.equal(namespace(vol, 'root').resolve('/big/a-rather-long-file-name-to-fill-the-buckets-1').ino)
        expect(ns.resolve('/big/sub').ino).to.not.equal(namespace(vol, 'root').resolve('/big/sub').ino)
        const mixed = ns.resolve('/mixed')
        expect(dirList(vol, mixed).map((e) => e.name.toString()), `c${i}:/mixed`).to.deep.equal(['kept'])
      }
    })
    for (let i = 1; i <= depth; i++) expect(read(img, (ns) => snapshot(ns), `c${i}`), `c${i}`).to.deep.equal(want)
    expect(fsckImage(img, {repair: false}).exitCode).to.equal(0)
  })

  it('the entries of a copy carry no lastclone stamp, though its source\'s do', () => {
    const img = newImage(tmpDir('prism-expcopy-'))
    edit(img, (ns) => bigDir(ns, '/d'))
    const name = Buffer.from('a-rather-long-file-name-to-fill-the-buckets-5')
    withImage(img, {write: true}, (vol) => {
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'a'}, {mode: 'lazy'})
      // A write to the source with a clone in flight stamps the entries of its path.
      namespace(vol, 'root').writeFile('/d/' + name.toString(), Buffer.from('new\n'))
      const srcDir = namespace(vol, 'root').resolve('/d')
      expect(dirLookup(vol, srcDir, name)!.lastclone).to.not.equal(0)
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'b'}, {mode: 'lazy'})
      const b = namespace(vol, 'b')
      expect(b.readFile('/d/' + name.toString()).toString()).to.equal('new\n')
      const d = b.resolve('/d')
      expect(dirList(vol, d).filter((e) => e.lastclone !== 0).map((e) => e.name.toString())).to.deep.equal([])
      expect(dirList(vol, d).length).to.equal(dirList(vol, srcDir).length)
    })
    expect(fsckImage(img, {repair: false}).exitCode).to.equal(0)
  })
})

describe('a transaction writes the blocks it allocates in place, and logs only the others', () => {
  it('a new directory\'s buckets are on the device, not in the log, when the commit returns; the image is sound', () => {
    const img = newImage(tmpDir('prism-inplace-'))
    withImage(img, {write: true}, (vol) => {
      bigDir(namespace(vol, 'root'), '/big')
      vol.commit()
      const dir = namespace(vol, 'root').resolve('/big')
      const blocks = loadExtents(vol, dir).toArray().flatMap((e) => Array.from({length: e.n}, (_, i) => e.p + i))
      expect(blocks.length).to.be.at.least(4)
      // What a replay would write now: the transactions logged since the last checkpoint.
      const j = new Journal(vol.dev, vol.sb.journalStart, vol.sb.journalBlocks)
      j.loadSuper()
      const logged = j.scan()
      expect(logged.transactions).to.be.at.least(1)
      expect(logged.blocks.has(0)).to.equal(true)
      expect(blocks.filter((b) => logged.blocks.has(b)), 'bucket blocks in the log').to.deep.equal([])
      for (const b of blocks) {
        const onDevice = Buffer.alloc(4096)
        vol.dev.read(b, onDevice)
        expect(onDevice.equals(vol.store.get(b)), `block ${b} on the device`).to.equal(true)
      }
    })
    expect(read(img, (ns) => ns.readdir('/big').length)).to.equal(601)
    expect(fsckImage(img, {repair: false}).exitCode).to.equal(0)
  })
})
