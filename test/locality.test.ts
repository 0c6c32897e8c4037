// The locality policy (copy-on-abundant-write, docs/FORMAT.md §6.6) on real volumes: where
// the write path puts blocks (in place within a transaction, in a group's base and overflow
// windows), when it rewrites a region as one run and what that costs (the block a fileset
// shares stays the others'), the settings and how they pass down, compatibility with builds
// that zero the fields, defrag, and a property test that a rewrite never changes any
// fileset's content and copies a region only for the fileset that wrote it.
import {expect} from 'chai'
import fc from 'fast-check'
import fs from 'node:fs'
import path from 'node:path'
import {clone} from '../src/clone/clone.js'
import {MemDevice} from '../src/device/mem.js'
import {BLOCK_SIZE, REFCOUNTS_PER_BLOCK} from '../src/format/constants.js'
import {decodeFileset, encodeFileset} from '../src/format/fileset.js'
import {decodeInode, emptyInode, encodeInode} from '../src/format/inode.js'
import {LOCALITY_OFF, LOCALITY_ON, localityCode} from '../src/format/locality.js'
import {COMPAT_LOCALITY, decodeSuperblock, encodeSuperblock, planGeometry} from '../src/format/superblock.js'
import {crc32} from '../src/format/checksum.js'
import {defragInode, loadExtents, readBlocks, readData} from '../src/fs/extents.js'
import {ExtentMap} from '../src/fs/extentmap.js'
import {listFilesets} from '../src/fs/filesets.js'
import {copy} from '../src/ops/copy.js'
import {createEmptyFileset, namespace, withImage} from '../src/fs/image.js'
import type {Inode} from '../src/fs/inode.js'
import {dirList} from '../src/fs/dir.js'
import {homeOf, localityTuning, policyFor, regionView, setFilesetLocality, setImageLocality} from '../src/fs/locality.js'
import {Volume} from '../src/fs/volume.js'
import {fsckDevice} from '../src/fsck/index.js'
import {newImage, prism, sha256File, tmpDir} from './helpers.js'

/** A formatted memory volume whose image default is a region of `code` (16 = 64 KiB). */
function memVol(blocks = 8192, code = 16): {dev: MemDevice, vol: Volume} {
  const dev = new MemDevice(Buffer.alloc(blocks * BLOCK_SIZE))
  const sb = planGeometry({blockCount: blocks, journalBlocks: 256, inodeCount: 1024, filesetSlots: 64})
  Volume.format(dev, sb, (v) => {
    createEmptyFileset(v, 'root')
    if (code) setImageLocality(v, code)
  }).close()
  return {dev, vol: Volume.openDevice(dev, {write: true})}
}

/** Runs fn with the policy's constants changed, then puts them back. */
function tuned<T>(t: Partial<typeof localityTuning>, fn: () => T): T {
  const saved = {...localityTuning}
  Object.assign(localityTuning, t)
  try {
    return fn()
  } finally {
    Object.assign(localityTuning, saved)
  }
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff
  return b
}

/** Far runs of a file under the policy its fileset gives it. */
function farRuns(vol: Volume, fsName: string, file: string): number {
  const ns = namespace(vol, fsName)
  return ns.layout(ns.resolve(file)).farRuns
}

/** Every block's reference count equals the number of mappings of it by inodes reachable from some fileset. */
function refcountProblems(vol: Volume): string[] {
  const count = new Map<number, number>()
  const seen = new Set<number>()
  const account = (inode: Inode) => {
    if (seen.has(inode.ino)) return
    seen.add(inode.ino)
    for (const e of loadExtents(vol, inode)) for (let b = e.p; b < e.p + e.n; b++) count.set(b, (count.get(b) ?? 0) + 1)
    for (const b of inode.treeBlocks) count.set(b, (count.get(b) ?? 0) + 1)
  }
  for (const f of listFilesets(vol)) {
    const stack = [vol.iget(f.rootIno)]
    while (stack.length) {
      const d = stack.pop()!
      account(d)
      for (const e of dirList(vol, d)) {
        const c = vol.iget(e.ino)
        if (c.isDir) stack.push(c)
        else account(c)
      }
    }
  }
  const out: string[] = []
  const {dataStart, dataBlocks} = vol.sb
  for (let b = dataStart; b < dataStart + dataBlocks && out.length < 10; b++) {
    const want = count.get(b) ?? 0
    if (vol.refcount(b) !== want) out.push(`block ${b}: refcount ${vol.refcount(b)}, mapped ${want} time(s)`)
  }
  return out
}

