// The image's second descriptors (a reader's extra streams, the O_DIRECT write-behind) are the
// image file itself even after its path was moved or given to another file: a server holds
// its image for hours, and a descriptor opened by the path alone would then read or write the
// other file's bytes.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {BLOCK_SIZE} from '../src/format/constants.js'
import {FileDevice} from '../src/device/file.js'
import {SMALL_RUN} from '../src/device/writebehind.js'
import {reopen} from '../src/device/reopen.js'
import {tmpDir} from './helpers.js'

const BLOCKS = 64

/** A file of BLOCKS blocks, every byte of block i being (fill + i) & 0xff. */
function patterned(file: string, fill: number): void {
  const buf = Buffer.alloc(BLOCKS * BLOCK_SIZE)
  for (let i = 0; i < BLOCKS; i++) buf.fill((fill + i) & 0xff, i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)
  fs.writeFileSync(file, buf)
}

describe('second descriptors of an open image', () => {
  let dir: string
  beforeEach(() => {
    dir = tmpDir('prism-reopen-')
  })
  afterEach(() => {
    fs.rmSync(dir, {recursive: true, force: true})
  })

  for (const change of ['moved, another file put at its path', 'removed, another file put at its path'] as const) {
    it(`a reader's streams read the open image, not its path, once it is ${change}`, () => {
      const img = path.join(dir, 'disk.img')
      patterned(img, 1)
      const dev = FileDevice.open(img, {write: false})
      try {
        const first = Buffer.alloc(BLOCK_SIZE)
        dev.readv(0, [first], 1) // stream 1 opened before the change
        if (change.startsWith('moved')) fs.renameSync(img, path.join(dir, 'moved.img'))
        else fs.unlinkSync(img)
        patterned(img, 101)
        for (const stream of [1, 2, 3]) {
          for (const block of [5, 40]) {
            const b = Buffer.alloc(BLOCK_SIZE)
            dev.readv(block, [b], stream)
            expect(b[0], `stream ${stream}, block ${block}`).to.equal((1 + block) & 0xff)
          }
        }
      } finally {
        dev.close()
      }
    })
  }

  /** Whether this host's temporary directory takes O_DIRECT writes (the write-behind is used). */
  function writesBehind(): boolean {
    const probe = path.join(dir, 'probe.img')
    patterned(probe, 0)
    const dev = FileDevice.open(probe, {write: true})
    try {
      return dev.writeBehind(0, [dev.dataBuffer(SMALL_RUN)]) !== 0
    } finally {
      dev.sync()
      dev.close()
    }
  }

  it('the write-behind writes into the open image, not the file now at its path, and is still used', () => {
    const behind = writesBehind()
    const img = path.join(dir, 'disk.img')
    patterned(img, 1)
    const dev = FileDevice.open(img, {write: true})
    try {
      fs.renameSync(img, path.join(dir, 'moved.img'))
      patterned(img, 101)
      const buf = dev.dataBuffer(SMALL_RUN) // (a shorter run is written through the page cache, by the caller)
      buf.fill(0xee)
      const done = dev.writeBehind(8, [buf])
      // Where the host takes O_DIRECT, the image's own second descriptor does the writing (by
      // the path alone it would be the other file, or refused and written the slow way).
      expect(done !== 0).to.equal(behind)
      if (done === 0) dev.writev(8, [buf])
      dev.sync()
    } finally {
      dev.close()
    }
    const moved = fs.readFileSync(path.join(dir, 'moved.img'))
    expect(moved[8 * BLOCK_SIZE]).to.equal(0xee)
    expect(moved[8 * BLOCK_SIZE + SMALL_RUN - 1]).to.equal(0xee)
    const other = fs.readFileSync(img)
    for (let i = 0; i < BLOCKS; i++) expect(other[i * BLOCK_SIZE], `block ${i} of the other file`).to.equal((101 + i) & 0xff)
  })

  it('reopen() gives a descriptor of the open file, and null when neither /proc nor the path leads to it', () => {
    const img = path.join(dir, 'disk.img')
    patterned(img, 1)
    const fd = fs.openSync(img, 'r')
    try {
      fs.unlinkSync(img)
      patterned(img, 101)
      const again = reopen(fd, img, fs.constants.O_RDONLY)
      expect(again).to.not.equal(null)
      const b = Buffer.alloc(1)
      fs.readSync(again!, b, 0, 1, 3 * BLOCK_SIZE)
      fs.closeSync(again!)
      expect(b[0]).to.equal(4)
      // A descriptor number that is not open: /proc has no such link, and the path is another file.
      expect(reopen(100_000, img, fs.constants.O_RDONLY)).to.equal(null)
    } finally {
      fs.closeSync(fd)
    }
  })
})
