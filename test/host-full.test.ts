// The host file system under the image fills up at every point of a command: the command
// either succeeds whole or fails with ENOSPC leaving the image as it was, never fails after
// its change was committed. A commit's home writes into never-written parts of the sparse
// image (the inode table past its last used block, refcount blocks) take new host blocks;
// before, a commit record could be down when such a write failed, and the command said
// "host file system is full" with its change made. Now the journal reserves those blocks
// on the host (fallocate) before its commit record. A small tmpfs, so root only.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {PrismError} from '../src/errors.js'
import {mkfs, namespace, withImage} from '../src/fs/image.js'
import {fsckImage} from '../src/fsck/index.js'
import {prism, snapshot, tmpDir} from './helpers.js'

const isRoot = process.getuid?.() === 0

/** Bytes the file system at `dir` has free. */
function freeBytes(dir: string): number {
  const st = fs.statfsSync(dir)
  return st.bavail * st.bsize
}

describe('the host file system fills up under a command: all of it or nothing of it', function () {
  this.timeout(300_000)
  let base: string
  let mnt: string

  before(function () {
    if (!isRoot) {
      console.log('      skipped: mounting a small tmpfs needs root')
      this.skip()
    }
    base = tmpDir()
    mnt = path.join(base, 'tfs')
    fs.mkdirSync(mnt)
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt])
    if (r.status !== 0) {
      console.log(`      skipped: cannot mount a tmpfs (${r.stderr.toString().trim()})`)
      this.skip()
    }
  })

  after(() => {
    if (mnt) spawnSync('umount', ['-l', mnt])
    if (base) fs.rmSync(base, {recursive: true, force: true})
  })

  const data = crypto.randomBytes(300 * 1024)
  const small = Array.from({length: 200}, (_, i) => Buffer.from(`small file ${i}\n`))
  const ops: Array<{name: string, run: (img: string) => void, cli: string[]}> = [
    {name: 'a 300 KiB file', run: (img) => withImage(img, {write: true}, (vol) => namespace(vol, 'root').writeFile('/big', data)), cli: ['write', 'root:/big']},
    {name: '200 small files (new inode-table blocks)', run: (img) => withImage(img, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      ns.mkdir('/many')
      small.forEach((b, i) => ns.writeFile(`/many/f${i}`, b))
    }), cli: []},
  ]

  for (const op of ops) {
    it(`${op.name}: at every fill of the host, done whole or refused with ENOSPC and the image as it was`, () => {
      const img = path.join(mnt, 'a.img')
      const filler = path.join(mnt, 'filler')
      let refused = 0
      let done = 0
      // From room to spare down to none, a block of the host at a time near the edge.
      for (let spare = 520 * 1024; spare >= 0; spare -= 4 * 1024) {
        fs.rmSync(img, {force: true})
        fs.rmSync(filler, {force: true})
        const vol = mkfs(img, {size: 8 * 1024 * 1024, inodeCount: 4096})
        namespace(vol, 'root').writeFile('/keep', Buffer.from('kept\n'))
        vol.close()
        const before = withImage(img, {write: false}, (v) => snapshot(namespace(v, 'root')))
        const fill = Math.max(0, freeBytes(mnt) - spare)
        fs.writeFileSync(filler, Buffer.alloc(fill))
        let err: unknown = null
        try {
          op.run(img)
        } catch (e) {
          err = e
        }
        fs.rmSync(filler)
        const after = withImage(img, {write: false}, (v) => snapshot(namespace(v, 'root')))
        if (err) {
          expect(err, `spare ${spare}`).to.be.instanceOf(PrismError)
          expect((err as PrismError).code, `spare ${spare}: ${(err as Error).message}`).to.equal('ENOSPC')
          expect(after, `spare ${spare}: the command failed, yet the image changed`).to.deep.equal(before)
          refused++
        } else {
          expect(Object.keys(after).length, `spare ${spare}`).to.be.greaterThan(Object.keys(before).length)
          if (op.name.startsWith('a 300')) withImage(img, {write: false}, (v) => expect(namespace(v, 'root').readFile('/big').equals(data)).to.equal(true))
          done++
        }
        const r = fsckImage(img, {repair: false})
        expect(r.exitCode, `spare ${spare}: ${r.problems.map((p) => p.message).join('; ')}`).to.equal(0)
      }
      // The sweep crossed the edge: some fills let it through, others not.
      expect(done, 'fills that let it through').to.be.greaterThan(0)
      expect(refused, 'fills that refused it').to.be.greaterThan(0)
    })
  }

  it('the CLI: exit 6 and one line, nothing made, at the fills where the library refuses', () => {
    const img = path.join(mnt, 'b.img')
    const filler = path.join(mnt, 'filler')
    let checked = 0
    for (let spare = 400 * 1024; spare >= 200 * 1024; spare -= 16 * 1024) {
      fs.rmSync(img, {force: true})
      expect(prism(['mkfs', img, '--size', '8M']).status).to.equal(0)
      fs.writeFileSync(filler, Buffer.alloc(Math.max(0, freeBytes(mnt) - spare)))
      const r = prism(['write', 'root:/big', '-i', img], {input: data})
      fs.rmSync(filler)
      const ls = prism(['ls', 'root:/', '-i', img]).stdout
      if (r.status === 0) expect(ls).to.equal('big\n')
      else {
        expect([r.status, r.stderr]).to.deep.equal([6, `prism: ${img}: host file system is full\n`])
        expect(ls, `spare ${spare}: exit 6, yet the file is there`).to.equal('')
        checked++
      }
    }
    expect(checked).to.be.greaterThan(0)
  })
})
