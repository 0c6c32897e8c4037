// Output that cannot be written (standard output a full device): one `prism:` line, exit 1
// (fsck 8, e2fsck's operational error), never a stack trace, for the fast paths and the
// commands oclif runs alike; an archive that cannot be written is a host error (1), not the
// image's I/O error (7) or "image full" (6). Found by a new user's trial: `ls >/dev/full`
// printed a 20-line stack trace.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {BIN, edit, prism, tmpDir} from './helpers.js'

const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
/** python3 -c PIPE_GONE CMD ARGS...: runs CMD with standard output a pipe whose reader is closed. */
const PIPE_GONE = 'import os, subprocess, sys\nr, w = os.pipe()\nos.close(r)\np = subprocess.run(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)\nsys.stderr.buffer.write(p.stderr)\nsys.exit(p.returncode)'

describe('standard output that cannot be written: one line, exit 1, no stack', function () {
  this.timeout(120_000)
  let dir: string
  let img: string
  before(function () {
    if (!fs.existsSync('/dev/full')) this.skip()
    dir = tmpDir()
    img = path.join(dir, 'disk.img')
    expect(prism(['mkfs', img, '--size', '64M']).status).to.equal(0)
    edit(img, (ns) => {
      ns.writeFile('/f', Buffer.alloc(300_000, 1))
      ns.mkdir('/d')
      // (more than a pipe holds, compressed or not)
      ns.writeFile('/d/random', crypto.randomBytes(3_000_000))
    })
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  // (signatures that find /f, and that find nothing)
  const sigs = () => path.join(dir, 'found.ndb')
  const none = () => path.join(dir, 'none.ndb')
  before(function () {
    fs.writeFileSync(sigs(), `Test.Ones:0:*:${'01'.repeat(16)}\n`)
    fs.writeFileSync(none(), `Test.None:0:*:${'de'.repeat(16)}\n`)
  })

  const cases: Array<[string[], number]> = [
    [['ls', 'root:/'], 1], [['ls', '-l', 'root:/'], 1], [['cat', 'root:/f'], 1], [['df'], 1], [['stat', 'root:/f'], 1],
    [['fileset', 'list'], 1], [['fsck'], 8], [['export', 'root', '-'], 1], [['du', 'root:/'], 1], [['status'], 1],
    [['help'], 1], [['xattr', 'list', 'root:/f'], 1], [['diff', 'root', 'root'], 1],
    // A command that changed the image says that its output was lost, with status 1: a script
    // never learns a new clone's name otherwise (the clone is made, as the line says). Each
    // clone mode, the start-up fast path and oclif's (--json).
    [['clone', 'root', '--mode', 'lazy'], 1], [['clone', 'root', '--mode', 'async'], 1], [['clone', 'root', '--mode', 'sync'], 1],
    [['clone', 'root', '--json'], 1], [['fileset', 'create', 'made'], 1], [['fileset', 'list', '--json'], 1],
    // scan: clamscan's 2 (an error), whether or not it found something (the names are lost).
    [['scan', 'root', '-s', 'SIGS'], 2], [['scan', 'root', '-s', 'NONE'], 2],
  ]
  for (const [args, code] of cases) {
    it(`${args.join(' ')} >/dev/full`, () => {
      const out = fs.openSync('/dev/full', 'w')
      try {
        const given = args.map((a) => (a === 'SIGS' ? sigs() : a === 'NONE' ? none() : a))
        const r = spawnSync(process.execPath, [BIN, ...given, ...(args[0] === 'help' ? [] : ['-i', img])], {stdio: ['ignore', out, 'pipe'], env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
        const err = r.stderr.toString()
        expect(err, 'one line').to.match(/^prism: [^\n]*no space left on device[^\n]*\n$/i)
        // (the export's archive is the output itself: it failed; the others did their work)
        if (args[0] !== 'export') expect(err).to.match(/; the command did its work, only its output is lost\n$/)
        expect(r.status, err).to.equal(code)
      } finally {
        fs.closeSync(out)
      }
    })
  }

  // An archive that cannot be written, in every compression, to standard output or to a path
  // the user named (/dev/stdout, a device): the compressed exports wrote through a stream that
  // closed the descriptor when the pipeline failed, and the export's own close then ended in
  // "internal error: EBADF" (exit 70).
  for (const z of ['none', 'gzip', 'xz', 'zstd']) {
    for (const target of ['-', '/dev/stdout']) {
      it(`export -z ${z} ${target} into a pipe whose reader has gone: one line, exit 1`, () => {
        // (a pipe, as a shell's: node's own child stdio is a socket, which /dev/stdout cannot reopen)
        const r = spawnSync(PYTHON, ['-c', PIPE_GONE, process.execPath, BIN, 'export', 'root', target, '-z', z, '-i', img], {stdio: ['ignore', 'pipe', 'pipe']})
        const err = r.stderr.toString()
        expect(err, 'one line').to.equal(target === '-' ? 'prism: standard output was closed before the archive was written\n' : 'prism: /dev/stdout: broken pipe\n')
        expect(r.status, err).to.equal(1)
      })
    }
    it(`export -z ${z} /dev/full: one line, exit 1, the device stays`, () => {
      const r = spawnSync(process.execPath, [BIN, 'export', 'root', '/dev/full', '-z', z, '-i', img], {stdio: ['ignore', 'pipe', 'pipe']})
      const err = r.stderr.toString()
      expect(err, 'one line').to.equal('prism: /dev/full: no space left on device\n')
      expect(r.status, err).to.equal(1)
      expect(fs.statSync('/dev/full').isCharacterDevice()).to.equal(true)
    })
  }

  it('the image is as it was, and sound', () => {
    const r = prism(['fsck', '-i', img])
    expect(r.status, r.stdout + r.stderr).to.equal(0)
    expect(prism(['cat', 'root:/f', '-i', img]).stdout.length).to.equal(300_000)
  })
})
