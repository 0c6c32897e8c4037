// A path that ends in '/' names a directory (README "Paths"), in every command that creates,
// replaces or removes the entry it names: a file or a symlink named with a trailing slash, or
// a new name with one for anything but a directory, is "not a directory" (exit 1, one line),
// and the image is left as it was: every file still there with its content. A final '.'
// names no entry either (`rm -r DIR/.` must not remove DIR). Found by a new user's trial:
// each of these went through, removing, replacing or writing through what it named, and
// `import FILE/` made a second entry of the same name.
import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {BIN, edit, prism, read, snapshot, tmpDir} from './helpers.js'

describe('trailing slashes and a final dot name no file (one line, exit 1, the image as it was)', function () {
  this.timeout(120_000)
  let dir: string
  let img: string
  let tarball: string
  let want: Record<string, string>
  before(() => {
    dir = tmpDir()
    img = path.join(dir, 'disk.img')
    expect(prism(['mkfs', img, '--size', '64M']).status).to.equal(0)
    edit(img, (ns) => {
      ns.writeFile('/f', Buffer.from('hello\n'))
      ns.writeFile('/big', Buffer.alloc(100_000, 7))
      ns.symlink('f', '/link')
      ns.mkdir('/d')
      ns.writeFile('/d/x', Buffer.from('x'))
      ns.symlink('/d', '/dl')
    })
    want = read(img, (ns) => snapshot(ns))
    fs.mkdirSync(path.join(dir, 't/d'), {recursive: true})
    fs.writeFileSync(path.join(dir, 't/d/x'), 'data\n')
    tarball = path.join(dir, 't.tar')
    execFileSync('tar', ['cf', tarball, '-C', path.join(dir, 't'), 'd'])
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  const refused: Array<[string, string[], string?]> = [
    ['import into a file', ['import', 'root:/f/', 'TAR']],
    ['import into a symlink to a file', ['import', 'root:/link/', 'TAR']],
    ['rm of a file', ['rm', 'root:/f/']],
    ['rm of a symlink', ['rm', 'root:/link/']],
    ['rm -r of a symlink to a directory', ['rm', '-r', 'root:/dl/']],
    ['mv of a file', ['mv', 'root:/f/', 'root:/g']],
    ['mv of a file to a new name', ['mv', 'root:/f', 'root:/new/']],
    ['cp onto a file', ['cp', 'root:/f', 'root:/big/']],
    ['cp from the host onto a file', ['cp', 'HOSTFILE', 'root:/big/']],
    ['ln -f onto a file', ['ln', '-f', 'root:/f', 'root:/big/']],
    ['ln -sf onto a file', ['ln', '-sf', 'f', 'root:/big/']],
    ['ln -s to a new name', ['ln', '-s', 'f', 'root:/new/']],
    ['ln to a new name', ['ln', 'root:/f', 'root:/new/']],
    ['write through a symlink', ['write', 'root:/link/'], 'x\n'],
    ['write to a new name', ['write', 'root:/new/'], 'x\n'],
    ['truncate through a symlink', ['truncate', '-s', '0', 'root:/link/']],
    ['truncate of a new name', ['truncate', '-s', '0', 'root:/new/']],
    ['mknod of a new name', ['mknod', 'root:/new/', 'p']],
    ['touch of a new name', ['touch', 'root:/new/']],
  ]
  for (const [what, args, input] of refused) {
    it(`${what}: ${args.join(' ')}`, () => {
      const host = path.join(dir, 'hostfile')
      fs.writeFileSync(host, 'host\n')
      const r = prism([...args.map((a) => (a === 'TAR' ? tarball : a === 'HOSTFILE' ? host : a)), '-i', img], {input})
      expect(r.status, r.stderr).to.equal(1)
      expect(r.stderr).to.match(/^prism: root:\/[a-z]+\/: not a directory\n$/)
      expect(read(img, (ns) => snapshot(ns))).to.deep.equal(want)
    })
  }

  for (const p of ['root:/d/.', 'root:/dl/.', 'root:/d/./']) {
    it(`rm -r ${p} removes nothing`, () => {
      const r = prism(['rm', '-r', p, '-i', img])
      expect(r.status, r.stderr).to.equal(1)
      expect(r.stderr).to.match(/^prism: .*cannot use '\.' as a name\n$/)
      expect(read(img, (ns) => snapshot(ns))).to.deep.equal(want)
    })
  }

  it('cp -r DIR/. (and . alone) copies what DIR holds into a directory, as GNU cp: host to image, image to host, image to image', () => {
    const work = path.join(dir, 'dot.img')
    fs.copyFileSync(img, work)
    const src = path.join(dir, 'dotsrc')
    fs.mkdirSync(path.join(src, 'inner'), {recursive: true})
    fs.writeFileSync(path.join(src, 'a'), 'a\n')
    fs.writeFileSync(path.join(src, 'inner', 'b'), 'b\n')
    const run = (args: string[], cwd?: string) => {
      const r = spawnSync(process.execPath, [BIN, ...args, '-i', work], {cwd, encoding: 'utf8', env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).to.equal(0)
    }
    run(['mkdir', 'root:/m1', 'root:/m2', 'root:/m3'])
    run(['cp', '-r', `${src}/.`, 'root:/m1'])
    run(['cp', '-r', '.', 'root:/m2'], src)
    run(['cp', '-r', 'root:/m1/.', 'root:/m3'])
    // (a target that does not exist yet is made a copy of the directory, as before)
    run(['cp', '-r', 'root:/m1/./', 'root:/m4'])
    const out = path.join(dir, 'dotout')
    fs.mkdirSync(out)
    run(['cp', '-r', 'root:/m1/.', out])
    const got = read(work, (ns) => snapshot(ns))
    for (const m of ['/m1', '/m2', '/m3', '/m4']) {
      expect(got[`${m}/a`], m).to.equal(got['/m1/a'])
      expect(got[`${m}/inner/b`], m).to.equal(got['/m1/inner/b'])
      expect(Object.keys(got).filter((k) => k.startsWith(`${m}/`)).map((k) => k.slice(m.length)).sort(), m).to.deep.equal(['/a', '/inner', '/inner/b'])
    }
    expect(fs.readFileSync(path.join(out, 'a'), 'utf8')).to.equal('a\n')
    expect(fs.readdirSync(out).sort()).to.deep.equal(['a', 'inner'])
    // DIR/.. would name the target's parent: refused, nothing copied.
    const before = read(work, (ns) => snapshot(ns))
    const r = prism(['cp', '-r', `${src}/inner/..`, 'root:/m1', '-i', work])
    expect([r.status, r.stderr]).to.deep.equal([1, `prism: cannot copy '${src}/inner/..' into a directory: name the directory itself\n`])
    expect(read(work, (ns) => snapshot(ns))).to.deep.equal(before)
    expect(prism(['fsck', '-i', work]).status).to.equal(0)
  })

  it('write with standard input a directory: an error, the file as it was', () => {
    const fd = fs.openSync(dir, 'r')
    try {
      const r = spawnSync(process.execPath, [BIN, 'write', 'root:/f', '-i', img], {stdio: [fd, 'pipe', 'pipe'], env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
      expect(r.status, r.stderr.toString()).to.equal(1)
      expect(r.stderr.toString()).to.equal('prism: cannot read standard input: is a directory\n')
    } finally {
      fs.closeSync(fd)
    }
    expect(read(img, (ns) => snapshot(ns))).to.deep.equal(want)
  })

  it('a trailing slash where a directory is meant still works', () => {
    const work = path.join(dir, 'w.img')
    fs.copyFileSync(img, work)
    for (const args of [['mkdir', 'root:/n/'], ['mv', 'root:/n', 'root:/e/'], ['cp', 'root:/f', 'root:/d/'], ['cp', 'root:/big', 'root:/dl/'],
      ['import', 'root:/imp/', tarball], ['rm', '-r', 'root:/e/']]) {
      const r = prism([...args, '-i', work])
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).to.equal(0)
    }
    const after = read(work, (ns) => snapshot(ns))
    expect(after["/d/f"]).to.equal(want["/f"])
    expect(after['/d/big']).to.equal(want['/big'])
    expect(after['/imp/d/x']).to.not.equal(undefined)
    expect(after['/e'], 'removed').to.equal(undefined)
    expect(prism(['fsck', '-i', work]).status).to.equal(0)
  })
})
