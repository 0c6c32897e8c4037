// End to end through the real CLI (bin/run.js, built dist/): every command on real image
// files, the user journey of the README, image discovery, and bad input: one line on
// stderr, the documented exit code, and an unchanged image.
import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {ROOT, hostTree, prism, sha256File, tmpDir} from './helpers.js'

const SAMPLE = path.join(ROOT, 'fixtures', 'sample-rootfs')

function ok(r: {status: number, stderr: string, stdout: string}): string {
  expect(r.stderr, r.stderr).to.equal('')
  expect(r.status).to.equal(0)
  return r.stdout
}

function failsWith(r: {status: number, stderr: string}, status: number, msg: RegExp): void {
  expect(r.status, r.stderr).to.equal(status)
  expect(r.stderr.trim().split('\n')).to.have.length(1)
  expect(r.stderr).to.match(/^prism: /)
  expect(r.stderr).to.match(msg)
}

describe('cli: the user journey', function () {
  this.timeout(120000)
  let dir: string
  before(() => { dir = tmpDir() })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  const run = (...args: string[]) => prism(args, {cwd: dir})

  it('answers --version and --help', () => {
    expect(ok(run('--version'))).to.match(/prism-fs\/\d/)
    const help = ok(run('--help'))
    for (const c of ['mkfs', 'cp', 'cat', 'ls', 'stat', 'mkdir', 'rm', 'mv', 'ln', 'chmod', 'write', 'truncate', 'df', 'fsck']) expect(help).to.include(c)
    expect(ok(run('cp', '--help'))).to.include('EXAMPLES')
  })

  it('makes an image, imports a tree, lists and reads it, without naming the image', () => {
    expect(ok(run('mkfs', 'disk.img', '--size', '256M'))).to.match(/created disk.img/)
    ok(run('cp', '-r', SAMPLE, 'root:/'))
    expect(ok(run('ls', 'root:/')).split('\n')).to.include.members(['etc', 'home', 'usr', 'var', 'tmp'])
    expect(ok(run('cat', 'root:/etc/hostname'))).to.equal('sample\n')
    expect(ok(run('cat', 'root:/usr/bin/hi'))).to.include('hello from the sample tree')
    const long = ok(run('ls', '-l', 'root:/usr/bin'))
    expect(long).to.match(/-rwxr-xr-x .* hello/)
    expect(long).to.match(/lrwxrwxrwx .* hi -> hello/)
    const json = JSON.parse(ok(run('ls', '-lR', '--json', 'root:/etc')))
    expect(json.map((l: {path: string}) => l.path)).to.include('root:/etc/apt')
    const all = ok(run('ls', '-a', 'root:/tmp'))
    expect(all).to.include('.keep')
    expect(ok(run('ls', 'root:/tmp'))).to.not.include('.keep')
  })

  it('exports the tree back identical to the source', () => {
    ok(run('cp', '-r', 'root:/', path.join(dir, 'out')))
    const list = (p: string) => fs.readdirSync(p, {recursive: true}).map(String).sort()
    expect(list(path.join(dir, 'out'))).to.deep.equal(list(SAMPLE))
    expect(fs.readFileSync(path.join(dir, 'out/usr/share/doc/prism/random.txt')).equals(fs.readFileSync(path.join(SAMPLE, 'usr/share/doc/prism/random.txt')))).to.equal(true)
    expect(fs.readlinkSync(path.join(dir, 'out/usr/bin/hi'))).to.equal('hello')
    expect(fs.statSync(path.join(dir, 'out/usr/bin/hello')).mode & 0o777).to.equal(0o755)
    expect(fs.statSync(path.join(dir, 'out/etc/passwd')).mtimeMs).to.be.closeTo(fs.statSync(path.join(SAMPLE, 'etc/passwd')).mtimeMs, 0.01)
  })

  it('keeps hard links and modes through import and export', () => {
    const tree = hostTree(dir)
    ok(run('mkdir', 'root:/t'))
    ok(run('cp', '-r', tree, 'root:/t'))
    const st = JSON.parse(ok(run('stat', '--json', 'root:/t/tree/etc/passwd')))[0]
    const st2 = JSON.parse(ok(run('stat', '--json', 'root:/t/tree/etc/passwd.bak')))[0]
    expect(st.ino).to.equal(st2.ino)
    expect(st.nlink).to.equal(2)
    ok(run('cp', '-r', 'root:/t/tree', path.join(dir, 'tree-out')))
    expect(fs.statSync(path.join(dir, 'tree-out/etc/passwd')).ino).to.equal(fs.statSync(path.join(dir, 'tree-out/etc/passwd.bak')).ino)
    expect(fs.statSync(path.join(dir, 'tree-out/home/alice')).mode & 0o777).to.equal(0o700)
  })

  it('copies names that are not UTF-8 byte for byte, through a lazy clone too, and shows them as \\xNN', () => {
    const host = path.join(dir, 'latin1')
    const b = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((p) => Buffer.from(p as string)))
    fs.mkdirSync(b(host, '/caf', [0xe9]), {recursive: true})
    fs.writeFileSync(b(host, '/caf', [0xe9], '/men', [0xfc]), 'soup\n')
    fs.symlinkSync(b('caf', [0xe9]), b(host, '/to-caf', [0xe9]))
    ok(run('cp', '-r', host, 'root:/latin1'))
    expect(ok(run('ls', 'root:/latin1')).split('\n')).to.include.members(['caf\\xe9', 'to-caf\\xe9'])
    expect(ok(run('ls', '-l', 'root:/latin1'))).to.match(/to-caf\\xe9 -> caf\\xe9\n/)
    const listed = JSON.parse(ok(run('ls', '--json', 'root:/latin1')))[0].entries.map((e: {name: string}) => e.name)
    expect(listed).to.include('caf\udce9')
    ok(run('clone', 'root', 'latin', '--mode', 'lazy'))
    ok(run('cp', '-r', 'latin:/latin1', path.join(dir, 'latin1-out')))
    const hex = (p: Buffer) => fs.readdirSync(p, {encoding: 'buffer'}).map((n) => n.toString('hex')).sort()
    expect(hex(b(dir, '/latin1-out'))).to.deep.equal(hex(b(host)))
    expect(fs.readFileSync(b(dir, '/latin1-out/to-caf', [0xe9], '/men', [0xfc]), 'utf8')).to.equal('soup\n')
    expect(fs.readlinkSync(b(dir, '/latin1-out/to-caf', [0xe9]), {encoding: 'buffer'}).equals(b('caf', [0xe9]))).to.equal(true)
    ok(run('fileset', 'delete', 'latin'))
    ok(run('fsck'))
  })

  it('writes, appends, truncates, moves, links and removes', () => {
    ok(prism(['write', 'root:/etc/motd'], {cwd: dir, input: 'line 1\n'}))
    ok(prism(['write', '--append', 'root:/etc/motd'], {cwd: dir, input: 'line 2\n'}))
    expect(ok(run('cat', 'root:/etc/motd'))).to.equal('line 1\nline 2\n')
    ok(run('mkdir', '-p', '-m', '700', 'root:/srv/www/site'))
    expect(JSON.parse(ok(run('stat', '--json', 'root:/srv/www/site')))[0].mode).to.equal('0700')
    ok(run('mv', 'root:/etc/motd', 'root:/srv/www/'))
    expect(ok(run('cat', 'root:/srv/www/motd'))).to.equal('line 1\nline 2\n')
    ok(run('ln', 'root:/srv/www/motd', 'root:/srv/motd-hard'))
    ok(run('ln', '-s', '/srv/www/motd', 'root:/srv/motd-soft'))
    expect(ok(run('cat', 'root:/srv/motd-soft'))).to.equal('line 1\nline 2\n')
    expect(JSON.parse(ok(run('stat', '--json', 'root:/srv/motd-hard')))[0].nlink).to.equal(2)
    ok(run('chmod', 'u+x,go-r', 'root:/srv/motd-hard'))
    expect(JSON.parse(ok(run('stat', '--json', 'root:/srv/www/motd')))[0].mode).to.equal('0700') // 0644 +x for u, -r for g and o
    ok(run('truncate', '-s', '3', 'root:/srv/www/motd'))
    expect(ok(run('cat', 'root:/srv/motd-hard'))).to.equal('lin')
    ok(run('truncate', '-s', '+1M', 'root:/srv/www/motd'))
    expect(JSON.parse(ok(run('stat', '--json', 'root:/srv/www/motd')))[0].size).to.equal(3 + 1024 * 1024)
    ok(run('rm', '-r', 'root:/srv'))
    expect(ok(run('ls', 'root:/'))).to.not.include('srv')
    ok(run('rm', '-f', 'root:/not-there'))
  })

  it('copies within the image sharing blocks, and between filesets', () => {
    ok(run('fileset', 'create', 'scratch'))
    const before = JSON.parse(ok(run('df', '--json')))
    ok(run('cp', '-r', 'root:/usr', 'scratch:/usr'))
    const after = JSON.parse(ok(run('df', '--json')))
    expect(after.blocksUsed - before.blocksUsed).to.be.below(4) // data shared, only directory blocks
    expect(ok(run('cat', 'scratch:/usr/bin/hello'))).to.include('hello from')
    ok(run('mv', 'scratch:/usr', 'root:/usr2'))
    expect(ok(run('ls', 'scratch:/'))).to.equal('')
    const list = JSON.parse(ok(run('fileset', 'list', '--json')))
    expect(list.map((f: {name: string}) => f.name)).to.deep.equal(['root', 'scratch'])
  })

  it('reports space with df', () => {
    const df = JSON.parse(ok(run('df', '--json')))
    expect(df.blocksUsed + df.blocksFree).to.equal(df.blocks)
    expect(df.inodesUsed).to.be.greaterThan(20)
    expect(ok(run('df', '-h'))).to.match(/blocks .*MiB/)
  })
})

