// The rules of --exclude and --exclude-from (issue 15, point 6), on their own: a table of
// cases (patterns, path, directory or not -> left out of the clone?), each checked against
// our matcher and, where git has the same syntax (everything but braces), against
// `git check-ignore --no-index` in a temporary repository, so the table is git's answer and
// not only our opinion. Then random pattern lists over a small tree, compared with git the
// same way; --exclude-from files read as git reads a .gitignore; malformed patterns refused;
// and the meaning clones made by older builds keep (legacyExcludeMatcher).
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import {excludeMatcher, isExcluded, legacyExcludeMatcher, parseExcludeFile} from '../src/fs/match.js'
import {PrismError} from '../src/errors.js'
import {tmpDir} from './helpers.js'

/** [patterns, path ('/x/' for a directory), left out?]; braces are ours alone (git has none). */
const TABLE: Array<[string[], string, boolean]> = [
  // A name without a slash matches at any depth, top level included.
  [['newfile'], '/newfile', true],
  [['newfile'], '/a/newfile', true],
  [['newfile'], '/a/b/newfile/', true],
  [['newfile'], '/a/newfile.x', false],
  [['newfile'], '/newfile/inside', true],
  [['*.log'], '/x.log', true],
  [['*.log'], '/var/log/x.log', true],
  [['*.log'], '/var/log/', false],
  [['*.log'], '/a.log/', true],
  [['*.log'], '/a.log/kept.txt', true],
  [['**/*.log'], '/x.log', true],
  [['**/*.log'], '/a/b/c/x.log', true],
  [['.*'], '/.hidden', true],
  [['.*'], '/a/.b/', true],
  [['*'], '/anything', true],
  [['?'], '/a', true],
  [['?'], '/x/a', true],
  [['?'], '/ab', false],
  [['[ab]'], '/b', true],
  [['[ab]'], '/c', false],
  [['[!a]'], '/a', false],
  [['[!a]'], '/b', true],
  [['[^a]'], '/b', true],
  [['[[:digit:]]*'], '/1a', true],
  [['[[:digit:]]*'], '/a1', false],
  [['a?c'], '/abc', true],
  [['a?c'], '/a/c', false],
  [['a*'], '/a/x/', true],
  [['\\*'], '/*', true],
  [['\\*'], '/a', false],
  [['\\#a'], '/#a', true],
  [['\\!a'], '/!a', true],
  [['foo (1).txt'], '/foo (1).txt', true],
  [['foo (1).txt'], '/foo 1.txt', false],
  [['a|b'], '/a|b', true],
  [['a|b'], '/a', false],
  [['a+'], '/aa', false],
  [['a+'], '/a+', true],
  // A slash anywhere but at the end anchors the pattern at the clone's top.
  [['/newfile'], '/newfile', true],
  [['/newfile'], '/a/newfile', false],
  [['etc/*.conf'], '/etc/a.conf', true],
  [['etc/*.conf'], '/etc/.hidden.conf', true],
  [['etc/*.conf'], '/x/etc/a.conf', false],
  [['etc/*.conf'], '/etc/sub/a.conf', false],
  [['/etc/*.conf'], '/etc/a.conf', true],
  [['/etc/*.conf'], '/x/etc/a.conf', false],
  [['a/b'], '/a/b', true],
  [['a/b'], '/x/a/b', false],
  [['a/b'], '/a/b/c/d', true],
  [['/var/log'], '/var/log/', true],
  [['/var/log'], '/var/log/syslog', true],
  [['/var/log'], '/var/log.old', false],
  // '**' spans zero or more directories.
  [['**/etc/*.conf'], '/etc/a.conf', true],
  [['**/etc/*.conf'], '/x/etc/a.conf', true],
  [['**/etc/*.conf'], '/x/y/etc/a.conf', true],
  [['**/a'], '/a', true],
  [['**/a'], '/x/y/a/', true],
  [['a/**/b'], '/a/b', true],
  [['a/**/b'], '/a/x/b', true],
  [['a/**/b'], '/a/x/y/b', true],
  [['a/**/b'], '/x/a/b', false],
  [['a/**'], '/a/', false],
  [['a/**'], '/a/b', true],
  [['a/**'], '/a/b/c/', true],
  [['/**'], '/a', true],
  [['**'], '/a/b/', true],
  [['**/b/**'], '/b/', false],
  [['**/b/**'], '/b/c', true],
  [['**/b/**'], '/x/b/c/d', true],
  [['a**b'], '/axb', true],
  [['a**b'], '/a/x/b', false],
  // A trailing '/' matches directories only.
  [['home/'], '/home/', true],
  [['home/'], '/home', false],
  [['home/'], '/a/home/', true],
  [['home/'], '/home/x', true],
  [['/home/'], '/home/', true],
  [['/home/'], '/a/home/', false],
  [['/a/b/'], '/a/b/', true],
  [['/a/b/'], '/a/b', false],
  [['a/**/'], '/a/x/', true],
  [['a/**/'], '/a/x', false],
  [['a/**/'], '/a/x/y', true],
  // '!' re-includes; the last matching pattern decides; nothing below an excluded directory comes back.
  [['*.conf', '!important.conf'], '/x.conf', true],
  [['*.conf', '!important.conf'], '/important.conf', false],
  [['*.conf', '!important.conf'], '/etc/important.conf', false],
  [['!important.conf', '*.conf'], '/important.conf', true],
  [['etc/', '!etc/keep'], '/etc/keep', true],
  [['etc/', '!etc/keep'], '/etc/', true],
  [['etc/*', '!etc/keep'], '/etc/keep', false],
  [['etc/*', '!etc/keep'], '/etc/other', true],
  [['etc/*', '!etc/keep'], '/etc/', false],
  [['!x'], '/x', false],
  [['*', '!*/'], '/a/', false],
  [['*', '!*/'], '/a/b', true],
  [['*', '!*/'], '/a/c/', false],
  [['/*', '!/a', '/a/*', '!/a/b'], '/a/b/', false],
  [['/*', '!/a', '/a/*', '!/a/b'], '/a/c', true],
  [['/*', '!/a', '/a/*', '!/a/b'], '/x', true],
  [['log', '!log/'], '/log', true],
  [['log', '!log/'], '/log/', false],
  // A name with a newline is a name like any other; a pattern matches by its meaning, never
  // because its text equals the name.
  [['**/secret'], '/dir\nx/secret', true],
  [['**'], '/new\nline', true],
  [['dir*/secret'], '/dir\nx/secret', true],
  [['new?line'], '/new\nline', true],
  [['*line'], '/new\nline/', true],
  [['/**/x'], '/a\nb/c\nd/x', true],
  [['[x]'], '/[x]/', false],
  [['[x]'], '/x/', true],
  [['\\*'], '/*', true],
  [['\\*'], '/\\*', false],
  [['[ab]*'], '/[ab]*', false],
  [['[!a]'], '/[!a]', false],
  // Braces: picomatch's, not git's.
  [['{a,b}'], '/{a,b}', false],
  [['{etc,home}'], '/etc/', true],
  [['{etc,home}'], '/a/home/', true],
  [['{etc,home}'], '/etcx', false],
  [['/{etc,home}/*.conf'], '/home/a.conf', true],
  [['/{etc,home}/*.conf'], '/x/home/a.conf', false],
  [['{a,b/c}'], '/b/c', true],
  [['{a,b/c}'], '/x/b/c', false],
  [['{a,b/c}'], '/x/a', false],
  [['*.{gz,xz}'], '/var/log/old.xz', true],
]

