// The FUSE binding (src/fuse over native/fuse) through a real mount: a MemFs served by a child
// process (test/fuse-server.ts), used from this process with fs.promises and from tools
// (python3, coreutils, util-linux), as root and as nobody. Each test checks what a program
// sees through the kernel, and where it matters what the filesystem received.
// Skipped, saying why, where the addon is not built, /dev/fuse is missing or we are not root.
import {expect} from 'chai'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {fuseMountAt} from '../src/fuse/index.js'
import {IOCTL_GET_INO} from './fuse-memfs.js'
import {asNobody, FUSE_TIMEOUT, FuseServer, py, run, runOk, skipWithoutFuse} from './fuse-support.js'

interface Stats {
  writes: {count: number, min: number, max: number, atLeast128k: number}
  reads: {count: number, min: number, max: number, atLeast128k: number}
  lookupErrors: number
  forgets: number
  nodes: number
  errors: string[]
  ops: Record<string, number>
  lookups: Record<string, number>
}

interface Resolved {
  ino: number
  nlink: number
  nlookup: number
  opens: number
  uid: number
  gid: number
  mode: number
  creatorPid: number
  size: number
}

const RENAMEAT2 = `
import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))
print(json.dumps(0 if r == 0 else ctypes.get_errno()))
`

async function errnoOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (e) {
    return (e as NodeJS.ErrnoException).code
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('FUSE binding: POSIX semantics through a mount', function () {
  this.timeout(FUSE_TIMEOUT)
  let srv: FuseServer
  let mp: string

  before(async function () {
    skipWithoutFuse(this)
    srv = await FuseServer.start({options: {allowOther: true, posixAcl: true}})
    mp = srv.mountpoint
    await fsp.mkdir(path.join(mp, 'pub'))
    await fsp.chmod(path.join(mp, 'pub'), 0o1777)
  })

  after(async () => {
    await srv?.cleanup()
  })

  const P = (...parts: string[]): string => path.join(mp, ...parts)

  it('negotiates 1 MiB writes, readdirplus, atomic O_TRUNC and POSIX ACLs, and mounts nosuid,nodev with default_permissions', () => {
    expect(srv.conn.maxWrite).to.equal(1 << 20)
    expect(srv.conn.readdirplus).to.equal(true)
    expect(srv.conn.atomicOTrunc).to.equal(true)
    expect(srv.conn.posixAcl).to.equal(true)
    expect(srv.conn.writebackCache).to.equal(false)
    expect(srv.conn.handleKillpriv).to.equal(false)
    expect(srv.conn.timeGran).to.equal(1)
    const m = fuseMountAt(mp)!
    expect(m.fstype).to.equal('fuse.prism')
    expect(m.source).to.equal('prism')
    expect(m.options).to.include.members(['rw', 'nosuid', 'nodev'])
    expect(m.superOptions).to.include.members(['default_permissions', 'allow_other'])
    expect(m.device).to.equal(srv.device)
  })

  it('creates, writes, reads, appends, truncates (also through a descriptor) and truncates at open', async () => {
    const f = P('a.txt')
    await fsp.writeFile(f, 'hello world')
    expect(await fsp.readFile(f, 'utf8')).to.equal('hello world')
    await fsp.appendFile(f, '!')
    expect(await fsp.readFile(f, 'utf8')).to.equal('hello world!')
    await fsp.truncate(f, 5)
    expect(await fsp.readFile(f, 'utf8')).to.equal('hello')
    await fsp.truncate(f, 8)
    expect(await fsp.readFile(f)).to.deep.equal(Buffer.from('hello\0\0\0'))
    const h = await fsp.open(f, 'r+')
    await h.truncate(2)
    await h.write('Y', 1)
    await h.close()
    expect(await fsp.readFile(f, 'utf8')).to.equal('hY')
    await fsp.writeFile(f, 'z') // O_TRUNC: atomic, in open
    expect(await fsp.readFile(f, 'utf8')).to.equal('z')
    expect((await fsp.stat(f)).size).to.equal(1)
    expect((await srv.call<Resolved>('resolve', {path: '/a.txt'})).size).to.equal(1)
  })

  it('renames: over an existing file, a directory across directories, RENAME_NOREPLACE and RENAME_EXCHANGE', async () => {
    await fsp.writeFile(P('r1'), 'one')
    await fsp.writeFile(P('r2'), 'two')
    const victim = await srv.call<Resolved>('resolve', {path: '/r2'})
    await fsp.rename(P('r1'), P('r2'))
    expect(await fsp.readFile(P('r2'), 'utf8')).to.equal('one')
    expect(await errnoOf(fsp.stat(P('r1')))).to.equal('ENOENT')
    // the replaced inode is gone once the kernel forgets it
    for (let i = 0; i < 50 && await srv.call<boolean>('alive', {ino: victim.ino}); i++) await sleep(100)
    expect(await srv.call<boolean>('alive', {ino: victim.ino})).to.equal(false)

    await fsp.mkdir(P('d1'))
    await fsp.mkdir(P('d2'))
    await fsp.mkdir(P('d1', 'sub'))
    expect((await fsp.stat(P('d1'))).nlink).to.equal(3)
    await fsp.rename(P('d1', 'sub'), P('d2', 'sub'))
    expect((await fsp.stat(P('d1'))).nlink).to.equal(2)
    expect((await fsp.stat(P('d2'))).nlink).to.equal(3)

    await fsp.writeFile(P('n1'), 'n1')
    await fsp.writeFile(P('n2'), 'n2')
    expect(await py(RENAMEAT2, P('n1'), P('n2'), '1')).to.equal(17) // RENAME_NOREPLACE: EEXIST
    expect(await fsp.readFile(P('n1'), 'utf8')).to.equal('n1')
    expect(await fsp.readFile(P('n2'), 'utf8')).to.equal('n2')
    expect(await py(RENAMEAT2, P('n1'), P('n3'), '1')).to.equal(0)
    expect(await fsp.readFile(P('n3'), 'utf8')).to.equal('n1')
    expect(await py(RENAMEAT2, P('n3'), P('n2'), '2')).to.equal(0) // RENAME_EXCHANGE
    expect(await fsp.readFile(P('n2'), 'utf8')).to.equal('n1')
    expect(await fsp.readFile(P('n3'), 'utf8')).to.equal('n2')
    expect(await py(RENAMEAT2, P('n3'), P('nothing'), '2')).to.equal(2) // ENOENT: nothing to exchange with
  })

  it('hard links: nlink and ctime are right at once on every name (attributes cached for 30 s)', async () => {
    await fsp.writeFile(P('h1'), 'linked')
    const s0 = await fsp.stat(P('h1'), {bigint: true})
    expect(s0.nlink).to.equal(1n)
    expect(s0.ino > 2n ** 40n).to.equal(true) // MemFs's node ids: 64-bit, not truncated
    await sleep(5)
    await fsp.link(P('h1'), P('h2'))
    await fsp.link(P('h1'), P('pub', 'h3'))
    const names = [P('h1'), P('h2'), P('pub', 'h3')]
    const all = await Promise.all(names.map((n) => fsp.stat(n, {bigint: true})))
    for (const s of all) {
      expect(s.nlink).to.equal(3n)
      expect(s.ino).to.equal(s0.ino)
      expect(s.ctimeNs).to.equal(all[0]!.ctimeNs)
    }
    expect(all[0]!.ctimeNs > s0.ctimeNs).to.equal(true)
    await sleep(5)
    await fsp.unlink(P('h2'))
    const after = await Promise.all([P('h1'), P('pub', 'h3')].map((n) => fsp.stat(n, {bigint: true})))
    for (const s of after) {
      expect(s.nlink).to.equal(2n)
      expect(s.ctimeNs).to.equal(after[0]!.ctimeNs)
    }
    expect(after[0]!.ctimeNs > all[0]!.ctimeNs).to.equal(true)
    const r = await srv.call<Resolved>('resolve', {path: '/h1'})
    expect(r.nlink).to.equal(2)
    expect(BigInt(r.ino)).to.equal(s0.ino)
  })

  it('names, symlink targets and renames with bytes that are not UTF-8 round-trip exactly', async () => {
    const name = Buffer.from([0x66, 0xff, 0xfe, 0x80, 0x41, 0xc3])
    const dirB = Buffer.from(mp + '/')
    const file = Buffer.concat([dirB, name])
    await fsp.writeFile(file, 'bytes')
    const list = (await fsp.readdir(Buffer.from(mp) as unknown as string, {encoding: 'buffer'})) as Buffer[]
    expect(list.some((n) => n.equals(name))).to.equal(true)
    expect(await fsp.readFile(file, 'utf8')).to.equal('bytes')
    const name2 = Buffer.from([0xe9, 0x74, 0xe9, 0x0a, 0x09])
    await fsp.rename(file, Buffer.concat([dirB, name2]))
    const list2 = (await fsp.readdir(Buffer.from(mp) as unknown as string, {encoding: 'buffer'})) as Buffer[]
    expect(list2.some((n) => n.equals(name2))).to.equal(true)
    expect(list2.some((n) => n.equals(name))).to.equal(false)
    const target = Buffer.from([0x2e, 0x2f, 0xff, 0x80, 0x2f, 0xc0, 0xaf])
    const link = Buffer.concat([dirB, Buffer.from('lnk'), name])
    await fsp.symlink(target, link)
    expect((await fsp.readlink(link, {encoding: 'buffer'})).equals(target)).to.equal(true)
  })

  it('utimensat: atime and mtime with nanoseconds, each alone, before 1970, and UTIME_NOW', async () => {
    const f = P('times')
    await fsp.writeFile(f, '')
    const code = `
import json, os, sys
p = sys.argv[1]
os.utime(p, ns=(int(sys.argv[2]), int(sys.argv[3])))
s = os.stat(p)
print(json.dumps([str(s.st_atime_ns), str(s.st_mtime_ns)]))`
    expect(await py(code, f, '1234567890123456789', '1111111111987654321')).to.deep.equal(['1234567890123456789', '1111111111987654321'])
    expect(await py(code, f, '-123456789', '999999999')).to.deep.equal(['-123456789', '999999999'])
    // one at a time: touch -a / -m leave the other (UTIME_OMIT)
    await runOk('touch', ['-a', '-d', '@1500000000.111111111', f])
    let s = await fsp.stat(f, {bigint: true})
    expect(s.atimeNs).to.equal(1500000000111111111n)
    expect(s.mtimeNs).to.equal(999999999n)
    await runOk('touch', ['-m', '-d', '@1600000000.222222222', f])
    s = await fsp.stat(f, {bigint: true})
    expect(s.atimeNs).to.equal(1500000000111111111n)
    expect(s.mtimeNs).to.equal(1600000000222222222n)
    const before = BigInt(Date.now() - 2000) * 1_000_000n
    await runOk('touch', [f]) // UTIME_NOW for both
    s = await fsp.stat(f, {bigint: true})
    expect(s.atimeNs > before && s.mtimeNs > before).to.equal(true)
  })

  it('passes the caller\'s credentials: files made by nobody belong to nobody, with its pid and umask; setgid directories give their group', async () => {
    const r = await asNobody(`cd ${mp}/pub && echo $$ > f && mkdir d && ln -s f l && mkfifo p && umask 027 && mkdir u && echo ok`)
    expect(r.stderr).to.equal('')
    expect(r.stdout.trim()).to.equal('ok')
    for (const n of ['f', 'd', 'l', 'p', 'u']) {
      const s = await fsp.lstat(P('pub', n))
      expect([n, s.uid, s.gid]).to.deep.equal([n, 65534, 65534])
    }
    const shellPid = Number((await fsp.readFile(P('pub', 'f'), 'utf8')).trim())
    expect((await srv.call<Resolved>('resolve', {path: '/pub/f'})).creatorPid).to.equal(shellPid)
    expect((await fsp.stat(P('pub', 'u'))).mode & 0o7777).to.equal(0o750)
    // the kernel checks permissions with the credentials: nobody cannot write root's file, nor chown
    await fsp.writeFile(P('pub', 'roots'), 'x', {mode: 0o644})
    expect((await asNobody(`echo y > ${mp}/pub/roots`)).code).to.not.equal(0)
    expect((await asNobody(`chown 0 ${mp}/pub/f`)).code).to.not.equal(0)
    // a setgid directory passes its group on, and its setgid bit to new directories
    await fsp.mkdir(P('pub', 'sg'))
    await fsp.chown(P('pub', 'sg'), 0, 4321)
    await fsp.chmod(P('pub', 'sg'), 0o2777)
    const r2 = await asNobody(`cd ${mp}/pub/sg && touch file && mkdir dir && echo ok`)
    expect(r2.stdout.trim()).to.equal('ok')
    const fileSt = await fsp.stat(P('pub', 'sg', 'file'))
    const dirSt = await fsp.stat(P('pub', 'sg', 'dir'))
    expect([fileSt.uid, fileSt.gid]).to.deep.equal([65534, 4321])
    expect([dirSt.uid, dirSt.gid, dirSt.mode & 0o2000]).to.deep.equal([65534, 4321, 0o2000])
  })

  it('a write by a non-owner clears setuid and setgid (the kernel does it: killpriv is left to it)', async () => {
    const f = P('pub', 'suid')
    await fsp.writeFile(f, 'x')
    await fsp.chmod(f, 0o6777)
    expect((await fsp.stat(f)).mode & 0o7777).to.equal(0o6777)
    const r = await asNobody(`echo more >> ${f}`)
    expect(r.code).to.equal(0)
    expect((await fsp.stat(f)).mode & 0o7777).to.equal(0o0777)
  })

  it('xattrs in user., trusted. and security., 64 KiB values, the size probe, ERANGE, XATTR_CREATE/REPLACE and removal', async () => {
    const f = P('xa')
    await fsp.writeFile(f, '')
    const big = Buffer.alloc(65536)
    for (let i = 0; i < big.length; i++) big[i] = (i * 131 + 7) & 0xff
    const code = `
import ctypes, errno, json, os, sys
p = sys.argv[1]
big = bytes((i * 131 + 7) & 0xff for i in range(65536))
os.setxattr(p, 'user.big', big)
os.setxattr(p, 'trusted.t', b'\\x00\\xff\\x01')
os.setxattr(p, 'security.s', b'sec')
os.setxattr(p, os.fsdecode(b'user.\\xff\\xfe'), b'\\xc3')
out = {}
out['same'] = os.getxattr(p, 'user.big') == big
out['trusted'] = list(os.getxattr(p, 'trusted.t'))
out['odd'] = list(os.getxattr(p, os.fsdecode(b'user.\\xff\\xfe')))
out['names'] = sorted(os.fsencode(n).hex() for n in os.listxattr(p))
libc = ctypes.CDLL(None, use_errno=True)
libc.getxattr.restype = ctypes.c_ssize_t
libc.listxattr.restype = ctypes.c_ssize_t
out['probe'] = libc.getxattr(p.encode(), b'user.big', None, 0)
buf = ctypes.create_string_buffer(100)
out['small'] = [libc.getxattr(p.encode(), b'user.big', buf, 100), ctypes.get_errno()]
out['lprobe'] = libc.listxattr(p.encode(), None, 0)
out['lsmall'] = [libc.listxattr(p.encode(), buf, 5), ctypes.get_errno()]
def err(f):
    try:
        f()
        return 0
    except OSError as e:
        return e.errno
out['create'] = err(lambda: os.setxattr(p, 'user.big', b'x', os.XATTR_CREATE))
out['replace'] = err(lambda: os.setxattr(p, 'user.none', b'x', os.XATTR_REPLACE))
out['replaced'] = err(lambda: os.setxattr(p, 'trusted.t', b'new', os.XATTR_REPLACE))
os.removexattr(p, 'security.s')
out['removed'] = err(lambda: os.getxattr(p, 'security.s'))
out['missing'] = err(lambda: os.getxattr(p, 'user.none'))
print(json.dumps(out))`
    const out = await py(code, f) as Record<string, unknown>
    const names = ['user.big', 'trusted.t', 'security.s', Buffer.concat([Buffer.from('user.'), Buffer.from([0xff, 0xfe])])]
    expect(out.same).to.equal(true)
    expect(out.trusted).to.deep.equal([0, 255, 1])
    expect(out.odd).to.deep.equal([0xc3])
    expect(out.names).to.deep.equal(names.map((n) => Buffer.from(n).toString('hex')).sort())
    expect(out.probe).to.equal(65536)
    expect(out.small).to.deep.equal([-1, 34]) // ERANGE
    expect(out.lprobe).to.equal(names.reduce((a, n) => a + Buffer.from(n).length + 1, 0))
    expect(out.lsmall).to.deep.equal([-1, 34])
    expect(out.create).to.equal(17) // EEXIST
    expect(out.replace).to.equal(61) // ENODATA
    expect(out.replaced).to.equal(0)
    expect(out.removed).to.equal(61)
    expect(out.missing).to.equal(61)
  })

  it('the kernel enforces a POSIX ACL held in system.posix_acl_access (default_permissions + posixAcl)', async () => {
    const f = P('pub', 'acl')
    await fsp.writeFile(f, 'secret')
    await fsp.chmod(f, 0o640)
    expect((await asNobody(`cat ${f}`)).code).to.not.equal(0)
    // version 2; entries (tag, perm, id): USER_OBJ rw, USER 65534 r, GROUP_OBJ r, MASK r, OTHER none
    const acl = `
import os, struct, sys
e = lambda tag, perm, id: struct.pack('<HHI', tag, perm, id)
u = 0xffffffff
os.setxattr(sys.argv[1], 'system.posix_acl_access', struct.pack('<I', 2) + e(1, 6, u) + e(2, 4, 65534) + e(4, 4, u) + e(0x10, 4, u) + e(0x20, 0, u))
print(1)`
    await py(acl, f)
    const r = await asNobody(`cat ${f}`)
    expect([r.code, r.stdout]).to.deep.equal([0, 'secret'])
    expect((await asNobody(`echo x >> ${f}`)).code).to.not.equal(0) // the ACL gives read only
  })

  it('mknod: a FIFO that works and a character device that nodev keeps closed', async () => {
    const code = `
import json, os, stat, sys
d = sys.argv[1]
os.mkfifo(os.path.join(d, 'fifo'), 0o600)
os.mknod(os.path.join(d, 'null'), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
s1 = os.stat(os.path.join(d, 'fifo'))
s2 = os.stat(os.path.join(d, 'null'))
try:
    open(os.path.join(d, 'null'), 'rb')
    opened = 0
except OSError as e:
    opened = e.errno
print(json.dumps([stat.S_ISFIFO(s1.st_mode), stat.S_ISCHR(s2.st_mode), os.major(s2.st_rdev), os.minor(s2.st_rdev), opened]))`
    expect(await py(code, mp)).to.deep.equal([true, true, 1, 3, 13]) // EACCES on a nodev mount
    const r = await run('sh', ['-c', `(echo through > ${P('fifo')} &) ; cat ${P('fifo')}`], {timeoutMs: 10_000})
    expect(r.stdout).to.equal('through\n')
  })

  it('fallocate (mode 0, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE), sparse files and SEEK_DATA/SEEK_HOLE', async () => {
    const f = P('falloc')
    await runOk('fallocate', ['-l', '1MiB', f])
    let s = await fsp.stat(f)
    expect([s.size, s.blocks]).to.deep.equal([1 << 20, 2048])
    await runOk('fallocate', ['-n', '-o', '1MiB', '-l', '1MiB', f])
    s = await fsp.stat(f)
    expect([s.size, s.blocks]).to.deep.equal([1 << 20, 4096])
    await fsp.writeFile(f, Buffer.alloc(1 << 20, 0x61))
    await runOk('fallocate', ['-p', '-o', '128KiB', '-l', '256KiB', f])
    const data = await fsp.readFile(f)
    expect(data.subarray(0, 131072).every((b) => b === 0x61)).to.equal(true)
    expect(data.subarray(131072, 393216).every((b) => b === 0)).to.equal(true)
    expect(data.subarray(393216).every((b) => b === 0x61)).to.equal(true)
    expect((await fsp.stat(f)).blocks).to.equal(2048 - 512)
    await runOk('fallocate', ['-z', '-o', '0', '-l', '4KiB', f])
    expect((await fsp.readFile(f)).subarray(0, 4096).every((b) => b === 0)).to.equal(true)

    const sparse = P('sparse')
    const h = await fsp.open(sparse, 'w')
    await h.write(Buffer.alloc(4096, 0x62), 0, 4096, 1 << 20)
    await h.close()
    s = await fsp.stat(sparse)
    expect([s.size, s.blocks]).to.deep.equal([(1 << 20) + 4096, 128])
    const seek = `
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
r = [os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE), os.lseek(fd, (1 << 20) + 10, os.SEEK_HOLE)]
try:
    os.lseek(fd, (1 << 20) + 4096, os.SEEK_DATA)
except OSError as e:
    r.append(e.errno)
print(json.dumps(r))`
    expect(await py(seek, sparse)).to.deep.equal([1 << 20, 0, (1 << 20) + 4096, 6]) // ENXIO past the end
    expect((await fsp.readFile(sparse)).subarray(0, 1 << 20).every((b) => b === 0)).to.equal(true)
  })

  it('statfs answers with the filesystem\'s figures', async () => {
    const v = await py('import json, os, sys; s = os.statvfs(sys.argv[1]); print(json.dumps([s.f_bsize, s.f_frsize, s.f_blocks, s.f_files, s.f_namemax]))', mp)
    expect(v).to.deep.equal([4096, 4096, 1 << 20, 1 << 20, 255])
  })

  it('large I/O reaches the filesystem in big chunks: 1 MiB writes, reads of 128 KiB and more (1 MiB direct)', async () => {
    await srv.call('resetStats')
    const f = P('big')
    let r = await run('dd', ['if=/dev/zero', `of=${f}`, 'bs=1M', 'count=32', 'conv=fsync'], {timeoutMs: 60_000})
    expect(r.code).to.equal(0)
    let st = await srv.call<Stats>('stats')
    expect(st.writes.max).to.equal(1 << 20)
    expect(st.writes.atLeast128k).to.equal(st.writes.count)
    expect(st.writes.count).to.equal(32)
    await srv.call('resetStats')
    r = await run('dd', [`if=${f}`, 'of=/dev/null', 'bs=1M'], {timeoutMs: 60_000})
    expect(r.code).to.equal(0)
    st = await srv.call<Stats>('stats')
    expect(st.reads.count).to.be.greaterThan(0)
    expect(st.reads.min).to.be.at.least(128 * 1024)
    await srv.call('resetStats')
    r = await run('dd', [`if=${f}`, 'of=/dev/null', 'bs=1M', 'iflag=direct'], {timeoutMs: 60_000})
    st = await srv.call<Stats>('stats')
    expect(st.reads.max).to.equal(1 << 20)
  })

  it('a file unlinked while open stays readable and writable until its last close, then goes', async () => {
    const f = P('doomed')
    const h = await fsp.open(f, 'w+')
    await h.write('still here')
    const ino = (await srv.call<Resolved>('resolve', {path: '/doomed'})).ino
    await fsp.unlink(f)
    expect(await errnoOf(fsp.stat(f))).to.equal('ENOENT')
    const buf = Buffer.alloc(10)
    await h.read(buf, 0, 10, 0)
    expect(buf.toString()).to.equal('still here')
    await h.write(' and more', 10)
    expect((await h.stat()).nlink).to.equal(0)
    const all = Buffer.alloc(19)
    await h.read(all, 0, 19, 0)
    expect(all.toString()).to.equal('still here and more')
    expect(await srv.call<boolean>('alive', {ino})).to.equal(true)
    await h.close()
    for (let i = 0; i < 50 && await srv.call<boolean>('alive', {ino}); i++) await sleep(100)
    expect(await srv.call<boolean>('alive', {ino})).to.equal(false)
  })

  it('a handler\'s failure is answered once: its errno, or EIO (reported) for a throw that is not one', async () => {
    expect(await errnoOf(fsp.stat(P('enospc-me')))).to.equal('ENOSPC')
    expect(await errnoOf(fsp.stat(P('throw-me')))).to.equal('EIO')
    const st = await srv.call<Stats>('stats')
    expect(st.errors.some((e) => e.startsWith('lookup: a bug in a handler'))).to.equal(true)
    expect(await errnoOf(fsp.stat(P('no-such')))).to.equal('ENOENT')
    expect(await errnoOf(fsp.rmdir(P('d2')))).to.equal('ENOTEMPTY')
  })

  it('readdir(plus) of 3000 entries lists every name once and keeps the lookup counts right', async () => {
    await fsp.mkdir(P('many'))
    const names: string[] = []
    for (let i = 0; i < 3000; i++) names.push(`entry-${String(i).padStart(4, '0')}-${'x'.repeat(80)}`)
    for (let i = 0; i < names.length; i += 100) await Promise.all(names.slice(i, i + 100).map((n) => fsp.writeFile(P('many', n), '')))
    const listed = await fsp.readdir(P('many'))
    expect(listed.sort()).to.deep.equal([...names].sort())
    const r = await run('ls', ['-f', P('many')])
    expect(r.stdout.split('\n').filter(Boolean).length).to.equal(3002)
    const st = await srv.call<Stats>('stats')
    expect(st.ops.readdirplus).to.be.greaterThan(0)
    expect(st.lookupErrors).to.equal(0)
  })

  it('open(O_TMPFILE) fails with EOPNOTSUPP (libfuse 3.14 has no tmpfile operation)', async () => {
    const code = `
import json, os, sys
try:
    os.open(sys.argv[1], os.O_TMPFILE | os.O_RDWR, 0o600)
    print(json.dumps(0))
except OSError as e:
    print(json.dumps(e.errno))`
    expect(await py(code, mp)).to.equal(95)
  })

  it('ioctl reaches the filesystem; one it does not know is ENOTTY', async () => {
    await fsp.writeFile(P('io'), '')
    const ino = (await srv.call<Resolved>('resolve', {path: '/io'})).ino
    const code = `
import fcntl, json, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
r = [struct.unpack('<Q', fcntl.ioctl(fd, int(sys.argv[2]), bytes(8)))[0]]
try:
    fcntl.ioctl(fd, 0x80085002, bytes(8))
except OSError as e:
    r.append(e.errno)
print(json.dumps(r))`
    expect(await py(code, P('io'), String(IOCTL_GET_INO >>> 0))).to.deep.equal([ino, 25])
  })

  it('copy_file_range, fsync and fdatasync', async () => {
    await fsp.writeFile(P('cfr-in'), 'copy me across')
    const code = `
import json, os, sys
a = os.open(sys.argv[1], os.O_RDONLY)
b = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT, 0o644)
n = os.copy_file_range(a, b, 14)
os.fsync(b)
os.fdatasync(b)
print(json.dumps(n))`
    expect(await py(code, P('cfr-in'), P('cfr-out'))).to.equal(14)
    expect(await fsp.readFile(P('cfr-out'), 'utf8')).to.equal('copy me across')
  })

  it('POSIX and BSD locks work, kept by the kernel (no lock operations in the binding)', async () => {
    await fsp.writeFile(P('locked'), 'x')
    const code = `
import fcntl, json, os, subprocess, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
other = '''
import errno, fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
r = []
for f in (lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB), lambda: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)):
    try:
        f()
        r.append(0)
    except OSError as e:
        r.append(e.errno)
print(r)
'''
print(json.dumps(subprocess.run([sys.executable, '-c', other, p], capture_output=True, text=True).stdout.strip()))`
    expect(await py(code, P('locked'))).to.equal('[11, 11]') // EAGAIN: held by the first process
  })

  it('after the kernel drops its caches, every lookup was given back exactly (forget, readdirplus)', async function () {
    try {
      await fsp.writeFile('/proc/sys/vm/drop_caches', '2')
    } catch (e) {
      console.log(`      cannot drop the kernel's caches here (${(e as NodeJS.ErrnoException).code}): lookup counts not checked`)
      this.skip()
    }
    let st = await srv.call<Stats>('stats')
    for (let i = 0; i < 50 && Object.entries(st.lookups).some(([ino, n]) => ino !== '1' && n !== 0); i++) {
      await sleep(100)
      st = await srv.call<Stats>('stats')
    }
    expect(st.lookupErrors).to.equal(0)
    const left = Object.entries(st.lookups).filter(([ino, n]) => ino !== '1' && n !== 0)
    expect(left).to.deep.equal([])
    expect(st.forgets).to.be.greaterThan(3000)
  })
})