describe('locality: placement', () => {
  it('keeps one extent for many small appends in one transaction, and moves only tail blocks across transactions', () => {
    const {vol} = memVol()
    const ns = namespace(vol, 'root')
    const f = ns.openForWrite('/log')
    const want: Buffer[] = []
    for (let i = 0; i < 1000; i++) {
      const b = pattern(100, i)
      ns.writeInode(f, f.r.size, b)
      want.push(b)
    }
    vol.commit()
    expect(loadExtents(vol, f).length, 'appends in one transaction').to.equal(1)
    // Then 20 transactions of 5 appends each: every transaction's first append rewrites the
    // committed tail block elsewhere; the new blocks go on at the base run's end.
    for (let t = 0; t < 20; t++) {
      for (let i = 0; i < 5; i++) {
        const b = pattern(1000, t * 5 + i)
        ns.writeInode(f, f.r.size, b)
        want.push(b)
      }
      vol.commit()
    }
    expect(ns.readFile('/log').equals(Buffer.concat(want))).to.equal(true)
    expect(loadExtents(vol, f).length, 'extents after 20 appending transactions').to.be.at.most(2 * 20 + 1)
    expect(farRuns(vol, 'root', '/log'), 'no run outside its group').to.equal(0)
    vol.close()
  })

  it('rewrites in place blocks still queued, handed to the write-behind, or written early, and keeps their content', () => {
    // 80 MiB in one transaction: the store writes its queue early (past 64 MiB) through a
    // write-behind that finishes late; then blocks of every kind are written again.
    const {dev, vol} = memVol(32768)
    dev.behindLag = 3
    const ns = namespace(vol, 'root')
    const f = ns.openForWrite('/big')
    const want = Buffer.alloc(80 * 1024 * 1024)
    for (let off = 0; off < want.length; off += 4 * 1024 * 1024) {
      const chunk = pattern(4 * 1024 * 1024, off / 4096)
      chunk.copy(want, off)
      ns.writeInode(f, off, chunk)
    }
    const runs = loadExtents(vol, f).length
    for (const at of [5, 4096 * 3 + 17, 40 * 1024 * 1024 + 9, want.length - 400]) {
      const d = pattern(300, at & 0xff)
      d.copy(want, at)
      ns.writeInode(f, at, d)
    }
    expect(loadExtents(vol, f).length, 'written where they were').to.equal(runs)
    expect(ns.readFile('/big').equals(want), 'before the commit').to.equal(true)
    vol.close()
    const again = Volume.openDevice(new MemDevice(Buffer.from(dev.durable)), {write: false})
    expect(namespace(again, 'root').readFile('/big').equals(want), 'after it').to.equal(true)
    again.close()
  })

  it('scatters blocks with the policy off (pure block copy-on-write), as before it', () => {
    const {vol} = memVol(8192, LOCALITY_OFF)
    const ns = namespace(vol, 'root')
    const f = ns.openForWrite('/log')
    for (let t = 0; t < 10; t++) {
      ns.writeInode(f, f.r.size, pattern(5000, t))
      ns.writeFile(`/pad${t}`, pattern(5000, t)) // another file's blocks right after
      vol.commit()
    }
    expect(ns.policyOf(f)).to.equal(null)
    expect(loadExtents(vol, f).length).to.be.greaterThan(5)
    vol.close()
  })

  it('rewrites the regions of interleaved appenders as they fragment, and defrag makes each file one run', () => {
    const {vol} = memVol()
    const ns = namespace(vol, 'root')
    const a = ns.openForWrite('/a')
    const b = ns.openForWrite('/b')
    for (let i = 0; i < 200; i++) {
      ns.writeInode(a, i * BLOCK_SIZE, pattern(BLOCK_SIZE, i))
      ns.writeInode(b, i * BLOCK_SIZE, pattern(BLOCK_SIZE, 1000 + i))
      if (i % 50 === 49) vol.commit()
    }
    vol.commit()
    // Each one's regions are rewritten as they fill with runs outside the file's windows:
    // no region is left with as many as the threshold.
    const pol = ns.policyOf(a)!
    for (const f of [a, b]) {
      const e = loadExtents(vol, f)
      for (let r = 0; r * pol.region < 200; r++) expect(regionView(e, r, pol, 200).farRuns, `region ${r}`).to.be.lessThan(pol.threshold)
    }
    expect(ns.record().coawRewrites, 'regions rewritten').to.be.greaterThan(0)
    expect(ns.record().coawCopied, 'nothing shared was copied').to.equal(0)
    expect(loadExtents(vol, a).length).to.be.greaterThan(1)
    defragInode(vol, a, pol)
    defragInode(vol, b, pol)
    vol.commit()
    expect(loadExtents(vol, a).length).to.equal(1)
    expect(loadExtents(vol, b).length).to.equal(1)
    for (let i = 0; i < 200; i += 37) expect(readData(vol, a, i * BLOCK_SIZE, BLOCK_SIZE).equals(pattern(BLOCK_SIZE, i))).to.equal(true)
    expect(refcountProblems(vol)).to.deep.equal([])
    vol.close()
  })

  it('keeps random overwrites of an unshared file in its groups; the policy off scatters them', () => {
    for (const code of [16, LOCALITY_OFF]) {
      const {dev, vol} = memVol(16384, code)
      const ns = namespace(vol, 'root')
      const size = 2048 * BLOCK_SIZE
      const model = pattern(size, 3)
      ns.writeFile('/disk', model)
      vol.commit()
      const f = ns.resolve('/disk')
      let seed = 7
      const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32
      for (let round = 0; round < 5; round++) {
        for (let i = 0; i < 40; i++) {
          const l = Math.floor(rnd() * 2048)
          const d = pattern(BLOCK_SIZE, round * 100 + i)
          d.copy(model, l * BLOCK_SIZE)
          ns.writeInode(f, l * BLOCK_SIZE, d)
        }
        vol.commit()
      }
      expect(ns.readFile('/disk').equals(model), `content (code ${code})`).to.equal(true)
      const far = ns.layout(f).farRuns
      // The policy's far runs are counted with the default region for the policy-off image.
      if (code === LOCALITY_OFF) expect(far, 'pure block copy-on-write scatters').to.be.greaterThan(20)
      else expect(far, 'the policy keeps every block in its group').to.equal(0)
      expect(refcountProblems(vol)).to.deep.equal([])
      vol.close()
      expect(fsckDevice(dev, {repair: false}).problems).to.deep.equal([])
    }
  })

  it("puts a clone's overwrites in its file's overflow zone, in group order, and copies nothing", () => {
    const {dev, vol} = memVol(16384, 18) // 256 KiB regions, 4 MiB groups
    const ns = namespace(vol, 'root')
    const size = 8 * 1024 * 1024
    ns.writeFile('/big', pattern(size, 1))
    vol.commit()
    const usedBefore = vol.sb.dataBlocks - vol.sb.freeBlocks
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'})
    vol.commit()
    const c = namespace(vol, 'c')
    const f = c.resolveOwned('/big')
    const model = pattern(size, 1)
    // Written in reverse group order: the zone still holds group 0's run before group 1's.
    for (const l of [1500, 1100, 1030, 700, 300, 5]) {
      const d = pattern(BLOCK_SIZE, l)
      d.copy(model, l * BLOCK_SIZE)
      c.writeInode(f, l * BLOCK_SIZE, d)
    }
    vol.commit()
    expect(c.readFile('/big').equals(model)).to.equal(true)
    expect(ns.readFile('/big').equals(pattern(size, 1)), 'the source is unchanged').to.equal(true)
    expect(vol.sb.dataBlocks - vol.sb.freeBlocks - usedBefore, 'blocks used: the six written and the map\'s node (no copy)').to.equal(6 + f.treeBlocks.length)
    expect(c.layout(f).farRuns).to.equal(0)
    const moved = loadExtents(vol, f).toArray().filter((e) => e.n === 1)
    const at = (l: number) => moved.find((e) => e.l === l)!.p
    expect(at(5)).to.be.lessThan(at(1030)) // group 0's run before group 1's
    expect(c.record().coawRewrites).to.equal(0)
    vol.close()
    expect(fsckDevice(dev, {repair: false}).problems).to.deep.equal([])
  })
})

