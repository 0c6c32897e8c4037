// Replacing one kind of object with another (issue 15, point 2), prism against coreutils. Each
// row of the tables below runs a real coreutils command (cp, mv, ln, a shell redirection,
// truncate) on a host directory and the same operation of prism on an image holding the same
// tree, and asserts the same outcome: success or failure, and the same resulting tree (types,
// contents, symlink targets, hard links). cp rows run in four directions: host to image,
// within a fileset, from another fileset, and image to host. Where prism deliberately
// differs, the row names the coreutils command it matches instead (cp --remove-destination:
// prism never writes through a symlink at the destination) and says why. After every refused
// replacement the user's original file is there with its content.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {clone} from '../src/clone/clone.js'
import {PrismError} from '../src/errors.js'
import {createEmptyFileset, namespace, withImage} from '../src/fs/image.js'
import type {Namespace} from '../src/fs/namespace.js'
import type {Volume} from '../src/fs/volume.js'
import {fsckImage} from '../src/fsck/index.js'
import {copy, type Location} from '../src/ops/copy.js'
import {move} from '../src/ops/move.js'
import {BIN, NOBODY, asUser, newImage, prism, read, sha256File, tmpDir} from './helpers.js'

// ---------------------------------------------------------------- the trees

type Layout = Record<string, string>

/** The destination tree every row starts from: 'dir', 'file:CONTENT' or 'link:TARGET'. */
const DEST: Layout = {
  'precious.txt': 'file:precious\n',
  'dir': 'dir', 'dir/keep': 'file:keep\n',
  'dir2': 'dir', 'dir2/srcdir': 'file:a file named like the source directory\n',
  'dir3': 'dir', 'dir3/srcfile': 'dir', 'dir3/srcfile/inside': 'file:inside\n',
  'dir4': 'dir', 'dir4/srcdir': 'dir',
  'dir5': 'dir', 'dir5/srcdir': 'dir', 'dir5/srcdir/old': 'file:old\n',
  'empty': 'dir',
  'tree': 'dir', 'tree/sub': 'file:old sub\n', 'tree/f': 'file:old f\n', 'tree/d': 'dir', 'tree/d/inner': 'file:inner\n',
  'deep': 'dir', 'deep/a': 'dir', 'deep/a/b': 'dir', 'deep/a/b/c': 'file:deep file\n', 'deep/a/b/keep': 'file:deep keep\n',
  'lnk-file': 'link:precious.txt', 'lnk-dir': 'link:dir', 'dangling': 'link:nowhere',
}

/** The source tree. */
const SRC: Layout = {
  'srcdir': 'dir', 'srcdir/a': 'file:new a\n', 'srcdir/sub': 'dir', 'srcdir/sub/x': 'file:x\n',
  'srcfile': 'file:new file\n',
  'srclink': 'link:srcfile',
  // cp -rT srctree D/tree: sub is a directory over a file, d a file over a directory, f a
  // file over a file, new a new directory.
  'srctree': 'dir', 'srctree/sub': 'dir', 'srctree/sub/y': 'file:y\n', 'srctree/f': 'file:new f\n', 'srctree/d': 'file:file over dir\n',
  'srctree/new': 'dir', 'srctree/new/n': 'file:n\n',
  'deep': 'dir', 'deep/a': 'dir', 'deep/a/b': 'dir', 'deep/a/b/c': 'dir', 'deep/a/b/c/z': 'file:z\n', 'deep/a/b/ok': 'file:ok\n',
}

function makeHost(root: string, layout: Layout): void {
  fs.mkdirSync(root, {recursive: true})
  for (const [p, v] of Object.entries(layout)) {
    const at = path.join(root, p)
    if (v === 'dir') fs.mkdirSync(at, {recursive: true})
    else if (v.startsWith('file:')) fs.writeFileSync(at, v.slice(5))
    else fs.symlinkSync(v.slice(5), at)
  }
}

function makeImage(ns: Namespace, root: string, layout: Layout): void {
  ns.mkdir(root, {parents: true})
  for (const [p, v] of Object.entries(layout)) {
    const at = `${root}/${p}`
    if (v === 'dir') ns.mkdir(at, {parents: true})
    else if (v.startsWith('file:')) ns.writeFile(at, Buffer.from(v.slice(5)))
    else ns.symlink(v.slice(5), at)
  }
}

