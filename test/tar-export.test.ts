// prism export on real image files, read back by GNU tar, bsdtar and prism import: times are
// exact (a pax header carries what the ustar header cannot: nanoseconds, an access time other
// than the modification time, times before 1970 or past 2242; a member that needs none gets
// none and still reads back identically), and the file data, which the export reads from the
// image straight into a buffer it reuses (a plain file) or into new memory each time (a
// stream), is never mixed up: files of every size around the block, the header and the chunk
// boundaries, above 1 MiB, inline and with holes, in every format, compared byte for byte
// with what GNU tar extracts; and the reused and the new-memory exports are byte-identical.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import {PaxBody, TAR_BLOCK, decodeHeader, gnuPaxTime, isZeroBlock, paxRecord, parsePax, writeHeader, type HeaderFields} from '../src/tar/codec.js'
import {CHUNK, exportTar, type ExportOptions} from '../src/tar/export.js'
import type {Namespace} from '../src/fs/namespace.js'
import {BIN, edit, newImage, prism, read, tmpDir} from './helpers.js'
import {has, importBuffer} from './tar-lib.js'

function sh(cmd: string, args: string[], input?: Buffer): {stdout: Buffer, stderr: string, status: number} {
  const r = spawnSync(cmd, args, {input, maxBuffer: 1 << 30})
  return {stdout: r.stdout, stderr: r.stderr.toString(), status: r.status ?? -1}
}

/** The members of an archive: name, type flag and the records of its pax header (if it has one). */
function members(archive: Buffer): Array<{name: string, type: string, pax: Record<string, string> | null, paxBytes: number}> {
  const out: Array<{name: string, type: string, pax: Record<string, string> | null, paxBytes: number}> = []
  let pax: Record<string, string> | null = null
  let paxBytes = 0
  for (let o = 0; o + TAR_BLOCK <= archive.length && !isZeroBlock(archive, o);) {
    const h = decodeHeader(archive, o)
    const body = archive.subarray(o + TAR_BLOCK, o + TAR_BLOCK + h.size)
    o += TAR_BLOCK + Math.ceil(h.size / TAR_BLOCK) * TAR_BLOCK
    if (h.typeflag === 0x78) {
      pax = Object.fromEntries(parsePax(body).map((r) => [r.key, r.value.toString('latin1')]))
      paxBytes = h.size
      continue
    }
    // A sparse 1.0 member is named GNUSparseFile.0/NAME in its header: its real name is in the records.
    out.push({name: pax?.['GNU.sparse.name'] ?? pax?.path ?? h.name.toString('latin1'), type: String.fromCharCode(h.typeflag), pax, paxBytes})
    pax = null
    paxBytes = 0
  }
  return out
}

/** Exits 0 and says nothing on stderr: GNU tar, and bsdtar where installed, list the archive. */
function readsCleanly(file: string): void {
  const g = sh('tar', ['--xattrs', '--acls', '-tvf', file])
  expect(g.stderr, 'GNU tar').to.equal('')
  expect(g.status).to.equal(0)
  if (has('bsdtar')) {
    const b = sh('bsdtar', ['-tvf', file])
    expect(b.stderr, 'bsdtar').to.equal('')
    expect(b.status).to.equal(0)
  } else console.log('      skipped: bsdtar listing (apt-get install -y libarchive-tools)')
}

