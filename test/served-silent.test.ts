// A server that holds the image and answers nothing (stopped with SIGSTOP, under a debugger,
// hung): a command asks it whether it serves the image, and after $PRISM_SERVER_ANSWER_MS
// (10 s by default) says so in one line and exits as for a locked image (3; fsck 8), instead
// of waiting for the lock on top and blaming "another prism process" (or, for `prism mount`,
// an internal error); mkfs --force does not
// overwrite such an image. A signal while a command waits for a server's answer ends it with
// `prism: interrupted` and 128 + the signal, as everywhere else, not silently by the signal.
// The image is unchanged byte for byte in every case. The server here is a socket at the
// image's own server address that accepts connections and never answers.
import {expect} from 'chai'
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {logPath, socketPath} from '../src/server/paths.js'
import {BIN, edit, newImage, prism, sha256File, tmpDir} from './helpers.js'

const SIGNO: Record<string, number> = {SIGHUP: 1, SIGINT: 2, SIGTERM: 15}

describe('a server that does not answer', function () {
  this.timeout(120_000)
  let dir: string
  let img: string
  let server: net.Server
  let sock: string
  /** connections the silent server has taken */
  let taken: net.Socket[] = []
  let original: string

  before(async () => {
    dir = tmpDir()
    img = newImage(dir, 16 * 1024 * 1024)
    edit(img, (ns) => ns.writeFile('/f', Buffer.from('kept\n')))
    original = sha256File(img)
    sock = socketPath(img, true)
    fs.rmSync(sock, {force: true})
    server = net.createServer((c) => { taken.push(c) })
    await new Promise<void>((resolve) => server.listen(sock, resolve))
  })
  after(async () => {
    for (const c of taken) c.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    fs.rmSync(sock, {force: true})
    fs.rmSync(dir, {recursive: true, force: true})
  })
  afterEach(() => {
    for (const c of taken) c.destroy()
    taken = []
    expect(sha256File(img), 'the image, byte for byte').to.equal(original)
  })

  const env = {PRISM_SERVER_ANSWER_MS: '300'}

  it('every kind of command says so in one line and exits as for a locked image, soon', () => {
    const cases: Array<[string[], number]> = [
      [['ls', 'root:/'], 3], [['cat', 'root:/f'], 3], [['stat', 'root:/f'], 3], [['fileset', 'list'], 3], [['df'], 3],
      [['mkdir', 'root:/d'], 3], [['write', 'root:/g'], 3], [['rm', 'root:/f'], 3], [['clone', 'root', 'c1'], 3],
      [['cp', '-r', dir, 'root:/x'], 3], [['export', 'root:/', path.join(dir, 'out.tar')], 3], [['fsck'], 8], [['fsck', '--repair'], 8],
      [['mount', 'root', path.join(dir, 'mp')], 3],
    ]
    fs.mkdirSync(path.join(dir, 'mp'))
    for (const [args, status] of cases) {
      const t0 = Date.now()
      const r = prism([...args, '-i', img], {env, input: 'x'})
      const ms = Date.now() - t0
      const what = args.join(' ')
      expect(r.status, `${what}: ${r.stderr}`).to.equal(status)
      // (an earlier image with the same device and inode numbers may have left a server log there)
      const log = fs.existsSync(logPath(img)) ? `; its log: ${logPath(img)}` : ''
      expect(r.stderr, what).to.equal(`prism: disk.img is held by its prism server, which did not answer within 0.3 s (stopped or hung?)${log}\n`)
      expect(r.stdout, what).to.equal('')
      // The answer's wait and no lock wait after it (the default --wait is 5 s).
      expect(ms, what).to.be.below(4000)
    }
    expect(fs.existsSync(path.join(dir, 'out.tar'))).to.equal(false)
    // With a log beside its socket, the line names it.
    const log = logPath(img)
    const had = fs.existsSync(log)
    if (!had) fs.writeFileSync(log, '-- a log\n')
    try {
      const r = prism(['ls', 'root:/', '-i', img], {env})
      expect([r.status, r.stderr]).to.deep.equal([3, `prism: disk.img is held by its prism server, which did not answer within 0.3 s (stopped or hung?); its log: ${log}\n`])
    } finally {
      if (!had) fs.rmSync(log, {force: true})
    }
  })

  it('mkfs --force leaves such an image alone', () => {
    const r = prism(['mkfs', '--force', '-s', '16M', img], {env})
    expect(r.status).to.equal(3) // (held by another prism process: its server)
    expect(r.stderr).to.match(/^prism: .*disk\.img is mounted \(held by prism server \(which does not answer\)\): unmount it first/)
  })

  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${sig} while a command waits for the server's answer: 'prism: interrupted', status ${128 + SIGNO[sig]}`, async () => {
      // (connections of the commands run before through spawnSync, which kept this process's
      // loop from taking them, come in now: they are not this command's)
      await new Promise((resolve) => setTimeout(resolve, 200))
      for (const c of taken) c.destroy()
      taken = []
      const child = spawn(process.execPath, [BIN, 'ls', '-i', img, 'root:/'], {env: {...process.env, PRISM_SERVER_ANSWER_MS: '30000'}, stdio: ['ignore', 'pipe', 'pipe']})
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      const done = new Promise<{status: number | null, signal: string | null}>((resolve) => child.on('close', (status, signal) => resolve({status, signal})))
      // Once the command has asked (the server took its connection), the signal.
      const t0 = Date.now()
      while (taken.length === 0) {
        if (Date.now() - t0 > 20_000) throw new Error('the command never asked the server')
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
      const sent = Date.now()
      child.kill(sig)
      const end = await done
      expect(end, stderr).to.deep.equal({status: 128 + SIGNO[sig], signal: null})
      expect(stderr).to.equal('prism: interrupted\n')
      expect(Date.now() - sent).to.be.below(2000)
    })
  }
})