/** A tree as path -> description; files with several names carry the first of them. */
function hostTreeOf(root: string): Record<string, string> {
  const out: Record<string, string> = {}
  const names = new Map<bigint, string>()
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(root, rel)).sort()) {
      const p = rel ? `${rel}/${n}` : n
      const st = fs.lstatSync(path.join(root, p), {bigint: true})
      if (st.isDirectory()) { out[p] = 'dir'; walk(p) } else if (st.isSymbolicLink()) out[p] = `link:${fs.readlinkSync(path.join(root, p))}`
      else {
        if (st.nlink > 1n && !names.has(st.ino)) names.set(st.ino, p)
        out[p] = `file:${fs.readFileSync(path.join(root, p), 'utf8')}` + (st.nlink > 1n ? ` #${names.get(st.ino)}` : '')
      }
    }
  }
  walk('')
  return out
}

function imageTreeOf(ns: Namespace, root: string): Record<string, string> {
  const out: Record<string, string> = {}
  const names = new Map<number, string>()
  const walk = (rel: string) => {
    for (const e of ns.readdir(rel ? `${root}/${rel}` : root)) {
      const p = rel ? `${rel}/${e.name}` : e.name
      const st = ns.stat(`${root}/${p}`)
      if (st.type === 'dir') { out[p] = 'dir'; walk(p) } else if (st.type === 'symlink') out[p] = `link:${st.target}`
      else {
        if (st.nlink > 1 && !names.has(st.ino)) names.set(st.ino, p)
        out[p] = `file:${ns.readFile(`${root}/${p}`).toString()}` + (st.nlink > 1 ? ` #${names.get(st.ino)}` : '')
      }
    }
  }
  walk('')
  return out
}

/** Runs a coreutils command in `cwd`; true when it exits 0. */
function gnu(cwd: string, argv: string[], input?: string): boolean {
  const r = spawnSync(argv[0], argv.slice(1), {cwd, input, encoding: 'utf8'})
  // A command that fails before reading its input leaves our write to it with EPIPE.
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'EPIPE') throw r.error
  return r.status === 0
}

/** Runs a library operation as a command would: committed if it returns, dropped if it throws a PrismError. */
function attempt(img: string, work: (vol: Volume) => boolean): boolean {
  try {
    return withImage(img, {write: true}, work)
  } catch (e) {
    if (e instanceof PrismError && e.code !== 'EBADIMAGE') return false
    throw e
  }
}

// ---------------------------------------------------------------- the tables

/**
 * A cp row: source paths (in SRC) and a destination path (in DEST), with -r and -T. `gnu`
 * replaces the coreutils command prism is compared with, when prism deliberately differs.
 */
interface CpRow {
  srcs: string[]
  dst: string
  r?: boolean
  T?: boolean
  ok: boolean
  gnuFlags?: string[]
  why?: string
}

const CP_ROWS: CpRow[] = [
  {srcs: ['srcdir'], dst: 'precious.txt', r: true, ok: false},
  {srcs: ['srcdir'], dst: 'precious.txt', r: true, T: true, ok: false},
  {srcs: ['srcfile'], dst: 'dir', ok: true},
  {srcs: ['srcfile'], dst: 'dir', T: true, ok: false},
  {srcs: ['srcfile'], dst: 'empty', T: true, ok: false},
  {srcs: ['srclink'], dst: 'dir', r: true, T: true, ok: false},
  {srcs: ['srcdir'], dst: 'dir', r: true, ok: true},
  {srcs: ['srcdir'], dst: 'dir2', r: true, ok: false},
  {srcs: ['srcfile'], dst: 'dir3', ok: false},
  {srcs: ['srcdir'], dst: 'empty', r: true, T: true, ok: true},
  {srcs: ['srctree'], dst: 'tree', r: true, T: true, ok: false},
  {srcs: ['deep'], dst: 'deep', r: true, T: true, ok: false},
  {srcs: ['srcfile'], dst: 'precious.txt', ok: true},
  {srcs: ['srcfile'], dst: 'tree/f', T: true, ok: true},
  {srcs: ['srcdir'], dst: 'lnk-dir', r: true, ok: true},
  {srcs: ['srcdir'], dst: 'lnk-dir', r: true, T: true, ok: false},
  {srcs: ['srcdir', 'missing', 'srcfile'], dst: 'dir', r: true, ok: false},
  {srcs: ['srcdir', 'srcfile'], dst: 'dir5', r: true, ok: true},
  {
    srcs: ['srcfile'], dst: 'lnk-file', T: true, ok: true, gnuFlags: ['--remove-destination'],
    why: 'GNU cp writes through a symlink at the destination; prism replaces the link, never writing through one',
  },
  {
    srcs: ['srcfile'], dst: 'dangling', T: true, ok: true, gnuFlags: ['--remove-destination'],
    why: 'GNU cp refuses to write through a dangling symlink; prism replaces the link',
  },
]

