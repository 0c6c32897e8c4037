// Competing processes: several real `prism` processes at once on one image file, writers
// (write, cp -r, mkdir, rm -r, mv, clone --mode sync and async, the latter starting the real
// background expander) and readers (cat, ls -R), some of them killed with SIGKILL at random
// moments, the background expander too. Afterwards:
//   - fsck finds nothing (before and after the next command replays what the killed left);
//   - every command that exited 0 is reflected in the image: each file `prism write` wrote
//     (a unique name, known content) reads back with that content, each directory made or
//     moved is where it was put, each tree copied in is complete unless a later successful
//     rm -r removed it, each clone exists and shows exactly the files whose write had
//     finished before the clone started, and none whose write started after it finished;
//   - a write killed midway left its file whole or absent;
//   - readers that exited 0 printed what was there: cat of a finished write gives its content;
//   - no two write transactions ever overlapped: every commit appends `pid seq start end` to
//     a trace file (PRISM_JOURNAL_TRACE, src/journal/journal.ts), and sorted by time the
//     commits' intervals are disjoint and their sequence numbers strictly increase, across
//     every process.
//
//   PRISM_STRESS_SECONDS=n   how long the processes compete (default 20)
//   PRISM_STRESS_WORKERS=n   processes running at once (default 4)
//   PRISM_STRESS_SEED=s      replay the random choices (printed)
import {expect} from 'chai'
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {mulberry32} from '../src/device/mem.js'
import {mkfs, namespace} from '../src/fs/image.js'
import {BIN as DEFAULT_BIN, tmpDir} from './helpers.js'

const BIN = process.env.PRISM_BIN ?? DEFAULT_BIN
const SECONDS = Number(process.env.PRISM_STRESS_SECONDS ?? 20)
const WORKERS = Number(process.env.PRISM_STRESS_WORKERS ?? 4)
const SEED = Number(process.env.PRISM_STRESS_SEED ?? Math.floor(Math.random() * 2 ** 31))

interface Run {
  id: number
  args: string[]
  kind: string
  start: number
  end: number
  status: number | null
  killed: boolean
  stdout: Buffer
  stderr: string
  /** what the command is about */
  target?: string
  content?: Buffer
}

function content(n: number): Buffer {
  const rnd = mulberry32(n * 7919 + 1)
  const len = 1 + Math.floor(rnd() * 6000)
  const b = Buffer.alloc(len)
  for (let i = 0; i < len; i++) b[i] = 97 + Math.floor(rnd() * 26)
  return b
}

function hostTree(dir: string): {root: string, files: string[]} {
  const root = path.join(dir, 'host')
  const files: string[] = []
  for (const sub of ['a', 'a/b', 'c']) fs.mkdirSync(path.join(root, sub), {recursive: true})
  for (let i = 0; i < 12; i++) {
    const rel = ['a', 'a/b', 'c'][i % 3] + `/f${i}`
    fs.writeFileSync(path.join(root, rel), content(10_000 + i))
    files.push(rel)
  }
  return {root, files}
}

