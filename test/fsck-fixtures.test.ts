// The corpus of damaged images in fixtures/fsck/ (made by scripts/make-fsck-fixtures.ts),
// checked as e2fsprogs checks its f_* tests: on a copy of each image, a first
// `fsck --repair` must print exactly expect.1 and exit 1 (4 when the damage cannot be
// repaired; 0 only for a journal that merely needed its replay, as e2fsck exits 0 after
// "recovering journal" on an otherwise clean filesystem), a second run must print expect.2
// and exit 0, and then the ordinary commands work on what is left.
//
// Every fixture gets both fsck runs. Most go through the library (fsckImage, the text the
// CLI prints from src/fsck/report.ts) and a library walk that reads every file of every
// fileset; a sample (fixed names plus a rotating choice, printed with its seed) goes through
// the real CLI: both fsck runs, then `ls -R` of every fileset (must print expect.ls),
// `cp -r` of the first fileset and `cat` of a file. Rebuild the corpus after a format or
// message change: `npm run fixtures:fsck`.
//
//   PRISM_FIXTURES_CLI=all   run every fixture through the real CLI (about 2 minutes)
//   PRISM_FIXTURES_CLI=n     n rotating fixtures through the CLI besides the fixed ones (default 8)
//   PRISM_FIXTURES_SEED=s    the rotating choice to replay
import {expect} from 'chai'
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'
import {PrismError} from '../src/errors.js'
import {listFilesets} from '../src/fs/filesets.js'
import {withImage} from '../src/fs/image.js'
import {Namespace} from '../src/fs/namespace.js'
import {fsckImage} from '../src/fsck/index.js'
import {PROBLEMS} from '../src/fsck/problems.js'
import {fsckReportLines} from '../src/fsck/report.js'
import {mulberry32} from '../src/device/mem.js'
import {DEFERRED} from '../scripts/make-fsck-fixtures.js'
import {BIN as DEFAULT_BIN, ROOT} from './helpers.js'

const BIN = process.env.PRISM_BIN ?? DEFAULT_BIN

const DIR = path.join(ROOT, 'fixtures', 'fsck')
const IMAGE = 'image.img'

interface Run {
  stdout: string
  raw: Buffer
  stderr: string
  status: number
}

function run(cwd: string, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args, '--image', IMAGE], {cwd, env: {...process.env, PRISM_IMAGE: ''}})
    const out: Buffer[] = []
    const err: Buffer[] = []
    p.stdout.on('data', (d: Buffer) => out.push(d))
    p.stderr.on('data', (d: Buffer) => err.push(d))
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000)
    p.on('error', reject)
    p.on('close', (code) => {
      clearTimeout(timer)
      resolve({stdout: Buffer.concat(out).toString(), raw: Buffer.concat(out), stderr: Buffer.concat(err).toString(), status: code ?? -1})
    })
  })
}

const asExpect = (r: Run) => `${r.stdout}${r.stderr}Exit status is ${r.status}\n`

interface Outcome {
  name: string
  viaCli: boolean
  /** names the library walk read (library fixtures) */
  walked: number
  first: Run
  second: Run
  listing: string | null
  after: Run[]
  exported: string[]
}

/** `fsck --repair` through the library, printed as the CLI prints it. */
function libFsck(cwd: string): Run {
  try {
    const r = fsckImage(path.join(cwd, IMAGE), {repair: true})
    const stdout = fsckReportLines(r, true).map((l) => l + '\n').join('')
    return {stdout, raw: Buffer.from(stdout), stderr: '', status: r.exitCode}
  } catch (e) {
    if (!(e instanceof PrismError)) throw e
    return {stdout: '', raw: Buffer.alloc(0), stderr: `prism: ${e.message}\n`, status: 8}
  }
}

/**
 * `fsck` (no repair) through the library, once with pass 2's buckets read before the walks
 * (what fits in 64 MiB: all of a fixture's) and once with every bucket read in windows as the
 * walks meet it (PRISM_FSCK_HELD_BYTES=0, the path of images past 64 MiB of directories): the
 * two must find the same.
 */
