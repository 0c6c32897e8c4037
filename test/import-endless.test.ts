// An import from a stream that never ends must not read it for ever: the archive's first two
// blocks say whether the rest matters. /dev/zero is an empty archive (two zero blocks), as GNU
// tar reads it; `yes |` is not a tar archive at all. Both end at once, the second with one
// line and nothing imported. Found by a new user's trial: `prism import root:/x /dev/zero`
// spooled 3 GB into $TMPDIR in five seconds and never ended.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {BIN, prism, read, snapshot, tmpDir} from './helpers.js'

describe('an import from an endless stream ends at once', function () {
  this.timeout(60_000)
  let dir: string
  let img: string
  before(() => {
    dir = tmpDir()
    img = path.join(dir, 'disk.img')
    expect(prism(['mkfs', img, '--size', '64M']).status).to.equal(0)
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  const sh = (cmd: string) => spawnSync('bash', ['-c', cmd], {timeout: 30_000, env: {...process.env, PRISM_NO_BACKGROUND: '1', BIN, IMG: img}})

  it('/dev/zero, named or on standard input, is an empty archive', () => {
    for (const cmd of ['node "$BIN" import -i "$IMG" root:/z /dev/zero', 'node "$BIN" import -i "$IMG" root:/z2 - < /dev/zero']) {
      const r = sh(cmd)
      expect(r.error, cmd).to.equal(undefined) // (not killed by the timeout)
      expect(r.status, r.stderr.toString()).to.equal(0)
    }
    read(img, (ns) => {
      expect(ns.readdir('/z')).to.deep.equal([])
      expect(ns.readdir('/z2')).to.deep.equal([])
    })
  })

  it('an endless stream that is not a tar archive: one line, exit 1, nothing imported', () => {
    const before = read(img, (ns) => snapshot(ns))
    const r = sh('yes | node "$BIN" import -i "$IMG" root:/y -')
    expect(r.error).to.equal(undefined)
    expect(r.status).to.equal(1)
    expect(r.stderr.toString()).to.match(/^prism: malformed archive: [^\n]*; nothing was imported\n$/)
    expect(read(img, (ns) => snapshot(ns))).to.deep.equal(before)
  })
})
