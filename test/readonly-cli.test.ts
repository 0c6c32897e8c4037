// A user who may only read the image file reads clones still expanding (issue 15, point 5),
// for real: the image is root's, mode 0644, and every read command runs as another user
// (uid 65534 through setpriv; run as a user other than root, the test makes the image 0444
// instead). Lazy and async clones, with excludes, a noclone mark, a clone of a clone and a
// subtree clone, are read with ls -l and -lR (and --json), cat, stat, cp -r out, diff both
// ways, scan, fileset list, status and df. Each must succeed without writing a byte, and show
// what the same commands show, run by root, on a copy of the image after `prism expand --all`
// (fileset list and status: on a copy not expanded, since they report expansion itself).
// A user who may write the image still expands on demand, for good, as before, except when
// another process holds the image at that moment: then the read does not wait to write.
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {expect} from 'chai'
import {clone} from '../src/clone/clone.js'
import {IF_NOCLONE} from '../src/format/constants.js'
import {copy} from '../src/ops/copy.js'
import {tryFlock} from '../src/device/file.js'
import {BIN, ROOT, edit, hostTree, newImage, prism, sha256File, tmpDir, type CliResult} from './helpers.js'

const NOBODY = 65534
const isRoot = process.getuid?.() === 0

describe('reading clones still expanding without write access (issue 15, point 5)', function () {
  this.timeout(600000)
  let dir: string
  let img: string
  let expanded: string
  let unexpanded: string
  /** runs prism as a user who may only read `img` */
  let reader: (args: string[]) => CliResult

  before(function () {
    dir = tmpDir()
    fs.chmodSync(dir, 0o755)
    const asNobody = (args: string[]): CliResult => {
      const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, BIN, ...args], {
        cwd: dir, env: {...process.env, HOME: dir, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}, maxBuffer: 1 << 30,
      })
      return {status: r.status ?? -1, stdout: r.stdout?.toString() ?? '', stderr: r.stderr?.toString() ?? String(r.error)}
    }
    if (isRoot) {
      const probe = asNobody(['--version'])
      if (probe.status !== 0) {
        console.log(`      skipped: cannot run prism as uid ${NOBODY} through setpriv (${(probe.stderr || probe.stdout).trim().split('\n')[0]}); is ${ROOT} readable by others?`)
        this.skip()
      }
      reader = asNobody
    } else {
      reader = (args) => prism(args, {cwd: dir, env: {HOME: dir}})
    }
    img = newImage(dir)
    const tree = hostTree(dir)
    fs.writeFileSync(path.join(tree, 'var', 'evil.bin'), Buffer.concat([Buffer.alloc(100, 7), Buffer.from('PRISM-RO-SIGNATURE'), Buffer.alloc(50)]))
    fs.writeFileSync(path.join(tree, 'var', 'log', 'big.log'), Buffer.alloc(300_000, 'l'))
    edit(img, (ns, vol) => {
      copy(vol, [{kind: 'host', path: tree}], {kind: 'image', fileset: 'root', path: '/t'}, {recursive: true})
      ns.symlink('/t/etc', '/etc-abs')
      ns.symlink('t/etc/../var', '/var-rel')
      ns.mkdir('/t/secret')
      ns.writeFile('/t/secret/key', Buffer.from('do not clone\n'))
      ns.setFlag('/t/secret', IF_NOCLONE, true)
      vol.commit()
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz'}, {mode: 'lazy', exclude: ['**/syslog']})
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'as'}, {mode: 'async'})
      clone(vol, {fileset: 'lz', path: '/'}, {fileset: 'lz2'}, {mode: 'lazy', exclude: ['/t/home']})
      clone(vol, {fileset: 'root', path: '/t'}, {fileset: 'sub'}, {mode: 'lazy'})
    })
    // Writable reads made before the clone is read only expand part of it.
    expect(prism(['cat', 'lz:/t/etc/hostname', '-i', img]).status).to.equal(0)
    unexpanded = path.join(dir, 'unexpanded.img')
    fs.copyFileSync(img, unexpanded)
    expanded = path.join(dir, 'expanded.img')
    fs.copyFileSync(img, expanded)
    expect(prism(['expand', '--all', '-i', expanded]).status).to.equal(0)
    fs.chmodSync(img, isRoot ? 0o644 : 0o444)
    fs.writeFileSync(path.join(dir, 'sig.ndb'), `Prism.RO.Test:0:*:${Buffer.from('PRISM-RO-SIGNATURE').toString('hex')}\n`)
    fs.chmodSync(path.join(dir, 'sig.ndb'), 0o644)
  })
  after(() => { if (dir) fs.rmSync(dir, {recursive: true, force: true}) })

  /** Output that names the image or inode numbers, which differ by nature. */
  const norm = (s: string) => s.replaceAll(/Inode: \d+/g, 'Inode: N').replaceAll(/"ino": \d+/g, '"ino": N').replaceAll(/"generation": \d+/g, '"generation": N')
    .replaceAll(/Shared by: \d+/g, 'Shared by: N').replaceAll(/"share": \d+/g, '"share": N')

  function same(args: string[], status = 0): void {
    const r = reader([...args, '-i', img])
    const want = prism([...args, '-i', expanded], {cwd: dir})
    const what = args.join(' ')
    expect(want.status, `${what} on the expanded copy: ${want.stderr}`).to.equal(status)
    expect(r.stderr, `${what}: stderr`).to.equal(want.stderr)
    expect(r.status, `${what}: status`).to.equal(status)
    expect(norm(r.stdout), `${what}: stdout`).to.equal(norm(want.stdout))
  }

  for (const fsName of ['lz', 'as', 'lz2', 'sub']) {
    it(`${fsName}: ls, cat, stat, diff and scan show what expansion makes`, () => {
      const before = sha256File(img)
      for (const p of ['/', '/t', '/t/etc', '/etc-abs', '/var-rel', '/etc', '/var/log']) {
        same(['ls', '-l', `${fsName}:${p}`], fsName === 'sub' ? (['/', '/etc', '/var/log'].includes(p) ? 0 : 1) : (['/etc', '/var/log'].includes(p) ? 1 : 0))
      }
      same(['ls', '-lR', `${fsName}:/`])
      same(['ls', '-aR', '--json', `${fsName}:/`])
      const files = fsName === 'sub' ? ['/etc/passwd', '/etc/passwd.bak', '/var/log/big.log', '/etc/hn'] : ['/t/etc/passwd', '/t/etc/passwd.bak', '/t/var/log/big.log', '/etc-abs/hn', '/var-rel/evil.bin']
      same(['cat', ...files.map((f) => `${fsName}:${f}`)])
      same(['stat', ...files.map((f) => `${fsName}:${f}`), `${fsName}:/`, `${fsName}:${files[0].replace(/\/[^/]+$/, '')}`])
      same(['stat', '--json', `${fsName}:${files[0]}`])
      same(['diff', 'root', fsName])
      same(['diff', fsName, 'root'])
      same(['diff', `${fsName}:/`, 'lz:/t'])
      same(['scan', fsName, '--signatures', path.join(dir, 'sig.ndb')], 1)
      same(['scan', fsName, 'root', '--signatures', path.join(dir, 'sig.ndb'), '--json'], 1)
      expect(sha256File(img), 'the image after reading it').to.equal(before)
    })

    it(`${fsName}: cp -r out copies what expansion makes`, () => {
      const before = sha256File(img)
      const mine = path.join(dir, `out-${fsName}-reader`)
      const theirs = path.join(dir, `out-${fsName}-root`)
      fs.mkdirSync(mine)
      if (isRoot) fs.chownSync(mine, NOBODY, NOBODY)
      fs.mkdirSync(theirs)
      const r = reader(['cp', '-r', `${fsName}:/`, path.join(mine, 'x'), '-i', img])
      expect(r.stderr).to.equal('')
      expect(r.status).to.equal(0)
      expect(prism(['cp', '-r', `${fsName}:/`, path.join(theirs, 'x'), '-i', expanded]).status).to.equal(0)
      expect(listHost(path.join(mine, 'x'))).to.deep.equal(listHost(path.join(theirs, 'x')))
      expect(sha256File(img)).to.equal(before)
    })
  }

  it('fileset list, status and df work, and show the clones as not expanded yet', () => {
    const before = sha256File(img)
    const times = (s: string) => s.replaceAll(/"(elapsedMs|etaMs)": [\d.-]+|null/g, '"$1": T')
    for (const args of [['fileset', 'list', '--json'], ['fileset', 'list'], ['status', '--json'], ['df']]) {
      const r = reader([...args, '-i', img])
      const want = prism([...args, '-i', unexpanded], {cwd: dir})
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).to.equal(0)
      if (args[0] !== 'df') expect(times(r.stdout), args.join(' ')).to.equal(times(want.stdout))
      else expect(r.stdout.replace(/ in \S+\.img/, ''), 'df').to.equal(want.stdout.replace(/ in \S+\.img/, '')) // the image's name differs
    }
    const list = JSON.parse(reader(['fileset', 'list', '--json', '-i', img]).stdout) as Array<{name: string, state: string}>
    expect(list.filter((f) => f.state === 'expanding').map((f) => f.name).sort()).to.deep.equal(['as', 'lz', 'lz2', 'sub'])
    expect(sha256File(img)).to.equal(before)
  })

  it('a command that writes still says the image is read-only', () => {
    const before = sha256File(img)
    const r = reader(['mkdir', 'lz:/new', '-i', img])
    expect(r.status).to.equal(7)
    expect(r.stderr).to.match(/^prism: .*image file is read-only\n$/)
    expect(sha256File(img)).to.equal(before)
  })

  it('a user who may write the image still expands on demand, for good', () => {
    const copyImg = path.join(dir, 'writable.img')
    fs.copyFileSync(unexpanded, copyImg)
    const done = () => (JSON.parse(prism(['status', '--json', '-i', copyImg]).stdout) as {expanding: Array<{fileset: string, done: number}>}).expanding.find((c) => c.fileset === 'lz2')!.done
    const before = done()
    expect(prism(['ls', 'lz2:/t/etc', '-i', copyImg]).status).to.equal(0)
    expect(done()).to.be.greaterThan(before)
  })
})

