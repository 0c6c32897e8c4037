// A command-line path holding bytes that are not UTF-8 names those bytes: Node decodes each
// such byte as U+FFFD, so a name `ls` shows (caf\xe9) could not be named back, and `touch` or
// `mkdir` silently made another name (caf + EF BF BD). bin/run.js takes the arguments' own
// bytes from /proc/self/cmdline. Found by a new user's trial.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {nameBytes} from '../src/format/name.js'
import {BIN, prism, read, tmpDir} from './helpers.js'

describe('command-line paths with bytes that are not UTF-8', function () {
  this.timeout(60_000)
  let dir: string
  let img: string
  before(function () {
    if (!fs.existsSync('/proc/self/cmdline')) this.skip()
    dir = tmpDir()
    img = path.join(dir, 'disk.img')
    expect(prism(['mkfs', img, '--size', '64M']).status).to.equal(0)
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  /** bash -c CMD, with $BIN, $IMG and $DIR set ($'..' strings make the bytes). */
  const sh = (cmd: string) => {
    const r = spawnSync('bash', ['-c', cmd], {env: {...process.env, PRISM_NO_BACKGROUND: '1', BIN, IMG: img, DIR: dir}})
    return {status: r.status, stdout: r.stdout, stderr: r.stderr.toString()}
  }

  it('cat, touch, mkdir, rm and cp name the very bytes given, both ways', () => {
    expect(sh(`mkdir "$DIR/nu" && printf x > "$DIR/nu/"$'caf\\xe9' && node "$BIN" cp -r -i "$IMG" "$DIR/nu" root:/nu`).status).to.equal(0)
    const cat = sh(`node "$BIN" cat -i "$IMG" root:/nu/$'caf\\xe9'`)
    expect(cat.status, cat.stderr).to.equal(0)
    expect(cat.stdout.toString()).to.equal('x')
    expect(sh(`node "$BIN" touch -i "$IMG" root:/nu/$'caf\\xe9'`).status).to.equal(0)
    expect(sh(`node "$BIN" mkdir -i "$IMG" root:/nu/$'d\\xff'`).status).to.equal(0)
    read(img, (ns) => {
      const names = ns.readdir('/nu').map((e) => nameBytes(e.name).toString('hex')).sort()
      expect(names, 'touch made no second name').to.deep.equal([Buffer.from('caf\xe9', 'latin1').toString('hex'), Buffer.from('d\xff', 'latin1').toString('hex')].sort())
    })
    const out = sh(`node "$BIN" cp -r -i "$IMG" root:/nu "$DIR/out" && ls "$DIR/out" | od -An -tx1`)
    expect(out.status, out.stderr).to.equal(0)
    expect(out.stdout.toString().replace(/\s+/g, ' ').trim()).to.equal('63 61 66 e9 0a 64 ff 0a')
    expect(sh(`node "$BIN" rm -i "$IMG" root:/nu/$'caf\\xe9'`).status).to.equal(0)
    expect(read(img, (ns) => ns.readdir('/nu').length)).to.equal(1)
  })
})
