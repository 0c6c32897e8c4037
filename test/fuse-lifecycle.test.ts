// The FUSE binding's life cycle: reporting that it is unavailable, mount options and mount
// errors, unmounting (busy, lazy, at process exit), a server killed with SIGKILL and the
// helper that recovers its dead mount, requests held in JavaScript while cache
// notifications run and while the connection is aborted, and kernel cache invalidation.
// Each test starts its own server (test/fuse-server.ts) and cleans up after itself.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {
  ADDON_PATH, fuseAvailability, FuseUnavailableError, fuseMountAt, mount, probeMount, recoverMount,
} from '../src/fuse/index.js'
import {forceUnmount, FUSE_TIMEOUT, FuseServer, py, runOk, skipWithoutFuse} from './fuse-support.js'

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function errnoOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (e) {
    return (e as NodeJS.ErrnoException).code
  }
}

async function until(what: string, f: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

describe('FUSE binding: availability', () => {
  it('reports "unavailable" with the reason when the addon is not built, and mount refuses with it', async () => {
    const missing = path.join(os.tmpdir(), 'no-such-dir', 'prism_fuse.node')
    const av = fuseAvailability(missing)
    expect(av.available).to.equal(false)
    if (av.available) return
    expect(av.reason).to.contain(missing)
    expect(av.reason).to.contain('npm run build:fuse')
    let caught: unknown
    try {
      await mount(os.tmpdir(), {}, {}, missing)
    } catch (e) {
      caught = e
    }
    expect(caught).to.be.instanceOf(FuseUnavailableError)
    expect((caught as Error).message).to.equal(av.reason)
  })

  it('without libfuse3\'s development files the build script says why, exits 0, and the binding reports that reason', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-nofuse-'))
    try {
      fs.mkdirSync(path.join(dir, 'scripts'))
      fs.mkdirSync(path.join(dir, 'native', 'fuse'), {recursive: true})
      for (const f of ['build-fuse.mjs', 'gyp.mjs']) fs.copyFileSync(path.join(ROOT, 'scripts', f), path.join(dir, 'scripts', f))
      for (const f of ['prism_fuse.c', 'binding.gyp']) fs.copyFileSync(path.join(ROOT, 'native', 'fuse', f), path.join(dir, 'native', 'fuse', f))
      // pkg-config that searches an empty directory: as on a machine without libfuse3-dev
      const r = spawnSync(process.execPath, [path.join(dir, 'scripts', 'build-fuse.mjs')], {encoding: 'utf8', env: {...process.env, PKG_CONFIG_LIBDIR: dir, PKG_CONFIG_PATH: ''}})
      expect(r.status).to.equal(0)
      const reason = 'libfuse3 development files not found by pkg-config fuse3 (apt-get install libfuse3-dev)'
      expect(r.stdout.trim()).to.equal(`prism: the FUSE binding is not built: ${reason}`)
      const addon = path.join(dir, 'native', 'fuse', 'build', 'Release', 'prism_fuse.node')
      expect(fs.existsSync(addon)).to.equal(false)
      const av = fuseAvailability(addon)
      expect(av.available).to.equal(false)
      if (!av.available) expect(av.reason).to.equal(`the FUSE binding was not built: ${reason}`)
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })

  it('reports a file that is not a loadable addon clearly', () => {
    const bad = path.join(os.tmpdir(), `prism-bad-addon-${process.pid}.node`)
    fs.writeFileSync(bad, 'not an ELF object')
    try {
      const av = fuseAvailability(bad)
      expect(av.available).to.equal(false)
      if (!av.available) expect(av.reason).to.match(/does not load: .*(invalid ELF|too short)/)
    } finally {
      fs.rmSync(bad, {force: true})
    }
  })

  it('the built addon, when present, loads and names its libfuse', function () {
    const av = fuseAvailability()
    if (!av.available) {
      console.log(`      FUSE unavailable here: ${av.reason}`)
      this.skip()
    }
    expect(av.addonPath).to.equal(ADDON_PATH)
    expect(av.libfuseVersion).to.match(/^3\.\d+/)
  })
})

describe('FUSE binding: mounting, unmounting, dying', function () {
  this.timeout(FUSE_TIMEOUT)
  let servers: FuseServer[] = []
  const dirs: string[] = []

  before(function () {
    skipWithoutFuse(this)
  })

  afterEach(async () => {
    for (const s of servers) await s.cleanup()
    servers = []
    for (const d of dirs.splice(0)) {
      await forceUnmount(d)
      fs.rmSync(d, {recursive: true, force: true})
    }
  })

  const start = async (opts: Parameters<typeof FuseServer.start>[0] = {}): Promise<FuseServer> => {
    const s = await FuseServer.start(opts)
    servers.push(s)
    return s
  }

  it('refuses a mount point that does not exist, and bad options, with one clear message', async () => {
    const nowhere = path.join(os.tmpdir(), `prism-no-mountpoint-${process.pid}`)
    let caught: Error | undefined
    try {
      await mount(nowhere, {})
    } catch (e) {
      caught = e as Error
    }
    expect(caught?.message).to.equal(`cannot mount FUSE on ${nowhere}: no such directory`)
    expect(fuseMountAt(nowhere)).to.equal(undefined)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-fuse-'))
    dirs.push(dir)
    caught = undefined
    try {
      await mount(dir, {}, {subtype: 'no spaces'})
    } catch (e) {
      caught = e as Error
    }
    expect(caught?.message).to.match(/bad FUSE subtype/)
    caught = undefined
    try {
      await mount(dir, {}, {maxWrite: 4 << 20})
    } catch (e) {
      caught = e as Error
    }
    expect(caught?.message).to.match(/maxWrite must be an integer from 4096 to 1048576/)
    expect(fuseMountAt(dir)).to.equal(undefined)
  })

  it('mount options: suid, dev, an escaped fsname, readdir without readdirplus, ioctl left to the default ENOTTY', async () => {
    const srv = await start({options: {suid: true, dev: true, fsname: 'odd,name\\x y'}, memfs: {noIoctl: true, noReaddirplus: true}})
    const m = fuseMountAt(srv.mountpoint)!
    expect(m.options).to.not.include('nosuid')
    expect(m.options).to.not.include('nodev')
    expect(m.source).to.equal('odd,name\\x y')
    expect(srv.conn.readdirplus).to.equal(false)
    const code = `
import fcntl, json, os, stat, sys
d = sys.argv[1]
os.mknod(os.path.join(d, 'null'), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
with open(os.path.join(d, 'null'), 'rb') as f:
    data = f.read()
open(os.path.join(d, 'f'), 'w').close()
fd = os.open(os.path.join(d, 'f'), os.O_RDONLY)
try:
    fcntl.ioctl(fd, 0x80085001, bytes(8))
    e = 0
except OSError as x:
    e = x.errno
print(json.dumps([len(data), e, sorted(os.listdir(d))]))`
    expect(await py(code, srv.mountpoint)).to.deep.equal([0, 25, ['f', 'null']])
    const st = await srv.call<{ops: Record<string, number>}>('stats')
    expect(st.ops.readdir).to.be.greaterThan(0)
    expect(st.ops.readdirplus).to.equal(undefined)
  })

  it('max_read and max_write limit the requests; a mount over a non-empty directory hides it until unmounted', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-fuse-'))
    fs.writeFileSync(path.join(dir, 'underneath'), 'under')
    const srv = await FuseServer.start({options: {maxRead: 64 * 1024, maxWrite: 256 * 1024}}, dir)
    servers.push(srv)
    expect([srv.conn.maxRead, srv.conn.maxWrite]).to.deep.equal([64 * 1024, 256 * 1024])
    expect(await fsp.readdir(dir)).to.deep.equal([])
    await runOk('dd', ['if=/dev/zero', `of=${srv.path('f')}`, 'bs=1M', 'count=4'])
    await runOk('dd', [`if=${srv.path('f')}`, 'of=/dev/null', 'bs=1M', 'iflag=direct'])
    const st = await srv.call<{writes: {max: number}, reads: {max: number}}>('stats')
    expect([st.writes.max, st.reads.max]).to.deep.equal([256 * 1024, 64 * 1024])
    await srv.call('unmount')
    expect(await srv.waitClosed()).to.equal(true)
    expect(fs.readFileSync(path.join(dir, 'underneath'), 'utf8')).to.equal('under')
  })

  it('a mount point named through a symlink: the session finds its mount and unmounts it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-fuse-'))
    dirs.push(dir)
    const link = `${dir}-link`
    fs.symlinkSync(dir, link)
    try {
      const srv = await FuseServer.start({}, link)
      servers.push(srv)
      expect(srv.device).to.be.a('string')
      expect(fuseMountAt(dir)?.device).to.equal(srv.device)
      await fsp.writeFile(srv.path('f'), 'via the link')
      expect(fs.readFileSync(path.join(dir, 'f'), 'utf8')).to.equal('via the link')
      await srv.call('unmount')
      expect(await srv.waitClosed()).to.equal(true)
      expect(fuseMountAt(dir)).to.equal(undefined)
    } finally {
      fs.rmSync(link, {force: true})
    }
  })

  it('a read-only mount refuses writes with EROFS', async () => {
    const srv = await start({options: {readOnly: true}})
    expect(fuseMountAt(srv.mountpoint)!.options).to.include('ro')
    expect(await errnoOf(fsp.writeFile(srv.path('x'), 'x'))).to.equal('EROFS')
    expect(await errnoOf(fsp.mkdir(srv.path('d')))).to.equal('EROFS')
  })

  it('writeback caching: written data comes back exactly and reaches the filesystem in big writes', async () => {
    const srv = await start({options: {writebackCache: true}})
    expect(srv.conn.writebackCache).to.equal(true)
    const data = Buffer.alloc(8 << 20)
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i)
    await fsp.writeFile(srv.path('wb'), data)
    await runOk('sync', [srv.path('wb')])
    expect((await fsp.readFile(srv.path('wb'))).equals(data)).to.equal(true)
    const st = await srv.call<{writes: {max: number, count: number}}>('stats')
    expect(st.writes.max).to.be.at.least(128 * 1024)
  })

  it('unmount fails with EBUSY while a file is open, a lazy unmount detaches at once and ends when the file closes', async () => {
    const srv = await start()
    await fsp.writeFile(srv.path('busy'), 'held open')
    const h = await fsp.open(srv.path('busy'), 'r')
    let caught: Error | undefined
    try {
      await srv.call('unmount')
    } catch (e) {
      caught = e as Error
    }
    expect(caught?.message).to.match(/EBUSY.*in use/)
    expect(fuseMountAt(srv.mountpoint)).to.not.equal(undefined)
    await srv.call('unmount', {lazy: true})
    expect(fuseMountAt(srv.mountpoint)).to.equal(undefined)
    expect(srv.closed).to.equal(false)
    const buf = Buffer.alloc(9)
    await h.read(buf, 0, 9, 0) // still served through the detached mount
    expect(buf.toString()).to.equal('held open')
    await h.close()
    expect(await srv.waitClosed()).to.equal(true)
  })

  it('process.exit() with the mount still up detaches it (no dead mount left behind)', async () => {
    const srv = await start()
    await fsp.writeFile(srv.path('f'), 'x')
    await srv.call('exit')
    await srv.exited
    await until('the mount to go', () => fuseMountAt(srv.mountpoint) === undefined)
  })

  it('a server killed with SIGKILL leaves a dead mount; recoverMount detects it and unmounts it lazily', async () => {
    const srv = await start()
    await fsp.writeFile(srv.path('f'), 'x')
    srv.child.kill('SIGKILL')
    await srv.exited
    expect(fuseMountAt(srv.mountpoint)).to.not.equal(undefined)
    expect(await errnoOf(fsp.stat(srv.path('f')))).to.equal('ENOTCONN')
    expect(await probeMount(srv.mountpoint)).to.equal('dead')
    let caught: Error | undefined
    try {
      await mount(srv.mountpoint, {})
    } catch (e) {
      caught = e as Error
    }
    expect(caught?.message).to.match(new RegExp(`^cannot mount FUSE on ${srv.mountpoint}: .*(Transport endpoint is not connected|a dead FUSE mount)`))
    expect(await recoverMount(srv.mountpoint)).to.equal('dead')
    expect(fuseMountAt(srv.mountpoint)).to.equal(undefined)
    expect(await fsp.readdir(srv.mountpoint)).to.deep.equal([])
    expect(await recoverMount(srv.mountpoint)).to.equal('none')
  })

  it('recoverMount leaves a live mount alone, a hung one too unless forced, and then aborts and unmounts it', async () => {
    const srv = await start({memfs: {attrTimeout: 0}})
    expect(await recoverMount(srv.mountpoint)).to.equal('alive')
    await srv.call('hold', {name: 'statfs'}) // what a probe asks for (a stat may be answered from the kernel's cache)
    expect(await probeMount(srv.mountpoint, 1000)).to.equal('hung')
    expect(await recoverMount(srv.mountpoint, {timeoutMs: 1000})).to.equal('hung')
    expect(fuseMountAt(srv.mountpoint)).to.not.equal(undefined)
    expect(await recoverMount(srv.mountpoint, {force: true, timeoutMs: 1000})).to.equal('hung')
    expect(fuseMountAt(srv.mountpoint)).to.equal(undefined)
    expect(await srv.waitClosed()).to.equal(true)
    expect(await srv.call<number>('release', {name: 'statfs'})).to.be.at.least(1) // late answers, dropped quietly
    expect(await srv.call('ping')).to.equal('pong')
    expect((await srv.call<{errors: string[]}>('stats')).errors).to.deep.equal([])
  })

  it('a request held in JavaScript: the loop keeps serving, a notification waits without blocking the main thread, abort ends the session', async () => {
    const srv = await start()
    await fsp.mkdir(srv.path('other'))
    await fsp.writeFile(srv.path('other', 'f'), 'other')
    await srv.call('hold', {name: 'held'})
    const pending = errnoOf(fsp.stat(srv.path('held')))
    await until('the lookup to be held', async () => await srv.call<number>('heldCount', {name: 'held'}) === 1)
    // the kernel holds the root's lock for the lookup: an entry notification on it must wait
    const id = await srv.call<number>('invalEntryStart', {dir: '/', name: 'held'})
    await sleep(200)
    expect(await srv.call('ping')).to.equal('pong') // the main thread answers
    expect(await fsp.readFile(srv.path('other', 'f'), 'utf8')).to.equal('other') // the loop serves
    expect(await srv.call<number>('release', {name: 'held'})).to.equal(1)
    expect(await pending).to.equal('ENOENT')
    expect(typeof await srv.call('invalEntryWait', {id})).to.equal('boolean')

    // a request still in JavaScript when the connection is aborted
    await srv.call('hold', {name: 'held2'})
    const pending2 = errnoOf(fsp.stat(srv.path('held2')))
    await until('the lookup to be held', async () => await srv.call<number>('heldCount', {name: 'held2'}) === 1)
    expect(await srv.call('abort')).to.equal(true)
    expect(await pending2).to.be.oneOf(['ENOTCONN', 'ECONNABORTED']) // ECONNABORTED since Linux 6.x
    expect(await srv.waitClosed()).to.equal(true) // ended with the request unanswered: answered EIO
    await until('the dead mount to be detached', () => fuseMountAt(srv.mountpoint) === undefined)
    expect(await srv.call<number>('release', {name: 'held2'})).to.equal(1)
    expect(await srv.call('ping')).to.equal('pong')
    const st = await srv.call<{errors: string[]}>('stats')
    expect(st.errors).to.deep.equal([])
  })

  it('a busy mount: the main thread reads requests itself, yet its timers keep running, and every answer is right (several processes, answers at once and through promises)', async () => {
    const srv = await start()
    // Each process works on its own file for 1.5 s: pwrite of a counter into one of 512
    // slots, fstat, and the stat of a missing name (the test filesystem answers lookups
    // through a promise, which ends the main thread's reading each time); then it reads the
    // file back and checks every slot holds the last counter written to it.
    const code = `
import json, os, sys, time
d, k = sys.argv[1], int(sys.argv[2])
fd = os.open(os.path.join(d, 'f%d' % k), os.O_CREAT | os.O_RDWR, 0o644)
end = time.time() + 1.5
n = 0
while time.time() < end:
    os.pwrite(fd, b'%08d' % n, (n % 512) * 8)
    os.fstat(fd)
    try:
        os.stat(os.path.join(d, 'missing%d' % n))
    except FileNotFoundError:
        pass
    n += 1
data = os.pread(fd, 512 * 8, 0)
want = b''.join(b'%08d' % max(i for i in range(max(0, n - 512), n) if i % 512 == s) if s < n else b'' for s in range(512))
print(json.dumps({'n': n, 'ok': data == want}))
`
    await srv.call('tickStart')
    const results = await Promise.all([0, 1, 2].map((k) => py(code, srv.mountpoint, String(k)) as Promise<{n: number, ok: boolean}>))
    const t = await srv.call<{count: number, maxGapMs: number}>('tickStop')
    for (const r of results) {
      expect(r.ok, 'every slot holds its last write').to.equal(true)
      expect(r.n).to.be.greaterThan(50)
    }
    // the direct reads give the event loop back within 4 ms; 250 ms leaves room for a loaded machine
    expect(t.count).to.be.greaterThan(20)
    expect(t.maxGapMs).to.be.lessThan(250)
    expect((await srv.call<{errors: string[]}>('stats')).errors).to.deep.equal([])
  })

  it('cache invalidation: invalidateInode, invalidateEntry and notifyDelete show changes made behind the kernel\'s back', async () => {
    const srv = await start({memfs: {attrTimeout: 3600, entryTimeout: 3600}})
    await fsp.writeFile(srv.path('c'), 'old')
    expect((await fsp.stat(srv.path('c'))).size).to.equal(3)
    await srv.call('poke', {path: '/c', data: 'new content'})
    expect((await fsp.stat(srv.path('c'))).size).to.equal(3) // cached for an hour
    expect(await srv.call('poke', {path: '/c', data: 'new content', invalidate: true})).to.equal(true)
    expect((await fsp.stat(srv.path('c'))).size).to.equal(11)
    expect(await fsp.readFile(srv.path('c'), 'utf8')).to.equal('new content')

    for (const n of ['g1', 'g2', 'g3']) await fsp.writeFile(srv.path(n), n)
    for (const n of ['g1', 'g2', 'g3']) await fsp.stat(srv.path(n))
    await srv.call('removeFile', {dir: '/', name: 'g1'})
    expect((await fsp.stat(srv.path('g1'))).size).to.equal(2) // the kernel still has the name
    expect(await srv.call('removeFile', {dir: '/', name: 'g2', notify: 'entry'})).to.equal(true)
    expect(await errnoOf(fsp.stat(srv.path('g2')))).to.equal('ENOENT')
    expect(await srv.call('removeFile', {dir: '/', name: 'g3', notify: 'delete'})).to.equal(true)
    expect(await errnoOf(fsp.stat(srv.path('g3')))).to.equal('ENOENT')

    expect(await srv.call('addFile', {dir: '/', name: 'late', invalidate: true})).to.equal(false) // nothing cached: false
    expect((await fsp.stat(srv.path('late'))).isFile()).to.equal(true)
    expect(await srv.call('invalInode', {ino: 987654})).to.equal(false) // an inode the kernel never saw
  })
})
