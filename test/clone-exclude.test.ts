// --exclude on real images (issue 15, point 6): the cases and their siblings give
// the same tree in every mode (sync, async, lazy; a subtree clone; a clone of a clone still
// expanding), a pattern that matches nothing is the same warning in every mode (an async
// clone finds out by a walk of directories only: no file's inode is read), malformed
// patterns change nothing, patterns an older build stored keep their meaning, the feature
// bit that keeps older builds away is checked by fsck, and the CLI (fast path and oclif,
// --exclude-from) says the same. The rules themselves are test/exclude.test.ts.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {clone, type CloneMode} from '../src/clone/clone.js'
import {expandAll} from '../src/fs/expand.js'
import {CLONE_STATE_V1} from '../src/format/clonestate.js'
import {crc32} from '../src/format/checksum.js'
import {IF_NOCLONE} from '../src/format/constants.js'
import {nameText} from '../src/format/name.js'
import {INCOMPAT_EXCLUDE_RULES, INCOMPAT_EXPANDING} from '../src/format/superblock.js'
import {readData, writeData} from '../src/fs/extents.js'
import {getFileset} from '../src/fs/filesets.js'
import {namespace, withImage} from '../src/fs/image.js'
import type {Volume} from '../src/fs/volume.js'
import {fsckImage} from '../src/fsck/index.js'
import {PrismError} from '../src/errors.js'
import {edit, newImage, prism, read, sha256File, snapshot, tmpDir} from './helpers.js'

const TREE: Record<string, string | null> = {
  '/newfile': 'top', '/x.log': 'log', '/etc/a.conf': 'conf', '/etc/important.conf': 'keep', '/etc/sub/b.conf': 'deep',
  '/home/alice/newfile': 'alice', '/home/alice/.ssh/key': 'secret', '/var/log/y.log': 'log', '/var/log/syslog': 'sys',
  '/srv/etc/c.conf': 'srv', '/srv/app/x.log/inside': 'dir named .log', '/tmp': null,
}

function fill(img: string): void {
  edit(img, (ns) => {
    for (const [p, data] of Object.entries(TREE)) {
      if (data === null) { ns.mkdir(p, {parents: true}); continue }
      ns.mkdir(path.posix.dirname(p), {parents: true})
      ns.writeFile(p, Buffer.from(data))
    }
  })
}

/** Makes a clone and expands it; returns its paths and the warnings. */
function cloneAndList(img: string, name: string, mode: CloneMode, exclude: string[], src = {fileset: 'root', path: '/'}): {paths: string[], warnings: string[], unmatched: string[]} {
  const warnings: string[] = []
  const res = withImage(img, {write: true}, (vol) => clone(vol, src, {fileset: name}, {mode, exclude, onWarning: (w) => warnings.push(w)}))
  withImage(img, {write: true}, (vol) => expandAll(vol, getFileset(vol, name)))
  const paths = read(img, (ns) => Object.keys(snapshot(ns)).sort(), name)
  return {paths, warnings, unmatched: res.unmatched}
}