describe('tar export: the codec writes what it reads', () => {
  const bytes = (max: number) => fc.uint8Array({minLength: 0, maxLength: max}).map((a) => Buffer.from(a))
  it('property: a header written in place, over any old bytes, decodes to its fields with a valid checksum', () => {
    fc.assert(fc.property(fc.record({
      name: bytes(100), linkname: bytes(100), uname: bytes(31), gname: bytes(31), prefix: bytes(155),
      mode: fc.integer({min: 0, max: 0o7777}), uid: fc.integer({min: 0, max: 0o7777777}), gid: fc.integer({min: 0, max: 0o7777777}),
      size: fc.integer({min: 0, max: 0o77777777777}), mtime: fc.integer({min: 0, max: 0o77777777777}), typeflag: fc.integer({min: 0x30, max: 0x37}),
      devmajor: fc.integer({min: 0, max: 0o7777777}), devminor: fc.integer({min: 0, max: 0o7777777}),
    }), fc.integer({min: 0, max: 255}), (f: HeaderFields, old) => {
      const b = Buffer.alloc(3 * TAR_BLOCK, old)
      writeHeader(b, TAR_BLOCK, f, 'ustar')
      expect(b[TAR_BLOCK - 1]).to.equal(old)
      expect(b[2 * TAR_BLOCK]).to.equal(old)
      const h = decodeHeader(b, TAR_BLOCK) // checks the checksum
      const cut = (x: Buffer) => x.subarray(0, x.indexOf(0) < 0 ? x.length : x.indexOf(0))
      expect(h.name.equals(f.prefix!.length && f.prefix![0] !== 0 ? Buffer.concat([cut(f.prefix!), Buffer.from('/'), cut(f.name)]) : cut(f.name))).to.equal(true)
      expect(h.linkname.equals(cut(f.linkname!))).to.equal(true)
      expect([h.mode, h.uid, h.gid, h.size, h.mtime, h.typeflag, h.devmajor, h.devminor]).to.deep.equal([f.mode, f.uid, f.gid, f.size, f.mtime, f.typeflag, f.devmajor, f.devminor])
    }), {numRuns: 500})
  })

  it('property: a pax body built by PaxBody is the records paxRecord makes, and parses back', () => {
    const key = fc.stringMatching(/^[A-Za-z][A-Za-z.%=\x80-\xff]{0,40}$/).filter((k) => !k.includes('='))
    const value = fc.oneof(fc.stringMatching(/^[ -~]{0,300}$/), fc.string({unit: 'binary', maxLength: 40}), bytes(2000), fc.record({s: fc.integer({min: -1e12, max: 1e12}), ns: fc.integer({min: 0, max: 999_999_999})}).map(gnuPaxTime))
    fc.assert(fc.property(fc.array(fc.tuple(key, value), {maxLength: 12}), fc.integer({min: 0, max: 64}), (recs, at) => {
      const pax = new PaxBody()
      for (const [k, v] of recs) pax.add(k, v)
      const want = Buffer.concat(recs.map(([k, v]) => paxRecord(k, v)))
      expect(pax.bytes).to.equal(want.length)
      expect(pax.count).to.equal(recs.length)
      const b = Buffer.alloc(at + pax.bytes + 8, 0xee)
      expect(pax.write(b, at)).to.equal(pax.bytes)
      expect(b.subarray(at, at + pax.bytes).equals(want)).to.equal(true)
      expect(b[at + pax.bytes]).to.equal(0xee)
      expect(parsePax(want).map((r) => r.key)).to.deep.equal(recs.map(([k]) => k))
    }), {numRuns: 300})
  })
})

