// Security of names, paths and stale data:
//   - an image damaged (test/damage.ts) to hold directory entries named with '/', NUL, '.'
//     and '..', symlinks pointing outside (absolute and ../..), and a name given twice to a
//     symlink and to a directory (so that a careless export would create the symlink and
//     then write the directory's files through it) is exported with `prism cp -r FS:/ DIR`,
//     without a repair first: nothing outside DIR changes, and nothing is written through a
//     symlink;
//   - a new file's fresh blocks read as zeros until written (a write past EOF, a partial
//     block, truncate up, truncate down then up), though those blocks held another file's
//     secret before;
//   - a clone never shows data of another fileset or of freed blocks: a secret written in a
//     fileset that is then deleted appears nowhere in the files of a clone made afterwards.
import {expect} from 'chai'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {clone} from '../src/clone/clone.js'
import {nameHash} from '../src/format/checksum.js'
import {createEmptyFileset, deleteFileset, mkfs, namespace, withImage} from '../src/fs/image.js'
import type {Namespace} from '../src/fs/namespace.js'
import {RawImage, entryOffsets} from './damage.js'
import {prism, tmpDir} from './helpers.js'

const AREA = 0x70

/** Renames entry `from` of inline directory `dir` to the raw bytes `to` (same length or shorter), with a valid hash. */
function renameRaw(img: RawImage, dir: string, from: string, to: Buffer): void {
  img.patchInode(img.locate(dir).ino, (b) => {
    const seed = b.readUInt32LE(0x60)
    const es = entryOffsets(b, AREA, 0xfc).map((o) => ({
      ino: b.readUInt32LE(o), lastclone: b.readUInt32LE(o + 4), type: b[o + 12], name: Buffer.from(b.subarray(o + 14, o + 14 + b[o + 13])) as Buffer,
    }))
    const e = es.find((x) => x.name.toString('latin1') === from)
    if (!e) throw new Error(`${dir}/${from} not found`)
    e.name = to
    b.fill(0, AREA, 0xfc)
    let o = AREA
    for (const x of es) {
      b.writeUInt32LE(x.ino, o)
      b.writeUInt32LE(x.lastclone, o + 4)
      b.writeUInt32LE(nameHash(x.name, seed), o + 8)
      b[o + 12] = x.type
      b[o + 13] = x.name.length
      x.name.copy(b, o + 14)
      o += 14 + x.name.length
    }
  })
}

/** Every path under `dir` with its type, size, mode, mtime and content hash (symlinks not followed). */
function hostSnapshot(dir: string, skip: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name)
      if (p === skip) continue
      const st = fs.lstatSync(p)
      let what = `${path.relative(dir, p)} mode=${st.mode.toString(8)} size=${st.size} mtime=${st.mtimeMs}`
      if (st.isSymbolicLink()) what += ` -> ${fs.readlinkSync(p)}`
      else if (st.isFile()) what += ` sha=${createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16)}`
      out.push(what)
      if (st.isDirectory()) walk(p)
    }
  }
  walk(dir)
  return out
}

const MARK = Buffer.from('S3CRET-M4RK-')
function secret(n: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i += MARK.length) MARK.copy(b, i)
  return b
}
/** True if `buf` holds any 6-byte piece of the secret pattern. */
function leaks(buf: Buffer): boolean {
  for (let s = 0; s < MARK.length; s++) {
    const piece = Buffer.concat([MARK, MARK]).subarray(s, s + 6)
    if (buf.includes(piece)) return true
  }
  return false
}

