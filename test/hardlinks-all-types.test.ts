// Two names of one inode stay one inode, both ways, for every type that can have several: a
// file, a symlink, a device and a FIFO. `cp -r` in and out and `prism export` kept them for
// files only (a root tree's hard-linked symlinks came back as two inodes; an archive held two
// independent device or FIFO members), found by a fidelity probe.
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {prism, read, tmpDir} from './helpers.js'

const isRoot = process.getuid?.() === 0

describe('hard links of every type: cp -r both ways, export and import', function () {
  this.timeout(60_000)
  let dir: string
  let img: string
  let src: string
  const pairs: Array<[string, string]> = [['f', 'f2'], ['sl', 'sl2'], ['fifo', 'fifo2']]
  before(() => {
    dir = tmpDir()
    img = path.join(dir, 'disk.img')
    expect(prism(['mkfs', img, '--size', '64M']).status).to.equal(0)
    src = path.join(dir, 'src')
    fs.mkdirSync(src)
    fs.writeFileSync(path.join(src, 'f'), 'data')
    fs.symlinkSync('f', path.join(src, 'sl'))
    execFileSync('mkfifo', [path.join(src, 'fifo')])
    if (isRoot) {
      execFileSync('mknod', [path.join(src, 'dev'), 'c', '1', '3'])
      pairs.push(['dev', 'dev2'])
    }
    for (const [a, b] of pairs) fs.linkSync(path.join(src, a), path.join(src, b))
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  const sameInode = (root: string) => {
    for (const [a, b] of pairs) {
      const x = fs.lstatSync(path.join(root, a))
      const y = fs.lstatSync(path.join(root, b))
      expect([y.ino, y.nlink], `${root}: ${a} and ${b}`).to.deep.equal([x.ino, 2])
    }
  }

  const sameInImage = (fileset: string) => read(img, (ns) => {
    for (const [a, b] of pairs) {
      const x = ns.stat(`/t/${a}`)
      const y = ns.stat(`/t/${b}`)
      expect([y.ino, y.nlink], `${fileset}: ${a} and ${b}`).to.deep.equal([x.ino, 2])
    }
  }, fileset)

  it('cp -r into the image and out again keeps each pair one inode', () => {
    const r = prism(['cp', '-r', src, 'root:/t', '-i', img])
    expect(r.status, r.stderr).to.equal(0)
    sameInImage('root')
    const out = path.join(dir, 'out')
    const e = prism(['cp', '-r', 'root:/t', out, '-i', img])
    expect(e.status, e.stderr).to.equal(0)
    sameInode(out)
  })

  it('export writes the second name of each as a hard-link member, and import makes one inode again', () => {
    const tarball = path.join(dir, 'a.tar')
    const e = prism(['export', 'root', tarball, '-i', img])
    expect(e.status, e.stderr).to.equal(0)
    const listing = execFileSync('tar', ['-tvf', tarball]).toString()
    for (const [a, b] of pairs) expect(listing, `${b}`).to.match(new RegExp(`^h.* \\./t/${b} link to \\./t/${a}$`, 'm'))
    const i = prism(['import', '--create', 'back', tarball, '-i', img])
    expect(i.status, i.stderr).to.equal(0)
    sameInImage('back')
    expect(prism(['fsck', '-i', img]).status).to.equal(0)
  })
})
