// Times through a real mount. A read or a directory listing moves atime as on a relatime
// mount (Linux's default, and what ext4 shows): the first access after a change, or a day
// later, and not again before. A read-only mount and a file shared with a clone keep theirs
// (a read must not copy an inode). A rename sets the renamed file's ctime, a file shared with
// a clone included (it gets its fileset's own copy). The calls run in child processes.
import {expect} from 'chai'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {py} from './fuse-support.js'
import {Scratch, cliOk, skipWithoutFuse} from './mount-support.js'

/** Reads file argv[1] (or lists it, a directory) in a child process; its atime before and after, in ns. */
const ACCESS = `
import json, os, sys
p = sys.argv[1]
before = os.stat(p).st_atime_ns
if os.path.isdir(p):
    os.listdir(p)
else:
    with open(p, 'rb') as f:
        f.read()
print(json.dumps([before, os.stat(p).st_atime_ns]))
`

describe('prism mount: atime as relatime', function () {
  this.timeout(120_000)
  let s: Scratch
  let mp: string
  const P = (...parts: string[]): string => path.join(mp, ...parts)
  const access = async (p: string): Promise<[number, number]> => (await py(ACCESS, p)) as [number, number]

  before(async function () {
    skipWithoutFuse(this)
    s = new Scratch()
    mp = s.mountpoint()
    await s.mount('root', mp, [])
  })

  after(async () => {
    await s?.cleanup()
  })

  it('the first read after a change moves atime to now; the next one, before a day, does not', async () => {
    await fsp.writeFile(P('f'), 'hello')
    await fsp.utimes(P('f'), 1000, 2000) // atime before mtime
    const [a0, a1] = await access(P('f'))
    expect(a0).to.equal(1000 * 1e9)
    expect(Math.abs(a1 / 1e6 - Date.now())).to.be.lessThan(60_000)
    const [b0, b1] = await access(P('f'))
    expect(b1).to.equal(b0)
    expect(b0).to.equal(a1)
    // after a write, the next read moves it again
    await new Promise((r) => setTimeout(r, 20))
    await fsp.appendFile(P('f'), '!')
    const [, c1] = await access(P('f'))
    expect(c1).to.be.greaterThan(a1)
    // utimes sets ctime to now: an atime later than mtime but not than ctime moves; one later
    // than both (here in the future) does not
    await fsp.utimes(P('f'), Date.now() / 1000 - 2 * 86400, Date.now() / 1000 - 3 * 86400)
    const [d0, d1] = await access(P('f'))
    expect(d1 - d0).to.be.greaterThan(86400 * 1e9)
    await fsp.utimes(P('f'), Date.now() / 1000 + 3600, Date.now() / 1000 - 120)
    const [e0, e1] = await access(P('f'))
    expect(e1).to.equal(e0)
  })

  it('listing a directory moves its atime the same way', async () => {
    await fsp.mkdir(P('d'))
    await fsp.writeFile(P('d', 'x'), 'x')
    await fsp.utimes(P('d'), 1000, 2000)
    const [a0, a1] = await access(P('d'))
    expect(a0).to.equal(1000 * 1e9)
    expect(Math.abs(a1 / 1e6 - Date.now())).to.be.lessThan(60_000)
    const [b0, b1] = await access(P('d'))
    expect(b1).to.equal(b0)
  })

  it('the new atime is on the image after unmount', async () => {
    await fsp.writeFile(P('kept'), 'data')
    await fsp.utimes(P('kept'), 1000, 2000)
    const [, a1] = await access(P('kept'))
    expect(Math.abs(a1 / 1e6 - Date.now())).to.be.lessThan(60_000)
    await s.umount(mp)
    const out = JSON.parse(await cliOk(['stat', '-i', s.image, '--json', 'root:/kept'])) as Array<{atime: string}> | {atime: string}
    const st = Array.isArray(out) ? out[0] : out
    expect(Date.parse(st.atime)).to.equal(Math.floor(a1 / 1e6))
    await s.mount('root', mp, [])
  })

  it('a rename sets the ctime of the renamed file, also of one shared with a clone', async () => {
    await fsp.mkdir(P('rn'))
    for (const n of ['own', 'shared']) await fsp.writeFile(P('rn', n), n)
    await cliOk(['clone', '-i', s.image, '--mode', 'lazy', 'root:/rn', 'rnclone'])
    const cmp = s.mountpoint('rnclone')
    await s.mount('rnclone', cmp, [])
    const RENAME = `
import json, os, sys, time
a, b = sys.argv[1], sys.argv[2]
before = os.lstat(a)
time.sleep(0.05)
os.rename(a, b)
after = os.lstat(b)
print(json.dumps([after.st_ctime_ns > before.st_ctime_ns, after.st_mtime_ns == before.st_mtime_ns, open(b).read()]))`
    await fsp.writeFile(path.join(cmp, 'own'), 'mine') // the clone's own copy already
    expect(await py(RENAME, path.join(cmp, 'own'), path.join(cmp, 'own2'))).to.deep.equal([true, true, 'mine'])
    expect(await py(RENAME, path.join(cmp, 'shared'), path.join(cmp, 'shared2'))).to.deep.equal([true, true, 'shared'])
    // the source keeps its file, its name and its ctime
    expect(await fsp.readFile(P('rn', 'shared'), 'utf8')).to.equal('shared')
    await s.umount(cmp)
    const r = await cliOk(['fsck', '-i', s.image])
    expect(r).to.match(/^clean/m)
  })

  it('a read-only mount, and a file shared with a clone, keep their atime', async () => {
    await fsp.writeFile(P('shared'), 'data')
    await fsp.utimes(P('shared'), 1000, 2000)
    await fsp.mkdir(P('sd'))
    await fsp.utimes(P('sd'), 1000, 2000)
    await cliOk(['clone', '-i', s.image, '--mode', 'sync', 'root', 'copy'])
    const cmp = s.mountpoint('copy')
    await s.mount('copy', cmp, [])
    const ro = s.mountpoint('ro')
    await s.mount('root', ro, ['ro'])
    for (const p of [path.join(ro, 'shared'), path.join(ro, 'sd'), path.join(cmp, 'shared')]) {
      const [x0, x1] = await access(p)
      expect(x1, p).to.equal(x0)
      expect(x0, p).to.equal(1000 * 1e9)
    }
    // the source's own copy is shared too until one of them writes it
    const [y0, y1] = await access(P('shared'))
    expect(y1).to.equal(y0)
    // once the clone wrote its copy (its own inode now), its reads move its atime
    await fsp.appendFile(path.join(cmp, 'shared'), '!')
    const [, z1] = await access(path.join(cmp, 'shared'))
    expect(Math.abs(z1 / 1e6 - Date.now())).to.be.lessThan(60_000)
    await s.umount(ro)
    await s.umount(cmp)
  })
})
