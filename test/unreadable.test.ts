// An import skips what it cannot read, names each on stderr, finishes the rest and exits 1
// (issue 15, point 14), as cp -r does: an unreadable file, an unreadable or unsearchable
// directory, a FIFO, a socket, a device node, a file that vanishes meanwhile. The rest is one
// durable import. Unreadable files need a user who is not root (root reads everything): the
// CLI runs as nobody (setpriv) on an image and a tree it may use, or as the current user when
// the tests do not run as root; where neither works the test says why and is skipped.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {namespace, withImage} from '../src/fs/image.js'
import {copy} from '../src/ops/copy.js'
import {BIN, NOBODY, asUser, newImage, prism, read, snapshot, tmpDir} from './helpers.js'

describe('import of a tree with what cannot be read: skipped, named, exit 1, the rest durable', function () {
  this.timeout(120_000)
  let top: string
  before(() => {
    top = tmpDir('prism-unreadable-')
    fs.chmodSync(top, 0o755)
  })
  after(() => {
    // Modes 000 below: give access back before removing.
    spawnSync('chmod', ['-R', 'u+rwx', top])
    fs.rmSync(top, {recursive: true, force: true})
  })

  it('through the CLI, as a user who may not read everything', function () {
    const tree = path.join(top, 'tree')
    fs.mkdirSync(path.join(tree, 'sub'), {recursive: true})
    fs.mkdirSync(path.join(tree, 'locked'))
    fs.mkdirSync(path.join(tree, 'noexec'))
    fs.writeFileSync(path.join(tree, 'ok.txt'), 'ok\n')
    fs.writeFileSync(path.join(tree, 'secret.txt'), 'secret\n')
    fs.writeFileSync(path.join(tree, 'sub', 'deep.txt'), 'deep\n')
    fs.writeFileSync(path.join(tree, 'sub', 'secret2'), 'secret 2\n')
    fs.writeFileSync(path.join(tree, 'locked', 'x'), 'x\n')
    fs.writeFileSync(path.join(tree, 'noexec', 'y'), 'y\n')
    fs.symlinkSync('ok.txt', path.join(tree, 'link'))
    expect(spawnSync('mkfifo', [path.join(tree, 'fifo')]).status).to.equal(0)
    const sock = spawnSync('python3', ['-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(path.join(tree, 'sock'))})`])
    const haveSock = sock.status === 0
    const haveDev = spawnSync('mknod', [path.join(tree, 'null'), 'c', '1', '3']).status === 0
    fs.chmodSync(path.join(tree, 'secret.txt'), 0)
    fs.chmodSync(path.join(tree, 'sub', 'secret2'), 0)
    fs.chmodSync(path.join(tree, 'locked'), 0)
    fs.chmodSync(path.join(tree, 'noexec'), 0o644)
    const how = asUser(path.join(tree, 'secret.txt'))
    if ('skip' in how) {
      console.log(`      (skipped: ${how.skip})`)
      this.skip()
    }
    const {prefix} = how as {prefix: string[]}
    const img = newImage(top, 64 << 20)
    if (prefix.length) fs.chownSync(img, NOBODY, NOBODY)
    const run = (...args: string[]) => {
      const argv = [...prefix, process.execPath, BIN, ...args, '-i', img]
      // HOME: oclif looks for its data there, and nobody may not read root's.
      const r = spawnSync(argv[0], argv.slice(1), {cwd: top, env: {...process.env, HOME: top, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}})
      return {status: r.status ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString()}
    }
    const r = run('cp', '-r', 'tree', 'root:/t')
    expect(r.status, r.stderr).to.equal(1)
    const want = [
      "prism: cannot open 'tree/secret.txt' for reading: Permission denied",
      "prism: cannot open 'tree/sub/secret2' for reading: Permission denied",
      "prism: cannot open directory 'tree/locked': Permission denied",
      "prism: cannot stat 'tree/noexec/y': Permission denied",
    ]
    expect(r.stderr.split('\n').filter(Boolean).sort(), 'one line per entry not copied').to.deep.equal(want.sort())
    // The rest is there, durable (read by another process), and nothing else.
    expect(run('cat', 'root:/t/ok.txt').stdout).to.equal('ok\n')
    expect(run('cat', 'root:/t/sub/deep.txt').stdout).to.equal('deep\n')
    const snap = read(img, (ns) => snapshot(ns))
    // FIFOs, sockets and device nodes are copied as what they are (devices need no privilege: nothing is made on the host).
    expect(Object.keys(snap).sort()).to.deep.equal(['/t', '/t/fifo', '/t/link', '/t/locked', '/t/noexec', ...(haveDev ? ['/t/null'] : []), '/t/ok.txt', ...(haveSock ? ['/t/sock'] : []), '/t/sub', '/t/sub/deep.txt'].sort())
    read(img, (ns) => {
      expect(ns.stat('/t/fifo').type).to.equal('fifo')
      if (haveSock) expect(ns.stat('/t/sock').type).to.equal('socket')
      if (haveDev) expect(ns.stat('/t/null').rdev).to.deep.equal({major: 1, minor: 3})
    })
    expect(snap['/t/locked']).to.match(/^dir 0 /)
    const f = run('fsck')
    expect(f.status, f.stdout).to.equal(0)
    expect(f.stdout).to.not.match(/replayed/)
    // --json lists them too; the exit status is still 1.
    const j = run('cp', '-r', 'tree', 'root:/t2', '--json')
    expect(j.status).to.equal(1)
    expect(JSON.parse(j.stdout).errors.map((e: {code: string}) => e.code).sort()).to.deep.equal(
      ['EACCES', 'EACCES', 'EACCES', 'EACCES'].sort())
  })

  it('a file that vanishes between the directory listing and its lstat is named and skipped (library)', () => {
    const tree = path.join(top, 'vanish')
    fs.mkdirSync(tree)
    for (const n of ['a', 'b', 'c']) fs.writeFileSync(path.join(tree, n), n)
    const img = newImage(tmpDir('prism-vanish-img-'), 32 << 20)
    const mfs = fs as unknown as {lstatSync: typeof fs.lstatSync}
    const lstat = fs.lstatSync
    // Deletes b right before the import looks at it.
    mfs.lstatSync = ((p: fs.PathLike, opts?: fs.StatSyncOptions) => {
      if (String(p).endsWith('/vanish/b') && fs.existsSync(path.join(tree, 'b'))) fs.unlinkSync(path.join(tree, 'b'))
      return lstat(p, opts as fs.StatSyncOptions)
    }) as typeof fs.lstatSync
    let st
    try {
      st = withImage(img, {write: true}, (vol) => copy(vol, [{kind: 'host', path: tree}], {kind: 'image', fileset: 'root', path: '/v'}, {recursive: true}))
    } finally {
      mfs.lstatSync = lstat
    }
    expect(st.errors).to.deep.equal([{code: 'ENOENT', message: `cannot stat '${tree}/b': No such file or directory`}])
    expect(read(img, (ns) => ns.readdir('/v').map((e) => e.name))).to.deep.equal(['a', 'c'])
  })

  it('export: a file where the image has a directory is named and kept, the rest exported, exit 1', () => {
    const img = newImage(tmpDir('prism-unreadable-img-'), 32 << 20)
    withImage(img, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      ns.mkdir('/e/sub', {parents: true})
      ns.writeFile('/e/a', Buffer.from('a'))
      ns.writeFile('/e/sub/b', Buffer.from('b'))
    })
    const out = path.join(top, 'out')
    fs.mkdirSync(path.join(out, 'e'), {recursive: true})
    fs.writeFileSync(path.join(out, 'e', 'sub'), 'a file where the image has a directory\n')
    const r = prism(['cp', '-r', 'root:/e', out, '-i', img])
    expect(r.status).to.equal(1)
    expect(r.stderr).to.equal(`prism: cannot overwrite non-directory '${out}/e/sub' with directory 'root:/e/sub'\n`)
    expect(fs.readFileSync(path.join(out, 'e', 'a'), 'utf8')).to.equal('a')
    expect(fs.readFileSync(path.join(out, 'e', 'sub'), 'utf8')).to.equal('a file where the image has a directory\n')
  })
})
