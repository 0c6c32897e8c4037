// An expansion that cannot get the inodes or blocks it takes fails before it changes anything.
// The CLI drops a failed command's transaction, but a mount's request commits with the others
// whatever it did before it failed: a lookup of a lazy clone's directory through a mount of a
// nearly full image left, at each try, an UNEXPANDED directory inode that nothing named (found
// by a probe: fsck INODE_UNREACHABLE after the server's commit). Here the transaction a failed
// expansion leaves is committed as the server would, and must hold nothing of it: fsck clean,
// the free counts unchanged, and once room is made the clone expands to its source's content.
import {expect} from 'chai'
import fs from 'node:fs'
import {clone} from '../src/clone/clone.js'
import {namespace, withImage} from '../src/fs/image.js'
import {fsckImage} from '../src/fsck/index.js'
import type {Volume} from '../src/fs/volume.js'
import {edit, newImage, read, snapshot, tmpDir} from './helpers.js'

/** Runs `call` on a writable volume and commits whatever it left, failed or not (as a server commits a mount's failed request); returns the error code, or null. */
function committedAnyway(img: string, call: (vol: Volume) => void): string | null {
  return withImage(img, {write: true}, (vol) => {
    try {
      call(vol)
      return null
    } catch (e) {
      return (e as {code?: string}).code ?? 'unknown'
    } finally {
      vol.commit()
    }
  })
}

describe('expansion with too few inodes or blocks changes nothing, even when its transaction is committed', () => {
  for (const [what, subdirs, leaveFree] of [['no inode free', 6, 0], ['some inodes free, fewer than its subdirectories', 6, 3], ['exactly enough', 6, 6]] as Array<[string, number, number]>) {
    it(what, () => {
      const dir = tmpDir()
      try {
        const img = newImage(dir, 16 * 1024 * 1024, {inodeCount: 128})
        edit(img, (ns, vol) => {
          ns.mkdir('/many')
          ns.mkdir('/fill')
          for (let i = 0; i < subdirs; i++) {
            ns.mkdir(`/many/d${i}`)
            ns.writeFile(`/many/d${i}/f`, Buffer.from(`in ${i}\n`))
          }
          for (let i = 0; i < 5; i++) ns.writeFile(`/many/file${i}`, Buffer.from(`${i}\n`))
          clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz'}, {mode: 'lazy'})
        })
        const want = read(img, (ns) => snapshot(ns))
        // lz's root expands as /fill changes; then files until `leaveFree` inodes are left
        edit(img, (ns, vol) => {
          ns.writeFile('/fill/first', Buffer.alloc(0))
          for (let i = 0; vol.sb.freeInodes > leaveFree; i++) ns.writeFile(`/fill/n${i}`, Buffer.alloc(0))
        })
        const before = read(img, (_ns, vol) => ({inodes: vol.sb.freeInodes, blocks: vol.sb.freeBlocks}))
        expect(before.inodes).to.equal(leaveFree)
        const listed = withImage(img, {write: true}, (vol) => {
          try {
            return namespace(vol, 'lz').readdir('/many').map((e) => e.name).sort()
          } catch (e) {
            expect((e as {code?: string}).code).to.equal('ENOSPC')
            expect((e as Error).message).to.match(/^(no|too few) free inodes left in the image .* to expand lz:\/many /)
            return null
          } finally {
            vol.commit() // what a server does with the running transaction
          }
        })
        const after = read(img, (_ns, vol) => ({inodes: vol.sb.freeInodes, blocks: vol.sb.freeBlocks}))
        const check = fsckImage(img, {repair: false})
        expect(check.problems.map((p) => `${p.code} ${p.where}`)).to.deep.equal([])
        if (leaveFree >= subdirs) {
          expect(listed).to.have.length(subdirs + 5)
        } else {
          expect(listed).to.equal(null)
          expect(after).to.deep.equal(before)
        }
        // Room made: the clone expands whole.
        edit(img, (ns) => ns.remove('/fill', {recursive: true}))
        edit(img, (ns) => ns.remove('/fill', {recursive: true}), 'lz')
        const {'/fill': _f, ...rest} = want
        expect(Object.keys(rest).some((k) => k.startsWith('/fill'))).to.equal(false)
        expect(read(img, (ns) => snapshot(ns), 'lz')).to.deep.equal(rest)
        expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
      } finally {
        fs.rmSync(dir, {recursive: true, force: true})
      }
    })
  }
})