describe('path security: names and symlinks from a damaged image never lead cp outside its target', function () {
  this.timeout(120_000)

  it('cp -r of a damaged fileset writes nothing outside the target directory and nothing through a symlink', () => {
    const top = tmpDir('prism-pathsec-')
    try {
      const img = path.join(top, 'disk.img')
      const outside = path.join(top, 'outside')
      fs.mkdirSync(outside)
      fs.writeFileSync(path.join(outside, 'precious'), 'do not touch\n')
      const vol = mkfs(img, {size: 8 * 1024 * 1024})
      const ns = namespace(vol, 'root')
      ns.mkdir('/d1')
      ns.writeFile('/d1/aaaaaa', Buffer.from('slash\n'))
      ns.writeFile('/d1/nul', Buffer.from('nul\n'))
      ns.mkdir('/d1/dt')
      ns.writeFile('/d1/dt/inside', Buffer.from('dot\n'))
      ns.mkdir('/d1/dd')
      ns.writeFile('/d1/dd/escape', Buffer.from('ESCAPED via ..\n'))
      ns.mkdir('/d2')
      ns.symlink(outside, '/d2/sa')
      ns.symlink('../../outside', '/d2/sr')
      ns.symlink('../../outside/precious', '/d2/sf')
      ns.mkdir('/d3')
      // Created first, so exported first: then a directory (or file) of the same name.
      ns.symlink(outside, '/d3/ln')
      ns.mkdir('/d3/lm')
      ns.writeFile('/d3/lm/payload', Buffer.from('ESCAPED via an absolute symlink\n'))
      ns.symlink('../../outside', '/d3/lr')
      ns.mkdir('/d3/ls')
      ns.writeFile('/d3/ls/payload2', Buffer.from('ESCAPED via a relative symlink\n'))
      ns.symlink('../../outside/precious', '/d3/fs')
      ns.writeFile('/d3/ft', Buffer.from('ESCAPED over precious\n'))
      ns.writeFile('/ok', Buffer.from('fine\n'))
      vol.close()

      const raw = new RawImage(img)
      renameRaw(raw, '/d1', 'aaaaaa', Buffer.from('../esc'))
      renameRaw(raw, '/d1', 'nul', Buffer.from('n\0l'))
      renameRaw(raw, '/d1', 'dt', Buffer.from('.'))
      renameRaw(raw, '/d1', 'dd', Buffer.from('..'))
      renameRaw(raw, '/d3', 'lm', Buffer.from('ln'))
      renameRaw(raw, '/d3', 'ls', Buffer.from('lr'))
      renameRaw(raw, '/d3', 'ft', Buffer.from('fs'))
      // The damage is there: fsck sees it (and is not asked to repair it).
      const f = prism(['fsck', '--image', img])
      expect(f.status, f.stdout).to.equal(4)
      expect(f.stdout).to.include('DIRENT_BAD_NAME').and.include('DIRENT_DUP_NAME')

      const before = hostSnapshot(top, path.join(top, 'out'))
      const out = path.join(top, 'out')
      const r = prism(['cp', '-r', 'root:/', out, '--image', img])
      expect(r.stderr, 'one clear line per problem, never a stack trace').to.not.match(/internal error|\n\s+at /)
      // Each unsafe name is skipped with a warning; the directory/symlink name clash stops the copy.
      expect(r.stderr).to.include("skipped an entry with an unsafe name (name contains '/')")
      expect(r.stderr).to.include('skipped an entry with an unsafe name (name contains NUL)')
      expect(r.stderr).to.include("skipped an entry with an unsafe name (name is '.' or '..')")
      expect(r.status).to.equal(1)
      const after = hostSnapshot(top, out)
      expect(after, 'something outside the target changed').to.deep.equal(before)
      expect(fs.readdirSync(outside)).to.deep.equal(['precious'])
      expect(fs.readFileSync(path.join(outside, 'precious'), 'utf8')).to.equal('do not touch\n')
      // What was exported is inside out/, and no regular file sits below a symlink.
      const exported: string[] = []
      const walk = (rel: string) => {
        for (const name of fs.readdirSync(path.join(out, rel))) {
          const p = path.join(rel, name)
          exported.push(p)
          if (fs.lstatSync(path.join(out, p)).isDirectory()) walk(p)
        }
      }
      walk('')
      expect(exported).to.include.members(['d1', 'd2', path.join('d2', 'sa'), path.join('d2', 'sr')])
      expect(fs.readlinkSync(path.join(out, 'd2', 'sr'))).to.equal('../../outside')
      for (const p of exported) {
        const abs = path.join(out, p)
        expect(path.relative(out, fs.realpathSync(path.dirname(abs))).startsWith('..'), `${p} resolves outside`).to.equal(false)
        if (fs.lstatSync(abs).isFile()) expect(fs.readFileSync(abs, 'utf8'), p).to.not.include('ESCAPED via')
      }
      expect(fs.lstatSync(path.join(out, 'd3', 'ln')).isSymbolicLink() || !fs.existsSync(path.join(out, 'd3', 'ln'))).to.equal(true)
    } finally {
      fs.rmSync(top, {recursive: true, force: true})
    }
  })
})

