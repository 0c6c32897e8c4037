// Model-based test of cloning (issue: isolation and hard-link semantics). Random sequences
// of file operations, clones (with excludes and replacements) and fileset deletions run
// across several filesets, against a model in which a clone is a deep copy. After every
// step every fileset must match its model; after every run fsck must find nothing and,
// once everything is deleted, every block and inode must be free again.
// The locality policy runs at its smallest region (64 KiB) and groups of one or two regions,
// so that writes into shared files rewrite regions often (copy-on-abundant-write,
// docs/FORMAT.md §6.6); the test checks that some did.
// PRISM_CLONE_RUNS sets the number of runs (default 1000).
import {expect} from 'chai'
import fc from 'fast-check'
import {clone} from '../src/clone/clone.js'
import {PrismError} from '../src/errors.js'
import {deleteFileset, namespace} from '../src/fs/image.js'
import {Volume} from '../src/fs/volume.js'
import {listFilesets} from '../src/fs/filesets.js'
import {localityTuning, setImageLocality} from '../src/fs/locality.js'
import {fsckDevice} from '../src/fsck/index.js'
import {copy} from '../src/ops/copy.js'
import {move} from '../src/ops/move.js'
import {Model} from './model.js'
import {snapshot} from './helpers.js'
import {apply, attempt, memImage, opArb, pathArb, patternArb, w, type Op} from './fsops.js'
import {BLOCK_SIZE} from '../src/format/constants.js'

type Step =
  | {kind: 'fs', target: number, op: Op}
  | {kind: 'burst', target: number, pick: number, writes: Array<{block: number, seed: number}>}
  | {kind: 'clone', src: number, exclude: string[], replace: Array<{path: string, kind: 'dir' | 'file'}>}
  | {kind: 'delete', target: number}
  | {kind: 'xcp', src: number, dst: number, a: string, b: string, T: boolean}
  | {kind: 'xmv', src: number, dst: number, a: string, b: string}

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  w(8, fc.tuple(fc.nat(7), opArb).map(([target, op]) => ({kind: 'fs', target, op}) as Step)),
  // Many one-block writes into one file in one transaction: they fill its windows, and a
  // region of a shared file is then rewritten (copy-on-abundant-write).
  w(3, fc.record({target: fc.nat(7), pick: fc.nat(1000), writes: fc.array(fc.record({block: fc.nat(40), seed: fc.nat(255)}), {minLength: 4, maxLength: 12})})
    .map((b) => ({kind: 'burst', ...b}) as Step)),
  w(2, fc.record({
    src: fc.nat(7),
    exclude: fc.array(patternArb, {maxLength: 3}),
    replace: fc.array(fc.record({path: pathArb, kind: fc.constantFrom('dir' as const, 'file' as const)}), {maxLength: 1}),
  }).map((c) => ({kind: 'clone', ...c}) as Step)),
  w(1, fc.nat(7).map((target) => ({kind: 'delete', target}) as Step)),
  // cp -r and mv between filesets (or within one): merging, refusing a directory over a file
  // and the reverse, rename(2)'s rules for mv; the files of clones are shared inodes.
  w(2, fc.record({src: fc.nat(7), dst: fc.nat(7), a: pathArb, b: pathArb, T: fc.boolean()}).map((c) => ({kind: 'xcp', ...c}) as Step)),
  w(2, fc.record({src: fc.nat(7), dst: fc.nat(7), a: pathArb, b: pathArb}).map((c) => ({kind: 'xmv', ...c}) as Step)),
)

