// prism scan --clamd against a real clamd (Debian's clamav-daemon), started here with its own
// configuration and a signature database generated at test time in a temporary directory:
// no freshclam, no system service. Without the clamd binary the tests are skipped with a
// visible reason, except in CI (CI set), where .ci/run installs it and its absence fails.
import {expect} from 'chai'
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {clone} from '../src/clone/clone.js'
import {fsckImage} from '../src/fsck/index.js'
import {edit, newImage, prism, tmpDir} from './helpers.js'

const MARK = Buffer.from('PRISM-CLAMD-MARK-' + 'b0dy')
const TAIL = Buffer.from('PRISM-CLAMD-TAIL-' + 'mark')

function findClamd(): string | null {
  for (const p of ['/usr/sbin/clamd', '/usr/bin/clamd', '/usr/local/sbin/clamd']) if (fs.existsSync(p)) return p
  const r = spawnSync('sh', ['-c', 'command -v clamd'], {encoding: 'utf8'})
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null
}

async function waitFor(ok: () => boolean, secs: number, what: string, log: () => string): Promise<void> {
  const end = Date.now() + secs * 1000
  while (!ok()) {
    if (Date.now() > end) throw new Error(`${what} did not happen within ${secs} s; clamd log:\n${log()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('scan --clamd: a real clamd', function () {
  this.timeout(300000)
  let dir: string
  let img: string
  let sock: string
  let clamd: ChildProcess | null = null

  before(async function () {
    const bin = findClamd()
    if (!bin) {
      if (process.env.CI) throw new Error('clamd is not installed (apt-get install clamav-daemon); .ci/run installs it')
      console.log('      (skipped: no clamd binary here; install clamav-daemon to run these tests)')
      this.skip()
    }
    dir = tmpDir('prism-clamd-')
    const db = path.join(dir, 'db')
    fs.mkdirSync(db)
    fs.writeFileSync(path.join(db, 'prism-test.ndb'), [
      `Prism.Test.Mark:0:*:${MARK.toString('hex')}`,
      `Prism.Test.Tail:0:EOF-${TAIL.length}:${TAIL.toString('hex')}`,
    ].join('\n') + '\n')
    sock = path.join(dir, 'clamd.sock')
    const conf = path.join(dir, 'clamd.conf')
    fs.writeFileSync(conf, [
      `LocalSocket ${sock}`,
      `DatabaseDirectory ${db}`,
      `TemporaryDirectory ${dir}`,
      `LogFile ${path.join(dir, 'clamd.log')}`,
      `PidFile ${path.join(dir, 'clamd.pid')}`,
      'Foreground yes',
      'StreamMaxLength 64M',
      'Bytecode no',
      'MaxThreads 2',
    ].join('\n') + '\n')
    clamd = spawn(bin!, ['-c', conf], {stdio: ['ignore', 'ignore', 'pipe']})
    let err = ''
    clamd.stderr!.on('data', (d) => { err += d })
    const log = () => {
      try { return err + fs.readFileSync(path.join(dir, 'clamd.log'), 'utf8') } catch { return err }
    }
    await waitFor(() => fs.existsSync(sock) || clamd!.exitCode !== null, 120, 'clamd start', log)
    if (clamd.exitCode !== null) throw new Error(`clamd exited with ${clamd.exitCode}:\n${log()}`)

    img = newImage(dir, 128 << 20)
    edit(img, (ns, vol) => {
      ns.mkdir('/srv')
      ns.writeFile('/srv/clean', randomBytes(70000))
      ns.writeFile('/srv/marked', Buffer.concat([randomBytes(3000), MARK, randomBytes(3000)]))
      // 5 MiB with the tail signature in its last bytes: streamed in several INSTREAM chunks
      ns.writeFile('/srv/big', Buffer.concat([randomBytes(5 << 20), TAIL]))
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c1'})
    })
    edit(img, (ns) => ns.writeFile('/srv/clean', Buffer.concat([MARK, Buffer.from('now marked')])), 'c1')
  })

  after(() => {
    if (clamd && clamd.exitCode === null) clamd.kill('SIGTERM')
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('streams each unique file to clamd with INSTREAM and reports what it finds, with every path', () => {
    const r = prism(['scan', 'root', 'c1', '--clamd', sock, '--json', '-i', img])
    expect(r.status, r.stderr).to.equal(1)
    const j = JSON.parse(r.stdout)
    const byPath: Record<string, string> = {}
    for (const m of j.matches) for (const p of m.paths) byPath[p] = m.found[0]
    expect(Object.keys(byPath).sort()).to.deep.equal(['c1:/srv/big', 'c1:/srv/clean', 'c1:/srv/marked', 'root:/srv/big', 'root:/srv/marked'])
    expect(byPath['root:/srv/marked']).to.match(/^Prism\.Test\.Mark/)
    expect(byPath['c1:/srv/clean']).to.match(/^Prism\.Test\.Mark/)
    expect(byPath['root:/srv/big']).to.match(/^Prism\.Test\.Tail/)
    // 3 files in root, shared by c1 except the one it rewrote: 4 unique inodes, each read once.
    expect(j.stats.inodes).to.equal(4)
    expect(j.stats.inodesRead).to.equal(4)
    expect(j.stats.names).to.equal(6)
    const clean = prism(['scan', 'root', '--clamd', sock, '-i', img])
    expect(clean.status).to.equal(1)
    expect(clean.stdout).to.match(/root:\/srv\/marked: Prism\.Test\.Mark\S* FOUND/)
  })

  it('remembers clamd results with --incremental, and fails with exit 2 when clamd is unreachable', () => {
    const a = JSON.parse(prism(['scan', '--all', '--clamd', sock, '--incremental', '--json', '-i', img]).stdout)
    const b = JSON.parse(prism(['scan', '--all', '--clamd', sock, '--incremental', '--json', '-i', img]).stdout)
    expect(a.stats.inodesRead).to.equal(4)
    expect(b.stats.inodesRead).to.equal(0)
    expect(b.matches.length).to.equal(a.matches.length)
    const r = fsckImage(img, {repair: false})
    expect(r.problems).to.deep.equal([])
    const gone = prism(['scan', 'root', '--clamd', path.join(dir, 'no-such.sock'), '-i', img])
    expect(gone.status).to.equal(2)
    expect(gone.stderr.trim().split('\n')).to.have.length(1)
    expect(gone.stderr).to.match(/^prism: clamd at .*no-such\.sock: ENOENT/)
  })
})
