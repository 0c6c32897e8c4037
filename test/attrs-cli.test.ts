// The commands that change and show what inodes say about themselves, through the real CLI
// on real images: chown, touch, mknod, xattr, du and chmod -R. Each case checks the output,
// the exit status, the resulting image (through the library), that a clone sharing the
// files keeps its own, and that a refused command changes nothing.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {clone} from '../src/clone/clone.js'
import {withImage} from '../src/fs/image.js'
import {fsckImage} from '../src/fsck/index.js'
import {edit, newImage, prism, read, sha256File, tmpDir} from './helpers.js'

const B = (s: string) => Buffer.from(s)

describe('cli: chown, touch, mknod, xattr, du, chmod -R', function () {
  this.timeout(120000)
  let dir: string
  let img: string
  const run = (...args: string[]) => prism([...args, '-i', img])
  const clean = () => expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])

  beforeEach(() => {
    dir = tmpDir()
    img = newImage(dir)
    edit(img, (ns) => {
      ns.mkdir('/etc')
      ns.writeFile('/etc/passwd', B('root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n'))
      ns.writeFile('/etc/group', B('root:x:0:\nalice:x:1000:\nwww-data:x:33:\nstaff:x:50:alice\n'))
      ns.mkdir('/srv')
      ns.mkdir('/srv/site')
      ns.writeFile('/srv/site/index.html', B('<h1>hi</h1>'))
      ns.writeFile('/srv/site/app', B('#!/bin/sh\n'))
      ns.chmod('/srv/site/app', 0o6755)
      ns.setXattr('/srv/site/app', B('security.capability'), Buffer.from('0100000200200000000000000000000000000000', 'hex'))
      ns.symlink('index.html', '/srv/site/link')
    })
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'sync'}))
  })

  it('chown: names from the fileset\'s own passwd and group, OWNER:, :GROUP, -R, -h; set-id bits and capability dropped as Linux does; the clone keeps its own', () => {
    let r = run('chown', 'www-data:staff', 'root:/srv/site/index.html')
    expect(r.status, r.stderr).to.equal(0)
    r = run('chown', '-R', 'alice:', 'root:/srv/site')
    expect(r.status, r.stderr).to.equal(0)
    r = run('chown', '-h', ':33', 'root:/srv/site/link')
    expect(r.status, r.stderr).to.equal(0)
    read(img, (ns) => {
      expect([ns.stat('/srv/site').uid, ns.stat('/srv/site').gid]).to.deep.equal([1000, 1000])
      expect([ns.stat('/srv/site/index.html').uid, ns.stat('/srv/site/index.html').gid]).to.deep.equal([1000, 1000])
      const app = ns.stat('/srv/site/app')
      expect([app.uid, app.gid, app.perm.toString(8)]).to.deep.equal([1000, 1000, '755'])
      expect(ns.getXattr('/srv/site/app', B('security.capability'))).to.equal(null)
      expect([ns.stat('/srv/site/link').uid, ns.stat('/srv/site/link').gid]).to.deep.equal([1000, 33])
    })
    read(img, (ns) => {
      const app = ns.stat('/srv/site/app')
      expect([app.uid, app.gid, app.perm.toString(8)]).to.deep.equal([0, 0, '6755'])
      expect(ns.getXattr('/srv/site/app', B('security.capability'))).to.not.equal(null)
    }, 'c')
    clean()
  })

  it('chown: an unknown name is refused with one line and exit 1; other arguments are still done; a bad spec is a usage error', () => {
    const before = sha256File(img)
    let r = run('chown', 'nobody', 'root:/srv/site/index.html')
    expect(r.status).to.equal(1)
    expect(r.stderr.trim().split('\n')).to.have.length(1)
    expect(r.stderr).to.match(/^prism: invalid user 'nobody'/)
    expect(sha256File(img)).to.equal(before)
    r = run('chown', '33', 'root:/missing', 'root:/srv/site/index.html')
    expect(r.status).to.equal(1)
    expect(r.stderr.trim().split('\n')).to.have.length(1)
    read(img, (ns) => expect(ns.stat('/srv/site/index.html').uid).to.equal(33))
    r = run('chown', '', 'root:/srv')
    expect(r.status).to.equal(2)
    clean()
  })

  it('touch: nanosecond -d, -a and -m alone, -r from the image and from the host, -c, creation', () => {
    const cBefore = read(img, (ns) => ns.stat('/srv/site/index.html'), 'c')
    let r = run('touch', '-d', '2024-05-01T12:00:00.123456789Z', 'root:/srv/site/index.html')
    expect(r.status, r.stderr).to.equal(0)
    read(img, (ns) => {
      const st = ns.stat('/srv/site/index.html')
      expect([st.mtime, st.atime]).to.deep.equal([{s: 1714564800, ns: 123456789}, {s: 1714564800, ns: 123456789}])
    })
    r = run('touch', '-m', '-d', '@1.000000001', 'root:/srv/site/index.html')
    expect(r.status, r.stderr).to.equal(0)
    read(img, (ns) => {
      const st = ns.stat('/srv/site/index.html')
      expect([st.mtime, st.atime]).to.deep.equal([{s: 1, ns: 1}, {s: 1714564800, ns: 123456789}])
    })
    r = run('touch', '-a', '-r', 'root:/srv/site/index.html', 'root:/etc/passwd')
    expect(r.status, r.stderr).to.equal(0)
    read(img, (ns) => expect(ns.stat('/etc/passwd').atime).to.deep.equal({s: 1714564800, ns: 123456789}))
    const host = path.join(dir, 'ref')
    fs.writeFileSync(host, 'x')
    const st = fs.statSync(host, {bigint: true})
    r = run('touch', '-r', host, 'root:/new')
    expect(r.status, r.stderr).to.equal(0)
    read(img, (ns) => {
      expect(ns.stat('/new').mtime).to.deep.equal({s: Number(st.mtimeNs / 1_000_000_000n), ns: Number(st.mtimeNs % 1_000_000_000n)})
      expect(ns.stat('/new').size).to.equal(0)
    })
    r = run('touch', '-c', 'root:/absent')
    expect(r.status, r.stderr).to.equal(0)
    read(img, (ns) => expect(ns.exists('/absent')).to.equal(false))
    r = run('touch', '-d', 'yesterday-ish', 'root:/new')
    expect(r.status).to.equal(2)
    read(img, (ns) => expect([ns.stat('/srv/site/index.html').mtime, ns.stat('/srv/site/index.html').atime]).to.deep.equal([cBefore.mtime, cBefore.atime]), 'c')
    clean()
  })

  it('mknod: character and block devices with their numbers, FIFOs, sockets, modes and owners; bad input refused', () => {
    expect(run('mknod', 'root:/null', 'c', '1', '3').status).to.equal(0)
    expect(run('mknod', '-m', '660', '--owner', '0:staff', 'root:/sda', 'b', '8', '0').status).to.equal(0)
    expect(run('mknod', 'root:/fifo', 'p').status).to.equal(0)
    expect(run('mknod', 'root:/sock', 's').status).to.equal(0)
    expect(run('mknod', 'root:/big', 'c', '4294967295', '0x10').status).to.equal(0)
    read(img, (ns) => {
      expect(ns.stat('/null').rdev).to.deep.equal({major: 1, minor: 3})
      const sda = ns.stat('/sda')
      expect([sda.type, sda.perm.toString(8), sda.gid, sda.rdev]).to.deep.equal(['blockdev', '660', 50, {major: 8, minor: 0}])
      expect(ns.stat('/fifo').type).to.equal('fifo')
      expect(ns.stat('/sock').type).to.equal('socket')
      expect(ns.stat('/big').rdev).to.deep.equal({major: 4294967295, minor: 16})
    })
    const ls = run('ls', '-l', 'root:/')
    expect(ls.stdout).to.match(/^crw-r--r-- .* 1, 3 .* null$/m)
    expect(ls.stdout).to.match(/^brw-rw---- .* 8, 0 .* sda$/m)
    expect(ls.stdout).to.match(/^prw-r--r-- .* fifo$/m)
    expect(ls.stdout).to.match(/^srw-r--r-- .* sock$/m)
    const before = sha256File(img)
    for (const bad of [['root:/x', 'c'], ['root:/x', 'p', '1', '2'], ['root:/x', 'c', '1', '4294967296'], ['root:/x', 'q'], ['root:/x', 'c', '-1', '2']]) {
      const r = run('mknod', ...bad)
      expect(r.status, bad.join(' ')).to.equal(2)
      expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1)
    }
    expect(run('mknod', 'root:/null', 'c', '1', '3').status).to.equal(1)
    expect(sha256File(img)).to.equal(before)
    clean()
  })

  it('xattr: set in every encoding, get raw and encoded, list -d, rm; errors as setfattr; the clone keeps its own', () => {
    const f = path.join(dir, 'label')
    fs.writeFileSync(f, 'system_u:object_r:httpd_sys_content_t:s0\0')
    expect(run('xattr', 'set', 'root:/srv/site/index.html', 'user.text', '"a \\"quoted\\" \\001 value"').status).to.equal(0)
    expect(run('xattr', 'set', 'root:/srv/site/index.html', 'user.hex', '0xdeadbeef').status).to.equal(0)
    expect(run('xattr', 'set', 'root:/srv/site/index.html', 'user.b64', '0sAAEC').status).to.equal(0)
    expect(run('xattr', 'set', '--value-file', f, 'root:/srv/site/index.html', 'security.selinux').status).to.equal(0)
    read(img, (ns) => {
      expect(ns.getXattr('/srv/site/index.html', B('user.text'))).to.deep.equal(Buffer.from('a "quoted" \x01 value'))
      expect(ns.getXattr('/srv/site/index.html', B('user.hex'))).to.deep.equal(Buffer.from('deadbeef', 'hex'))
      expect(ns.getXattr('/srv/site/index.html', B('user.b64'))).to.deep.equal(Buffer.from([0, 1, 2]))
      expect(ns.getXattr('/srv/site/index.html', B('security.selinux'))).to.deep.equal(fs.readFileSync(f))
    })
    expect(run('xattr', 'get', 'root:/srv/site/index.html', 'user.text').stdout).to.equal('a "quoted" \x01 value')
    expect(run('xattr', 'get', '-e', 'hex', 'root:/srv/site/index.html', 'user.hex').stdout).to.equal('0xdeadbeef\n')
    expect(run('xattr', 'get', '-e', 'base64', 'root:/srv/site/index.html', 'user.b64').stdout).to.equal('0sAAEC\n')
    const list = run('xattr', 'list', '-d', 'root:/srv/site/index.html').stdout
    expect(list).to.contain('security.selinux="system_u:object_r:httpd_sys_content_t:s0\\000"')
    expect(list).to.contain('user.b64=0sAAEC')
    const js = JSON.parse(run('xattr', 'list', '--json', 'root:/srv/site/index.html').stdout)
    expect(js.xattrs.map((x: {name: string}) => x.name)).to.deep.equal(['security.selinux', 'user.b64', 'user.hex', 'user.text'])
    expect(run('xattr', 'rm', 'root:/srv/site/index.html', 'user.hex').status).to.equal(0)
    const before = sha256File(img)
    const cases: Array<[string[], number]> = [
      [['xattr', 'get', 'root:/srv/site/index.html', 'user.hex'], 1], [['xattr', 'rm', 'root:/srv/site/index.html', 'user.hex'], 1],
      [['xattr', 'set', 'root:/srv/site/index.html', 'bogus.x', '1'], 1], [['xattr', 'set', '--create', 'root:/srv/site/index.html', 'user.b64', '1'], 1],
      [['xattr', 'set', 'root:/srv/site/index.html', 'user.x', '0xabc'], 2], [['xattr', 'get', 'root:/srv/site/index.html'], 2],
      [['xattr', 'set', 'root:/srv/site/index.html', 'user.x'], 2], [['xattr', 'list', 'root:/nope'], 1],
    ]
    for (const [args, status] of cases) {
      const r = run(...args)
      expect(r.status, args.join(' ') + r.stderr).to.equal(status)
      expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1)
      expect(r.stderr).to.match(/^prism: /)
    }
    expect(sha256File(img)).to.equal(before)
    read(img, (ns) => expect(ns.listXattrs('/srv/site/index.html')).to.deep.equal([]), 'c')
    clean()
  })

  it('du: apparent size, used and shared blocks; a clone\'s files are shared until written', () => {
    edit(img, (ns) => ns.writeFile('/srv/big', Buffer.alloc(1 << 20, 1)))
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'd'}, {mode: 'sync'}))
    const du = (p: string) => JSON.parse(run('du', '-s', '--json', p).stdout)[0]
    const a = du('d:/srv')
    expect(a.apparentBytes).to.equal((1 << 20) + 11 + 10 + 10)
    expect(a.usedBlocks).to.equal(256)
    expect(a.sharedBlocks).to.equal(256)
    edit(img, (ns) => ns.writeFile('/srv/big', Buffer.alloc(1 << 20, 2)), 'd')
    const b = du('d:/srv')
    expect([b.usedBlocks, b.sharedBlocks]).to.deep.equal([256, 0])
    expect(du('root:/srv').sharedBlocks).to.equal(0)
    const text = run('du', '-h', 'd:/srv').stdout
    expect(text).to.match(/^\s*1\.0 MiB\s+1\.0 MiB\s+0 B\s+d:\/srv$/m)
    expect(text).to.match(/d:\/srv\/site$/m)
    clean()
  })

  it('chmod -R changes every file and directory below, not symlinks, and not the clone', () => {
    const r = run('chmod', '-R', 'go-rwx', 'root:/srv')
    expect(r.status, r.stderr).to.equal(0)
    read(img, (ns) => {
      expect(ns.stat('/srv').perm.toString(8)).to.equal('700')
      expect(ns.stat('/srv/site').perm.toString(8)).to.equal('700')
      expect(ns.stat('/srv/site/index.html').perm.toString(8)).to.equal('600')
      expect(ns.stat('/srv/site/app').perm.toString(8)).to.equal('6700')
      expect(ns.stat('/srv/site/link').perm.toString(8)).to.equal('777')
    })
    read(img, (ns) => expect(ns.stat('/srv/site/index.html').perm.toString(8)).to.equal('644'), 'c')
    clean()
  })
})
