// renameat2(RENAME_WHITEOUT) through a real mount, and overlayfs with its upper layer in a
// fileset. overlayfs refuses an upper filesystem without RENAME_WHITEOUT ("upper fs missing
// required features"), so a container engine (Docker's overlay2, podman) could not keep its
// layers in a fileset: the server answered the flag EINVAL. Now the rename leaves at the old
// name, in the same request, a whiteout (a character device 0:0 of mode 0, owned as a new
// file by whoever renamed: no privilege is needed since Linux 5.8), or fails whole. The overlay then works as on ext4: whiteouts for deleted lower
// files, opaque directories (trusted.overlay.opaque), copy-up; and a clone of the fileset
// holding the layers mounts as the same overlay.
import {expect} from 'chai'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {asNobody, py, run} from './fuse-support.js'
import {cliOk, expectClean, Scratch, skipWithoutFuse} from './mount-support.js'

const RENAME = `
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
NOREPLACE, EXCHANGE, WHITEOUT = 1, 2, 4
def rename(a, b, flags):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), flags) == 0:
        return 'ok'
    return errno.errorcode[ctypes.get_errno()]
def desc(p):
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    if os.path.isdir(p) and not os.path.islink(p):
        return {'dir': sorted(os.listdir(p))}
    if (st.st_mode & 0o170000) == 0o020000:
        return {'char': [os.major(st.st_rdev), os.minor(st.st_rdev)], 'mode': st.st_mode & 0o7777, 'uid': st.st_uid, 'gid': st.st_gid, 'nlink': st.st_nlink}
    return {'data': open(p).read()}
d = sys.argv[1]
os.chdir(d)
out = {}
open('f', 'w').write('file f')
out['file'] = rename('f', 'g', WHITEOUT)
out['fileAfter'] = [desc('f'), desc('g')]
os.mkdir('dir'); open('dir/in', 'w').write('in dir')
out['dir'] = rename('dir', 'dir2', WHITEOUT)
out['dirAfter'] = [desc('dir'), desc('dir2')]
open('h', 'w').write('file h'); open('taken', 'w').write('taken')
out['noreplace'] = rename('h', 'taken', WHITEOUT | NOREPLACE)
out['noreplaceAfter'] = [desc('h'), desc('taken')]
out['replace'] = rename('h', 'taken', WHITEOUT)
out['replaceAfter'] = [desc('h'), desc('taken')]
out['exchange'] = rename('g', 'taken', WHITEOUT | EXCHANGE)
out['exchangeAfter'] = [desc('g'), desc('taken')]
out['missing'] = rename('nope', 'x', WHITEOUT)
os.mkdir('sg'); os.chown('sg', 0, 4321); os.chmod('sg', 0o2777)
open('sg/s', 'w').write('s')
out['setgid'] = rename('sg/s', 'sg/t', WHITEOUT)
out['setgidAfter'] = desc('sg/s')
print(json.dumps(out))
`

