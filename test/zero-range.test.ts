// Zeroed blocks (writeZeros, the mount's fallocate): a file's holes get new blocks that read as
// zeros, zeroed by the host where it can (fallocate FALLOC_FL_ZERO_RANGE on the image file,
// BlockDevice.zero) and written as zeros where it cannot. Whichever way, on real image files:
// the blocks read as zeros before and after the commit and after a reopen, never as what a
// block freed earlier held (the blocks are reused on purpose here); the shared memory of
// zeros is never written into, whatever is written over a zeroed range in the same
// transaction; space and fsck are as for a write of zeros; and the device's way is the one
// used where it exists (a gigabyte costs a system call, not a gigabyte written). A crash at
// any write of one recovers zeros or nothing, never what the reused blocks held.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {MemDevice} from '../src/device/mem.js'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {loadExtents, readData, writeZeros} from '../src/fs/extents.js'
import {namespace, withImage} from '../src/fs/image.js'
import type {Inode} from '../src/fs/inode.js'
import type {Namespace} from '../src/fs/namespace.js'
import {Volume} from '../src/fs/volume.js'
import {fsckImage} from '../src/fsck/index.js'
import {sys} from '../src/sys.js'
import {baseImage, bytes, crashWorkload, ImageView, runCommand} from './crash-lib.js'
import {newImage, tmpDir} from './helpers.js'

const MiB = 1024 * 1024

/** Every physical block `inode` maps. */
function blocksOf(vol: Volume, inode: Inode): Set<number> {
  const out = new Set<number>()
  for (const e of loadExtents(vol, inode)) for (let k = 0; k < e.n; k++) out.add(e.p + k)
  return out
}

function read(vol: Volume, inode: Inode, off = 0, len = inode.r.size): Buffer {
  return readData(vol, inode, off, len)
}

const pattern = (n: number, seed: number) => {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) % 251 + 1 // never 0
  return b
}

/** Whether the host file system under `dir` zeroes a range (fallocate FALLOC_FL_ZERO_RANGE). */
function hostZeroes(dir: string): boolean {
  const p = path.join(dir, 'probe')
  const fd = fs.openSync(p, 'w+')
  try {
    fs.ftruncateSync(fd, 2 * BLOCK_SIZE)
    return sys().fallocate!(fd, 0x10 | 0x01, 0, BLOCK_SIZE) === 0
  } finally {
    fs.closeSync(fd)
    fs.rmSync(p, {force: true})
  }
}

/** How each device under test zeroes: the host's fallocate, or written zeros. */
const WAYS: Array<{name: string, hostZero: boolean}> = [
  {name: 'zeroed by the host (fallocate ZERO_RANGE)', hostZero: true},
  {name: 'written as zeros (a host without zero ranges)', hostZero: false},
]