const repos: string[] = []

/** Makes `paths` ('/x/' for a directory) as real files and directories in `dir` (emptied first, but for .git). */
function makeTree(dir: string, paths: string[]): void {
  for (const e of fs.readdirSync(dir)) if (e !== '.git') fs.rmSync(path.join(dir, e), {recursive: true, force: true})
  for (const p of paths) {
    const at = path.join(dir, p)
    if (p.endsWith('/')) fs.mkdirSync(at, {recursive: true})
    else {
      fs.mkdirSync(path.dirname(at), {recursive: true})
      fs.writeFileSync(at, '')
    }
  }
}

/**
 * Asks git check-ignore, in repository `dir` with `patterns` as its .gitignore (or `text` as
 * is), about `paths`, which must exist there (makeTree): git tells a directory by lstat (a
 * trailing '/' given to check-ignore would be matched as part of the name). Returns path ->
 * ignored.
 */
function gitIgnored(dir: string, paths: string[], patterns: string[] | null, text?: string): Map<string, boolean> {
  fs.writeFileSync(path.join(dir, '.gitignore'), text ?? patterns!.join('\n') + '\n')
  const input = paths.map((p) => p.slice(1).replace(/\/$/, '')).join('\0') + '\0'
  const r = spawnSync('git', ['-c', 'core.excludesFile=/dev/null', '-c', 'core.ignoreCase=false', 'check-ignore', '--no-index', '--stdin', '-z', '-v', '-n'], {
    cwd: dir, input, env: {...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: dir}, maxBuffer: 1 << 26,
  })
  if (r.status !== 0 && r.status !== 1) throw new Error(`git check-ignore: ${r.stderr}`)
  const f = r.stdout.toString().split('\0')
  const byName = new Map(paths.map((p) => [p.slice(1).replace(/\/$/, ''), p]))
  const out = new Map<string, boolean>()
  for (let i = 0; i + 3 < f.length; i += 4) out.set(byName.get(f[i + 3])!, f[i] !== '' && !f[i + 2].startsWith('!'))
  return out
}

