// POSIX ACLs and the mode through a mount kept in step, as a local filesystem keeps them
// (the mount asks the kernel for FUSE_CAP_POSIX_ACL, which leaves this to the filesystem):
// an access ACL set sets the mode's permission bits, and one that says no more than the mode
// is not kept; a chmod rewrites the ACL's owner, mask (or group) and other entries; a new
// inode under a default ACL ignores the umask (FUSE_CAP_DONT_MASK). Found by a POSIX probe:
// `cp -a` and `mv` from another filesystem set modes only through the ACL and left files 0600
// and directories 0700, closed to other users. Also: times a request sets to "now" come from
// the kernel's clock to the nanosecond, so a write's mtime never falls before one the kernel
// set a moment earlier (a truncate).
import {expect} from 'chai'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {py, run} from './fuse-support.js'
import {Scratch, skipWithoutFuse} from './mount-support.js'
import {tmpDir} from './helpers.js'

/** A shell command as uid/gid `id`, no supplementary groups. */
async function as(id: number, cmd: string): Promise<number | null> {
  return (await run('setpriv', [`--reuid=${id}`, `--regid=${id}`, '--clear-groups', '--', 'sh', '-c', cmd])).code
}

async function getfacl(p: string): Promise<string> {
  const r = await run('getfacl', ['-cpn', p])
  if (r.code !== 0) throw new Error(r.stderr)
  return r.stdout.split('\n').filter((l) => l && !l.startsWith('#')).join(',')
}

async function mode(p: string): Promise<number> {
  return (await fsp.stat(p)).mode & 0o7777
}

async function hasAccessAcl(p: string): Promise<boolean> {
  const r = await run('getfattr', ['-n', 'system.posix_acl_access', '--absolute-names', p])
  return r.code === 0
}