/** A host tree as cp -r out wrote it: types, modes, sizes, contents, targets, times (not owners). */
function listHost(top: string): string[] {
  const out: string[] = []
  const walk = (p: string, rel: string) => {
    const st = fs.lstatSync(p)
    const head = `${rel || '.'} ${(st.mode & 0o7777).toString(8)} nlink=${st.nlink} m=${Math.round(st.mtimeMs)}`
    if (st.isDirectory()) {
      out.push(head)
      for (const n of fs.readdirSync(p).sort()) walk(path.join(p, n), `${rel}/${n}`)
    } else if (st.isSymbolicLink()) out.push(`${rel} -> ${fs.readlinkSync(p)}`)
    else out.push(`${head} size=${st.size} ${fs.readFileSync(p).toString('base64').slice(0, 40)}`)
  }
  walk(top, '')
  return out
}

describe('a reader who may write the image does not wait to write it', function () {
  this.timeout(120000)

  it('reads a clone still expanding in memory while another process holds the image shared', () => {
    const dir = tmpDir()
    try {
      const img = newImage(dir)
      edit(img, (ns, vol) => {
        ns.mkdir('/etc')
        ns.writeFile('/etc/hostname', Buffer.from('held\n'))
        vol.commit()
        clone(vol, {fileset: 'root', path: '/'}, {fileset: 'lz'}, {mode: 'lazy'})
      })
      const before = sha256File(img)
      // Another reader holds the shared lock: expanding for good would wait for it (and give
      // up with exit 3 after --wait); reading goes on, expanded in memory.
      const fd = fs.openSync(img, 'r')
      try {
        expect(tryFlock(fd, 'shnb')).to.equal(true)
        for (const args of [['ls', '-l', 'lz:/etc'], ['cat', 'lz:/etc/hostname'], ['stat', 'lz:/etc/hostname']]) {
          const r = prism([...args, '--wait', '0', '-i', img], {cwd: dir})
          expect(r.stderr, args.join(' ')).to.equal('')
          expect(r.status, args.join(' ')).to.equal(0)
          if (args[0] === 'cat') expect(r.stdout).to.equal('held\n')
        }
        expect(sha256File(img), 'nothing was expanded for good').to.equal(before)
      } finally {
        fs.closeSync(fd)
      }
      // Alone, the same reader expands for good, as before.
      expect(prism(['cat', 'lz:/etc/hostname', '-i', img], {cwd: dir}).stdout).to.equal('held\n')
      expect(sha256File(img)).to.not.equal(before)
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