describe('model: clones behave as deep copies', function () {
  this.timeout(900000)
  const runs = Number(process.env.PRISM_CLONE_RUNS ?? 500)

  const saved = localityTuning.groupBytes
  after(() => { localityTuning.groupBytes = saved })

  it(`matches the model over ${runs} random sequences of operations, clones and deletes`, () => {
    let clones = 0
    let deletes = 0
    let copies = 0
    let moves = 0
    let rewrites = 0
    const rewritesIn = (v: Volume) => listFilesets(v).reduce((n, f) => n + f.coawRewrites, 0)
    fc.assert(fc.property(fc.array(stepArb, {minLength: 10, maxLength: 30}), fc.constantFrom(64, 128), (steps, groupK) => {
      localityTuning.groupBytes = groupK * 1024
      const dev = memImage(6144)
      let vol = Volume.openDevice(dev, {write: true})
      setImageLocality(vol, 16) // regions of 64 KiB
      vol.commit()
      const models = new Map<string, Model>([['root', new Model()]])
      let next = 1
      try {
        for (const s of steps) {
          const names = [...models.keys()]
          if (s.kind === 'fs') {
            if (s.op.op === 'reopen') {
              vol.close()
              vol = Volume.openDevice(dev, {write: true})
              continue
            }
            const name = names[s.target % names.length]
            const r = apply(namespace(vol, name), models.get(name)!, s.op)
            if (r.commit) vol.commit()
            else vol.abort()
            expect(r.real, `${name}: ${JSON.stringify(s.op)}`).to.equal(r.model)
          } else if (s.kind === 'burst') {
            const name = names[s.target % names.length]
            const ns = namespace(vol, name)
            const m = models.get(name)!
            const files = Object.entries(m.snapshot()).filter(([, d]) => d.startsWith('file ')).map(([p]) => p)
            if (files.length === 0) continue
            const p = files[s.pick % files.length]
            const node = m.get(p)
            if (!node || node.kind !== 'obj' || node.obj.kind !== 'file') continue
            // Inside the file: into blocks a clone may share.
            const blocks = Math.max(1, Math.ceil(node.obj.data.length / BLOCK_SIZE))
            const at = s.writes.map((x) => ({off: (x.block % blocks) * BLOCK_SIZE, data: Buffer.alloc(BLOCK_SIZE, x.seed)}))
            const ok = attempt(() => {
              const f = ns.openForWrite(p)
              for (const x of at) ns.writeInode(f, x.off, x.data)
            })
            if (ok) {
              for (const x of at) m.pwrite(p, x.off, x.data)
              vol.commit()
            } else vol.abort()
            expect(ok, `${name}: burst into ${p}`).to.equal(true)
          } else if (s.kind === 'clone') {
            const src = names[s.src % names.length]
            const name = `f${next++}`
            const hits = new Set<string>()
            const expected = models.get(src)!.cloneWith(s.exclude, s.replace, hits)
            let unmatched: string[] = []
            let ok = true
            try {
              unmatched = clone(vol, {fileset: src, path: '/'}, {fileset: name}, {
                exclude: s.exclude, replace: s.replace.map((r) => ({path: r.path, source: r.kind === 'dir' ? '@empty-dir' : '@empty-file'})),
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
            if (expected) { models.set(name, expected); clones++ }
          } else if (s.kind === 'xcp' || s.kind === 'xmv') {
            const from = names[s.src % names.length]
            const to = names[s.dst % names.length]
            const sm = models.get(from)!
            const dm = models.get(to)!
            let ok = true
            let keep = false
            try {
              if (s.kind === 'xcp') {
                const st = copy(vol, [{kind: 'image', fileset: from, path: s.a}], {kind: 'image', fileset: to, path: s.b}, {recursive: true, noTargetDirectory: s.T})
                keep = true // what could be copied stays, as cp does
                ok = st.errors.length === 0
              } else {
                move(vol, [{fileset: from, path: s.a}], {fileset: to, path: s.b}, (n) => namespace(vol, n))
              }
            } catch (e) {
              if (!(e instanceof PrismError) || e.code === 'EBADIMAGE') throw e
              ok = false
            }
            if (ok || keep) vol.commit()
            else vol.abort()
            const want = s.kind === 'xcp' ? Model.copyTree(sm, s.a, dm, s.b, {r: true, T: s.T})
              : from === to ? sm.move(s.a, s.b) : Model.moveBetween(sm, s.a, dm, s.b)
            expect(ok, `${s.kind} ${from}:${s.a} ${to}:${s.b}`).to.equal(want)
            if (s.kind === 'xcp') copies++
            else moves++
          } else {
            if (names.length < 2) continue
            const name = names[s.target % names.length]
            rewrites += listFilesets(vol).find((f) => f.name === name)!.coawRewrites
            deleteFileset(vol, name)
            vol.commit()
            models.delete(name)
            deletes++
          }
          for (const [name, m] of models) expect(snapshot(namespace(vol, name)), `fileset ${name} after ${JSON.stringify(s)}`).to.deep.equal(m.snapshot())
        }
        rewrites += rewritesIn(vol)
        vol.close()
        const r = fsckDevice(dev, {repair: false})
        expect(r.problems, JSON.stringify(r.problems)).to.deep.equal([])
        vol = Volume.openDevice(dev, {write: true})
        for (const name of models.keys()) deleteFileset(vol, name)
        vol.commit()
        expect([vol.sb.freeBlocks, vol.sb.freeInodes]).to.deep.equal([vol.sb.dataBlocks, vol.sb.inodeCount])
      } finally {
        vol.close()
      }
    }), {numRuns: runs})
    console.log(`      ${runs} runs: ${clones} clones, ${deletes} fileset deletions, ${copies} cp -r and ${moves} mv between filesets, ${rewrites} region rewrites checked against the model`)
    expect(rewrites, 'writes into shared files rewrote regions').to.be.greaterThan(0)
  })
})