describe('cli: finding the image', () => {
  let dir: string
  beforeEach(() => { dir = tmpDir() })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('uses --image, then PRISM_IMAGE, then the only image here', () => {
    ok(prism(['mkfs', 'a.img', '--size', '16M'], {cwd: dir}))
    ok(prism(['ls', 'root:/'], {cwd: dir}))
    ok(prism(['mkfs', 'b.img', '--size', '16M'], {cwd: dir}))
    failsWith(prism(['ls', 'root:/'], {cwd: dir}), 2, /several Prism images here \(a.img, b.img\)/)
    ok(prism(['ls', 'root:/', '-i', 'b.img'], {cwd: dir}))
    ok(prism(['ls', 'root:/'], {cwd: dir, env: {PRISM_IMAGE: path.join(dir, 'a.img')}}))
    failsWith(prism(['ls', 'root:/'], {cwd: tmpDir()}), 2, /no Prism image in the current directory/)
  })

  it('refuses a bare path where an image path is needed', () => {
    ok(prism(['mkfs', 'a.img', '--size', '16M'], {cwd: dir}))
    failsWith(prism(['cat', '/etc/hostname'], {cwd: dir}), 2, /write FILESET:\/path \(for example root:\/etc\/hostname\)/)
    failsWith(prism(['ls', 'nosuch:/'], {cwd: dir}), 1, /no fileset named 'nosuch'/)
  })
})