type Direction = 'host->image' | 'in fileset' | 'fileset->fileset' | 'image->host'
const DIRECTIONS: Direction[] = ['host->image', 'in fileset', 'fileset->fileset', 'image->host']

/** A mv row: `ok` is GNU mv's outcome, which prism must match both within a fileset and between two. */
interface MvRow { src: string, dst: string, ok: boolean }

const MV_ROWS: MvRow[] = [
  {src: 'srcdir', dst: 'precious.txt', ok: false},
  {src: 'srcfile', dst: 'dir', ok: true},
  {src: 'srcdir', dst: 'dir', ok: true},
  {src: 'srcfile', dst: 'tree/sub', ok: true},
  {src: 'srcdir', dst: 'dir2', ok: false},
  {src: 'srcfile', dst: 'dir3', ok: false},
  {src: 'srcdir', dst: 'dir4', ok: true},
  {src: 'srcdir', dst: 'dir5', ok: false},
  {src: 'srcfile', dst: 'lnk-file', ok: true},
  {src: 'srcdir', dst: 'lnk-dir', ok: true},
  {src: 'srclink', dst: 'dir', ok: true},
  {src: 'srclink', dst: 'dangling', ok: true},
]

/** An ln row, against GNU ln -T (prism's LINK is always the name to create). */
interface LnRow { s?: boolean, f?: boolean, target: string, link: string, ok: boolean }

const LN_ROWS: LnRow[] = [
  {target: 'precious.txt', link: 'newlink', ok: true},
  {target: 'precious.txt', link: 'dir', ok: false},
  {f: true, target: 'precious.txt', link: 'dir', ok: false},
  {f: true, target: 'precious.txt', link: 'empty', ok: false},
  {f: true, target: 'precious.txt', link: 'tree/f', ok: true},
  {f: true, target: 'precious.txt', link: 'lnk-dir', ok: true},
  {f: true, target: 'precious.txt', link: 'precious.txt', ok: false},
  {target: 'precious.txt', link: 'lnk-file', ok: false},
  {s: true, target: 'anything', link: 'dir', ok: false},
  {s: true, f: true, target: 'anything', link: 'dir', ok: false},
  {s: true, f: true, target: 'anything', link: 'empty', ok: false},
  {s: true, f: true, target: 'anything', link: 'precious.txt', ok: true},
  {s: true, f: true, target: 'anything', link: 'lnk-dir', ok: true},
  {s: true, target: 'anything', link: 'dangling', ok: false},
]