describe('competing processes: writers, readers and the background expander, with kill -9', function () {
  this.timeout(600_000)

  it('leaves a clean image reflecting every command that exited 0, with no overlapping transactions', async () => {
    const dir = tmpDir('prism-stress-')
    const img = path.join(dir, 'disk.img')
    const trace = path.join(dir, 'journal.trace')
    const host = hostTree(dir)
    const rnd = mulberry32(SEED)
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]
    const runs: Run[] = []
    const live = new Map<number, {child: ChildProcess, run: Run}>()
    let kills = 0
    let expanderKills = 0
    let nextId = 0
    const names = {write: 0, cp: 0, dir: 0, clone: 0}
    try {
      const vol = mkfs(img, {size: 48 * 1024 * 1024})
      const ns = namespace(vol, 'root')
      ns.mkdir('/w')
      ns.mkdir('/d')
      ns.mkdir('/cp')
      ns.mkdir('/moved')
      vol.close()

      const env = (extra: Record<string, string> = {}) => ({...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1', PRISM_JOURNAL_TRACE: trace, ...extra})
      const launch = (kind: string, args: string[], opts: {input?: Buffer, env?: Record<string, string>, target?: string, content?: Buffer} = {}): Promise<Run> => {
        const run: Run = {id: nextId++, args, kind, start: Date.now(), end: 0, status: null, killed: false, stdout: Buffer.alloc(0), stderr: '', target: opts.target, content: opts.content}
        runs.push(run)
        const child = spawn(process.execPath, [BIN, ...args, '--image', img, '--wait', '120'], {env: env(opts.env), stdio: ['pipe', 'pipe', 'pipe']})
        live.set(run.id, {child, run})
        const out: Buffer[] = []
        let err = ''
        child.stdout!.on('data', (d: Buffer) => out.push(d))
        child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
        child.stdin!.on('error', () => {})
        child.stdin!.end(opts.input ?? Buffer.alloc(0))
        return new Promise((resolve) => {
          child.on('close', (code, signal) => {
            run.end = Date.now()
            run.status = code
            run.killed = signal === 'SIGKILL'
            run.stdout = Buffer.concat(out)
            run.stderr = err
            live.delete(run.id)
            resolve(run)
          })
        })
      }
      /** targets an rm or mv has taken (each is removed or moved once) */
      const claimed = new Set<string>()
      const done = (kind: string) => runs.filter((r) => r.kind === kind && r.status === 0)

      /** One random command, by one worker. */
      const step = async (): Promise<void> => {
        const r = rnd()
        if (r < 0.3) {
          const n = names.write++
          const c = content(n)
          await launch('write', ['write', `root:/w/f${n}`], {input: c, target: `/w/f${n}`, content: c})
        } else if (r < 0.4) {
          const n = names.cp++
          await launch('cp', ['cp', '-r', host.root, `root:/cp/t${n}`], {target: `/cp/t${n}`})
        } else if (r < 0.48) {
          const n = names.dir++
          await launch('mkdir', ['mkdir', '-p', `root:/d/x${n}/y`], {target: `/d/x${n}`})
        } else if (r < 0.54) {
          const cps = done('cp').filter((x) => !claimed.has(x.target!))
          if (cps.length) { const t = pick(cps).target!; claimed.add(t); await launch('rm', ['rm', '-r', `root:${t}`], {target: t}) }
        } else if (r < 0.6) {
          const dirs = done('mkdir').filter((x) => !claimed.has(x.target!))
          if (dirs.length) { const t = pick(dirs).target!; claimed.add(t); await launch('mv', ['mv', `root:${t}`, `root:/moved/${path.basename(t)}`], {target: t}) }
        } else if (r < 0.66) {
          const n = names.clone++
          const mode = rnd() < 0.5 ? 'sync' : 'async'
          await launch(`clone-${mode}`, ['clone', 'root', `k${n}`, '--mode', mode, '--exclude', '/cp'], {target: `k${n}`, env: mode === 'async' ? {PRISM_NO_BACKGROUND: '0'} : {}})
        } else if (r < 0.85) {
          const ws = done('write')
          if (ws.length) { const w = pick(ws); await launch('cat', ['cat', `root:${w.target}`], {target: w.target, content: w.content}) }
        } else {
          await launch('ls', ['ls', '-R', 'root:/'])
        }
      }

      const t0 = Date.now()
      // The run lasts SECONDS, and longer on a machine too loaded to trace more than 20
      // transactions in that time (at most 4 x SECONDS): the checks below need a busy journal.
      const traced = () => (fs.existsSync(trace) ? fs.readFileSync(trace, 'utf8').split('\n').length - 1 : 0)
      const hardEnd = t0 + 4 * SECONDS * 1000
      let deadline = t0 + SECONDS * 1000
      const workers = Array.from({length: WORKERS}, async () => {
        for (;;) {
          if (Date.now() >= deadline) {
            if (traced() > 25 || Date.now() >= hardEnd) break
            deadline = Math.min(hardEnd, Date.now() + 2000)
          }
          await step()
        }
      })
      // The killer: now and then a SIGKILL to a running command or to the background expander.
      const killer = (async () => {
        while (Date.now() < deadline) {
          await new Promise((res) => setTimeout(res, 150 + rnd() * 500))
          if (rnd() < 0.3) {
            const pg = spawnSync('pgrep', ['-f', `expand --background --image ${img}`])
            for (const pid of pg.stdout.toString().split('\n').filter(Boolean).map(Number)) {
              try { process.kill(pid, 'SIGKILL'); expanderKills++ } catch { /* gone */ }
            }
          } else {
            const victims = [...live.values()].filter((v) => v.run.kind !== 'cat' || rnd() < 0.3)
            if (victims.length) {
              const v = pick(victims)
              // Let it get somewhere first: 0-250 ms after its start.
              await new Promise((res) => setTimeout(res, rnd() * 250))
              if (live.has(v.run.id)) { v.child.kill('SIGKILL'); kills++ }
            }
          }
        }
      })()
      await Promise.all([...workers, killer])
      const elapsed = (Date.now() - t0) / 1000

      // Stop the background expander, then look at what is left.
      const stopExpander = () => {
        const pg = spawnSync('pgrep', ['-f', `expand --background --image ${img}`])
        for (const pid of pg.stdout.toString().split('\n').filter(Boolean).map(Number)) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      }
      stopExpander()
      const cli = (args: string[], input?: Buffer) => {
        const r = spawnSync(process.execPath, [BIN, ...args, '--image', img, '--wait', '120'], {env: env({PRISM_JOURNAL_TRACE: ''}), input, maxBuffer: 1 << 28})
        return {status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr.toString()}
      }
      const failures: string[] = []
      const unexpected = runs.filter((r) => !r.killed && r.status !== 0)
      for (const r of unexpected) failures.push(`${r.args.join(' ')} exited ${r.status}: ${r.stderr.trim().split('\n')[0]}`)
      for (const r of runs) if (/internal error|at .*\.js:\d+/.test(r.stderr)) failures.push(`${r.args.join(' ')}: a stack trace or internal error: ${r.stderr.slice(0, 300)}`)

      // fsck as the killed processes left the image (journal read in memory, orphans listed).
      const f1 = cli(['fsck'])
      if (f1.status !== 0) failures.push(`fsck of the image as left: exit ${f1.status}\n${f1.stdout.toString()}${f1.stderr}`)
      // Finish every clone's expansion in the foreground, then check again.
      const ex = cli(['expand', '--all'])
      if (ex.status !== 0) failures.push(`expand --all: exit ${ex.status}: ${ex.stderr}`)
      const f2 = cli(['fsck'])
      if (f2.status !== 0) failures.push(`fsck after expand --all: exit ${f2.status}\n${f2.stdout.toString()}${f2.stderr}`)

      // Every successful command is reflected.
      const ls = (spec: string): Set<string> => {
        const r = cli(['ls', '-R', spec])
        if (r.status !== 0) { failures.push(`ls -R ${spec}: ${r.stderr}`); return new Set() }
        const out = new Set<string>()
        let cur = ''
        for (const line of r.stdout.toString().split('\n')) {
          const m = /^(\S+):$/.exec(line)
          if (m) { cur = m[1].replace(/^[^:]+:/, ''); continue }
          if (line) out.add(`${cur === '/' ? '' : cur}/${line}`)
        }
        return out
      }
      const rootTree = ls('root:/')
      // A command killed may or may not have taken effect (an rm -r killed midway removed part).
      const tookOrMayHave = (kind: string, target: string) => runs.filter((x) => x.kind === kind && x.target === target && (x.status === 0 || x.killed))
      for (const w of done('write')) {
        const c = cli(['cat', `root:${w.target}`])
        if (c.status !== 0 || !c.stdout.equals(w.content!)) failures.push(`write ${w.target} exited 0 but cat gives exit ${c.status}, ${c.stdout.length} bytes (want ${w.content!.length})`)
      }
      // A write killed midway made its file whole or not at all (one transaction).
      for (const w of runs.filter((x) => x.kind === 'write' && x.killed)) {
        if (!rootTree.has(w.target!)) continue
        const c = cli(['cat', `root:${w.target}`])
        if (c.status !== 0 || !c.stdout.equals(w.content!)) failures.push(`write ${w.target} was killed and left ${c.stdout.length} bytes (want none or ${w.content!.length})`)
      }
      for (const m of done('mkdir')) {
        const mv = tookOrMayHave('mv', m.target!)
        const places = mv.length === 0 ? [m.target!] : mv[0].status === 0 ? [`/moved/${path.basename(m.target!)}`] : [m.target!, `/moved/${path.basename(m.target!)}`]
        if (!places.some((where) => rootTree.has(where) && rootTree.has(`${where}/y`))) failures.push(`mkdir ${m.target} exited 0 but ${places.join(' or ')}/y is not there`)
      }
      for (const m of done('mv')) if (rootTree.has(m.target!)) failures.push(`mv ${m.target} exited 0 but the source is still there`)
      for (const c of done('cp')) {
        const gone = tookOrMayHave('rm', c.target!).length > 0
        const here = host.files.filter((f) => rootTree.has(`${c.target}/${f}`))
        if (!gone && here.length !== host.files.length) failures.push(`cp -r to ${c.target} exited 0 but ${host.files.length - here.length} files are missing`)
      }
      for (const r of done('rm')) if (rootTree.has(r.target!)) failures.push(`rm -r ${r.target} exited 0 but it is still there`)
      for (const c of [...done('clone-sync'), ...done('clone-async')]) {
        const tree = ls(`${c.target}:/`)
        for (const w of done('write')) {
          if (w.end < c.start && !tree.has(w.target!)) failures.push(`clone ${c.target} (${c.kind}) lacks ${w.target}, written before it started`)
          if (w.start > c.end && tree.has(w.target!)) failures.push(`clone ${c.target} (${c.kind}) shows ${w.target}, written after it finished`)
        }
        for (const d of done('mkdir')) if (d.end < c.start && !runs.some((x) => x.kind === 'mv' && x.target === d.target) && !tree.has(d.target!)) failures.push(`clone ${c.target} lacks ${d.target}`)
        if ([...tree].some((p) => p.startsWith('/cp/'))) failures.push(`clone ${c.target} shows an excluded path`)
      }
      for (const r of runs.filter((x) => x.kind === 'cat' && x.status === 0)) {
        if (!r.stdout.equals(r.content!)) failures.push(`cat ${r.target} exited 0 with ${r.stdout.length} bytes, want ${r.content!.length}`)
      }

      // No two transactions overlapped, and sequence numbers rise with time.
      const commits = fs.existsSync(trace) ? fs.readFileSync(trace, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
        const [pid, seq, start, end] = l.split(' ').map(Number)
        return {pid, seq, start, end}
      }).sort((a, b) => a.start - b.start) : []
      const pids = new Set(commits.map((c) => c.pid))
      for (let i = 1; i < commits.length; i++) {
        const a = commits[i - 1]
        const b = commits[i]
        if (b.start < a.end) failures.push(`transactions overlap: pid ${a.pid} seq ${a.seq} [${a.start}, ${a.end}] and pid ${b.pid} seq ${b.seq} [${b.start}, ${b.end}]`)
        if (b.seq <= a.seq) failures.push(`sequence numbers do not increase: pid ${a.pid} seq ${a.seq} then pid ${b.pid} seq ${b.seq}`)
      }

      const byKind = new Map<string, number>()
      for (const r of runs) byKind.set(r.kind, (byKind.get(r.kind) ?? 0) + 1)
      console.log(`      ${runs.length} process runs in ${elapsed.toFixed(1)} s (${[...byKind].map(([k, n]) => `${k} ${n}`).join(', ')}), ${kills} killed with SIGKILL, ${expanderKills} background expander kills; ${commits.length} transactions from ${pids.size} processes (PRISM_STRESS_SEED=${SEED})`)
      expect(commits.length, 'no transaction was traced').to.be.greaterThan(20)
      expect(failures, failures.slice(0, 12).join('\n')).to.deep.equal([])
    } finally {
      for (const v of live.values()) v.child.kill('SIGKILL')
      const pg = spawnSync('pgrep', ['-f', `expand --background --image ${img}`])
      for (const pid of pg.stdout.toString().split('\n').filter(Boolean).map(Number)) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
