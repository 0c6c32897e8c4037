// What a change of a file's data does to its setuid and setgid bits through a real mount, and
// which extended attribute names an unprivileged caller sees: the rules the kernel applies on a
// local filesystem (ext4 is the reference) where its FUSE paths leave the work to the
// filesystem. Each case runs its calls in a child process as another uid, with or without the
// file's group among its groups; the serving process never touches the mount.
import {expect} from 'chai'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {PYTHON, py, run} from './fuse-support.js'
import {Scratch, skipWithoutFuse} from './mount-support.js'

const OWNER = 65534
const GROUP = 65530
const OTHER = 65533

/** python3 -c CODE ARGS as uid/gid `uid` with supplementary `groups`; stdout parsed as JSON. */
async function pyAs(uid: number, groups: number[], code: string, ...args: string[]): Promise<unknown> {
  const g = groups.length ? [`--groups=${groups.join(',')}`] : ['--clear-groups']
  const r = await run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, ...g, '--', PYTHON, '-c', code, ...args])
  if (r.code !== 0) throw new Error(`python as ${uid} failed (${r.code}): ${r.stderr.trim().split('\n').pop()}`)
  return JSON.parse(r.stdout)
}

/** One change of the data of file argv[1], by name (each opens its own descriptor). */
const CHANGE = `
import json, os, sys
p, how = sys.argv[1], sys.argv[2]
if how == 'write':
    fd = os.open(p, os.O_WRONLY); os.write(fd, b'z'); os.close(fd)
elif how == 'append':
    fd = os.open(p, os.O_WRONLY | os.O_APPEND); os.write(fd, b'z'); os.close(fd)
elif how == 'truncate':
    os.truncate(p, 1)
elif how == 'ftruncate':
    fd = os.open(p, os.O_WRONLY); os.ftruncate(fd, 1); os.close(fd)
elif how == 'fallocate':
    fd = os.open(p, os.O_WRONLY); os.posix_fallocate(fd, 0, 100); os.close(fd)
elif how == 'otrunc':
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
elif how == 'rdonly-otrunc':
    os.close(os.open(p, os.O_RDONLY | os.O_TRUNC))
print(json.dumps(os.stat(p).st_size))
`
const HOWS = ['write', 'append', 'truncate', 'ftruncate', 'fallocate', 'otrunc'] as const