describe('zeroed blocks (writeZeros, fallocate)', function () {
  this.timeout(120_000)
  let dir: string
  beforeEach(() => { dir = tmpDir() })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  for (const way of WAYS) {
    it(`reuses freed blocks that read as zeros, never as what they held: ${way.name}`, () => {
      const img = newImage(dir, 96 * MiB)
      const size = 24 * MiB
      const old = new Set<number>()
      withImage(img, {write: true}, (vol) => {
        const ns = namespace(vol, 'root')
        ns.writeFile('/secret', pattern(size, 3))
        vol.commit()
        for (const b of blocksOf(vol, ns.resolve('/secret'))) old.add(b)
        ns.remove('/secret')
        vol.commit()
      })
      let zeroCalls = 0
      let zeroed = 0
      withImage(img, {write: true}, (vol) => {
        const dev = vol.dev as {zero?: (b: number, n: number) => boolean}
        const real = dev.zero!.bind(vol.dev)
        dev.zero = (b, n) => {
          zeroCalls++
          if (!way.hostZero) return false
          const ok = real(b, n)
          if (ok) zeroed += n
          return ok
        }
        const ns = namespace(vol, 'root')
        const f = ns.openForWrite('/zeros')
        const free0 = vol.sb.freeBlocks
        writeZeros(vol, f, 0, size)
        expect(f.r.size).to.equal(size)
        expect(f.r.blocks).to.equal(size / BLOCK_SIZE)
        // Before the commit (from the queue or the device) and after it.
        expect(read(vol, f).equals(Buffer.alloc(size)), 'zeros before the commit').to.equal(true)
        vol.commit()
        expect(read(vol, f).equals(Buffer.alloc(size)), 'zeros after the commit').to.equal(true)
        const mine = blocksOf(vol, f)
        const reused = [...mine].filter((b) => old.has(b)).length
        expect(reused, 'the test reuses the freed blocks').to.be.greaterThan(mine.size / 2)
        expect(free0 - vol.sb.freeBlocks).to.be.at.least(size / BLOCK_SIZE)
      })
      expect(zeroCalls).to.be.greaterThan(0)
      // (a host file system without zero ranges, tmpfs say, takes the written zeros instead)
      if (way.hostZero) expect(zeroed, 'blocks zeroed by the host').to.equal(hostZeroes(dir) ? size / BLOCK_SIZE : 0)
      // Reopened: the same zeros, and fsck finds nothing.
      withImage(img, {write: false}, (vol) => {
        const f = namespace(vol, 'root').resolve('/zeros')
        expect(read(vol, f).equals(Buffer.alloc(size))).to.equal(true)
      })
      expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
    })

    it(`keeps what is written over zeroed blocks in the same transaction, and the zeros shared by every run stay zeros: ${way.name}`, () => {
      const img = newImage(dir, 64 * MiB)
      withImage(img, {write: true}, (vol) => {
        if (!way.hostZero) (vol.dev as {zero?: unknown}).zero = () => false
        const ns = namespace(vol, 'root')
        ns.writeFile('/old', pattern(8 * MiB, 9))
        vol.commit()
        ns.remove('/old')
        vol.commit()
        const f = ns.openForWrite('/f')
        writeZeros(vol, f, 0, 6 * MiB)
        // Written over zeroed blocks: whole blocks, a partial one, across a zeroed edge.
        const a = pattern(3 * BLOCK_SIZE, 1)
        const b = pattern(1000, 2)
        const c = pattern(2 * BLOCK_SIZE, 4)
        ns.writeInode(f, 5 * BLOCK_SIZE, a)
        ns.writeInode(f, 100 * BLOCK_SIZE + 17, b)
        ns.writeInode(f, 6 * MiB - BLOCK_SIZE, c) // the last zeroed block and one past the end
        // A second file zeroed after those writes: still zeros (nothing wrote into the shared zeros).
        const g = ns.openForWrite('/g')
        writeZeros(vol, g, 0, 4 * MiB)
        const want = Buffer.alloc(6 * MiB + BLOCK_SIZE)
        a.copy(want, 5 * BLOCK_SIZE)
        b.copy(want, 100 * BLOCK_SIZE + 17)
        c.copy(want, 6 * MiB - BLOCK_SIZE)
        expect(read(vol, f).equals(want), '/f before the commit').to.equal(true)
        expect(read(vol, g).equals(Buffer.alloc(4 * MiB)), '/g before the commit').to.equal(true)
        vol.commit()
        expect(read(vol, f).equals(want), '/f after the commit').to.equal(true)
        expect(read(vol, g).equals(Buffer.alloc(4 * MiB)), '/g after the commit').to.equal(true)
        // Zeros again over a file's own data (a range it maps: rewritten as zeros), partial edges kept.
        writeZeros(vol, f, 5 * BLOCK_SIZE + 100, 2 * BLOCK_SIZE)
        want.fill(0, 5 * BLOCK_SIZE + 100, 7 * BLOCK_SIZE + 100)
        vol.commit()
        expect(read(vol, f).equals(want), '/f zeroed again in part').to.equal(true)
      })
      expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
      withImage(img, {write: false}, (vol) => {
        const ns = namespace(vol, 'root')
        expect(read(vol, ns.resolve('/g')).equals(Buffer.alloc(4 * MiB))).to.equal(true)
      })
    })
  }

  it('recovers, from a crash at any write of a fallocate over blocks that held a file, zeros or nothing: never that file', () => {
    // The crash tests' image and machinery (test/crash-lib.ts): every free block holds the
    // bytes of a file that filled the image and was removed, so the fallocate can only reuse
    // them; a power loss at each of its writes (unsynced writes kept, dropped or torn) must
    // recover the state before or after it, fsck clean.
    const dev = new MemDevice(baseImage())
    const fill = new Set<number>()
    runCommand(dev, {name: 'fill the image', run: (ns, vol) => {
      ns.writeFile('/fill', bytes((vol.sb.freeBlocks - 16) * BLOCK_SIZE, 11))
      vol.commit()
      for (const b of blocksOf(vol, ns.resolve('/fill'))) fill.add(b)
    }}, 0)
    runCommand(dev, {name: 'rm /fill', run: (ns) => { ns.remove('/fill') }}, 1)
    const start = Buffer.from(dev.durable)
    const op = {name: 'fallocate /z (48 blocks) + pwrite into it', run: (ns: Namespace, vol: Volume) => {
      const f = ns.openForWrite('/z')
      writeZeros(vol, f, 0, 48 * BLOCK_SIZE)
      ns.writeInode(f, 9 * BLOCK_SIZE + 3, bytes(5000, 7))
    }}
    const r = crashWorkload(start, [op], 2)
    expect(r.failures, r.failures.slice(0, 5).join('\n')).to.deep.equal([])
    expect(r.points).to.be.greaterThan(5)
    expect(r.before).to.be.greaterThan(0)
    expect(r.after).to.be.greaterThan(0)
    // The zeroed blocks are the removed file's, and read as zeros (but for the write).
    const v = Volume.openDevice(new ImageView(r.final), {write: false})
    const z = namespace(v, 'root').resolve('/z')
    const mine = blocksOf(v, z)
    expect([...mine].filter((b) => fill.has(b)).length, 'blocks /fill had').to.be.at.least(40)
    const want = Buffer.alloc(48 * BLOCK_SIZE)
    bytes(5000, 7).copy(want, 9 * BLOCK_SIZE + 3)
    expect(read(v, z).equals(want)).to.equal(true)
    v.close()
  })
})
