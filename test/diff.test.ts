// prism diff on real image files: the codes after known edits of a clone, shared inodes
// never read, unexpanded subtrees skipped, directories renamed, the CLI, and a model check
// (fast-check): random edits to a clone of a fileset (directories moved among them), then
// the diff equals the one computed from two in-memory models of the trees.
import {expect} from 'chai'
import fs from 'node:fs'
import fc from 'fast-check'
import {clone} from '../src/clone/clone.js'
import {diff, type DiffEntry} from '../src/diff/diff.js'
import {DT_DIR, IF_NOCLONE} from '../src/format/constants.js'
import {dirAdd, dirForEach} from '../src/fs/dir.js'
import {getFileset} from '../src/fs/filesets.js'
import {namespace, withImage} from '../src/fs/image.js'
import type {Volume} from '../src/fs/volume.js'
import {edit, newImage, prism, tmpDir} from './helpers.js'

const line = (e: DiffEntry) => (e.code === 'R' ? `R ${e.path} -> ${e.to}` : `${e.code} ${e.path}`)

/** Writable, as the CLI opens it when a clone is still expanding: reaching one expands it. */
function diffLines(img: string, a: string, b: string) {
  return withImage(img, {write: true}, (vol) => {
    const r = diff(vol, {fileset: a, path: '/'}, {fileset: b, path: '/'})
    return {lines: r.entries.map(line), stats: r.stats}
  })
}

/** Inode numbers of every file in a fileset. */
function fileInos(vol: Volume, fileset: string): Set<number> {
  const out = new Set<number>()
  const stack = [getFileset(vol, fileset).rootIno]
  while (stack.length) {
    dirForEach(vol, vol.iget(stack.pop()!), (ino, type) => { if (type === DT_DIR) stack.push(ino); else out.add(ino) })
  }
  return out
}

