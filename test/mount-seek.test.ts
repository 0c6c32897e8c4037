// SEEK_DATA and SEEK_HOLE through a mount on a sparse file of thousands of extents (each
// request starts from the first extent that reaches its offset: src/server/adapter.ts lseek,
// holes), walked from start to end as `cp --sparse` and tar do: every data run and every hole
// found where the file has them; then holes punched into holes and into data, which must
// read as zeros and free exactly the whole blocks they cover.
import {expect} from 'chai'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {edit} from './helpers.js'
import {Scratch, expectClean, run, skipWithoutFuse} from './mount-support.js'

const BLOCKS = 40_000
/** Logical blocks written: runs of 1 to 3 blocks with gaps of 1 to 9 between (seeded). */
function layout(): number[] {
  const out: number[] = []
  let seed = 5
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n)
  for (let l = 1 + rnd(5); l < BLOCKS - 4;) {
    const run = 1 + rnd(3)
    for (let k = 0; k < run; k++) out.push(l + k)
    l += run + 1 + rnd(9)
  }
  return out
}

/** [start, end) byte ranges of data, as the walk must find them. */
function dataRuns(blocks: number[]): Array<[number, number]> {
  const out: Array<[number, number]> = []
  for (const b of blocks) {
    const last = out[out.length - 1]
    if (last && last[1] === b * BLOCK_SIZE) last[1] += BLOCK_SIZE
    else out.push([b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE])
  }
  return out
}

const WALK = `
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
runs, pos = [], 0
while pos < size:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    runs.append([d, h])
    pos = h
print(json.dumps({"size": size, "runs": runs}))`

describe('prism mount: SEEK_DATA and SEEK_HOLE over a file of thousands of extents', function () {
  this.timeout(300_000)
  let s: Scratch
  const blocks = layout()
  // written in a shuffled order, so that the map is built by inserts in its middle
  const order = blocks.slice()
  let seed = 11
  for (let i = order.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j], order[i]]
  }

  before(function () {
    skipWithoutFuse(this)
    s = new Scratch({})
    edit(s.image, (ns) => {
      ns.writeFile('/f', Buffer.alloc(0))
      const f = ns.resolveOwned('/f')
      for (const b of order) ns.writeInode(f, b * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, (b % 250) + 1))
      ns.truncate('/f', BLOCKS * BLOCK_SIZE)
    })
  })

  after(async () => {
    await s?.cleanup()
  })

  it('walks every data run and hole where the file has them; punched holes read as zeros and free their whole blocks', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    try {
      const f = `${mp}/f`
      const r = await run('python3', ['-c', WALK, f], {timeoutMs: 120_000})
      expect(r.code, r.stderr).to.equal(0)
      const got = JSON.parse(r.stdout) as {size: number, runs: Array<[number, number]>}
      expect(got.size).to.equal(BLOCKS * BLOCK_SIZE)
      const want = dataRuns(blocks)
      expect(want.length).to.be.greaterThan(5000)
      expect(got.runs).to.deep.equal(want)
      // Punch: a part of a block inside a hole (nothing changes), a range across data and
      // holes (its whole blocks go, its edges read as zeros).
      const stat = async () => Number((await run('stat', ['-c', '%b', f])).stdout.trim())
      const before = await stat()
      const hole = want[100][1] // a hole starts here
      expect((await run('fallocate', ['-p', '-o', String(hole + 10), '-l', '100', f])).code).to.equal(0)
      expect(await stat(), 'a punch inside a hole frees nothing').to.equal(before)
      const a = want[200][0] + 1000
      const b = want[260][1] - 1000
      expect((await run('fallocate', ['-p', '-o', String(a), '-l', String(b - a), f])).code).to.equal(0)
      const freed = blocks.filter((x) => x * BLOCK_SIZE >= Math.ceil(a / BLOCK_SIZE) * BLOCK_SIZE && (x + 1) * BLOCK_SIZE <= Math.floor(b / BLOCK_SIZE) * BLOCK_SIZE).length
      expect(before - (await stat()), '512-byte sectors freed').to.equal(freed * (BLOCK_SIZE / 512))
      const check = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
a, b = int(sys.argv[2]), int(sys.argv[3])
data = os.pread(fd, b - a + 8192, a - 4096)
inner = data[4096:4096 + b - a]
print(1 if inner == bytes(b - a) and data[:4096] != bytes(4096) and data[-4096:] != bytes(4096) else 0)`
      const z = await run('python3', ['-c', check, f, String(a), String(b)])
      expect(z.stdout.trim(), z.stderr).to.equal('1')
      const again = await run('python3', ['-c', WALK, f], {timeoutMs: 120_000})
      const runs = (JSON.parse(again.stdout) as {runs: Array<[number, number]>}).runs
      // the runs before and after the punched range are as they were
      expect(runs.filter(([x]) => x < want[200][0])).to.deep.equal(want.slice(0, 200))
      expect(runs.filter(([x]) => x > want[260][1])).to.deep.equal(want.filter(([x]) => x > want[260][1]))
    } finally {
      await s.umount(mp)
    }
    await expectClean(s.image)
  })
})
