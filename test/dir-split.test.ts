// A hashed directory grows by splitting buckets; a split that does not double the pointer
// table rewrites only the pointers that change (src/fs/dir.ts split). Names of every length
// (so buckets reach different local depths, and a bucket is split while the table is deeper
// than it), added and removed at random: every name is found, the listing is the model's, and
// fsck checks the table pointer by pointer.
import {expect} from 'chai'
import fc from 'fast-check'
import fs from 'node:fs'
import path from 'node:path'
import {fsckImage} from '../src/fsck/index.js'
import {edit, newImage, read, tmpDir} from './helpers.js'

describe('directory bucket splits', function () {
  this.timeout(600_000)

  it('names of every length added and removed at random: each found, the listing the model, fsck clean', () => {
    let run = 0
    const dir = tmpDir('prism-split-')
    try {
      fc.assert(fc.property(fc.integer({min: 0, max: 2 ** 31 - 1}), fc.integer({min: 3000, max: 12000}), (seed, count) => {
        const d = path.join(dir, `r${run++}`)
        fs.mkdirSync(d)
        const img = newImage(d, 256 << 20)
        let x = seed || 1
        const rnd = () => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32)
        const model = new Set<string>()
        edit(img, (ns) => {
          ns.mkdir('/d')
          for (let i = 0; i < count; i++) {
            // long names fill a bucket in a few entries, short ones take hundreds
            const len = rnd() < 0.3 ? 200 + Math.floor(rnd() * 55) : 1 + Math.floor(rnd() * 40)
            const name = `${i.toString(36)}_`.padEnd(len, String.fromCharCode(97 + Math.floor(rnd() * 26)))
            ns.writeFile(`/d/${name}`, Buffer.alloc(0))
            model.add(name)
            if (rnd() < 0.2) {
              const gone = [...model][Math.floor(rnd() * model.size)]
              ns.unlink(`/d/${gone}`)
              model.delete(gone)
            }
          }
        })
        read(img, (ns) => {
          expect(ns.readdir('/d').map((e) => e.name).sort()).to.deep.equal([...model].sort())
          for (const name of model) expect(ns.exists(`/d/${name}`), name).to.equal(true)
        })
        expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
      }), {numRuns: 4})
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
