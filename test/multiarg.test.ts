// Commands that take several arguments (issue 15, point 8) handle every good argument and
// report each bad one on its own line, as coreutils do, and exit 1 at the end. A table of
// every such command, each run with its bad arguments first, in the middle, last, and
// several at once, through the real CLI. The oracle is the same command run with the good
// arguments only: the mixed run must print exactly what it printed on stdout, one line per
// bad argument on stderr (in order), exit 1, and leave the image (and, for an export, the
// host directory) exactly as it did. A run of bad arguments only changes nothing.
import fs from 'node:fs'
import path from 'node:path'
import {createHash} from 'node:crypto'
import {expect} from 'chai'
import {clone} from '../src/clone/clone.js'
import {IF_NOCLONE} from '../src/format/constants.js'
import {listFilesets} from '../src/fs/filesets.js'
import {namespace, withImage} from '../src/fs/image.js'
import type {Namespace} from '../src/fs/namespace.js'
import {edit, newImage, prism, sha256File, tmpDir} from './helpers.js'

interface Bad {
  arg: string
  /** the line it must print on stderr */
  line: string
}

interface Case {
  name: string
  /** arguments before the paths (the command, flags, chmod's mode) */
  head: string[]
  good: string[]
  bad: Bad[]
  /** arguments after the paths (a destination); HOST stands for a fresh host directory */
  tail?: string[]
  /** the image with lazy clones */
  clones?: boolean
  /** the exit status a failed argument gives (scan: clamscan's 2) */
  status?: number
  /** a line of stdout that counts the errors (scan's summary) */
  normalize?: (stdout: string) => string
}

const NOFS = "prism: no fileset named 'nosuch' (see 'prism fileset list')"
const missing = (loc: string): Bad => ({arg: loc, line: `prism: ${loc}: no such file or directory`})
const nofs = (p = '/x'): Bad => ({arg: `nosuch:${p}`, line: NOFS})

