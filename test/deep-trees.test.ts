// Trees 10,000 levels deep, through the CLI: an image holds them as easily as any other, and
// every walk of a tree (import, cp -r in all three directions, mv between filesets, export,
// du, diff, clone, rm -r, fsck) must take them whole, without "Maximum call stack size
// exceeded" (src/frames.ts), and the import in linear time (a 10,000-deep tar of a directory
// and a file a level once took minutes). On the host a path is at most PATH_MAX (4096) bytes:
// names of one byte let a host tree be 2000 levels deep; deeper, cp -r out names the entry
// it cannot write and goes on.
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {encodeHeader, paxRecord, TAR_BLOCK} from '../src/tar/codec.js'
import {fsckImage} from '../src/fsck/index.js'
import {readData} from '../src/fs/extents.js'
import type {Namespace} from '../src/fs/namespace.js'
import {edit, newImage, prism, read, tmpDir} from './helpers.js'
import {importBuffer, mkTar, type MkEntry} from './tar-lib.js'

const DEPTH = 10_000
const HOST_DEPTH = 2000

/** Writes a pax archive of DEPTH nested directories d/d/.../d, each holding a file f ("level N\n"). */
function writeDeepTar(file: string, depth: number): void {
  const fd = fs.openSync(file, 'w')
  const pad = (n: number) => Buffer.alloc((TAR_BLOCK - (n % TAR_BLOCK)) % TAR_BLOCK)
  const entry = (name: string, type: 'dir' | 'file', data: Buffer) => {
    const parts: Buffer[] = []
    const nb = Buffer.from(name)
    if (nb.length > 100) {
      const body = paxRecord('path', nb)
      parts.push(encodeHeader({name: Buffer.from('PaxHeaders/x'), mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0, typeflag: 0x78}, 'ustar'), body, pad(body.length))
    }
    parts.push(encodeHeader({
      name: nb.subarray(0, 100), mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size: data.length,
      mtime: 1_600_000_000, typeflag: type === 'dir' ? 0x35 : 0x30, linkname: Buffer.alloc(0), devmajor: 0, devminor: 0,
    }, 'ustar'))
    if (data.length) parts.push(data, pad(data.length))
    fs.writeSync(fd, Buffer.concat(parts))
  }
  try {
    let p = ''
    for (let i = 1; i <= depth; i++) {
      p = p ? p + '/d' : 'd'
      entry(p, 'dir', Buffer.alloc(0))
      entry(p + '/f', 'file', Buffer.from(`level ${i}\n`))
    }
    fs.writeSync(fd, Buffer.alloc(2 * TAR_BLOCK))
  } finally {
    fs.closeSync(fd)
  }
}

/** rm -rf (fs.rmSync recurses a native frame per level: a host tree 2000 deep exhausts its stack) */
const rmTree = (p: string) => execFileSync('rm', ['-rf', p])

const D = Buffer.from('d')
const F = Buffer.from('f')

/**
 * Walks the chain d/d/... below `top` in fileset `fsName` (iteratively) and checks that each
 * level holds its file f with "level N\n" (N from `first`), and nothing else but the next d.
 * Returns the number of levels.
 */
function checkChain(img: string, fsName: string, top: string, first: number): number {
  return read(img, (ns: Namespace) => {
    let dir = ns.resolve(top, false)
    let n = 0
    for (;;) {
      expect(dir.isDir).to.equal(true)
      const f = ns.lookupEntry(dir, F)
      expect(f, `level ${first + n}: f`).to.not.equal(null)
      const file = ns.vol.iget(f!.ino)
      expect(readData(ns.vol, file, 0, file.r.size).toString()).to.equal(`level ${first + n}\n`)
      n++
      const e = ns.lookupEntry(dir, D)
      if (!e) return n
      dir = ns.vol.iget(e.ino)
    }
  }, fsName)
}

function clean(img: string): void {
  expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
}

/** The image path of the directory `levels` deep: /d/d/.../d */
const deepPath = (levels: number) => '/d'.repeat(levels)

