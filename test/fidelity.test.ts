// A fileset holds a whole root tree exactly (issue 16): a host tree with every file type,
// attributes in every namespace, ACLs, other owners, set-id and sticky bits, nanosecond times,
// hard links across directories, sparse files and names that are not UTF-8 goes host -> image
// -> host through the real `prism cp -r` unchanged, as everything stat, getfattr and getfacl
// show; so does a clone's copy of it; and an export by a user who may not make devices or set
// trusted./security. attributes goes on, names each, and exits 1, as tar -x does.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fsckImage} from '../src/fsck/index.js'
import {timestampOfNs} from '../src/fs/inode.js'
import {newImage, prism, read, tmpDir} from './helpers.js'
import {buildTree, describeHost, has} from './tar-lib.js'

const isRoot = process.getuid?.() === 0

describe('cp -r keeps a whole root tree exactly, both ways', function () {
  this.timeout(240000)
  let dir: string
  let tree: string
  let img: string
  let want: Record<string, string>
  let skipped: string[]

  before(function () {
    if (!has('getfattr') || !has('getfacl') || !has('setfacl')) {
      console.log('      skipped: getfattr, getfacl or setfacl missing (apt-get install -y acl attr)')
      this.skip()
    }
    dir = tmpDir('prism-fidelity-')
    tree = path.join(dir, 'tree')
    fs.mkdirSync(tree)
    skipped = buildTree(tree)
    want = describeHost(tree, {atime: true})
    img = newImage(dir, 256 << 20)
  })

  it('host -> image -> host: everything stat, getfattr and getfacl show is unchanged', () => {
    const r = prism(['cp', '-r', tree, 'root:/t', '-i', img])
    expect(r.status, r.stderr).to.equal(0)
    expect(r.stderr).to.equal('')
    const out = path.join(dir, 'out')
    const e = prism(['cp', '-r', 'root:/t', out, '-i', img])
    expect(e.status, e.stderr).to.equal(isRoot ? 0 : 1)
    const got = describeHost(out, {atime: true})
    expect(got).to.deep.equal(want)
    // In the image: nanosecond times and device numbers as the host had them.
    read(img, (ns) => {
      expect(ns.stat('/t/dev/null').rdev).to.deep.equal(skipped.some((s) => s.startsWith('character')) ? undefined : {major: 1, minor: 3})
      const st = fs.lstatSync(path.join(tree, 'bin/busybox'), {bigint: true})
      expect(ns.stat('/t/bin/busybox').mtime).to.deep.equal(timestampOfNs(st.mtimeNs))
    })
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
  })

  it('a clone keeps all of it, and a change to an attribute of a shared file leaves the other fileset\'s file untouched', () => {
    expect(prism(['clone', 'root', 'c', '--mode', 'sync', '-i', img]).status).to.equal(0)
    expect(prism(['xattr', 'set', 'c:/t/etc/passwd', 'user.comment', 'changed', '-i', img]).status).to.equal(0)
    expect(prism(['chown', '5:5', 'c:/t/bin/busybox', '-i', img]).status).to.equal(0)
    expect(prism(['touch', '-d', '@1', 'c:/t/home/alice/doc', '-i', img]).status).to.equal(0)
    // root still exports exactly the tree; the clone only what changed.
    const out = path.join(dir, 'out-root')
    prism(['cp', '-r', 'root:/t', out, '-i', img])
    expect(describeHost(out, {atime: true})).to.deep.equal(want)
    const outc = path.join(dir, 'out-clone')
    prism(['cp', '-r', 'c:/t', outc, '-i', img])
    const got = describeHost(outc, {atime: true})
    const differs = Object.keys(want).filter((k) => want[k] !== got[k]).sort()
    const hardLinked = ['home/alice/doc', 'home/bob/doc-link', 'var/doc-third'].filter((k) => k in want)
    expect(differs).to.deep.equal([...new Set(['bin/busybox', 'etc/passwd', ...hardLinked])].sort())
    expect(got['etc/passwd']).to.contain(`user.comment=0x${Buffer.from('changed').toString('hex')}`)
    if (isRoot) expect(got['bin/busybox']).to.match(/mode=755 owner=5:5/) // chown drops setuid, as chown(2)
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
  })

  it('an export by a user who may not make devices or set trusted./security. attributes names each, goes on, and exits 1', function () {
    if (!isRoot) return this.skip()
    const probe = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'true'])
    if (probe.status !== 0) {
      console.log('      skipped: setpriv cannot run a command as nobody here')
      return this.skip()
    }
    const out = path.join(dir, 'out-nobody')
    fs.mkdirSync(out)
    fs.chownSync(out, 65534, 65534)
    fs.chmodSync(img, 0o644)
    fs.chmodSync(dir, 0o755)
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, path.join(__dirname, '..', 'bin', 'run.js'), 'cp', '-r', 'root:/t', path.join(out, 't'), '-i', img], {
      env: {...process.env, HOME: out, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'},
    })
    const lines = r.stderr.toString().split('\n').filter(Boolean)
    expect(r.status, r.stderr.toString()).to.equal(1)
    expect(lines.every((l) => l.startsWith('prism: ')), lines.join('\n')).to.equal(true)
    const devices = Object.entries(want).filter(([, v]) => /^(chr|blk) /.test(v)).length
    expect(lines.filter((l) => /cannot create (character|block) special file/.test(l)).length).to.equal(devices)
    // Each trusted.* and security.* attribute is either on the host copy (a kernel without an
    // LSM lets a file's owner set security.selinux) or named on stderr; trusted.* always needs root.
    const got = describeHost(path.join(out, 't'), {atime: true})
    let refused = 0
    for (const [k, v] of Object.entries(want)) {
      for (const m of v.match(/\b(trusted|security)\.[a-z.]+=0x[0-9a-f]+/g) ?? []) {
        const name = m.slice(0, m.indexOf('='))
        const named = lines.some((l) => l.startsWith(`prism: cannot set attribute ${name} of '`) && l.includes(`/t/${k}'`))
        expect(named || (got[k] ?? '').includes(m), `${name} of ${k}`).to.equal(true)
        if (named) refused++
        if (name.startsWith('trusted.')) expect(named, `${name} of ${k} needs root`).to.equal(true)
      }
    }
    expect(refused).to.equal(lines.filter((l) => l.includes('cannot set attribute')).length)
    // Everything else is there: contents, user.* attributes, ACLs, FIFOs, times.
    for (const [k, v] of Object.entries(want)) {
      if (/^(chr|blk) /.test(v)) { expect(got[k], k).to.equal(undefined); continue }
      const strip = (s: string) => s.replace(/ owner=\d+:\d+/, '').replace(/ ?(trusted|security)\.[a-z.]+=0x[0-9a-f]+/g, '').replace(/xattrs\{ /, 'xattrs{').replace(/ xattrs\{\}/, '').replace(/mode=[0-7]+/, (m) => `mode=${(parseInt(m.slice(5), 8) & 0o777).toString(8)}`)
      expect(strip(got[k] ?? 'missing'), k).to.equal(strip(v))
    }
  })
})
