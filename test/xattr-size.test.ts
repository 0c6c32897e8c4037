// An attribute inode whose size field is damaged (found by the fuzz test, seed 288876145): fsck
// and the commands allocated a buffer of that size before looking, and died with RangeError
// (exit 70) on a size past 4 GiB. Now a size larger than an attribute set can be, or than the
// inode's blocks or inline area hold, is EBADIMAGE for the commands and XATTR_SET_BAD for fsck.
import {expect} from 'chai'
import fs from 'node:fs'
import {PrismError} from '../src/errors.js'
import {withImage} from '../src/fs/image.js'
import {setXattr} from '../src/fs/xattr.js'
import {fsckImage} from '../src/fsck/index.js'
import {edit, newImage, read, tmpDir} from './helpers.js'

describe('an attribute inode with a damaged size', () => {
  for (const [what, size, value] of [['past 4 GiB, inline', 2 ** 32 + 6000, 'v'], ['past 4 GiB, in blocks', 2 ** 32 + 6000, 'v'.repeat(3000)], ['past its blocks', 9000, 'v'.repeat(3000)], ['past its inline area', 400, 'v']] as Array<[string, number, string]>) {
    it(what, () => {
      const dir = tmpDir()
      try {
        const img = newImage(dir, 16 * 1024 * 1024)
        edit(img, (ns, vol) => {
          ns.writeFile('/f', Buffer.from('data\n'))
          setXattr(vol, ns.resolve('/f', true), Buffer.from('user.k'), Buffer.from(value))
        })
        const xino = read(img, (ns) => ns.resolve('/f', true).r.xattrIno)
        expect(xino).to.be.greaterThan(0)
        withImage(img, {write: true}, (vol) => {
          const a = vol.iget(xino)
          a.r.size = size
          vol.idirty(a)
        })
        let err: unknown = null
        try {
          read(img, (ns) => ns.stat('/f'))
        } catch (e) {
          err = e
        }
        expect(err).to.be.instanceOf(PrismError)
        expect((err as PrismError).code).to.equal('EBADIMAGE')
        const check = fsckImage(img, {repair: false})
        expect(check.problems.map((p) => p.code)).to.include('XATTR_SET_BAD')
        fsckImage(img, {repair: true})
        expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
        expect(read(img, (ns) => ns.readFile('/f').toString())).to.equal('data\n')
      } finally {
        fs.rmSync(dir, {recursive: true, force: true})
      }
    })
  }
})