describe('diff', function () {
  this.timeout(300000)
  let dir: string
  let img: string
  beforeEach(() => {
    dir = tmpDir()
    img = newImage(dir, 64 << 20)
    edit(img, (ns, vol) => {
      ns.mkdir('/etc')
      ns.mkdir('/var/log', {parents: true})
      ns.mkdir('/home/alice', {parents: true})
      ns.writeFile('/etc/passwd', Buffer.from('root:x:0:0\n'))
      ns.writeFile('/etc/hosts', Buffer.from('127.0.0.1 localhost\n'))
      ns.writeFile('/etc/motd', Buffer.from('hello\n'))
      ns.writeFile('/var/log/syslog', Buffer.alloc(100000, 'l'))
      ns.writeFile('/home/alice/notes', Buffer.from('notes'))
      ns.writeFile('/home/alice/big', Buffer.alloc(300000, 'b'))
      ns.symlink('/etc/hosts', '/hosts-link')
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c1'})
    })
  })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('lists additions, removals, modifications, renames and attribute changes', () => {
    edit(img, (ns) => {
      ns.writeFile('/etc/passwd', Buffer.from('root:x:0:0\nalice:x:1000:1000\n')) // M
      ns.chmod('/etc/hosts', 0o600) // A (copied inode, same blocks)
      ns.rename('/etc/motd', '/etc/motd.old') // R
      ns.unlink('/var/log/syslog') // -
      ns.mkdir('/srv') // +
      ns.writeFile('/srv/index.html', Buffer.from('<html>')) // +
      ns.remove('/home/alice', {recursive: true}) // - for the dir and its files
      ns.writeFile('/hosts-link-2', Buffer.from('x')) // +
    }, 'c1')
    const {lines, stats} = diffLines(img, 'root', 'c1')
    expect(lines).to.deep.equal([
      'A /etc/hosts',
      'R /etc/motd -> /etc/motd.old',
      'M /etc/passwd',
      '- /home/alice',
      '- /home/alice/big',
      '- /home/alice/notes',
      '+ /hosts-link-2',
      '+ /srv',
      '+ /srv/index.html',
      '- /var/log/syslog',
    ])
    // Shared inodes (same inode both sides) are never read; the chmod copy shares its
    // blocks with the original, so nothing at all was read here but the sizes differed.
    withImage(img, {write: false}, (vol) => {
      const a = fileInos(vol, 'root')
      const b = fileInos(vol, 'c1')
      for (const ino of stats.readInodes) expect(a.has(ino) && b.has(ino), `inode ${ino} is shared`).to.equal(false)
    })
    expect(stats.shared).to.equal(1) // the symlink
    expect(stats.bytesRead).to.equal(0)
    // The other way round, every code inverts.
    expect(diffLines(img, 'c1', 'root').lines).to.include.members(['R /etc/motd.old -> /etc/motd', '+ /home/alice', '+ /var/log/syslog', '- /srv/index.html', 'M /etc/passwd', 'A /etc/hosts'])
  })

  it('compares content only where the inodes and block maps differ', () => {
    edit(img, (ns) => {
      // same bytes written anew: new blocks, so the content is read; only the mtime differs
      ns.writeFile('/var/log/syslog', Buffer.alloc(100000, 'l'))
      ns.writeFile('/etc/passwd', Buffer.from('root:x:0:0\n')) // inline: compared in the inode
    }, 'c1')
    const {lines, stats} = diffLines(img, 'root', 'c1')
    expect(lines).to.deep.equal(['A /etc/passwd', 'A /var/log/syslog'])
    expect(stats.inodesRead).to.equal(2)
    expect(stats.bytesRead).to.equal(200000)
    expect(diffLines(img, 'root', 'root').lines).to.deep.equal([])
    expect(diffLines(img, 'root', 'root').stats.dirsSkipped).to.equal(1)
  })

  it('skips subtrees still unexpanded from the other side, and expands those it must compare', () => {
    // A lazy clone: its directories stay unexpanded, each naming its source, until reached.
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz'}, {mode: 'lazy'}))
    const top = withImage(img, {write: false}, (vol) => namespace(vol, 'root').readdir('/').filter((e) => e.type === 'dir').length)
    let r = diffLines(img, 'root', 'lz')
    expect(r.lines).to.deep.equal([])
    expect(r.stats.dirsSkipped).to.equal(top) // every top-level directory: never entered
    edit(img, (ns) => ns.writeFile('/home/alice/new', Buffer.from('n')), 'lz')
    r = diffLines(img, 'root', 'lz')
    expect(r.lines).to.deep.equal(['+ /home/alice/new'])
    // A clone with --exclude leaves parts out: its unexpanded directories are expanded and compared.
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lx'}, {mode: 'lazy', exclude: ['/etc/motd']}))
    expect(diffLines(img, 'root', 'lx').lines).to.deep.equal(['- /etc/motd'])
  })

  it('sees a hard-linked file the source or the clone changed after the clone under every name, expanded or not', () => {
    // The source rewrites a file with two names while a clone is in flight: the clone keeps
    // a copy of the old one (guardLinked) that its unexpanded directories, which name the
    // source's, give to the names they expand. Skipping such a directory as "unexpanded from
    // the other side" missed /d/l (it did, found by test/readonly-view.test.ts's random runs).
    edit(img, (ns) => { ns.mkdir('/d'); ns.writeFile('/f', Buffer.from('old')); ns.link('/f', '/d/l') })
    for (const mode of ['lazy', 'async'] as const) {
      withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: `h${mode}`}, {mode}))
    }
    edit(img, (ns) => ns.writeFile('/f', Buffer.from('new, longer')))
    for (const c of ['hlazy', 'hasync']) {
      const want = ['M /d/l', 'M /f']
      // Read-only (the directories expanded in memory) and writable, both ways round, then expanded.
      const ro = withImage(img, {write: false}, (vol) => diff(vol, {fileset: c, path: '/'}, {fileset: 'root', path: '/'}).entries.map(line))
      expect(ro, `${c}, read-only`).to.deep.equal(want)
      expect(diffLines(img, 'root', c).lines, c).to.deep.equal(want)
      withImage(img, {write: true}, (vol) => namespace(vol, c).materialize('/'))
      expect(diffLines(img, c, 'root').lines, `${c}, expanded`).to.deep.equal(want)
      expect(withImage(img, {write: false}, (vol) => namespace(vol, c).readFile('/d/l').toString()), c).to.equal('old')
    }
    // The clone rewrites it instead: its copy, which its other name expands to, holds the new content.
    for (const mode of ['lazy', 'async'] as const) {
      const c = `w${mode}`
      withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: c}, {mode}))
      edit(img, (ns) => ns.writeFile('/f', Buffer.from('the clone wrote this')), c)
      const want = ['M /d/l', 'M /f']
      expect(withImage(img, {write: false}, (vol) => diff(vol, {fileset: 'root', path: '/'}, {fileset: c, path: '/'}).entries.map(line)), `${c}, read-only`).to.deep.equal(want)
      expect(diffLines(img, 'root', c).lines, c).to.deep.equal(want)
      expect(withImage(img, {write: false}, (vol) => namespace(vol, c).readFile('/d/l').toString()), c).to.equal('the clone wrote this')
    }
  })

  it('shows what a noclone mark leaves out of a clone, whether or not the clone has expanded there', () => {
    edit(img, (ns) => { ns.setFlag('/home/alice/big', IF_NOCLONE, true); ns.setFlag('/var/log', IF_NOCLONE, true) })
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz'}, {mode: 'lazy'}))
    const want = ['- /home/alice/big', '- /var/log', '- /var/log/syslog']
    const before = diffLines(img, 'root', 'lz')
    expect(before.lines).to.deep.equal(want)
    expect(before.stats.inodesScanned).to.be.greaterThan(0)
    // Subtrees with no mark are still skipped unread.
    expect(before.stats.dirsSkipped).to.equal(1) // /etc
    expect(diffLines(img, 'lz', 'root').lines).to.deep.equal(want.map((l) => '+' + l.slice(1)))
    withImage(img, {write: true}, (vol) => namespace(vol, 'lz').materialize('/'))
    expect(diffLines(img, 'root', 'lz').lines).to.deep.equal(want)
  })

  it('shows a directory renamed in a clone as R, and what changed in it at its new path, in every mode', () => {
    // A clone's directories are its own copies: the renamed directory is known by its files.
    edit(img, (ns) => {
      ns.mkdir('/home/alice/src/lib', {parents: true})
      for (const f of ['a.c', 'b.c', 'c.c']) ns.writeFile(`/home/alice/src/lib/${f}`, Buffer.from(f))
      ns.writeFile('/home/alice/src/main.c', Buffer.from('int main;'))
    })
    for (const mode of ['sync', 'lazy', 'async'] as const) {
      const c = `mv${mode}`
      withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: c}, {mode}))
      edit(img, (ns) => {
        ns.rename('/home/alice', '/home/bob')
        ns.writeFile('/home/bob/notes', Buffer.from('changed')) // M, at the new path
        ns.writeFile('/home/bob/new', Buffer.from('n')) // +
        ns.unlink('/home/bob/src/lib/c.c') // -, at the old path
        ns.rename('/home/bob/src/main.c', '/home/bob/src/main2.c') // R inside the renamed directory
        ns.chmod('/home/bob/src', 0o700) // A, a directory inside it
      }, c)
      const want = [
        'R /home/alice -> /home/bob',
        '- /home/alice/src/lib/c.c',
        'R /home/alice/src/main.c -> /home/bob/src/main2.c',
        '+ /home/bob/new',
        'M /home/bob/notes',
        'A /home/bob/src',
      ]
      expect(diffLines(img, 'root', c).lines, c).to.deep.equal(want)
      expect(diffLines(img, c, 'root').lines, `${c}, the other way`).to.deep.equal([
        '+ /home/alice/src/lib/c.c',
        'R /home/bob -> /home/alice',
        '- /home/bob/new',
        'M /home/alice/notes',
        'A /home/alice/src',
        'R /home/bob/src/main2.c -> /home/alice/src/main.c',
      ].sort((x, y) => (x.split(' ')[1] < y.split(' ')[1] ? -1 : x.split(' ')[1] > y.split(' ')[1] ? 1 : 0)))
      // The same directory moved deeper and renamed, with a file of it renamed too.
      edit(img, (ns) => { ns.mkdir('/srv'); ns.rename('/home/bob/src', '/srv/code') }, c)
      expect(diffLines(img, 'root', c).lines, `${c}, moved again`).to.include.members(['R /home/alice/src -> /srv/code', 'R /home/alice/src/main.c -> /srv/code/main2.c', '- /home/alice/src/lib/c.c'])
    }
    // Half the files or more on each side, or it is no rename: a directory emptied into a new
    // one but for one file of four, then removed, stays "-" and "+".
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'half'}))
    edit(img, (ns) => {
      ns.mkdir('/opt')
      ns.rename('/home/alice/src/lib/a.c', '/opt/a.c')
      ns.remove('/home/alice/src', {recursive: true})
    }, 'half')
    const lines = diffLines(img, 'root', 'half').lines
    expect(lines).to.include.members(['- /home/alice/src', '- /home/alice/src/lib', '+ /opt', 'R /home/alice/src/lib/a.c -> /opt/a.c'])
    expect(lines.filter((l) => l.startsWith('R ') && !l.endsWith('.c'))).to.deep.equal([])
    // The CLI prints it as a file's rename.
    const r = prism(['diff', 'root:/home/alice', 'mvsync:/srv', '-i', img])
    expect(r.status, r.stderr).to.equal(0)
    expect(r.stdout).to.equal('-\t/big\n-\t/notes\nR\t/src -> /code\n-\t/src/lib/c.c\nR\t/src/main.c -> /code/main2.c\n')
  })

  it('names a directory loop of a damaged image as not compared, and compares the rest (it ran out of memory)', () => {
    edit(img, (ns, vol) => {
      const d = ns.resolve('/etc', true)
      dirAdd(vol, d, d.ino, DT_DIR, Buffer.from('me')) // /etc/me -> /etc itself
      dirAdd(vol, d, ns.root().ino, DT_DIR, Buffer.from('up')) // /etc/up -> the root
      vol.idirty(d)
    })
    const r = withImage(img, {write: false}, (vol) => diff(vol, {fileset: 'root', path: '/'}, {fileset: 'c1', path: '/'}))
    expect(r.unreadable.map((u) => u.path)).to.deep.equal(['/etc/me', '/etc/up'])
    expect(r.unreadable[0].message).to.match(/reached twice \(a loop in a damaged image\)/)
    expect(r.entries.map(line)).to.deep.equal([])
  })

  it('prints zfs-style lines and JSON from the CLI; bad input is one line and exit 2 or 1', () => {
    edit(img, (ns) => { ns.rename('/etc/motd', '/motd'); ns.unlink('/etc/hosts') }, 'c1')
    const r = prism(['diff', 'root', 'c1', '-i', img])
    expect(r.status, r.stderr).to.equal(0)
    expect(r.stdout).to.equal('-\t/etc/hosts\nR\t/etc/motd -> /motd\n')
    const j = JSON.parse(prism(['diff', 'root:/etc', 'c1:/etc', '--json', '-i', img]).stdout)
    expect(j.entries).to.deep.equal([{code: '-', type: 'file', path: '/hosts'}, {code: '-', type: 'file', path: '/motd'}])
    const bad = prism(['diff', 'root', 'nosuch', '-i', img])
    expect(bad.status).to.equal(1)
    expect(bad.stderr).to.match(/^prism: no fileset named 'nosuch'/)
    expect(bad.stderr.trim().split('\n')).to.have.length(1)
    const notDir = prism(['diff', 'root:/etc/passwd', 'c1', '-i', img])
    expect(notDir.status).to.equal(1)
    expect(notDir.stderr).to.match(/not a directory/)
  })
})