describe('trees 10,000 levels deep', function () {
  this.timeout(600000)
  let dir: string
  let img: string
  const run = (...args: string[]) => prism([...args, '-i', img])
  const ok = (...args: string[]) => {
    const r = run(...args)
    expect(r.stderr, args.join(' ')).to.equal('')
    expect(r.status, args.join(' ')).to.equal(0)
    return r
  }

  before(function () {
    dir = tmpDir()
    img = newImage(dir, 1024 * 1024 * 1024, {inodeCount: 262144})
    const tar = path.join(dir, 'deep.tar')
    writeDeepTar(tar, DEPTH)
    const t0 = Date.now()
    ok('import', 'root', tar)
    // (not a timing test: a super-linear import took minutes here; a linear one, seconds)
    console.log(`      import of a ${DEPTH}-deep tar (${(fs.statSync(tar).size / 2 ** 20).toFixed(0)} MiB): ${Date.now() - t0} ms`)
    fs.rmSync(tar)
  })
  after(() => rmTree(dir))

  it('import: every level and its file, and a clean image', () => {
    expect(checkChain(img, 'root', '/d', 1)).to.equal(DEPTH)
    clean(img)
  })

  it('cp -r within the image, then mv of the copy to another fileset', () => {
    ok('cp', '-r', 'root:/d', 'root:/x')
    expect(checkChain(img, 'root', '/x', 1)).to.equal(DEPTH)
    clean(img)
    ok('fileset', 'create', 'b')
    ok('mv', 'root:/x', 'b:/m')
    expect(checkChain(img, 'b', '/m', 1)).to.equal(DEPTH)
    expect(run('ls', 'root:/x').status).to.not.equal(0)
    clean(img)
    ok('rm', '-r', 'b:/m')
    clean(img)
  })

  it('export to a tar and import of it into a new fileset: no difference (diff), du -s counts every level', () => {
    const tar = path.join(dir, 'out.tar')
    ok('export', 'root:/', tar)
    ok('import', '--create', 'again', tar)
    fs.rmSync(tar)
    expect(ok('diff', 'root', 'again').stdout).to.equal('')
    expect(checkChain(img, 'again', '/d', 1)).to.equal(DEPTH)
    const du = JSON.parse(ok('du', '-s', '--json', 'root:/').stdout)
    expect(JSON.stringify(du)).to.contain(`"dirs":${DEPTH + 1}`)
    ok('fileset', 'delete', '-f', 'again')
    clean(img)
  })

  it('clone, rm -r of the clone\'s tree', () => {
    ok('clone', 'root', 'c')
    expect(ok('diff', 'root', 'c').stdout).to.equal('')
    ok('rm', '-r', 'c:/d')
    expect(checkChain(img, 'root', '/d', 1)).to.equal(DEPTH)
    ok('fileset', 'delete', '-f', 'c')
    clean(img)
  })

  it(`cp -r to the host: a ${HOST_DEPTH}-level subtree whole; from the top, the entry past PATH_MAX named, the rest copied`, () => {
    const out = path.join(dir, 'out')
    ok('cp', '-r', `root:${deepPath(DEPTH - HOST_DEPTH + 1)}`, out)
    let p = out
    for (let i = DEPTH - HOST_DEPTH + 1; i <= DEPTH; i++) {
      expect(fs.readFileSync(path.join(p, 'f'), 'utf8')).to.equal(`level ${i}\n`)
      if (i < DEPTH) p = path.join(p, 'd')
    }
    expect(fs.existsSync(path.join(p, 'd'))).to.equal(false)
    rmTree(out)

    const all = path.join(dir, 'all')
    const r = run('cp', '-r', 'root:/d', all)
    expect(r.status).to.equal(1)
    expect(r.stderr).to.not.contain('internal error')
    expect(r.stderr).to.match(/[Nn]ame too long/)
    expect(fs.readFileSync(path.join(all, 'd', 'f'), 'utf8')).to.equal('level 2\n')
    rmTree(all)
  })

  it(`cp -r from the host: a ${HOST_DEPTH}-level host tree into the bottom of the image's tree`, () => {
    const src = path.join(dir, 'h')
    let p = src
    for (let i = 1; i <= HOST_DEPTH; i++) {
      fs.mkdirSync(p)
      fs.writeFileSync(path.join(p, 'f'), `level ${i}\n`)
      if (i < HOST_DEPTH) p = path.join(p, 'd')
    }
    const at = deepPath(DEPTH)
    ok('cp', '-r', src, `root:${at}/h`)
    expect(checkChain(img, 'root', `${at}/h`, 1)).to.equal(HOST_DEPTH)
    clean(img)
    ok('mv', `root:${at}/h`, 'b:/h')
    expect(checkChain(img, 'b', '/h', 1)).to.equal(HOST_DEPTH)
    clean(img)
    rmTree(src)
  })
})

describe('import: a path parsed from the directory met before it, whatever its spelling', () => {
  it('names spelt with ., //, a leading / or a trailing /, going down and up: each entry where its name says', () => {
    const dir = tmpDir()
    try {
      const img = newImage(dir)
      const entries: MkEntry[] = [
        {name: 'a/', type: 'dir'}, {name: 'a//b/', type: 'dir'}, {name: './a/b/./c/', type: 'dir'},
        {name: 'a/b/c/f', data: 'f'}, {name: '/a/b/c/g', data: 'g'}, {name: 'a/b/h', data: 'h'}, {name: 'a//b/c/./i', data: 'i'},
        {name: 'a/./j', data: 'j'}, {name: 'a/b/c/.', type: 'dir'}, {name: 'a/b/c/./k', data: 'k'}, {name: 'a/b//l', data: 'l'},
        {name: 'x/y/z/m', data: 'm'}, {name: 'x/y/n', data: 'n'}, {name: 'x/o', data: 'o'}, {name: 'p', data: 'p'},
      ]
      edit(img, (_ns, vol) => importBuffer(vol, {fileset: 'root', path: '/'}, mkTar(entries)))
      const files: Record<string, string> = {
        '/a/b/c/f': 'f', '/a/b/c/g': 'g', '/a/b/h': 'h', '/a/b/c/i': 'i', '/a/j': 'j', '/a/b/c/k': 'k', '/a/b/l': 'l',
        '/x/y/z/m': 'm', '/x/y/n': 'n', '/x/o': 'o', '/p': 'p',
      }
      read(img, (ns) => {
        for (const [p, data] of Object.entries(files)) expect(ns.readFile(p).toString(), p).to.equal(data)
        const names = (p: string) => ns.readdir(p).map((e) => e.name).sort()
        expect(names('/')).to.deep.equal(['a', 'p', 'x'])
        expect(names('/a')).to.deep.equal(['b', 'j'])
        expect(names('/a/b')).to.deep.equal(['c', 'h', 'l'])
        expect(names('/a/b/c')).to.deep.equal(['f', 'g', 'i', 'k'])
        expect(names('/x')).to.deep.equal(['o', 'y'])
      })
      clean(img)
    } finally {
      rmTree(dir)
    }
  })
})