describe('prism mount: rename with RENAME_WHITEOUT, and overlayfs with its upper layer in a fileset', function () {
  this.timeout(120_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
    if (process.getuid?.() !== 0) {
      console.log('      whiteout tests skipped: they chown, run as another user and mount overlayfs, which need root')
      this.skip()
    }
  })

  beforeEach(() => {
    s = new Scratch()
  })

  afterEach(async () => {
    await s?.cleanup()
  })

  it('leaves a whiteout (character device 0:0, mode 0, owned as a new file) at the old name, or fails whole', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp, ['dev', 'allow_other'])
    const out = await py(RENAME, mp) as Record<string, unknown>
    const wo = {char: [0, 0], mode: 0, uid: 0, gid: 0, nlink: 1}
    expect(out).to.deep.equal({
      file: 'ok', fileAfter: [wo, {data: 'file f'}],
      dir: 'ok', dirAfter: [wo, {dir: ['in']}],
      noreplace: 'EEXIST', noreplaceAfter: [{data: 'file h'}, {data: 'taken'}],
      replace: 'ok', replaceAfter: [wo, {data: 'file h'}],
      exchange: 'EINVAL', exchangeAfter: [{data: 'file f'}, {data: 'file h'}],
      missing: 'ENOENT',
      setgid: 'ok', setgidAfter: {...wo, gid: 4321},
    })
    // Any user may make a whiteout (Linux 5.8 dropped CAP_MKNOD for them): it is the caller's.
    await fsp.chmod(mp, 0o777)
    const r = await asNobody(`cd ${mp} && echo x > mine && python3 -c "import ctypes,os; l=ctypes.CDLL(None,use_errno=True); r=l.renameat2(-100,b'mine',-100,b'yours',4); st=os.lstat('mine'); print(r, oct(st.st_mode), st.st_uid, st.st_gid, open('yours').read().strip())"`)
    expect(r.stdout.trim(), r.stderr).to.equal('0 0o20000 65534 65534 x')
    await s.umount(mp)
    expect(await cliOk(['ls', '-l', '-i', s.image, 'root:/'])).to.match(/^c---------\s+1\s+0\s+0\s+0,\s*0\s.*\sf$/m)
    await expectClean(s.image)
  })

  it('on an image with no inode left: ENOSPC, and both names as they were', async () => {
    s = new Scratch({inodeCount: 64})
    const mp = s.mountpoint()
    await s.mount('root', mp, ['dev'])
    const out = await py(`
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
os.chdir(sys.argv[1])
open('a', 'w').write('a')
n = 0
while True:
    try:
        open(f'fill{n}', 'w').close()
        n += 1
    except OSError as e:
        full = errno.errorcode[e.errno]
        break
r = libc.renameat2(-100, b'a', -100, b'b', 4)
print(json.dumps({'full': full, 'rename': errno.errorcode[ctypes.get_errno()] if r else 'ok', 'a': open('a').read(), 'b': os.path.exists('b')}))
`, mp)
    expect(out).to.deep.equal({full: 'ENOSPC', rename: 'ENOSPC', a: 'a', b: false})
    await s.umount(mp)
    expect(await cliOk(['cat', '-i', s.image, 'root:/a'])).to.equal('a')
    await expectClean(s.image)
  })

  it('overlayfs mounts with its upper layer in a fileset: whiteouts, an opaque directory, copy-up; a clone of the layers mounts as the same overlay', async function () {
    const mp = s.mountpoint()
    await s.mount(null, mp, ['dev'])
    const layers = path.join(mp, 'layers')
    await fsp.mkdir(layers)
    for (const d of ['lower', 'lower/ldir', 'upper', 'work']) await fsp.mkdir(path.join(layers, d))
    await fsp.writeFile(path.join(layers, 'lower', 'keep'), 'kept from lower')
    await fsp.writeFile(path.join(layers, 'lower', 'del'), 'deleted above')
    await fsp.writeFile(path.join(layers, 'lower', 'grow'), 'lower part;')
    await fsp.writeFile(path.join(layers, 'lower', 'ldir', 'x'), 'hidden by an opaque directory')
    const ovl = s.mountpoint('ovl')
    const mountOverlay = async (fileset: string) => {
      const base = path.join(mp, fileset)
      const m = await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${base}/lower,upperdir=${base}/upper,workdir=${base}/work`, ovl])
      return m
    }
    const m = await mountOverlay('layers')
    if (m.code !== 0) {
      if (/unknown filesystem type/.test(m.stderr)) {
        console.log('      overlayfs is not available here: skipped')
        this.skip()
      }
      throw new Error(`mount -t overlay: ${m.stderr.trim()} (dmesg: ${(await run('dmesg', [])).stdout.trim().split('\n').slice(-2).join(' / ')})`)
    }
    let mounted = true
    try {
      const sh = await run('sh', ['-ec', 'cd "$1" && rm del && echo new > new && echo " upper part" >> grow && mv keep kept && rm -r ldir && mkdir ldir && echo y > ldir/y && ls -A . ldir && cat grow kept', 'sh', ovl])
      expect(sh.code, sh.stderr).to.equal(0)
      const view = '.:\ngrow\nkept\nldir\nnew\n\nldir:\ny\nlower part; upper part\nkept from lower'
      expect(sh.stdout).to.equal(view)
      const opaque = await run('getfattr', ['-n', 'trusted.overlay.opaque', '--only-values', path.join(layers, 'upper', 'ldir')])
      expect(opaque.stdout).to.equal('y')
      const upper = await run('sh', ['-c', 'ls -l "$1" | awk \'NR>1 {print $1, $NF}\'', 'sh', path.join(layers, 'upper')])
      expect(upper.stdout).to.match(/^c--------- del$/m)
      expect(upper.stdout).to.match(/^c--------- keep$/m)
      expect((await run('umount', [ovl])).code).to.equal(0)
      mounted = false
      // The layers cloned: the clone mounts as the same overlay (work is the overlay's own).
      await cliOk(['clone', '-i', s.image, 'layers', 'layers2', '--mode', 'lazy'])
      await run('rm', ['-rf', path.join(mp, 'layers2', 'work')])
      await fsp.mkdir(path.join(mp, 'layers2', 'work'))
      const m2 = await mountOverlay('layers2')
      expect(m2.code, m2.stderr).to.equal(0)
      mounted = true
      const sh2 = await run('sh', ['-ec', 'cd "$1" && ls -A . ldir && cat grow kept', 'sh', ovl])
      expect(sh2.stdout).to.equal(view)
      expect((await run('umount', [ovl])).code).to.equal(0)
      mounted = false
    } finally {
      if (mounted) await run('umount', ['-l', ovl])
    }
    await s.umount(mp)
    await expectClean(s.image)
  })
})