const CASES: Case[] = [
  {name: 'cat', head: ['cat'], good: ['root:/a', 'root:/b', 'root:/g'],
    bad: [missing('root:/missing'), {arg: 'root:/d', line: 'prism: root:/d: is a directory'}, {arg: 'root:/a/x', line: "prism: root:/a/x: 'a' is not a directory"}, nofs()]},
  {name: 'cat (through oclif)', head: ['cat', '--wait=1', '--image=IMAGE'], good: ['root:/a', 'root:/b'], bad: [missing('root:/missing'), nofs()]},
  {name: 'ls', head: ['ls'], good: ['root:/d', 'root:/a', 'root:/e'], bad: [missing('root:/missing'), nofs('/'), {arg: 'root:/a/x', line: "prism: root:/a/x: 'a' is not a directory"}]},
  {name: 'ls -lR --json', head: ['ls', '-lR', '--json'], good: ['root:/d', 'root:/'], bad: [missing('root:/missing'), nofs('/')]},
  {name: 'stat', head: ['stat'], good: ['root:/a', 'root:/d', 'root:/l'], bad: [missing('root:/missing'), nofs()]},
  {name: 'stat --json', head: ['stat', '--json'], good: ['root:/a', 'root:/l'], bad: [missing('root:/missing'), {arg: 'root:/a/x', line: "prism: root:/a/x: 'a' is not a directory"}]},
  {name: 'rm', head: ['rm'], good: ['root:/a', 'root:/b', 'root:/l'], bad: [missing('root:/missing'), {arg: 'root:/d', line: 'prism: root:/d: is a directory (use rm -r)'}]},
  {name: 'rm -r', head: ['rm', '-r'], good: ['root:/d', 'root:/b'], bad: [missing('root:/missing'), {arg: 'root:/', line: "prism: root:/: is the fileset's root"}]},
  {name: 'rm -f', head: ['rm', '-f'], good: ['root:/a', 'root:/g'], bad: [{arg: 'root:/d', line: 'prism: root:/d: is a directory (use rm -r)'}]},
  {name: 'mkdir', head: ['mkdir'], good: ['root:/n1', 'root:/d/n2', 'root:/n3'],
    bad: [{arg: 'root:/a', line: 'prism: root:/a: already exists'}, {arg: 'root:/missing/x', line: 'prism: root:/missing: no such file or directory'}]},
  {name: 'mkdir -p', head: ['mkdir', '-p', '-m', '700'], good: ['root:/p/q/r', 'root:/d/s'],
    bad: [{arg: 'root:/a/x/y', line: 'prism: root:/a: exists and is not a directory'}, nofs()]},
  {name: 'chmod', head: ['chmod', '600'], good: ['root:/a', 'root:/g', 'root:/d'], bad: [missing('root:/missing'), nofs()]},
  {name: 'chmod symbolic', head: ['chmod', 'u+x,go-r'], good: ['root:/g', 'root:/d'], bad: [missing('root:/missing')]},
  {name: 'truncate', head: ['truncate', '-s', '3'], good: ['root:/a', 'root:/new', 'root:/g'],
    bad: [{arg: 'root:/missing/x', line: 'prism: root:/missing: no such file or directory'}, {arg: 'root:/d', line: 'prism: root:/d: cannot truncate a directory'}]},
  {name: 'noclone', head: ['noclone'], good: ['root:/d', 'root:/a'], bad: [missing('root:/missing'), nofs()]},
  {name: 'noclone --clear', head: ['noclone', '--clear'], good: ['root:/e', 'root:/g'], bad: [missing('root:/missing')]},
  {name: 'cp host to image', head: ['cp'], good: ['HOSTSRC/x', 'HOSTSRC/y'], tail: ['root:/e/'],
    bad: [{arg: 'HOSTSRC/nope', line: "prism: cannot stat 'HOSTSRC/nope': No such file or directory"}, {arg: 'HOSTSRC/sub', line: "prism: -r not specified; omitting directory 'HOSTSRC/sub'"}]},
  {name: 'cp -r host to image', head: ['cp', '-r'], good: ['HOSTSRC/sub', 'HOSTSRC/x'], tail: ['root:/e/'],
    bad: [{arg: 'HOSTSRC/nope', line: "prism: cannot stat 'HOSTSRC/nope': No such file or directory"}]},
  {name: 'cp in the image', head: ['cp'], good: ['root:/a', 'root:/b', 'root:/l'], tail: ['root:/e'],
    bad: [missing('root:/missing'), {arg: 'root:/d', line: "prism: -r not specified; omitting directory 'root:/d'"}]},
  {name: 'cp -r to another fileset', head: ['cp', '-r'], good: ['root:/d', 'root:/a'], tail: ['other:/'],
    bad: [missing('root:/missing'), nofs()]},
  {name: 'cp -r image to host', head: ['cp', '-r'], good: ['root:/d', 'root:/a', 'root:/l'], tail: ['HOST'],
    bad: [missing('root:/missing'), nofs()]},
  {name: 'mv', head: ['mv'], good: ['root:/a', 'root:/d', 'root:/l'], tail: ['root:/e'],
    bad: [missing('root:/missing'), {arg: 'root:/', line: "prism: cannot move the root of fileset 'root'"}]},
  {name: 'mv to another fileset', head: ['mv'], good: ['root:/d', 'root:/g'], tail: ['other:/'], bad: [missing('root:/missing'), nofs()]},
  {name: 'expand', head: ['expand'], good: ['lz1', 'lz2'], clones: true, bad: [{arg: 'nosuch', line: NOFS}]},
  {name: 'scan', head: ['scan', '--exec', 'exit 0'], good: ['root', 'other'], status: 2, bad: [{arg: 'nosuch', line: NOFS}, {arg: 'nope', line: NOFS.replace('nosuch', 'nope')}],
    normalize: (s) => s.replace(/\d+ error\(s\)/, 'N error(s)')},
]

/** Every fileset's tree: types, modes, flags, link counts, sizes, contents, targets. */
function describe_(img: string): string[] {
  return withImage(img, {write: false}, (vol) => listFilesets(vol).flatMap((f) => {
    const ns = namespace(vol, f.name)
    const out: string[] = []
    const walk = (ns: Namespace, dir: string) => {
      for (const e of ns.readdirStat(dir)) {
        const p = (dir === '/' ? '' : dir) + '/' + e.name
        const st = e.st
        const what = st.type === 'file' ? createHash('sha256').update(ns.readFile(p)).digest('hex').slice(0, 12) : st.target ?? ''
        out.push(`${f.name}:${p} ${st.type} ${st.perm.toString(8)} nlink=${st.nlink} size=${st.type === 'dir' ? '-' : st.size} ${st.flags.filter((x) => x !== 'inline').join(',')} ${what}`)
        if (st.type === 'dir') walk(ns, p)
      }
    }
    walk(ns, '/')
    return [`${f.name} state=${f.state}`, ...out]
  }))
}

function hostTree(top: string): string[] {
  if (!fs.existsSync(top)) return []
  const out: string[] = []
  const walk = (p: string, rel: string) => {
    const st = fs.lstatSync(p)
    if (st.isDirectory()) {
      out.push(`${rel}/ ${(st.mode & 0o7777).toString(8)}`)
      for (const n of fs.readdirSync(p).sort()) walk(path.join(p, n), `${rel}/${n}`)
    } else if (st.isSymbolicLink()) out.push(`${rel} -> ${fs.readlinkSync(p)}`)
    else out.push(`${rel} ${(st.mode & 0o7777).toString(8)} ${fs.readFileSync(p, 'utf8')}`)
  }
  for (const n of fs.readdirSync(top).sort()) walk(path.join(top, n), n)
  return out
}

