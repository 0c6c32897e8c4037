// What a program stored through a shared mapping of a file on a mount, and has not synced,
// is in what a command reads of the image while it is mounted: a clone of every mode, `cat`,
// `cp -r` out and `export`, as readers of a local filesystem see it at once. The command has
// the kernel write back its dirty pages of each mount first (syncfs); before, a clone and a
// cat missed them (five zero bytes where the program had stored "hello"), and the clone kept
// missing them after the program's msync.
import {expect} from 'chai'
import fs from 'node:fs'
import {py} from './fuse-support.js'
import {BIN, tmpDir} from './helpers.js'
import {cli, Scratch, skipWithoutFuse} from './mount-support.js'

describe('prism mount: stores through a shared mapping are in what commands read', function () {
  this.timeout(120_000)
  let s: Scratch
  let out: string

  before(function () {
    skipWithoutFuse(this)
  })

  after(async () => {
    await s?.cleanup()
    if (out) fs.rmSync(out, {recursive: true, force: true})
  })

  it('clone (sync, async, lazy), cat, cp -r out and export, with the mapping still dirty', async () => {
    s = new Scratch()
    const mp = s.mountpoint()
    await s.mount('root', mp)
    out = tmpDir()
    // One program maps the file, stores, and runs each command while the pages are dirty (it
    // is not the server, so it may touch the mount); a new store before each command.
    const got = await py(`
import json, mmap, os, subprocess, sys
mp, node, bin, img, out = sys.argv[1:6]
fd = os.open(os.path.join(mp, 'mm'), os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 8192)
m = mmap.mmap(fd, 8192)
def prism(*a):
    r = subprocess.run([node, bin, *a, '-i', img], capture_output=True)
    if r.returncode != 0: raise SystemExit(r.stderr.decode())
    return r.stdout
res = {}
for k, mode in enumerate(['sync', 'async', 'lazy']):
    m[4096:4100] = b'c%03d' % k
    prism('clone', 'root', 'c' + mode, '--mode', mode)
    res['clone ' + mode] = prism('cat', 'c' + mode + ':/mm')[4096:4100].decode()
m[0:5] = b'hello'
res['cat'] = prism('cat', 'root:/mm')[0:5].decode()
m[0:5] = b'world'
prism('cp', '-r', 'root:/mm', os.path.join(out, 'mm'))
res['cp out'] = open(os.path.join(out, 'mm'), 'rb').read()[0:5].decode()
m[0:5] = b'tarry'
prism('export', 'root:/', os.path.join(out, 'x.tar'))
res['export'] = b'tarry' in open(os.path.join(out, 'x.tar'), 'rb').read()
m.close(); os.close(fd)
print(json.dumps(res))
`, mp, process.execPath, BIN, s.image, out)
    expect(got).to.deep.equal({
      'clone sync': 'c000', 'clone async': 'c001', 'clone lazy': 'c002',
      cat: 'hello', 'cp out': 'world', export: true,
    })
    // The clones hold what was stored before each was made, not what came after.
    for (const [k, mode] of ['sync', 'async', 'lazy'].entries()) {
      const r = await cli(['cat', `c${mode}:/mm`, '-i', s.image])
      expect(Buffer.from(r.stdout, 'latin1').subarray(4096, 4100).toString(), mode).to.equal(`c${String(k).padStart(3, '0')}`)
    }
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })
})