describe('tar export: times are exact, with a pax header only where one is needed', function () {
  this.timeout(180000)
  let dir: string
  let img: string
  const T = (s: number, ns = 0) => ({s, ns})
  // path -> [atime, mtime] (directories are set after their entries are made)
  const times: Record<string, [{s: number, ns: number}, {s: number, ns: number}]> = {
    '/t/nanos': [T(1700000001, 5), T(1700000000, 123456789)],
    '/t/whole': [T(1600000000), T(1600000000)],
    '/t/whole-other-atime': [T(1600000500), T(1600000000)],
    '/t/whole-atime-nanos': [T(1600000000, 1), T(1600000000)],
    '/t/mtime-nanos-only': [T(1600000000, 999999999), T(1600000000, 999999999)],
    '/t/before-1970': [T(-86400, 250), T(-1)],
    '/t/after-2242': [T(8589934592 + 10), T(8589934592 + 10)],
    '/t/big': [T(1650000000), T(1650000000, 42)],
    '/t/link': [T(1600000000), T(1600000000)],
    '/t/link-nanos': [T(1600000000, 7), T(1600000000, 7)],
    '/t/fifo': [T(1600000000), T(1600000000)],
    '/t/null': [T(1500000000, 10), T(1500000000, 10)],
    '/t/hard-a': [T(1600000000), T(1600000000)],
    '/t/d/inner': [T(1600000000), T(1600000000)],
    '/t/d': [T(1600000000), T(1600000000)],
    '/t/dn': [T(1600000001, 100), T(1600000000, 300)],
    '/t': [T(1600000000), T(1600000000)],
  }
  before(function () {
    if (!has('tar')) {
      console.log('      skipped: GNU tar missing')
      this.skip()
    }
    dir = tmpDir('prism-tarx-')
    img = newImage(dir, 256 << 20)
    edit(img, (ns) => {
      for (const d of ['/t', '/t/d', '/t/dn']) ns.mkdir(d)
      for (const p of ['/t/nanos', '/t/whole', '/t/whole-other-atime', '/t/whole-atime-nanos', '/t/mtime-nanos-only', '/t/before-1970', '/t/after-2242', '/t/d/inner', '/t/hard-a']) {
        ns.writeFile(p, Buffer.from(`content of ${p}\n`))
      }
      ns.writeFile('/t/big', Buffer.alloc(3 * 1024 * 1024 + 17, 0x5a))
      ns.symlink('whole', '/t/link')
      ns.symlink('nanos', '/t/link-nanos')
      ns.mknod('/t/fifo', 0o010644)
      ns.mknod('/t/null', 0o020666, {major: 1, minor: 3})
      ns.link('/t/hard-a', '/t/d/hard-b')
      // Children first: making an entry changes its directory's times.
      for (const [p, [a, m]] of Object.entries(times)) ns.setTimes(ns.resolve(p, false), a, m)
    })
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  function timesOf(ns: Namespace, base: string): Record<string, string> {
    const out: Record<string, string> = {}
    for (const p of [...Object.keys(times), '/t/d/hard-b']) {
      const st = ns.stat((base + p.slice(2)) || '/', false)
      out[p] = `${st.type} ${st.perm.toString(8)} ${st.uid}:${st.gid} a=${st.atime.s}.${st.atime.ns} m=${st.mtime.s}.${st.mtime.ns} n=${st.nlink} ${st.rdev ? `${st.rdev.major},${st.rdev.minor}` : ''} ${st.target ?? ''}`
    }
    return out
  }

  it('an export read back by prism import has every atime and mtime to the nanosecond; GNU tar and bsdtar read it without a word', () => {
    const want = read(img, (ns) => timesOf(ns, '/t'))
    // To a file (the export reuses its buffer) and to standard output (new memory each chunk).
    const file = path.join(dir, 'times.tar')
    const r = prism(['export', '-i', img, 'root:/t', file])
    expect(r.stderr).to.equal('')
    expect(r.status).to.equal(0)
    const piped = spawnSync(process.execPath, [BIN, 'export', '-i', img, 'root:/t', '-'], {maxBuffer: 1 << 28, env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
    expect(piped.status, piped.stderr.toString()).to.equal(0)
    expect(piped.stdout.equals(fs.readFileSync(file)), 'the file and the stream hold the same bytes').to.equal(true)
    readsCleanly(file)
    for (const [i, source] of [file, '-'].entries()) {
      const back = prism(['import', '-i', img, '--create', `back${i}`, source], {input: source === '-' ? piped.stdout : undefined})
      expect(back.status, back.stderr).to.equal(0)
      expect(read(img, (ns) => timesOf(ns, ''), `back${i}`)).to.deep.equal(want)
    }
    // GNU tar restores the modification times to the nanosecond, before 1970 and after 2242 too
    // (of which it would warn: "implausibly old", "in the future").
    const x = path.join(dir, 'x')
    fs.mkdirSync(x)
    const t = sh('tar', ['--warning=no-timestamp', '-xpf', file, '-C', x])
    expect(t.stderr).to.equal('')
    for (const p of ['nanos', 'whole', 'mtime-nanos-only', 'before-1970', 'after-2242', 'big', 'dn']) {
      const m = times[`/t/${p}`][1]
      expect(fs.lstatSync(path.join(x, p), {bigint: true}).mtimeNs, p).to.equal(BigInt(m.s) * 1_000_000_000n + BigInt(m.ns))
    }
  })

  it('writes a pax header exactly where the ustar header cannot hold a time, and the change time only with it', () => {
    const file = path.join(dir, 'times.tar')
    if (!fs.existsSync(file)) expect(prism(['export', '-i', img, 'root:/t', file]).status).to.equal(0)
    const got = Object.fromEntries(members(fs.readFileSync(file)).map((m) => [m.name, m]))
    const recs = (name: string) => Object.keys(got[name]?.pax ?? {}).sort().join(',')
    // Whole seconds, the access time the modification time: a plain ustar header, of every type.
    for (const n of ['./whole', './link', './fifo', './hard-a', './d/hard-b', './d/inner', './d/', './']) expect(recs(n), n).to.equal('')
    expect(got['./hard-a'].type, 'the second name of a file (./d/hard-b comes first)').to.equal('1')
    expect(recs('./nanos')).to.equal('atime,ctime,mtime')
    expect(got['./nanos'].pax!.mtime).to.equal('1700000000.123456789')
    expect(got['./nanos'].pax!.atime).to.equal('1700000001.000000005')
    expect(recs('./whole-other-atime')).to.equal('atime,ctime')
    expect(recs('./whole-atime-nanos')).to.equal('atime,ctime')
    expect(recs('./mtime-nanos-only')).to.equal('ctime,mtime')
    expect(recs('./before-1970')).to.equal('atime,ctime,mtime')
    expect(got['./before-1970'].pax!.mtime).to.equal('-1')
    expect(got['./before-1970'].pax!.atime).to.equal('-86399.99999975')
    expect(recs('./after-2242')).to.equal('ctime,mtime')
    expect(recs('./link-nanos')).to.equal('ctime,mtime')
    expect(recs('./null')).to.equal('ctime,mtime')
    expect(recs('./dn/')).to.equal('atime,ctime,mtime')
    // --mtime: no access or change times at all, and a header only for what else needs one.
    const fixed = path.join(dir, 'fixed.tar')
    expect(prism(['export', '-i', img, 'root:/t', fixed, '--mtime', '@1600000000']).status).to.equal(0)
    for (const m of members(fs.readFileSync(fixed))) expect(m.pax, m.name).to.equal(null)
    const frac = path.join(dir, 'frac.tar')
    expect(prism(['export', '-i', img, 'root:/t', frac, '--mtime', '@1600000000.5']).status).to.equal(0)
    for (const m of members(fs.readFileSync(frac))) expect(Object.keys(m.pax ?? {}), m.name).to.deep.equal(['mtime'])
  })
})

/** Seeded bytes that differ from file to file and from offset to offset (a stale buffer shows). */
function content(seed: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    b[i] = x & 0xff
  }
  return b
}

const KiB = 1024
const MiB = 1024 * KiB
/** Sizes around the inline limit, the 512-byte header, the 4 KiB block and the chunk the export fills, and large ones. */
const SIZES = [0, 1, 100, 139, 140, 141, 511, 512, 513, 4095, 4096, 4097, 8191, CHUNK - 4096, CHUNK - 512, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK + 4096,
  3 * CHUNK + 700, MiB - 1, MiB, MiB + 1, 3 * MiB + 17, 5 * MiB - 100]

/** A file of the test trees: its size, and the holes it has (offset, length) on top of its data. */
interface Spec {
  name: string
  size: number
  holes: Array<[number, number]>
  /** an attribute value of this many bytes (user.big), if any: a pax header that may span chunks */
  attr?: number
}

/** Writes the specs into the image under `/` and on the host under `host` (the same bytes, holes as zeros). */
function makeTree(ns: Namespace, host: string, specs: Spec[]): void {
  specs.forEach((s, i) => {
    const data = content(i + 1, s.size)
    for (const [off, len] of s.holes) data.fill(0, off, Math.min(s.size, off + len))
    const dirName = path.dirname(s.name)
    if (dirName !== '.') {
      ns.mkdir('/' + dirName, {parents: true})
      fs.mkdirSync(path.join(host, dirName), {recursive: true})
    }
    fs.writeFileSync(path.join(host, s.name), data)
    if (s.attr) {
      ns.writeFile('/' + s.name, Buffer.alloc(0))
      ns.setXattr('/' + s.name, Buffer.from('user.big'), content(5000 + i, s.attr))
    }
    if (s.holes.length === 0) {
      ns.writeFile('/' + s.name, data)
      return
    }
    // The data around the holes only; the holes are never written (and so are not mapped).
    const inode = ns.openForWrite('/' + s.name, {truncate: true})
    let at = 0
    for (const [off, len] of [...s.holes].sort((a, b) => a[0] - b[0])) {
      if (off > at) ns.writeInode(inode, at, data.subarray(at, off))
      at = Math.max(at, Math.min(s.size, off + len))
    }
    if (at < s.size) ns.writeInode(inode, at, data.subarray(at))
    ns.truncateInode(inode, s.size)
  })
}

/** Extracts `archive` with GNU tar into a new directory and says how it differs from `host` (nothing: ''). */
function differences(archive: string, host: string, dir: string, label: string): string {
  const x = path.join(dir, `x-${label}`)
  fs.rmSync(x, {recursive: true, force: true})
  fs.mkdirSync(x)
  const t = sh('tar', ['-xf', archive, '-C', x])
  if (t.status !== 0 || t.stderr !== '') return `tar -x: ${t.status} ${t.stderr}`
  const d = sh('diff', ['-r', '--no-dereference', host, x])
  return d.status === 0 ? '' : d.stdout.toString() + d.stderr
}

describe('tar export: the data read straight into reused buffers is never mixed up', function () {
  this.timeout(600000)
  let dir: string
  let img: string
  let host: string
  const specs: Spec[] = []
  before(function () {
    if (!has('tar') || !has('diff') || !has('cmp')) {
      console.log('      skipped: GNU tar, diff or cmp missing')
      this.skip()
    }
    dir = tmpDir('prism-tarbuf-')
    img = newImage(dir, 512 << 20)
    host = path.join(dir, 'host')
    fs.mkdirSync(host)
    // Every size in a few places (so each lands at many offsets of a chunk), many small files
    // between them, and files with holes (at the start, in the middle, at the end, across a chunk).
    for (let round = 0; round < 3; round++) {
      SIZES.forEach((s, i) => specs.push({name: `r${round}/f${String(i).padStart(2, '0')}-${s}`, size: s, holes: []}))
      for (let i = 0; i < 200; i++) specs.push({name: `r${round}/small/s${i}`, size: (i * 977 + round * 131) % 9000, holes: []})
    }
    specs.push({name: 'holes/start', size: 2 * MiB + 5, holes: [[0, MiB]]})
    specs.push({name: 'holes/middle', size: 3 * MiB, holes: [[4096, 2 * MiB]]})
    specs.push({name: 'holes/end', size: 5 * MiB + 3, holes: [[MiB + 8192, 4 * MiB]]})
    specs.push({name: 'holes/many', size: 4 * MiB, holes: Array.from({length: 30}, (_, i) => [i * 131072 + 4096, 65536] as [number, number])})
    edit(img, (ns) => makeTree(ns, host, specs))
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('every file, in every format, to a file, to standard output and compressed, is what GNU tar extracts (cmp)', () => {
    const outputs: Array<[string, string[]]> = [
      // (gnu and ustar with whole-second times: what they cannot hold is said, and fails the status)
      ['pax.tar', []], ['gnu.tar', ['--format', 'gnu', '--mtime', '@1600000000']], ['ustar.tar', ['--format', 'ustar', '--mtime', '@1600000000']], ['pax.tar.gz', []], ['pax.tar.zst', []],
    ]
    for (const [name, flags] of outputs) {
      const file = path.join(dir, name)
      const r = prism(['export', '-i', img, 'root', file, ...flags])
      expect(r.stderr, name).to.equal('')
      expect(r.status, name).to.equal(0)
      readsCleanly(file)
      expect(differences(file, host, dir, name), name).to.equal('')
    }
    // Standard output: chunks in new memory each, handed to a stream.
    const piped = spawnSync(process.execPath, [BIN, 'export', '-i', img, 'root', '-'], {maxBuffer: 1 << 30, env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
    expect(piped.status, piped.stderr.toString()).to.equal(0)
    expect(piped.stdout.equals(fs.readFileSync(path.join(dir, 'pax.tar'))), 'the stream holds the same bytes as the file').to.equal(true)
    // The files above 1 MiB once more, one by one with cmp, from the plain-file export.
    const x = path.join(dir, 'x-pax.tar')
    for (const s of specs.filter((f) => f.size > MiB)) {
      const c = sh('cmp', [path.join(host, s.name), path.join(x, s.name)])
      expect(c.status, `${s.name}: ${c.stdout}`).to.equal(0)
    }
    // Holes stay holes (GNU sparse 1.0 in pax, 'S' headers in gnu).
    expect(fs.statSync(path.join(x, 'holes/end')).blocks * 512).to.be.lessThan(2 * MiB)
    expect(fs.statSync(path.join(dir, 'x-gnu.tar', 'holes/end')).blocks * 512).to.be.lessThan(2 * MiB)
  })

  it('members whose attributes make a pax header larger than a chunk, up to 1 MiB: read back whole by prism import and GNU tar', () => {
    const sub = path.join(dir, 'attrs')
    fs.mkdirSync(sub)
    const big = newImage(sub, 64 << 20)
    // ./e: one value of 64 KiB (the most one attribute may hold) and 70,000 bytes of data, which
    // cross the end of the first chunk. ./f: 16 values of 65,500 bytes, just under the 1 MiB an
    // inode's set may hold: with the pax records' keys, more than 1 MiB.
    const one = content(999, 65536)
    const values = Array.from({length: 16}, (_, i) => content(1000 + i, 65500))
    edit(big, (ns) => {
      ns.writeFile('/e', content(998, 70000))
      ns.setXattr('/e', Buffer.from('user.one'), one)
      ns.writeFile('/f', Buffer.from('data after the big header\n'))
      values.forEach((v, i) => ns.setXattr('/f', Buffer.from(`user.a${i.toString(16)}`), v))
      ns.writeFile('/g', Buffer.from('the next member\n'))
    })
    const file = path.join(dir, 'attrs.tar')
    const r = prism(['export', '-i', big, 'root', file])
    expect(r.status, r.stderr).to.equal(0)
    const m = members(fs.readFileSync(file))
    expect(m.map((x) => x.name)).to.deep.equal(['./', './e', './f', './g'])
    expect(Object.keys(m[2].pax!).filter((k) => k.startsWith('SCHILY.xattr.')).length).to.equal(16)
    // ./f's headers, with their header block and the member's header, are larger than a chunk (than 1 MiB).
    expect(m[1].paxBytes).to.be.greaterThan(65536)
    expect(m[2].paxBytes + 2 * TAR_BLOCK).to.be.greaterThan(Math.max(CHUNK, 1024 * 1024))
    readsCleanly(file)
    expect(prism(['import', '-i', big, '--create', 'back', file]).status).to.equal(0)
    read(big, (ns) => {
      expect(ns.readFile('/e').equals(content(998, 70000))).to.equal(true)
      expect(ns.getXattr('/e', Buffer.from('user.one'))?.equals(one)).to.equal(true)
      expect(ns.readFile('/f').toString()).to.equal('data after the big header\n')
      expect(ns.readFile('/g').toString()).to.equal('the next member\n')
      values.forEach((v, i) => expect(ns.getXattr('/f', Buffer.from(`user.a${i.toString(16)}`))?.equals(v), `user.a${i}`).to.equal(true))
    }, 'back')
    // GNU tar takes the data after the headers for what it is (the host's ext4 cannot hold values this large: not extracted).
    const x = path.join(dir, 'x-attrs')
    fs.mkdirSync(x)
    const t = sh('tar', ['-xf', file, '-C', x])
    expect(t.stderr).to.equal('')
    expect(fs.readFileSync(path.join(x, 'e')).equals(content(998, 70000))).to.equal(true)
    expect(fs.readFileSync(path.join(x, 'f')).toString()).to.equal('data after the big header\n')
    expect(fs.readFileSync(path.join(x, 'g')).toString()).to.equal('the next member\n')
  })

  it('property: a reused buffer and new memory each time give the same archive, and GNU tar extracts every file as written', () => {
    const sizeArb = fc.oneof(fc.constantFrom(...SIZES), fc.integer({min: 0, max: 3 * MiB}), fc.integer({min: 0, max: 9000}))
    const specArb = sizeArb.chain((size) => fc.record({
      size: fc.constant(size),
      holes: size < 8192 ? fc.constant([] as Array<[number, number]>) : fc.array(fc.tuple(fc.integer({min: 0, max: size - 1}), fc.integer({min: 1, max: 2 * MiB})), {maxLength: 3}),
      attr: fc.oneof({weight: 4, arbitrary: fc.constant(0)}, {weight: 1, arbitrary: fc.integer({min: 1, max: 65536})}),
    }))
    // Among them many small files, so that headers, not only data, meet the end of a chunk.
    const smallArb = fc.array(fc.record({size: fc.integer({min: 0, max: 3000}), attr: fc.oneof(fc.constant(0), fc.integer({min: 1, max: 2000}))}), {maxLength: 300})
    let run = 0
    fc.assert(fc.property(fc.array(specArb, {minLength: 1, maxLength: 24}), smallArb, fc.constantFrom<ExportOptions['format']>('pax', 'gnu', 'ustar'), (raw, small, format) => {
      const d = path.join(dir, `p${run++}`)
      fs.mkdirSync(d)
      try {
        const pimg = newImage(d, 256 << 20)
        const phost = path.join(d, 'host')
        fs.mkdirSync(phost)
        const ps: Spec[] = [
          ...raw.map((s, i) => ({name: `d${i % 3}/f${i}`, size: s.size, holes: s.holes, attr: s.attr})),
          ...small.map((s, i) => ({name: `d${i % 2}/s${i}`, size: s.size, holes: [], attr: s.attr})),
        ]
        edit(pimg, (ns) => makeTree(ns, phost, ps))
        const reused = path.join(d, 'reused.tar')
        const fresh: Buffer[] = []
        read(pimg, (ns) => {
          // As the plain-file export: each chunk written before the next is asked for.
          const fd = fs.openSync(reused, 'w')
          const lengths: number[] = []
          try {
            for (const chunk of exportTar(ns, '/', {format, reuseChunks: true})) {
              fs.writeSync(fd, chunk)
              lengths.push(chunk.length)
            }
          } finally {
            fs.closeSync(fd)
          }
          // Every chunk but the last is a whole CHUNK: the archive is written at aligned offsets.
          expect(lengths.slice(0, -1).every((n) => n === CHUNK), `chunk lengths ${lengths.join(',')}`).to.equal(true)
          // As a stream: every chunk kept until the end, then joined.
          for (const chunk of exportTar(ns, '/', {format})) fresh.push(chunk)
        })
        expect(Buffer.concat(fresh).equals(fs.readFileSync(reused)), 'reused and new-memory archives are byte-identical').to.equal(true)
        expect(differences(reused, phost, d, 'p')).to.equal('')
        // The attributes come back through prism import (pax only: the others hold none).
        if (format === 'pax' && ps.some((s) => s.attr)) {
          edit(pimg, (_ns, vol) => importBuffer(vol, {fileset: 'back', path: '/', create: true}, fs.readFileSync(reused)))
          read(pimg, (ns) => ps.forEach((s, i) => {
            if (s.attr) expect(ns.getXattr('/' + s.name, Buffer.from('user.big'))?.equals(content(5000 + i, s.attr)), s.name).to.equal(true)
          }), 'back')
        }
      } finally {
        fs.rmSync(d, {recursive: true, force: true})
      }
    }), {numRuns: 25, seed: Number(process.env.PRISM_SEED ?? 20261203)})
  })
})

describe('tar export: the start-up fast path and oclif do the same', function () {
  this.timeout(180000)
  let dir: string
  let img: string
  before(() => {
    dir = tmpDir('prism-tarfast-')
    img = newImage(dir, 64 << 20)
    edit(img, (ns) => {
      ns.mkdir('/d')
      ns.writeFile('/d/f', Buffer.from('data\n'))
      ns.writeFile('/d/big', content(7, 2 * MiB + 3))
      ns.setXattr('/d/f', Buffer.from('user.x'), Buffer.from('y'))
      ns.setTimes(ns.resolve('/d/f'), {s: 1600000000, ns: 1}, {s: 1600000000, ns: 2})
    })
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('the same archive, exit status and messages; --json (oclif) reports the counts', () => {
    for (const extra of [[], ['--format', 'gnu'], ['--mtime', '@5', '--clamp-mtime', '--owner', 'x:7', '--group', '8', '--numeric-owner', '--sort', 'name', '-z', 'gzip']]) {
      const a = path.join(dir, 'fast.tar')
      const b = path.join(dir, 'oclif.tar')
      const fast = prism(['export', '-i', img, 'root:/d', a, '--wait', '0.5', ...extra])
      const oclif = prism(['export', '-i', img, 'root:/d', b, '--wait', '0.5', '--json', ...extra])
      expect(fast.stderr, extra.join(' ')).to.equal(oclif.stderr)
      expect(fast.status, extra.join(' ')).to.equal(oclif.status)
      expect(fast.status).to.equal(extra[1] === 'gnu' ? 1 : 0) // the gnu format leaves the attribute out: said, status 1
      expect(fs.readFileSync(a).equals(fs.readFileSync(b)), extra.join(' ')).to.equal(true)
      expect(JSON.parse(oclif.stdout)).to.include({files: 2, dirs: 1, bytes: 2 * MiB + 3 + 5})
    }
  })

  it('--owner and --group NAME:NUMBER write that name with the number, as GNU tar; the gnu and ustar formats say they cut sub-second times', () => {
    const a = path.join(dir, 'named.tar')
    const must = (cmd: string, args: string[]) => spawnSync(cmd, args, {maxBuffer: 1 << 28}).stdout
    let r = prism(['export', '-i', img, 'root:/d', a, '--owner', 'bob:4321', '--group', 'gg:50', '--mtime', '@7'])
    expect(r.status, r.stderr).to.equal(0)
    expect(must('tar', ['-tvf', a]).toString().split('\n').filter(Boolean).every((l) => / bob\/gg /.test(l))).to.equal(true)
    expect(must('tar', ['--numeric-owner', '-tvf', a]).toString()).to.match(/ 4321\/50 /)
    // --numeric-owner: no names at all, the one given included.
    r = prism(['export', '-i', img, 'root:/d', a, '--owner', 'bob:4321', '--numeric-owner', '--mtime', '@7'])
    expect(r.status).to.equal(0)
    expect(must('tar', ['-tvf', a]).toString()).to.match(/ 4321\/0 /)
    // /d/f has nanoseconds: the gnu and ustar headers cannot hold them (said once, status 1);
    // with --mtime of whole seconds nothing is lost, and nothing said.
    for (const format of ['gnu', 'ustar']) {
      const cut = prism(['export', '-i', img, 'root:/d/big', a, '--format', format])
      expect(cut.status, format).to.equal(1)
      expect(cut.stderr.trim().split('\n'), format).to.have.length(1)
      expect(cut.stderr).to.match(new RegExp(`^prism: the ${format} format holds whole seconds only: modification times are cut to the second \\(first: `))
      const whole = prism(['export', '-i', img, 'root:/d/big', a, '--format', format, '--mtime', '@1600000000'])
      expect([whole.status, whole.stderr], format).to.deep.equal([0, ''])
    }
  })

  it('bad input: the same one line and status on both paths, and no archive left', () => {
    const out = path.join(dir, 'bad.tar')
    for (const [args, status, msg] of [
      [['root:/nowhere', out], 1, /no such file or directory/],
      [['root', out, '--mtime', 'yesterday-ish'], 2, /invalid date/],
      [['root', out, '--clamp-mtime'], 2, /--clamp-mtime needs --mtime/],
      [['root', out, '--owner', 'alice'], 2, /invalid --owner 'alice'/],
      [['nosuch', out], 1, /no fileset named 'nosuch'/],
      [['root', out, '--wait', 'x'], 2, /--wait/],
      [['root', out, '--format', 'cpio'], 2, /--format/],
    ] as Array<[string[], number, RegExp]>) {
      for (const json of [[], ['--json']]) {
        const r = prism(['export', '-i', img, ...args, ...json])
        expect(r.status, `${args.join(' ')} ${json}`).to.equal(status)
        expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1)
        expect(r.stderr).to.match(msg)
        expect(fs.existsSync(out), `${args.join(' ')}: no archive`).to.equal(false)
      }
    }
  })
})