describe('commands with several arguments (issue 15, point 8)', function () {
  this.timeout(600000)
  let dir: string
  let base: string
  let withClones: string

  before(() => {
    dir = tmpDir()
    base = newImage(dir)
    edit(base, (ns, vol) => {
      ns.writeFile('/a', Buffer.from('alpha\n'))
      ns.writeFile('/b', Buffer.from('beta\n'))
      ns.writeFile('/g', Buffer.from('gamma\n'))
      ns.mkdir('/d')
      ns.writeFile('/d/x', Buffer.from('in d\n'))
      ns.mkdir('/e')
      ns.symlink('a', '/l')
      ns.setFlag('/e', IF_NOCLONE, true)
      ns.setFlag('/g', IF_NOCLONE, true)
      vol.commit()
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'other'}, {mode: 'sync', exclude: ['/d', '/e']})
    })
    withClones = path.join(dir, 'clones.img')
    fs.copyFileSync(base, withClones)
    edit(withClones, (_ns, vol) => {
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz1'}, {mode: 'lazy'})
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz2'}, {mode: 'async'})
    })
    const src = path.join(dir, 'hostsrc')
    fs.mkdirSync(path.join(src, 'sub'), {recursive: true})
    fs.writeFileSync(path.join(src, 'x'), 'host x\n')
    fs.writeFileSync(path.join(src, 'y'), 'host y\n')
    fs.writeFileSync(path.join(src, 'sub', 'z'), 'host z\n')
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  let runs = 0
  /** Runs the case's command on a fresh copy of its image with these paths. */
  function run(c: Case, paths: string[]): {status: number, stdout: string, stderr: string, image: string[], host: string[], sha: [string, string]} {
    const n = runs++
    const img = path.join(dir, `run${n}.img`)
    fs.copyFileSync(c.clones ? withClones : base, img)
    const host = path.join(dir, `host${n}`)
    fs.mkdirSync(host)
    const sub = (a: string) => a.replace('HOSTSRC', path.join(dir, 'hostsrc')).replace(/^HOST$/, host).replace('IMAGE', img)
    const before = sha256File(img)
    const r = prism([...c.head.map(sub), ...paths.map(sub), ...(c.tail ?? []).map(sub), ...(c.head.some((h) => h.includes('IMAGE')) ? [] : ['-i', img])], {cwd: dir})
    const out = {...r, stderr: r.stderr.replaceAll(path.join(dir, 'hostsrc'), 'HOSTSRC'), image: describe_(img), host: hostTree(host), sha: [before, sha256File(img)] as [string, string]}
    fs.rmSync(img)
    fs.rmSync(host, {recursive: true, force: true})
    return out
  }

  for (const c of CASES) {
    it(`${c.name}: every good argument is done, each bad one reported on its line, exit ${c.status ?? 1}`, () => {
      const want = run(c, c.good)
      expect(want.stderr, `${c.name} with good arguments only`).to.equal('')
      expect(want.status, `${c.name} with good arguments only: ${want.stderr}`).to.equal(0)
      const [b1, b2] = [c.bad[0], c.bad[c.bad.length - 1]]
      const g = c.good
      const orders: Array<Array<string | Bad>> = [
        [b1, ...g], // bad first
        [g[0], b2, ...g.slice(1)], // in the middle
        [...g, b1], // last
        [b1, ...g.slice(0, 1), ...c.bad, ...g.slice(1)], // several
      ]
      for (const order of orders) {
        const args = order.map((x) => typeof x === 'string' ? x : x.arg)
        const got = run(c, args)
        const what = `${c.head.join(' ')} ${args.join(' ')}`
        const lines = order.filter((x): x is Bad => typeof x !== 'string').map((x) => x.line)
        expect(got.stderr.split('\n').filter(Boolean), `${what}: stderr`).to.deep.equal(lines)
        expect(got.status, `${what}: status`).to.equal(c.status ?? 1)
        const norm = c.normalize ?? ((s: string) => s)
        expect(norm(got.stdout), `${what}: stdout`).to.equal(norm(want.stdout))
        expect(got.image, `${what}: the image`).to.deep.equal(want.image)
        expect(got.host, `${what}: the host directory`).to.deep.equal(want.host)
      }
      // Bad arguments only: an error line each, and nothing changes.
      const none = run(c, c.bad.map((b) => b.arg))
      expect(none.stderr.split('\n').filter(Boolean), `${c.name}, bad arguments only`).to.deep.equal(c.bad.map((b) => b.line))
      expect(none.status).to.equal(c.status ?? 1)
      if (!c.clones) expect(none.sha[1], `${c.name}, bad arguments only: the image`).to.equal(none.sha[0])
      expect(none.host).to.deep.equal([])
    })
  }
})