describe('clone --exclude on real images', function () {
  this.timeout(300000)
  let dir: string
  let img: string
  beforeEach(() => {
    dir = tmpDir()
    img = newImage(dir, 128 << 20)
    fill(img)
  })
  afterEach(function () {
    if (this.currentTest?.state === 'passed') {
      const r = fsckImage(img, {repair: false})
      expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
    }
    fs.rmSync(dir, {recursive: true, force: true})
  })

  const CASES: Array<[string[], string[], string[]?]> = [
    // [patterns, what they leave out of TREE, the patterns that match nothing]
    [['newfile'], ['/newfile', '/home/alice/newfile']],
    [['/newfile'], ['/newfile']],
    [['etc/*.conf'], ['/etc/a.conf', '/etc/important.conf']],
    [['**/etc/*.conf'], ['/etc/a.conf', '/etc/important.conf', '/srv/etc/c.conf']],
    [['{etc,home}'], ['/etc', '/home', '/srv/etc']],
    [['**/*.log'], ['/x.log', '/var/log/y.log', '/srv/app/x.log']],
    [['*.log'], ['/x.log', '/var/log/y.log', '/srv/app/x.log']],
    [['*.log', '!x.log'], ['/var/log/y.log']],
    [['x.log/'], ['/srv/app/x.log']],
    [['etc/*', '!etc/important.conf'], ['/etc/a.conf', '/etc/sub']],
    // As in git, nothing below an excluded directory comes back: the negation matches nothing.
    [['etc/', '!etc/important.conf'], ['/etc', '/srv/etc'], ['!etc/important.conf']],
    [['home/**'], ['/home/alice']],
    [['.ssh/'], ['/home/alice/.ssh']],
    [['/var/log/'], ['/var/log']],
    [['tmp/'], ['/tmp']],
  ]

  it('leaves out what each pattern names, the same in sync, async and lazy mode', () => {
    const all = read(img, (ns) => Object.keys(snapshot(ns)).sort())
    let n = 0
    for (const [pats, gone, unmatched = []] of CASES) {
      const want = all.filter((p) => !gone.some((g) => p === g || p.startsWith(g + '/')))
      for (const mode of ['sync', 'async', 'lazy'] as const) {
        const r = cloneAndList(img, `c${n++}`, mode, pats)
        expect(r.paths, `${mode} ${JSON.stringify(pats)}`).to.deep.equal(want)
        expect(r.warnings, `${mode} ${JSON.stringify(pats)}`).to.deep.equal(unmatched.map((p) => `--exclude '${p}' matched nothing`))
      }
    }
  })

  it('warns about a pattern that matches nothing in every mode, and only about it', () => {
    // Siblings of a pattern matching nothing: names, anchored paths (whose directory exists
    // or not), '**', a trailing '/' on a file's name, a negation, one matching only below an
    // excluded directory (never reached, as git would not re-include it).
    const pats = ['*.conf', 'nothing', '/etc/nothing.conf', '/nowhere/x', '**/nothing/**', 'newfile/', '!nothing', 'home/', 'home/alice/newfile']
    const want = ["'nothing'", "'/etc/nothing.conf'", "'/nowhere/x'", "'**/nothing/**'", "'newfile/'", "'!nothing'", "'home/alice/newfile'"]
      .map((p) => `--exclude ${p} matched nothing`)
    const res: Record<string, string[]> = {}
    for (const mode of ['sync', 'async', 'lazy'] as const) {
      const r = cloneAndList(img, `w-${mode}`, mode, pats)
      expect(r.warnings, mode).to.deep.equal(want)
      expect(r.unmatched, mode).to.deep.equal(want.map((w) => w.replace(/^--exclude '(.*)' matched nothing$/, '$1')))
      res[mode] = r.paths
    }
    expect(res.async).to.deep.equal(res.sync)
    expect(res.lazy).to.deep.equal(res.sync)
  })

  it('finds unmatched patterns without reading any file inode, and stops once all have matched', () => {
    // Many files in a few directories: the check walks directories only.
    edit(img, (ns) => {
      ns.mkdir('/many')
      for (let i = 0; i < 300; i++) ns.writeFile(`/many/f${i}`, Buffer.from('x'))
      ns.mkdir('/deep/a/b/c', {parents: true})
    })
    const dirs = read(img, (ns) => {
      const out = new Set<number>()
      const walk = (p: string) => {
        out.add(ns.stat(p).ino)
        for (const e of ns.readdir(p)) if (ns.stat(`${p === '/' ? '' : p}/${e.name}`).type === 'dir') walk(`${p === '/' ? '' : p}/${e.name}`)
      }
      walk('/')
      return out
    })
    const watch = (vol: Volume, seen: number[]) => {
      const iget = vol.iget.bind(vol)
      const tryIget = vol.tryIget.bind(vol)
      vol.iget = (ino: number) => { seen.push(ino); return iget(ino) }
      vol.tryIget = (ino: number) => { seen.push(ino); return tryIget(ino) }
    }
    const deepA = read(img, (ns) => ns.stat('/deep/a').ino)
    for (const [pats, unmatched] of [[['nothing', '/deep/a/b/c/none'], ['nothing', '/deep/a/b/c/none']], [['x.log'], []]] as const) {
      const seen: number[] = []
      const res = withImage(img, {write: true}, (vol) => {
        watch(vol, seen)
        return clone(vol, {fileset: 'root', path: '/'}, null, {mode: 'async', exclude: [...pats]})
      })
      expect(res.unmatched).to.deep.equal(unmatched)
      const files = read(img, (ns) => seen.filter((ino) => !dirs.has(ino) && ns.vol.validIno(ino) && ns.vol.inodeSlotUsed(ino) && ns.vol.iget(ino).type === 'file'))
      // Only the new clone's own inodes (none of them a file) may be read besides directories.
      expect(files, JSON.stringify(pats)).to.deep.equal([])
      // 'x.log' is found in the top directory: nothing below it is listed then.
      if (unmatched.length === 0) expect(seen).to.not.include(deepA)
      else expect(seen).to.include(deepA)
    }
    // An anchored pattern is looked for only where it can be: '/many' is not even looked at.
    const seen: number[] = []
    const many = read(img, (ns) => ns.stat('/many').ino)
    withImage(img, {write: true}, (vol) => {
      watch(vol, seen)
      clone(vol, {fileset: 'root', path: '/'}, null, {mode: 'async', exclude: ['/etc/none']})
    })
    expect(seen).to.not.include(many)
  })

  it('applies the patterns to a subtree clone relative to its top, in every mode', () => {
    for (const mode of ['sync', 'async', 'lazy'] as const) {
      const r = cloneAndList(img, `s-${mode}`, mode, ['/etc', 'x.log', '/nothing'], {fileset: 'root', path: '/srv'})
      expect(r.paths, mode).to.deep.equal(['/app'])
      expect(r.warnings, mode).to.deep.equal(["--exclude '/nothing' matched nothing"])
    }
  })

  it('warns the same for a clone of a clone still expanding, which has excludes of its own', () => {
    withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'mid'}, {mode: 'lazy', exclude: ['etc/', '*.log']}))
    // 'mid' has no /etc and no logs: patterns naming them match nothing in a clone of it.
    const pats = ['a.conf', 'y.log', 'syslog', 'newfile']
    for (const mode of ['async', 'lazy', 'sync'] as const) {
      const r = cloneAndList(img, `m-${mode}`, mode, pats, {fileset: 'mid', path: '/'})
      expect(r.warnings, mode).to.deep.equal(["--exclude 'a.conf' matched nothing", "--exclude 'y.log' matched nothing"])
      expect(r.paths, mode).to.not.include('/var/log/syslog')
      expect(r.paths, mode).to.not.include('/newfile')
      expect(r.paths, mode).to.include('/home/alice/.ssh/key')
    }
  })

  it('skips noclone directories in the check as the clone does', () => {
    edit(img, (ns) => ns.setFlag('/home/alice', IF_NOCLONE, true))
    for (const mode of ['sync', 'async'] as const) {
      const r = cloneAndList(img, `n-${mode}`, mode, ['.ssh', 'alice'])
      expect(r.warnings, mode).to.deep.equal(["--exclude '.ssh' matched nothing"])
    }
  })

  it('refuses a malformed pattern before changing anything, in every mode', () => {
    const before = sha256File(img)
    for (const mode of ['sync', 'async', 'lazy'] as const) {
      for (const bad of ['', '!', '/', 'a//b']) {
        let err: unknown = null
        try { withImage(img, {write: true}, (vol) => clone(vol, {fileset: 'root', path: '/'}, {fileset: 'bad'}, {mode, exclude: ['ok', bad]})) } catch (e) { err = e }
        expect(err, `${mode} '${bad}'`).to.be.instanceOf(PrismError)
        expect((err as PrismError).code).to.equal('EUSAGE')
      }
    }
    expect(sha256File(img)).to.equal(before)
  })

  it('keeps the meaning an older build gave the patterns of a clone it left expanding', () => {
    // A lazy clone as this build makes it, then made to look as an older build wrote it: a
    // version-1 clone-state file, and no exclude-rules feature bit.
    withImage(img, {write: true}, (vol) => {
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'old'}, {mode: 'lazy', exclude: ['newfile', 'etc/*.conf', 'home/']})
      expect(vol.sb.incompat & INCOMPAT_EXCLUDE_RULES).to.equal(INCOMPAT_EXCLUDE_RULES)
    })
    withImage(img, {write: true}, (vol) => {
      const f = vol.iget(getFileset(vol, 'old').stateIno)
      const data = readData(vol, f, 0, f.r.size)
      expect(data.readUInt16LE(4)).to.equal(2)
      data.writeUInt16LE(CLONE_STATE_V1, 4)
      data.writeUInt32LE(crc32(data, 0, 28), 28)
      writeData(vol, f, 0, data)
      vol.idirty(f)
      vol.sb.incompat &= ~INCOMPAT_EXCLUDE_RULES
      vol.markSbDirty()
    })
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
    withImage(img, {write: true}, (vol) => expandAll(vol, getFileset(vol, 'old')))
    const paths = read(img, (ns) => Object.keys(snapshot(ns)), 'old')
    // Old rules: a name without '/' missed the top level; 'etc/*.conf' matched nothing;
    // 'home/' was 'home' at any depth below the top.
    expect(paths).to.include.members(['/newfile', '/etc/a.conf', '/home', '/home/alice/.ssh/key'])
    expect(paths).to.not.include('/home/alice/newfile')
    withImage(img, {write: false}, (vol) => expect(vol.sb.incompat & (INCOMPAT_EXPANDING | INCOMPAT_EXCLUDE_RULES)).to.equal(0))
  })

  it('fsck sets the exclude-rules feature bit when a clone needs it, and clears it when none is in flight', () => {
    withImage(img, {write: true}, (vol) => {
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'lazy', exclude: ['*.log']})
      vol.sb.incompat &= ~INCOMPAT_EXCLUDE_RULES
      vol.markSbDirty()
    })
    let r = fsckImage(img, {repair: true})
    expect(r.problems.map((p) => `${p.code} ${p.message}`)).to.deep.equal([
      'SB_INCOMPAT_EXPANDING superblock feature bit for expanding clones is wrong (a clone in flight keeps exclude patterns with the .gitignore rules but the superblock does not say so)',
    ])
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
    withImage(img, {write: false}, (vol) => expect(vol.sb.incompat & INCOMPAT_EXCLUDE_RULES).to.equal(INCOMPAT_EXCLUDE_RULES))
    // The clone still leaves out what it was made to leave out.
    withImage(img, {write: true}, (vol) => expandAll(vol, getFileset(vol, 'c')))
    expect(read(img, (ns) => Object.keys(snapshot(ns)), 'c')).to.not.include('/x.log')
    withImage(img, {write: true}, (vol) => {
      vol.sb.incompat |= INCOMPAT_EXCLUDE_RULES
      vol.markSbDirty()
    })
    r = fsckImage(img, {repair: true})
    expect(r.problems.map((p) => p.code + ' ' + p.message)).to.deep.equal(['SB_INCOMPAT_EXPANDING superblock feature bit for expanding clones is wrong (no clone is expanding)'])
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
  })
})

