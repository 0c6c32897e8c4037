// Fuzzing image opening and fsck (test/fuzz-lib.ts): random byte, field and block mutations
// of a real image, biased to metadata and mostly resealed so that they pass the checksums.
// Library-level executions run in a worker process (a hang or a runaway allocation is
// caught from outside: a time limit per execution and a heap limit); a smaller sample of
// mutated images goes through the real CLI, where every command must end with exit 0 or a
// documented code and one `prism:` line on stderr, never "internal error" (70).
//
//   PRISM_FUZZ_RUNS=20000 npm test -- --grep fuzz    a long run (default: as many as fit in PRISM_FUZZ_SECONDS=30)
//   PRISM_FUZZ_SEED=12345                            replay from a seed (printed by every run)
//   PRISM_FUZZ_CLI=40                                images run through the CLI (default 6)
import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {mulberry32} from '../src/device/mem.js'
import {BASES} from '../scripts/make-fsck-fixtures.js'
import {ACL_GROUP_OBJ, ACL_OTHER, ACL_USER_OBJ, encodeAcl} from '../src/format/xattr.js'
import {namespace, withImage} from '../src/fs/image.js'
import {metadataTargets, mutate} from './fuzz-lib.js'
import {BIN as DEFAULT_BIN, ROOT} from './helpers.js'

