// `prism cat` into a pipe or a file sends the data straight from the image file (sendfile:
// src/sys.ts sendAll, src/fs/extents.ts streamSpans) where the blocks hold their content in
// place, and reads the rest (holes, inline data, data still queued in the running
// transaction). What comes out must be every file's bytes exactly, whatever its layout; and
// since a pipe then holds the image's pages rather than copies, cat keeps the image until the
// reader has taken them.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {streamSpans} from '../src/fs/extents.js'
import {BIN, edit, newImage, prism, tmpDir} from './helpers.js'

const KiB = 1024
const MiB = 1024 * KiB

/** A small deterministic generator (xorshift32), so that a failing layout can be replayed. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1
  return (n) => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x % n
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** Runs prism with stdout on a pipe python reads to its end: what came out, the status, stderr. */
function catThroughPipe(args: string[]): {status: number, out: Buffer, stderr: string} {
  const script = `
import os, subprocess, sys
r, w = os.pipe()
p = subprocess.Popen(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)
os.close(w)
out = bytearray()
while True:
    b = os.read(r, 1 << 16)
    if not b: break
    out += b
err = p.stderr.read()
rc = p.wait()
sys.stderr.buffer.write(err)
sys.stdout.buffer.write(bytes([rc]) + bytes(out))
`
  const r = spawnSync('python3', ['-c', script, process.execPath, BIN, ...args], {maxBuffer: 256 * MiB})
  if (r.error) throw r.error
  return {status: r.stdout[0], out: r.stdout.subarray(1), stderr: r.stderr.toString()}
}

