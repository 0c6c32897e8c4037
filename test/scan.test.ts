// prism scan on real image files: ClamAV signature parsing (the supported subset, and clear
// refusals), the streaming body matcher against a whole-buffer reference (fast-check, random
// chunking), matches in an original and its clones with the right paths, each inode read
// exactly once (counters), --incremental after edits, renames, deletes and clone deletion,
// fsck of the results file, and the CLI (exit codes 0/1/2, --json, --exec). Test data and
// signatures are made at test time.
import {expect} from 'chai'
import {createHash, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import {clone} from '../src/clone/clone.js'
import {loadExtents} from '../src/fs/extents.js'
import {getFileset} from '../src/fs/filesets.js'
import {DT_DIR, FS_ACTIVE, FS_EXPANDING} from '../src/format/constants.js'
import {dirAdd} from '../src/fs/dir.js'
import {PrismError} from '../src/errors.js'
import {deleteFileset, namespace, withImage, withImageAsync} from '../src/fs/image.js'
import {fsckImage} from '../src/fsck/index.js'
import {Matcher, MIN_SCANNED_SIZE} from '../src/scan/matcher.js'
import {scan, type ScanEngine, type ScanResult} from '../src/scan/scan.js'
import {HashDb} from '../src/scan/hashdb.js'
import {loadSignatures, parseBodyLine, parseHashLine, type BodySig, type SignatureSet} from '../src/scan/signatures.js'
import {loadScanSets} from '../src/scan/store.js'
import {edit, newImage, prism, sha256File, tmpDir} from './helpers.js'

// An EICAR-style test string, assembled here so that no file of the repository holds it.
const EICAR = ['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-ANTIVIRUS', '-TEST-FILE!$H+H*'].join('')
const MARK = Buffer.from('PRISM-TEST-MARK-' + 'b0dy')

function sigFiles(dir: string, extraHash: Buffer[] = []): string[] {
  const hdb = path.join(dir, 'test.hdb')
  const eicarMd5 = createHash('md5').update(EICAR).digest('hex')
  const lines = [`${eicarMd5}:${EICAR.length}:Test.Eicar.Md5`]
  for (const [i, b] of extraHash.entries()) lines.push(`${createHash('sha256').update(b).digest('hex')}:${b.length}:Test.Hash.${i}`)
  fs.writeFileSync(hdb, lines.join('\n') + '\n')
  const ndb = path.join(dir, 'test.ndb')
  // MARK anywhere; "DEADBEEF ?? CAFE {2-6} F00D" anywhere; "PK" header at 0.
  fs.writeFileSync(ndb, [
    `Test.Mark:0:*:${MARK.toString('hex')}`,
    'Test.Jump:0:*:deadbeef??cafe{2-6}f00d',
    'Test.Zip.Head:0:0:504b0304',
  ].join('\n') + '\n')
  return [hdb, ndb]
}

async function scanImg(img: string, names: string[], engine: ScanEngine, opts: {incremental?: boolean} = {}): Promise<ScanResult> {
  return withImageAsync(img, {write: !!opts.incremental}, async (vol) => scan(vol, names, engine, opts))
}

function pathsOf(r: ScanResult): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const m of r.matches) for (const p of m.paths) out[p] = m.found
  return out
}

function expectClean(img: string): void {
  const r = fsckImage(img, {repair: false})
  expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
  expect(r.exitCode).to.equal(0)
}

/** A signature set of body signatures alone, for tests of the matcher. */
function setOf(bodies: BodySig[]): SignatureSet {
  return {hashes: new HashDb(), allow: new HashDb(), bodies, digest: Buffer.alloc(32), files: [], report: {used: {}, skipped: {}, allowed: 0, ignoreNames: 0, containers: []}}
}

// ---------------------------------------------------------------- parsing

