// prism scan --incremental against its reference: a full scan. Random runs (fast-check) of
// writes (clean and matching content), mkdir, renames of files and directories, hard links,
// removals, sync/async/lazy clones (with excludes) and fileset deletions, with incremental
// scans of random sets of filesets in between. After each step the incremental scan must
// report exactly what a full scan of the same filesets reports (every match, with every
// path, and the same name and inode counts), whatever the remembered results and the
// remembered directory tree (FORMAT.md §12.3) say. PRISM_SCAN_MODEL_RUNS sets the runs.
import {expect} from 'chai'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import {clone, type CloneMode} from '../src/clone/clone.js'
import {deleteFileset, namespace, withImage, withImageAsync} from '../src/fs/image.js'
import {listFilesets} from '../src/fs/filesets.js'
import {fsckImage} from '../src/fsck/index.js'
import {scan, type ScanEngine, type ScanResult} from '../src/scan/scan.js'
import {loadSignatures} from '../src/scan/signatures.js'
import type {Namespace} from '../src/fs/namespace.js'
import {newImage, tmpDir} from './helpers.js'

const MARK = Buffer.from('PRISM-MODEL-MARK-' + 'b0dy')
const HASHED = Buffer.from('a file whose sha256 is a signature\n')

type Op =
  | {k: 'write', fs: number, dir: number, name: number, content: 0 | 1 | 2 | 3}
  | {k: 'mkdir', fs: number, dir: number, name: number}
  | {k: 'rename', fs: number, from: number, dir: number, name: number}
  | {k: 'link', fs: number, from: number, dir: number, name: number}
  | {k: 'rm', fs: number, from: number}
  | {k: 'clone', fs: number, mode: CloneMode, exclude: boolean}
  | {k: 'drop', fs: number}
  | {k: 'scan', pick: number}

const idx = fc.nat({max: 1000})
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {weight: 5, arbitrary: fc.record({k: fc.constant('write' as const), fs: idx, dir: idx, name: fc.nat({max: 7}), content: fc.constantFrom(0, 1, 2, 3) as fc.Arbitrary<0 | 1 | 2 | 3>})},
  {weight: 2, arbitrary: fc.record({k: fc.constant('mkdir' as const), fs: idx, dir: idx, name: fc.nat({max: 7})})},
  {weight: 2, arbitrary: fc.record({k: fc.constant('rename' as const), fs: idx, from: idx, dir: idx, name: fc.nat({max: 7})})},
  {weight: 1, arbitrary: fc.record({k: fc.constant('link' as const), fs: idx, from: idx, dir: idx, name: fc.nat({max: 7})})},
  {weight: 2, arbitrary: fc.record({k: fc.constant('rm' as const), fs: idx, from: idx})},
  {weight: 1, arbitrary: fc.record({k: fc.constant('clone' as const), fs: idx, mode: fc.constantFrom('sync', 'async', 'lazy') as fc.Arbitrary<CloneMode>, exclude: fc.boolean()})},
  {weight: 1, arbitrary: fc.record({k: fc.constant('drop' as const), fs: idx})},
  {weight: 3, arbitrary: fc.record({k: fc.constant('scan' as const), pick: fc.nat({max: 255})})},
)

/** Every directory and every non-directory path of a fileset ('/' first). */
function listTree(ns: Namespace): {dirs: string[], files: string[]} {
  const dirs = ['/']
  const files: string[] = []
  for (let i = 0; i < dirs.length; i++) {
    for (const e of ns.readdir(dirs[i])) {
      const p = (dirs[i] === '/' ? '' : dirs[i]) + '/' + e.name
      if (e.type === 'dir') dirs.push(p)
      else files.push(p)
    }
  }
  return {dirs, files}
}

const contentOf = (c: number, salt: number): Buffer =>
  c === 1 ? Buffer.concat([Buffer.from(`head ${salt} `), MARK, Buffer.from(' tail\n')])
    : c === 2 ? HASHED
      : c === 3 ? Buffer.alloc(9000 + salt, salt & 0xff)
        : Buffer.from(`clean content ${salt}\n`)

function summary(r: ScanResult): unknown {
  return {
    matches: r.matches.map((m) => ({found: m.found, paths: m.paths})),
    errors: r.errors.map((e) => ({paths: e.paths, message: e.message})),
    names: r.stats.names, inodes: r.stats.inodes,
  }
}

