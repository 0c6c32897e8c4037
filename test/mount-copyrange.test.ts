// copy_file_range(2) through a real mount: GNU cp (coreutils 9) copies with it, so a `cp`
// inside a fileset, or from one fileset to another in a whole-image mount, shares the file's
// whole blocks (the server's Namespace.copyRange) instead of writing them again: no space is
// taken until one side is written, and then only that side changes. Ranges placed differently
// in their blocks are copied byte by byte, and every copy reads back as its source. Before,
// the server had no copy_file_range and the kernel copied through the page cache.
import {expect} from 'chai'
import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import {py, run} from './fuse-support.js'
import {cliOk, expectClean, Scratch, skipWithoutFuse} from './mount-support.js'

/** Blocks in use in the image (prism df --json, through the server while it is mounted). */
async function used(image: string): Promise<number> {
  return (JSON.parse(await cliOk(['df', '-i', image, '--json'])) as {blocksUsed: number}).blocksUsed
}

async function sh(script: string, ...args: string[]): Promise<string> {
  const r = await run('sh', ['-ec', script, 'sh', ...args], {timeoutMs: 60_000})
  if (r.code !== 0) throw new Error(`${script}: ${r.stderr.trim()}`)
  return r.stdout
}

describe('prism mount: copy_file_range shares whole blocks (cp takes no space)', function () {
  this.timeout(120_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
  })

  beforeEach(() => {
    s = new Scratch()
  })

  afterEach(async () => {
    await s?.cleanup()
  })

  it('cp in a fileset and from one fileset to another: the same bytes, no blocks taken; a write changes only the side written', async () => {
    const mp = s.mountpoint()
    await s.mount(null, mp)
    await fsp.mkdir(path.join(mp, 'a'))
    await fsp.mkdir(path.join(mp, 'b'))
    const data = crypto.randomBytes(8 * 1024 * 1024 + 1234)
    const host = path.join(s.dir, 'data.bin')
    fs.writeFileSync(host, data)
    await sh('cp "$1" "$2" && sync', host, path.join(mp, 'a', 'orig'))
    const before = await used(s.image)
    await sh('cp "$1" "$2" && cp "$1" "$3"', path.join(mp, 'a', 'orig'), path.join(mp, 'a', 'copy'), path.join(mp, 'b', 'copy'))
    // (two 8 MiB copies: a few blocks at most, for the copied tails and the maps)
    expect((await used(s.image)) - before).to.be.at.most(8)
    await sh('cmp "$1" "$2" && cmp "$1" "$3"', host, path.join(mp, 'a', 'copy'), path.join(mp, 'b', 'copy'))
    // A write into one copy: that copy alone changes, and gets its own block.
    await sh('printf XYZ | dd of="$1" bs=1 seek=5000000 conv=notrunc 2>/dev/null', path.join(mp, 'b', 'copy'))
    const want = Buffer.from(data)
    want.write('XYZ', 5_000_000)
    expect(createSha(await fsp.readFile(path.join(mp, 'b', 'copy')))).to.equal(createSha(want))
    await sh('cmp "$1" "$2" && cmp "$1" "$3"', host, path.join(mp, 'a', 'orig'), path.join(mp, 'a', 'copy'))
    await s.umount(mp)
    // The source gone, the copies keep their blocks.
    await cliOk(['rm', '-i', s.image, 'a:/orig'])
    const out = path.join(s.dir, 'out.bin')
    await cliOk(['cp', '-i', s.image, 'a:/copy', out])
    expect(createSha(fs.readFileSync(out))).to.equal(createSha(data))
    await expectClean(s.image)
  })

  it('ranges placed alike or not, within one file and between two, holes and the end of the source: every byte as the source had it', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const out = await py(`
import json, os, sys
d = sys.argv[1]
src = os.open(os.path.join(d, 'src'), os.O_CREAT | os.O_RDWR, 0o644)
data = bytes((i * 7 + 3) & 0xff for i in range(300000))
os.pwrite(src, data, 0)
os.pwrite(src, b'tail', 600000)          # a hole from 300000 to 600000
model = bytearray(data) + bytearray(300000) + bytearray(b'tail')
dst = os.open(os.path.join(d, 'dst'), os.O_CREAT | os.O_RDWR, 0o644)
dm = bytearray()
res = []
for off_in, off_out, n in [(0, 0, 65536), (4096, 8192, 100000), (123, 9000 + 123, 50000), (100, 7, 20000),
                           (290000, 400000, 400000), (599000, 10, 5000), (700000, 0, 10)]:
    done = 0
    while done < n:
        c = os.copy_file_range(src, dst, n - done, off_in + done, off_out + done)
        if c == 0:
            break
        done += c
    want = max(0, min(n, len(model) - off_in))
    if done:
        if off_out + done > len(dm):
            dm.extend(bytes(off_out + done - len(dm)))
        dm[off_out:off_out + done] = model[off_in:off_in + done]
    res.append([done, want])
# within one file: a range placed alike, and one not
for off_in, off_out, n in [(0, 409600, 81920), (5, 500001, 30000)]:
    c = os.copy_file_range(dst, dst, n, off_in, off_out)
    piece = bytes(dm[off_in:off_in + c])
    if off_out + c > len(dm):
        dm.extend(bytes(off_out + c - len(dm)))
    dm[off_out:off_out + c] = piece
    res.append([c, n])
got = os.pread(dst, len(dm) + 100, 0)
print(json.dumps({'counts': res, 'same': got == bytes(dm), 'size': os.fstat(dst).st_size, 'model': len(dm)}))
`, mp) as {counts: number[][], same: boolean, size: number, model: number}
    for (const [done, want] of out.counts) expect(done).to.equal(want)
    expect(out.same).to.equal(true)
    expect(out.size).to.equal(out.model)
    await s.umount(mp)
    await expectClean(s.image)
  })

  it('on a full image: a copy of whole blocks still works (it needs no block); one copied byte by byte fails with ENOSPC and changes nothing', async () => {
    s = new Scratch({size: 48 * 1024 * 1024})
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const out = await py(`
import errno, json, os, sys
d = sys.argv[1]
src = os.open(os.path.join(d, 'src'), os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(src, os.urandom(4 * 1024 * 1024), 0)
os.fsync(src)
fill = os.open(os.path.join(d, 'fill'), os.O_CREAT | os.O_RDWR, 0o644)
chunk = b'f' * (1 << 20)
try:
    while True:
        os.write(fill, chunk)
except OSError as e:
    full = errno.errorcode[e.errno]
try:
    while True:
        os.write(fill, b'f' * 4096)
except OSError:
    pass
os.fsync(fill)
dst = os.open(os.path.join(d, 'dst'), os.O_CREAT | os.O_RDWR, 0o644)
shared = os.copy_file_range(src, dst, 4 * 1024 * 1024, 0, 0)
bad = os.open(os.path.join(d, 'bad'), os.O_CREAT | os.O_RDWR, 0o644)
try:
    os.copy_file_range(src, bad, 2 * 1024 * 1024, 1, 0)
    odd = 'copied'
except OSError as e:
    odd = errno.errorcode[e.errno]
same = os.pread(dst, 5 << 20, 0) == os.pread(src, 5 << 20, 0)
print(json.dumps({'full': full, 'shared': shared, 'same': same, 'odd': odd, 'badSize': os.fstat(bad).st_size}))
`, mp)
    expect(out).to.deep.equal({full: 'ENOSPC', shared: 4 * 1024 * 1024, same: true, odd: 'ENOSPC', badSize: 0})
    await s.umount(mp)
    await expectClean(s.image)
  })
})

function createSha(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex')
}