describe('scan: signature files', () => {
  it('parses hash signatures and picks the digest by length', () => {
    expect(parseHashLine('44d88612fea8a8f36de82e1278abb02f:68:Eicar').algo).to.equal('md5')
    expect(parseHashLine(`${'a'.repeat(40)}:10:X`).algo).to.equal('sha1')
    const s = parseHashLine(`${'B'.repeat(64)}:*:Y:73`)
    expect(s).to.include({algo: 'sha256', size: null, hash: 'b'.repeat(64)})
  })

  it('parses body signatures into parts and jumps', () => {
    // As ClamAV: {n} below 128 is n '??' (no split); other jumps split the signature.
    const s = parseBodyLine('N:0:EOF-10,4:aabb??cc*dd{3}ee11{1-}ff11{-2}0102{200}0304{0}0506')
    expect(s.offset).to.deep.equal({kind: 'eof', back: 10, shift: 4})
    expect(s.parts.map((p) => p.bytes.toString('hex'))).to.deep.equal(['aabb00cc', 'dd000000ee11', 'ff11', '0102', '0304', '0506'])
    expect(s.parts[1].mask).to.deep.equal(Uint8Array.from([1, 0, 0, 0, 1, 1]))
    // As ClamAV: a jump's maximum of 0 means none ({0} is *).
    expect(s.gaps).to.deep.equal([{min: 0, max: Infinity}, {min: 1, max: Infinity}, {min: 0, max: 2}, {min: 200, max: 200}, {min: 0, max: Infinity}])
    expect(parseBodyLine('N:0:*:4142{3-0}4344').gaps).to.deep.equal([{min: 3, max: Infinity}])
    expect(s.parts[0].anchor.toString('hex')).to.equal('aabb')
    expect(parseBodyLine('N:*:0:{2}414243{1}').parts.map((p) => p.bytes.toString('hex'))).to.deep.equal(['000041424300'])
  })

  it('skips what it does not evaluate, counted per reason, and uses the rest (test/scan-databases.test.ts has more)', () => {
    const dir = tmpDir()
    try {
      const f = path.join(dir, 'mixed.ndb')
      fs.writeFileSync(f, ['# a comment', 'Good.One:0:*:aabbcc', 'X:1:*:aabbcc', 'X:0:*:aa(bb|cc)dd', 'X:0:*:aab?cc', 'X:0:EP+10:aabbcc',
        'X:0:*:aa{x}bb', 'X:0:*:????{200}aa', 'Good.Two:*:0:414243{1}', ''].join('\n'))
      const set = loadSignatures([f])
      expect(set.bodies.map((b) => b.name)).to.deep.equal(['Good.One', 'Good.Two'])
      expect(set.report.used).to.deep.equal({'.ndb': 2})
      expect(set.report.skipped).to.deep.equal({
        '.ndb target type 1 (PE)': 1, '.ndb alternatives (aa|bb)': 1, '.ndb nibble wildcards (a?, ?a)': 1,
        '.ndb executable-file offsets (EP, Sn, SL, SE, VI)': 1, '.ndb malformed': 1, '.ndb a part without fixed bytes': 1,
      })
      for (const [name, text, re] of [
        ['h.hdb', 'abc:12:X\n', /h\.hdb: not a ClamAV \.hdb database \(no line of it is a signature; line 1: hash must be/],
        ['e.ndb', '# only a comment\n', /e\.ndb: holds no signatures/],
        ['x.txt', 'Good:0:*:aabbcc\n', /x\.txt: not a ClamAV signature database \(unknown file type '\.txt'/],
        ['l.ldb', 'X;Target:0;0;aabbcc\n', /no usable signatures in .*l\.ldb: skipped 1: 1 \.ldb \(logical signatures\)/],
      ] as const) {
        fs.writeFileSync(path.join(dir, name), text)
        expect(() => loadSignatures([path.join(dir, name)]), name).to.throw(PrismError, re)
      }
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})

// ---------------------------------------------------------------- matcher

/** The whole-buffer reference: each signature as a regular expression over latin1. */
function reference(set: SignatureSet, data: Buffer): string[] {
  const s = data.toString('latin1')
  const found: string[] = []
  if (data.length < MIN_SCANNED_SIZE) return found // as ClamAV, which does not scan such files
  for (const sig of set.bodies) {
    const esc = (p: {bytes: Buffer, mask: Uint8Array}) => [...p.bytes].map((b, i) => (p.mask[i] ? `\\x${b.toString(16).padStart(2, '0')}` : '[\\s\\S]')).join('')
    let src = esc(sig.parts[0])
    sig.gaps.forEach((g, i) => { src += `[\\s\\S]{${g.min},${g.max === Infinity ? '' : g.max}}` + esc(sig.parts[i + 1]) })
    const re = new RegExp(src, 'y')
    let lo = 0
    let hi = s.length
    if (sig.offset.kind === 'abs') { lo = sig.offset.start; hi = lo + sig.offset.shift }
    if (sig.offset.kind === 'eof') {
      if (s.length < sig.offset.back) continue // as ClamAV: before the file's start is no offset, whatever the shift
      lo = s.length - sig.offset.back
      hi = lo + sig.offset.shift
    }
    let hit = false
    for (let i = Math.max(0, lo); i <= Math.min(hi, s.length) && !hit; i++) {
      re.lastIndex = i
      hit = re.test(s)
    }
    if (hit) found.push(sig.name)
  }
  return found
}

describe('scan: streaming body matcher', () => {
  it('finds what a whole-buffer matcher finds, however the content is chunked', () => {
    const byte = fc.integer({min: 0, max: 3}).map((b) => [0x61, 0x62, 0x63, 0x00][b])
    const part = fc.array(fc.oneof({weight: 4, arbitrary: byte}, {weight: 1, arbitrary: fc.constant(-1)}), {minLength: 1, maxLength: 5})
      .filter((p) => p.some((b) => b >= 0))
    const gap = fc.oneof(
      fc.constant('*'),
      fc.tuple(fc.nat(4), fc.nat(4)).map(([a, b]) => `{${a}-${a + b}}`),
      fc.nat(4).map((a) => `{${a}}`), fc.nat(4).map((a) => `{${a}-}`), fc.nat(4).map((a) => `{-${a}}`),
    )
    const hexOf = (p: number[]) => p.map((b) => (b < 0 ? '??' : b.toString(16).padStart(2, '0'))).join('')
    const sig = fc.tuple(part, fc.array(fc.tuple(gap, part), {maxLength: 2}),
      fc.oneof(fc.constant('*'), fc.nat(20).map(String), fc.tuple(fc.nat(20), fc.nat(10)).map(([a, b]) => `${a},${b}`), fc.nat(20).map((n) => `EOF-${n}`), fc.tuple(fc.nat(20), fc.nat(6)).map(([a, b]) => `EOF-${a},${b}`)))
      .map(([p0, rest, off]) => `${off}:${hexOf(p0)}${rest.map(([g, p]) => g + hexOf(p)).join('')}`)
    fc.assert(fc.property(
      fc.array(sig, {minLength: 1, maxLength: 6}),
      fc.array(byte, {maxLength: 120}),
      fc.array(fc.integer({min: 1, max: 9}), {minLength: 1, maxLength: 8}),
      (sigs, bytes, cuts) => {
        const bodies = sigs.map((t, i) => { const [off, hex] = t.split(/:(?=[^:]*$)/); return parseBodyLine(`S${i}:0:${off}:${hex}`, {lengthLimits: false}) })
        const set = setOf(bodies)
        const data = Buffer.from(bytes)
        const m = new Matcher(set).start(data.length)
        let o = 0
        for (let k = 0; o < data.length; k++) {
          const n = cuts[k % cuts.length]
          // The matcher gets a reused buffer, as streamData gives it.
          const scratch = Buffer.alloc(n)
          data.copy(scratch, 0, o, o + n)
          m.feed(scratch.subarray(0, Math.min(n, data.length - o)))
          scratch.fill(0xee)
          o += n
        }
        expect([...m.finish()].sort()).to.deep.equal(reference(set, data).sort())
      },
    ), {numRuns: 400})
  })

  it('finds strings cut from the content itself, many at once (the one-pass multi-anchor search)', () => {
    fc.assert(fc.property(
      fc.uint8Array({minLength: 1, maxLength: 200}).map((a) => Buffer.from(a.map((b) => b & 3))),
      fc.array(fc.tuple(fc.nat(), fc.integer({min: 2, max: 7}), fc.boolean()), {minLength: 2, maxLength: 8}),
      fc.integer({min: 1, max: 50}),
      (data, cuts, chunk) => {
        const bodies = cuts.map(([at, len, jump], i) => {
          const a = at % data.length
          const piece = data.subarray(a, a + len)
          const hex = piece.length >= 2 ? piece.toString('hex') : '0102'
          return parseBodyLine(`C${i}:0:*:${jump && hex.length >= 4 ? hex.slice(0, 2) + '{0-3}' + hex.slice(2) : hex}`, {lengthLimits: false})
        })
        const set = setOf(bodies)
        const m = new Matcher(set).start(data.length)
        for (let o = 0; o < data.length; o += chunk) m.feed(Buffer.from(data.subarray(o, o + chunk)))
        expect([...m.finish()].sort()).to.deep.equal(reference(set, data).sort())
      },
    ), {numRuns: 500})
  })
})

// ---------------------------------------------------------------- scanning images

describe('scan: filesets and clones', function () {
  this.timeout(300000)
  let dir: string
  let img: string
  let engine: ScanEngine
  const rnd = randomBytes(3 << 20)
  beforeEach(() => {
    dir = tmpDir()
    img = newImage(dir, 256 << 20)
    engine = {kind: 'signatures', set: loadSignatures(sigFiles(dir, [rnd.subarray(0, 5000)]))}
    edit(img, (ns, vol) => {
      ns.mkdir('/bin')
      ns.mkdir('/home/alice', {parents: true})
      ns.mkdir('/var/lib', {parents: true})
      for (let i = 0; i < 40; i++) ns.writeFile(`/bin/tool${i}`, randomBytes(100 + i * 997))
      ns.writeFile('/home/alice/eicar.com', Buffer.from(EICAR))
      // the mark straddles a 1 MiB boundary of a 3 MiB random file
      const big = Buffer.from(rnd)
      MARK.copy(big, (1 << 20) - 5)
      ns.writeFile('/var/lib/big.bin', big)
      const jump = Buffer.concat([randomBytes(5000), Buffer.from('deadbeef11cafe0000000000f00d', 'hex'), randomBytes(100)])
      ns.writeFile('/var/lib/jump.bin', jump)
      ns.writeFile('/var/lib/archive.zip', Buffer.concat([Buffer.from('504b0304', 'hex'), randomBytes(300)]))
      ns.writeFile('/var/lib/not-zip', Buffer.concat([Buffer.from('00504b0304', 'hex'), randomBytes(300)]))
      ns.writeFile('/var/lib/hashed', rnd.subarray(0, 5000))
      ns.writeFile('/var/lib/near-miss', Buffer.concat([Buffer.from('deadbeef11cafe00000000000000f00d', 'hex')]))
      ns.link('/home/alice/eicar.com', '/home/alice/eicar-link')
      ns.symlink('/home/alice/eicar.com', '/eicar-symlink')
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c1'})
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c2'})
    })
  })
  afterEach(function () {
    if (this.currentTest?.state === 'passed') expectClean(img)
    fs.rmSync(dir, {recursive: true, force: true})
  })

  const infected = ['/home/alice/eicar.com', '/home/alice/eicar-link', '/var/lib/big.bin', '/var/lib/jump.bin', '/var/lib/archive.zip', '/var/lib/hashed']

  it('finds every match in the original and in every clone, with the paths of each fileset', async () => {
    const r = await scanImg(img, ['root', 'c1', 'c2'], engine)
    const want: Record<string, string[]> = {}
    for (const f of ['root', 'c1', 'c2']) {
      want[`${f}:/home/alice/eicar.com`] = ['Test.Eicar.Md5']
      want[`${f}:/home/alice/eicar-link`] = ['Test.Eicar.Md5']
      want[`${f}:/var/lib/big.bin`] = ['Test.Mark']
      want[`${f}:/var/lib/jump.bin`] = ['Test.Jump']
      want[`${f}:/var/lib/archive.zip`] = ['Test.Zip.Head']
      want[`${f}:/var/lib/hashed`] = ['Test.Hash.0']
    }
    expect(pathsOf(r)).to.deep.equal(want)
    expect(r.errors).to.deep.equal([])
    // The hard-linked file was copied per clone (never shared), the rest is one inode each.
    const eicar = r.matches.filter((m) => m.found[0] === 'Test.Eicar.Md5')
    expect(eicar).to.have.length(3)
    for (const m of eicar) expect(m.paths).to.have.length(2)
    const big = r.matches.find((m) => m.found[0] === 'Test.Mark')!
    expect(big.paths).to.deep.equal(['c1:/var/lib/big.bin', 'c2:/var/lib/big.bin', 'root:/var/lib/big.bin'])
  })

  it('reads each inode exactly once, however many filesets and names share it', async () => {
    const one = await scanImg(img, ['root'], engine)
    const three = await scanImg(img, ['root', 'c1', 'c2'], engine)
    expect(three.stats.names).to.equal(3 * one.stats.names)
    // Shared inodes: only the hard-linked file has a private copy per clone (2 more inodes).
    expect(three.stats.inodes).to.equal(one.stats.inodes + 2)
    expect(three.stats.inodesRead).to.equal(three.stats.inodes)
    expect([...three.stats.readsPerInode.values()].every((n) => n === 1)).to.equal(true)
    expect(three.stats.readsPerInode.size).to.equal(three.stats.inodes)
    expect(three.stats.bytesRead).to.equal(three.stats.bytesTotal)
    expect(three.stats.bytesRead).to.equal(one.stats.bytesRead + 2 * EICAR.length)
  })

  it('finds a file modified in one clone only there', async () => {
    edit(img, (ns) => {
      ns.writeFile('/bin/tool3', Buffer.concat([randomBytes(777), MARK, randomBytes(10)]))
      ns.writeFile('/var/lib/jump.bin', Buffer.from('clean now'))
    }, 'c2')
    const r = pathsOf(await scanImg(img, ['root', 'c1', 'c2'], engine))
    expect(r['c2:/bin/tool3']).to.deep.equal(['Test.Mark'])
    expect(r['root:/bin/tool3']).to.equal(undefined)
    expect(r['c1:/bin/tool3']).to.equal(undefined)
    expect(r['c2:/var/lib/jump.bin']).to.equal(undefined)
    expect(r['root:/var/lib/jump.bin']).to.deep.equal(['Test.Jump'])
    expect(r['c1:/var/lib/jump.bin']).to.deep.equal(['Test.Jump'])
  })

  it('rescans incrementally only what changed: edits, renames, deletes, clone deletion', async () => {
    const all = ['root', 'c1', 'c2']
    const first = await scanImg(img, all, engine, {incremental: true})
    expect(first.stats.cached).to.equal(0)
    expectClean(img)
    const again = await scanImg(img, all, engine, {incremental: true})
    expect(again.stats.inodesRead).to.equal(0)
    expect(again.stats.cached).to.equal(first.stats.inodes)
    expect(pathsOf(again)).to.deep.equal(pathsOf(first))
    expect(again.matches.every((m) => m.cached)).to.equal(true)

    // An edit in a clone: that file is copied (new inode) and read; nothing else is.
    edit(img, (ns) => ns.writeFile('/bin/tool7', Buffer.concat([MARK, Buffer.from('x')])), 'c1')
    // An edit of a file only this fileset holds: same inode, new data_version.
    edit(img, (ns) => ns.writeFile('/home/alice/eicar.com', Buffer.from('cured')), 'c2')
    const r1 = await scanImg(img, all, engine, {incremental: true})
    expect(r1.stats.inodesRead).to.equal(2)
    const p1 = pathsOf(r1)
    expect(p1['c1:/bin/tool7']).to.deep.equal(['Test.Mark'])
    expect(p1['root:/bin/tool7']).to.equal(undefined)
    expect(p1['c2:/home/alice/eicar.com']).to.equal(undefined)
    expect(p1['c2:/home/alice/eicar-link']).to.equal(undefined)
    expect(p1['root:/home/alice/eicar.com']).to.deep.equal(['Test.Eicar.Md5'])

    // Renames and deletes read nothing, and the paths follow.
    edit(img, (ns) => {
      ns.rename('/var/lib/big.bin', '/big-renamed.bin')
      ns.unlink('/var/lib/archive.zip')
    }, 'root')
    const r2 = await scanImg(img, all, engine, {incremental: true})
    expect(r2.stats.inodesRead).to.equal(0)
    const p2 = pathsOf(r2)
    expect(p2['root:/big-renamed.bin']).to.deep.equal(['Test.Mark'])
    expect(p2['root:/var/lib/big.bin']).to.equal(undefined)
    expect(p2['root:/var/lib/archive.zip']).to.equal(undefined)
    expect(p2['c1:/var/lib/archive.zip']).to.deep.equal(['Test.Zip.Head'])

    // Deleting a clone: its private inodes go; new files may reuse their numbers, and must
    // be read (a reused number has a new generation), never answered from old results.
    const c1Tool7 = withImage(img, {write: false}, (vol) => namespace(vol, 'c1').stat('/bin/tool7').ino)
    withImage(img, {write: true}, (vol) => deleteFileset(vol, 'c1'))
    const reused = edit(img, (ns) => {
      const out: number[] = []
      for (let i = 0; i < 30; i++) out.push(ns.writeFile(`/new${i}`, Buffer.from(`clean ${i}`)).ino)
      return out
    }, 'c2')
    expect(reused).to.include(c1Tool7)
    const r3 = await scanImg(img, ['root', 'c2'], engine, {incremental: true})
    expect(r3.stats.inodesRead).to.equal(30)
    expect(r3.stats.readsPerInode.get(c1Tool7)).to.equal(1)
    expect(Object.keys(pathsOf(r3)).filter((p) => p.startsWith('c2:/new'))).to.deep.equal([])
    // The stored results hold no entry for an inode that no longer exists as it was.
    withImage(img, {write: false}, (vol) => {
      const sets = loadScanSets(vol)
      expect(sets).to.have.length(1)
      const e = sets[0].entries.at(sets[0].entries.indexOf(c1Tool7))
      expect(e.found).to.equal('')
      expect(e.generation).to.equal(namespace(vol, 'c2').stat(`/new${reused.indexOf(c1Tool7)}`).generation)
    })
    // A different signature set has its own results.
    const other = {kind: 'signatures' as const, set: loadSignatures([sigFiles(dir)[1]])}
    const r4 = await scanImg(img, ['root'], other, {incremental: true})
    expect(r4.stats.cached).to.equal(0)
    expect(withImage(img, {write: false}, (vol) => loadScanSets(vol).length)).to.equal(2)
  })

  it('refuses a directory loop in a damaged image instead of walking it forever', async () => {
    edit(img, (ns, vol) => {
      // What no operation can make: /var/lib/again names /var again.
      dirAdd(vol, ns.resolve('/var/lib'), ns.resolve('/var').ino, DT_DIR, Buffer.from('again'))
    }, 'c2')
    for (const incremental of [false, true]) {
      try {
        await scanImg(img, ['c2'], engine, {incremental})
        expect.fail('scanned a tree with a loop')
      } catch (e) {
        expect(e).to.be.instanceOf(PrismError)
        expect((e as PrismError).code).to.equal('EBADIMAGE')
        expect((e as Error).message).to.match(/named twice/)
      }
    }
    fs.rmSync(img) // damaged on purpose: the afterEach fsck has nothing to check
    img = newImage(dir, 64 << 20)
  })

  it('fsck accounts for the results file, and drops it when damaged', async () => {
    await scanImg(img, ['root', 'c1'], engine, {incremental: true})
    expectClean(img)
    // Damage its content: the first data block of the results inode.
    const block = withImage(img, {write: false}, (vol) => {
      const ino = vol.sb.scanIno
      expect(ino).to.be.greaterThan(0)
      return loadExtents(vol, vol.iget(ino)).toArray()[0].p
    })
    expect(block).to.be.greaterThan(0)
    const fd = fs.openSync(img, 'r+')
    fs.writeSync(fd, Buffer.from('garbage!'), 0, 8, block * 4096 + 100)
    fs.closeSync(fd)
    const bad = fsckImage(img, {repair: false})
    expect(bad.problems.map((p) => p.code)).to.deep.equal(['SCAN_RESULTS_BAD'])
    expect(bad.exitCode).to.equal(4)
    const fixed = fsckImage(img, {repair: true})
    expect(fixed.exitCode).to.equal(1)
    expectClean(img)
    expect(withImage(img, {write: false}, (vol) => vol.sb.scanIno)).to.equal(0)
    const r = await scanImg(img, ['root'], engine, {incremental: true})
    expect(r.stats.cached).to.equal(0)
    expect(r.stats.inodesRead).to.equal(r.stats.inodes)
  })
})

// ---------------------------------------------------------------- the CLI

describe('scan: command line', function () {
  this.timeout(300000)
  let dir: string
  let img: string
  let sigs: string[]
  before(() => {
    dir = tmpDir()
    img = newImage(dir, 128 << 20)
    sigs = sigFiles(dir)
    edit(img, (ns, vol) => {
      ns.mkdir('/etc')
      ns.writeFile('/etc/clean', Buffer.from('nothing here\n'))
      ns.writeFile('/etc/big', randomBytes(2 << 20))
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'web'})
    })
    edit(img, (ns) => ns.writeFile('/etc/payload', Buffer.concat([randomBytes(5000), MARK])), 'web')
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  const run = (...args: string[]) => prism([...args, '-i', img], {cwd: dir})

  it('exits 0 when nothing is found and 1 when something is, as clamscan', () => {
    const clean = run('scan', 'root', '--signatures', sigs[0], '--signatures', sigs[1])
    expect(clean.status, clean.stderr).to.equal(0)
    expect(clean.stdout).to.match(/0 infected/)
    const found = run('scan', '--all', '-s', sigs[0], '-s', sigs[1])
    expect(found.status, found.stderr).to.equal(1)
    expect(found.stdout).to.include('web:/etc/payload: Test.Mark FOUND')
    const json = JSON.parse(run('scan', '--all', '-s', sigs[1], '--json').stdout)
    expect(json.matches).to.have.length(1)
    expect(json.matches[0].paths).to.deep.equal(['web:/etc/payload'])
    expect(json.stats.inodesRead).to.equal(json.stats.inodes)
    expect(json.stats.names).to.equal(5)
  })

  it('refuses bad input with one line and exit 2, leaving the image unchanged', () => {
    const before = sha256File(img)
    const bad = path.join(dir, 'bad.hdb')
    fs.writeFileSync(bad, 'not a signature\nnor this\n')
    for (const args of [['scan', 'root', '-s', bad], ['scan', 'root'], ['scan', 'nosuch', '-s', sigs[1]], ['scan', 'root', '-s', sigs[1], '--exec', 'true'], ['scan', '-s', sigs[1]]]) {
      const r = run(...args)
      expect(r.status, args.join(' ') + r.stderr).to.equal(2)
      expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1)
      expect(r.stderr).to.match(/^prism: /)
    }
    expect(run('scan', 'root', '-s', bad).stderr).to.include('bad.hdb: not a ClamAV .hdb database (no line of it is a signature; line 1: expected hash:size:name')
    expect(sha256File(img)).to.equal(before)
  })

  it('--exec runs the command once per unique file with the content on stdin', () => {
    const log = path.join(dir, 'exec.log')
    const cmd = `echo x >> ${log}; if grep -q ${MARK.toString()}; then echo Exec.Found.Mark; exit 1; fi; exit 0`
    const r = run('scan', 'root', 'web', '--exec', cmd, '--json')
    expect(r.status, r.stderr).to.equal(1)
    const j = JSON.parse(r.stdout)
    expect(j.matches).to.deep.equal([{ino: j.matches[0].ino, found: ['Exec.Found.Mark'], paths: ['web:/etc/payload'], cached: false}])
    // root has 2 files, web shares them and adds one: 3 unique inodes, 3 runs.
    expect(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean)).to.have.length(3)
    expect(j.stats.inodesRead).to.equal(3)
    const failing = run('scan', 'root', '--exec', 'exit 3')
    expect(failing.status).to.equal(2)
    expect(failing.stderr).to.match(/exited with 3/)
  })

  it('--incremental through the CLI remembers results in the image', () => {
    const a = JSON.parse(run('scan', '--all', '-s', sigs[1], '--incremental', '--json').stdout)
    const b = JSON.parse(run('scan', '--all', '-s', sigs[1], '--incremental', '--json').stdout)
    expect(a.stats.inodesRead).to.equal(3)
    expect(b.stats.inodesRead).to.equal(0)
    expect(b.matches[0].paths).to.deep.equal(['web:/etc/payload'])
    expectClean(img)
  })
})

describe('scan: a clone still expanding', function () {
  this.timeout(120000)
  it('expands it first and scans what its users see (library and CLI)', async () => {
    const dir = tmpDir()
    try {
      const img = newImage(dir, 64 << 20)
      const [, ndb] = sigFiles(dir)
      edit(img, (ns, vol) => {
        ns.mkdir('/a/b', {parents: true})
        ns.writeFile('/a/b/x', Buffer.concat([Buffer.from('head '), MARK]))
        ns.writeFile('/y', Buffer.from('clean'))
        clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'async'})
        clone(vol, {fileset: 'root', path: '/'}, {fileset: 'd'}, {mode: 'async'})
      })
      const state = (n: string) => withImage(img, {write: false}, (vol) => getFileset(vol, n).state)
      expect(state('c')).to.equal(FS_EXPANDING)
      const r = await scanImg(img, ['c'], {kind: 'signatures', set: loadSignatures([ndb])}, {incremental: true})
      expect(pathsOf(r)).to.deep.equal({'c:/a/b/x': ['Test.Mark']})
      expect(state('c')).to.equal(FS_ACTIVE)
      // Through the CLI, without --incremental: the image is opened for writing to expand.
      expect(state('d')).to.equal(FS_EXPANDING)
      const cli = prism(['scan', 'd', '-s', ndb, '--json', '-i', img])
      expect(cli.status, cli.stderr).to.equal(1)
      expect(JSON.parse(cli.stdout).matches[0].paths).to.deep.equal(['d:/a/b/x'])
      expect(state('d')).to.equal(FS_ACTIVE)
      expectClean(img)
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
