// A signal after any commit of a command: the command either stops with "interrupted" (exit
// 128 + the signal) and nothing of its work shows, or, once its work is committed (published),
// finishes it and exits 0 with all of it there. Never "interrupted" for work that is done, and
// never a part of it. The signal is sent by the command itself right after its Nth commit
// (PRISM_KILL_AFTER_COMMITS, PRISM_KILL_SIGNAL: src/journal/journal.ts), for every N, on an
// image with a small journal so that each command commits many times; the commands are the
// ones that commit along the way and then publish, or publish and then free (the reaper).
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {fsckImage} from '../src/fsck/index.js'
import {listFilesets} from '../src/fs/filesets.js'
import {namespace, withImage} from '../src/fs/image.js'
import {edit, newImage, prism, snapshot, tmpDir} from './helpers.js'
import {mkTar} from './tar-lib.js'

type State = Record<string, Record<string, string>>

function state(img: string): State {
  return withImage(img, {write: false}, (vol) => Object.fromEntries(listFilesets(vol).map((f) => [f.name, snapshot(namespace(vol, f.name))])))
}

/** Free blocks once a writable open has reaped what a stopped command left. */
function freeAfterReap(img: string): number {
  edit(img, () => {})
  return withImage(img, {write: false}, (vol) => vol.sb.freeBlocks)
}

describe('a signal after any commit: interrupted and nothing, or done and all', function () {
  this.timeout(600_000)
  let dir: string
  let template: string
  let host: string
  let archive: string
  before(() => {
    dir = tmpDir('prism-sigcommit-')
    // 64 blocks of journal: a command commits every 32 blocks of metadata or so.
    template = newImage(dir, 128 << 20, {journalBlocks: 64})
    edit(template, (ns, vol) => {
      ns.mkdir('/t')
      ns.writeFile('/t/keep', Buffer.from('keep'))
      for (let d = 0; d < 6; d++) {
        ns.mkdir(`/t/d${d}`)
        // (the names an import or a copy below replaces)
        for (let f = 0; f < 30; f++) ns.writeFile(`/t/d${d}/f${f}`, Buffer.alloc(6000 + f, 100 + d))
        vol.maybeCommit()
      }
      // A file of many extents (its even blocks first, then the odd ones elsewhere), which a
      // replacing mv frees in many steps.
      const big = ns.writeFile('/t/big', Buffer.alloc(0))
      for (const odd of [0, 1]) {
        for (let b = odd; b < 4000; b += 2) ns.writeInode(vol.iget(big.ino), b * 4096, Buffer.alloc(4096, b & 255))
        vol.maybeCommit()
      }
      ns.mkdir('/tree')
      for (let d = 0; d < 16; d++) {
        ns.mkdir(`/tree/d${d}`)
        for (let f = 0; f < 50; f++) ns.writeFile(`/tree/d${d}/f${f}`, Buffer.alloc(5000 + f, d))
        vol.maybeCommit()
      }
    })
    expect(prism(['fileset', 'create', '-i', template, 'other']).status).to.equal(0)
    expect(prism(['clone', '--mode', 'sync', '-i', template, 'root', 'gone']).status).to.equal(0)
    expect(prism(['write', '-i', template, 'gone:/own'], {input: 'own'}).status).to.equal(0)
    host = path.join(dir, 'host')
    const entries: Parameters<typeof mkTar>[0] = []
    for (let d = 0; d < 12; d++) {
      fs.mkdirSync(path.join(host, `d${d}`), {recursive: true})
      for (let f = 0; f < 50; f++) {
        const data = Buffer.alloc(3000 + f, 50 + d)
        fs.writeFileSync(path.join(host, `d${d}`, `f${f}`), data)
        entries.push({name: `d${d}/f${f}`, data})
      }
    }
    archive = path.join(dir, 'a.tar')
    fs.writeFileSync(archive, mkTar(entries))
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  // (the replacing mv frees its file in one commit on this journal: covered all the same)
  const commands: Array<[string, () => string[]]> = [
    ['import merging into a directory (replacing files)', () => ['import', 'root:/t', archive]],
    ['import --create', () => ['import', '--create', 'fresh', archive]],
    ['cp -r of a host tree onto a directory (replacing files)', () => ['cp', '-r', `${host}/.`, 'root:/t']],
    ['cp -r between filesets', () => ['cp', '-r', 'root:/tree', 'other:/tree']],
    ['mv between filesets', () => ['mv', 'root:/tree', 'other:/tree']],
    ['mv within a fileset onto a file (replacing it)', () => ['mv', 'root:/tree/d0/f0', 'root:/t/big']],
    ['rm -r', () => ['rm', '-r', 'root:/tree']],
    ['fileset delete', () => ['fileset', 'delete', 'gone']],
    ['clone --mode sync', () => ['clone', '--mode', 'sync', 'root', 'copy']],
  ]

  for (const [what, args] of commands) {
    it(what, () => {
      const img = path.join(dir, 'run.img')
      // The command alone: what it leaves, and how many commits it makes.
      fs.copyFileSync(template, img)
      const before = state(img)
      const freeBefore = withImage(img, {write: false}, (vol) => vol.sb.freeBlocks)
      const trace = path.join(dir, 'trace')
      fs.rmSync(trace, {force: true})
      const alone = prism([...args(), '-i', img], {env: {PRISM_JOURNAL_TRACE: trace}})
      expect(alone.status, alone.stderr).to.equal(0)
      const afterAll = state(img)
      const freeAfter = freeAfterReap(img)
      expect(afterAll).to.not.deep.equal(before)
      const commits = fs.readFileSync(trace, 'utf8').trim().split('\n').length
      if (!what.startsWith('mv within')) expect(commits, 'the command commits more than once').to.be.greaterThan(1)
      const outcomes: string[] = []
      // Every commit, or, of many, the first two, one in the middle and the last four.
      const points = commits <= 8 ? [...Array(commits).keys()].map((i) => i + 1) : [1, 2, commits >> 1, commits - 3, commits - 2, commits - 1, commits]
      for (const n of points) {
        for (const sig of n === commits ? ['SIGINT', 'SIGTERM'] : ['SIGINT']) {
          fs.copyFileSync(template, img)
          const r = prism([...args(), '-i', img], {env: {PRISM_KILL_AFTER_COMMITS: String(n), PRISM_KILL_SIGNAL: sig}})
          const now = state(img)
          const where = `${sig} after commit ${n} of ${commits}: exit ${r.status}`
          expect(fsckImage(img, {repair: false}).problems, where).to.deep.equal([])
          if (r.status === 0) {
            expect(r.stderr, where).to.equal('')
            expect(now, where).to.deep.equal(afterAll)
            expect(freeAfterReap(img), where).to.equal(freeAfter)
            outcomes.push(`${n}: done`)
          } else {
            expect([r.status, r.stderr], where).to.deep.equal([sig === 'SIGINT' ? 130 : 143, 'prism: interrupted\n'])
            expect(now, where).to.deep.equal(before)
            expect(freeAfterReap(img), where).to.equal(freeBefore)
            outcomes.push(`${n}: interrupted`)
          }
        }
      }
      // The last commit publishes the work, or is followed only by freeing: done.
      expect(outcomes[outcomes.length - 1]).to.equal(`${commits}: done`)
      console.log(`      ${outcomes.join(', ')}`)
    })
  }
})