describe('type replacement: prism does what coreutils does', function () {
  this.timeout(300_000)
  let top: string
  before(() => { top = tmpDir('prism-replace-') })
  after(() => fs.rmSync(top, {recursive: true, force: true}))

  let n = 0
  /** A fresh host pair (gnu/S, gnu/D) and image (root:/S, root:/D, src:/S), and where they are. */
  function fresh(): {dir: string, gnuRoot: string, img: string, hostS: string, hostD: string} {
    const dir = path.join(top, `row${n++}`)
    const gnuRoot = path.join(dir, 'gnu')
    makeHost(path.join(gnuRoot, 'S'), SRC)
    makeHost(path.join(gnuRoot, 'D'), DEST)
    makeHost(path.join(dir, 'hostS'), SRC)
    makeHost(path.join(dir, 'hostD'), DEST)
    const img = newImage(dir, 32 << 20)
    withImage(img, {write: true}, (vol) => {
      createEmptyFileset(vol, 'src')
      makeImage(namespace(vol, 'root'), '/S', SRC)
      makeImage(namespace(vol, 'root'), '/D', DEST)
      makeImage(namespace(vol, 'src'), '/S', SRC)
    })
    return {dir, gnuRoot, img, hostS: path.join(dir, 'hostS'), hostD: path.join(dir, 'hostD')}
  }

  const precious = DEST['precious.txt'].slice(5)

  for (const row of CP_ROWS) {
    const flags = [row.r ? '-r' : '', row.T ? '-T' : ''].filter(Boolean)
    const label = `cp ${[...flags, ...(row.gnuFlags ?? [])].join(' ')} ${row.srcs.map((s) => `S/${s}`).join(' ')} D/${row.dst}`
    it(`${label}: ${row.ok ? 'succeeds' : 'fails'} in every direction with coreutils' tree${row.why ? ` (compared with ${row.gnuFlags!.join(' ')}: ${row.why})` : ''}`, () => {
      const f = fresh()
      const gnuOk = gnu(f.gnuRoot, ['cp', ...flags, ...(row.gnuFlags ?? []), ...row.srcs.map((s) => `S/${s}`), `D/${row.dst}`])
      expect(gnuOk, 'coreutils outcome as the table says').to.equal(row.ok)
      const want = hostTreeOf(path.join(f.gnuRoot, 'D'))
      const wantSrc = hostTreeOf(path.join(f.gnuRoot, 'S'))
      for (const dir of DIRECTIONS) {
        const g = fresh()
        const opts = {recursive: row.r, noTargetDirectory: row.T}
        let got: Record<string, string>
        let gotSrc: Record<string, string>
        let ok: boolean
        if (dir === 'image->host') {
          ok = attempt(g.img, (vol) => copy(vol, row.srcs.map((s): Location => ({kind: 'image', fileset: 'root', path: `/S/${s}`})), {kind: 'host', path: path.join(g.hostD, row.dst)}, opts).errors.length === 0)
          got = hostTreeOf(g.hostD)
          gotSrc = read(g.img, (ns) => imageTreeOf(ns, '/S'))
        } else {
          const src = (s: string): Location => dir === 'host->image' ? {kind: 'host', path: path.join(g.hostS, s)} : {kind: 'image', fileset: dir === 'in fileset' ? 'root' : 'src', path: `/S/${s}`}
          ok = attempt(g.img, (vol) => copy(vol, row.srcs.map(src), {kind: 'image', fileset: 'root', path: `/D/${row.dst}`}, opts).errors.length === 0)
          got = read(g.img, (ns) => imageTreeOf(ns, '/D'))
          gotSrc = dir === 'host->image' ? hostTreeOf(g.hostS) : read(g.img, (ns) => imageTreeOf(ns, '/S'), dir === 'in fileset' ? 'root' : 'src')
        }
        expect(ok, `${dir}: outcome`).to.equal(row.ok)
        expect(got, `${dir}: resulting tree`).to.deep.equal(want)
        expect(gotSrc, `${dir}: the source is untouched`).to.deep.equal(wantSrc)
        if (want['precious.txt'] === DEST['precious.txt']) expect(got['precious.txt'], `${dir}: the user's file`).to.equal(`file:${precious}`)
        expect(fsckImage(g.img, {repair: false}).exitCode, `${dir}: fsck`).to.equal(0)
      }
    })
  }

  for (const row of MV_ROWS) {
    it(`mv S/${row.src} D/${row.dst}: ${row.ok ? 'succeeds' : 'fails'} within a fileset and between two, as GNU mv`, () => {
      const f = fresh()
      expect(gnu(f.gnuRoot, ['mv', `S/${row.src}`, `D/${row.dst}`]), 'coreutils outcome as the table says').to.equal(row.ok)
      const want = hostTreeOf(path.join(f.gnuRoot, 'D'))
      const wantSrc = hostTreeOf(path.join(f.gnuRoot, 'S'))
      for (const from of ['root', 'src']) {
        const g = fresh()
        const ok = attempt(g.img, (vol) => {
          move(vol, [{fileset: from, path: `/S/${row.src}`}], {fileset: 'root', path: `/D/${row.dst}`}, (name) => namespace(vol, name))
          return true
        })
        const where = from === 'root' ? 'within the fileset' : 'from another fileset'
        expect(ok, `${where}: outcome`).to.equal(row.ok)
        expect(read(g.img, (ns) => imageTreeOf(ns, '/D')), `${where}: destination`).to.deep.equal(want)
        expect(read(g.img, (ns) => imageTreeOf(ns, '/S'), from), `${where}: source`).to.deep.equal(wantSrc)
        expect(fsckImage(g.img, {repair: false}).exitCode, `${where}: fsck`).to.equal(0)
      }
    })
  }

  for (const row of LN_ROWS) {
    const flags = `-${row.s ? 's' : ''}${row.f ? 'f' : ''}T`
    it(`ln ${flags} ${row.target} D/${row.link}: ${row.ok ? 'succeeds' : 'fails'} as GNU ln`, () => {
      const f = fresh()
      const gnuTarget = row.s ? row.target : `D/${row.target}`
      expect(gnu(f.gnuRoot, ['ln', flags, gnuTarget, `D/${row.link}`]), 'coreutils outcome as the table says').to.equal(row.ok)
      const g = fresh()
      const ok = attempt(g.img, (vol) => {
        const ns = namespace(vol, 'root')
        if (row.s) ns.symlink(row.target, `/D/${row.link}`, {force: row.f})
        else ns.link(`/D/${row.target}`, `/D/${row.link}`, {force: row.f})
        return true
      })
      expect(ok).to.equal(row.ok)
      expect(read(g.img, (ns) => imageTreeOf(ns, '/D'))).to.deep.equal(hostTreeOf(path.join(f.gnuRoot, 'D')))
      expect(fsckImage(g.img, {repair: false}).exitCode).to.equal(0)
    })
  }

  // write and truncate through the real CLI, against a shell redirection and GNU truncate.
  const WRITE_ROWS: Array<{p: string, ok: boolean}> = [
    {p: 'dir', ok: false}, {p: 'lnk-file', ok: true}, {p: 'dangling', ok: true}, {p: 'lnk-dir', ok: false}, {p: 'new', ok: true},
  ]
  for (const row of WRITE_ROWS) {
    it(`write D/${row.p}: ${row.ok ? 'succeeds' : 'fails'} as a shell's > does (through a final symlink, creating a dangling one's target)`, () => {
      const f = fresh()
      expect(gnu(f.gnuRoot, ['sh', '-c', 'cat > "$1"', 'sh', `D/${row.p}`], 'written\n')).to.equal(row.ok)
      const r = prism(['write', `root:/D/${row.p}`, '-i', f.img], {input: 'written\n'})
      expect(r.status === 0, r.stderr).to.equal(row.ok)
      if (!row.ok) expect(r.stderr).to.match(/^prism: .*is a directory\n$/)
      expect(read(f.img, (ns) => imageTreeOf(ns, '/D'))).to.deep.equal(hostTreeOf(path.join(f.gnuRoot, 'D')))
    })
  }
  const TRUNCATE_ROWS: Array<{p: string, c?: boolean, ok: boolean}> = [
    {p: 'dir', ok: false}, {p: 'lnk-file', ok: true}, {p: 'dangling', ok: true}, {p: 'missing', c: true, ok: true}, {p: 'precious.txt', ok: true},
  ]
  for (const row of TRUNCATE_ROWS) {
    it(`truncate -s 3 ${row.c ? '-c ' : ''}D/${row.p}: ${row.ok ? 'succeeds' : 'fails'} as GNU truncate`, () => {
      const f = fresh()
      const c = row.c ? ['-c'] : []
      expect(gnu(f.gnuRoot, ['truncate', '-s', '3', ...c, `D/${row.p}`])).to.equal(row.ok)
      const r = prism(['truncate', '-s', '3', ...c, `root:/D/${row.p}`, '-i', f.img])
      expect(r.status === 0, r.stderr).to.equal(row.ok)
      expect(read(f.img, (ns) => imageTreeOf(ns, '/D'))).to.deep.equal(hostTreeOf(path.join(f.gnuRoot, 'D')))
    })
  }
})

