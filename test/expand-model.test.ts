// Model-based test of asynchronous and lazy cloning (issue: snapshot semantics during
// expansion). Random interleavings of file operations on every fileset (sources and clones,
// contents, attributes and directory changes), async and lazy clones (with excludes and
// replacements, of sources that are themselves still expanding), single-path reads,
// background-expansion slices, killed slices (their work lost, the expander forgotten) and
// fileset deletions run against a model in which a clone is a deep copy taken when the
// clone command ran. After each run fsck must find nothing both before and after the
// remaining expansion, every fileset must equal its model, and once everything is deleted
// every block and inode must be free again. PRISM_EXPAND_RUNS sets the runs (default 1000).
import {expect} from 'chai'
import fc from 'fast-check'
import {clone} from '../src/clone/clone.js'
import {Expander, expandAll} from '../src/fs/expand.js'
import {PrismError} from '../src/errors.js'
import {FS_EXPANDING} from '../src/format/constants.js'
import {getFileset, listFilesets} from '../src/fs/filesets.js'
import {deleteFileset, namespace} from '../src/fs/image.js'
import {Volume} from '../src/fs/volume.js'
import {fsckDevice} from '../src/fsck/index.js'
import {Model} from './model.js'
import {snapshot} from './helpers.js'
import {apply, memImage, opArb, pathArb, patternArb, w, type Op} from './fsops.js'

type Step =
  | {kind: 'fs', target: number, op: Op}
  | {kind: 'clone', src: number, mode: 'async' | 'lazy', exclude: string[], replace: Array<{path: string, kind: 'dir' | 'file'}>}
  | {kind: 'slice', target: number, dirs: number, kill: boolean}
  | {kind: 'read', target: number, p: string}
  | {kind: 'delete', target: number}

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  w(10, fc.tuple(fc.nat(7), opArb).map(([target, op]) => ({kind: 'fs', target, op}) as Step)),
  w(3, fc.record({
    src: fc.nat(7),
    mode: fc.constantFrom('async' as const, 'lazy' as const),
    exclude: fc.array(patternArb, {maxLength: 2}),
    replace: fc.array(fc.record({path: pathArb, kind: fc.constantFrom('dir' as const, 'file' as const)}), {maxLength: 1}),
  }).map((c) => ({kind: 'clone', ...c}) as Step)),
  w(3, fc.record({target: fc.nat(7), dirs: fc.integer({min: 1, max: 4}), kill: fc.boolean()}).map((s) => ({kind: 'slice', ...s}) as Step)),
  w(3, fc.tuple(fc.nat(7), pathArb).map(([target, p]) => ({kind: 'read', target, p}) as Step)),
  w(1, fc.nat(7).map((target) => ({kind: 'delete', target}) as Step)),
)

const INITIAL: Op[] = [
  {op: 'mkdir', p: '/a'}, {op: 'mkdir', p: '/a/a'}, {op: 'mkdir', p: '/b'}, {op: 'mkdir', p: '/b/a'},
  {op: 'write', p: '/a/b', data: Buffer.from('ab')}, {op: 'write', p: '/a/a/a', data: Buffer.alloc(5000, 7)},
  {op: 'write', p: '/b/a/b', data: Buffer.from('bab')}, {op: 'write', p: '/b/b', data: Buffer.from('bb')},
  {op: 'link', a: '/b/b', b: '/a/a/b'}, {op: 'symlink', t: '/nowhere/a', p: '/b/a/a'},
]

/** A hard-linked file's count grows as a lazy clone expands its names; compare the rest. */
const noNlink = (line: string | undefined) => line?.startsWith('file ') ? line.replace(/ nlink=\d+/, '') : line

