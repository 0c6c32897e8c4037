// A tar fuzzer: truncated and mutated archives (bytes flipped, header fields rewritten with
// valid checksums, blocks dropped or repeated, pax records damaged), fed to the import
// through the library, and a sample through the real CLI. Every run must end in a result or
// one clear error; after a refused import the image holds exactly what it held before (and
// fsck finds nothing); an import that succeeds changes nothing outside its target.
//
//   PRISM_TARFUZZ_SECONDS (default 8)  how long the library loop runs
//   PRISM_TARFUZZ_SEED                 replay a run (printed)
import {expect} from 'chai'
import fs from 'node:fs'
import {mulberry32} from '../src/device/mem.js'
import {PrismError} from '../src/errors.js'
import {fsckImage} from '../src/fsck/index.js'
import {TAR_BLOCK, encodeSparse10Map, sealHeader} from '../src/tar/codec.js'
import {edit, newImage, prism, read, snapshot, tmpDir} from './helpers.js'
import {importBuffer, mkTar} from './tar-lib.js'

const SECONDS = Number(process.env.PRISM_TARFUZZ_SECONDS ?? 8)
const SEED = process.env.PRISM_TARFUZZ_SEED ? Number(process.env.PRISM_TARFUZZ_SEED) : Math.floor(Math.random() * 2 ** 31)

function base(): Buffer {
  return mkTar([
    {name: 'etc/', type: 'dir'},
    {name: 'etc/passwd', data: 'root:x:0:0::/root:/bin/sh\n', pax: [['mtime', '1600000000.5'], ['SCHILY.xattr.user.a', Buffer.from([0, 1, 2])]]},
    {name: 'etc/big', data: Buffer.alloc(20000, 3)},
    {name: 'etc/link', type: 'symlink', link: 'passwd'},
    {name: 'etc/hard', type: 'hardlink', link: 'etc/passwd'},
    {name: 'dev/null', type: 'chardev', major: 1, minor: 3},
    {name: 'd/' + 'x'.repeat(140), data: 'long', pax: [['SCHILY.acl.access', 'user::rw-\ngroup::r--\nother::r--\n']]},
    {name: 'sparse', data: Buffer.concat([encodeSparse10Map([{offset: 500000, size: 4096}, {offset: 1000000, size: 0}]), Buffer.alloc(4096, 9)]), pax: [['GNU.sparse.major', '1'], ['GNU.sparse.minor', '0'], ['GNU.sparse.name', 'sparse'], ['GNU.sparse.realsize', '1000000']]},
  ])
}

/** One mutation of the archive, chosen by `rnd`. */
function mutate(a: Buffer, rnd: () => number): Buffer {
  const b = Buffer.from(a)
  const blocks = Math.floor(b.length / TAR_BLOCK)
  const pick = (n: number) => Math.floor(rnd() * n)
  switch (pick(7)) {
    case 0: return b.subarray(0, pick(b.length))
    case 1: {
      for (let i = 0, n = 1 + pick(8); i < n; i++) b[pick(b.length)] ^= 1 << pick(8)
      return b
    }
    case 2: {
      // A header field rewritten, the checksum made valid again: the reader must judge the content.
      const h = pick(blocks) * TAR_BLOCK
      const fields = [[0, 100], [100, 8], [124, 12], [136, 12], [156, 1], [157, 100], [329, 8], [345, 155]]
      const [off, len] = fields[pick(fields.length)]
      for (let i = 0; i < len; i++) if (rnd() < 0.5) b[h + off + i] = pick(256)
      sealHeader(b.subarray(h, h + TAR_BLOCK))
      return b
    }
    case 3: {
      const h = pick(blocks) * TAR_BLOCK
      return Buffer.concat([b.subarray(0, h), b.subarray(h + TAR_BLOCK)])
    }
    case 4: {
      const h = pick(blocks) * TAR_BLOCK
      return Buffer.concat([b.subarray(0, h), b.subarray(h, h + TAR_BLOCK), b.subarray(h)])
    }
    case 5: {
      // Digits of a pax length or a numeric record changed.
      const at = b.indexOf(Buffer.from(['mtime=', 'realsize=', ' path=', 'size='][pick(4)]))
      if (at > 0) b[at - 1 - pick(3)] = 0x30 + pick(10)
      return b
    }
    default: return Buffer.concat([b.subarray(0, pick(b.length)), Buffer.from(Array.from({length: pick(2000)}, () => pick(256)))])
  }
}