describe('prism mount: setuid and setgid after a change of data, and trusted.* names', function () {
  this.timeout(300_000)
  let s: Scratch
  let mp: string
  let n = 0
  const P = (...parts: string[]): string => path.join(mp, ...parts)

  before(async function () {
    skipWithoutFuse(this)
    s = new Scratch()
    mp = s.mountpoint()
    await s.mount('root', mp, ['allow_other', 'suid'])
    await fsp.mkdir(P('pub'))
    await fsp.chmod(P('pub'), 0o777)
  })

  after(async () => {
    await s?.cleanup()
  })

  /** A new file `mode`, owned OWNER:GROUP, holding "abc"; the mode after `how` by `uid` with `groups`. */
  async function modeAfter(mode: number, uid: number, groups: number[], how: string): Promise<number> {
    const p = P('pub', `f${n++}`)
    await fsp.writeFile(p, 'abc')
    await fsp.chown(p, OWNER, GROUP)
    await fsp.chmod(p, mode)
    expect((await fsp.stat(p)).mode & 0o7777).to.equal(mode)
    if (uid === 0) await py(CHANGE, p, how)
    else await pyAs(uid, groups, CHANGE, p, how)
    return (await fsp.stat(p)).mode & 0o7777
  }

  it('setgid without group execute goes on every change of data by a user outside the group, as on ext4', async () => {
    for (const how of HOWS) {
      expect(await modeAfter(0o2767, OTHER, [OTHER], how), `other ${how}`).to.equal(0o767)
      expect(await modeAfter(0o2767, OWNER, [OWNER], how), `owner outside the group ${how}`).to.equal(0o767)
      // setuid too: the kernel clears it, the file keeps no setgid either
      expect(await modeAfter(0o6767, OTHER, [OTHER], how), `other ${how}, setuid and setgid`).to.equal(0o767)
    }
  })

  it('a member of the group, or root, keeps setgid without group execute; setuid goes for the member', async () => {
    for (const how of HOWS) {
      expect(await modeAfter(0o2767, OTHER, [OTHER, GROUP], how), `member ${how}`).to.equal(0o2767)
      expect(await modeAfter(0o6767, OTHER, [OTHER, GROUP], how), `member ${how}, setuid`).to.equal(0o2767)
      expect(await modeAfter(0o6767, 0, [], how), `root ${how}`).to.equal(0o6767)
    }
  })

  it('open with O_TRUNC clears setuid, and setgid with group execute, as truncate does', async () => {
    for (const [uid, groups] of [[OTHER, [OTHER]], [OTHER, [OTHER, GROUP]], [OWNER, [OWNER]]] as Array<[number, number[]]>) {
      expect(await modeAfter(0o4777, uid, groups, 'otrunc'), `${uid} ${groups} setuid`).to.equal(0o777)
      expect(await modeAfter(0o2777, uid, groups, 'otrunc'), `${uid} ${groups} setgid`).to.equal(0o777)
      expect(await modeAfter(0o6777, uid, groups, 'otrunc'), `${uid} ${groups} both`).to.equal(0o777)
    }
    expect(await modeAfter(0o6777, 0, [], 'otrunc'), 'root keeps both').to.equal(0o6777)
  })

  it('O_RDONLY|O_TRUNC empties the file, as on ext4 (the kernel asked for write permission)', async () => {
    const p = P('pub', 'rdtrunc')
    await fsp.writeFile(p, 'hello')
    expect(await py(CHANGE, p, 'rdonly-otrunc')).to.equal(0)
    expect((await fsp.stat(p)).size).to.equal(0)
    // and one who may not write may not truncate that way either
    await fsp.writeFile(p, 'hello')
    await fsp.chmod(p, 0o644)
    const r = await run('setpriv', [`--reuid=${OTHER}`, `--regid=${OTHER}`, '--clear-groups', '--', PYTHON, '-c', CHANGE, p, 'rdonly-otrunc'])
    expect(r.code).to.not.equal(0)
    expect(r.stderr).to.match(/Permission denied/)
    expect(await fsp.readFile(p, 'utf8')).to.equal('hello')
  })

  it('trusted.* names are listed to root only; user.* and security.* to everyone', async () => {
    const p = P('pub', 'xattrs')
    await fsp.writeFile(p, 'x')
    await fsp.chmod(p, 0o644)
    await py(`
import os, sys
for k in ('user.u', 'trusted.t', 'security.s'):
    os.setxattr(sys.argv[1], k, b'1')
print('[]')`, p)
    const LIST = `import json, os, sys; print(json.dumps(sorted(os.listxattr(sys.argv[1]))))`
    expect(await py(LIST, p)).to.deep.equal(['security.s', 'trusted.t', 'user.u'])
    expect(await pyAs(OTHER, [OTHER], LIST, p)).to.deep.equal(['security.s', 'user.u'])
    expect(await pyAs(OWNER, [OWNER], LIST, p)).to.deep.equal(['security.s', 'user.u'])
    // the kernel refuses the value itself to them (EPERM), and it stays for root
    const GET = `import errno, json, os, sys
try:
    os.getxattr(sys.argv[1], 'trusted.t'); print(json.dumps('ok'))
except OSError as e:
    print(json.dumps(errno.errorcode[e.errno]))`
    expect(await pyAs(OTHER, [OTHER], GET, p)).to.be.oneOf(['EPERM', 'ENODATA'])
    expect(await py(GET, p)).to.equal('ok')
  })
})