/** A new git repository holding `paths`. */
function gitRepo(paths: string[]): string {
  const dir = tmpDir('prism-gitignore-')
  spawnSync('git', ['init', '-q', dir])
  makeTree(dir, paths)
  return dir
}

function ours(patterns: string[], p: string): boolean {
  const dir = p.endsWith('/')
  return isExcluded(excludeMatcher(patterns), dir ? p.slice(0, -1) : p, dir)
}

describe('exclude patterns: the rules, checked against git', function () {
  this.timeout(120000)
  let haveGit = true
  before(function () {
    haveGit = spawnSync('git', ['--version']).status === 0
    if (!haveGit) {
      if (process.env.CI) throw new Error('git is not installed')
      console.log('      (no git here: the table is checked against our matcher only)')
    }
  })
  after(() => { for (const r of repos) fs.rmSync(r, {recursive: true, force: true}) })

  it(`decides each of the ${TABLE.length} cases of the table as the table says`, () => {
    const wrong = TABLE.filter(([pats, p, want]) => ours(pats, p) !== want)
    expect(wrong.map(([pats, p, want]) => `${JSON.stringify(pats)} ${p}: want ${want}`)).to.deep.equal([])
  })

  it('and git check-ignore agrees with the table on every case without braces', function () {
    if (!haveGit) this.skip()
    const repo = gitRepo([])
    repos.push(repo)
    let checked = 0
    const disagree: string[] = []
    for (const [pats, p, want] of TABLE) {
      if (pats.some((x) => /[{}]/.test(x))) continue
      makeTree(repo, [p])
      const got = gitIgnored(repo, [p], pats).get(p)
      checked++
      if (got !== want) disagree.push(`${JSON.stringify(pats)} ${p}: git says ${got}, the table ${want}`)
    }
    expect(disagree).to.deep.equal([])
    expect(checked).to.be.greaterThan(90)
  })

  it('agrees with git on random pattern lists over every path of a small tree', function () {
    if (!haveGit) this.skip()
    // Two trees, so that each name is a directory in one and a file in the other.
    const names = ['a', 'b', '.c', 'a.log', 'n\nl', '[a]']
    const tree = (dirs: string[]): string[] => {
      const out: string[] = []
      const grow = (prefix: string, depth: number) => {
        for (const n of names) {
          if (depth < 3 && dirs.includes(n)) {
            out.push(`${prefix}/${n}/`)
            grow(`${prefix}/${n}`, depth + 1)
          } else out.push(`${prefix}/${n}`)
        }
      }
      grow('', 1)
      return out
    }
    const trees = [tree(['a', '.c']), tree(['b', 'a.log', 'a'])].map((paths) => ({paths, repo: gitRepo(paths)}))
    repos.push(...trees.map((t) => t.repo))
    const seg = fc.constantFrom('a', 'b', '.c', 'a.log', '*', '?', '[ab]', '[!a]', 'a*', '*.log', '**', '.*', '?.log', 'n?l', 'n*', '[a]', '\\[a\\]', '*l')
    const pattern = fc.record({
      neg: fc.boolean(), lead: fc.boolean(), trail: fc.boolean(), segs: fc.array(seg, {minLength: 1, maxLength: 3}),
    }).map((x) => `${x.neg ? '!' : ''}${x.lead ? '/' : ''}${x.segs.join('/')}${x.trail ? '/' : ''}`)
    let compared = 0
    fc.assert(fc.property(fc.array(pattern, {minLength: 1, maxLength: 4}), (pats) => {
      for (const {paths, repo} of trees) {
        const git = gitIgnored(repo, paths, pats)
        const wrong = paths.filter((p) => git.get(p) !== ours(pats, p))
        compared += paths.length
        expect(wrong.slice(0, 5).map((p) => `${p}: git ${git.get(p)}`), JSON.stringify(pats)).to.deep.equal([])
      }
    }), {numRuns: Number(process.env.PRISM_EXCLUDE_RUNS ?? 150)})
    console.log(`      ${compared} (pattern list, path) pairs agreed with git`)
  })

  it('reads --exclude-from files as git reads a .gitignore', function () {
    const text = '\uFEFF# a comment\n\n/home\n  *.tmp\n*.log   \nkeep\\ \n\\#hash\n!x.log\r\nend # not a comment\n#\n'
    expect(parseExcludeFile(text)).to.deep.equal(['/home', '  *.tmp', '*.log', 'keep\\ ', '\\#hash', '!x.log', 'end # not a comment'])
    if (!haveGit) return
    const paths = ['/home/', '/a/  b.tmp', '/  b.tmp', '/x.log', '/y.log', '/keep ', '/keep', '/#hash', '/end # not a comment', '/end', '/# a comment']
    const repo = gitRepo(paths)
    repos.push(repo)
    const git = gitIgnored(repo, paths, null, text.replace(/^\uFEFF/, ''))
    for (const p of paths) expect(ours(parseExcludeFile(text), p), p).to.equal(git.get(p))
  })

  it('refuses a malformed pattern with a usage error naming it', () => {
    for (const [bad, why] of [['', /empty pattern/], ['!', /needs a pattern/], ['/', /top itself/], ['!/', /top itself/], ['//', /top itself/], ['a//b', /empty path component/]] as const) {
      let err: unknown = null
      try { excludeMatcher(['ok', bad]) } catch (e) { err = e }
      expect(err, bad).to.be.instanceOf(PrismError)
      expect((err as PrismError).code).to.equal('EUSAGE')
      expect((err as PrismError).message).to.match(why).and.include(`'${bad}'`)
    }
  })

  it('reports the patterns that matched nothing, counting one a later pattern overrode as matched', () => {
    const m = excludeMatcher(['*.conf', '!important.conf', '/nothing', 'a/**', 'x/'])
    for (const [p, dir] of [['/important.conf', false], ['/etc', true], ['/x', false]] as const) m.test(p, dir)
    expect(m.unmatched()).to.deep.equal(['/nothing', 'a/**', 'x/'])
  })

  it('knows which directories can still hold a match for the patterns not yet matched', () => {
    const m = excludeMatcher(['/etc/*.conf', 'usr/share/**', '/{a,b/c}'])
    expect(m.mayMatchBelow('')).to.equal(true)
    expect(m.mayMatchBelow('/etc')).to.equal(true)
    expect(m.mayMatchBelow('/usr/share/doc/x')).to.equal(true)
    expect(m.mayMatchBelow('/usr')).to.equal(true)
    expect(m.mayMatchBelow('/var')).to.equal(true) // braces around a slash: no pruning for that one
    const n = excludeMatcher(['/etc/*.conf', 'usr/share/**'])
    expect(n.mayMatchBelow('/var')).to.equal(false)
    expect(n.mayMatchBelow('/etc/x')).to.equal(false)
    expect(n.mayMatchBelow('/usr/lib')).to.equal(false)
    n.test('/etc/a.conf', false)
    expect(n.mayMatchBelow('/etc')).to.equal(false)
    expect(excludeMatcher(['*.log']).mayMatchBelow('/deep/down')).to.equal(true)
  })

  it('keeps the meaning older builds gave the patterns of a clone still expanding', () => {
    const m = legacyExcludeMatcher(['newfile', '/var/log/*.gz', 'etc/*.conf', 'home/'])
    expect(m.test('/newfile', false)).to.equal(-1) // the old rules missed top-level names
    expect(m.test('/a/newfile', false)).to.equal(0)
    expect(m.test('/var/log/old.gz', false)).to.equal(1)
    expect(m.test('/etc/a.conf', false)).to.equal(-1)
    expect(m.test('/x/home', false)).to.equal(3) // a trailing '/' was ignored
    expect(excludeMatcher(['newfile'], 'legacy').test('/newfile', false)).to.equal(-1)
  })
})