describe('scan --incremental: model-checked against a full scan', function () {
  this.timeout(900_000)
  let dir: string
  let engine: ScanEngine
  before(() => {
    dir = tmpDir()
    const hdb = path.join(dir, 'm.hdb')
    fs.writeFileSync(hdb, `${createHash('sha256').update(HASHED).digest('hex')}:${HASHED.length}:Model.Hash\n`)
    const ndb = path.join(dir, 'm.ndb')
    fs.writeFileSync(ndb, `Model.Mark:0:*:${MARK.toString('hex')}\n`)
    engine = {kind: 'signatures', set: loadSignatures([hdb, ndb])}
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('reports what a full scan reports after any sequence of changes', async () => {
    const runs = Number(process.env.PRISM_SCAN_MODEL_RUNS ?? 60)
    let scans = 0
    let dirsSkipped = 0
    let run = 0
    await fc.assert(fc.asyncProperty(fc.array(opArb, {minLength: 1, maxLength: 30}), async (ops) => {
      const img = newImage(dir, 32 * 1024 * 1024, {inodeCount: 4096})
      let salt = 0
      let clones = 0
      try {
        withImage(img, {write: true}, (vol) => {
          const ns = namespace(vol, 'root')
          ns.mkdir('/a/b', {parents: true})
          ns.mkdir('/c')
          ns.writeFile('/a/b/bad', contentOf(1, 0))
          ns.writeFile('/c/ok', contentOf(0, 0))
        })
        const check = async (names: string[]) => {
          const inc = await withImageAsync(img, {write: true}, async (vol) => scan(vol, names, engine, {incremental: true}))
          const full = await withImageAsync(img, {write: true}, async (vol) => scan(vol, names, engine))
          expect(summary(inc), `incremental scan of ${names.join(', ')}`).to.deep.equal(summary(full))
          scans++
          dirsSkipped += full.stats.dirsRead - inc.stats.dirsRead
        }
        for (const op of ops) {
          const all = withImage(img, {write: false}, (vol) => listFilesets(vol).map((f) => f.name))
          const fsName = 'fs' in op ? all[op.fs % all.length] : 'root'
          if (op.k === 'scan') {
            const names = all.filter((_, i) => (op.pick >> i) & 1)
            await check(names.length > 0 ? names : all)
            continue
          }
          withImage(img, {write: true}, (vol) => {
            if (op.k === 'clone') {
              clone(vol, {fileset: fsName, path: '/'}, {fileset: `k${++clones}`}, {mode: op.mode, exclude: op.exclude ? ['/c'] : []})
              return
            }
            if (op.k === 'drop') {
              if (fsName !== 'root') deleteFileset(vol, fsName)
              return
            }
            const ns = namespace(vol, fsName)
            const {dirs, files} = listTree(ns)
            const inDir = (d: number, name: string) => (dirs[d % dirs.length] === '/' ? '' : dirs[d % dirs.length]) + '/' + name
            try {
              if (op.k === 'write') ns.writeFile(inDir(op.dir, `f${op.name}`), contentOf(op.content, ++salt))
              else if (op.k === 'mkdir') ns.mkdir(inDir(op.dir, `d${op.name}`))
              else if (op.k === 'rename') {
                const all = [...dirs.slice(1), ...files]
                if (all.length > 0) ns.rename(all[op.from % all.length], inDir(op.dir, `r${op.name}`))
              } else if (op.k === 'link') {
                if (files.length > 0) ns.link(files[op.from % files.length], inDir(op.dir, `l${op.name}`))
              } else if (op.k === 'rm') {
                const all = [...dirs.slice(1), ...files]
                if (all.length > 0) ns.remove(all[op.from % all.length], {recursive: true})
              }
            } catch (e) {
              // A name already taken, a rename into itself, a write over a directory: the
              // namespace refuses, and nothing changed.
              if (!(e instanceof Error && 'code' in e)) throw e
            }
          })
        }
        await check(withImage(img, {write: false}, (vol) => listFilesets(vol).map((f) => f.name)))
        const r = fsckImage(img, {repair: false})
        expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
      } finally {
        fs.rmSync(img, {force: true})
        run++
      }
    }), {numRuns: runs})
    // The remembered tree was used: directories were taken from it rather than read.
    expect(scans).to.be.greaterThan(runs)
    expect(dirsSkipped).to.be.greaterThan(0)
  })
})

describe('scan --incremental and extended attributes', function () {
  this.timeout(120000)

  it('an attribute change is a change of metadata: the file is not read again, and diff reports it as A', async () => {
    const dir = tmpDir()
    const img = newImage(dir)
    const db = path.join(dir, 'sigs.hdb')
    fs.writeFileSync(db, `${createHash('md5').update(HASHED).digest('hex')}:${HASHED.length}:Test.Hashed\n`)
    const engine: ScanEngine = {kind: 'signatures', set: loadSignatures([db])}
    withImage(img, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      ns.mkdir('/d')
      for (let i = 0; i < 20; i++) ns.writeFile(`/d/f${i}`, i === 3 ? HASHED : Buffer.alloc(5000, i))
    })
    const run = () => withImageAsync(img, {write: true}, async (vol) => scan(vol, ['root'], engine, {incremental: true}))
    const first = await run()
    expect(first.stats.inodesRead).to.equal(20)
    withImage(img, {write: true}, (vol) => {
      const ns = namespace(vol, 'root')
      ns.setXattr('/d/f3', Buffer.from('security.selinux'), Buffer.from('system_u:object_r:bin_t:s0'))
      ns.setXattr('/d/f4', Buffer.from('user.k'), Buffer.alloc(3000, 1))
    })
    const again = await run()
    expect(again.matches.flatMap((m) => m.paths)).to.deep.equal(['root:/d/f3'])
    expect(again.stats.inodesRead).to.equal(0)
    // A clone, then an attribute change in it: diff says A for each, and reads no data.
    withImage(img, {write: true}, (vol) => {
      clone(vol, {fileset: 'root', path: '/'}, {fileset: 'c'}, {mode: 'sync'})
      namespace(vol, 'c').setXattr('/d/f5', Buffer.from('user.k'), Buffer.from('v'))
      namespace(vol, 'c').removeXattr('/d/f3', Buffer.from('security.selinux'))
    })
    const {diff} = await import('../src/diff/diff.js')
    const d = withImage(img, {write: false}, (vol) => diff(vol, {fileset: 'root', path: '/'}, {fileset: 'c', path: '/'}))
    expect(d.entries.map((e) => `${e.code} ${e.path}`)).to.deep.equal(['A /d/f3', 'A /d/f5'])
    expect(d.stats.bytesRead).to.equal(0)
    expect(fsckImage(img, {repair: false}).problems).to.deep.equal([])
  })
})
