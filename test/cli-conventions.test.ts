// The CLI's conventions, end to end through the real binary (issue 15, points 9, 12 and 13):
// every usage error of every command is one `prism:` line with status 2 (16 for fsck), --wait
// takes fractions of a second on every path, help and completion come from oclif's plugins,
// an unknown command names the nearest one, and the README's per-command reference is what
// `--help` shows. fsck's status says what happened to the image whatever happens to its
// output, and its report shows names as \xNN, one line each. And the small things a careful
// user hits: each leaves the image as it was when it refuses.
import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import {BIN, ROOT, edit, holdImageLock, newImage, prism, read, sha256File, snapshot, tmpDir, type CliResult} from './helpers.js'
import {RawImage} from './damage.js'
import {nameText} from '../src/format/name.js'
import {listFilesets} from '../src/fs/filesets.js'

interface ManifestCommand {
  hidden?: boolean
  args: Record<string, {required?: boolean}>
  flags: Record<string, {char?: string, required?: boolean}>
}
const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, ManifestCommand>}
const COMMANDS = Object.entries(manifest.commands).filter(([, c]) => !c.hidden).map(([id]) => id)
const words = (id: string) => id.split(':')

/** One line on stderr starting with `prism:`, the status, nothing on stdout, and no usage page. */
function oneLine(r: CliResult, status: number, what: RegExp, label = ''): void {
  expect(r.status, `${label}: ${r.stderr}`).to.equal(status)
  expect(r.stderr.split('\n').filter((l) => l !== ''), `${label}: ${r.stderr}`).to.have.length(1)
  expect(r.stderr, label).to.match(/^prism: /)
  expect(r.stderr, label).to.match(what)
  expect(r.stderr, label).to.not.match(/USAGE|See more help/)
}

/** Runs prism with stdout closed before it writes (a reader that went away at once). */
function closedStdout(args: string[], cwd: string): Promise<{status: number, stderr: string}> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], {cwd, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}})
    c.stdout.destroy()
    let stderr = ''
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    c.on('close', (code) => resolve({status: code ?? -1, stderr}))
  })
}