function libCheckBothWays(cwd: string): [string, string] {
  const check = (): string => {
    try {
      const r = fsckImage(path.join(cwd, IMAGE), {repair: false})
      return fsckReportLines(r, false).join('\n') + `\nexit ${r.exitCode}`
    } catch (e) {
      if (!(e instanceof PrismError)) throw e
      return `prism: ${e.message}`
    }
  }
  const held = check()
  const before = process.env.PRISM_FSCK_HELD_BYTES
  process.env.PRISM_FSCK_HELD_BYTES = '0'
  try {
    return [held, check()]
  } finally {
    if (before === undefined) delete process.env.PRISM_FSCK_HELD_BYTES
    else process.env.PRISM_FSCK_HELD_BYTES = before
  }
}

/** What the ordinary commands read, through the library: every fileset, every name, every byte. */
function libWalk(cwd: string): string[] {
  return withImage(path.join(cwd, IMAGE), {write: true}, (vol) => {
    const seen: string[] = []
    for (const f of listFilesets(vol)) {
      const ns = new Namespace(vol, f)
      const walk = (dir: string) => {
        for (const e of ns.readdir(dir)) {
          const p = (dir === '/' ? '' : dir) + '/' + e.name
          const st = ns.stat(p)
          seen.push(`${f.name}:${p}`)
          if (st.type === 'dir') walk(p)
          else if (st.type === 'file') expect(ns.readFile(p).length).to.equal(st.size)
        }
      }
      walk('/')
    }
    return seen
  })
}

/** Everything the test checks for one fixture, run in its own directory. */
async function exercise(name: string, tmp: string, viaCli: boolean): Promise<Outcome> {
  const cwd = path.join(tmp, name)
  fs.mkdirSync(cwd)
  fs.writeFileSync(path.join(cwd, IMAGE), zlib.gunzipSync(fs.readFileSync(path.join(DIR, name, 'image.gz'))))
  const [held, windowed] = libCheckBothWays(cwd)
  expect(windowed, `${name}: fsck with every bucket read in windows`).to.equal(held)
  const first = viaCli ? await run(cwd, ['fsck', '--repair']) : libFsck(cwd)
  const second = viaCli ? await run(cwd, ['fsck', '--repair']) : libFsck(cwd)
  const o: Outcome = {name, viaCli, first, second, listing: null, after: [], exported: [], walked: 0}
  if (second.status !== 0) return o
  if (!viaCli) {
    o.walked = libWalk(cwd).length
    return o
  }
  // The filesets are those the generator listed (first line of expect.ls).
  const names = fs.readFileSync(path.join(DIR, name, 'expect.ls'), 'utf8').split('\n')[0].split(' ')
  const ls = await run(cwd, ['ls', '-R', ...names])
  o.after.push(ls)
  o.listing = `${names.join(' ')}\n${ls.stdout}`
  fs.mkdirSync(path.join(cwd, 'out'))
  o.after.push(await run(cwd, ['cp', '-r', names[0], path.join(cwd, 'out', names[0].slice(0, -2))]))
  o.exported = fs.readdirSync(path.join(cwd, 'out'), {recursive: true}).map(String)
  // cat the first regular file the export holds.
  const file = o.exported.find((p) => fs.lstatSync(path.join(cwd, 'out', p)).isFile())
  if (file) {
    const [fsName, ...rest] = file.split(path.sep)
    const cat = await run(cwd, ['cat', `${fsName}:/${rest.join('/')}`])
    o.after.push(cat)
    if (cat.status === 0) expect(cat.raw.equals(fs.readFileSync(path.join(cwd, 'out', file))), `cat ${file}`).to.equal(true)
  }
  return o
}

async function pool<T, R>(items: T[], n: number, work: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({length: n}, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await work(items[i])
    }
  }))
  return out
}

const names = fs.existsSync(DIR) ? fs.readdirSync(DIR).filter((n) => fs.existsSync(path.join(DIR, n, 'image.gz'))).sort() : []

