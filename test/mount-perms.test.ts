// Permission semantics through a real mount with allow_other, as uids other than root (the
// cases userspace filesystems most often get wrong): owners and groups of new files (setgid
// directories included), a write by a non-owner clears setuid and setgid, ftruncate through a
// descriptor opened for writing after the mode stopped allowing it, UTIME_NOW by a writer who
// is not the owner, ENAMETOOLONG over 255 bytes, and nlink and ctime right at once on every
// name of a hard-linked file.
import {expect} from 'chai'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {PYTHON, py, run} from './fuse-support.js'
import {Scratch, skipWithoutFuse} from './mount-support.js'

/** python3 -c CODE ARGS as uid/gid `id` (no supplementary groups); stdout parsed as JSON. */
async function pyAs(id: number, code: string, ...args: string[]): Promise<unknown> {
  const r = await run('setpriv', [`--reuid=${id}`, `--regid=${id}`, '--clear-groups', '--', PYTHON, '-c', code, ...args])
  if (r.code !== 0) throw new Error(`python as ${id} failed (${r.code}): ${r.stderr.trim().split('\n').pop()}`)
  return JSON.parse(r.stdout)
}

const TRY = `
import errno, json, os, sys
def t(f):
    try:
        f()
        return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
`

describe('prism mount: permissions as other users (allow_other)', function () {
  this.timeout(120_000)
  let s: Scratch
  let mp: string
  const P = (...parts: string[]): string => path.join(mp, ...parts)

  before(async function () {
    skipWithoutFuse(this)
    s = new Scratch()
    mp = s.mountpoint()
    await s.mount('root', mp, ['allow_other'])
    await fsp.mkdir(P('pub'))
    await fsp.chmod(P('pub'), 0o1777)
  })

  after(async () => {
    await s?.cleanup()
  })

  it('a file or directory a user makes is theirs, with their group', async () => {
    await pyAs(65534, TRY + `
os.close(os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)); os.mkdir(sys.argv[2]); print('[]')`, P('pub', 'mine'), P('pub', 'mydir'))
    for (const p of [P('pub', 'mine'), P('pub', 'mydir')]) {
      const st = await fsp.stat(p)
      expect([st.uid, st.gid], p).to.deep.equal([65534, 65534])
    }
    const r = await run('setpriv', ['--reuid=4242', '--regid=4343', '--clear-groups', '--', 'touch', P('pub', 'other')])
    expect(r.code, r.stderr).to.equal(0)
    const st = await fsp.stat(P('pub', 'other'))
    expect([st.uid, st.gid]).to.deep.equal([4242, 4343])
  })

  it('in a setgid directory, new files take its group and new directories also its setgid bit', async () => {
    await fsp.mkdir(P('sg'))
    await fsp.chown(P('sg'), 0, 1234)
    await fsp.chmod(P('sg'), 0o2777)
    await pyAs(65534, TRY + `
os.close(os.open(sys.argv[1] + '/f', os.O_CREAT | os.O_WRONLY, 0o664)); os.mkdir(sys.argv[1] + '/d', 0o775); print('[]')`, P('sg'))
    const f = await fsp.stat(P('sg', 'f'))
    const d = await fsp.stat(P('sg', 'd'))
    expect([f.uid, f.gid]).to.deep.equal([65534, 1234])
    expect(f.mode & 0o2000).to.equal(0)
    expect([d.uid, d.gid]).to.deep.equal([65534, 1234])
    expect(d.mode & 0o7777).to.equal(0o2755) // 0o775 less the umask (022), plus setgid
  })

  it('a write by a user who is not the owner clears setuid and setgid', async () => {
    await fsp.writeFile(P('pub', 'suid'), 'x')
    await fsp.chmod(P('pub', 'suid'), 0o6777)
    expect((await fsp.stat(P('pub', 'suid'))).mode & 0o7777).to.equal(0o6777)
    await pyAs(65534, TRY + `
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND); os.write(fd, b'y'); os.close(fd); print('[]')`, P('pub', 'suid'))
    const st = await fsp.stat(P('pub', 'suid'))
    expect(st.mode & 0o7777).to.equal(0o777)
    expect(await fsp.readFile(P('pub', 'suid'), 'utf8')).to.equal('xy')
  })

  it('ftruncate works on a descriptor opened for writing after the mode stopped allowing writes', async () => {
    const out = await pyAs(65534, TRY + `
p = sys.argv[1]
fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b'0123456789')
os.fchmod(fd, 0)
a = t(lambda: os.ftruncate(fd, 4))
b = t(lambda: os.truncate(p, 2))
os.close(fd)
print(json.dumps([a, b, os.stat(p).st_size]))`, P('pub', 'ftr'))
    expect(out).to.deep.equal(['ok', 'EACCES', 4])
  })

  it('UTIME_NOW is allowed to a writer who is not the owner, explicit times are not', async () => {
    await fsp.writeFile(P('pub', 'times'), 'x')
    await fsp.chmod(P('pub', 'times'), 0o666)
    await fsp.utimes(P('pub', 'times'), 1000, 1000)
    const out = await pyAs(65534, TRY + `
p = sys.argv[1]
print(json.dumps([t(lambda: os.utime(p, None)), t(lambda: os.utime(p, (5, 5)))]))`, P('pub', 'times'))
    expect(out).to.deep.equal(['ok', 'EPERM'])
    const st = await fsp.stat(P('pub', 'times'))
    expect(Math.abs(st.mtimeMs - Date.now())).to.be.lessThan(60_000)
    // and one who may not write may not either
    await fsp.chmod(P('pub', 'times'), 0o644)
    expect(await pyAs(65534, TRY + `print(json.dumps(t(lambda: os.utime(sys.argv[1], None))))`, P('pub', 'times'))).to.equal('EACCES')
  })

  it('a name over 255 bytes is ENAMETOOLONG for every call; 255 bytes is fine', async () => {
    const out = await pyAs(65534, TRY + `
d = sys.argv[1]
long = d + '/' + 'x' * 256
ok = d + '/' + 'y' * 255
print(json.dumps([t(lambda: os.close(os.open(long, os.O_CREAT | os.O_WRONLY))), t(lambda: os.mkdir(long)), t(lambda: os.symlink('a', long)),
  t(lambda: os.stat(long)), t(lambda: os.close(os.open(ok, os.O_CREAT | os.O_WRONLY))), t(lambda: os.rename(ok, long)), t(lambda: os.link(ok, long))]))`, P('pub'))
    expect(out).to.deep.equal(['ENAMETOOLONG', 'ENAMETOOLONG', 'ENAMETOOLONG', 'ENAMETOOLONG', 'ok', 'ENAMETOOLONG', 'ENAMETOOLONG'])
  })

  it('nlink and ctime are right at once on every name of a hard-linked file', async () => {
    await fsp.mkdir(P('hl'))
    await fsp.mkdir(P('hl', 'sub'))
    const out = await py(`
import json, os, sys, time
d = sys.argv[1]
names = [d + '/a', d + '/b', d + '/sub/c']
open(names[0], 'w').write('x')
os.stat(names[0])
res = []
def look():
    sts = [os.stat(n) for n in names if os.path.exists(n)]
    res.append([[s.st_nlink, s.st_ctime_ns, s.st_ino] for s in sts])
time.sleep(0.01); os.link(names[0], names[1]); look()
time.sleep(0.01); os.link(names[1], names[2]); look()
time.sleep(0.01); os.chmod(names[2], 0o600); look()
time.sleep(0.01); os.unlink(names[0]); names.pop(0); look()
print(json.dumps(res))`, P('hl')) as number[][][]
    const want = [2, 3, 3, 2]
    let lastCtime = 0
    out.forEach((sts, i) => {
      for (const st of sts) {
        expect(st[0], `step ${i}: nlink`).to.equal(want[i])
        expect(st[1], `step ${i}: ctime the same on every name`).to.equal(sts[0][1])
        expect(st[2], `step ${i}: one inode`).to.equal(sts[0][2])
      }
      expect(sts[0][1], `step ${i}: ctime moves`).to.be.greaterThan(lastCtime)
      lastCtime = sts[0][1]
    })
    const mode = (await fsp.stat(P('hl', 'b'))).mode & 0o777
    expect(mode).to.equal(0o600)
  })
})