// ---------------------------------------------------------------- the model check

interface MFile { kind: 'file', id: number, content: string, mode: number }
interface MDir { kind: 'dir' }
type Model = Map<string, MFile | MDir>

type Op =
  | {op: 'write', file: number, dirPick: number, content: string}
  | {op: 'chmod', file: number, mode: number}
  | {op: 'rename', file: number, dirPick: number, name: string}
  | {op: 'unlink', file: number}
  | {op: 'mkdir', dirPick: number, name: string}
  | {op: 'rmrf', dirPick: number}
  | {op: 'mvdir', dirPick: number, toPick: number, name: string}

const NAMES = ['a', 'b', 'c', 'd']
const parentOf = (p: string) => p.slice(0, p.lastIndexOf('/')) || '/'
const joinP = (d: string, n: string) => (d === '/' ? '' : d) + '/' + n

function files(m: Model): string[] { return [...m.keys()].filter((p) => m.get(p)!.kind === 'file').sort() }
function dirs(m: Model): string[] { return ['/', ...[...m.keys()].filter((p) => m.get(p)!.kind === 'dir').sort()] }

/**
 * The diff the models imply (same rules as the command's documentation): files are known by
 * their id; a directory only in a and one only in b are one renamed when at least half the
 * files under each are renamed files whose paths part there, the pairs taken most votes first,
 * never nested.
 */
