// A directory of more entries than INODE_ORDER_MIN through a mount: the server lists it in
// inode order (src/server/adapter.ts listing, so that READDIRPLUS reads the inode table in
// order), across many READDIR(PLUS) requests whose offsets must hold: every name once, each
// entry with its own attributes, the same listing twice, nothing changed in the image.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {INODE_ORDER_MIN} from '../src/fs/dir.js'
import {edit} from './helpers.js'
import {Scratch, expectClean, skipWithoutFuse} from './mount-support.js'

const N = INODE_ORDER_MIN + 1500
/** Names in no order of their inodes (created in order of i). */
const nameOf = (i: number) => `${((i * 2654435761) >>> 0).toString(36)}-${i}`
const sizeOf = (i: number) => (i * 7) % 300

describe('prism mount: a directory of thousands of entries', function () {
  this.timeout(300_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
    s = new Scratch({inodeCount: 4 * N})
    edit(s.image, (ns) => {
      ns.mkdir('/big')
      for (let i = 0; i < N; i++) ns.writeFile(`/big/${nameOf(i)}`, Buffer.alloc(sizeOf(i), i & 0xff))
    })
  })

  after(async () => {
    await s?.cleanup()
  })

  it('is listed whole (each name once, each with its own size and type), the same twice; the image unchanged', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const dir = path.join(mp, 'big')
    const first = fs.readdirSync(dir, {withFileTypes: true})
    expect(first.length).to.equal(N)
    const names = first.map((d) => d.name)
    expect(new Set(names).size).to.equal(N)
    expect([...names].sort()).to.deep.equal(Array.from({length: N}, (_, i) => nameOf(i)).sort())
    for (const d of first) expect(d.isFile(), d.name).to.equal(true)
    for (const name of names) {
      const i = Number(name.split('-')[1])
      expect(fs.lstatSync(path.join(dir, name)).size, name).to.equal(sizeOf(i))
    }
    expect(fs.readdirSync(dir)).to.deep.equal(names)
    await s.umount(mp)
    await expectClean(s.image)
  })
})
