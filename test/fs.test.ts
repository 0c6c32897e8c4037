// The filesystem core through the library API, on real image files.
import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {PrismError} from '../src/errors.js'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {loadExtents} from '../src/fs/extents.js'
import {Volume} from '../src/fs/volume.js'
import {FileDevice} from '../src/device/file.js'
import {SMALL_RUN} from '../src/device/writebehind.js'
import {MemDevice} from '../src/device/mem.js'
import {BlockStore, ReadWindow} from '../src/journal/store.js'
import {bucketCrc} from '../src/format/dirent.js'
import {fastCrc32} from '../src/sys.js'
import fc from 'fast-check'
import {namespace, withImage} from '../src/fs/image.js'
import {edit, errorCode as code, hostTree, newImage, read, sha256File, snapshot, tmpDir} from './helpers.js'
import {copy} from '../src/ops/copy.js'
import {HostWriter} from '../src/ops/hostwriter.js'
import {fsckImage} from '../src/fsck/index.js'


describe('fs: files and directories', () => {
  let dir: string
  let img: string
  beforeEach(() => { dir = tmpDir(); img = newImage(dir) })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('keeps small files inline and moves them to blocks as they grow', () => {
    edit(img, (ns) => {
      ns.writeFile('/small', Buffer.from('tiny'))
      ns.writeFile('/grow', Buffer.from('x'.repeat(100)))
      ns.writeFile('/grow', Buffer.from('y'.repeat(100)), {append: true})
    })
    read(img, (ns) => {
      expect(ns.stat('/small').flags).to.include('inline')
      expect(ns.stat('/small').blocks).to.equal(0)
      expect(ns.readFile('/grow').toString()).to.equal('x'.repeat(100) + 'y'.repeat(100))
      expect(ns.stat('/grow').flags).to.not.include('inline')
      expect(ns.stat('/grow').blocks).to.equal(1)
    })
  })

  it('reads holes as zeros and gives them no blocks', () => {
    edit(img, (ns) => {
      const f = ns.openForWrite('/sparse')
      ns.writeInode(f, 10 * BLOCK_SIZE * 1024, Buffer.from('end'))
      ns.truncate('/grown', 5 * 1024 * 1024, {create: true})
    })
    read(img, (ns) => {
      const st = ns.stat('/sparse')
      expect(st.size).to.equal(10 * BLOCK_SIZE * 1024 + 3)
      expect(st.blocks).to.equal(1)
      const data = ns.readFile('/sparse')
      expect(data.subarray(0, data.length - 3).every((b) => b === 0)).to.equal(true)
      expect(data.subarray(-3).toString()).to.equal('end')
      expect(ns.stat('/grown').blocks).to.equal(0)
      expect(ns.readFile('/grown').every((b) => b === 0)).to.equal(true)
    })
  })

  it('grows an extent tree past the inode root for fragmented files, and reads it back', () => {
    // Every other block written: 600 separate extents need tree depth 1.
    const want = Buffer.alloc(1200 * BLOCK_SIZE)
    edit(img, (ns) => {
      const f = ns.openForWrite('/frag')
      for (let i = 0; i < 1200; i += 2) {
        const b = Buffer.alloc(BLOCK_SIZE, i % 251)
        ns.writeInode(f, i * BLOCK_SIZE, b)
        b.copy(want, i * BLOCK_SIZE)
        // a neighbour allocation breaks physical contiguity
        ns.writeFile(`/pad${i % 7}`, Buffer.alloc(BLOCK_SIZE + 1, 1))
      }
    })
    read(img, (ns, vol) => {
      const f = ns.resolve('/frag')
      expect(loadExtents(vol, f).length).to.be.greaterThan(8)
      expect(f.treeBlocks.length).to.be.greaterThan(0)
      expect(ns.readFile('/frag').equals(want.subarray(0, ns.stat('/frag').size))).to.equal(true)
    })
    // Shrinking back frees the tree nodes again.
    edit(img, (ns) => ns.truncate('/frag', BLOCK_SIZE))
    read(img, (ns) => expect(ns.stat('/frag').blocks).to.equal(1))
  })

  it('zeroes the rest of the last block when it queues given-away memory without a copy', () => {
    // The import reads a file into memory it gives away (owned): bytes after the data in its
    // last block are whatever the buffer held before, and must reach the image as zeros.
    const given = () => Buffer.alloc(3 * BLOCK_SIZE, 0xee).fill(0x11, 0, 5000)
    edit(img, (ns) => {
      const f = ns.openForWrite('/t')
      ns.writeInode(f, 0, given().subarray(0, 5000), true)
      // Past the end of a file that already has data: the same, at a block boundary.
      const g = ns.openForWrite('/u')
      ns.writeFile('/u', Buffer.alloc(BLOCK_SIZE, 0x22))
      ns.writeInode(g, BLOCK_SIZE, given().subarray(BLOCK_SIZE, BLOCK_SIZE + 100), true)
    })
    edit(img, (ns) => { ns.truncate('/t', 3 * BLOCK_SIZE); ns.truncate('/u', 3 * BLOCK_SIZE) })
    read(img, (ns) => {
      const t = ns.readFile('/t')
      expect(t.subarray(0, 5000).every((b) => b === 0x11)).to.equal(true)
      expect(t.subarray(5000).every((b) => b === 0), 'bytes after the data read as zeros').to.equal(true)
      const u = ns.readFile('/u')
      expect(u.subarray(0, BLOCK_SIZE).every((b) => b === 0x22)).to.equal(true)
      expect(u.subarray(BLOCK_SIZE, BLOCK_SIZE + 100).every((b) => b === 0x11)).to.equal(true)
      expect(u.subarray(BLOCK_SIZE + 100).every((b) => b === 0)).to.equal(true)
    })
  })

  it('keeps directory blocks and extent-tree nodes in the metadata zone, file data after it', () => {
    // 40 directories of 30 files each (each directory needs a bucket block), files of a block
    // or two, and one fragmented file whose map needs a node block.
    edit(img, (ns) => {
      for (let d = 0; d < 40; d++) {
        ns.mkdir(`/d${d}`)
        for (let f = 0; f < 30; f++) ns.writeFile(`/d${d}/file-with-a-longish-name-${f}`, Buffer.alloc(BLOCK_SIZE + (f % 2) * 100, d))
      }
      const frag = ns.openForWrite('/frag')
      for (let i = 0; i < 400; i += 2) {
        ns.writeInode(frag, i * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 7))
        ns.writeFile(`/pad${i % 3}`, Buffer.alloc(BLOCK_SIZE + 1, 1))
      }
    })
    read(img, (ns, vol) => {
      const zoneEnd = vol.sb.dataStart + vol.metaZoneBlocks
      expect(vol.metaZoneBlocks).to.be.greaterThan(0).and.lessThan(vol.sb.dataBlocks)
      let dirBlocks = 0
      for (let d = 0; d < 40; d++) {
        const dirIno = ns.resolve(`/d${d}`)
        for (const e of loadExtents(vol, dirIno)) {
          dirBlocks += e.n
          expect(e.p + e.n, `/d${d}`).to.be.at.most(zoneEnd)
        }
        for (let f = 0; f < 30; f += 7) {
          for (const e of loadExtents(vol, ns.resolve(`/d${d}/file-with-a-longish-name-${f}`))) expect(e.p, `/d${d} file ${f}`).to.be.at.least(zoneEnd)
        }
      }
      expect(dirBlocks).to.be.at.least(40)
      const frag = ns.resolve('/frag')
      const fragExtents = loadExtents(vol, frag)
      expect(fragExtents.length).to.be.greaterThan(8)
      expect(frag.treeBlocks.length).to.be.greaterThan(0)
      for (const t of frag.treeBlocks) expect(t).to.be.lessThan(zoneEnd)
      for (const e of fragExtents) expect(e.p).to.be.at.least(zoneEnd)
    })
  })

  it('finds entries in a directory of 100,000 names through the hash, not a scan', function () {
    this.timeout(120000)
    const n = 100_000
    img = newImage(tmpDir(), 1 << 30, {inodeCount: 120_000})
    edit(img, (ns, vol) => {
      const d = ns.mkdir('/big')
      for (let i = 0; i < n; i++) {
        ns.createIn(d, Buffer.from(`entry-${i}`), 0o100644)
        vol.maybeCommit()
      }
    })
    read(img, (ns, vol) => {
      expect(ns.readdir('/big').length).to.equal(n)
      const before = vol.store.stats.reads + vol.store.stats.hits
      for (const i of [0, 4242, 99_999]) expect(ns.stat(`/big/entry-${i}`).type).to.equal('file')
      expect(code(() => ns.stat('/big/entry-100000'))).to.equal('ENOENT')
      // each lookup touches the inode table, one pointer block and one bucket
      expect(vol.store.stats.reads + vol.store.stats.hits - before).to.be.below(40)
      expect(ns.resolve('/big').r.dirDepth).to.be.greaterThan(8)
    })
    edit(img, (ns) => {
      for (let i = 0; i < n; i += 3) ns.unlink(`/big/entry-${i}`)
    })
    read(img, (ns) => {
      expect(ns.readdir('/big').length).to.equal(n - Math.ceil(n / 3))
      expect(code(() => ns.stat('/big/entry-3'))).to.equal('ENOENT')
      expect(ns.stat('/big/entry-4').type).to.equal('file')
    })
  })

  it('keeps hard links one inode and counts directory links as ext does', () => {
    edit(img, (ns) => {
      ns.mkdir('/a/b/c', {parents: true})
      ns.writeFile('/a/f', Buffer.from('shared'))
      ns.link('/a/f', '/a/b/g')
      ns.writeFile('/a/b/g', Buffer.from('changed through g'))
    })
    read(img, (ns) => {
      expect(ns.readFile('/a/f').toString()).to.equal('changed through g')
      expect(ns.stat('/a/f').nlink).to.equal(2)
      expect(ns.stat('/a').nlink).to.equal(3)
      expect(ns.stat('/').nlink).to.equal(3)
    })
    edit(img, (ns) => ns.unlink('/a/f'))
    read(img, (ns) => expect(ns.stat('/a/b/g').nlink).to.equal(1))
  })

  it('resolves symlinks inside the fileset and stops loops', () => {
    edit(img, (ns) => {
      ns.mkdir('/etc')
      ns.writeFile('/etc/hostname', Buffer.from('h'))
      ns.symlink('/etc', '/e')
      ns.symlink('../etc/hostname', '/etc/rel')
      ns.symlink('/../../../etc/hostname', '/escape')
      ns.symlink('/loop1', '/loop2')
      ns.symlink('/loop2', '/loop1')
    })
    read(img, (ns) => {
      expect(ns.readFile('/e/hostname').toString()).to.equal('h')
      expect(ns.readFile('/etc/rel').toString()).to.equal('h')
      expect(ns.readFile('/escape').toString()).to.equal('h')
      expect(ns.stat('/e').type).to.equal('symlink')
      expect(code(() => ns.readFile('/loop1'))).to.equal('ELOOP')
    })
  })

  it('follows rename(2) rules', () => {
    edit(img, (ns) => {
      ns.mkdir('/d/sub', {parents: true})
      ns.mkdir('/e')
      ns.writeFile('/f', Buffer.from('f'))
      ns.writeFile('/g', Buffer.from('g'))
    })
    edit(img, (ns) => {
      expect(code(() => ns.rename('/d', '/d/sub/x'))).to.equal('EINVAL')
      expect(code(() => ns.rename('/f', '/d'))).to.equal('EISDIR')
      expect(code(() => ns.rename('/d', '/f'))).to.equal('ENOTDIR')
      expect(code(() => ns.rename('/e', '/d'))).to.equal('ENOTEMPTY')
      ns.rename('/f', '/g')
      ns.rename('/d/sub', '/e/sub2')
    })
    read(img, (ns) => {
      expect(ns.readFile('/g').toString()).to.equal('f')
      expect(ns.exists('/f')).to.equal(false)
      expect(ns.stat('/d').nlink).to.equal(2)
      expect(ns.stat('/e').nlink).to.equal(3)
    })
  })

  it('rejects bad names and paths with precise codes', () => {
    edit(img, (ns) => {
      ns.writeFile('/file', Buffer.from('x'))
      expect(code(() => ns.mkdir('/' + 'n'.repeat(256)))).to.equal('ENAMETOOLONG')
      expect(code(() => ns.writeFile('/file/child', Buffer.from('x')))).to.equal('ENOTDIR')
      expect(code(() => ns.mkdir('/file'))).to.equal('EEXIST')
      expect(code(() => ns.readFile('/missing'))).to.equal('ENOENT')
      expect(code(() => ns.remove('/'))).to.equal('EBUSY')
      ns.mkdir('/' + 'n'.repeat(255))
    })
  })

  it('frees every block and inode when files and trees are removed', () => {
    const [blocks0, inodes0] = read(img, (_, vol) => [vol.sb.freeBlocks, vol.sb.freeInodes])
    edit(img, (ns) => {
      ns.mkdir('/t/u/v', {parents: true})
      for (let i = 0; i < 300; i++) ns.writeFile(`/t/u/f${i}`, Buffer.alloc(i * 97))
      ns.writeFile('/t/big', Buffer.alloc(3 << 20, 1))
    })
    edit(img, (ns) => ns.remove('/t', {recursive: true}))
    read(img, (_, vol) => {
      expect(vol.sb.freeBlocks).to.equal(blocks0)
      expect(vol.sb.freeInodes).to.equal(inodes0)
      expect(vol.sb.orphanHead).to.equal(0)
    })
  })

  it('rolls back a write that runs out of space, leaving the image byte for byte unchanged', () => {
    const small = newImage(tmpDir(), 4 * 1024 * 1024)
    edit(small, (ns) => ns.writeFile('/keep', Buffer.from('keep me')))
    const before = sha256File(small)
    expect(code(() => edit(small, (ns) => {
      ns.mkdir('/new')
      ns.writeFile('/new/huge', Buffer.alloc(8 * 1024 * 1024, 1))
    }))).to.equal('ENOSPC')
    expect(sha256File(small)).to.equal(before)
    read(small, (ns) => {
      expect(ns.exists('/new')).to.equal(false)
      expect(ns.readFile('/keep').toString()).to.equal('keep me')
    })
  })

  it('reports inode exhaustion as ENOSPC and changes nothing', () => {
    const tiny = newImage(tmpDir(), 4 * 1024 * 1024, {inodeCount: 20})
    const before = sha256File(tiny)
    expect(code(() => edit(tiny, (ns) => { for (let i = 0; i < 30; i++) ns.writeFile(`/f${i}`, Buffer.from('x')) }))).to.equal('ENOSPC')
    expect(sha256File(tiny)).to.equal(before)
  })
})