/** Always through the real CLI: one fixture of each kind of structure and outcome. */
const FIXED_CLI = ['sb-primary-zeroed', 'journal-replay', 'journal-torn', 'inode-crc', 'dir-loop', 'refcount-overflow',
  'fileset-bad-root', 'clone-bad-source', 'unexpanded-src-not-dir', 'scan-results-bad', 'many-at-once']
const CLI_SETTING = process.env.PRISM_FIXTURES_CLI ?? '8'
const SEED = Number(process.env.PRISM_FIXTURES_SEED ?? Math.floor(Math.random() * 2 ** 31))

function cliSample(): Set<string> {
  if (CLI_SETTING === 'all') return new Set(names)
  const out = new Set(FIXED_CLI.filter((n) => names.includes(n)))
  const rest = names.filter((n) => !out.has(n))
  const rnd = mulberry32(SEED)
  for (let k = Math.min(Number(CLI_SETTING) || 0, rest.length); k > 0; k--) out.add(rest.splice(Math.floor(rnd() * rest.length), 1)[0])
  return out
}

describe('fsck fixtures: damaged images repaired by the real CLI', function () {
  this.timeout(600_000)
  let tmp: string
  const outcomes = new Map<string, Outcome>()

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-fixtures-'))
    const sample = cliSample()
    console.log(`      ${names.length} fixtures; through the real CLI: ${sample.size} (PRISM_FIXTURES_SEED=${SEED})`)
    // The CLI sample runs in child processes while the library does the rest in this one.
    const cli = pool([...sample], 2, (n) => exercise(n, tmp, true))
    for (const n of names) if (!sample.has(n)) outcomes.set(n, await exercise(n, tmp, false))
    for (const o of await cli) outcomes.set(o.name, o)
  })
  after(() => fs.rmSync(tmp, {recursive: true, force: true}))

  it('has a fixture for every problem code fsck can report', () => {
    expect(names.length).to.be.greaterThan(60)
    const seen = new Set<string>()
    for (const n of names) {
      for (const m of fs.readFileSync(path.join(DIR, n, 'expect.1'), 'utf8').matchAll(/^([A-Z][A-Z0-9_]+) /gm)) seen.add(m[1])
    }
    expect(Object.keys(PROBLEMS).filter((c) => !seen.has(c) && !DEFERRED.has(c))).to.deep.equal([])
    for (const c of DEFERRED) expect(PROBLEMS).to.have.property(c)
  })

  for (const name of names) {
    it(name, () => {
      const o = outcomes.get(name)!
      const dir = path.join(DIR, name)
      const expect1 = fs.readFileSync(path.join(dir, 'expect.1'), 'utf8')
      const expect2 = fs.readFileSync(path.join(dir, 'expect.2'), 'utf8')
      expect(asExpect(o.first), 'first fsck --repair').to.equal(expect1)
      expect(asExpect(o.second), 'second fsck --repair').to.equal(expect2)
      // The rules the expected files themselves must follow.
      const replayOnly = o.first.status === 0
      if (replayOnly) expect(o.first.stdout, 'a clean first run is only for a journal replay').to.match(/^replayed \d+ journal transaction/m)
      else expect(o.first.status).to.be.oneOf([1, 4])
      if (o.first.status === 4) {
        // Errors left: what fsck cannot fix, or inodes it could not reconnect (kept whole).
        expect(o.first.stdout).to.match(/\[cannot fix\]|left unconnected, their data kept/)
        return
      }
      expect(o.second.status).to.equal(0)
      expect(o.second.stdout).to.match(/^clean: /m)
      if (!o.viaCli) {
        expect(o.walked, 'the library walk found nothing').to.be.greaterThan(0)
        return
      }
      for (const r of o.after) expect(r.status, r.stderr).to.equal(0)
      expect(o.listing).to.equal(fs.readFileSync(path.join(dir, 'expect.ls'), 'utf8'))
      expect(o.exported.length, 'cp -r exported nothing').to.be.greaterThan(0)
    })
  }
})