describe('locality: a group\'s home', () => {
  it('is where the most blocks sit, the lowest of equals, with or without a majority (fast-check)', () => {
    // The plain rule: count the blocks each place holds, take the largest, the lowest of equals.
    const plain = (pieces: Array<{l: number, n: number, p: number}>, lo: number): number => {
      const votes = new Map<number, number>()
      for (const x of pieces) votes.set(x.p - (x.l - lo), (votes.get(x.p - (x.l - lo)) ?? 0) + x.n)
      let home = -1
      let best = 0
      for (const [h, v] of [...votes].sort((a, b) => a[0] - b[0])) if (v > best) { best = v; home = h }
      return home
    }
    fc.assert(fc.property(fc.array(fc.record({l: fc.nat(300), n: fc.integer({min: 1, max: 40}), p: fc.integer({min: 1000, max: 1400})}), {maxLength: 30}), fc.nat(300), (pieces, lo) => {
      const mapped = pieces.reduce((a, x) => a + x.n, 0)
      expect(homeOf(pieces, lo, mapped)).to.equal(plain(pieces, lo))
    }), {numRuns: 2000})
    // A base run split by moved blocks stays the home.
    expect(homeOf([{l: 0, n: 10, p: 500}, {l: 10, n: 1, p: 900}, {l: 11, n: 20, p: 511}], 0, 31)).to.equal(500)
  })
})

describe('locality: reading a file', () => {
  it("starts a stream's next read early to read through a short gap, and a longer one only where it holds data", () => {
    // Three layouts of 16 blocks read after a 1,024-block run on the same stream, G blocks past
    // its end: a short gap (read through), a long free one (skipped: an overflow window's empty
    // rest), a long one in use (read through: a scattered file's other blocks).
    const cases: Array<{gap: number, used: boolean, bridged: boolean}> = [
      {gap: 20, used: false, bridged: true},
      {gap: 60, used: false, bridged: false},
      {gap: 60, used: true, bridged: true},
    ]
    for (const c of cases) {
      const {vol, dev} = memVol(16384, 16)
      const D = vol.sb.dataStart + 4096 // nothing allocated here
      for (let b = D; b < D + 1200; b++) dev.volatile.writeUInt32LE(b, b * BLOCK_SIZE) // each block names itself
      if (c.used) expect(vol.allocIn(D + 1024, D + 1024 + c.gap, c.gap)).to.deep.equal({p: D + 1024, n: c.gap})
      const ext = ExtentMap.of([{l: 0, n: 1024, p: D}, {l: 1024, n: 16, p: D + 1024 + c.gap}])
      const reads: Array<[number, number]> = []
      const store = vol.store
      const readv = store.readDataV.bind(store)
      const read = store.readData.bind(store)
      store.readDataV = (b, bufs, s) => { reads.push([b, bufs.reduce((n, x) => n + x.length, 0) / BLOCK_SIZE]); readv(b, bufs, s) }
      store.readData = (b, buf) => { reads.push([b, buf.length / BLOCK_SIZE]); read(b, buf) }
      const cursor = {ends: [], oldest: 0, useful: 0, bridged: 0}
      const first = Buffer.alloc(1024 * BLOCK_SIZE)
      readBlocks(vol, ext, 0, first, cursor)
      const second = Buffer.alloc(16 * BLOCK_SIZE)
      readBlocks(vol, ext, 1024, second, cursor)
      const what = `gap ${c.gap}, ${c.used ? 'in use' : 'free'}`
      for (let i = 0; i < 1024; i++) expect(first.readUInt32LE(i * BLOCK_SIZE), what).to.equal(D + i)
      for (let i = 0; i < 16; i++) expect(second.readUInt32LE(i * BLOCK_SIZE), what).to.equal(D + 1024 + c.gap + i)
      expect(reads, what).to.deep.equal([[D, 1024], c.bridged ? [D + 1024, c.gap + 16] : [D + 1024 + c.gap, 16]])
      vol.closeAbort()
    }
  })
})