describe('cli: usage errors, --wait, help and the nearest command (issue 15.12)', function () {
  this.timeout(300_000)
  let dir: string
  let img: string
  before(() => {
    dir = tmpDir()
    img = newImage(dir, 64 * 1024 * 1024)
    edit(img, (ns) => {
      ns.mkdir('/d')
      ns.writeFile('/d/f', Buffer.from('data\n'))
    })
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  const run = (...args: string[]) => prism(args, {cwd: dir})

  it('an unknown flag is one line and status 2 (16 for fsck), for every command', () => {
    expect(COMMANDS.length).to.be.greaterThan(20)
    for (const id of COMMANDS) oneLine(run(...words(id), '--bogus'), id === 'fsck' ? 16 : 2, /--bogus/, id)
  })

  it('a missing argument is one line and status 2, for every command that needs one', () => {
    const needing = COMMANDS.filter((id) => Object.values(manifest.commands[id].args).some((a) => a.required))
    expect(needing).to.include.members(['cat', 'cp', 'mkfs', 'write', 'fileset:create'])
    for (const id of needing) oneLine(run(...words(id)), 2, /missing|required/i, id)
  })

  it('bad values are one line and status 2: an option not among the choices, a number out of range, a flag without its value', () => {
    oneLine(run('clone', 'root', 'x', '--mode', 'bogus', '--replace', '/d=@empty-dir'), 2, /--mode=bogus.*async, lazy, sync/)
    oneLine(run('mkfs', 'x.img', '--inodes', '3'), 2, /--inodes/)
    oneLine(run('ls', '-l', 'root:/', '--image'), 2, /--image expects a value/)
    oneLine(run('truncate', 'root:/d/f'), 2, /size/)
    expect(fs.existsSync(path.join(dir, 'x.img'))).to.equal(false)
  })

  it('--wait takes fractions of a second and refuses what is not a number of seconds, on every path (fast paths too)', () => {
    // Fractions are accepted by the oclif commands and by the fast paths of cat, fsck, clone and scan.
    expect(run('ls', '--wait', '0.5', 'root:/d').stdout).to.equal('f\n')
    expect(run('cat', '--wait', '.5', 'root:/d/f').stdout).to.equal('data\n')
    expect(run('cat', 'root:/d/f', '--wait=0.25').stdout).to.equal('data\n')
    expect(run('fsck', '--wait', '0.5').status).to.equal(0)
    expect(run('clone', 'root', 'w1', '--mode', 'sync', '--wait', '0.5').stdout).to.equal('w1\n')
    expect(run('scan', 'root', '--exec', 'true', '--wait', '0.5').status).to.equal(0)
    expect(run('df', '--wait=1.5').status).to.equal(0)
    for (const bad of ['x', '-1', '1e3', '', '0.5s']) {
      oneLine(run('ls', '--wait', bad, 'root:/'), 2, /--wait/, `ls --wait '${bad}'`)
      oneLine(run('cat', '--wait', bad, 'root:/d/f'), 2, /--wait/, `cat --wait '${bad}'`)
      oneLine(run('fsck', '--wait', bad), 16, /--wait/, `fsck --wait '${bad}'`)
      oneLine(run('clone', 'root', '--wait', bad), 2, /--wait/, `clone --wait '${bad}'`)
      oneLine(run('scan', 'root', '--exec', 'true', '--wait', bad), 2, /--wait/, `scan --wait '${bad}'`)
    }
    expect(run('fileset', 'list', '--no-space').stdout).to.not.match(/^x/m)
  })

  it('--wait 0.5 waits half a second for a locked image, then fails with 3 (8 for fsck, 2 for scan)', async () => {
    // Another process holds the image's exclusive lock, as a long writer does.
    const holder = await holdImageLock(img)
    try {
      for (const [args, status] of [[['ls', 'root:/'], 3], [['cat', 'root:/d/f'], 3], [['fsck'], 8], [['clone', 'root', 'w2'], 3], [['scan', 'root', '--exec', 'true'], 2], [['write', 'root:/w'], 3], [['df'], 3]] as Array<[string[], number]>) {
        const t0 = Date.now()
        const r = prism([...args, '-i', img, '--wait', '0.5'], {input: 'x\n'})
        const ms = Date.now() - t0
        oneLine(r, status, /locked by another prism process \(waited 0\.5s/, args[0])
        expect(ms, args[0]).to.be.within(450, 5000)
      }
    } finally {
      await holder.release()
    }
    // and a writer waiting for its input holds nothing: readers go on at once
    const slow = spawn(process.execPath, [BIN, 'write', '-i', img, 'root:/slow'], {stdio: ['pipe', 'ignore', 'ignore'], env: {...process.env, PRISM_NO_BACKGROUND: '1'}})
    try {
      await new Promise((r) => setTimeout(r, 1000))
      expect(prism(['cat', '-i', img, '--wait', '0', 'root:/d/f']).stdout).to.equal('data\n')
    } finally {
      slow.stdin.end('slow\n')
      expect(await new Promise((r) => slow.on('close', r))).to.equal(0)
    }
    expect(prism(['cat', '-i', img, 'root:/slow']).stdout).to.equal('slow\n')
  })

  it('help: prism help, -h and --help list the commands; help CMD, CMD -h and CMD --help describe one', () => {
    const top = run('help')
    expect(top.status).to.equal(0)
    for (const c of ['mkfs', 'cp', 'fsck', 'scan', 'fileset', 'autocomplete', 'help']) expect(top.stdout).to.include(c)
    expect(run('-h').stdout).to.equal(top.stdout)
    expect(run('--help').stdout).to.equal(top.stdout)
    for (const id of ['cp', 'clone', 'fileset:list', 'fsck', 'scan', 'write']) {
      const h = run('help', ...words(id))
      expect(h.status, id).to.equal(0)
      expect(h.stdout, id).to.include('USAGE').and.include('EXAMPLES')
      expect(run(...words(id), '-h').stdout, id).to.equal(h.stdout)
      expect(run(...words(id), '--help').stdout, id).to.equal(h.stdout)
    }
    const topic = run('fileset', '-h')
    expect(topic.status).to.equal(0)
    expect(topic.stdout).to.include('fileset create').and.include('fileset delete')
    // Where a command's own -h means human-readable sizes, it keeps that meaning.
    expect(run('df', '-h').stdout).to.match(/Size/)
    expect(run('ls', '-lh', 'root:/').stdout).to.match(/KiB/)
  })

  it('an unknown command names the nearest one in one line, status 2, without prompting', () => {
    for (const [typed, near] of [['lss', 'ls'], ['mkfss', 'mkfs'], ['fsk', 'fsck'], ['fileset lsit', 'fileset list'], ['clon', 'clone']]) {
      const t0 = Date.now()
      const r = prism(typed.split(' '), {cwd: dir, input: 'y\n'})
      oneLine(r, 2, new RegExp(`'${typed}' is not a prism command; did you mean '${near}'\\?`), typed)
      expect(Date.now() - t0, typed).to.be.below(10_000)
      expect(r.stdout).to.equal('')
    }
    oneLine(run('--bogus'), 2, /--bogus/)
  })

  it('the image flag may come before the command (as git -C): every form, fast paths and oclif alike, the same output; a flag alone is one line, status 2', () => {
    const other = path.join(dir, 'other.img')
    fs.copyFileSync(img, other)
    const same = (front: string[], cmd: string[]) => {
      const want = prism([...cmd, '-i', other], {cwd: dir})
      const got = prism([...front, ...cmd], {cwd: dir})
      expect([got.status, got.stdout, got.stderr], `${front.join(' ')} ${cmd.join(' ')}`).to.deep.equal([want.status, want.stdout, want.stderr])
      expect(want.status, want.stderr).to.equal(cmd[0] === 'cat' && cmd[1] === 'root:/none' ? 1 : 0)
    }
    for (const front of [['-i', other], ['--image', other], [`--image=${other}`]]) {
      same(front, ['fsck']) // fast paths
      same(front, ['cat', 'root:/d/f'])
      same(front, ['fileset', 'list', '--no-space'])
      same(front, ['ls', '-R', 'root:/']) // oclif
      same(front, ['df'])
      same(front, ['cat', 'root:/none'])
    }
    // A `--` still ends the flags: the image flag goes before it.
    expect(prism(['-i', other, 'ls', '--', 'root:/d'], {cwd: dir}).stdout).to.equal('f\n')
    // It names the image written to: a write through it lands in that image, not the default one.
    expect(prism(['-i', other, 'mkdir', 'root:/made-here'], {cwd: dir}).status).to.equal(0)
    expect(prism(['ls', 'root:/', '-i', other], {cwd: dir}).stdout).to.include('made-here')
    expect(prism(['ls', 'root:/', '-i', img], {cwd: dir}).stdout).to.not.include('made-here')
    // A name that is not UTF-8 keeps its bytes when the flag moves (the arguments are read back
    // from /proc): the same name as made with the flag after the command.
    const env = {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}
    const p = `"${process.execPath}" "${BIN}"`
    const sh = spawnSync('bash', ['-c', `${p} -i "${other}" touch "root:/d/$(printf 'caf\\351')" && ${p} ls root:/d -i "${other}" && ${p} rm "root:/d/$(printf 'caf\\351')" -i "${other}"`], {env})
    expect(sh.status, sh.stderr.toString()).to.equal(0)
    const sh2 = spawnSync('bash', ['-c', `${p} touch "root:/d/$(printf 'caf\\351')" -i "${other}" && ${p} ls root:/d -i "${other}"`], {env})
    expect(sh2.status, sh2.stderr.toString()).to.equal(0)
    expect(sh.stdout.toString('latin1')).to.equal(sh2.stdout.toString('latin1'))
    expect(sh.stdout.toString('latin1')).to.not.include('\ufffd').and.not.include('\xef\xbf\xbd')
    // Only the image flag moves: anything else where the command goes is refused, the image unchanged.
    const bytes = fs.readFileSync(other)
    oneLine(run('-i', other), 2, /no command after the image: prism \[-i IMAGE\] COMMAND/)
    oneLine(run('--json', 'fsck'), 2, /a command comes first: prism COMMAND.*'--json' is not one/)
    oneLine(run('-i'), 2, /no command after the image/)
    expect(fs.readFileSync(other).equals(bytes)).to.equal(true)
  })

  it('shell completion comes from oclif\'s autocomplete plugin', () => {
    const home = path.join(dir, 'home')
    fs.mkdirSync(home, {recursive: true})
    const r = prism(['autocomplete', 'bash'], {cwd: dir, env: {HOME: home, XDG_CACHE_HOME: path.join(home, '.cache')}})
    expect(r.status, r.stderr).to.equal(0)
    expect(r.stdout).to.include('prism').and.include('bash')
  })

  it('the plugins are real dependencies in oclif.plugins, and their engines accept Node 20', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
    expect(pkg.oclif.plugins).to.include.members(['@oclif/plugin-help', '@oclif/plugin-autocomplete'])
    for (const p of ['@oclif/plugin-help', '@oclif/plugin-autocomplete', '@oclif/plugin-not-found']) {
      expect(pkg.dependencies, p).to.have.property(p)
      const engines = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', p, 'package.json'), 'utf8')).engines?.node as string
      const min = /^>=\s*(\d+)/.exec(engines)
      expect(min, `${p} engines ${engines}`).to.not.equal(null)
      expect(Number(min![1]), `${p} engines ${engines}`).to.be.at.most(20)
    }
  })

  it('a repeatable flag reads as repeatable in every synopsis: [-s FILE]..., never -s FILE...', () => {
    for (const id of COMMANDS) {
      const h = run(...words(id), '--help').stdout
      expect(h, id).to.not.match(/(^|\s|\[)-{1,2}[\w-]+[ =][A-Z<][\w<>=|]*\.\.\./m)
    }
    const flat = (id: string) => run(id, '--help').stdout.replace(/\s+/g, ' ') // the synopsis wraps
    expect(flat('scan')).to.include('[-s FILE]...')
    expect(flat('clone')).to.include('[-x PATTERN]...').and.include('[-r PATH=SOURCE]...')
  })
})

describe('cli: the README and --help cannot drift apart (issue 15.12)', function () {
  this.timeout(300_000)
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const blocks = [...readme.matchAll(/<!-- prism ([a-z]+(?: [a-z]+)*)(?: \([^)]*\))? -->\n```\n([\s\S]*?)\n```\n<!-- end prism \1 -->/g)]

  it('the reference is what scripts/readme.mjs writes from the commands\' definitions', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'readme.mjs'), '--check'], {cwd: ROOT, encoding: 'utf8'})
    expect(r.status, r.stderr).to.equal(0)
  })

  it('every command has a reference block, and each is what `prism CMD --help` shows', () => {
    const named = blocks.map((b) => b[1].replace(/ /g, ':'))
    expect(named).to.include.members(COMMANDS)
    for (const [, name, body] of blocks) {
      if (name === 'help') continue // `prism help --help` is the list of commands; --check covers its block
      const h = prism([...name.split(' '), '--help'], {env: {OCLIF_COLUMNS: '100'}})
      expect(h.status, name).to.equal(0)
      // Each section of the block (USAGE, ARGUMENTS, FLAGS, EXAMPLES) is in --help word for word.
      for (const section of body.split(/\n\n(?=[A-Z][A-Z ]+\n)/)) expect(h.stdout, `${name}: ${section.slice(0, 60)}`).to.include(section)
    }
  })

  it('the exit-code table names what the commands return', () => {
    const table = readme.slice(readme.indexOf('## Exit codes'), readme.indexOf('## Safety'))
    for (const code of ['| 0 |', '| 1 |', '| 2 |', '| 3 |', '| 5 |', '| 6 |', '| 7 |', '| 70 |', '129, 130, 143']) expect(table).to.include(code)
    expect(table).to.match(/fsck.*0, 1, 4, 8, and 16/s)
    const fsckHelp = prism(['fsck', '--help']).stdout
    expect(fsckHelp).to.match(/16 usage error/).and.match(/130, 143/)
    expect(prism(['scan', '--help']).stdout).to.match(/0 nothing found, 1 something found, 2 error/)
  })
})