describe('clone --exclude through the CLI', function () {
  this.timeout(300000)
  let dir: string
  before(() => {
    dir = tmpDir()
    fill(newImage(dir, 128 << 20))
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  const run = (...args: string[]) => prism(args, {cwd: dir})
  const ls = (fsName: string) => run('ls', '-R', '-a', `${fsName}:`).stdout

  it("gives the issue's patterns their meaning and warns in async mode too (fast path and oclif)", () => {
    for (const [pats, gone] of [[['newfile'], 'newfile'], [['etc/*.conf'], 'a.conf'], [['**/etc/*.conf'], 'c.conf'], [['{etc,home}'], 'alice'], [['**/*.log'], 'y.log']] as const) {
      const r = run('clone', 'root', ...pats.flatMap((p) => ['-x', p]), '-x', 'nothing')
      expect(r.stderr, pats[0]).to.equal("prism: warning: --exclude 'nothing' matched nothing\n")
      expect(r.status).to.equal(0)
      expect(ls(r.stdout.trim()), pats[0]).to.not.match(new RegExp(`^${gone.replace('.', '\\.')}$`, 'm'))
    }
    // --json goes through oclif: the same warning, and the unmatched list in the result.
    const r = run('clone', 'root', 'j', '-x', 'newfile', '--exclude', '/nope/', '--json')
    expect(r.status).to.equal(0)
    expect(r.stderr).to.equal("prism: warning: --exclude '/nope/' matched nothing\n")
    expect(JSON.parse(r.stdout).unmatched).to.deep.equal(['/nope/'])
    // A pattern is shown on one line, and a long one cut with its length (in a warning and an error).
    const w = run('clone', 'root', 'w1', '-x', 'a\nb', '-x', 'q'.repeat(300))
    expect(w.status).to.equal(0)
    expect(w.stderr).to.equal(`prism: warning: --exclude 'a\\x0ab' matched nothing\nprism: warning: --exclude '${'q'.repeat(160)}... (300 characters)' matched nothing\n`)
    for (const bad of ['q'.repeat(70000), 'q'.repeat(65536) + '*']) {
      const e = run('clone', 'root', 'w2', '-x', bad)
      expect(e.status).to.equal(2)
      expect(e.stderr).to.match(new RegExp(`^prism: --exclude '${'q'.repeat(160)}\\.\\.\\. \\(${bad.length} characters\\)': [^\\n]+\\n$`))
    }
  })

  it('reads --exclude-from as a .gitignore: comments, blank lines, trailing spaces, negation', () => {
    fs.writeFileSync(path.join(dir, '.cloneignore'), '# logs, but not y.log\n*.log   \n\n!y.log\n/home/\n\\#notacomment\n')
    for (const mode of ['async', 'sync', 'lazy']) {
      // The file's patterns come after those of --exclude.
      const r = run('clone', 'root', `ef-${mode}`, '--mode', mode, '--exclude-from', '.cloneignore', '-x', 'syslog')
      expect(r.stderr, mode).to.equal("prism: warning: --exclude '\\#notacomment' matched nothing\n")
      expect(r.status, mode).to.equal(0)
      const out = ls(`ef-${mode}`)
      expect(out, mode).to.not.match(/^x\.log$|^home$|^syslog$/m)
      expect(out, mode).to.match(/^y\.log$/m)
      expect(out, mode).to.match(/^newfile$/m)
    }
  })

  it('reads --exclude-from as bytes: a pattern holding bytes that are not UTF-8 names those bytes, as one given with -x does', () => {
    const raw = Buffer.from([0x63, 0x61, 0x66, 0xe9]) // caf\xe9: Latin-1, not UTF-8
    const odd = nameText(raw)
    edit(path.join(dir, 'disk.img'), (ns) => {
      ns.writeFile(`/${odd}`, Buffer.from('a Latin-1 name\n'))
      ns.writeFile('/caf\u00e9', Buffer.from('its UTF-8 twin\n'))
    })
    fs.writeFileSync(path.join(dir, 'bytes.ignore'), Buffer.concat([Buffer.from('/'), raw, Buffer.from('\n')]))
    for (const mode of ['async', 'sync', 'lazy']) {
      const r = run('clone', 'root', `eb-${mode}`, '--mode', mode, '--exclude-from', 'bytes.ignore')
      expect(r.stderr, mode).to.equal('')
      expect(r.status, mode).to.equal(0)
      const names = read(path.join(dir, 'disk.img'), (ns) => ns.readdir('/').map((e) => e.name), `eb-${mode}`)
      expect(names, mode).to.not.include(odd)
      expect(names, mode).to.include('caf\u00e9')
    }
  })

  it('refuses a malformed pattern with one line and exit 2, the image unchanged', () => {
    const img = path.join(dir, 'disk.img')
    const before = sha256File(img)
    for (const args of [['-x', '!'], ['-x', '/'], ['--exclude', 'a//b', '--mode', 'sync'], ['--exclude=', '--mode', 'lazy']]) {
      const r = run('clone', 'root', ...args)
      expect(r.status, args.join(' ')).to.equal(2)
      expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1)
      expect(r.stderr).to.match(/^prism: --exclude '.*': /)
    }
    expect(sha256File(img)).to.equal(before)
  })
})
