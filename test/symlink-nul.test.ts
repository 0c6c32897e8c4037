// A symlink target holding a NUL byte (a damaged image: a size grown past the target, a
// damaged or missing block) is reported by fsck and repaired, and every command that reads
// targets fails on it with one line (EBADIMAGE) instead of crashing: cp -r out, export and
// ls -l name each such symlink and go on with the rest of the tree (exit 1).
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {loadExtents} from '../src/fs/extents.js'
import {edit, newImage, prism, read, tmpDir} from './helpers.js'

const LONG = 'target/'.repeat(40) + 'end' // 283 bytes: kept in a block, not in the inode

describe('symlink targets holding a NUL byte (a damaged image)', function () {
  this.timeout(120_000)
  let dir: string
  let img: string
  beforeEach(() => {
    dir = tmpDir('prism-symnul-')
    img = newImage(dir, 32 * 1024 * 1024)
    edit(img, (ns) => {
      ns.mkdir('/d')
      ns.writeFile('/d/keep.txt', Buffer.from('kept\n'))
      ns.symlink('readme.txt', '/d/grown')   // its size will pass its target: zeros follow
      ns.symlink(LONG, '/d/long')            // a NUL written into its block
      ns.symlink('x', '/d/zero')             // its one byte becomes NUL
      ns.symlink('keep.txt', '/d/fine')
    })
    // The damage, as a bad disk or a stray write would leave it.
    let longBlock = -1
    edit(img, (ns, vol) => {
      const grown = ns.resolve('/d/grown', false)
      grown.r.size = 20
      vol.idirty(grown)
      const zero = ns.resolve('/d/zero', false)
      zero.r.area[0] = 0
      vol.idirty(zero)
      longBlock = loadExtents(vol, ns.resolve('/d/long', false)).toArray()[0].p
    })
    const fd = fs.openSync(img, 'r+')
    fs.writeSync(fd, Buffer.from([0]), 0, 1, longBlock * BLOCK_SIZE + 100)
    fs.closeSync(fd)
  })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('fsck reports each (exit 4), and --repair cuts a target at its NUL or clears one that starts with it; the rest is kept', () => {
    const check = prism(['fsck', '-i', img])
    expect(check.status, check.stdout + check.stderr).to.equal(4)
    expect(check.stdout.match(/SYMLINK_NUL/g), check.stdout).to.have.length(3)
    const fix = prism(['fsck', '--repair', '-i', img])
    expect(fix.status, fix.stdout + fix.stderr).to.equal(1) // errors corrected
    expect(prism(['fsck', '-i', img]).status).to.equal(0)
    read(img, (ns) => {
      expect(ns.readlink('/d/grown')).to.equal('readme.txt')
      expect(ns.readlink('/d/long')).to.equal(LONG.slice(0, 100))
      expect(ns.readdir('/d').map((e) => e.name.toString()).sort()).to.deep.equal(['fine', 'grown', 'keep.txt', 'long'])
      expect(ns.readFile('/d/keep.txt').toString()).to.equal('kept\n')
      expect(ns.readlink('/d/fine')).to.equal('keep.txt')
    })
  })

  it('cp -r out, export to tar and ls -l name each (EBADIMAGE) and go on with the rest, exit 1; never a crash', () => {
    const out = path.join(dir, 'out')
    fs.mkdirSync(out)
    fs.writeFileSync(path.join(out, 'grown'), 'the user\'s own file')
    const cp = prism(['cp', '-r', '-T', '-i', img, 'root:/d', out])
    expect(cp.status, cp.stderr).to.equal(1)
    const lines = cp.stderr.trim().split('\n')
    expect(lines, cp.stderr).to.have.length(3)
    for (const l of lines) expect(l).to.match(/^prism: cannot read 'root:\/d\/(grown|long|zero)': symlink inode \d+: its target holds a NUL byte/)
    expect(cp.stderr).to.not.match(/TypeError|at Object|node:/)
    // A host file the damaged symlink would have replaced is left as it was; the rest is copied.
    expect(fs.readFileSync(path.join(out, 'grown'), 'utf8')).to.equal('the user\'s own file')
    expect(fs.readFileSync(path.join(out, 'keep.txt'), 'utf8')).to.equal('kept\n')
    expect(fs.readlinkSync(path.join(out, 'fine'))).to.equal('keep.txt')
    const tar = prism(['export', '-i', img, 'root:/d', path.join(dir, 'd.tar')])
    expect(tar.status, tar.stderr).to.equal(1)
    expect(tar.stderr.trim().split('\n').map((l) => /^prism: cannot read '([^']*)': .*its target holds a NUL byte/.exec(l)?.[1])).to.deep.equal(['root:/d/grown', 'root:/d/long', 'root:/d/zero'])
    expect(tar.stderr).to.not.match(/TypeError|at Object/)
    const members = execFileSync('tar', ['-tf', path.join(dir, 'd.tar')]).toString().trim().split('\n').sort()
    expect(members).to.deep.equal(['./', './fine', './keep.txt'])
    const ls = prism(['ls', '-l', '-i', img, 'root:/d'])
    expect(ls.stderr.trim().split('\n').map((l) => /^prism: cannot read '([^']*)': .*its target holds a NUL byte/.exec(l)?.[1])).to.deep.equal(['root:/d/grown', 'root:/d/long', 'root:/d/zero'])
    expect(ls.stderr).to.not.match(/TypeError|at Object/)
    expect(ls.status).to.equal(1)
    expect(ls.stdout).to.match(/ fine -> keep\.txt\n/).and.match(/ keep\.txt\n/)
  })
})