describe('locality: reading a tree', () => {
  // A clone's rewritten files lie where each round's writes put them, not in name order: an
  // export of the tree takes its files in the order of their data (FORMAT.md §6.6 "Reading").
  it("exports a clone's tree in the order its files' data sits in the image, with every file, mode and time as in the image", () => {
    const dir = tmpDir()
    try {
      const img = newImage(dir, 64 * 1024 * 1024)
      const names = Array.from({length: 40}, (_, i) => `/t/d${i % 4}/f${String(i).padStart(2, '0')}`)
      const want = new Map<string, Buffer>()
      withImage(img, {write: true}, (vol) => {
        const ns = namespace(vol, 'root')
        for (let d = 0; d < 4; d++) ns.mkdir(`/t/d${d}`, {parents: true})
        for (const [i, p] of names.entries()) ns.writeFile(p, pattern(BLOCK_SIZE * (1 + (i % 3)) + 10, i))
        vol.commit()
        clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'})
        vol.commit()
        // The clone rewrites every other file, in reverse name order: their new data lies
        // after the rest, in the opposite order to their names.
        const c = namespace(vol, 'c')
        for (const [i, p] of [...names.entries()].reverse()) {
          const b = i % 2 ? pattern(BLOCK_SIZE * 2 + 7, 100 + i) : pattern(BLOCK_SIZE * (1 + (i % 3)) + 10, i)
          if (i % 2) c.writeFile(p, b)
          want.set(p, b)
        }
        c.chmod('/t/d1', 0o555)
        c.setTimes(c.resolveOwned('/t/d2'), {s: 1000000000, ns: 5}, {s: 1000000001, ns: 7})
      })
      const out = path.join(dir, 'out')
      const order: number[] = []
      withImage(img, {write: false}, (vol) => {
        const store = vol.store as {readData: (p: number, buf: Buffer) => void}
        const read = store.readData.bind(store)
        store.readData = (p, buf) => { order.push(p); read(p, buf) }
        const stats = copy(vol, [{kind: 'image', fileset: 'c', path: '/t'}], {kind: 'host', path: out}, {recursive: true})
        expect(stats.errors).to.deep.equal([])
        expect(stats.files).to.equal(names.length)
      })
      expect(order.length, 'one read a file').to.equal(names.length)
      expect(order.every((p, i) => i === 0 || p > order[i - 1]), `data read in the order it sits: ${order.join(' ')}`).to.equal(true)
      for (const [p, b] of want) expect(fs.readFileSync(path.join(out, p.slice(3))).equals(b), p).to.equal(true)
      expect(fs.statSync(path.join(out, 'd1')).mode & 0o7777, 'a directory made read-only after its files are written').to.equal(0o555)
      expect(fs.statSync(path.join(out, 'd2'), {bigint: true}).mtimeNs, 'times set after its files are written').to.equal(1000000001_000000007n)
      fs.chmodSync(path.join(out, 'd1'), 0o755)
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})

describe('locality: copy-on-abundant-write', () => {
  it('rewrites a region with enough runs outside its group as one run; shared blocks lose only this file\'s reference', () => {
    tuned({groupBytes: 64 * 1024}, () => {
      const {dev, vol} = memVol(8192, 16) // 64 KiB regions = groups: one far run is enough
      const ns = namespace(vol, 'root')
      ns.writeFile('/f', pattern(64 * BLOCK_SIZE, 9))
      vol.commit()
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'})
      vol.commit()
      const c = namespace(vol, 'c')
      const f = c.resolveOwned('/f') // the clone's own inode: every block now counted twice
      const orig = loadExtents(vol, ns.resolve('/f')).toArray().map((e) => ({...e}))
      expect(orig).to.have.length(1)
      for (let i = 0; i < 64; i++) expect(vol.refcount(orig[0].p + i)).to.equal(2)
      c.writeInode(f, 5 * BLOCK_SIZE + 100, Buffer.from('changed'))
      vol.commit()
      const ext = loadExtents(vol, f).toArray()
      const r0 = ext.filter((e) => e.l < 16)
      expect(r0, 'region 0 of the clone is one run').to.have.length(1)
      expect(r0[0].n).to.equal(16)
      expect(r0[0].p).to.not.equal(orig[0].p)
      for (let i = 0; i < 16; i++) expect(vol.refcount(orig[0].p + i), `old block ${i} of region 0`).to.equal(1)
      for (let i = 16; i < 64; i++) expect(vol.refcount(orig[0].p + i), `block ${i} still shared`).to.equal(2)
      expect(loadExtents(vol, ns.resolve('/f')).toArray()).to.deep.equal(orig)
      expect(c.record().coawRewrites).to.equal(1)
      expect(c.record().coawCopied, 'the 15 unchanged blocks of region 0, still the source\'s').to.equal(15)
      const want = pattern(64 * BLOCK_SIZE, 9)
      Buffer.from('changed').copy(want, 5 * BLOCK_SIZE + 100)
      expect(c.readFile('/f').equals(want)).to.equal(true)
      expect(ns.readFile('/f').equals(pattern(64 * BLOCK_SIZE, 9))).to.equal(true)
      vol.close()
      expect(fsckDevice(dev, {repair: false}).problems).to.deep.equal([])
    })
  })

  it('property: a rewrite never changes any fileset\'s content, and copies a region shared by N filesets only for the fileset that wrote it', function () {
    this.timeout(600_000)
    let rewrites = 0
    let copiedShared = 0
    const writeArb = fc.record({block: fc.nat(79), len: fc.integer({min: 1, max: 3 * BLOCK_SIZE}), shift: fc.nat(200), seed: fc.nat(255)})
    fc.assert(fc.property(
      fc.integer({min: 1, max: 4}), fc.nat(4), fc.constantFrom(64, 128), fc.array(writeArb, {minLength: 1, maxLength: 25}),
      (n, writerPick, groupK, writes) => tuned({groupBytes: groupK * 1024}, () => {
        const {dev, vol} = memVol(6144, 16)
        try {
          const size = 80 * BLOCK_SIZE
          namespace(vol, 'root').writeFile('/f', pattern(size, 1))
          vol.commit()
          const names = ['root']
          const models = new Map<string, Buffer>([['root', pattern(size, 1)]])
          // N clones, each made to own its inode (a one-byte write far from the others), so
          // that the blocks of /f are mapped by up to N + 1 inodes at once.
          for (let i = 1; i <= n; i++) {
            clone(vol, {fileset: names[i - 1], path: '/'}, {fileset: `c${i}`})
            const ns = namespace(vol, `c${i}`)
            const m = Buffer.from(models.get(names[i - 1])!)
            const at = size - 1 - i
            m[at] = 0xee
            ns.writeInode(ns.resolveOwned('/f'), at, Buffer.from([0xee]))
            vol.commit()
            names.push(`c${i}`)
            models.set(`c${i}`, m)
          }
          const writer = names[writerPick % names.length]
          const maps = new Map(names.map((x) => [x, loadExtents(vol, namespace(vol, x).resolve('/f')).toArray().map((e) => ({...e}))]))
          const wns = namespace(vol, writer)
          const f = wns.resolveOwned('/f')
          const before = wns.record()
          for (const w of writes) {
            const off = Math.min(size - 1, w.block * BLOCK_SIZE + w.shift)
            const data = pattern(Math.min(w.len, size - off), w.seed)
            data.copy(models.get(writer)!, off)
            wns.writeInode(f, off, data)
            vol.commit()
            for (const x of names) {
              const ns = namespace(vol, x)
              expect(ns.readFile('/f').equals(models.get(x)!), `content of ${x}:/f after a write in ${writer}`).to.equal(true)
              if (x !== writer) expect(loadExtents(vol, ns.resolve('/f')).toArray(), `${x}'s map is untouched`).to.deep.equal(maps.get(x))
            }
            expect(refcountProblems(vol)).to.deep.equal([])
          }
          const after = wns.record()
          rewrites += after.coawRewrites - before.coawRewrites
          copiedShared += after.coawCopied - before.coawCopied
          vol.close()
          expect(fsckDevice(dev, {repair: false}).problems).to.deep.equal([])
        } finally {
          vol.close()
        }
      })), {numRuns: Number(process.env.PRISM_COAW_RUNS ?? 60)})
    console.log(`      ${rewrites} region rewrites, ${copiedShared} shared blocks copied`)
    expect(rewrites, 'the property exercised rewrites').to.be.greaterThan(0)
    expect(copiedShared, 'and copies of shared blocks').to.be.greaterThan(0)
  })

  it('defrag copies shared blocks only where the policy would, and makes unshared groups one run', () => {
    const {dev, vol} = memVol(16384, LOCALITY_OFF)
    const ns = namespace(vol, 'root')
    ns.writeFile('/f', pattern(512 * BLOCK_SIZE, 2))
    ns.writeFile('/solo', pattern(256 * BLOCK_SIZE, 3))
    vol.commit()
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'})
    vol.commit()
    const c = namespace(vol, 'c')
    const f = c.resolveOwned('/f')
    const solo = ns.resolve('/solo')
    const model = pattern(512 * BLOCK_SIZE, 2)
    const soloModel = pattern(256 * BLOCK_SIZE, 3)
    // With the policy off: region 3 (blocks 48..63) mostly rewritten by the clone, the other
    // regions a block here and there; /solo overwritten at random; a file written between.
    const blocks = [48, 50, 51, 53, 55, 56, 58, 60, 61, 63, ...Array.from({length: 30}, (_, i) => (i * 97) % 512).filter((l) => l < 48 || l > 63)]
    blocks.forEach((l, i) => {
      const d = pattern(BLOCK_SIZE, i)
      d.copy(model, l * BLOCK_SIZE)
      c.writeInode(f, l * BLOCK_SIZE, d)
      const k = (i * 61) % 256
      d.copy(soloModel, k * BLOCK_SIZE)
      ns.writeInode(solo, k * BLOCK_SIZE, d)
      ns.writeFile(`/pad${i % 5}`, pattern(3 * BLOCK_SIZE, i))
    })
    vol.commit()
    const rootMap = loadExtents(vol, ns.resolve('/f')).toArray().map((e) => ({...e}))
    const pol = policyFor(64 * 1024)
    const far = () => { const e = loadExtents(vol, f); return Array.from({length: 32}, (_, r) => regionView(e, r, pol, 512).farRuns) }
    const before = far()
    expect(before[3]).to.be.at.least(pol.threshold)
    const s = defragInode(vol, f, pol)
    const t = defragInode(vol, solo, pol)
    vol.commit()
    expect(c.readFile('/f').equals(model)).to.equal(true)
    expect(ns.readFile('/solo').equals(soloModel)).to.equal(true)
    expect(loadExtents(vol, ns.resolve('/f')).toArray(), 'the source keeps its blocks').to.deep.equal(rootMap)
    // Shared: region 3, mostly the clone's own, is rewritten (its 6 blocks still shared copied);
    // the others, mostly shared, keep their far runs. Unshared: one run.
    const after = far()
    expect(after[3]).to.equal(0)
    for (let r = 0; r < 32; r++) if (r !== 3) expect(after[r], `region ${r}`).to.equal(before[r])
    expect(s.rewrites).to.equal(1)
    expect(s.copiedShared).to.equal(6)
    expect(t.copiedShared).to.equal(0)
    expect(loadExtents(vol, solo)).to.have.length(1)
    expect(refcountProblems(vol)).to.deep.equal([])
    vol.close()
    expect(fsckDevice(dev, {repair: false}).problems).to.deep.equal([])
  })

  it('defrag of a sparse file lays its pieces out once, holes kept free; again, it copies nothing', () => {
    const {dev, vol} = memVol(16384, LOCALITY_OFF)
    const ns = namespace(vol, 'root')
    const pol = policyFor(64 * 1024)
    // Pieces of one to three blocks with holes of one to four between them, written out of
    // order with a file written between each (so they lie scattered), across several groups.
    const blocks = 3 * pol.group + 40
    const model = Buffer.alloc(blocks * BLOCK_SIZE)
    const pieces: Array<[number, number]> = []
    for (let l = 0, i = 0; l < blocks; i++) {
      const n = 1 + (i % 3)
      if (l + n <= blocks) pieces.push([l, n])
      l += n + 1 + (i % 4)
    }
    const file = ns.openForWrite('/sparse')
    pieces.forEach((_, k) => {
      const [l, n] = pieces[(k * 37) % pieces.length]
      const d = pattern(n * BLOCK_SIZE, k)
      d.copy(model, l * BLOCK_SIZE)
      ns.writeInode(file, l * BLOCK_SIZE, d)
      ns.writeFile(`/pad${k % 7}`, pattern(2 * BLOCK_SIZE, k))
    })
    ns.truncate('/sparse', blocks * BLOCK_SIZE)
    vol.commit()
    const runs = loadExtents(vol, file).length
    const first = defragInode(vol, file, pol)
    vol.commit()
    expect(first.copied, 'the scattered pieces are moved').to.be.greaterThan(0)
    const laid = loadExtents(vol, file).toArray().map((e) => ({...e}))
    expect(laid.length, 'holes stay holes: as many extents').to.equal(runs)
    const second = defragInode(vol, file, pol)
    vol.commit()
    expect(second).to.deep.equal({rewrites: 0, copied: 0, copiedShared: 0})
    expect(loadExtents(vol, file).toArray()).to.deep.equal(laid)
    expect(ns.readFile('/sparse').equals(model)).to.equal(true)
    expect(refcountProblems(vol)).to.deep.equal([])
    vol.close()
    expect(fsckDevice(dev, {repair: false}).problems).to.deep.equal([])
  })
})

describe('locality: settings and compatibility', () => {
  it('is on by default; image, fileset, directory and file settings pass down; clones keep the fileset\'s', () => {
    const {vol} = memVol(4096, 0)
    const root = namespace(vol, 'root')
    expect(root.locality(null)).to.deep.equal({on: true, regionBytes: localityTuning.defaultRegionBytes, from: 'default'})
    setImageLocality(vol, 20)
    expect(root.locality(null)).to.deep.equal({on: true, regionBytes: 1 << 20, from: 'image'})
    setFilesetLocality(vol, root.fs, LOCALITY_OFF)
    root.mkdir('/vm')
    const file = root.openForWrite('/vm/disk.img')
    expect(root.locality(file)).to.deep.equal({on: false, regionBytes: 1 << 20, from: 'fileset'})
    expect(root.policyOf(file)).to.equal(null)
    root.setLocality('/vm', 17)
    const later = root.openForWrite('/vm/later.img')
    expect(later.r.locality, 'made in a directory with a setting').to.equal(17)
    expect(root.locality(later)).to.deep.equal({on: true, regionBytes: 128 * 1024, from: 'file'})
    expect(root.locality(file).on, 'made before the directory had it').to.equal(false)
    root.setLocality('/vm/disk.img', LOCALITY_ON)
    expect(root.locality(root.resolve('/vm/disk.img'))).to.deep.equal({on: true, regionBytes: 1 << 20, from: 'file'})
    vol.commit()
    clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'})
    expect(namespace(vol, 'c').locality(null).from).to.equal('fileset')
    expect(namespace(vol, 'c').locality(null).on).to.equal(false)
    expect(namespace(vol, 'c').record().coawCopied).to.equal(0)
    expect(vol.sb.compat & COMPAT_LOCALITY).to.equal(COMPAT_LOCALITY)
    vol.close()
  })

  it('reads settings an older build zeroed as "inherit", and unknown codes too', () => {
    // Superblock: an older encoder writes zeros over 0x0BC (and keeps the compat bit).
    const g = planGeometry({blockCount: 4096})
    const sb = encodeSuperblock({...g, uuid: Buffer.alloc(16), localityDefault: 18, compat: COMPAT_LOCALITY})
    expect(decodeSuperblock(sb).localityDefault).to.equal(18)
    sb[0xbc] = 0
    sb.writeUInt32LE(crc32(sb, 0, 0xfc), 0xfc)
    expect(decodeSuperblock(sb)).to.include({localityDefault: 0, compat: COMPAT_LOCALITY})
    sb[0xbc] = 33 // no such code
    sb.writeUInt32LE(crc32(sb, 0, 0xfc), 0xfc)
    expect(decodeSuperblock(sb).localityDefault).to.equal(0)
    // Inode: 0x65 zeroed or unknown reads as inherit.
    const r = {...emptyInode(), mode: 0o100644, nlink: 1, share: 1, locality: 19}
    const buf = Buffer.alloc(BLOCK_SIZE)
    encodeInode(r, buf, 0)
    expect(decodeInode(buf, 0, 1).locality).to.equal(19)
    buf[0x65] = 200
    buf.writeUInt32LE(crc32(buf, 0, 0xfc), 0xfc)
    expect(decodeInode(buf, 0, 1).locality).to.equal(0)
    // Fileset record: flags are round-tripped whole; only the low five bits are the code.
    const rec = {id: 2, rootIno: 5, parentId: 1, state: 1, mode: 1, flags: 0xe0 | LOCALITY_OFF, created: 1, clonestart: 0, stateIno: 0, srcFileset: 0, dirsDone: 0, dirsTotal: 0, name: 'vm', coawCopied: 9, coawRewrites: 2}
    const fb = Buffer.alloc(BLOCK_SIZE)
    encodeFileset(rec, fb, 0)
    expect(decodeFileset(fb, 0, 0)).to.deep.equal(rec)
    expect(localityCode(rec.flags & 0x1f)).to.equal(LOCALITY_OFF)
  })

  it('keeps working, with the defaults, on an image whose settings an older build dropped', () => {
    const {dev, vol} = memVol(4096, 17)
    setFilesetLocality(vol, namespace(vol, 'root').fs, 20)
    vol.close()
    // What an older build leaves after re-encoding the superblock and the fileset record.
    const img = dev.volatile
    img[0xbc] = 0
    img.writeUInt32LE(crc32(img, 0, 0xfc), 0xfc)
    const v2 = Volume.openDevice(new MemDevice(Buffer.from(img)), {write: true})
    const f = listFilesets(v2)[0]
    const sbEnd = v2.sb.filesetTableStart * BLOCK_SIZE
    img.fill(0, sbEnd + 0xb0, sbEnd + 0xc0)
    img[sbEnd + 0x0f] = 0
    img.writeUInt32LE(crc32(img, sbEnd, sbEnd + 0xfc), sbEnd + 0xfc)
    v2.close()
    const v3 = Volume.openDevice(new MemDevice(Buffer.from(img)), {write: true})
    const ns = namespace(v3, f.name)
    expect(ns.locality(null)).to.deep.equal({on: true, regionBytes: localityTuning.defaultRegionBytes, from: 'default'})
    ns.writeFile('/x', pattern(100_000, 1))
    v3.commit()
    expect(ns.readFile('/x').equals(pattern(100_000, 1))).to.equal(true)
    v3.close()
  })
})

describe('locality: CLI', function () {
  this.timeout(120_000)
  let dir = ''
  let img = ''
  before(() => {
    dir = tmpDir()
    img = path.join(dir, 'disk.img')
    fs.writeFileSync(path.join(dir, 'big'), pattern(3 * 1024 * 1024, 4))
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('mkfs --coaw-region, set, stat, fileset list and defrag, with --json; bad input is one line, exit 2, image unchanged', () => {
    const ok = (args: string[]) => {
      const r = prism([...args, '-i', img])
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).to.equal(0)
      return r
    }
    expect(prism(['mkfs', img, '--size', '64M', '--coaw-region', '128K']).status).to.equal(0)
    ok(['cp', path.join(dir, 'big'), 'root:/big'])
    ok(['clone', 'root', 'snap'])
    expect(JSON.parse(ok(['set', 'snap', '--json']).stdout).coaw).to.deep.equal({setting: 'inherit', on: true, regionBytes: 131072, from: 'image'})
    expect(JSON.parse(ok(['set', 'snap', 'coaw=off', '--json']).stdout).coaw).to.deep.equal({setting: 'off', on: false, regionBytes: 131072, from: 'fileset'})
    expect(JSON.parse(ok(['set', 'snap:/big', 'coaw=1M', '--json']).stdout).coaw).to.deep.equal({setting: '1M', on: true, regionBytes: 1 << 20, from: 'file'})
    expect(ok(['set', 'snap:/big']).stdout).to.match(/^snap:\/big: coaw=1M \(in force: on, 1\.0 MiB regions, from its own setting\)/)
    const st = JSON.parse(ok(['stat', 'snap:/big', '--json']).stdout)[0] // one object per path
    expect(st).to.include({extents: 1, sharedBlocks: 768, farRuns: 0})
    expect(st.coaw).to.deep.equal({setting: '1M', on: true, regionBytes: 1 << 20, from: 'file'})
    expect(ok(['stat', 'snap:/big']).stdout).to.match(/Extents: 1 {2}Shared blocks: 768 {2}Far runs: 0 {2}Locality: coaw=1M \(on, 1024K regions\)/)
    // A sync clone shares the file's inode itself (its blocks' counts stay 1): every block is
    // still shared, for stat as for du, in both filesets, until one writes it.
    ok(['cp', path.join(dir, 'big'), 'root:/solo'])
    ok(['clone', '--mode', 'sync', 'root', 'ssync'])
    for (const p of ['ssync:/solo', 'root:/solo']) {
      const s2 = JSON.parse(ok(['stat', p, '--json']).stdout)[0]
      expect(s2, p).to.include({share: 2, extents: 1, sharedBlocks: 768})
      expect(JSON.parse(ok(['du', '-s', p, '--json']).stdout)[0], p).to.include({usedBlocks: 768, sharedBlocks: 768})
    }
    expect(prism(['write', 'ssync:/solo', '-i', img], {input: 'its own now\n'}).status).to.equal(0)
    expect(JSON.parse(ok(['stat', 'root:/solo', '--json']).stdout)[0]).to.include({share: 1, sharedBlocks: 0})
    expect(JSON.parse(ok(['stat', 'ssync:/solo', '--json']).stdout)[0]).to.include({share: 1, sharedBlocks: 0, extents: 0})
    ok(['fileset', 'delete', 'ssync'])
    ok(['rm', 'root:/solo'])
    const list = JSON.parse(ok(['fileset', 'list', '--json']).stdout)
    expect(list.map((f: {name: string, coaw: unknown}) => [f.name, f.coaw])).to.deep.equal([
      ['root', {setting: 'inherit', copiedBytes: 0, rewrites: 0}], ['snap', {setting: 'off', copiedBytes: 0, rewrites: 0}]])
    expect(ok(['fileset', 'list', '--no-space']).stdout).to.match(/COAW/)
    const d = JSON.parse(ok(['defrag', 'snap', '--json']).stdout)
    // (a file of one run is looked at and counted, and left alone)
    expect(d).to.include({target: 'snap:/', files: 1, changed: 0, copiedShared: 0, extentsBefore: 1, extentsAfter: 1, farRunsBefore: 0, farRunsAfter: 0})
    expect(ok(['fsck']).status).to.equal(0)
    const unchanged = sha256File(img)
    for (const bad of [['set', 'snap', 'coaw=3M'], ['set', 'snap', 'coaw=maybe'], ['set', 'snap', 'speed=9'], ['set', 'snap', 'coaw'], ['set', 'no such', 'coaw=on'],
      ['defrag', 'bad name!'], ['mkfs', path.join(dir, 'x.img'), '--coaw-region', '48K']]) {
      const r = prism(bad[0] === 'mkfs' ? bad : [...bad, '-i', img])
      expect(r.status, bad.join(' ')).to.equal(2)
      expect(r.stderr.trim().split('\n'), bad.join(' ')).to.have.length(1)
      expect(r.stderr).to.match(/^prism: /)
    }
    expect(sha256File(img), 'bad input leaves the image as it was').to.equal(unchanged)
    // Several targets, as `zfs set` takes several datasets: each set on its own; one that
    // fails is named and the others are set (exit 1); --json gives an array.
    const many = prism(['set', 'snap', 'root:/nope', 'root', 'coaw=1M', '--json', '-i', img])
    expect(many.status).to.equal(1)
    expect(many.stderr).to.equal('prism: root:/nope: no such file or directory\n')
    expect(JSON.parse(many.stdout).map((o: {target: string, coaw: {setting: string}}) => [o.target, o.coaw.setting])).to.deep.equal([['snap', '1M'], ['root', '1M']])
    expect(ok(['set', 'snap', 'root', 'coaw=inherit']).stdout).to.equal(
      'snap: coaw=inherit (in force: on, 128 KiB regions, from the image default)\nroot: coaw=inherit (in force: on, 128 KiB regions, from the image default)\n')
    ok(['set', 'snap', 'coaw=off'])
    // Special files and symlinks have no data to place: stat shows no layout, set refuses (exit 1).
    ok(['mknod', 'root:/null', 'c', '1', '3'])
    ok(['mknod', 'root:/pipe', 'p'])
    ok(['ln', '-s', 'big', 'root:/link'])
    for (const p of ['root:/null', 'root:/pipe', 'root:/link']) {
      const sp = JSON.parse(ok(['stat', p, '--json']).stdout)[0]
      expect(sp, p).to.not.have.any.keys('extents', 'sharedBlocks', 'farRuns', 'coaw')
      expect(ok(['stat', p]).stdout, p).to.not.match(/Extents:/)
    }
    const before = sha256File(img)
    for (const p of ['root:/null', 'root:/pipe']) { // (set follows a symlink, as chmod does)
      const r = prism(['set', p, 'coaw=off', '-i', img])
      expect(r.status, p).to.equal(1)
      expect(r.stderr, p).to.match(/^prism: .*has no locality setting\n$/)
    }
    for (const missing of [['set', 'nope', 'coaw=on'], ['set', 'snap:/nope', 'coaw=on'], ['defrag', 'snap:/nope']]) {
      const r = prism([...missing, '-i', img])
      expect(r.status, missing.join(' ')).to.equal(1)
      expect(r.stderr).to.match(/^prism: /)
    }
    expect(sha256File(img), 'failed commands leave the image as it was').to.equal(before)
    expect(fs.existsSync(path.join(dir, 'x.img'))).to.equal(false)
  })
})