function modelDiff(a: Model, b: Model): string[] {
  const out: string[] = []
  const under = (p: string, d: string) => p === d || p.startsWith(d + '/')
  // Renamed directories.
  const votes = new Map<string, number>()
  for (const [pa, pb] of fileRenames(a, b)) {
    const x = pa.split('/')
    const y = pb.split('/')
    let k = 0
    while (k < Math.min(x.length, y.length) - 2 && x[x.length - 1 - k] === y[y.length - 1 - k]) k++
    if (k === 0) continue
    const from = x.slice(0, x.length - k).join('/')
    const to = y.slice(0, y.length - k).join('/')
    if (a.get(from)?.kind !== 'dir' || b.get(to)?.kind !== 'dir' || b.has(from) || a.has(to)) continue
    votes.set(`${from} ${to}`, (votes.get(`${from} ${to}`) ?? 0) + 1)
  }
  const count = (m: Model, d: string) => files(m).filter((p) => under(p, d)).length
  const moved: Array<[string, string]> = []
  const order = [...votes].sort((u, v) => v[1] - u[1] || (u[0] < v[0] ? -1 : 1))
  for (const [k, n] of order) {
    const [from, to] = k.split(' ')
    if (2 * n < count(a, from) || 2 * n < count(b, to)) continue
    if (moved.some(([f, t]) => under(from, f) || under(f, from) || under(to, t) || under(t, to))) continue
    moved.push([from, to])
    out.push(`R ${from} -> ${to}`)
  }
  const origin = new Map<string, string>()
  const ta: Model = new Map()
  for (const [p, x] of a) {
    const m = moved.find(([f]) => under(p, f))
    const t = m ? m[1] + p.slice(m[0].length) : p
    ta.set(t, x)
    origin.set(t, p)
  }
  const goneA = new Set<string>()
  const goneB = new Set<string>()
  for (const [pa, pb] of fileRenames(ta, b, goneA, goneB)) { out.push(`R ${origin.get(pa)} -> ${pb}`); goneA.add(pa); goneB.add(pb) }
  for (const [p, x] of ta) {
    if (goneA.has(p)) continue
    const y = goneB.has(p) ? undefined : b.get(p)
    if (x.kind === 'dir') { if (y?.kind !== 'dir') out.push(`- ${origin.get(p)}`); continue }
    if (!y || y.kind !== 'file') { out.push(`- ${origin.get(p)}`); continue }
    goneB.add(p)
    if (y.content !== x.content) out.push(`M ${p}`)
    else if (y.mode !== x.mode) out.push(`A ${p}`)
  }
  for (const [p, y] of b) {
    if (goneB.has(p)) continue
    if (y.kind === 'dir' && ta.get(p)?.kind === 'dir') continue
    out.push(`+ ${p}`)
  }
  return out.sort()
}