describe('type replacement through the CLI: each refusal named, the rest done, exit 1, nothing lost', function () {
  this.timeout(120_000)
  let dir: string
  let img: string
  before(() => {
    dir = tmpDir('prism-replace-cli-')
    img = newImage(dir, 64 << 20)
    makeHost(path.join(dir, 'S'), SRC)
    withImage(img, {write: true}, (vol) => {
      createEmptyFileset(vol, 'web')
      makeImage(namespace(vol, 'root'), '/D', DEST)
      makeImage(namespace(vol, 'web'), '/D', DEST)
      makeImage(namespace(vol, 'root'), '/S', SRC)
    })
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  const run = (...args: string[]) => prism([...args, '-i', img], {cwd: dir})

  it('cp -r of a directory onto a file: one line, exit 1, the file kept (host, image, another fileset, -T)', () => {
    for (const [src, dst] of [['S/srcdir', 'root:/D/precious.txt'], ['root:/S/srcdir', 'root:/D/precious.txt'], ['root:/S/srcdir', 'web:/D/precious.txt']]) {
      for (const T of [[], ['-T']]) {
        const r = run('cp', '-r', ...T, src, dst)
        expect(r.status, r.stderr).to.equal(1)
        expect(r.stderr).to.equal(`prism: cannot overwrite non-directory '${dst}' with directory '${src}'\n`)
        expect(run('cat', dst).stdout).to.equal('precious\n')
      }
    }
  })

  it('cp -rT of a tree: refused entries named one a line, the others copied, exit 1', () => {
    const r = run('cp', '-rT', 'S/srctree', 'root:/D/tree')
    expect(r.status).to.equal(1)
    expect(r.stderr.split('\n').filter(Boolean).sort()).to.deep.equal([
      "prism: cannot overwrite directory 'root:/D/tree/d' with non-directory 'S/srctree/d'",
      "prism: cannot overwrite non-directory 'root:/D/tree/sub' with directory 'S/srctree/sub'",
    ])
    expect(run('cat', 'root:/D/tree/f').stdout).to.equal('new f\n')
    expect(run('cat', 'root:/D/tree/new/n').stdout).to.equal('n\n')
    expect(run('cat', 'root:/D/tree/sub').stdout).to.equal('old sub\n')
    expect(run('cat', 'root:/D/tree/d/inner').stdout).to.equal('inner\n')
    const j = run('cp', '-rT', 'S/srctree', 'web:/D/tree', '--json')
    expect(j.status).to.equal(1)
    const out = JSON.parse(j.stdout)
    expect(out.errors.map((e: {code: string}) => e.code).sort()).to.deep.equal(['EISDIR', 'ENOTDIR'])
    expect(out.skipped).to.equal(2)
  })

  it('mv and ln -f refuse with GNU\'s words and change nothing', () => {
    const before = fs.readFileSync(img)
    const cases: Array<[string[], RegExp]> = [
      [['mv', 'root:/S/srcdir', 'root:/D/precious.txt'], /cannot overwrite non-directory 'root:\/D\/precious.txt' with directory 'root:\/S\/srcdir'/],
      [['mv', 'root:/S/srcdir', 'web:/D/precious.txt'], /cannot overwrite non-directory 'web:\/D\/precious.txt' with directory 'root:\/S\/srcdir'/],
      [['mv', 'root:/S/srcfile', 'web:/D/dir3'], /cannot overwrite directory 'web:\/D\/dir3\/srcfile' with non-directory 'root:\/S\/srcfile'/],
      [['mv', 'root:/S/srcdir', 'web:/D/dir5'], /cannot move 'root:\/S\/srcdir' to 'web:\/D\/dir5\/srcdir': directory not empty/],
      [['ln', '-f', 'root:/D/precious.txt', 'root:/D/dir'], /root:\/D\/dir: cannot overwrite directory/],
      [['ln', '-sf', 'x', 'root:/D/empty'], /root:\/D\/empty: cannot overwrite directory/],
    ]
    for (const [args, msg] of cases) {
      const r = run(...args)
      expect(r.status, args.join(' ')).to.equal(1)
      expect(r.stderr.trim().split('\n'), args.join(' ')).to.have.length(1)
      expect(r.stderr).to.match(msg)
    }
    expect(fs.readFileSync(img).equals(before), 'the image is unchanged').to.equal(true)
  })

  it('a clone graft never replaces nor merges: an existing target is refused', () => {
    for (const dst of ['web:/D/precious.txt', 'web:/D/lnk-dir/keep']) {
      const r = run('clone', 'root:/S/srcdir', dst)
      expect(r.status, dst).to.equal(1)
      expect(r.stderr).to.match(/already exists/)
    }
    expect(run('cat', 'web:/D/precious.txt').stdout).to.equal('precious\n')
    // Into an existing directory: made as DIR/basename, and refused when that exists too.
    expect(run('clone', 'root:/S/srcdir', 'web:/D/dir').status).to.equal(0)
    expect(run('cat', 'web:/D/dir/srcdir/a').stdout).to.equal('new a\n')
    const again = run('clone', 'root:/S/srcdir', 'web:/D/dir')
    expect(again.status).to.equal(1)
    expect(again.stderr).to.match(/web:\/D\/dir\/srcdir: already exists/)
  })
})

describe('type replacement: clone --replace', function () {
  this.timeout(60_000)

  it('puts the substitute at PATH whatever stood there in the clone (file, directory, symlink); the source keeps all of it', () => {
    const dir = tmpDir('prism-replace-clone-')
    try {
      const img = newImage(dir, 32 << 20)
      makeHost(path.join(dir, 'S'), SRC)
      withImage(img, {write: true}, (vol) => makeImage(namespace(vol, 'root'), '/D', DEST))
      const before = read(img, (ns) => imageTreeOf(ns, '/'))
      withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {
        replace: [
          {path: '/D/precious.txt', source: '@empty-dir'}, // a file by a directory
          {path: '/D/dir', source: '@empty-file'}, // a directory by a file
          {path: '/D/tree', source: path.join(dir, 'S', 'srcfile')}, // a directory by a host file
          {path: '/D/empty', source: path.join(dir, 'S', 'srcdir')}, // a directory by a host directory (not merged)
          {path: '/D/lnk-dir', source: 'root:/D/deep'}, // a symlink by a directory of another path
          {path: '/D/dir5', source: 'root:/D/precious.txt'},
        ],
      }))
      const got = read(img, (ns) => imageTreeOf(ns, '/D'), 'c')
      expect(got['precious.txt']).to.equal('dir')
      expect(got['dir']).to.equal('file:')
      expect(got['dir/keep']).to.equal(undefined)
      expect(got['tree']).to.equal('file:new file\n')
      expect(Object.keys(got).filter((p) => p.startsWith('empty/')).sort()).to.deep.equal(['empty/a', 'empty/sub', 'empty/sub/x'])
      expect(got['lnk-dir']).to.equal('dir')
      expect(got['lnk-dir/a/b/c']).to.equal('file:deep file\n')
      expect(got['dir5']).to.equal('file:precious\n')
      expect(read(img, (ns) => imageTreeOf(ns, '/')), 'the source fileset').to.deep.equal(before)
      expect(fsckImage(img, {repair: false}).exitCode).to.equal(0)
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })

  it('fails the whole clone when a host source cannot be copied completely', function () {
    const dir = tmpDir('prism-replace-clone-')
    try {
      fs.chmodSync(dir, 0o755)
      const img = newImage(dir, 32 << 20)
      const src = path.join(dir, 'with-secret')
      fs.mkdirSync(src)
      fs.writeFileSync(path.join(src, 'ok'), 'ok')
      fs.writeFileSync(path.join(src, 'secret'), 'secret')
      fs.chmodSync(path.join(src, 'secret'), 0)
      // Root reads everything: the clone runs as a user who may not read 'secret'.
      const how = asUser(path.join(src, 'secret'))
      if ('skip' in how) {
        console.log(`      (skipped: ${how.skip})`)
        this.skip()
      }
      const {prefix} = how as {prefix: string[]}
      if (prefix.length) fs.chownSync(img, NOBODY, NOBODY)
      const before = sha256File(img)
      const argv = [...prefix, process.execPath, BIN, 'clone', 'root', 'c', '--replace', `/x=${src}`, '-i', img]
      const r = spawnSync(argv[0], argv.slice(1), {cwd: dir, encoding: 'utf8', env: {...process.env, HOME: dir, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}})
      expect(r.status, r.stderr).to.equal(1)
      expect(r.stderr).to.match(/--replace \/x=.*secret.*Permission denied/)
      expect(r.stderr.trim().split('\n')).to.have.length(1)
      expect(sha256File(img), 'the image').to.equal(before)
      expect(prism(['ls', 'c:/', '-i', img]).status).to.equal(1)
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