// The same class outside expansion: a new name that its directory has no block for (a full
// image) took its inode first, and the inode stayed, unnamed, when the request's transaction
// was committed.
describe('a create, mkdir or symlink its directory has no room for changes nothing, even when its transaction is committed', () => {
  for (const [kind, start] of [['file', 'inline'], ['dir', 'inline'], ['symlink', 'inline'], ['file', 'hashed'], ['dir', 'hashed']] as const) {
    it(`${kind}, the directory ${start === 'inline' ? 'inline (its first block)' : 'hashed (a bucket split, an overflow)'}`, () => {
      const dir = tmpDir()
      try {
        const img = newImage(dir, 16 * 1024 * 1024)
        // hashed: 200 names first, in buckets with room left for a few more only
        const first = start === 'hashed' ? 200 : 0
        edit(img, (ns, vol) => {
          ns.mkdir('/d')
          for (let i = 0; i < first; i++) ns.writeFile(`/d/${'n'.repeat(40)}${i}`, Buffer.alloc(0))
          ns.writeFile('/fill', Buffer.alloc(vol.sb.freeBlocks * 4096, 1))
        })
        let made = first
        const before = read(img, (_ns, vol) => ({inodes: vol.sb.freeInodes, blocks: vol.sb.freeBlocks}))
        expect(before.blocks).to.equal(0)
        const failed = committedAnyway(img, (vol) => {
          const ns = namespace(vol, 'root')
          // names long enough that a few fill the inline directory; the next needs a block
          for (; made < 5000; made++) {
            const p = `/d/${'n'.repeat(40)}${made}`
            if (kind === 'file') ns.writeFile(p, Buffer.alloc(0))
            else if (kind === 'dir') ns.mkdir(p)
            else ns.symlink('t', p)
          }
        })
        expect(failed).to.equal('ENOSPC')
        expect(made).to.be.greaterThan(first)
        const after = read(img, (ns, vol) => ({inodes: vol.sb.freeInodes, names: ns.readdir('/d').length, nlink: ns.stat('/d').nlink}))
        expect(after.inodes).to.equal(before.inodes - (made - first))
        expect(after.names).to.equal(made)
        expect(after.nlink).to.equal(kind === 'dir' ? 2 + made - first : 2)
        expect(fsckImage(img, {repair: false}).problems.map((p) => `${p.code} ${p.where}`)).to.deep.equal([])
      } finally {
        fs.rmSync(dir, {recursive: true, force: true})
      }
    })
  }
})

// rename took the old name away before it made the new one: into a directory with no room
// for it (a full image), the file was left named nowhere once the transaction was committed.
describe('a rename its new directory has no room for changes nothing; one over an existing name needs no room', () => {
  for (const [what, over] of [['to a new name', false], ['over an existing name', true]] as const) {
    it(what, () => {
      const dir = tmpDir()
      try {
        const img = newImage(dir, 16 * 1024 * 1024)
        edit(img, (ns, vol) => {
          ns.mkdir('/src')
          ns.mkdir('/d')
          ns.writeFile('/src/moving', Buffer.from('moving\n'))
          ns.writeFile('/d/old', Buffer.from('old\n'))
          // /d is inline (140 bytes in its inode): a 200-byte name needs its first block
          ns.writeFile('/fill', Buffer.alloc(vol.sb.freeBlocks * 4096, 1))
        })
        const want = read(img, (ns) => snapshot(ns))
        expect(read(img, (_ns, vol) => vol.sb.freeBlocks)).to.equal(0)
        const target = over ? '/d/old' : `/d/${'m'.repeat(200)}`
        const failed = committedAnyway(img, (vol) => namespace(vol, 'root').rename('/src/moving', target))
        expect(fsckImage(img, {repair: false}).problems.map((p) => `${p.code} ${p.where}`)).to.deep.equal([])
        const got = read(img, (ns) => snapshot(ns))
        if (over) {
          expect(failed).to.equal(null)
          const {'/src/moving': m, ...rest} = want
          expect(got).to.deep.equal({...rest, '/d/old': m})
        } else {
          expect(failed).to.equal('ENOSPC')
          expect(got).to.deep.equal(want)
        }
      } finally {
        fs.rmSync(dir, {recursive: true, force: true})
      }
    })
  }
})

// A symlink whose target needs a block: made first, its name stayed with no target written.
describe('a symlink whose target needs a block, on a full image, changes nothing', () => {
  it('ENOSPC; the directory as it was once the transaction is committed', () => {
    const dir = tmpDir()
    try {
      const img = newImage(dir, 16 * 1024 * 1024)
      edit(img, (ns, vol) => {
        ns.mkdir('/d')
        ns.writeFile('/fill', Buffer.alloc(vol.sb.freeBlocks * 4096, 1))
      })
      const want = read(img, (ns) => snapshot(ns))
      const failed = committedAnyway(img, (vol) => namespace(vol, 'root').symlink('t'.repeat(300), '/d/long'))
      expect(failed).to.equal('ENOSPC')
      expect(read(img, (ns) => snapshot(ns))).to.deep.equal(want)
      expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
