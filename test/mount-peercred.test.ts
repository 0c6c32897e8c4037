// The prism server answers only root, the image owner and its own user (SO_PEERCRED), even
// when another user can reach its socket. Apart from test/mount-cli.test.ts because it opens
// the servers' shared runtime directory (/run/prism) to that user, which any server starting
// meanwhile closes again: it runs alone (test/mount-groups.cjs).
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {fuseMountAt} from '../src/fuse/index.js'
import {socketPath} from '../src/server/paths.js'
import {run} from './fuse-support.js'
import {cliOk, Scratch, skipWithoutFuse} from './mount-support.js'

describe('prism mount: the server and other users', function () {
  this.timeout(120_000)
  let s: Scratch

  beforeEach(function () {
    skipWithoutFuse(this)
    s = new Scratch({size: 128 * 1024 * 1024})
  })

  afterEach(async () => {
    await s?.cleanup()
  })

  it('the server answers only root, the image owner and its own user: another user who reaches the socket is refused (SO_PEERCRED)', async function () {
    if (process.getuid?.() !== 0) this.skip()
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const sock = socketPath(s.image)
    const dir = path.dirname(sock)
    const modes = [fs.statSync(dir).mode & 0o7777, fs.statSync(sock).mode & 0o7777]
    // Open the way on purpose (as a copied directory or a bind mount might): the modes no
    // longer keep nobody out, so only the server's own check does.
    fs.chmodSync(dir, 0o755)
    fs.chmodSync(sock, 0o666)
    try {
      const ask = (op: string) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', `
        const c = require('net').createConnection(${JSON.stringify(sock)})
        let out = ''
        c.on('data', (d) => out += d)
        c.on('error', (e) => { console.log(JSON.stringify({error: e.code})); process.exit(0) })
        c.on('close', () => { console.log(out.trim()); process.exit(0) })
        c.write(JSON.stringify({op: ${JSON.stringify(op)}}) + '\\n')`])
      for (const op of ['list', 'lend', 'umount']) {
        const r = await ask(op)
        expect(r.code, r.stderr).to.equal(0)
        const reply = JSON.parse(r.stdout) as {ok: boolean, code: string, message: string}
        expect(reply.ok, op).to.equal(false)
        expect(reply.code, op).to.equal('EACCES')
        expect(reply.message).to.match(/uid 65534 may not use the prism server/)
      }
      // the mount is untouched and root is still served
      expect(fuseMountAt(mp)).to.not.equal(undefined)
      expect(await cliOk(['mount', '-i', s.image])).to.contain(fs.realpathSync(mp))
    } finally {
      fs.chmodSync(dir, modes[0])
      fs.chmodSync(sock, modes[1])
    }
    await s.umount(mp)
  })
})
