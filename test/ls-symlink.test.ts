// ls and stat describe a symlink itself unless asked to follow it (issue 15, point 7), with
// GNU ls's rules for what a command-line symlink shows: `ls -l link` the link, `ls link` the
// directory it leads to (or the link, when it leads to no directory, nowhere, or round in a
// loop), -H follows command-line symlinks, -L every symlink, -R never enters a symlink
// without -L, a trailing slash means the directory. Each case runs in a fileset and in a lazy
// clone of it (its absolute symlinks start at the clone's own root), through the real CLI.
import fs from 'node:fs'
import {expect} from 'chai'
import {clone} from '../src/clone/clone.js'
import {edit, newImage, prism, tmpDir} from './helpers.js'

interface Case {
  args: string[]
  /** stdout, exactly, or a pattern */
  out: string | RegExp
  err?: string[]
  status?: number
}

const LS_D = 'sub\nup\nx\n'
const CASES: Case[] = [
  // a dangling symlink
  {args: ['ls', '-l', 'X:/dang'], out: /^lrwxrwxrwx +1 +0 +0 +8 .* dang -> \/nowhere\n$/},
  {args: ['ls', 'X:/dang'], out: 'dang\n'},
  {args: ['ls', '-H', 'X:/dang'], out: '', err: ['prism: X:/dang: no such file or directory'], status: 1},
  {args: ['ls', '-L', 'X:/dang'], out: '', err: ['prism: X:/dang: no such file or directory'], status: 1},
  {args: ['stat', 'X:/dang'], out: /^ {2}File: X:\/dang -> \/nowhere\n {2}Type: symlink {2}Size: 8 /},
  {args: ['stat', '-L', 'X:/dang'], out: '', err: ['prism: X:/dang: no such file or directory'], status: 1},
  {args: ['cat', 'X:/dang'], out: '', err: ['prism: X:/dang: no such file or directory'], status: 1},
  // symlinks to a directory: relative, absolute (from the fileset's own root), through another symlink
  ...['dl', 'dla', 'dd'].flatMap((l): Case[] => [
    {args: ['ls', `X:/${l}`], out: LS_D},
    {args: ['ls', '-l', `X:/${l}`], out: new RegExp(`^lrwxrwxrwx .* ${l} -> \\S+\\n$`)},
    {args: ['ls', '-l', `X:/${l}/`], out: /^drwxr-xr-x .* sub\nlrwxrwxrwx .* up -> \.\.\n-rw-r--r-- .* x\n$/},
    {args: ['ls', '-lH', `X:/${l}`], out: /^drwxr-xr-x .* sub\nlrwxrwxrwx .* up -> \.\.\n-rw-r--r-- .* x\n$/},
    {args: ['ls', '-H', `X:/${l}`], out: LS_D},
    {args: ['stat', `X:/${l}`], out: /Type: symlink/},
    {args: ['stat', '-L', `X:/${l}`], out: /Type: dir/},
    {args: ['stat', `X:/${l}/`], out: /Type: dir/},
  ]),
  // loops
  ...['loop', 'ping'].flatMap((l): Case[] => [
    {args: ['ls', `X:/${l}`], out: `${l}\n`},
    {args: ['ls', '-l', `X:/${l}`], out: new RegExp(`^lrwxrwxrwx .* ${l} -> \\S+\\n$`)},
    {args: ['ls', '-H', `X:/${l}`], out: '', err: [`prism: X:/${l}: too many levels of symbolic links`], status: 1},
    {args: ['ls', '-l', `X:/${l}/`], out: '', err: [`prism: X:/${l}/: too many levels of symbolic links`], status: 1},
    {args: ['stat', `X:/${l}`], out: /Type: symlink/},
    {args: ['stat', '-L', `X:/${l}`], out: '', err: [`prism: X:/${l}: too many levels of symbolic links`], status: 1},
  ]),
  // a symlink to a file
  {args: ['ls', 'X:/fl'], out: 'fl\n'},
  {args: ['ls', '-l', 'X:/fl'], out: /^lrwxrwxrwx .* fl -> f\n$/},
  {args: ['ls', '-lL', 'X:/fl'], out: /^-rw-r--r-- +1 +0 +0 +5 .* fl\n$/},
  {args: ['ls', '-l', 'X:/fl/'], out: '', err: ['prism: X:/fl/: not a directory'], status: 1},
  {args: ['stat', 'X:/f/'], out: '', err: ['prism: X:/f/: not a directory'], status: 1},
  {args: ['cat', 'X:/fl'], out: 'file\n'},
  // symlinks in the middle of a path, then '..' (which stays inside the fileset)
  {args: ['ls', 'X:/dl/sub'], out: 'y\n'},
  {args: ['ls', '-l', 'X:/dla/sub/y'], out: /^-rw-r--r-- .* y\n$/},
  {args: ['ls', 'X:/dla/../../../d'], out: LS_D},
  {args: ['cat', 'X:/dd/up/dla/sub/../x'], out: 'x\n'},
  {args: ['stat', 'X:/dla/up'], out: /File: X:\/dla\/up -> \.\.\n/},
  // -R never enters a symlink; -RL does, and stops where a symlink leads back up
  {args: ['ls', '-R', 'X:/'], out: 'X:/:\nd\ndang\ndd\ndl\ndla\nf\nfl\nloop\nping\npong\n\nX:/d:\nsub\nup\nx\n\nX:/d/sub:\ny\n'},
  {args: ['ls', '-R', 'X:/dl'], out: 'X:/dl:\nsub\nup\nx\n\nX:/dl/sub:\ny\n'},
  {args: ['ls', '-RL', 'X:/d'], out: /^X:\/d:\nsub\nup\nx\n\nX:\/d\/sub:\ny\n\nX:\/d\/up:\nd\n/, status: 1},
  // --json shows the same
  {args: ['ls', '-l', '--json', 'X:/dang'], out: /"type": "symlink",[^}]*"target": "\/nowhere"/},
  {args: ['ls', '--json', 'X:/dl'], out: /"name": "sub"[^]*"name": "up"[^]*"name": "x"/},
  {args: ['stat', '--json', 'X:/dang', 'X:/dl/'], out: /^\[\n {2}\{\n {4}"path": "X:\/dang",[^]*"type": "symlink",[^]*"target": "\/nowhere"[^]*"path": "X:\/dl\/",[^]*"type": "dir"/},
]

describe('ls and stat with symlinks (issue 15, point 7)', function () {
  this.timeout(600000)
  let dir: string
  let img: string

  before(() => {
    dir = tmpDir()
    img = newImage(dir)
    edit(img, (ns, vol) => {
      ns.mkdir('/d')
      ns.writeFile('/d/x', Buffer.from('x\n'))
      ns.mkdir('/d/sub')
      ns.writeFile('/d/sub/y', Buffer.from('y\n'))
      ns.symlink('..', '/d/up')
      ns.symlink('d', '/dl')
      ns.symlink('/d', '/dla')
      ns.symlink('dl', '/dd')
      ns.symlink('/nowhere', '/dang')
      ns.symlink('loop', '/loop')
      ns.symlink('pong', '/ping')
      ns.symlink('/ping', '/pong')
      ns.writeFile('/f', Buffer.from('file\n'))
      ns.symlink('f', '/fl')
      vol.commit()
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz'}, {mode: 'lazy'})
    })
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  for (const fsName of ['root', 'lz']) {
    it(`in ${fsName === 'root' ? 'a fileset' : 'a lazy clone'}: ${CASES.length} cases of ls, stat and cat`, () => {
      for (const c of CASES) {
        const args = c.args.map((a) => a.replace(/^X:/, `${fsName}:`))
        const r = prism([...args, '-i', img], {cwd: dir})
        const what = args.join(' ')
        const out = r.stdout.replaceAll(`${fsName}:`, 'X:')
        if (typeof c.out === 'string') expect(out, `${what}: stdout`).to.equal(c.out)
        else expect(out, `${what}: stdout`).to.match(c.out)
        if (c.err) expect(r.stderr.replaceAll(`${fsName}:`, 'X:').split('\n').filter(Boolean), `${what}: stderr`).to.deep.equal(c.err)
        else if (c.status === undefined) expect(r.stderr, `${what}: stderr`).to.equal('')
        expect(r.status, `${what}: status (${r.stderr})`).to.equal(c.status ?? 0)
      }
    })
  }

  it('ls -RL lists a directory again through each symlink to it, never one above itself', () => {
    const r = prism(['ls', '-RL', 'root:/', '-i', img], {cwd: dir})
    expect(r.status).to.equal(1)
    const heads = r.stdout.split('\n').filter((l) => l.endsWith(':'))
    expect(heads).to.include.members(['root:/:', 'root:/d:', 'root:/dl:', 'root:/dla:', 'root:/dd:', 'root:/dl/sub:'])
    const errs = r.stderr.split('\n').filter(Boolean)
    expect(errs).to.include.members([
      'prism: root:/dang: no such file or directory', 'prism: root:/loop: too many levels of symbolic links',
      'prism: root:/d/up: not listing already-listed directory', 'prism: root:/dl/up: not listing already-listed directory',
    ])
    expect(errs.every((l) => /^prism: root:\/\S+: (no such file or directory|too many levels of symbolic links|not listing already-listed directory)$/.test(l)), errs.join('\n')).to.equal(true)
  })
})