describe('cli: bad input leaves the image as it was', function () {
  this.timeout(60000)
  let dir: string
  let img: string
  let hash: string
  before(() => {
    dir = tmpDir()
    ok(prism(['mkfs', 'disk.img', '--size', '8M'], {cwd: dir}))
    img = path.join(dir, 'disk.img')
    ok(prism(['write', 'root:/file'], {cwd: dir, input: 'content'}))
    ok(prism(['mkdir', 'root:/dir'], {cwd: dir}))
  })
  beforeEach(() => { hash = sha256File(img) })
  afterEach(() => expect(sha256File(img)).to.equal(hash))
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  const run = (args: string[], input?: string) => prism(args, {cwd: dir, input})

  it('missing path', () => failsWith(run(['cat', 'root:/nope']), 1, /root:\/nope: no such file or directory/))
  it('path through a regular file', () => failsWith(run(['mkdir', 'root:/file/sub']), 1, /not a directory/))
  it('name over 255 bytes', () => failsWith(run(['mkdir', `root:/${'x'.repeat(256)}`]), 1, /longer than 255 bytes/))
  it('target that exists', () => failsWith(run(['mkdir', 'root:/dir']), 1, /already exists/))
  it('mkfs over an existing file', () => failsWith(run(['mkfs', 'disk.img']), 1, /exists \(use --force/))
  it('rm of a directory without -r', () => failsWith(run(['rm', 'root:/dir']), 1, /is a directory/))
  // (7.5 MiB: less than the 8 MiB image file, more than its free blocks)
  it('image full of blocks', () => failsWith(run(['write', 'root:/big'], 'x'.repeat(7.5 * 1024 * 1024)), 6, /no free blocks/))
  it('an input larger than the image file', () => failsWith(run(['write', 'root:/big'], 'x'.repeat(12 * 1024 * 1024)), 6, /the input is larger than the image disk\.img \(8388608 bytes\)/))
  it('bad flags', () => expect(run(['mkdir', '-m', '999', 'root:/m']).status).to.equal(2))

  it('a file that is not a Prism image', () => {
    const other = path.join(dir, 'other.img')
    fs.writeFileSync(other, Buffer.alloc(1 << 20, 7))
    failsWith(run(['ls', 'root:/', '-i', other]), 5, /^prism: \S*other\.img: not a Prism image$/m)
    // Shorter than a block, empty or starting as an image does: no image, as fsck says too.
    for (const head of ['', 'PRISMIMG', 'PRISMIMG' + '\0'.repeat(100)]) {
      fs.writeFileSync(other, head, 'latin1')
      for (const args of [['ls', 'root:/'], ['df'], ['fileset', 'list'], ['export', 'root', path.join(dir, 'o.tar')]]) {
        failsWith(run([...args, '-i', other]), 5, /^prism: \S*other\.img: not a Prism image \(smaller than one 4 KiB block\)$/m)
      }
      failsWith(run(['fsck', '-i', other]), 8, /^prism: \S*other\.img: not a Prism image \(smaller than one 4 KiB block\)$/m)
      expect(fs.readFileSync(other, 'latin1')).to.equal(head)
    }
  })

  it('an image of a newer format version', () => {
    const newer = path.join(dir, 'newer.img')
    fs.copyFileSync(img, newer)
    const fd = fs.openSync(newer, 'r+')
    fs.writeSync(fd, Buffer.from([9, 0, 0, 0]), 0, 4, 8)
    fs.closeSync(fd)
    failsWith(run(['ls', 'root:/', '-i', newer]), 5, /format version 9 is newer/)
  })

  it('a damaged primary superblock: the backup is used and the user told', () => {
    const dmg = path.join(dir, 'damaged.img')
    fs.copyFileSync(img, dmg)
    const fd = fs.openSync(dmg, 'r+')
    fs.writeSync(fd, Buffer.alloc(32, 0xee), 0, 32, 0x40)
    fs.closeSync(fd)
    const r = run(['cat', 'root:/file', '-i', dmg])
    expect(r.status).to.equal(0)
    expect(r.stdout).to.equal('content')
    expect(r.stderr).to.match(/^prism: primary superblock damaged .*using the backup copy\n$/)
    // A command that then fails still prints one line: its error, with the notice folded in.
    for (const args of [['cat', 'root:/absent'], ['ls', 'root:/absent'], ['mkdir', 'root:/file/x']]) {
      const f = run([...args, '-i', dmg])
      expect(f.status, args.join(' ')).to.not.equal(0)
      expect(f.stderr, args.join(' ')).to.match(/^prism: [^\n]+\(also: primary superblock damaged [^\n]*using the backup copy\)\n$/)
    }
  })

  it('a read-only image file', function () {
    const ro = path.join(dir, 'ro.img')
    fs.copyFileSync(img, ro)
    fs.chmodSync(ro, 0o444)
    if (process.getuid?.() === 0) {
      // root ignores mode bits; make the file immutable instead, where the host allows it
      const r = spawnSyncSafe('chattr', ['+i', ro])
      if (r !== 0) this.skip()
    }
    try {
      const h = sha256File(ro)
      expect(run(['cat', 'root:/file', '-i', ro]).stdout).to.equal('content')
      failsWith(run(['mkdir', 'root:/new', '-i', ro]), 7, /read-only/)
      expect(sha256File(ro)).to.equal(h)
    } finally {
      spawnSyncSafe('chattr', ['-i', ro])
    }
  })

  it('a second process holding the lock', async () => {
    const holder = spawn(process.execPath, ['-e', `
      const fsx = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'fs-ext'))});
      const fd = require('fs').openSync(${JSON.stringify(img)}, 'r');
      fsx.flockSync(fd, 'ex'); process.stdout.write('locked\\n'); setTimeout(() => {}, 20000)`])
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()))
    try {
      const t0 = Date.now()
      failsWith(run(['mkdir', 'root:/x', '--wait', '1', '-i', img]), 3, /locked by another prism process \(waited 1s/)
      failsWith(run(['ls', 'root:/', '--wait', '0', '-i', img]), 3, /locked/)
      expect(Date.now() - t0).to.be.below(8000)
    } finally {
      holder.kill()
    }
  })
})

