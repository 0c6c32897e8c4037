// A served image is one file, whatever happens to its path: the server holds it open for its
// whole life, opens that file again after a command borrowed it (not whatever file now has its
// name), and answers only for it. A server of another file that answers on the image's socket
// is not taken for its server.
import {expect} from 'chai'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {socketPath} from '../src/server/paths.js'
import {mkfs} from '../src/fs/image.js'
import {cli, cliOk, Scratch, serverPid, skipWithoutFuse, waitExit} from './mount-support.js'

/** Run with the image lent to the command (the way before commands were asked of the server). */
const LEND = {env: {...process.env, PRISM_SERVED_SLICES: '0'}}

describe('a served image is its file, not its path', function () {
  this.timeout(120_000)
  let s: Scratch

  beforeEach(function () {
    skipWithoutFuse(this)
    s = new Scratch({size: 64 * 1024 * 1024})
  })

  afterEach(async () => {
    await s?.cleanup()
  })

  it('moved while mounted: a command through the new path borrows it, and the mount goes on with the same image', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    await fsp.writeFile(path.join(mp, 'before'), 'one')
    const moved = path.join(s.dir, 'moved.img')
    fs.renameSync(s.image, moved)
    const pid = await serverPid(moved)
    expect(pid).to.not.equal(null) // (found through the new path)
    const r = await cli(['mkdir', '-i', moved, 'root:/lent'], LEND)
    expect(r.code, r.stderr).to.equal(0)
    expect((await fsp.readdir(mp)).sort()).to.deep.equal(['before', 'lent'])
    await fsp.writeFile(path.join(mp, 'after'), 'two')
    expect(await fsp.readFile(path.join(mp, 'before'), 'utf8')).to.equal('one')
    await cliOk(['umount', mp])
    expect(await waitExit(pid!)).to.equal(true)
    expect(await cliOk(['cat', '-i', moved, 'root:/before'])).to.equal('one')
    expect(await cliOk(['cat', '-i', moved, 'root:/after'])).to.equal('two')
    expect((await cliOk(['ls', '-i', moved, 'root:/'])).split(/\s+/).filter(Boolean).sort()).to.deep.equal(['after', 'before', 'lent'])
    const fsck = await cli(['fsck', '-i', moved])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    fs.renameSync(moved, s.image) // (for the cleanup)
  })

  it('another image put at its path: the mount keeps its own image after a lend, and the new file is not touched', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    await fsp.writeFile(path.join(mp, 'mine'), 'served')
    const old = path.join(s.dir, 'old.img')
    fs.renameSync(s.image, old)
    mkfs(s.image, {size: 16 * 1024 * 1024}).close()
    await cliOk(['mkdir', '-i', s.image, 'root:/other'])
    const otherBytes = fs.readFileSync(s.image)
    // Lent through the old file's new name: the server opens its own file again afterwards.
    const r = await cli(['mkdir', '-i', old, 'root:/lent'], LEND)
    expect(r.code, r.stderr).to.equal(0)
    expect((await fsp.readdir(mp)).sort()).to.deep.equal(['lent', 'mine'])
    await fsp.writeFile(path.join(mp, 'later'), 'still served')
    expect(await fsp.readFile(path.join(mp, 'mine'), 'utf8')).to.equal('served')
    // The file now at the old path is another image, not served: commands open it themselves.
    expect((await cliOk(['ls', '-i', s.image, 'root:/'])).trim()).to.equal('other')
    expect(fs.readFileSync(s.image).equals(otherBytes)).to.equal(true)
    await cliOk(['umount', mp])
    expect(fs.readFileSync(s.image).equals(otherBytes)).to.equal(true)
    expect((await cliOk(['ls', '-i', old, 'root:/'])).split(/\s+/).filter(Boolean).sort()).to.deep.equal(['later', 'lent', 'mine'])
    expect(await cliOk(['cat', '-i', old, 'root:/later'])).to.equal('still served')
  })

  it('a server of another file answering on the socket is not taken for the image\'s: commands open the image, and mount takes the socket', async () => {
    const sock = socketPath(s.image)
    fs.mkdirSync(path.dirname(sock), {recursive: true, mode: 0o700})
    fs.rmSync(sock, {force: true})
    const asked: string[] = []
    const stranger = net.createServer((c) => {
      c.setEncoding('utf8')
      c.on('data', (d: string) => {
        asked.push(d.trim())
        // What a server of a removed file that once had this inode number would say.
        c.end(JSON.stringify({ok: true, pid: 1, image: '/gone/disk.img', dev: 1, ino: 2, mounts: []}) + '\n')
      })
    })
    await new Promise<void>((resolve) => stranger.listen(sock, resolve))
    try {
      await cliOk(['mkdir', '-i', s.image, 'root:/d'])
      expect((await cliOk(['ls', '-i', s.image, 'root:/'])).trim()).to.equal('d')
      const mp = s.mountpoint()
      await s.mount('root', mp)
      expect(await fsp.readdir(mp)).to.deep.equal(['d'])
      await fsp.writeFile(path.join(mp, 'f'), 'x')
      await cliOk(['umount', mp])
      expect(await cliOk(['cat', '-i', s.image, 'root:/f'])).to.equal('x')
      expect(asked.length).to.be.greaterThan(0) // (it was asked, and its answer was not believed)
    } finally {
      await new Promise<void>((resolve) => stranger.close(() => resolve()))
    }
  })

  it('the server log of an image is appended to by each start, never truncated (a file given the same numbers keeps what was logged before)', async () => {
    const log = socketPath(s.image, true).replace(/\.sock$/, '.log')
    fs.writeFileSync(log, 'prism: a line an earlier server wrote\n')
    for (const round of [1, 2]) {
      const mp = s.mountpoint()
      const pid0 = (await serverPid(s.image))
      expect(pid0, `round ${round}: no server yet`).to.equal(null)
      await s.mount('root', mp)
      const pid = await serverPid(s.image)
      await cliOk(['umount', mp])
      expect(await waitExit(pid!)).to.equal(true)
      const text = fs.readFileSync(log, 'utf8')
      expect(text.startsWith('prism: a line an earlier server wrote\n'), text).to.equal(true)
      expect(text.match(/^-- .* prism mount \(pid \d+\) starts a server for /gm), text).to.have.length(round)
    }
  })
})
