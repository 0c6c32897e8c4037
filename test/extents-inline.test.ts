// A file whose extent map needed a tree (more extents than the inode's root holds), truncated
// to 0 and written small again in the same transaction, becomes inline: the tree's node blocks,
// which the commit would have freed, must be freed then too, and again when the file grows out
// of the inode before any commit. (Found through a mount: stress-ng's truncates and small writes
// between two commits leaked one block each time.)
import {expect} from 'chai'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {loadExtents} from '../src/fs/extents.js'
import {fsckImage} from '../src/fsck/index.js'
import {edit, newImage, read, tmpDir} from './helpers.js'

describe('extent trees of a file that goes inline', () => {
  for (const grow of [false, true]) {
    it(`frees the tree's node blocks when a file is truncated to 0 and written small${grow ? ', then grows again' : ''}, in one transaction`, () => {
      const img = newImage(tmpDir())
      edit(img, (ns) => {
        const f = ns.openForWrite('/f')
        for (let i = 0; i < 20; i++) ns.writeInode(f, i * 2 * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, i + 1))
      })
      const free0 = read(img, (ns, vol) => {
        const f = ns.resolve('/f')
        expect(loadExtents(vol, f).length).to.equal(20)
        expect(f.treeBlocks.length).to.be.greaterThan(0) // the map needs a tree
        return vol.sb.freeBlocks
      })
      const big = Buffer.alloc(100_000, 7)
      edit(img, (ns) => {
        const f = ns.resolveOwned('/f')
        ns.truncateInode(f, 0)
        ns.writeInode(f, 0, Buffer.from('small'))
        if (grow) ns.writeInode(f, 0, big)
      })
      expect(fsckImage(img, {repair: false}).exitCode).to.equal(0)
      read(img, (ns, vol) => {
        expect(ns.readFile('/f').equals(grow ? big : Buffer.from('small'))).to.equal(true)
        // 20 data blocks and the tree went back; a grown file holds 25 blocks again (and a
        // tree of its own if its map needs one: the locality policy may place it in pieces)
        const f = ns.resolve('/f')
        const held = grow ? Math.ceil(big.length / BLOCK_SIZE) + (loadExtents(vol, f), f.treeBlocks.length) : 0
        expect(vol.sb.freeBlocks).to.equal(free0 + 20 + 1 - held)
      })
    })
  }
})