const BIN = process.env.PRISM_BIN ?? DEFAULT_BIN
const RUNS = Number(process.env.PRISM_FUZZ_RUNS ?? 1_000_000)
const SECONDS = Number(process.env.PRISM_FUZZ_SECONDS ?? (process.env.PRISM_FUZZ_RUNS ? 86_400 : 30))
const SEED = Number(process.env.PRISM_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
const CLI_IMAGES = Number(process.env.PRISM_FUZZ_CLI ?? 6)
const EXEC_LIMIT_MS = 30_000

/**
 * What a root tree holds besides data, added to the standard base (FORMAT.md §5.5, §14):
 * attribute sets inline and in blocks, one shared by two files and by the clone, an ACL, a
 * FIFO and a device with attributes of their own.
 */
function addFidelity(img: string): void {
  withImage(img, {write: true}, (vol) => {
    const ns = namespace(vol, 'root')
    const B = (t: string) => Buffer.from(t)
    ns.setXattr('/docs/small.txt', B('security.selinux'), B('system_u:object_r:etc_t:s0'))
    ns.setXattr('/big', B('security.selinux'), B('system_u:object_r:etc_t:s0'))
    ns.setXattr('/frag', B('user.big'), Buffer.alloc(6000, 'x'))
    ns.setXattr('/docs', B('system.posix_acl_access'), encodeAcl([{tag: ACL_USER_OBJ, perm: 7}, {tag: ACL_GROUP_OBJ, perm: 5}, {tag: ACL_OTHER, perm: 5}]))
    ns.mknod('/docs/fifo', 0o010644)
    ns.mknod('/docs/null', 0o020666, {major: 1, minor: 3})
    ns.setXattr('/docs/null', B('trusted.t'), B('device attribute'))
  })
}

const scratchRoot = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()

describe('fuzz: mutated images never crash, hang or exhaust memory', function () {
  this.timeout(0)
  let tmp: string
  let base: string

  before(() => {
    tmp = fs.mkdtempSync(path.join(scratchRoot, 'prism-fuzz-'))
    base = path.join(tmp, 'base.img')
    BASES.standard(base)
    addFidelity(base)
    console.log(`      fuzz seed ${SEED} (replay: PRISM_FUZZ_SEED=${SEED})`)
  })
  after(() => fs.rmSync(tmp, {recursive: true, force: true}))

  it('library: every operation ends in a result or a PrismError; fsck --repair then leaves a clean image', async () => {
    const scratch = path.join(tmp, 'lib')
    fs.mkdirSync(scratch)
    const worker = spawn(process.execPath, ['--max-old-space-size=768', '--import', 'tsx', path.join(ROOT, 'test', 'fuzz-worker.ts'), base, String(SEED), String(RUNS), scratch, String(SECONDS)], {cwd: ROOT})
    const failures: string[] = []
    let ok = 0
    let current: number | null = null
    let started = Date.now()
    let buf = ''
    let stderr = ''
    worker.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    worker.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        const ev = JSON.parse(line)
        if ('start' in ev) { current = ev.start; started = Date.now() } else if ('ok' in ev) { ok++; current = null } else if ('fail' in ev) {
          current = null
          failures.push(`exec seed ${ev.fail}: ${ev.mutations.join('; ')}\n${ev.message}`)
        }
      }
    })
    const watchdog = setInterval(() => {
      if (current !== null && Date.now() - started > EXEC_LIMIT_MS) {
        failures.push(`exec seed ${current}: no answer after ${EXEC_LIMIT_MS / 1000} s (a hang)`)
        worker.kill('SIGKILL')
      }
    }, 1000)
    const code: number = await new Promise((resolve) => worker.on('close', (c) => resolve(c ?? -1)))
    clearInterval(watchdog)
    if (code !== 0 && !failures.some((f) => f.includes('a hang'))) failures.push(`worker exited ${code} during exec seed ${current} (out of memory or crash):\n${stderr.slice(-2000)}`)
    console.log(`      ${ok + failures.length} library executions, ${failures.length} failures`)
    expect(failures, failures.slice(0, 5).join('\n\n')).to.deep.equal([])
    expect(ok).to.be.greaterThan(20)
  })

  /** Commands that name each entry they cannot read on a line of its own and go on (README "Exit codes", 1). */
  const WALKS = new Set(['cp', 'ls', 'fileset'])

  it('CLI: every command that opens a mutated image exits with a documented code and one clear line', () => {
    const rnd = mulberry32(SEED ^ 0x5eed)
    const pristine = fs.readFileSync(base)
    const targets = metadataTargets(base)
    const failures: string[] = []
    let runs = 0
    for (let i = 0; i < CLI_IMAGES; i++) {
      const dir = path.join(tmp, `cli-${i}`)
      fs.mkdirSync(dir)
      const img = path.join(dir, 'image.img')
      const buf = Buffer.from(pristine)
      const execSeed = Math.floor(rnd() * 2 ** 31)
      const mutations = mutate(buf, targets, mulberry32(execSeed))
      fs.writeFileSync(img, buf)
      const run = (args: string[]) => {
        runs++
        const r = spawnSync(process.execPath, [BIN, ...args, '--image', img], {cwd: dir, env: {...process.env, PRISM_IMAGE: ''}, timeout: EXEC_LIMIT_MS})
        return {status: r.status ?? -1, stdout: r.stdout?.toString() ?? '', stderr: r.stderr?.toString() ?? '', signal: r.signal}
      }
      const where = `image seed ${execSeed} (${mutations.join('; ')})`
      const commands: string[][] = [
        ['ls', '-R', 'root:/'], ['stat', 'root:/docs/readme.txt'], ['cat', 'root:/docs/small.txt'], ['df'],
        ['fileset', 'list'], ['cp', '-r', 'root:/', path.join(dir, 'out')], ['fsck'],
        ['clone', 'root', 'fz'], ['fsck', '--repair'], ['fsck'],
      ]
      let repaired = -1
      for (const args of commands) {
        const r = run(args)
        const isFsck = args[0] === 'fsck'
        const allowed = isFsck ? [0, 1, 4, 8] : [0, 1, 2, 3, 5, 6, 7]
        const name = args.join(' ')
        if (r.signal) failures.push(`${name}: killed by ${r.signal} (a hang?) on ${where}`)
        else if (!allowed.includes(r.status)) failures.push(`${name}: exit ${r.status} on ${where}\n${r.stderr.slice(0, 500)}`)
        // (walks that read, cp -r out, ls -R and fileset list among them, name each entry they
        // could not read on a line of its own, and go on with the rest: README "Exit codes", 1)
        else if (r.status !== 0 && !isFsck && !(WALKS.has(args[0]) ? /^(prism: .+\n)+$/ : /^prism: .+\n$/).test(r.stderr)) failures.push(`${name}: exit ${r.status} without one clear line on ${where}\n${r.stderr.slice(0, 500)}`)
        else if (r.stderr.includes('internal error')) failures.push(`${name}: ${r.stderr}`)
        if (name === 'fsck --repair') repaired = r.status
        if (name === 'fsck' && repaired >= 0 && repaired !== 4 && repaired !== 8 && r.status !== 0) failures.push(`fsck after --repair exited ${r.status} on ${where}\n${r.stdout.slice(0, 800)}`)
      }
    }
    console.log(`      ${runs} CLI runs on ${CLI_IMAGES} mutated images, ${failures.length} failures`)
    expect(failures, failures.slice(0, 5).join('\n\n')).to.deep.equal([])
  })
})
