// A file larger than a Prism file can be (MAX_FILE_SIZE, 8 TiB), from every way in: it is
// refused by name before anything is made or replaced, the rest of the work goes on, and exit
// 1. (A 9 TiB sparse host file given to `cp -r` stopped the copy at it with an unnamed line,
// and what had been copied so far, with an empty file of its name, was published; a sparse
// tar member of 9 TiB stopped the whole import without naming it; `truncate -s 9T` named
// neither the file nor the size.)
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {MAX_FILE_SIZE} from '../src/format/constants.js'
import {imageContents, newImage, prism, read, sha256File, tmpDir} from './helpers.js'

const NINE_TIB = 9 * 2 ** 40

describe('a file larger than the image holds', () => {
  let dir: string
  let img: string
  let host: string
  const run = (cmd: string, ...args: string[]) => prism([cmd, '-i', img, ...args], {input: ''})
  const lines = (s: string) => s.trim().split('\n')

  before(function () {
    dir = tmpDir()
    host = path.join(dir, 'host')
    fs.mkdirSync(path.join(host, 'sub'), {recursive: true})
    fs.writeFileSync(path.join(host, 'a'), 'a\n')
    fs.writeFileSync(path.join(host, 'sub', 'z'), 'z\n')
    try {
      for (const [f, size] of [['big', NINE_TIB], ['sub/huge', MAX_FILE_SIZE + 1]] as const) {
        fs.writeFileSync(path.join(host, f), '')
        fs.truncateSync(path.join(host, f), size)
      }
    } catch {
      // (a host file system whose files stop short of 9 TiB: ext4 with 4 KiB blocks holds 16)
      this.skip()
    }
    fs.writeFileSync(path.join(host, 'sub', 'max'), '')
    fs.truncateSync(path.join(host, 'sub', 'max'), MAX_FILE_SIZE) // the largest there is: copied
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  beforeEach(() => {
    fs.rmSync(path.join(dir, 'disk.img'), {force: true})
    img = newImage(dir)
  })

  it('cp -r names each one and copies the rest; cp of one alone changes nothing', () => {
    const r = run('cp', '-r', host, 'root:/h')
    expect(r.status, r.stderr).to.equal(1)
    expect(lines(r.stderr).sort()).to.deep.equal([
      `prism: cannot copy '${host}/big': its size, ${NINE_TIB} bytes, is more than a Prism file holds (${MAX_FILE_SIZE}, 8 TiB)`,
      `prism: cannot copy '${host}/sub/huge': its size, ${MAX_FILE_SIZE + 1} bytes, is more than a Prism file holds (${MAX_FILE_SIZE}, 8 TiB)`,
    ])
    read(img, (ns) => {
      expect(ns.readdir('/h').map((e) => e.name).sort()).to.deep.equal(['a', 'sub'])
      expect(ns.readdir('/h/sub').map((e) => e.name).sort()).to.deep.equal(['max', 'z'])
      expect(ns.readFile('/h/sub/z').toString()).to.equal('z\n')
      expect(ns.stat('/h/sub/max').size).to.equal(MAX_FILE_SIZE)
    })
    // Alone, and onto a file that exists: refused before it is replaced.
    const before = sha256File(img)
    for (const dst of ['root:/h/a', 'root:/new']) {
      const one = run('cp', path.join(host, 'big'), dst)
      expect(one.status, one.stderr).to.equal(1)
      expect(lines(one.stderr)).to.have.length(1)
      expect(one.stderr).to.match(/^prism: cannot copy '.*\/big': its size, \d+ bytes, is more than a Prism file holds/)
    }
    expect(sha256File(img)).to.equal(before)
    const fsck = prism(['fsck', '-i', img])
    expect(fsck.status, fsck.stdout).to.equal(0)
  })

  it('import names a sparse member of 9 TiB and imports the rest', () => {
    const archive = path.join(dir, 'big.tar')
    execFileSync('tar', ['--sparse', '--sparse-version=1.0', '--format=pax', '-cf', archive, '-C', host, 'a', 'big', 'sub/z'])
    const r = run('import', 'root:/', archive)
    expect(r.status, r.stderr).to.equal(1)
    expect(lines(r.stderr)).to.deep.equal([`prism: big: its size, ${NINE_TIB} bytes, is more than a Prism file holds (${MAX_FILE_SIZE}, 8 TiB); not imported`])
    read(img, (ns) => {
      expect(ns.readdir('/').map((e) => e.name).sort()).to.deep.equal(['a', 'sub'])
      expect(ns.readFile('/sub/z').toString()).to.equal('z\n')
    })
  })

  it('truncate names the file and the size, and makes nothing', () => {
    expect(run('write', 'root:/f').status).to.equal(0) // (an empty file)
    const before = imageContents(img)
    const r = run('truncate', '-s', '9T', 'root:/f', 'root:/new')
    expect(r.status, r.stderr).to.equal(1)
    expect(lines(r.stderr)).to.deep.equal([
      `prism: cannot truncate root:/f to ${NINE_TIB} bytes: a Prism file holds at most ${MAX_FILE_SIZE} (8 TiB)`,
      `prism: cannot truncate root:/new to ${NINE_TIB} bytes: a Prism file holds at most ${MAX_FILE_SIZE} (8 TiB)`,
    ])
    expect(imageContents(img)).to.equal(before)
    const grow = run('truncate', '-s', `+${MAX_FILE_SIZE}`, 'root:/f')
    expect(grow.status, grow.stderr).to.equal(0)
    const more = run('truncate', '-s', '+1', 'root:/f')
    expect(more.status).to.equal(1)
    expect(more.stderr).to.equal(`prism: cannot truncate root:/f to ${MAX_FILE_SIZE + 1} bytes: a Prism file holds at most ${MAX_FILE_SIZE} (8 TiB)\n`)
  })
})
