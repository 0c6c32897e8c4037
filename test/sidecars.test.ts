// The sidecar lock files (the background expander's lock, and the file a waiter announces
// itself on, in the temporary directory, named after the image's device and inode) only
// coordinate: one that this user may not open (another user's, left mode 0644 in a sticky
// /tmp, where protected_regular also refuses O_CREAT on it) must never fail a command. It
// failed `prism status` with "internal error: EACCES" when a file of another user's image, since
// deleted, had held the same inode number.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {asUser, BIN, newImage, NOBODY, prism, tmpDir} from './helpers.js'

describe('sidecar lock files another user owns never fail a command', function () {
  this.timeout(120_000)
  let dir: string
  let img: string
  let prefix: string[]
  const sidecars: string[] = []

  before(function () {
    dir = tmpDir()
    const probe = path.join(dir, 'probe')
    fs.writeFileSync(probe, '')
    fs.chmodSync(probe, 0)
    const u = asUser(probe)
    if ('skip' in u || process.getuid?.() !== 0) {
      console.log(`      sidecar test skipped: ${'skip' in u ? u.skip : 'it needs root, to leave files another user cannot open'}`)
      this.skip()
    }
    prefix = (u as {prefix: string[]}).prefix
    fs.chmodSync(dir, 0o755)
    img = newImage(dir)
    fs.writeFileSync(path.join(dir, 'f'), 'data\n')
    expect(prism(['cp', '-i', img, path.join(dir, 'f'), 'root:/f']).status).to.equal(0)
    expect(prism(['clone', '-i', img, 'root', 'early', '--mode', 'async']).status).to.equal(0) // left expanding
    fs.chownSync(img, NOBODY, NOBODY)
    const st = fs.statSync(img)
    for (const kind of ['expand', 'wait']) {
      const p = path.join(os.tmpdir(), `prism-${kind}-${st.dev}-${st.ino}.lock`)
      fs.rmSync(p, {force: true})
      fs.writeFileSync(p, '', {mode: 0o600}) // root's, and unreadable to nobody
      sidecars.push(p)
    }
  })

  after(() => {
    for (const p of sidecars) fs.rmSync(p, {force: true})
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  const asNobody = (args: string[]) => {
    const r = spawnSync(prefix[0], [...prefix.slice(1), process.execPath, BIN, ...args, '-i', img], {env: {...process.env, PRISM_IMAGE: ''}})
    return {status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString()}
  }

  for (const args of [['status', '--json'], ['fileset', 'list'], ['ls', 'early:/'], ['cat', 'early:/f'], ['clone', 'root', 'later', '--mode', 'async'], ['expand', 'early'], ['mkdir', 'root:/d']]) {
    it(`prism ${args.join(' ')} as another user works`, () => {
      const r = asNobody(args)
      expect(r.stderr).to.not.match(/internal error/)
      expect(r.status, r.stderr).to.equal(0)
    })
  }

  it('the image is sound and holds what was made', () => {
    expect(prism(['fsck', '-i', img]).status).to.equal(0)
    expect(prism(['cat', '-i', img, 'early:/f']).stdout).to.equal('data\n')
    expect(prism(['ls', '-i', img, 'root:/']).stdout).to.match(/\bd\b/)
  })
})