describe('prism cat sends data straight from the image: the bytes are exact in every layout', function () {
  this.timeout(180_000)
  let dir: string
  let img: string
  const files: Array<{name: string, data: Buffer}> = []

  before(() => {
    dir = tmpDir('prism-catdirect-')
    img = newImage(dir, 256 * MiB)
    const seed = Number(process.env.PRISM_CAT_SEED ?? 0x5eed)
    const rand = rng(seed)
    const fill = (n: number): Buffer => {
      const b = Buffer.allocUnsafe(n)
      for (let i = 0; i < n; i++) b[i] = rand(256)
      return b
    }
    edit(img, (ns) => {
      // Fixed layouts: empty, inline (up to 140 bytes), just past inline, one block and a
      // byte more, holes at the start, the middle and the end, a file that is all hole.
      const fixed: Array<[string, (m: Buffer) => Buffer]> = [
        ['empty', () => Buffer.alloc(0)],
        ['one', () => fill(1)],
        ['inline140', () => fill(140)],
        ['past-inline', () => fill(141)],
        ['block', () => fill(4096)],
        ['block-and-a-byte', () => fill(4097)],
      ]
      for (const [name, make] of fixed) {
        const data = make(Buffer.alloc(0))
        ns.writeFile('/' + name, data)
        files.push({name, data})
      }
      const holes: Array<[string, number, Array<[number, number]>]> = [
        ['all-hole', 3 * MiB + 5, []],
        ['hole-first', 2 * MiB + 100, [[MiB + 7, 700 * KiB]]],
        ['hole-middle', 5 * MiB, [[0, MiB], [4 * MiB, MiB]]],
        ['hole-last', 6 * MiB + 1, [[0, 2 * MiB + 3]]],
      ]
      for (const [name, size, runs] of holes) {
        const data = Buffer.alloc(size)
        ns.truncate('/' + name, size, {create: true})
        const inode = ns.openForWrite('/' + name)
        for (const [off, len] of runs) {
          const d = fill(len)
          d.copy(data, off)
          ns.writeInode(inode, off, d)
        }
        files.push({name, data})
      }
      // Random layouts: a sparse size, scattered writes of any alignment, sometimes cut short.
      for (let f = 0; f < 24; f++) {
        const size = rand(4) === 0 ? rand(200) : rand(6 * MiB)
        const data = Buffer.alloc(size)
        const name = `r${f}`
        ns.truncate('/' + name, size, {create: true})
        const inode = ns.openForWrite('/' + name)
        for (let k = rand(12); k > 0 && size > 0; k--) {
          const off = rand(size)
          const len = 1 + rand(Math.min(size - off, rand(2) ? 300 * KiB : 9000))
          const d = fill(len)
          d.copy(data, off)
          ns.writeInode(inode, off, d)
        }
        if (rand(5) === 0) {
          const cut = rand(size + 1)
          ns.truncateInode(inode, cut)
          files.push({name, data: data.subarray(0, cut)})
        } else {
          files.push({name, data})
        }
      }
    })
    // A clone shares the blocks; rewriting part of them in the clone keeps both right.
    expect(prism(['clone', 'root', 'c', '-i', img]).status).to.equal(0)
    edit(img, (ns) => {
      const inode = ns.openForWrite('/hole-middle') // (the clone's own copy)
      ns.writeInode(inode, MiB / 2, Buffer.alloc(MiB, 0x5a))
    }, 'c')
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  const all = (): Buffer => Buffer.concat(files.map((f) => f.data))
  const args = (fileset = 'root'): string[] => ['cat', ...files.map((f) => `${fileset}:/${f.name}`), '-i', img]

  it('into a pipe: every file, one after another, exactly', () => {
    const r = catThroughPipe(args())
    expect(r.status, r.stderr).to.equal(0)
    expect(r.out.length).to.equal(all().length)
    expect(sha(r.out)).to.equal(sha(all()))
  })

  it('into a regular file (and appended to one): exactly', () => {
    const out = path.join(dir, 'out.bin')
    let r = spawnSync('sh', ['-c', `"${process.execPath}" "${BIN}" ${args().map((a) => `'${a}'`).join(' ')} > "${out}"`])
    expect(r.status, r.stderr.toString()).to.equal(0)
    expect(sha(fs.readFileSync(out))).to.equal(sha(all()))
    r = spawnSync('sh', ['-c', `"${process.execPath}" "${BIN}" cat root:/block-and-a-byte -i "${img}" >> "${out}"`])
    expect(r.status, r.stderr.toString()).to.equal(0)
    const want = Buffer.concat([all(), files.find((f) => f.name === 'block-and-a-byte')!.data])
    expect(sha(fs.readFileSync(out))).to.equal(sha(want))
  })

  it('from a clone that rewrote part of a shared file: the clone\'s bytes; the source keeps its own', () => {
    const src = files.find((f) => f.name === 'hole-middle')!.data
    const want = Buffer.from(src)
    want.fill(0x5a, MiB / 2, MiB / 2 + MiB)
    let r = catThroughPipe(['cat', 'c:/hole-middle', '-i', img])
    expect(r.status, r.stderr).to.equal(0)
    expect(sha(r.out)).to.equal(sha(want))
    r = catThroughPipe(['cat', 'root:/hole-middle', '-i', img])
    expect(sha(r.out)).to.equal(sha(src))
  })

  it('data written in the running transaction and not yet on disk is read, never sent from its place', () => {
    const d = Buffer.alloc(2 * MiB + 77)
    for (let i = 0; i < d.length; i++) d[i] = (i * 31 + 7) & 0xff
    const got: Buffer[] = []
    edit(img, (ns, vol) => {
      const inode = ns.openForWrite('/fresh', {truncate: true})
      ns.writeInode(inode, 0, d)
      // What a span names is read back from the host file here: a span over a block still
      // queued would bring the old content (zeros) instead of what was written.
      streamSpans(vol, inode, (fd, pos, bytes) => {
        const b = Buffer.alloc(bytes)
        fs.readSync(fd, b, 0, bytes, pos)
        got.push(b)
        return bytes
      }, (buf) => { got.push(Buffer.from(buf)) })
    })
    expect(sha(Buffer.concat(got))).to.equal(sha(d))
    // Committed, the same file goes out as spans.
    const r = catThroughPipe(['cat', 'root:/fresh', '-i', img])
    expect(sha(r.out)).to.equal(sha(d))
  })

  it('keeps the image until the reader has taken what the pipe holds; a reader that leaves early ends it quietly', () => {
    // 256 KiB fits in the pipe at once: cat could leave at once, but waits for the reader.
    const script = `
import os, subprocess, sys, time, hashlib
r, w = os.pipe()
p = subprocess.Popen(sys.argv[1:], stdout=w)
os.close(w)
time.sleep(1.0)
waiting = p.poll() is None
h = hashlib.sha256()
while True:
    b = os.read(r, 1 << 16)
    if not b: break
    h.update(b)
print(waiting, p.wait(), h.hexdigest())
`
    const data = files.find((f) => f.name === 'hole-first')!.data.subarray(0, 256 * KiB)
    edit(img, (ns) => { ns.writeFile('/quarter', Buffer.from(data)) })
    const r = spawnSync('python3', ['-c', script, process.execPath, BIN, 'cat', 'root:/quarter', '-i', img], {encoding: 'utf8'})
    expect(r.stdout.trim()).to.equal(`True 0 ${sha(data)}`)
    const head = spawnSync('sh', ['-c', `"${process.execPath}" "${BIN}" cat root:/hole-last -i "${img}" | head -c 10 | wc -c`], {encoding: 'utf8'})
    expect(head.stdout.trim()).to.equal('10')
    expect(head.stderr).to.equal('')
  })
})
