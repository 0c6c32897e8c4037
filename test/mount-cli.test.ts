// `prism mount`, `prism umount` and the server's life, through the real CLI: mount options and
// their errors, listing mounts, one server serving several mounts of one image (a change made
// through one shows at once in the other), unmount committing and leaving the image clean, the
// server exiting after its last unmount, commit= without fsync surviving a kill -9, a file
// unlinked while open giving its space back at its last close, an asynchronous clone read
// through the mount while the server expands it, and what other commands do meanwhile.
import {expect} from 'chai'
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {fuseMountAt} from '../src/fuse/index.js'
import {logPath as logOf, socketPath} from '../src/server/paths.js'
import {py, run} from './fuse-support.js'
import {BIN} from './helpers.js'
import {cli, cliOk, Scratch, serverPid, skipWithoutFuse, waitExit} from './mount-support.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('prism mount and umount (CLI)', function () {
  this.timeout(120_000)
  let s: Scratch

  beforeEach(function () {
    skipWithoutFuse(this)
    s = new Scratch({size: 128 * 1024 * 1024})
  })

  afterEach(async () => {
    await s?.cleanup()
  })

  it('mounts a fileset nosuid,nodev with default_permissions, lists it, and umount commits, leaves the image clean and ends the server', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const m = fuseMountAt(mp)!
    expect(m.fstype).to.equal('fuse.prism')
    expect(m.options).to.include.members(['rw', 'nosuid', 'nodev'])
    expect(m.superOptions).to.include('default_permissions')
    expect(m.superOptions).to.not.include('allow_other')
    const list = await cliOk(['mount', '-i', s.image])
    expect(list).to.contain(`${s.image}:root:/ on ${fs.realpathSync(mp)} type fuse.prism (rw,nosuid,nodev,commit=5)`)
    const json = JSON.parse(await cliOk(['mount', '-i', s.image, '--json'])) as Array<{mountpoint: string}>
    expect(json.map((x) => x.mountpoint)).to.deep.equal([fs.realpathSync(mp)])
    expect(fs.statSync(socketPath(s.image)).mode & 0o777).to.equal(0o600)
    await fsp.writeFile(path.join(mp, 'hello'), 'world')
    await fsp.mkdir(path.join(mp, 'dir'))
    const pid = await serverPid(s.image)
    await s.umount(mp)
    expect(fuseMountAt(mp)).to.equal(undefined)
    expect(await waitExit(pid!)).to.equal(true)
    expect(fs.existsSync(socketPath(s.image))).to.equal(false)
    expect(await cliOk(['cat', '-i', s.image, 'root:/hello'])).to.equal('world')
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    expect(fsck.stdout).to.match(/^clean/m)
    expect(fsck.stdout).to.not.contain('journal') // nothing left to replay: unmounted clean
  })

  it('a mounted fileset renamed: the list of mounts names it by its new name, and a new fileset of the old name is not listed as mounted', async () => {
    await cliOk(['fileset', 'create', '-i', s.image, 'fs1'])
    const mp = s.mountpoint()
    await s.mount('fs1:/', mp)
    await cliOk(['fileset', 'rename', '-i', s.image, 'fs1', 'fs2'])
    await cliOk(['fileset', 'create', '-i', s.image, 'fs1'])
    const list = await cliOk(['mount', '-i', s.image])
    expect(list).to.contain(`${s.image}:fs2:/ on ${fs.realpathSync(mp)}`)
    expect(list).to.not.contain(':fs1:')
    await s.umount(mp)
  })

  it('mkfs --force of a mounted image is refused, naming its server and mount point; the mount and its files stay', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    await fsp.writeFile(path.join(mp, 'keep'), 'kept')
    const r = await cli(['mkfs', s.image, '--size', '64M', '--force'])
    expect(r.code).to.equal(3)
    expect(r.stderr.trim().split('\n')).to.have.length(1)
    expect(r.stderr).to.match(new RegExp(`^prism: .* is mounted \\(held by prism server \\d+, mounted on ${fs.realpathSync(mp)}\\): unmount it first`))
    expect(await fsp.readFile(path.join(mp, 'keep'), 'utf8')).to.equal('kept')
    await s.umount(mp)
    expect(await cliOk(['cat', '-i', s.image, 'root:/keep'])).to.equal('kept')
  })

  it('refuses bad options, a missing mount point, a second mount on one point and unmounting what is not mounted, with one line and a status', async () => {
    const mp = s.mountpoint()
    let r = await cli(['mount', '-i', s.image, 'root', mp, '-o', 'bogus'])
    expect([r.code, r.stderr]).to.deep.equal([2, "prism: unknown mount option 'bogus' (known: ro, rw, suid, nosuid, dev, nodev, allow_other, commit=SECONDS)\n"])
    r = await cli(['mount', '-i', s.image, 'root', mp, '-o', 'commit=0'])
    expect(r.code).to.equal(2)
    r = await cli(['mount', '-i', s.image, 'root', path.join(s.dir, 'nowhere')])
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/^prism: .*nowhere: no such directory/)
    r = await cli(['mount', '-i', s.image, 'nofs', mp])
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/^prism: no fileset named 'nofs'/)
    expect(fuseMountAt(mp)).to.equal(undefined)
    r = await cli(['umount', mp])
    expect([r.code, r.stderr]).to.deep.equal([1, `prism: ${mp}: not mounted\n`])
    await s.mount('root', mp)
    r = await cli(['mount', '-i', s.image, 'root', mp])
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/^prism: .*a prism mount is there already/)
    await s.umount(mp)
  })

  it('-o ro mounts read-only; -o suid,dev lift nosuid and nodev', async () => {
    const mp = s.mountpoint()
    // (-o before the positionals, as mount(8) takes it: one value, not every word after it)
    await cliOk(['mount', '-o', 'ro', '-i', s.image, 'root', mp])
    expect(fuseMountAt(mp)!.options).to.include('ro')
    const err = await fsp.writeFile(path.join(mp, 'x'), 'y').then(() => 'ok', (e: NodeJS.ErrnoException) => e.code)
    expect(err).to.equal('EROFS')
    await s.umount(mp)
    await s.mount('root', mp, ['suid,dev'])
    expect(fuseMountAt(mp)!.options).to.not.include.members(['nosuid'])
    expect(fuseMountAt(mp)!.options).to.not.include.members(['nodev'])
    await s.umount(mp)
  })

  it('one server serves every mount of the image; a change through one mount shows at once through the other', async () => {
    const a = s.mountpoint('a')
    const b = s.mountpoint('b')
    await s.mount('root', a)
    const pid = await serverPid(s.image)
    await s.mount(null, b)
    expect(await serverPid(s.image)).to.equal(pid)
    expect((await fsp.readdir(b)).sort()).to.deep.equal(['root'])
    for (let i = 0; i < 5; i++) {
      await fsp.writeFile(path.join(a, 'f'), `version ${i}`)
      expect(await fsp.readFile(path.join(b, 'root', 'f'), 'utf8')).to.equal(`version ${i}`)
      await fsp.writeFile(path.join(b, 'root', 'g'), `other ${i}`)
      expect(await fsp.readFile(path.join(a, 'g'), 'utf8')).to.equal(`other ${i}`)
      expect((await fsp.stat(path.join(a, 'g'))).size).to.equal(`other ${i}`.length)
    }
    await fsp.unlink(path.join(b, 'root', 'g'))
    expect(await fsp.stat(path.join(a, 'g')).then(() => 'there', (e: NodeJS.ErrnoException) => e.code)).to.equal('ENOENT')
    // a new fileset: mkdir in the whole-image mount
    await fsp.mkdir(path.join(b, 'extra'))
    await fsp.writeFile(path.join(b, 'extra', 'x'), 'x')
    await s.umount(a)
    expect(await waitExit(pid!, 500)).to.equal(false) // still serving b
    await s.umount(b)
    expect(await waitExit(pid!)).to.equal(true)
    expect(await cliOk(['cat', '-i', s.image, 'extra:/x'])).to.equal('x')
  })

  it('a file read through a mount stays in the page cache across opens, and every other way of changing it (another mount, a command, a lent image) is seen at once', async function () {
    const fincore = await run('fincore', ['--version']).catch(() => null)
    if (!fincore || fincore.code !== 0) {
      console.log('      skipped: fincore (util-linux) is missing')
      this.skip()
    }
    // Read through r, a read-only mount: no atime to move, so nothing but the server's
    // notifications ever drops what its kernel cached. Changed through b and by commands.
    const r = s.mountpoint('r')
    const b = s.mountpoint('b')
    const a = s.mountpoint('a')
    await s.mount(null, b)
    await s.mount('root', r, ['ro'])
    await s.mount('root', a)
    const I = ['-i', s.image]
    const SIZE = 64 * 1024
    /** The bytes of `file` its kernel has cached (fincore opens the file: an open that dropped the cache would show 0). */
    const cached = async (file: string) => Number((await run('fincore', ['--bytes', '--noheadings', '--output', 'RES', file])).stdout.trim())
    // Every version is the same size, so that only the content tells them apart.
    const version = (c: string) => Buffer.alloc(SIZE, c)
    const expectRead = async (c: string, how: string, file = path.join(r, 'f')) => {
      expect((await fsp.readFile(file)).equals(version(c)), how).to.equal(true)
      expect(await cached(file), `${how}: cached`).to.equal(SIZE)
      expect((await fsp.readFile(file)).equals(version(c)), `${how}: read again`).to.equal(true)
    }
    await fsp.writeFile(path.join(b, 'root', 'f'), version('a'))
    await expectRead('a', 'written through the other mount')
    await fsp.writeFile(path.join(b, 'root', 'f'), version('b'))
    await expectRead('b', 'written again through the other mount')
    const h = path.join(s.dir, 'host')
    fs.writeFileSync(h, version('c'))
    await cliOk(['cp', ...I, h, 'root:/f'])
    await expectRead('c', 'prism cp')
    expect((await cli(['write', ...I, 'root:/f'], {input: version('d').toString()})).code).to.equal(0)
    await expectRead('d', 'prism write')
    fs.writeFileSync(h, version('e'))
    await cliOk(['cp', ...I, h, 'root:/g'])
    await cliOk(['mv', ...I, 'root:/g', 'root:/f'])
    await expectRead('e', 'prism mv over it')
    await cliOk(['truncate', ...I, '-s', '0', 'root:/f'])
    await cliOk(['truncate', ...I, '-s', String(SIZE), 'root:/f'])
    await expectRead('\0', 'prism truncate, down and up')
    // Written in place through the other mount (no truncate, no new inode).
    const fd = await fsp.open(path.join(b, 'root', 'f'), 'r+')
    await fd.write(version('g'), 0, SIZE, 0)
    await fd.close()
    await expectRead('g', 'written in place through the other mount')
    // A read-write mount keeps it cached too, once a read has moved atime (relatime: the first
    // read after a change must reach the server, which keeps atime).
    await expectRead('g', 'read through a read-write mount', path.join(a, 'f'))
    await fsp.writeFile(path.join(b, 'root', 'f'), version('h'))
    await expectRead('h', 'written through the other mount, read through a read-write one', path.join(a, 'f'))
    await expectRead('h', 'and through the read-only one')
    // A command that borrows the image (a copy mixing host and image sources): every mount's
    // cache is dropped when the image comes back.
    await fsp.mkdir(path.join(b, 'root', 'd'))
    await fsp.writeFile(path.join(b, 'root', 'd', 'f'), version('i'))
    await expectRead('i', 'before the borrowing command', path.join(r, 'd', 'f'))
    fs.mkdirSync(path.join(s.dir, 'hd'))
    fs.writeFileSync(path.join(s.dir, 'hd', 'f'), version('j'))
    await fsp.writeFile(path.join(b, 'root', 'e'), 'e')
    await cliOk(['cp', ...I, path.join(s.dir, 'hd', 'f'), 'root:/e', 'root:/d/'])
    await expectRead('j', 'a command that borrowed the image', path.join(r, 'd', 'f'))
    for (const m of [a, r, b]) await s.umount(m)
  })

  it('commit=SECONDS: a write nobody fsynced survives a kill -9 that comes after that long; prism umount then cleans up the dead mount', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp, ['commit=1'])
    const pid = await serverPid(s.image)
    await fsp.writeFile(path.join(mp, 'lazy'), 'written, never fsynced')
    await sleep(2500)
    process.kill(pid!, 'SIGKILL')
    await waitExit(pid!)
    const list = await cliOk(['mount', '-i', s.image])
    expect(list).to.contain('server gone')
    await cliOk(['umount', mp])
    expect(fuseMountAt(mp)).to.equal(undefined)
    expect(await cliOk(['cat', '-i', s.image, 'root:/lazy'])).to.equal('written, never fsynced')
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })

  it('a stopped server: commands say so and exit 3, the list of mounts too; umount detaches its mount and says so; resumed, the server commits everything', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const pid = (await serverPid(s.image))!
    await fsp.writeFile(path.join(mp, 'kept'), 'written before the stop')
    process.kill(pid, 'SIGSTOP')
    try {
      const env = {...process.env, PRISM_SERVER_ANSWER_MS: '1000'}
      const ls = await cli(['ls', '-i', s.image, 'root:/'], {env})
      expect([ls.code, ls.stderr]).to.deep.equal([3, `prism: disk.img is held by its prism server, which did not answer within 1 s (stopped or hung?)${fs.existsSync(logOf(s.image)) ? `; its log: ${logOf(s.image)}` : ''}\n`])
      const list = await cli(['mount'], {env})
      expect(list.code, list.stderr).to.equal(0)
      expect(list.stdout, list.stdout).to.contain(`${s.image}:root on ${mp} type fuse.prism (server not answering (stopped or hung?): prism umount detaches it)`)
      const u = await cli(['umount', mp], {env, timeoutMs: 30_000})
      expect(u.code, u.stderr).to.equal(0)
      expect(u.stderr).to.equal(`prism: ${mp}: detached; its server did not answer (stopped or hung?), and commits what it had not committed only if it resumes\n`)
      expect(fuseMountAt(mp)).to.equal(undefined)
    } finally {
      process.kill(pid, 'SIGCONT')
    }
    // Resumed, it finds its mount gone, commits, closes the image clean and exits.
    expect(await waitExit(pid, 20_000)).to.equal(true)
    expect(await cliOk(['cat', '-i', s.image, 'root:/kept'])).to.equal('written before the stop')
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })

  it('a file unlinked while open stays readable and writable; its space comes back at its last close', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const out = await py(`
import json, os, sys
p = sys.argv[1] + '/big'
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b'z' * (16 << 20))
os.fsync(fd)
free0 = os.statvfs(sys.argv[1]).f_bfree
os.unlink(p)
os.pwrite(fd, b'still here', 0)
back = os.pread(fd, 10, 0).decode()
free1 = os.statvfs(sys.argv[1]).f_bfree
os.close(fd)
import time
for i in range(50):
    free2 = os.statvfs(sys.argv[1]).f_bfree
    if free2 > free1 + 3000: break
    time.sleep(0.1)
print(json.dumps([back, free1 - free0, free2 - free1, os.path.exists(p)]))`, mp) as [string, number, number, boolean]
    expect(out[0]).to.equal('still here')
    expect(out[1]).to.be.lessThan(100) // held while open
    expect(out[2]).to.be.greaterThan(4000) // 16 MiB back
    expect(out[3]).to.equal(false)
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })

  it('other commands run while mounted (the server lends them the image): the same output and status as alone, and their changes show at once', async () => {
    const mp = s.mountpoint()
    const whole = s.mountpoint('whole')
    await s.mount('root', mp)
    await fsp.mkdir(path.join(mp, 'dir'))
    await fsp.writeFile(path.join(mp, 'dir', 'a'), 'alpha')
    await fsp.writeFile(path.join(mp, 'b'), 'beta')
    await s.umount(mp)
    const I = ['-i', s.image]
    const cmds = [['ls', '-l', 'root:/dir'], ['cat', 'root:/b'], ['df'], ['fileset', 'list'], ['stat', 'root:/b'], ['cat', 'root:/nope'], ['ls', 'root:/nope'], ['du', 'root:/'], ['fsck']]
    const alone = []
    for (const c of cmds) alone.push(await cli([...c, ...I]))
    await s.mount('root', mp)
    await s.mount(null, whole)
    const pid = await serverPid(s.image)
    for (let i = 0; i < cmds.length; i++) {
      const r = await cli([...cmds[i], ...I])
      expect({code: r.code, stdout: r.stdout, stderr: r.stderr}, cmds[i].join(' ')).to.deep.equal({code: alone[i].code, stdout: alone[i].stdout, stderr: alone[i].stderr})
    }
    // changes made by commands show at once through the mounts (cached entries and data too)
    expect(await fsp.readFile(path.join(mp, 'b'), 'utf8')).to.equal('beta')
    expect((await cli(['write', ...I, 'root:/b'], {input: 'gamma'})).code).to.equal(0)
    expect(await fsp.readFile(path.join(mp, 'b'), 'utf8')).to.equal('gamma')
    expect(await fsp.readFile(path.join(whole, 'root', 'b'), 'utf8')).to.equal('gamma')
    await fsp.stat(path.join(mp, 'gone')).catch(() => undefined) // a negative entry the kernel may keep
    expect((await cli(['write', ...I, 'root:/gone'], {input: 'here'})).code).to.equal(0)
    expect(await fsp.readFile(path.join(mp, 'gone'), 'utf8')).to.equal('here')
    await cliOk(['rm', ...I, 'root:/dir/a'])
    expect(await fsp.stat(path.join(mp, 'dir', 'a')).then(() => 'there', (e: NodeJS.ErrnoException) => e.code)).to.equal('ENOENT')
    // a clone holds what was written through the mount before the command started (no fsync)
    await fsp.writeFile(path.join(mp, 'late'), 'just written')
    await cliOk(['clone', ...I, 'root', 'c2'])
    expect((await fsp.readdir(whole)).sort()).to.deep.equal(['c2', 'root'])
    expect(await fsp.readFile(path.join(whole, 'c2', 'late'), 'utf8')).to.equal('just written')
    await fsp.writeFile(path.join(mp, 'late'), 'changed after')
    expect(await fsp.readFile(path.join(whole, 'c2', 'late'), 'utf8')).to.equal('just written')
    // fsck --repair is refused while served; a command that would reach a mount is refused
    let r = await cli(['fsck', '--repair', ...I])
    expect(r.code).to.equal(8)
    expect(r.stderr).to.match(/^prism: disk\.img is mounted \(held by prism server \d+, mounted on .*\): unmount it first/)
    expect(r.stderr.split('\n').length).to.equal(2)
    // A command that reads a snapshot may write its output into a mount (the server answers it
    // all along); one that borrows the image (a lend, scan --incremental's save) may not.
    r = await run('sh', ['-c', `"${process.execPath}" "${BIN}" ls -i "${s.image}" root:/ > "${path.join(mp, 'out')}"`], {timeoutMs: 30_000})
    expect(r.code, r.stderr).to.equal(0)
    expect(await fsp.readFile(path.join(mp, 'out'), 'utf8')).to.equal((await cliOk(['ls', ...I, 'root:/'])))
    r = await cli(['cp', ...I, 'root:/b', path.join(mp, 'copy')], {timeoutMs: 30_000})
    expect(r.code, r.stderr).to.equal(0)
    expect(await fsp.readFile(path.join(mp, 'copy'), 'utf8')).to.equal('gamma')
    r = await cli(['export', ...I, 'root', path.join(mp, 'root.tar')], {timeoutMs: 30_000})
    expect(r.code, r.stderr).to.equal(0)
    const listing = await run('tar', ['-tf', path.join(mp, 'root.tar')])
    expect(listing.stdout.split('\n')).to.include.members(['./b', './late', './copy', './out'])
    r = await cli(['cp', ...I, 'root:/b', path.join(mp, 'lent')], {timeoutMs: 30_000, env: {...process.env, PRISM_SERVED_SNAPSHOT: '0'}})
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/^prism: cannot run while disk\.img is served: .*lent is on a mount of this image/)
    fs.writeFileSync(path.join(s.dir, 'sigs.ndb'), `Prism.Test:0:*:${Buffer.from('no such bytes here').toString('hex')}\n`)
    r = await run('sh', ['-c', `"${process.execPath}" "${BIN}" scan root --incremental -s "${path.join(s.dir, 'sigs.ndb')}" -i "${s.image}" > "${path.join(mp, 'scan.out')}"`], {timeoutMs: 30_000})
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/^prism: cannot run while disk\.img is served: its stdout is a file on a mount of this image/)
    // (prism write reads its standard input to its end before it asks the server: it may come from a mount)
    r = await run('sh', ['-c', `"${process.execPath}" "${BIN}" write -i "${s.image}" root:/w < "${path.join(mp, 'b')}"`], {timeoutMs: 30_000})
    expect(r.code, r.stderr).to.equal(0)
    expect(await cliOk(['cat', ...I, 'root:/w'])).to.equal('gamma')
    // Nor do cp into the image and import borrow it (the server copies in slices, answering its
    // mounts meanwhile): their host files, archive and standard input may be on a mount, and the
    // current directory too. Lent instead (PRISM_SERVED_SLICES=0), they are refused.
    await fsp.mkdir(path.join(mp, 'src', 'sub'), {recursive: true})
    await fsp.writeFile(path.join(mp, 'src', 'sub', 'f'), 'from the mount\n')
    await run('tar', ['-cf', path.join(mp, 'src.tar'), '-C', path.join(mp, 'src'), '.'])
    const inMount = [
      `cp -r -i "${s.image}" "${path.join(mp, 'src')}" root:/cp1`,
      `cp -r -i "${s.image}" src root:/cp2`, // (the current directory on the mount)
      `import -i "${s.image}" --create imp1 "${path.join(mp, 'src.tar')}"`,
      `import -i "${s.image}" --create imp2 - < "${path.join(mp, 'src.tar')}"`,
    ]
    for (const cmd of inMount) {
      r = await run('sh', ['-c', `cd "${mp}" && "${process.execPath}" "${BIN}" ${cmd}`], {timeoutMs: 30_000})
      expect(r.code, `${cmd}: ${r.stderr}`).to.equal(0)
    }
    for (const made of ['cp1/sub/f', 'cp2/sub/f']) expect(await fsp.readFile(path.join(mp, made), 'utf8'), made).to.equal('from the mount\n')
    for (const f of ['imp1', 'imp2']) expect(await cliOk(['cat', ...I, `${f}:/sub/f`])).to.equal('from the mount\n')
    r = await cli(['cp', ...I, path.join(mp, 'src', 'sub', 'f'), 'root:/cp3'], {timeoutMs: 30_000, env: {...process.env, PRISM_SERVED_SLICES: '0'}})
    expect(r.code).to.equal(1)
    expect(r.stderr).to.match(/^prism: cannot run while disk\.img is served: .*src\/sub\/f is on a mount of this image/)
    expect(await serverPid(s.image)).to.equal(pid)
    await s.umount(mp)
    await s.umount(whole)
    const fsck = await cli(['fsck', ...I])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })

  it('prism cat of a served image into a pipe whose reader first reads the mount: both finish (cat leaves the image at once)', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const small = 'a small file, in blocks of its own (not inline)\n'.repeat(200)
    await fsp.writeFile(path.join(mp, 'small'), small)
    await fsp.writeFile(path.join(mp, 'seen'), 'through the mount\n')
    // The reader reads the mount before the pipe: the server must be serving by then.
    const r = await run('sh', ['-c', `"${process.execPath}" "${BIN}" cat -i "${s.image}" root:/small | { sleep 0.5; cat "${path.join(mp, 'seen')}"; cat; }`], {timeoutMs: 30_000})
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.equal('through the mount\n' + small)
    await s.umount(mp)
  })

  it('prism serve runs the server in the foreground until SIGTERM, which unmounts and closes the image clean; mount --foreground ends at umount', async () => {
    const mp = s.mountpoint()
    const serve = spawn(process.execPath, [BIN, 'serve', '-i', s.image], {stdio: ['ignore', 'pipe', 'pipe']})
    let err = ''
    serve.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d
    })
    const exited = new Promise<number | null>((resolve) => serve.on('exit', (code) => resolve(code)))
    for (let i = 0; i < 200 && (await serverPid(s.image)) !== serve.pid; i++) await sleep(50)
    expect(await serverPid(s.image)).to.equal(serve.pid)
    await s.mount('root', mp) // joins the running server
    expect(await serverPid(s.image)).to.equal(serve.pid)
    await fsp.writeFile(path.join(mp, 'served'), 'by prism serve')
    serve.kill('SIGTERM')
    expect(await exited, err).to.equal(0)
    expect(err).to.equal('')
    expect(fuseMountAt(mp)).to.equal(undefined)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    expect(fsck.stdout).to.not.contain('journal')
    expect(await cliOk(['cat', '-i', s.image, 'root:/served'])).to.equal('by prism serve')
    // mount --foreground: the command itself serves, until the mount goes
    const fg = spawn(process.execPath, [BIN, 'mount', '-i', s.image, 'root', mp, '--foreground'], {stdio: ['ignore', 'pipe', 'pipe']})
    const fgExit = new Promise<number | null>((resolve) => fg.on('exit', (code) => resolve(code)))
    for (let i = 0; i < 200 && fuseMountAt(mp) === undefined; i++) await sleep(50)
    expect(await serverPid(s.image)).to.equal(fg.pid)
    expect(await fsp.readFile(path.join(mp, 'served'), 'utf8')).to.equal('by prism serve')
    await s.umount(mp)
    expect(await fgExit).to.equal(0)
  })

  it('an asynchronous clone reads right through the mount while the server expands it', async () => {
    const src = path.join(s.dir, 'src')
    for (let d = 0; d < 60; d++) {
      fs.mkdirSync(path.join(src, `d${d}`, 'sub'), {recursive: true})
      for (let f = 0; f < 5; f++) fs.writeFileSync(path.join(src, `d${d}`, f % 2 ? 'sub' : '', `f${f}`), `${d}/${f} `.repeat(d * 10 + f))
    }
    await cliOk(['cp', '-r', '-i', s.image, src, 'root:/tree'])
    await cliOk(['clone', '-i', s.image, 'root:/tree', 'ac', '--mode', 'async', '--no-background'])
    const mp = s.mountpoint()
    await s.mount(null, mp)
    const tree = `
import hashlib, json, os, sys
out = {}
for dp, dn, fn in os.walk(sys.argv[1]):
    for n in fn:
        p = os.path.join(dp, n)
        out[os.path.relpath(p, sys.argv[1])] = hashlib.sha256(open(p, 'rb').read()).hexdigest()
print(json.dumps(out))`
    const want = await py(tree, src)
    expect(await py(tree, path.join(mp, 'ac'))).to.deep.equal(want)
    // the source changes after the clone: the clone keeps what it was
    await fsp.writeFile(path.join(mp, 'root', 'tree', 'd5', 'f0'), 'changed')
    expect(await py(tree, path.join(mp, 'ac'))).to.deep.equal(want)
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    expect(await cliOk(['cat', '-i', s.image, 'ac:/d5/f0'])).to.equal(fs.readFileSync(path.join(src, 'd5', 'f0'), 'utf8'))
  })
})