/** Files that are one id at different paths, [path in a, path in b]; one id at one path is unchanged (goneA, goneB). */
function fileRenames(a: Model, b: Model, goneA = new Set<string>(), goneB = new Set<string>()): Array<[string, string]> {
  const idsA = new Map<number, string[]>()
  for (const p of files(a)) {
    const x = a.get(p) as MFile
    const y = b.get(p)
    if (y?.kind === 'file' && y.id === x.id) { goneA.add(p); goneB.add(p); continue }
    idsA.set(x.id, [...(idsA.get(x.id) ?? []), p])
  }
  const idsB = new Map<number, string[]>()
  for (const p of files(b)) {
    const y = b.get(p) as MFile
    if (goneB.has(p) || !idsA.has(y.id)) continue
    idsB.set(y.id, [...(idsB.get(y.id) ?? []), p])
  }
  const out: Array<[string, string]> = []
  for (const [id, pb] of idsB) {
    const pa = idsA.get(id)!.sort()
    pb.sort()
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) out.push([pa[i], pb[i]])
  }
  return out
}

describe('diff: model check', function () {
  this.timeout(600000)

  it('equals the diff of two in-memory models after random edits to a clone', () => {
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({op: fc.constant('write' as const), file: fc.nat(30), dirPick: fc.nat(30), content: fc.string({maxLength: 300})}),
      fc.record({op: fc.constant('chmod' as const), file: fc.nat(30), mode: fc.constantFrom(0o600, 0o644, 0o755)}),
      fc.record({op: fc.constant('rename' as const), file: fc.nat(30), dirPick: fc.nat(30), name: fc.constantFrom(...NAMES)}),
      fc.record({op: fc.constant('unlink' as const), file: fc.nat(30)}),
      fc.record({op: fc.constant('mkdir' as const), dirPick: fc.nat(30), name: fc.constantFrom(...NAMES)}),
      fc.record({op: fc.constant('rmrf' as const), dirPick: fc.nat(30)}),
      fc.record({op: fc.constant('mvdir' as const), dirPick: fc.nat(30), toPick: fc.nat(30), name: fc.constantFrom(...NAMES, 'x', 'y', 'z')}),
    )
    let run = 0
    fc.assert(fc.property(fc.array(opArb, {maxLength: 25}), fc.array(fc.string({maxLength: 200}), {minLength: 1, maxLength: 10}), (ops, seeds) => {
      const dir = tmpDir()
      try {
        const img = newImage(dir, 32 << 20)
        let nextId = 1
        const a: Model = new Map()
        // The source tree: /d0, /d0/d1, files spread over them (one name each).
        edit(img, (ns, vol) => {
          for (const d of ['/x', '/x/y', '/z']) { ns.mkdir(d); a.set(d, {kind: 'dir'}) }
          seeds.forEach((s, i) => {
            const p = `${['/', '/x', '/x/y', '/z'][i % 4] === '/' ? '' : ['/', '/x', '/x/y', '/z'][i % 4]}/f${i}`
            const content = `${s}#${i}`
            ns.writeFile(p, Buffer.from(content))
            a.set(p, {kind: 'file', id: nextId++, content, mode: 0o644})
          })
          clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'})
        })
        const idsA = new Set([...a.values()].filter((f): f is MFile => f.kind === 'file').map((f) => f.id))
        const b: Model = new Map([...a].map(([p, f]) => [p, f.kind === 'file' ? {...f} : f]))
        let stamp = 0
        edit(img, (ns) => {
          for (const o of ops) {
            const fl = files(b)
            const ds = dirs(b)
            if (o.op === 'write') {
              const target = fl.length && o.file % 2 === 0 ? fl[o.file % fl.length] : joinP(ds[o.dirPick % ds.length], `n${stamp}`)
              if (b.get(target)?.kind === 'dir') continue
              const content = `${o.content}@${stamp++}`
              ns.writeFile(target, Buffer.from(content))
              const old = b.get(target) as MFile | undefined
              const id = !old || idsA.has(old.id) ? nextId++ : old.id
              b.set(target, {kind: 'file', id, content, mode: old?.mode ?? 0o644})
            } else if (o.op === 'chmod' && fl.length) {
              const p = fl[o.file % fl.length]
              ns.chmod(p, o.mode)
              const f = b.get(p) as MFile
              b.set(p, {...f, mode: o.mode, id: idsA.has(f.id) ? nextId++ : f.id})
            } else if (o.op === 'rename' && fl.length) {
              const from = fl[o.file % fl.length]
              const to = joinP(ds[o.dirPick % ds.length], o.name)
              if (from === to || b.get(to)?.kind === 'dir') continue
              ns.rename(from, to)
              b.set(to, b.get(from)!)
              b.delete(from)
            } else if (o.op === 'unlink' && fl.length) {
              const p = fl[o.file % fl.length]
              ns.unlink(p)
              b.delete(p)
            } else if (o.op === 'mkdir') {
              const p = joinP(ds[o.dirPick % ds.length], o.name)
              if (b.has(p)) continue
              ns.mkdir(p)
              b.set(p, {kind: 'dir'})
            } else if (o.op === 'rmrf' && ds.length > 1) {
              const p = ds[1 + (o.dirPick % (ds.length - 1))]
              ns.remove(p, {recursive: true})
              for (const k of [...b.keys()]) if (k === p || k.startsWith(p + '/')) b.delete(k)
            } else if (o.op === 'mvdir' && ds.length > 1) {
              // (a directory moved or renamed, with all it holds)
              const p = ds[1 + (o.dirPick % (ds.length - 1))]
              const to = joinP(ds[o.toPick % ds.length], o.name)
              if (b.has(to) || to === p || to.startsWith(p + '/')) continue
              ns.rename(p, to)
              for (const k of [...b.keys()].sort()) {
                if (k === p || k.startsWith(p + '/')) {
                  b.set(to + k.slice(p.length), b.get(k)!)
                  b.delete(k)
                }
              }
            }
          }
        }, 'c')
        run++
        const got = withImage(img, {write: false}, (vol) => {
          const r = diff(vol, {fileset: 'root', path: '/'}, {fileset: 'c', path: '/'})
          const sa = fileInos(vol, 'root')
          const sb = fileInos(vol, 'c')
          for (const ino of r.stats.readInodes) expect(sa.has(ino) && sb.has(ino)).to.equal(false)
          return r.entries.map(line).sort()
        })
        expect(got).to.deep.equal(modelDiff(a, b))
      } finally {
        fs.rmSync(dir, {recursive: true, force: true})
      }
    }), {numRuns: 60})
    expect(run).to.equal(60)
  })
})

