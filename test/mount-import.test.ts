// `prism import ARCHIVE` while the image is mounted: the CLI streams the archive to the server,
// which imports it in slices (src/server/import.ts), so a probe making calls on other files of
// the mount meanwhile (test/mount-cpin-probe.py, its own process) keeps being answered; the
// import is the one the command makes alone (output, --json, exit status, and the tree:
// content, modes, owners, nanosecond times, attributes, ACLs, hard links, symlinks, devices,
// holes), for a plain tar, a .tar.zst, a .tar.bz2 and standard input, and shows in the mount as soon as
// the command returns. A damaged or truncated archive, refused entries, a full image, Ctrl-C and a server
// killed mid-import end as alone: the fileset as it was, the image clean. With
// PRISM_SERVED_SLICES=0 (the image lent to the command, the mounts held meanwhile) the probe's
// latency test fails.
import {expect} from 'chai'
import {execFileSync, spawn} from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {PYTHON, forceUnmount, run} from './fuse-support.js'
import {BIN, newImage, tmpDir} from './helpers.js'
import {catchingSignals, cli, Scratch, serverPid, skipWithoutFuse, waitExit} from './mount-support.js'
import {describeTree, fixAtimes, listing, probe, smallFiles, startCli, wrote} from './served-support.js'
import {buildTree, has, mkTar} from './tar-lib.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** `prism import ARGS... -` with `file` as standard input. */
function importStdin(args: string[], file: string) {
  return run('sh', ['-c', 'f="$1"; shift; exec "$@" < "$f"', 'sh', file, process.execPath, BIN, 'import', ...args, '-'], {timeoutMs: 120_000})
}

/** Every member of tar `file`: its header, pax records and a hash of its content (ctime, and a directory's atime, left out). */
async function members(file: string): Promise<Record<string, string>> {
  const r = await run(PYTHON, ['-c', `
import hashlib, json, sys, tarfile
out = {}
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        pax = {k: v for k, v in m.pax_headers.items() if k != 'ctime' and not (m.isdir() and k == 'atime')}
        h = hashlib.sha256(t.extractfile(m).read()).hexdigest()[:16] if m.isfile() else ''
        out[m.name] = json.dumps([m.type.decode(), m.mode, m.uid, m.gid, m.size, m.linkname, h, sorted(pax.items())])
print(json.dumps(out))
`, file], {timeoutMs: 60_000})
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as Record<string, string>
}

/** GNU tar of `dir`'s contents, everything kept (attributes, ACLs, holes), as pax. */
function tarOf(dir: string, out: string): string {
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--acls', '--sparse', '--format=pax', '-cf', out, '-C', dir, '.'])
  return out
}