describe('cli: fsck\'s status and report (issue 15.9)', function () {
  this.timeout(300_000)
  let dir: string
  let damaged: string
  const weird = nameText(Buffer.from('we\nird\xe9\x1b[31m\u009b', 'latin1'))
  before(() => {
    dir = tmpDir()
    damaged = newImage(dir, 16 * 1024 * 1024)
    edit(damaged, (ns) => {
      ns.mkdir('/' + weird)
      ns.writeFile(`/${weird}/f`, Buffer.from('x'))
      for (let i = 0; i < 300; i++) ns.writeFile(`/${weird}/g${i}`, Buffer.from(`g${i}`))
    })
    // Free the inodes behind many names: a long report, each line naming the odd directory.
    const raw = new RawImage(damaged)
    for (let i = 0; i < 300; i++) raw.patchInode(raw.locate(`/${weird}/g${i}`).ino, (b) => b.fill(0), false)
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('keeps its status when its reader goes away (fsck | head -1), on the fast path and through oclif, text and --json', async () => {
    const before = sha256File(damaged)
    for (const extra of [[], ['--json'], ['--wait=1'], ['--json', '--wait=1']]) {
      const r = await closedStdout(['fsck', '-i', damaged, ...extra], dir)
      expect(r.status, `fsck ${extra.join(' ')}: ${r.stderr}`).to.equal(4)
      expect(r.stderr).to.equal('')
    }
    expect(sha256File(damaged)).to.equal(before)
    // --repair with nobody reading: 1 (fixed), and a second check finds nothing.
    const copy = path.join(dir, 'repair.img')
    fs.copyFileSync(damaged, copy)
    expect((await closedStdout(['fsck', '--repair', '-i', copy], dir)).status).to.equal(1)
    expect((await closedStdout(['fsck', '-i', copy], dir)).status).to.equal(0)
  })

  it('a usage error is one line and status 16, on the fast path and through oclif; an image that cannot be opened is 8', () => {
    oneLine(prism(['df', 'extra'], {cwd: dir}), 2, /unexpected argument 'extra' \(see 'prism df --help'\)/)
    oneLine(prism(['fileset', 'list', 'x', 'y'], {cwd: dir}), 2, /unexpected argument 'x y'/)
    for (const args of [['--bogus'], ['extra-arg'], ['--wait', 'x'], ['-i'], ['--repair', '--bogus', '-i', damaged], ['--json', '--bogus']]) {
      oneLine(prism(['fsck', ...args], {cwd: dir}), 16, /./, `fsck ${args.join(' ')}`)
    }
    const empty = path.join(dir, 'empty')
    fs.mkdirSync(empty)
    oneLine(prism(['fsck'], {cwd: empty}), 16, /no Prism image/)
    oneLine(prism(['fsck', '-i', path.join(dir, 'missing.img')], {cwd: dir}), 8, /no such image file/)
  })

  it('shows names with \\xNN, one line per problem: never a raw NUL, newline, ESC or U+FFFD; --json carries the names as they are', () => {
    const r = prism(['fsck', '-i', damaged])
    expect(r.status).to.equal(4)
    const lines = r.stdout.split('\n').filter((l) => l !== '')
    for (const l of lines) expect(l, l).to.match(/^([A-Z][A-Z0-9_]+ |ERRORS LEFT: |run 'prism fsck)/)
    expect(r.stdout).to.not.match(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\ufffd]/)
    expect(lines.filter((l) => l.startsWith('DIRENT_DANGLING'))).to.have.length(300)
    expect(r.stdout).to.include('root:/we\\x0aird\\xe9\\x1b[31m\\x9b/g0:')
    const json = JSON.parse(prism(['fsck', '--json', '-i', damaged]).stdout) as {problems: Array<{where: string}>}
    expect(json.problems.some((p) => p.where.includes(`/${weird}/g0`))).to.equal(true)
    // A NUL in a name (fsck's own fixture): \x00 in the text, in the path and in the name.
    const nul = path.join(dir, 'nul.img')
    fs.writeFileSync(nul, zlib.gunzipSync(fs.readFileSync(path.join(ROOT, 'fixtures', 'fsck', 'dirent-name-nul', 'image.gz'))))
    const t = prism(['fsck', '-i', nul]).stdout
    expect(t).to.not.include('\u0000')
    expect(t).to.include('root:/deep/\\x00: entry name "\\x00" is invalid')
  })

  it('an error line never breaks: a path with a newline or ESC in a message is one line', () => {
    fs.mkdirSync(path.join(dir, 'oneline'))
    const img = newImage(path.join(dir, 'oneline'), 16 * 1024 * 1024)
    const r = prism(['cat', '-i', img, 'root:/a\nb\u001b[2Jc'])
    oneLine(r, 1, /root:\/a\\x0ab\\x1b\[2Jc: no such file/)
  })
})

describe('cli: small things a careful user hits (issue 15.13)', function () {
  this.timeout(300_000)
  let dir: string
  before(() => { dir = tmpDir() })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  const run = (args: string[], cwd = dir) => prism(args, {cwd})
  const fresh = (name: string) => {
    const d = path.join(dir, name)
    fs.mkdirSync(d)
    const img = newImage(d, 64 * 1024 * 1024)
    edit(img, (ns) => {
      ns.mkdir('/d')
      ns.writeFile('/a', Buffer.from('a\n'))
      ns.writeFile('/d/x', Buffer.from('x\n'))
      ns.link('/a', '/a2')
    })
    return {d, img}
  }

  it('write --help pipes into prism; the fileset topic names create', () => {
    const w = run(['write', '--help']).stdout
    expect(w).to.include('echo sandbox | prism write')
    expect(w).to.not.match(/> prism/)
    expect(run(['fileset', '--help']).stdout).to.match(/Create, list, rename and delete filesets/)
    expect(run(['help']).stdout).to.match(/fileset\s+Create, list, rename and delete/)
  })

  it('a mkfs that fails removes only the file it created: the next mkfs needs no --force, and a file it was to overwrite is kept', () => {
    // A size the host cannot hold: a file-size limit makes ftruncate fail with EFBIG.
    const limited = (args: string[]) => spawnSync('sh', ['-c', `trap '' XFSZ; ulimit -f 1024; exec "$0" "$@"`, process.execPath, BIN, ...args], {cwd: dir, encoding: 'utf8'})
    const r = limited(['mkfs', 'big.img', '--size', '64M'])
    expect(r.status, r.stderr).to.equal(1)
    expect(r.stderr).to.match(/^prism: big\.img: the host file system cannot hold a file of 64 MiB/)
    expect(fs.existsSync(path.join(dir, 'big.img'))).to.equal(false)
    expect(run(['mkfs', 'big.img', '--size', '64M']).status).to.equal(0)
    fs.writeFileSync(path.join(dir, 'keep.img'), 'precious\n')
    const f = limited(['mkfs', 'keep.img', '--size', '64M', '--force'])
    expect(f.status, f.stderr).to.equal(1)
    expect(fs.readFileSync(path.join(dir, 'keep.img'), 'utf8')).to.equal('precious\n')
    // The same for a size too small, a directory that does not exist, and a path through a file.
    oneLine(run(['mkfs', 'small.img', '--size', '1M']), 2, /image too small: at least 1552 KiB$/m)
    oneLine(run(['mkfs', 'small.img', '--size', '0']), 2, /image too small: at least 1552 KiB$/m)
    oneLine(run(['mkfs', 'small.img', '--size', '1K']), 2, /image too small: at least 1552 KiB$/m)
    oneLine(run(['mkfs', 'small.img', '--size', '8M', '--inodes', '100000']), 2, /image too small: at least \d+ (KiB|MiB) with these settings/)
    expect(fs.existsSync(path.join(dir, 'small.img'))).to.equal(false)
    expect(run(['mkfs', 'small.img', '--size', '1552K']).status).to.equal(0)
    // Its default journal (1/8 of an image under 32 MiB) is one --journal-size also takes.
    expect(run(['df', '-i', 'small.img']).stdout).to.match(/^journal 192 KiB: /m)
    expect(run(['mkfs', 'small.img', '--size', '1552K', '--journal-size', '192K', '--force']).status).to.equal(0)
    oneLine(run(['mkfs', 'small2.img', '--size', '8M', '--journal-size', '100K']), 2, /journal must be at least 128K$/m)
    oneLine(run(['mkfs', '/nonexistent/dir/c.img']), 1, /\/nonexistent\/dir\/c\.img: directory \/nonexistent\/dir does not exist/)
    oneLine(run(['mkfs', 'keep.img/c.img']), 1, /keep\.img is not a directory/)
    expect(fs.readFileSync(path.join(dir, 'keep.img'), 'utf8')).to.equal('precious\n')
  })

  it('an empty or invalid fileset name is a usage error (2) for clone, fileset create, rename and delete, and changes nothing', () => {
    const {d, img} = fresh('names')
    const before = sha256File(img)
    for (const args of [['clone', 'root', ''], ['clone', 'root', '', '--mode', 'sync'], ['clone', 'root', '', '--replace', '/d=@empty-dir'],
      ['clone', 'root', 'bad name'], ['clone', 'root', 'a/b', '--mode', 'lazy'], ['fileset', 'create', ''], ['fileset', 'create', 'x y'],
      ['fileset', 'create', '-lead'], ['fileset', 'rename', 'root', ''], ['fileset', 'rename', 'root', 'a:b'], ['fileset', 'create', 'x'.repeat(300)],
      ['fileset', 'delete', 'q*'], ['fileset', 'delete', 'root:'], ['fileset', 'delete', ''], ['fileset', 'rename', 'bad*', 'x']]) {
      const r = run(args, d)
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).to.equal(2)
      expect(r.stderr.trim().split('\n')).to.have.length(1)
    }
    // A name of allowed characters that starts with one it may not start with says so.
    for (const name of ['.hidden', '..', '-dash']) {
      oneLine(run(['fileset', 'create', '--', name], d), 2, new RegExp(`invalid fileset name '\\${name}'.*not starting with '\\${name[0]}'`), name)
    }
    expect(sha256File(img)).to.equal(before)
  })

  it('noclone refuses a fileset\'s root, however it is written; --clear is allowed there', () => {
    const {d, img} = fresh('noclone')
    const before = sha256File(img)
    for (const p of ['root:/', 'root:', 'root:/.', 'root://', 'root:/d/..']) oneLine(run(['noclone', p], d), 1, /root of fileset 'root' cannot be marked nonclonable/, p)
    expect(sha256File(img)).to.equal(before)
    expect(run(['noclone', '--clear', 'root:/'], d).status).to.equal(0)
    expect(run(['noclone', 'root:/d'], d).status).to.equal(0)
  })

  it('ls -R lists depth first, as GNU ls -R does', () => {
    const {d} = fresh('lsR')
    const host = path.join(d, 'host')
    for (const p of ['b/c', 'd/e/f', 'd/g']) {
      fs.mkdirSync(path.join(host, p), {recursive: true})
      expect(run(['mkdir', '-p', `root:/${p}`], d).status).to.equal(0)
    }
    // (the image's /a, /a2 and /d/x are files: the same on the host)
    for (const f of ['a', 'a2', 'd/x']) fs.writeFileSync(path.join(host, f), '')
    const gnu = spawnSync('ls', ['-R'], {cwd: host, env: {...process.env, LC_ALL: 'C'}, encoding: 'utf8'}).stdout
    const ours = run(['ls', '-R', 'root:/'], d).stdout
    expect(ours.replace(/^root:\/:$/m, '.:').replace(/^root:\//gm, './')).to.equal(gnu)
    expect(ours.split('\n').filter((l) => l.endsWith(':'))).to.deep.equal(['root:/:', 'root:/b:', 'root:/b/c:', 'root:/d:', 'root:/d/e:', 'root:/d/e/f:', 'root:/d/g:'])
  })

  it('a missing argument is named, in one line, with status 2', () => {
    const {d} = fresh('missing')
    oneLine(run(['xattr'], d), 2, /^prism: missing arguments ACTION and PATH \(see 'prism xattr --help'\)\n$/, 'xattr')
    oneLine(run(['import', 'x.img'], d), 2, /^prism: missing argument ARCHIVE \(see 'prism import --help'\)\n$/, 'import')
    oneLine(run(['clone'], d), 2, /^prism: missing argument SRC \(see 'prism clone --help'\)\n$/, 'clone')
    oneLine(run(['fileset', 'rename', 'a'], d), 2, /^prism: missing argument TO \(see 'prism fileset rename --help'\)\n$/, 'rename')
  })

  it('host errors are said in words, never in Node\'s ("…, write", "illegal operation on a directory"); flags as the user wrote them', () => {
    const {d} = fresh('hostwords')
    oneLine(run(['cp', 'root:/a', '/dev/full'], d), 1, /^prism: cannot write '\/dev\/full': No space left on device\n$/, 'cp')
    oneLine(run(['clone', 'root', 'q', '--exclude-from', d], d), 1, new RegExp(`^prism: ${d}: is a directory\n$`), 'exclude-from')
    oneLine(run(['fileset', 'list', '--no-space', '-o', 'name'], d), 2, /^prism: --no-space cannot be given with --output /, 'fileset list')
  })

  it('noclone of a file with several names says that every name is marked, and a clone leaves out all of them', () => {
    const {d} = fresh('noclone-links')
    let r = run(['noclone', 'root:/a2'], d) // (/a2 is a hard link of /a)
    expect([r.status, r.stderr]).to.deep.equal([0, "prism: note: root:/a2 has 2 names (hard links): the mark is the file's, so it is set under every name\n"])
    expect(run(['ls', '-l', 'root:/'], d).stdout).to.match(/ a +\[noclone\]/)
    expect(run(['clone', 'root', 'c', '--mode', 'sync'], d).status).to.equal(0)
    expect(run(['ls', 'c:/a'], d).status).to.equal(1)
    expect(run(['ls', 'c:/a2'], d).status).to.equal(1)
    expect(run(['ls', 'c:/d/x'], d).status).to.equal(0)
    r = run(['noclone', '--clear', 'root:/a'], d)
    expect([r.status, r.stderr]).to.deep.equal([0, "prism: note: root:/a has 2 names (hard links): the mark is the file's, so it is cleared under every name\n"])
    // One name: nothing to say.
    expect(run(['noclone', 'root:/d'], d).stderr).to.equal('')
  })

  it('mv of a file onto itself fails as GNU mv does ("are the same file"), in every spelling, and changes nothing', () => {
    const {d, img} = fresh('mv')
    const before = read(img, (ns) => snapshot(ns))
    for (const [src, dst] of [['root:/a', 'root:/'], ['root:/a', 'root:/a'], ['root:/d/x', 'root:/d/'], ['root:/d/x', 'root:/d'], ['root:/a', 'root:/a2'], ['root:/d', 'root:/']]) {
      oneLine(run(['mv', src, dst], d), 1, /are the same file/, `mv ${src} ${dst}`)
    }
    expect(read(img, (ns) => snapshot(ns))).to.deep.equal(before)
    expect(run(['mv', 'root:/a', 'root:/d/'], d).status).to.equal(0)
    expect(run(['cat', 'root:/d/a'], d).stdout).to.equal('a\n')
  })

  it('status shows an unknown time left as `unknown`, never `~-`', () => {
    const {d} = fresh('status')
    expect(run(['clone', 'root', 'c1', '--no-background'], d).status).to.equal(0)
    const s = run(['status'], d)
    expect(s.stdout).to.match(/c1\s+async\s+root\s+\S+\s+\S+\s+(unknown|~\S+)/)
    expect(s.stdout).to.not.include('~-')
  })

  it('fileset delete of a fileset with clones needs --force and names them; with --force the clones keep their files', () => {
    const {d, img} = fresh('delete')
    expect(run(['clone', 'root', 'c1', '--mode', 'sync'], d).status).to.equal(0)
    expect(run(['clone', 'c1', 'c2', '--mode', 'lazy'], d).status).to.equal(0)
    const before = sha256File(img)
    oneLine(run(['fileset', 'delete', 'root'], d), 1, /fileset 'root' has clones \(c1\).*--force/)
    oneLine(run(['fileset', 'delete', 'c1'], d), 1, /fileset 'c1' has clones \(c2\).*--force/)
    expect(sha256File(img)).to.equal(before)
    expect(run(['fileset', 'delete', 'c1', '--force'], d).status).to.equal(0)
    expect(run(['cat', 'c2:/d/x'], d).stdout).to.equal('x\n')
    const sets = read(img, (_ns, vol) => listFilesets(vol).map((f) => ({name: f.name, id: f.id, parent: f.parentId})))
    expect(sets.map((f) => f.name)).to.deep.equal(['root', 'c2'])
    expect(sets[1].parent).to.equal(sets[0].id)
    expect(run(['fileset', 'delete', 'c2'], d).status).to.equal(0) // no clones: no --force needed
  })

  it('ls --json is an array whatever the number of paths; ls -l gains -h and -d', () => {
    const {d} = fresh('ls')
    for (const args of [['root:/'], ['root:/d'], ['root:/a'], ['root:/', 'root:/d'], ['-R', 'root:/'], ['-d', 'root:/d']]) {
      const j = JSON.parse(run(['ls', '--json', ...args], d).stdout)
      expect(Array.isArray(j), args.join(' ')).to.equal(true)
      expect(j[0]).to.have.property('entries')
    }
    expect(JSON.parse(run(['ls', '--json', 'root:/'], d).stdout)).to.have.length(1)
    const lh = run(['ls', '-lh', 'root:/'], d).stdout
    expect(lh).to.match(/^d\S+\s+\d+\s+\d+\s+\d+\s+4\.0 KiB .* d$/m)
    expect(lh).to.match(/^-\S+\s+2\s+\d+\s+\d+\s+2 B .* a$/m)
    expect(run(['ls', '-d', 'root:/d', 'root:/a'], d).stdout).to.equal('root:/d\nroot:/a\n')
    const ld = run(['ls', '-ld', 'root:/d'], d).stdout
    expect(ld.trim().split('\n')).to.have.length(1)
    expect(ld.trim()).to.match(/^drwx.* root:\/d$/)
  })

  it('a symlink or a hard link to the image is the same image, not a second one', () => {
    const {d} = fresh('links')
    fs.symlinkSync('disk.img', path.join(d, 'alias.img'))
    fs.linkSync(path.join(d, 'disk.img'), path.join(d, 'hard.img'))
    expect(run(['ls', 'root:/d'], d).stdout).to.equal('x\n')
    // A second, different image still makes the choice the user's.
    fs.mkdirSync(path.join(d, 'other'))
    newImage(path.join(d, 'other'))
    fs.renameSync(path.join(d, 'other', 'disk.img'), path.join(d, 'other.img'))
    oneLine(run(['ls', 'root:/'], d), 2, /several Prism images here \(alias\.img, other\.img\)/)
  })
})