function spawnSyncSafe(cmd: string, args: string[]): number {
  return spawnSync(cmd, args, {stdio: 'ignore'}).status ?? 1
}

describe('cli: cloning', function () {
  this.timeout(120000)
  let dir: string
  before(() => {
    dir = tmpDir()
    ok(prism(['mkfs', 'disk.img', '--size', '256M'], {cwd: dir}))
    ok(prism(['cp', '-r', SAMPLE, 'root:/'], {cwd: dir}))
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))
  const run = (...args: string[]) => prism(args, {cwd: dir})

  it('clones with excludes exactly as the README shows, and prints the generated name', () => {
    const r = run('clone', 'root', '--exclude', '/home', '--exclude', '/var/log')
    expect(r.status).to.equal(0)
    expect(r.stdout).to.equal('root-1\n')
    expect(ok(run('ls', 'root-1:/')).split('\n')).to.not.include('home')
    expect(ok(run('ls', 'root-1:/var'))).to.equal('')
    expect(ok(run('cat', 'root-1:/etc/hostname'))).to.equal('sample\n')
  })

  it('keeps a clone and its source apart', () => {
    ok(prism(['write', 'root-1:/etc/hostname'], {cwd: dir, input: 'clone\n'}))
    expect(ok(run('cat', 'root:/etc/hostname'))).to.equal('sample\n')
    expect(ok(run('cat', 'root-1:/etc/hostname'))).to.equal('clone\n')
    expect(JSON.parse(ok(run('stat', '--json', 'root:/etc/passwd')))[0].share).to.equal(2)
  })

  it('warns about a pattern that matches nothing, and reads --exclude-from', () => {
    fs.writeFileSync(path.join(dir, 'ignore'), '# sensitive\n/home\n*.txt\n')
    // Every mode tells: an async or lazy clone looks through the source's directories.
    for (const [mode, name] of [['sync', 'sb'], ['async', 'sb-async'], ['lazy', 'sb-lazy']]) {
      const r = run('clone', 'root', name, '--mode', mode, '--exclude-from', 'ignore', '--exclude', '/nope', '--replace', '/home=@empty-dir', '--json')
      expect(r.status).to.equal(0)
      expect(r.stderr).to.equal("prism: warning: --exclude '/nope' matched nothing\n")
      const res = JSON.parse(r.stdout)
      expect(res.fileset).to.equal(name)
      expect(res.unmatched).to.deep.equal(['/nope'])
      expect(ok(run('ls', `${name}:/home`))).to.equal('')
      expect(ok(run('ls', `${name}:/usr/share/doc/prism`))).to.not.include('random.txt')
    }
  })

  it('marks paths nonclonable and shows the mark', () => {
    ok(run('noclone', 'root:/home/alice'))
    expect(ok(run('ls', '-l', 'root:/home'))).to.match(/alice {2}\[noclone\]/)
    ok(run('clone', 'root', 'c2'))
    expect(ok(run('ls', 'c2:/home'))).to.equal('')
    ok(run('noclone', '--clear', 'root:/home/alice'))
    expect(ok(run('ls', '-l', 'root:/home'))).to.not.include('noclone')
  })

  it('grafts, lists, renames and deletes filesets', () => {
    ok(run('fileset', 'create', 'web'))
    expect(ok(run('clone', 'root:/etc', 'web:/etc'))).to.match(/cloned root:\/etc to web:\/etc/)
    expect(ok(run('cat', 'web:/etc/hostname'))).to.equal('sample\n')
    // root-1 is an async clone (the default): sharing shows in the space once it is expanded.
    expect(ok(run('expand', '--all'))).to.match(/root-1: expanded \d+ directories/)
    const list = JSON.parse(ok(run('fileset', 'list', '--json')))
    const byName = Object.fromEntries(list.map((f: {name: string}) => [f.name, f]))
    expect(byName['root-1'].parent).to.equal('root')
    expect(byName.root.referenced).to.be.greaterThan(60000)
    expect(byName.root.unique).to.be.below(byName.root.referenced)
    ok(run('fileset', 'rename', 'sb', 'sandbox'))
    const before = JSON.parse(ok(run('df', '--json'))).blocksUsed
    ok(run('fileset', 'delete', 'sandbox'))
    const after = JSON.parse(ok(run('df', '--json'))).blocksUsed
    expect(after).to.be.at.most(before)
    failsWith(run('fileset', 'delete', 'sandbox'), 1, /no fileset named 'sandbox'/)
    failsWith(run('clone', 'root', 'root-1'), 1, /already exists/)
    failsWith(run('clone', 'root:/etc/hostname', 'x'), 1, /can only clone a directory/)
  })
})