describe('tar fuzzer: damaged archives', function () {
  this.timeout(SECONDS * 1000 + 120000)
  let dir: string
  let img: string
  before(() => {
    dir = tmpDir('prism-tarfuzz-')
    img = newImage(dir, 32 * 1024 * 1024)
    edit(img, (ns) => {
      ns.mkdir('/t')
      ns.writeFile('/keep', Buffer.from('keep'))
    })
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it(`every mutated archive is imported or refused with one error, the image as before (seed ${SEED})`, () => {
    const rnd = mulberry32(SEED)
    const a = base()
    // The archive itself imports whole.
    edit(img, (ns, vol) => {
      importBuffer(vol, {fileset: 'root', path: '/t/base'}, a)
      expect(ns.readFile('/t/base/sparse').subarray(500000, 500004).toString('hex')).to.equal('09090909')
      expect(ns.stat('/t/base/etc/hard').nlink).to.equal(2)
    })
    const until = Date.now() + SECONDS * 1000
    let runs = 0
    let refused = 0
    while (Date.now() < until) {
      const m = mutate(a, rnd)
      const before = read(img, (ns) => snapshot(ns))
      const free = read(img, (_ns, vol) => vol.sb.freeBlocks)
      let ok = false
      try {
        edit(img, (_ns, vol) => { importBuffer(vol, {fileset: 'root', path: `/t/r${runs}`}, m, {}, 1 + Math.floor(rnd() * 3000)) })
        ok = true
      } catch (e) {
        if (!(e instanceof PrismError)) throw new Error(`run ${runs} (seed ${SEED}): not a PrismError: ${(e as Error).stack}`)
        expect(e.message.split('\n')).to.have.length(1)
        refused++
      }
      const after = read(img, (ns) => snapshot(ns))
      if (ok) {
        // Only the target changed.
        for (const k of Object.keys(before)) if (!k.startsWith(`/t/r${runs}`) && k !== '/t') expect(after[k], `run ${runs}: ${k}`).to.equal(before[k])
        for (const k of Object.keys(after)) if (!k.startsWith(`/t/r${runs}`) && k !== '/t') expect(before[k], `run ${runs}: ${k}`).to.equal(after[k])
      } else {
        expect(after, `run ${runs} (seed ${SEED})`).to.deep.equal(before)
        expect(read(img, (_ns, vol) => vol.sb.freeBlocks), `run ${runs}: space leaked`).to.equal(free)
      }
      runs++
      if (runs % 50 === 0) expect(fsckImage(img, {repair: false}).problems, `after run ${runs} (seed ${SEED})`).to.deep.equal([])
    }
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
    console.log(`      tar fuzzer: ${runs} archives, ${refused} refused, seed ${SEED}`)
    expect(runs).to.be.greaterThan(20)
  })

  it('a sample through the CLI: a documented exit code and at most one line per problem, never an internal error', () => {
    const rnd = mulberry32(SEED + 1)
    const a = base()
    for (let i = 0; i < 6; i++) {
      const m = mutate(a, rnd)
      const r = prism(['import', '-i', img, `root:/t/cli${i}`, '-'], {input: m})
      expect([0, 1], r.stderr).to.include(r.status)
      expect(r.stderr).to.not.match(/internal error/)
      for (const line of r.stderr.trim().split('\n').filter(Boolean)) expect(line).to.match(/^prism: /)
    }
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
  })
})