describe('stale data: new blocks read as zeros, clones never show freed or foreign data', function () {
  this.timeout(120_000)

  /** Fills most of the image's free space with the secret, then frees it again. */
  function plantAndFree(ns: Namespace, dir: string, files: number): void {
    ns.mkdir(dir)
    for (let i = 0; i < files; i++) ns.writeFile(`${dir}/s${i}`, secret(48 * 1024 + 1000 * i))
    ns.vol.commit()
    ns.remove(dir, {recursive: true})
    ns.vol.commit()
  }

  it('a new file reads zeros where it was not written: past EOF, the rest of a partial block, truncate up, truncate down then up', () => {
    const top = tmpDir('prism-zero-')
    try {
      const img = path.join(top, 'disk.img')
      mkfs(img, {size: 4 * 1024 * 1024}).close()
      withImage(img, {write: true}, (vol) => plantAndFree(namespace(vol, "root"), "/secret", 30))
      // The freed blocks still hold the secret on disk: the test would prove nothing otherwise.
      expect(leaks(fs.readFileSync(img)), 'the secret is on disk').to.equal(true)
      withImage(img, {write: true}, (vol) => {
        const ns = namespace(vol, 'root')
        // A write past EOF: a hole, then a partial block.
        const a = ns.openForWrite('/sparse')
        ns.writeInode(a, 3 * 4096 + 100, Buffer.from('tail'))
        // A partial first block, then truncate up by several blocks.
        ns.writeFile('/partial', Buffer.from('head'))
        ns.truncate('/partial', 5 * 4096 + 7)
        // Written whole, truncated down into a block, then up again.
        ns.writeFile('/shrunk', Buffer.alloc(3 * 4096, 'w'))
        ns.truncate('/shrunk', 4096 + 10)
        ns.truncate('/shrunk', 4 * 4096)
        // Many new files of odd sizes, each written once.
        for (let i = 0; i < 40; i++) ns.writeFile(`/n${i}`, Buffer.alloc(1 + i * 1733, 'n'))
      })
      withImage(img, {write: false}, (vol) => {
        const ns = namespace(vol, 'root')
        const s = ns.readFile('/sparse')
        expect(s.length).to.equal(3 * 4096 + 104)
        expect(s.subarray(0, 3 * 4096 + 100).equals(Buffer.alloc(3 * 4096 + 100))).to.equal(true)
        expect(s.subarray(3 * 4096 + 100).toString()).to.equal('tail')
        const p = ns.readFile('/partial')
        expect(p.length).to.equal(5 * 4096 + 7)
        expect(p.subarray(0, 4).toString()).to.equal('head')
        expect(p.subarray(4).equals(Buffer.alloc(p.length - 4))).to.equal(true)
        const k = ns.readFile('/shrunk')
        expect(k.length).to.equal(4 * 4096)
        expect(k.subarray(0, 4096 + 10).equals(Buffer.alloc(4096 + 10, 'w'))).to.equal(true)
        expect(k.subarray(4096 + 10).equals(Buffer.alloc(k.length - 4096 - 10)), 'bytes cut by truncate come back as zeros').to.equal(true)
        for (let i = 0; i < 40; i++) expect(ns.readFile(`/n${i}`).equals(Buffer.alloc(1 + i * 1733, 'n'))).to.equal(true)
      })
      // The same through the CLI: the export of everything holds no secret byte.
      const out = path.join(top, 'out')
      const r = prism(['cp', '-r', 'root:/', out, '--image', img])
      expect(r.status, r.stderr).to.equal(0)
      for (const p of fs.readdirSync(out, {recursive: true}).map(String)) {
        const abs = path.join(out, p)
        if (fs.lstatSync(abs).isFile()) expect(leaks(fs.readFileSync(abs)), p).to.equal(false)
      }
    } finally {
      fs.rmSync(top, {recursive: true, force: true})
    }
  })

  it('a clone of an unrelated fileset shows nothing of a deleted fileset, in new files, holes or cut tails', () => {
    const top = tmpDir('prism-clone-secret-')
    try {
      const img = path.join(top, 'disk.img')
      mkfs(img, {size: 4 * 1024 * 1024}).close()
      withImage(img, {write: true}, (vol) => {
        const ns = namespace(vol, 'root')
        ns.mkdir('/etc')
        ns.writeFile('/etc/motd', Buffer.from('welcome\n'))
        ns.writeFile('/etc/big', Buffer.alloc(20_000, 'b'))
        createEmptyFileset(vol, 'a')
        const a = namespace(vol, 'a')
        a.mkdir('/s')
        for (let i = 0; i < 40; i++) a.writeFile(`/s/k${i}`, secret(48 * 1024 + 333 * i))
      })
      const del = prism(['fileset', 'delete', 'a', '--image', img])
      expect(del.status, del.stderr).to.equal(0)
      expect(leaks(fs.readFileSync(img)), 'the secret is on disk').to.equal(true)
      for (const mode of ['sync', 'lazy'] as const) {
        withImage(img, {write: true}, (vol) => {
          clone(vol, {fileset: 'root', path: '/'}, {fileset: `b-${mode}`}, {mode})
          const b = namespace(vol, `b-${mode}`)
          // New files, a hole, a partial block, a file shared with root rewritten in part, truncates.
          for (let i = 0; i < 20; i++) b.writeFile(`/new${i}`, Buffer.alloc(100 + i * 2100, 'x'))
          const h = b.openForWrite('/holey')
          b.writeInode(h, 9 * 4096 + 5, Buffer.from('!'))
          b.writeInode(b.resolve('/etc/big'), 4096 + 3, Buffer.from('changed'))
          b.truncate('/etc/big', 30_000)
          b.truncate('/etc/motd', 9000)
        })
      }
      const out = path.join(top, 'out')
      fs.mkdirSync(out)
      for (const mode of ['sync', 'lazy']) {
        const r = prism(['cp', '-r', `b-${mode}:/`, path.join(out, mode), '--image', img])
        expect(r.status, r.stderr).to.equal(0)
      }
      let files = 0
      for (const p of fs.readdirSync(out, {recursive: true}).map(String)) {
        const abs = path.join(out, p)
        if (!fs.lstatSync(abs).isFile()) continue
        files++
        expect(leaks(fs.readFileSync(abs)), `${p} shows the deleted fileset's secret`).to.equal(false)
      }
      expect(files).to.be.greaterThan(40)
      const big = fs.readFileSync(path.join(out, 'sync', 'etc', 'big'))
      expect(big.length).to.equal(30_000)
      expect(big.subarray(20_000).equals(Buffer.alloc(10_000))).to.equal(true)
      expect(fs.readFileSync(path.join(out, 'lazy', 'etc', 'motd')).subarray(8).equals(Buffer.alloc(9000 - 8))).to.equal(true)
      const f = prism(['fsck', '--image', img])
      expect(f.status, f.stdout).to.equal(0)
    } finally {
      fs.rmSync(top, {recursive: true, force: true})
    }
  })
})