describe('fs: opening images', () => {
  let dir: string
  beforeEach(() => { dir = tmpDir() })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  const openCode = (p: string, write = false) => code(() => Volume.open(p, {write}).close())

  it('reports the holes of a sparse image, never a block that holds data (fsck skips the holes)', () => {
    const p = path.join(dir, 'sparse.img')
    const dev = FileDevice.create(p, 1000, false)
    let holes = false
    try {
      expect(dev.createdZero).to.equal(true)
      dev.write(100, Buffer.alloc(BLOCK_SIZE, 1))
      dev.write(500, Buffer.alloc(2 * BLOCK_SIZE, 2))
      const runs = dev.dataRuns(0, 1000)
      const covered = (b: number) => runs.some(([a, e]) => a <= b && b < e)
      for (const b of [100, 500, 501]) expect(covered(b), `block ${b} in ${JSON.stringify(runs)}`).to.equal(true)
      const total = runs.reduce((n, [a, e]) => n + e - a, 0)
      // A host file system that tracks holes (ext4, xfs, btrfs, tmpfs) leaves the rest out.
      holes = total < 1000
      if (holes) expect(covered(300)).to.equal(false)
      expect(dev.dataRuns(200, 100).reduce((n, [a, e]) => n + e - a, 0)).to.be.at.most(total < 1000 ? 0 : 100)
    } finally {
      dev.close()
    }
    // A fresh image leaves its inode table unwritten: fsck then reads only what holds data.
    const img = newImage(dir)
    withImage(img, {write: false}, (vol) => {
      const {inodeTableStart: start, inodeTableBlocks: n} = vol.sb
      const runs = vol.dev.dataRuns!(start, n)
      if (holes) expect(runs.reduce((t, [a, e]) => t + e - a, 0)).to.be.lessThan(n)
      expect(runs.some(([a, e]) => a <= start && start < e)).to.equal(true) // the root's block
    })
  })

  it('starts background writeback on request without changing what is written or holding the process', () => {
    // startWriteback is a hint (a second thread's fdatasync): asked for again while one runs,
    // and after close, it must neither fail nor disturb the writes around it.
    const p = path.join(dir, 'wb.img')
    const dev = FileDevice.create(p, 4096, false)
    const data = randomBytes(64 * BLOCK_SIZE)
    for (let i = 0; i < 16; i++) {
      dev.write(i * 64, data)
      dev.startWriteback()
    }
    dev.sync()
    dev.close()
    dev.startWriteback()
    const back = fs.readFileSync(p)
    for (let i = 0; i < 16; i++) expect(back.subarray(i * data.length, (i + 1) * data.length).equals(data), `run ${i}`).to.equal(true)
    // A process that asked for writeback still exits at once when its work is done.
    const script = `import {FileDevice} from './src/device/file.ts'
const d = FileDevice.create(${JSON.stringify(p + '2')}, 256, false)
d.write(0, Buffer.alloc(4096, 7)); d.startWriteback(); d.sync(); d.close()`
    const t = Date.now()
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {cwd: path.join(import.meta.dirname, '..'), encoding: 'utf8', timeout: 60000})
    expect(r.status, r.stderr).to.equal(0)
    expect(Date.now() - t).to.be.lessThan(30000)
    expect(fs.readFileSync(p + '2').subarray(0, 4096).every((b) => b === 7)).to.equal(true)
  })

  it('writes file data behind with O_DIRECT from page-aligned memory, and reports its errors at sync', function () {
    const p = path.join(dir, 'behind.img')
    const dev = FileDevice.create(p, 4096, false)
    const K = SMALL_RUN / BLOCK_SIZE // the shortest run the thread takes, in blocks
    try {
      dev.write(0, Buffer.alloc(BLOCK_SIZE, 9)) // block 0 holds data, as an image's superblock does
      const a = dev.dataBuffer(2 * K * BLOCK_SIZE)
      const b = dev.dataBuffer(K * BLOCK_SIZE)
      if (!(a.buffer instanceof SharedArrayBuffer)) this.skip() // a host file system without O_DIRECT (tmpfs before Linux 6.6)
      expect(a.byteOffset % BLOCK_SIZE).to.equal(0)
      a.set(randomBytes(a.length))
      b.set(randomBytes(b.length))
      // Whole aligned blocks of that memory are taken; anything else is left to the caller.
      const t1 = dev.writeBehind(100, [a.subarray(0, (K / 2) * BLOCK_SIZE), b])
      const t2 = dev.writeBehind(300, [a.subarray(K * BLOCK_SIZE)])
      expect(t1).to.be.greaterThan(0)
      expect(t2).to.be.greaterThan(t1)
      expect(dev.writeBehind(400, [Buffer.alloc(K * BLOCK_SIZE)])).to.equal(0)
      expect(dev.writeBehind(400, [a.subarray(512, 512 + K * BLOCK_SIZE)])).to.equal(0)
      expect(dev.writeBehind(400, [a.subarray(0, 100)])).to.equal(0)
      // So is a run shorter than SMALL_RUN, even of that memory: the page cache takes it better.
      expect(dev.writeBehind(400, [a.subarray(0, (K - 1) * BLOCK_SIZE)])).to.equal(0)
      expect(dev.writeBehind(400, [a.subarray(0, (K / 2) * BLOCK_SIZE), a.subarray(K * BLOCK_SIZE, (K + K / 2 - 1) * BLOCK_SIZE)])).to.equal(0)
      dev.waitFinished(t2)
      expect(dev.finished()).to.be.at.least(t2)
      dev.sync()
      const back = fs.readFileSync(p)
      expect(back.subarray(100 * BLOCK_SIZE, (100 + K / 2) * BLOCK_SIZE).equals(a.subarray(0, (K / 2) * BLOCK_SIZE))).to.equal(true)
      expect(back.subarray((100 + K / 2) * BLOCK_SIZE, (100 + K / 2 + K) * BLOCK_SIZE).equals(b)).to.equal(true)
      expect(back.subarray(300 * BLOCK_SIZE, (300 + K) * BLOCK_SIZE).equals(a.subarray(K * BLOCK_SIZE))).to.equal(true)
      expect(back.subarray(400 * BLOCK_SIZE, (400 + K) * BLOCK_SIZE).every((x) => x === 0), 'nothing refused was written').to.equal(true)
      // A later memory (this one cannot fit in the first) is taken without a probe of its own.
      const c = dev.dataBuffer(64 * 1024 * 1024)
      expect(c.buffer).to.not.equal(a.buffer)
      c.set(randomBytes(K * BLOCK_SIZE), 8 * BLOCK_SIZE)
      expect(dev.writeBehind(600, [c.subarray(8 * BLOCK_SIZE, (8 + K) * BLOCK_SIZE)])).to.be.greaterThan(0)
      dev.sync()
      expect(fs.readFileSync(p).subarray(600 * BLOCK_SIZE, (600 + K) * BLOCK_SIZE).equals(c.subarray(8 * BLOCK_SIZE, (8 + K) * BLOCK_SIZE))).to.equal(true)
      // A write that fails in the thread (past the largest file the host allows) is reported
      // by the next sync, once, as fsync reports a failed writeback.
      dev.writeBehind(2 ** 40, [b])
      expect(code(() => dev.sync())).to.equal('EIO')
      expect(code(() => dev.sync())).to.equal('ok')
      // settle() waits and forgets (the data of an abandoned operation).
      dev.writeBehind(2 ** 40, [b])
      dev.settle()
      expect(code(() => dev.sync())).to.equal('ok')
      // Writes handed over before close() are on the file after it.
      b.fill(0x5c)
      dev.writeBehind(500, [b])
    } finally {
      dev.close()
    }
    expect(fs.readFileSync(p).subarray(500 * BLOCK_SIZE, (500 + K) * BLOCK_SIZE).every((x) => x === 0x5c)).to.equal(true)
  })

  it('reads back data still being written behind, and commits it only once it is written', () => {
    // A large import through the library: more than the store queues and hands to the
    // write-behind at once, read back before and after its commit, then checked by reopening.
    const img = newImage(dir, 512 << 20)
    const want = randomBytes(1 << 20)
    const files = 120 // 120 MiB
    edit(img, (ns, vol) => {
      for (let i = 0; i < files; i++) {
        const f = ns.openForWrite(`/f${i}`)
        const buf = vol.store.dataBuffer()
        want.copy(buf, 0)
        buf.writeUInt32LE(i, 0)
        ns.writeInode(f, 0, buf.subarray(0, want.length), true)
        vol.store.doneWith(buf)
        // Read back at once: from the queue, from what is being written behind, or from the file.
        expect(ns.readFile(`/f${i}`).readUInt32LE(0)).to.equal(i)
        if (i === files - 1) expect(ns.readFile('/f0').subarray(4).equals(want.subarray(4))).to.equal(true)
      }
    })
    read(img, (ns) => {
      for (let i = 0; i < files; i++) {
        const got = ns.readFile(`/f${i}`)
        expect(got.readUInt32LE(0), `/f${i}`).to.equal(i)
        expect(got.subarray(4).equals(want.subarray(4)), `/f${i}`).to.equal(true)
      }
    })
  })

  it('writes a full data queue behind while the next one fills, and waits only for the queue before it', () => {
    // A device whose write-behind finishes nothing until waited for: what the store waits for
    // shows in finished(). Each queue here is one run of adjacent blocks, so one ticket.
    const dev = new MemDevice(Buffer.alloc(128 << 20))
    dev.behindLag = 1_000_000
    const store = new BlockStore(dev, null)
    const piece = 4 << 20
    let block = 1
    const queue = (pieces: number) => {
      for (let i = 0; i < pieces; i++) {
        const buf = store.dataBuffer()
        buf.fill(block & 0xff, 0, piece)
        store.writeData(block, buf.subarray(0, piece))
        store.doneWith(buf)
        block += piece / BLOCK_SIZE
      }
    }
    queue(5) // 20 MiB: past the queue's 16 MiB, handed to the write-behind
    expect(dev.finished(), 'the first queue is handed over, not waited for').to.equal(0)
    queue(5) // the second: with both, more than 32 MiB behind, so the first is written before it is handed over
    expect(dev.finished(), 'only the queue before it is waited for').to.equal(1)
    dev.sync()
    for (let b = 1; b < block; b += piece / BLOCK_SIZE) expect(dev.volatile[b * BLOCK_SIZE], `block ${b}`).to.equal(b & 0xff)
  })

  it('getThrough gives a block as get does (held ones as held, others from the device) through an aligned window, caching nothing', () => {
    const dev = new MemDevice(Buffer.alloc(256 * BLOCK_SIZE))
    for (let b = 0; b < 256; b++) dev.volatile.fill(b, b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE)
    const store = new BlockStore(dev, null)
    store.get(10) // cached (with the blocks read ahead with it)
    store.getMut(70).fill(0xee) // changed in the transaction
    store.setOverlay(new Map([[130, Buffer.alloc(BLOCK_SIZE, 0xcc)]])) // an unreplayed journal's image
    const cacheSize = () => (store as unknown as {cache: Map<number, Buffer>}).cache.size
    const cached = cacheSize()
    const w = new ReadWindow(64, 2)
    const want = (b: number) => (b === 70 ? 0xee : b === 130 ? 0xcc : b)
    const reads: number[] = []
    for (const b of [65, 70, 10, 130, 127, 64, 200, 255, 66, 3]) {
      const before = dev.counts.read
      const got = store.getThrough(b, w)
      reads.push(dev.counts.read - before)
      expect(got.length, `block ${b}`).to.equal(BLOCK_SIZE)
      expect(got.every((x) => x === want(b)), `block ${b}`).to.equal(true)
    }
    // 65 reads 64..127; 70, 10 and 130 are held; 127 and 64 are in the window; 200 reads 192..255
    // (the second stretch); 66 is still held in the first; 3 replaces the older one (0..63).
    expect(reads).to.deep.equal([1, 0, 0, 0, 0, 0, 1, 0, 0, 1])
    expect(cacheSize(), 'nothing cached').to.equal(cached)
    expect(() => store.getThrough(256, w)).to.throw(/outside the image/)
  })

  it('checks a directory bucket the same with the native CRC-32 as with zlib\'s, header and all', () => {
    fc.assert(fc.property(fc.uint8Array({minLength: BLOCK_SIZE, maxLength: BLOCK_SIZE}), fc.nat(BLOCK_SIZE - 16), (bytes, used) => {
      const b = Buffer.from(bytes)
      b.fill(0, 16 + used) // as encodeBucket leaves it, and not
      expect(bucketCrc(b, fastCrc32)).to.equal(bucketCrc(b))
      b[BLOCK_SIZE - 1] ^= 0x5a
      expect(bucketCrc(b, fastCrc32)).to.equal(bucketCrc(b))
    }), {numRuns: 200})
  })

  it('refuses files that are not Prism images', () => {
    const p = path.join(dir, 'foreign.img')
    fs.writeFileSync(p, Buffer.alloc(1 << 20, 0x5a))
    expect(openCode(p)).to.equal('EBADIMAGE')
    expect(openCode(path.join(dir, 'absent.img'))).to.equal('ENOENT')
  })

  it('refuses an image of a newer format version', () => {
    const img = newImage(dir, 8 << 20)
    const fd = fs.openSync(img, 'r+')
    const b = Buffer.alloc(4); b.writeUInt32LE(99)
    fs.writeSync(fd, b, 0, 4, 8)
    fs.closeSync(fd)
    try {
      Volume.open(img, {write: false})
      expect.fail('opened')
    } catch (e) {
      expect((e as PrismError).code).to.equal('EBADIMAGE')
      expect((e as Error).message).to.match(/newer/)
    }
  })

  it('falls back to the backup superblock, says so, and rewrites the primary', () => {
    const img = newImage(dir, 8 << 20)
    edit(img, (ns) => ns.writeFile('/x', Buffer.from('data')))
    const fd = fs.openSync(img, 'r+')
    fs.writeSync(fd, Buffer.alloc(64, 0xff), 0, 64, 0x60)
    fs.closeSync(fd)
    const notices: string[] = []
    withImage(img, {write: true, onNotice: (m) => notices.push(m)}, (vol) => {
      expect(namespace(vol, 'root').readFile('/x').toString()).to.equal('data')
      namespace(vol, 'root').writeFile('/y', Buffer.from('more'))
    })
    expect(notices.join()).to.match(/backup/)
    const again: string[] = []
    withImage(img, {write: false, onNotice: (m) => again.push(m)}, (vol) => expect(namespace(vol, 'root').readFile('/y').toString()).to.equal('more'))
    expect(again).to.deep.equal([])
  })

  it('imports and exports a file larger than the data queue byte for byte', function () {
    this.timeout(120000)
    // 150 MiB of random data: read in pooled 8 MiB buffers, queued past the 64 MiB flush point.
    const img = newImage(dir, 512 << 20)
    const src = path.join(dir, 'big.bin')
    const data = randomBytes(150 << 20)
    fs.writeFileSync(src, data)
    withImage(img, {write: true}, (vol) => copy(vol, [{kind: 'host', path: src}], {kind: 'image', fileset: 'root', path: '/big.bin'}))
    read(img, (ns) => expect(ns.readFile('/big.bin').equals(data)).to.equal(true))
    const out = path.join(dir, 'out.bin')
    withImage(img, {write: false}, (vol) => copy(vol, [{kind: 'image', fileset: 'root', path: '/big.bin'}], {kind: 'host', path: out}))
    expect(fs.readFileSync(out).equals(data)).to.equal(true)
  })

  it('exports a tree big enough for the writer thread with the same content, modes, mtimes and links', function () {
    this.timeout(120000)
    // 600 files: past the first 256 the data and attributes are written by HostWriter's thread.
    const src = path.join(dir, 'many')
    const want = new Map<string, Buffer>()
    for (let d = 0; d < 20; d++) {
      fs.mkdirSync(path.join(src, `d${d}`, 'sub'), {recursive: true})
      for (let f = 0; f < 30; f++) {
        const rel = path.join(`d${d}`, f % 3 ? 'sub' : '', `f${f}`)
        const data = randomBytes((f * 977 + d * 131) % 20000)
        fs.writeFileSync(path.join(src, rel), data)
        fs.utimesSync(path.join(src, rel), 1_600_000_000 + d * 100 + f, 1_500_000_000 + d * 100 + f)
        want.set(rel, data)
      }
    }
    // Late in the walk: a set-uid file, a file past the writer's 4 MiB batch, a sparse file
    // that ends in a hole, hard links, a symlink, an empty file.
    const late = path.join(src, 'zz')
    fs.mkdirSync(late)
    fs.writeFileSync(path.join(late, 'suid'), 'x')
    fs.chmodSync(path.join(late, 'suid'), 0o4755)
    const big = randomBytes(5 * 1024 * 1024 + 123)
    fs.writeFileSync(path.join(late, 'big'), big)
    const fd = fs.openSync(path.join(late, 'sparse'), 'w')
    fs.writeSync(fd, Buffer.from('head'), 0, 4, 0)
    fs.ftruncateSync(fd, 3 * 1024 * 1024)
    fs.closeSync(fd)
    fs.linkSync(path.join(late, 'big'), path.join(late, 'big-link'))
    fs.symlinkSync('big', path.join(late, 'sym'))
    fs.writeFileSync(path.join(late, 'empty'), '')

    const img = newImage(dir, 256 << 20)
    withImage(img, {write: true}, (vol) => copy(vol, [{kind: 'host', path: src}], {kind: 'image', fileset: 'root', path: '/'}, {recursive: true}))
    const out = path.join(dir, 'out')
    const stats = withImage(img, {write: false}, (vol) => copy(vol, [{kind: 'image', fileset: 'root', path: '/'}], {kind: 'host', path: out}, {recursive: true}))
    expect([stats.files, stats.hardlinks, stats.symlinks]).to.deep.equal([600 + 4, 1, 1])
    for (const [rel, data] of want) {
      expect(fs.readFileSync(path.join(out, rel)).equals(data), rel).to.equal(true)
      expect(fs.statSync(path.join(out, rel)).mtimeMs, rel).to.equal(fs.statSync(path.join(src, rel)).mtimeMs)
    }
    expect(fs.statSync(path.join(out, 'zz/suid')).mode & 0o7777).to.equal(0o4755)
    expect(fs.readFileSync(path.join(out, 'zz/big')).equals(big)).to.equal(true)
    expect(fs.statSync(path.join(out, 'zz/big-link')).ino).to.equal(fs.statSync(path.join(out, 'zz/big')).ino)
    expect(fs.readlinkSync(path.join(out, 'zz/sym'))).to.equal('big')
    expect(fs.statSync(path.join(out, 'zz/empty')).size).to.equal(0)
    const sparse = fs.readFileSync(path.join(out, 'zz/sparse'))
    expect(sparse.length).to.equal(3 * 1024 * 1024)
    expect(sparse.subarray(0, 4).toString()).to.equal('head')
    expect(sparse.subarray(4).every((b) => b === 0)).to.equal(true)
    // Directory times are set after their entries were made.
    expect(fs.statSync(path.join(out, 'd3')).mtimeMs).to.be.closeTo(fs.statSync(path.join(src, 'd3')).mtimeMs, 0.01)
    // A small export (no writer thread) keeps the set-uid bit too: the owner is set first.
    const small = path.join(dir, 'small')
    withImage(img, {write: false}, (vol) => copy(vol, [{kind: 'image', fileset: 'root', path: '/zz'}], {kind: 'host', path: small}, {recursive: true}))
    expect(fs.statSync(path.join(small, 'suid')).mode & 0o7777).to.equal(0o4755)
    expect(fs.readFileSync(path.join(small, 'big')).equals(big)).to.equal(true)
  })

  it('reports the writer thread\'s first error with the file it was writing, and closes every descriptor', () => {
    const w = new HostWriter()
    const good = path.join(dir, 'good')
    const bad = path.join(dir, 'bad')
    fs.writeFileSync(bad, '')
    const gfd = fs.openSync(good, 'w')
    const bfd = fs.openSync(bad, 'r') // writing through a read-only descriptor fails: EBADF
    w.write(gfd, good, Buffer.from('first'), 0)
    w.finish(gfd, good, {truncate: -1, mode: -1, uid: -1, gid: -1, atime: {s: 1_000_000_000, ns: 0}, mtime: {s: 1_000_000_000, ns: 0}})
    w.write(bfd, bad, Buffer.from('nope'), 0)
    w.finish(bfd, bad, {truncate: -1, mode: -1, uid: -1, gid: -1, atime: {s: 1, ns: 0}, mtime: {s: 1, ns: 0}})
    let err: Error | null = null
    try {
      w.close((e, p) => new PrismError('EIO', `${p}: ${e.code}`))
    } catch (e) {
      err = e as Error
    }
    expect(err?.message).to.equal(`${bad}: EBADF`)
    expect(fs.readFileSync(good, 'utf8')).to.equal('first')
    expect(fs.statSync(good).mtimeMs).to.equal(1_000_000_000_000)
    for (const fd of [gfd, bfd]) expect(() => fs.fstatSync(fd), `fd ${fd} closed`).to.throw(/EBADF/)
  })

  it('never overwrites a directory with a file when copying', () => {
    const img = newImage(dir)
    const host = path.join(dir, 'x')
    fs.writeFileSync(host, 'file')
    edit(img, (ns) => { ns.mkdir('/d/x', {parents: true}); ns.writeFile('/d/x/keep', Buffer.from('k')); ns.writeFile('/x', Buffer.from('file')) })
    // The entry is refused (as cp does: named, the rest copied, exit 1 from the CLI).
    const errs = (to: 'image' | 'host') => withImage(img, {write: true}, (vol) => copy(vol, [to === 'image' ? {kind: 'image', fileset: 'root', path: '/x'} : {kind: 'host', path: host}], {kind: 'image', fileset: 'root', path: '/d'})).errors
    expect(errs('image')).to.deep.equal([{code: 'EISDIR', message: "cannot overwrite directory 'root:/d/x' with non-directory 'root:/x'"}])
    expect(errs('host')).to.deep.equal([{code: 'EISDIR', message: `cannot overwrite directory 'root:/d/x' with non-directory '${host}'`}])
    read(img, (ns) => expect(ns.readFile('/d/x/keep').toString()).to.equal('k'))
  })

  it('imports a host tree keeping modes, symlinks and hard links', () => {
    const img = newImage(dir)
    const tree = hostTree(dir)
    withImage(img, {write: true}, (vol) => copy(vol, [{kind: 'host', path: tree}], {kind: 'image', fileset: 'root', path: '/'}, {recursive: true}))
    read(img, (ns) => {
      const snap = snapshot(ns)
      expect(snap['/etc/hn']).to.equal('symlink -> hostname')
      expect(ns.stat('/etc/passwd').ino).to.equal(ns.stat('/etc/passwd.bak').ino)
      expect(ns.stat('/home/alice').perm).to.equal(0o700)
      expect(ns.stat('/etc/hostname').mtime.s).to.equal(Math.floor(fs.statSync(path.join(tree, 'etc/hostname')).mtimeMs / 1000))
      expect(ns.readFile('/home/alice/notes.txt').length).to.equal(70000)
    })
  })

  it('copies names that are not UTF-8 byte for byte, host to image to host, and merges a second import into the first', () => {
    const img = newImage(dir)
    const tree = hostTree(dir)
    const bytes = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))))
    const etc = path.join(tree, 'etc')
    // 'a' + 0xff is not UTF-8: Node's string API lists it as 'a\ufffd', the name of another file.
    fs.writeFileSync(bytes(etc, '/a', [0xff]), 'raw')
    fs.writeFileSync(path.join(etc, 'a\ufffd'), 'utf-8')
    // A Latin-1 directory, a file in it, a hard link and a symlink whose target is not UTF-8.
    fs.mkdirSync(bytes(etc, '/caf', [0xe9]))
    fs.writeFileSync(bytes(etc, '/caf', [0xe9], '/men', [0xfc]), 'soup')
    fs.linkSync(bytes(etc, '/caf', [0xe9], '/men', [0xfc]), bytes(etc, '/link', [0xe9]))
    fs.symlinkSync(bytes('caf', [0xe9], '/men', [0xfc]), bytes(etc, '/sym', [0xc3]))
    const to = {kind: 'image', fileset: 'root', path: '/'} as const
    const stats = withImage(img, {write: true}, (vol) => copy(vol, [{kind: 'host', path: tree}], to, {recursive: true}))
    expect(stats.errors).to.deep.equal([])
    expect(stats.skipped).to.equal(0)
    const first = read(img, (ns) => {
      // Library paths carry each byte that is not UTF-8 as U+DC00 + byte (src/format/name.ts).
      expect(ns.readdir('/etc').map((e) => e.name).filter((n) => /^(a|caf|link|sym)/.test(n)).sort())
        .to.deep.equal(['a\udcff', 'a\ufffd', 'caf\udce9', 'link\udce9', 'sym\udcc3'].sort())
      expect(ns.readFile('/etc/a\udcff').toString()).to.equal('raw')
      expect(ns.readFile('/etc/a\ufffd').toString()).to.equal('utf-8')
      expect(ns.readFile('/etc/sym\udcc3').toString()).to.equal('soup')
      expect(ns.stat('/etc/link\udce9').ino).to.equal(ns.stat('/etc/caf\udce9/men\udcfc').ino)
      return snapshot(ns)
    })
    expect(fsckImage(img, {repair: false}).exitCode).to.equal(0)
    // Out again: every name, link and target as it was, byte for byte.
    const out = path.join(dir, 'out')
    withImage(img, {write: false}, (vol) => copy(vol, [{kind: 'image', fileset: 'root', path: '/etc'}], {kind: 'host', path: out}, {recursive: true}))
    const names = (d: string | Buffer) => fs.readdirSync(d, {encoding: 'buffer'}).map((n) => n.toString('hex')).sort()
    expect(names(out)).to.deep.equal(names(etc))
    expect(names(bytes(out, '/caf', [0xe9]))).to.deep.equal([Buffer.from([0x6d, 0x65, 0x6e, 0xfc]).toString('hex')])
    expect(fs.readFileSync(bytes(out, '/a', [0xff]), 'utf8')).to.equal('raw')
    expect(fs.readlinkSync(bytes(out, '/sym', [0xc3]), {encoding: 'buffer'}).equals(bytes('caf', [0xe9], '/men', [0xfc]))).to.equal(true)
    expect(fs.statSync(bytes(out, '/link', [0xe9])).ino).to.equal(fs.statSync(bytes(out, '/caf', [0xe9], '/men', [0xfc])).ino)
    // The second import finds every name in place (directories merged, files replaced).
    fs.writeFileSync(path.join(tree, 'etc', 'hostname'), 'renamed\n')
    withImage(img, {write: true}, (vol) => copy(vol, [{kind: 'host', path: tree}], to, {recursive: true}))
    const second = read(img, (ns) => {
      expect(ns.readFile('/etc/hostname').toString()).to.equal('renamed\n')
      return snapshot(ns)
    })
    expect(Object.keys(second)).to.deep.equal(Object.keys(first))
    for (const k of Object.keys(first)) if (k !== '/etc/hostname') expect(second[k], k).to.equal(first[k])
    expect(fsckImage(img, {repair: false}).exitCode).to.equal(0)
  })
})