describe('prism import into a served image: imported by the server in slices', function () {
  this.timeout(240_000)
  let s: Scratch
  let work: string
  /** 10,000 small files in 100 directories, archived (made once) */
  let bigTar = ''
  let bigDir = ''
  const big = (): string => {
    if (!bigTar) {
      bigDir = tmpDir('prism-simport-big-')
      smallFiles(path.join(bigDir, 'tree'), 100, 100)
      bigTar = tarOf(path.join(bigDir, 'tree'), path.join(bigDir, 'small.tar'))
    }
    return bigTar
  }

  before(function () {
    if (!has('tar') || !has('zstd') || !has('setfacl')) this.skip()
  })

  after(() => {
    if (bigDir) fs.rmSync(bigDir, {recursive: true, force: true})
  })

  beforeEach(function () {
    skipWithoutFuse(this)
    work = tmpDir('prism-simport-')
  })

  afterEach(async () => {
    await s?.cleanup()
    if (work) fs.rmSync(work, {recursive: true, force: true})
  })

  it('10,000 files: the probe on the mount stays answered (p99 < 100 ms), during a .tar.bz2 too (decoded by the command: max < 500 ms); a tar, a .tar.zst, a .tar.bz2 and a tar on standard input give what they give alone (output, --json, exit status, tree), shown in the mount at once', async () => {
    s = new Scratch({size: 512 * 1024 * 1024, inodeCount: 65536})
    // Every kind of entry, a file of several MiB, and 10,000 small files.
    const tree = path.join(work, 'tree')
    buildTree(path.join(tree, 'root'))
    fs.writeFileSync(path.join(tree, 'root', 'big'), crypto.randomBytes(9 * 1024 * 1024 + 77))
    await fixAtimes(tree)
    const rich = tarOf(tree, path.join(work, 'rich.tar'))
    execFileSync('zstd', ['-q', '-3', rich, '-o', `${rich}.zst`])
    const small = big()
    // bzip2, which only JavaScript decodes here: the command decodes it, never the server (its
    // thread would be held up to a fifth of a second a block: the probe below would see it)
    execFileSync('sh', ['-c', `bzip2 -c "${small}" > "${small}.bz2" && bzip2 -c "${rich}" > "${rich}.bz2"`])
    const runs = (img: string) => [
      ['import', '-i', img, 'root:/dst', small, '--json'],
      ['import', '-i', img, '--create', 'z', `${rich}.zst`, '--json'],
      ['import', '-i', img, 'root:/dstbz', `${small}.bz2`, '--json'],
      ['import', '-i', img, '--create', 'b', `${rich}.bz2`, '--json'],
    ]
    // The commands alone, on an image nobody serves.
    const alone = newImage(work, 512 * 1024 * 1024, {inodeCount: 65536})
    const want: Array<[number | null, string, string]> = []
    for (const args of runs(alone)) {
      const r = await cli(args, {timeoutMs: 120_000})
      want.push([r.code, r.stdout, r.stderr])
    }
    const r = await importStdin(['-i', alone, 'root:/stdin'], rich)
    want.push([r.code, r.stdout, r.stderr])
    expect(want.map((w) => w[0]), JSON.stringify(want)).to.deep.equal([0, 0, 0, 0, 0])
    expect(JSON.parse(want[0][1])).to.include({files: 10000, dirs: 100, refused: 0})

    const mp = s.mountpoint()
    await s.mount('root', mp)
    const pr = probe(path.join(mp, 'probe'), work)
    await sleep(300)
    const t0 = Date.now()
    const got: Array<[number | null, string, string]> = []
    const first = await cli(runs(s.image)[0], {timeoutMs: 120_000})
    const ms = Date.now() - t0
    const lat = await pr.stop()
    got.push([first.code, first.stdout, first.stderr])
    expect(lat.calls, JSON.stringify(lat)).to.be.greaterThan(20)
    expect(lat.p99, `probe ${JSON.stringify(lat)} during an import of ${ms} ms`).to.be.below(100)
    // (a lent image holds a call for about the whole import, however fast the machine)
    expect(lat.max, `probe ${JSON.stringify(lat)} during an import of ${ms} ms`).to.be.below(ms / 2)
    // Shown through the mount as soon as the command returns.
    expect(await listing(path.join(mp, 'dst'))).to.deep.equal(await listing(path.join(bigDir, 'tree')))
    for (const [i, args] of runs(s.image).entries()) {
      if (i === 0) continue
      const bz = i === 2 ? probe(path.join(mp, 'probe-bz'), work) : null
      if (bz) await sleep(300)
      const t1 = Date.now()
      const r2 = await cli(args, {timeoutMs: 120_000})
      got.push([r2.code, r2.stdout, r2.stderr])
      if (bz) {
        const bzLat = await bz.stop()
        expect(bzLat.p99, `probe ${JSON.stringify(bzLat)} during a bzip2 import of ${Date.now() - t1} ms`).to.be.below(100)
        // (decoded by the server, a call waited 1.4 s: no call may wait that long)
        expect(bzLat.max, `probe ${JSON.stringify(bzLat)} during a bzip2 import of ${Date.now() - t1} ms`).to.be.below(500)
      }
    }
    const r3 = await importStdin(['-i', s.image, 'root:/stdin'], rich)
    got.push([r3.code, r3.stdout, r3.stderr])
    expect(got).to.deep.equal(want)
    expect(Object.keys(await listing(path.join(mp, 'stdin')))).to.include('root/bin/busybox')

    // The imports, identical in all a host shows: the 10,000 files exported by the same
    // command and the archives read back (every member's header, pax records and content; the
    // ctime each import gave, and a directory's access time the listings above moved, left
    // out), the rich trees copied out and described.
    await s.umount(mp)
    const exported = []
    for (const img of [alone, s.image]) {
      const out = path.join(work, `export-${exported.length}.tar`)
      const e = await cli(['export', '-i', img, 'root:/dst', out], {timeoutMs: 120_000})
      expect(e.code, e.stderr).to.equal(0)
      exported.push(await members(out))
    }
    expect(Object.keys(exported[0])).to.have.length(10101)
    expect(exported[1]).to.deep.equal(exported[0])
    for (const [src, name] of [['z:/', 'z'], ['b:/', 'b'], ['root:/stdin', 'stdin']]) {
      const outs = [path.join(work, `alone-${name}`), path.join(work, `served-${name}`)]
      for (const [img, out] of [[alone, outs[0]], [s.image, outs[1]]]) {
        const c = await cli(['cp', '-r', '-i', img, src, out], {timeoutMs: 120_000})
        expect(c.code, c.stderr).to.equal(0)
      }
      const a = await describeTree(outs[0])
      expect(await describeTree(outs[1]), name).to.deep.equal(a)
      // (what the archive holds: a hole, an attribute, an ACL, a hard link, a device)
      expect(a['root/var/lib/disk.img']).to.match(/blocks=/)
      expect(a['root/home/alice/doc']).to.match(/link=root\/home\/alice\/doc x=.*system\.posix_acl_access=.*user\.binary=00ff10/)
      expect(a['root/dev/sda']).to.match(/rdev=8:0/)
    }
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })

  it('refused entries, a damaged and a truncated archive: the output and exit status of the import alone; the fileset as it was', async () => {
    s = new Scratch({size: 128 * 1024 * 1024})
    const refused = path.join(work, 'refused.tar')
    fs.writeFileSync(refused, mkTar([{name: 'ok', data: 'fine'}, {name: '../evil', data: 'no'}, {name: 'ok2', type: 'symlink', link: 'ok'}, {name: 'ok2/x', data: 'through a symlink'}]))
    // A tar whose third header is damaged, and a .tar.zst cut in the middle.
    const damaged = path.join(work, 'damaged.tar')
    const entries = Array.from({length: 20}, (_, i) => ({name: `f${i}`, data: `file ${i}\n`.repeat(100)}))
    const bytes = mkTar(entries)
    const third = 2 * (512 + 1024)
    bytes.fill(0x41, third + 100, third + 160)
    fs.writeFileSync(damaged, bytes)
    const cut = path.join(work, 'cut.tar.zst')
    fs.writeFileSync(path.join(work, 'whole.tar'), mkTar(entries.map((e) => ({...e, data: crypto.randomBytes(20_000)}))))
    execFileSync('zstd', ['-q', path.join(work, 'whole.tar'), '-o', path.join(work, 'whole.tar.zst')])
    const z = fs.readFileSync(path.join(work, 'whole.tar.zst'))
    fs.writeFileSync(cut, z.subarray(0, z.length >> 1))
    // and .tar.bz2 files: one cut in the middle, one with a byte changed (decoded by the command)
    const bz = execFileSync('bzip2', ['-c'], {input: fs.readFileSync(path.join(work, 'whole.tar'))})
    const cutBz = path.join(work, 'cut.tar.bz2')
    fs.writeFileSync(cutBz, bz.subarray(0, bz.length >> 1))
    const badBz = path.join(work, 'bad.tar.bz2')
    const bad = Buffer.from(bz)
    bad[bad.length >> 1] ^= 0x55
    fs.writeFileSync(badBz, bad)
    const cases = [['root:/in', refused], ['root:/in2', damaged], ['root:/in3', cut], ['root:/', damaged], ['root:/in4', cutBz], ['root:/in5', badBz]]
    const alone = newImage(work, 128 * 1024 * 1024)
    const want = []
    for (const [t, a] of cases) {
      const r = await cli(['import', '-i', alone, t, a])
      want.push([r.code, r.stdout, r.stderr])
    }
    expect(want.map((w) => w[0]), JSON.stringify(want)).to.deep.equal([1, 1, 1, 1, 1, 1])

    const mp = s.mountpoint()
    await s.mount('root', mp)
    fs.writeFileSync(path.join(mp, 'keep'), 'kept')
    const got = []
    for (const [t, a] of cases) {
      const r = await cli(['import', '-i', s.image, t, a])
      got.push([r.code, r.stdout, r.stderr])
    }
    expect(got).to.deep.equal(want)
    expect(await listing(mp)).to.deep.equal({keep: '4', in: '0o40000', 'in/ok': '4', 'in/ok2': '0o120000'})
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })

  it('a full image: exit 6 and the line of the import alone; nothing of it in the fileset, its space back, the image clean', async () => {
    s = new Scratch({size: 32 * 1024 * 1024})
    const archive = path.join(work, 'big.tar')
    fs.writeFileSync(archive, mkTar(Array.from({length: 40}, (_, i) => ({name: `f${i}`, data: crypto.randomBytes(1024 * 1024)}))))
    const alone = newImage(work, 32 * 1024 * 1024)
    const ref = await cli(['import', '-i', alone, 'root:/dst', archive])
    expect(ref.code, ref.stderr).to.equal(6)

    const mp = s.mountpoint()
    await s.mount('root', mp)
    fs.writeFileSync(path.join(mp, 'keep'), 'kept')
    const free = async () => (await cli(['df', '-i', s.image, '--json'])).stdout
    const before = await free()
    const got = await cli(['import', '-i', s.image, 'root:/dst', archive])
    expect([got.code, got.stdout, got.stderr]).to.deep.equal([ref.code, ref.stdout, ref.stderr])
    expect(await listing(mp)).to.deep.equal({keep: '4'})
    expect(await free()).to.equal(before)
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })

  it('Ctrl-C: status 130 and "prism: interrupted", as alone; nothing of the import shows; the image clean', async () => {
    s = new Scratch({size: 256 * 1024 * 1024, inodeCount: 32768})
    const archive = big()
    const mp = s.mountpoint()
    await s.mount('root', mp)
    fs.writeFileSync(path.join(mp, 'keep'), 'kept')
    const pid = (await serverPid(s.image))!
    const imp = startCli(['import', '-i', s.image, 'root:/dst', archive])
    // Signalled once it is up and the server has written some of the import (its first
    // commits), or after 600 ms at the latest.
    await sleep(300)
    const started = wrote(pid, 256 << 10)
    for (const t0 = Date.now(); imp.child.exitCode === null && !started() && Date.now() - t0 < 300;) await sleep(2)
    await catchingSignals(imp.child.pid!)
    imp.child.kill('SIGINT')
    const r = await imp.done
    expect([r.code, r.stderr]).to.deep.equal([130, 'prism: interrupted\n'])
    expect(await listing(mp)).to.deep.equal({keep: '4'})
    // The server is still serving, and takes another import.
    const again = await cli(['import', '-i', s.image, '--create', 'again', archive])
    expect(again.code, again.stderr).to.equal(0)
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })

  it('write and import - blocked reading standard input on a served image: SIGINT stops them at once, saying so; nothing borrowed, the mount answers', async () => {
    s = new Scratch({size: 64 * 1024 * 1024})
    const mp = s.mountpoint()
    await s.mount('root', mp)
    fs.writeFileSync(path.join(mp, 'keep'), 'kept')
    for (const args of [['write', '-i', s.image, 'root:/w'], ['import', '-i', s.image, 'root:/dst', '-']]) {
      // Input that never ends: the command reads it before it borrows the image.
      const child = spawn(process.execPath, [BIN, ...args], {stdio: ['pipe', 'pipe', 'pipe']})
      let stderr = ''
      child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
      child.stdout.resume()
      const code = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
      try {
        child.stdin.write(args[0] === 'write' ? 'some input, never finished\n' : Buffer.alloc(512, 'x'))
        await catchingSignals(child.pid!)
        await sleep(200)
        // Meanwhile the mount answers (nothing is borrowed while the input is awaited).
        expect(fs.readFileSync(path.join(mp, 'keep'), 'utf8')).to.equal('kept')
        child.kill('SIGINT')
        expect([await code, stderr], args.join(' ')).to.deep.equal([130, 'prism: interrupted\n'])
      } finally {
        child.stdin.destroy()
        child.kill('SIGKILL') // (gone already, unless the test failed)
      }
    }
    expect(await listing(mp)).to.deep.equal({keep: '4'})
    fs.writeFileSync(path.join(mp, 'after'), 'written')
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    expect((await cli(['cat', '-i', s.image, 'root:/after'])).stdout).to.equal('written')
  })

  it('the server killed mid-import: the command fails with one line and status 7; the image replays clean, without the import and with every file it held', async () => {
    s = new Scratch({size: 256 * 1024 * 1024, inodeCount: 32768})
    const archive = big()
    const mp = s.mountpoint()
    await s.mount('root', mp)
    // Earlier files, on the image (synced) before the import starts.
    const before: Record<string, string> = {}
    for (let i = 0; i < 20; i++) {
      const f = path.join(mp, `keep${i}`)
      before[`keep${i}`] = crypto.randomBytes(3000 + i * 1000).toString('hex')
      const fd = fs.openSync(f, 'w')
      fs.writeSync(fd, before[`keep${i}`])
      fs.fsyncSync(fd)
      fs.closeSync(fd)
    }
    const pid = await serverPid(s.image)
    const imp = startCli(['import', '-i', s.image, 'root:/dst', archive])
    await sleep(600)
    process.kill(pid!, 'SIGKILL')
    await waitExit(pid!)
    const r = await imp.done
    expect(r.code, r.stderr).to.equal(7)
    expect(r.stderr).to.match(/^prism: the server of disk\.img stopped before the import ended; the image holds nothing of it\n$/)
    await forceUnmount(mp).catch(() => undefined)
    const ls = await cli(['ls', '-i', s.image, 'root:/'])
    expect(ls.stdout.trim().split('\n').sort()).to.deep.equal(Object.keys(before).sort())
    for (const [name, content] of Object.entries(before)) {
      const c = await cli(['cat', '-i', s.image, `root:/${name}`])
      expect(c.stdout, name).to.equal(content)
    }
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
  })
})
