// The inode-flag ioctls through a real mount: lsattr and chattr (FS_IOC_GETFLAGS and
// FS_IOC_SETFLAGS), and FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR (xfs_io). Prism keeps no inode
// flags: every file and directory shows none, setting any (chattr +i, +a, ...) fails with
// EOPNOTSUPP and changes nothing, setting none (chattr -i) succeeds; fsxattr shows a file's
// extent count; any other ioctl is ENOTTY. Tried in a fileset, in a lazy clone's directory not
// yet expanded, and at the top of a whole-image mount (directories need FUSE_CAP_IOCTL_DIR,
// native/fuse/prism_fuse.c). The ioctls run in child processes: the test never touches a mount.
import {expect} from 'chai'
import path from 'node:path'
import {py} from './fuse-support.js'
import {cli, cliOk, expectClean, run, Scratch, skipWithoutFuse} from './mount-support.js'

const IOCTLS = `
import errno, fcntl, json, os, struct, sys
out = {}
def name_of(n):
    return 'EOPNOTSUPP' if n == errno.EOPNOTSUPP else errno.errorcode[n]
def call(name, path, cmd, arg):
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0))
    try:
        r = fcntl.ioctl(fd, cmd, arg)
        # (a read gives the bytes answered; a write, the bytes sent back unchanged: 0)
        out[name] = list(r[:4]) if cmd & 0x80000000 else 0
    except OSError as e:
        out[name] = name_of(e.errno)
    finally:
        os.close(fd)
for p in sys.argv[1:]:
    k = os.path.basename(p) or '/'
    call(k + ' getflags', p, 0x80086601, b'\\0' * 8)
    call(k + ' setflags none', p, 0x40086602, struct.pack('<Q', 0))
    call(k + ' setflags immutable', p, 0x40086602, struct.pack('<Q', 0x10))
    call(k + ' setflags append', p, 0x40086602, struct.pack('<Q', 0x20))
    call(k + ' setflags noatime', p, 0x40086602, struct.pack('<Q', 0x80))
    r = None
    try:
        fd = os.open(p, os.O_RDONLY)
        r = fcntl.ioctl(fd, 0x801c581f, b'\\0' * 28)
        os.close(fd)
        out[k + ' fsxattr'] = list(struct.unpack('<5I', r[:20]))
    except OSError as e:
        out[k + ' fsxattr'] = name_of(e.errno)
    call(k + ' fssetxattr none', p, 0x401c5820, b'\\0' * 28)
    call(k + ' fssetxattr projid', p, 0x401c5820, struct.pack('<5I', 0, 0, 0, 7, 0) + b'\\0' * 8)
    call(k + ' tcgets', p, 0x5401, b'\\0' * 64)
print(json.dumps(out))
`

describe('prism mount: lsattr, chattr and the other inode-flag ioctls', function () {
  this.timeout(120_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
    s = new Scratch()
  })

  after(async () => {
    await s?.cleanup()
  })

  /** What each ioctl gives on every path, in a child process. */
  const ioctls = async (...paths: string[]): Promise<Record<string, unknown>> => await py(IOCTLS, ...paths) as Record<string, unknown>

  /** The answers for a path holding no flags, as every file and directory of a mount. */
  const none = (k: string, extents: number): Record<string, unknown> => ({
    [`${k} getflags`]: [0, 0, 0, 0],
    [`${k} setflags none`]: 0,
    [`${k} setflags immutable`]: 'EOPNOTSUPP',
    [`${k} setflags append`]: 'EOPNOTSUPP',
    [`${k} setflags noatime`]: 'EOPNOTSUPP',
    [`${k} fsxattr`]: [0, 0, extents, 0, 0],
    [`${k} fssetxattr none`]: 0,
    [`${k} fssetxattr projid`]: 'EOPNOTSUPP',
    [`${k} tcgets`]: 'ENOTTY',
  })

  it('in a fileset and a lazy clone not yet expanded: no flags shown, setting one refused (EOPNOTSUPP) and nothing changed, clearing them succeeds', async () => {
    // a file of three extents (holes between), a small (inline) file, a directory
    const host = path.join(s.dir, 'sparse')
    await run('sh', ['-c', `dd if=/dev/urandom of=${host} bs=4096 count=1 seek=0 conv=notrunc 2>/dev/null && dd if=/dev/urandom of=${host} bs=4096 count=1 seek=10 conv=notrunc 2>/dev/null && dd if=/dev/urandom of=${host} bs=4096 count=1 seek=20 conv=notrunc 2>/dev/null`])
    await cliOk(['mkdir', '-i', s.image, '-p', 'root:/d/e'])
    await cliOk(['cp', '-i', s.image, host, 'root:/d/sparse'])
    const w = await cli(['write', '-i', s.image, 'root:/d/small'], {input: 'small\n'})
    expect(w.code, w.stderr).to.equal(0)
    await cliOk(['clone', '-i', s.image, 'root', 'lz', '--mode', 'lazy'])
    for (const fs of ['root', 'lz']) {
      const mp = s.mountpoint()
      await s.mount(fs, mp)
      try {
        const got = await ioctls(path.join(mp, 'd/sparse'), path.join(mp, 'd/small'), path.join(mp, 'd/e'))
        expect(got, fs).to.deep.equal({...none('sparse', 3), ...none('small', 0), ...none('e', 0)})
        // lsattr and chattr (e2fsprogs) say the same
        const ls = await run('lsattr', ['-d', path.join(mp, 'd/sparse'), path.join(mp, 'd/e')])
        expect(ls.code, ls.stderr).to.equal(0)
        expect(ls.stdout.split('\n').filter(Boolean).map((l) => l.split(' ')[0])).to.deep.equal(['----------------------', '----------------------'])
        for (const flag of ['+i', '+a', '+A', '+d']) {
          const r = await run('chattr', [flag, path.join(mp, 'd/small')])
          expect(r.code, `chattr ${flag}`).to.equal(1)
          expect(r.stderr.trim(), `chattr ${flag}`).to.match(/Operation not supported while setting flags/)
        }
        expect((await run('chattr', ['-i', '-a', path.join(mp, 'd/small')])).code).to.equal(0)
        // chattr +i took nothing: the file is still written as ever
        const wr = await run('sh', ['-c', `echo more >> ${path.join(mp, 'd/small')} && cat ${path.join(mp, 'd/small')}`])
        expect(wr.stdout, wr.stderr).to.equal('small\nmore\n')
      } finally {
        await s.umount(mp)
      }
    }
    expect(await cliOk(['cat', '-i', s.image, 'root:/d/small'])).to.equal('small\nmore\n')
    expect(await cliOk(['cat', '-i', s.image, 'lz:/d/small'])).to.equal('small\nmore\n')
    await expectClean(s.image)
  })

  it('at the top of a whole-image mount and a fileset\'s directory there: no flags, the same answers', async () => {
    const mp = s.mountpoint()
    await s.mount(null, mp)
    try {
      const got = await ioctls(mp + '/', path.join(mp, 'root'))
      expect(got).to.deep.equal({...none('/', 0), ...none('root', 0)})
    } finally {
      await s.umount(mp)
    }
    await expectClean(s.image)
  })
})
