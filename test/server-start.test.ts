// A server stopped (a signal) while it starts never goes on to listen with its image closed:
// such a process would live on, holding the image's socket name for nothing, and the next
// `prism mount` of a file given that name would wait for it and fail ("did not start in time").
import {expect} from 'chai'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {socketPath} from '../src/server/paths.js'
import {Server} from '../src/server/server.js'
import {newImage, prism, tmpDir} from './helpers.js'

describe('a server stopped while it starts', function () {
  this.timeout(60_000)
  let dir: string
  beforeEach(() => {
    dir = tmpDir('prism-serverstart-')
  })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('does not listen once stopped, and closes its image clean', async () => {
    const img = newImage(dir, 16 * 1024 * 1024)
    const sock = socketPath(img, true)
    fs.rmSync(sock, {force: true})
    // Something on the socket that answers late: listen() waits for it, and the stop comes meanwhile.
    const slow = net.createServer((c) => {
      c.on('data', () => setTimeout(() => c.end(JSON.stringify({ok: true, pid: 1, image: '/gone', dev: 1, ino: 2}) + '\n'), 800))
    })
    await new Promise<void>((resolve) => slow.listen(sock, resolve))
    const server = new Server(img, {idleExit: true, log: () => {}})
    try {
      const listening = server.listen()
      await new Promise((r) => setTimeout(r, 200))
      await server.stop()
      let failed: unknown = null
      await listening.catch((e: unknown) => { failed = e })
      expect(String(failed)).to.match(/shutting down/)
      // Nobody of this server listens: the socket is the stranger's still, or gone.
      const answer = await new Promise<string>((resolve) => {
        const c = net.createConnection(sock)
        c.setEncoding('utf8')
        c.on('connect', () => c.write('{"op":"ping"}\n'))
        c.on('data', (d: string) => { c.destroy(); resolve(d) })
        c.on('error', (e) => resolve(String(e)))
      })
      expect(answer).to.not.match(new RegExp(`"pid":${process.pid}`))
    } finally {
      await new Promise<void>((resolve) => slow.close(() => resolve()))
    }
    const fsck = prism(['fsck', '-i', img])
    expect(fsck.status, fsck.stdout).to.equal(0)
    expect(fs.existsSync(path.dirname(sock))).to.equal(true)
  })
})