describe('prism mount: POSIX ACLs and the mode kept in step', function () {
  this.timeout(120_000)
  let s: Scratch
  let mp: string
  let host: string
  const P = (...parts: string[]): string => path.join(mp, ...parts)

  before(async function () {
    skipWithoutFuse(this)
    if ((await run('setfacl', ['--version'])).code !== 0) this.skip()
    s = new Scratch()
    mp = s.mountpoint()
    await s.mount('root', mp, ['allow_other'])
    host = tmpDir()
  })

  after(async () => {
    await s?.cleanup()
    if (host) fs.rmSync(host, {recursive: true, force: true})
  })

  it('cp -a, cp -p and mv from another filesystem keep the modes, and others can read', async () => {
    fs.writeFileSync(path.join(host, 'f'), 'hi\n')
    fs.chmodSync(path.join(host, 'f'), 0o644)
    fs.mkdirSync(path.join(host, 'd'))
    fs.chmodSync(path.join(host, 'd'), 0o755)
    fs.writeFileSync(path.join(host, 'd', 'x'), 'x\n')
    fs.chmodSync(path.join(host, 'd', 'x'), 0o640)
    fs.writeFileSync(path.join(host, 'm'), 'm\n')
    fs.chmodSync(path.join(host, 'm'), 0o604)
    for (const [cmd, args] of [['cp', ['-a', path.join(host, 'f'), P('a')]], ['cp', ['-p', path.join(host, 'f'), P('p')]],
      ['cp', ['-a', path.join(host, 'd'), P('da')]], ['mv', [path.join(host, 'm'), P('mv')]]] as const) {
      const r = await run(cmd, [...args])
      expect(r.code, r.stderr).to.equal(0)
    }
    expect(await mode(P('a'))).to.equal(0o644)
    expect(await mode(P('p'))).to.equal(0o644)
    expect(await mode(P('da'))).to.equal(0o755)
    expect(await mode(P('da', 'x'))).to.equal(0o640)
    expect(await mode(P('mv'))).to.equal(0o604)
    for (const p of [P('a'), P('p'), P('da'), P('mv')]) expect(await hasAccessAcl(p), `${p}: an ACL equal to the mode is not kept`).to.equal(false)
    expect(await as(65534, `cat ${P('a')} ${P('mv')} && ls ${P('da')}`)).to.equal(0)
  })

  it('setfacl sets the mode; an ACL the mode can say is dropped', async () => {
    const f = P('s1')
    await fsp.writeFile(f, 'x')
    await fsp.chmod(f, 0o640)
    expect((await run('setfacl', ['-m', 'u:65534:rw', f])).code).to.equal(0)
    expect(await mode(f), 'the mask (rw) is the group bits').to.equal(0o660)
    expect(await as(65534, `echo y >> ${f}`)).to.equal(0)
    const g = P('s2')
    await fsp.writeFile(g, 'x')
    await fsp.chmod(g, 0o600)
    expect((await run('setfacl', ['-m', 'o::r', g])).code).to.equal(0)
    expect(await mode(g)).to.equal(0o604)
    expect(await hasAccessAcl(g)).to.equal(false)
    expect(await as(65533, `cat ${g}`), 'other may read').to.equal(0)
    expect((await run('setfacl', ['-m', 'u::---,g::---,o::---', g])).code).to.equal(0)
    expect(await mode(g)).to.equal(0)
    expect((await run('setfacl', ['-b', f])).code).to.equal(0)
    expect(await hasAccessAcl(f), 'setfacl -b removes it').to.equal(false)
    expect(await as(65534, `echo z >> ${f}`), 'the named entry is gone').to.not.equal(0)
  })

  it('chmod rewrites the ACL: owner, mask and other follow the mode', async () => {
    const f = P('c1')
    await fsp.writeFile(f, 'x')
    await fsp.chmod(f, 0o640)
    expect((await run('setfacl', ['-m', 'u:65534:r', f])).code).to.equal(0)
    await fsp.chmod(f, 0o644)
    expect(await getfacl(f)).to.equal('user::rw-,user:65534:r--,group::r--,mask::r--,other::r--')
    expect(await as(65533, `cat ${f}`), 'other may read after chmod 644').to.equal(0)
    await fsp.chmod(f, 0o600)
    expect(await getfacl(f)).to.equal('user::rw-,user:65534:r--\t#effective:---,group::r--\t#effective:---,mask::---,other::---')
    expect(await as(65534, `cat ${f}`), 'the mask takes the named user\'s read away').to.not.equal(0)
  })

  it('a default ACL, not the umask, gives new files and directories their modes', async () => {
    await fsp.mkdir(P('D'))
    expect((await run('setfacl', ['-d', '-m', 'u:65534:rwx', P('D')])).code).to.equal(0)
    const r = await run('sh', ['-c', `umask 022; touch ${P('D', 'n1')}; mkdir ${P('D', 's1')}; umask 077; touch ${P('D', 'n2')}; umask 022; touch ${P('plain')}`])
    expect(r.code, r.stderr).to.equal(0)
    expect(await mode(P('D', 'n1'))).to.equal(0o664)
    expect(await mode(P('D', 's1'))).to.equal(0o775)
    expect(await mode(P('D', 'n2'))).to.equal(0o664)
    expect(await getfacl(P('D', 'n1'))).to.equal('user::rw-,user:65534:rwx\t#effective:rw-,group::r-x\t#effective:r--,mask::rw-,other::r--')
    expect(await mode(P('plain')), 'without a default ACL the umask applies').to.equal(0o644)
  })

  it('a write\'s mtime never falls before the kernel\'s own stamp of a moment earlier, and has nanoseconds', async () => {
    const out = await py(`
import os, sys, json
f = sys.argv[1]
fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
back = 0
sub = 0
for i in range(200):
    os.ftruncate(fd, i + 1); a = os.fstat(fd).st_mtime_ns
    os.pwrite(fd, b'x', i); b = os.fstat(fd).st_mtime_ns
    if b < a: back += 1
    if b % 1000000: sub += 1
os.close(fd)
print(json.dumps([back, sub]))`, P('times')) as [number, number]
    expect(out[0], 'mtimes that went backwards').to.equal(0)
    expect(out[1], 'write mtimes with digits below the millisecond').to.be.greaterThan(150)
  })
})