function readOne(ns: ReturnType<typeof namespace>, p: string): string | undefined {
  try {
    const st = ns.stat(p)
    const snap = snapshot(namespace(ns.vol, ns.fs.name)) // small trees: the whole view is cheap
    if (st.type === 'dir') return `${snap[p]} [${ns.readdir(p).map((e) => e.name).join(',')}]`
    return noNlink(snap[p])
  } catch (e) {
    if (e instanceof PrismError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return undefined
    throw e
  }
}

function modelOne(m: Model, p: string): string | undefined {
  const snap = m.snapshot()
  const line = snap[p]
  if (line === undefined || !line.startsWith('dir ')) return noNlink(line)
  const kids = Object.keys(snap).filter((k) => k.startsWith(p + '/') && !k.slice(p.length + 1).includes('/')).map((k) => k.slice(p.length + 1)).sort()
  return `${line} [${kids.join(',')}]`
}

describe('model: asynchronous and lazy clones are snapshots', function () {
  this.timeout(900000)
  const runs = Number(process.env.PRISM_EXPAND_RUNS ?? 500)

  it(`matches the model over ${runs} random interleavings of writes, clones, reads and expansion slices`, () => {
    const tally = {clones: 0, slices: 0, kills: 0, reads: 0, deletes: 0, unexpandedAtEnd: 0}
    fc.assert(fc.property(fc.array(stepArb, {minLength: 10, maxLength: 40}), (steps) => {
      const dev = memImage(6144)
      let vol = Volume.openDevice(dev, {write: true})
      const models = new Map<string, Model>([['root', new Model()]])
      const expanders = new Map<string, Expander>()
      let next = 1
      try {
        // Every run starts from a full little tree (depth 3, hard links, a dangling symlink: the model does not follow symlinks), so that
        // clones have something to expand and renames move whole subtrees.
        const rootNs = namespace(vol, 'root')
        const rootModel = models.get('root')!
        for (const o of INITIAL) expect(apply(rootNs, rootModel, o).real, JSON.stringify(o)).to.equal(true)
        vol.commit()
        for (const s of steps) {
          const names = [...models.keys()]
          const pick = (i: number) => names[i % names.length]
          if (s.kind === 'fs') {
            if (s.op.op === 'reopen') {
              vol.close()
              vol = Volume.openDevice(dev, {write: true})
              continue
            }
            const name = pick(s.target)
            const r = apply(namespace(vol, name), models.get(name)!, s.op)
            if (r.commit) vol.commit()
            else vol.abort()
            expect(r.real, `${name}: ${JSON.stringify(s.op)}`).to.equal(r.model)
          } else if (s.kind === 'clone') {
            const src = pick(s.src)
            const name = `f${next++}`
            const hits = new Set<string>()
            const expected = models.get(src)!.cloneWith(s.exclude, s.replace, hits)
            let unmatched: string[] = []
            let ok = true
            try {
              unmatched = clone(vol, {fileset: src, path: '/'}, {fileset: name}, {
                mode: s.mode, exclude: s.exclude,
                replace: s.replace.map((r) => ({path: r.path, source: r.kind === 'dir' ? '@empty-dir' : '@empty-file'})),
              }).unmatched
              vol.commit()
            } catch (e) {
              if (!(e instanceof PrismError) || e.code === 'EBADIMAGE') throw e
              vol.abort()
              ok = false
            }
            expect(ok, `clone ${src} ${JSON.stringify(s)}`).to.equal(expected !== null)
            // The warnings: whatever the mode, the patterns no entry of the source matched.
            if (ok) expect(unmatched, `unmatched patterns of ${JSON.stringify(s.exclude)}`).to.deep.equal(s.exclude.filter((p) => !hits.has(p)))
            if (expected) { models.set(name, expected); tally.clones++ }
          } else if (s.kind === 'slice') {
            const expanding = listFilesets(vol).filter((f) => f.state === FS_EXPANDING)
            if (expanding.length === 0) continue
            const f = expanding[s.target % expanding.length]
            let e = expanders.get(f.name)
            if (!e) expanders.set(f.name, e = new Expander(f.id))
            const r = e.slice(vol, 60_000, s.dirs)
            if (s.kill) {
              // The expander dies before its slice commits: the work is lost, and so is its walk.
              vol.abort()
              expanders.delete(f.name)
              tally.kills++
            } else {
              vol.commit()
              if (r !== 'more') expanders.delete(f.name)
              tally.slices++
            }
          } else if (s.kind === 'read') {
            const name = pick(s.target)
            expect(readOne(namespace(vol, name), s.p), `read ${name}:${s.p}`).to.equal(modelOne(models.get(name)!, s.p))
            vol.commit() // reading expands on demand
            tally.reads++
          } else {
            if (names.length < 2) continue
            const name = pick(s.target)
            if (name === 'root') continue
            deleteFileset(vol, name)
            vol.commit()
            models.delete(name)
            expanders.delete(name)
            tally.deletes++
          }
        }
        tally.unexpandedAtEnd += listFilesets(vol).filter((f) => f.state === FS_EXPANDING).length
        vol.close()
        let r = fsckDevice(dev, {repair: false})
        expect(r.problems, 'fsck before full expansion: ' + JSON.stringify(r.problems)).to.deep.equal([])
        vol = Volume.openDevice(dev, {write: true})
        // Each fileset read whole while still expanding (hard-link counts aside, see noNlink) ...
        for (const [name, m] of models) {
          const real = Object.fromEntries(Object.entries(snapshot(namespace(vol, name))).map(([k, v]) => [k, noNlink(v)]))
          const want = Object.fromEntries(Object.entries(m.snapshot()).map(([k, v]) => [k, noNlink(v)]))
          expect(real, `fileset ${name} read while expanding`).to.deep.equal(want)
        }
        vol.commit()
        // ... and exactly, once expansion is complete.
        for (const f of listFilesets(vol)) expandAll(vol, getFileset(vol, f.name))
        vol.commit()
        for (const [name, m] of models) expect(snapshot(namespace(vol, name)), `fileset ${name}`).to.deep.equal(m.snapshot())
        expect(listFilesets(vol).filter((f) => f.state === FS_EXPANDING || f.clonestart !== 0)).to.deep.equal([])
        vol.close()
        r = fsckDevice(dev, {repair: false})
        expect(r.problems, 'fsck after full expansion: ' + JSON.stringify(r.problems)).to.deep.equal([])
        vol = Volume.openDevice(dev, {write: true})
        for (const name of models.keys()) deleteFileset(vol, name)
        vol.commit()
        expect([vol.sb.freeBlocks, vol.sb.freeInodes]).to.deep.equal([vol.sb.dataBlocks, vol.sb.inodeCount])
      } finally {
        vol.close()
      }
    }), {numRuns: runs})
    console.log(`      ${runs} runs: ${tally.clones} async/lazy clones, ${tally.slices} slices, ${tally.kills} killed slices, ` +
      `${tally.reads} reads, ${tally.deletes} deletions; ${tally.unexpandedAtEnd} clones still expanding at the end of a run`)
  })
})
