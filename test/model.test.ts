// Model-based test of the filesystem core: random sequences of operations run against the
// real namespace (on a memory block device) and against test/model.ts; after every step the
// whole tree must match, every failure must be predicted by the model, and the image must
// survive closing and reopening. PRISM_MODEL_RUNS raises the number of runs.
import {expect} from 'chai'
import fc from 'fast-check'
import {Volume} from '../src/fs/volume.js'
import {namespace} from '../src/fs/image.js'
import {Model} from './model.js'
import {snapshot} from './helpers.js'
import {apply, kindAt, memImage, opArb, setupArb, type Op} from './fsops.js'

const d = (p: string): Op => ({op: 'mkdir', p})
const f = (p: string): Op => ({op: 'write', p, data: Buffer.from(`content of ${p}`)})
const l = (p: string): Op => ({op: 'symlink', t: '/nowhere' + p, p})
/**
 * Runs that try each replacement of one kind of object by another, whatever the random runs
 * happen to generate: files, symlinks, empty and non-empty directories under every op that
 * can replace a name.
 */
const EXAMPLES: Array<[Op[], Op[]]> = [
  [[f('/a'), l('/b')], [{op: 'cpr', a: '/a', b: '/b', T: true}, {op: 'cp', a: '/a', b: '/b'}, {op: 'rename', a: '/b', b: '/a'}]],
  [[f('/a'), d('/b')], [{op: 'rename', a: '/a', b: '/b'}, {op: 'lnf', a: '/a', b: '/b'}, {op: 'cpr', a: '/a', b: '/b', T: true}, {op: 'symf', t: '/x', p: '/b'}]],
  [[f('/a'), d('/b'), f('/b/a')], [{op: 'cp', a: '/a', b: '/b'}, {op: 'cpr', a: '/a', b: '/b', T: true}, {op: 'rename', a: '/a', b: '/b'}, {op: 'lnf', a: '/a', b: '/b'}]],
  [[d('/a'), d('/a/a'), f('/a/b'), d('/b'), f('/b/a'), d('/b/b')], [{op: 'cpr', a: '/a', b: '/b', T: true}, {op: 'cpr', a: '/a', b: '/b/a', T: false}, {op: 'rename', a: '/a', b: '/b'}]],
  [[d('/a'), f('/b'), l('/a/b')], [{op: 'rename', a: '/a', b: '/b'}, {op: 'cpr', a: '/a', b: '/b', T: true}, {op: 'cpr', a: '/a', b: '/b', T: false}, {op: 'symf', t: '/y', p: '/b'}]],
  [[d('/a'), d('/b')], [{op: 'rename', a: '/a', b: '/b'}, {op: 'mkdir', p: '/a'}, {op: 'write', p: '/b', data: Buffer.from('x')}, {op: 'rename', a: '/a', b: '/b'}]],
  [[f('/a'), f('/b'), l('/a/a')], [{op: 'cpr', a: '/a', b: '/b', T: false}, {op: 'link', a: '/a', b: '/b'}, {op: 'lnf', a: '/a', b: '/b'}, {op: 'lnf', a: '/a', b: '/a'}, {op: 'symf', t: '/z', p: '/a'}, {op: 'symf', t: '/z', p: '/a'}]],
  [[f('/a'), l('/b')], [{op: 'lnf', a: '/a', b: '/b'}, {op: 'rename', a: '/b', b: '/a'}]],
  [[d('/a'), f('/b')], [{op: 'rename', a: '/a', b: '/b'}, {op: 'mkdir', p: '/c'}, {op: 'rename', a: '/c', b: '/b'}]],
  // one replacement each, so that every case of the coverage list below is tried by an example
  [[d('/a'), f('/a/x'), d('/b')], [{op: 'rename', a: '/a', b: '/b'}]],
  [[f('/a'), l('/b')], [{op: 'rename', a: '/a', b: '/b'}]],
  [[f('/a'), l('/b')], [{op: 'rename', a: '/b', b: '/a'}]],
  [[f('/a'), l('/b')], [{op: 'cp', a: '/a', b: '/b'}]],
  [[d('/a'), f('/a/x')], [{op: 'symf', t: '/x', p: '/a'}]],
]

describe('model: the namespace behaves as a plain tree', function () {
  this.timeout(600000)
  const runs = Number(process.env.PRISM_MODEL_RUNS ?? 150)

  it(`matches the reference model over ${runs} random sequences`, () => {
    /** Replacements of one kind of object by another that the runs tried (issue 15). */
    const cases = new Map<string, number>()
    /** The same, from the fixed examples alone (fast-check runs them first, in order). */
    const fromExamples = new Set<string>()
    let run = 0
    fc.assert(fc.property(setupArb, fc.array(opArb, {minLength: 25, maxLength: 80}), (setup, rest) => {
      const example = run++ < EXAMPLES.length
      const ops = [...setup, ...rest]
      const dev = memImage()
      let vol = Volume.openDevice(dev, {write: true})
      const m = new Model()
      const {freeBlocks, freeInodes} = vol.sb
      try {
        for (const o of ops) {
          if (o.op === 'reopen') {
            vol.close()
            vol = Volume.openDevice(dev, {write: true})
            continue
          }
          const ns = namespace(vol, 'root')
          if ('a' in o && 'b' in o) {
            const c = `${o.op}${o.op === 'cpr' && o.T ? ' -T' : ''}: ${kindAt(m, o.a)} over ${kindAt(m, o.b)}`
            cases.set(c, (cases.get(c) ?? 0) + 1)
            if (example) fromExamples.add(c)
          }
          if (o.op === 'symf') {
            const c = `symf: over ${kindAt(m, o.p)}`
            cases.set(c, (cases.get(c) ?? 0) + 1)
            if (example) fromExamples.add(c)
          }
          const r = apply(ns, m, o)
          if (r.commit) vol.commit()
          else vol.abort()
          expect(r.real, `${JSON.stringify(o)}: real ${r.real}, model ${r.model}`).to.equal(r.model)
          expect(snapshot(namespace(vol, 'root'))).to.deep.equal(m.snapshot())
        }
        // Removing everything returns every block and inode.
        const ns = namespace(vol, 'root')
        for (const e of ns.readdir('/')) ns.remove('/' + e.name, {recursive: true})
        vol.commit()
        expect([vol.sb.freeBlocks, vol.sb.freeInodes]).to.deep.equal([freeBlocks, freeInodes])
      } finally {
        vol.close()
      }
    }), {numRuns: runs, examples: EXAMPLES})
    // The runs generated the type-replacement cases, each at least once.
    const want = [
      'rename: file over dir', 'rename: dir over file', 'rename: dir over empty dir', 'rename: dir over dir', 'rename: file over symlink',
      'rename: symlink over file', 'rename: empty dir over file', 'rename: file over empty dir',
      'cpr: dir over file', 'cpr -T: dir over file', 'cpr -T: file over dir', 'cpr -T: dir over dir', 'cpr -T: file over symlink',
      'cpr: file over file', 'cp: file over dir', 'cp: file over symlink',
      'lnf: file over dir', 'lnf: file over file', 'lnf: file over symlink', 'lnf: file over empty dir', 'link: file over file',
      'symf: over dir', 'symf: over file', 'symf: over empty dir', 'symf: over symlink',
    ]
    console.log(`      type replacements tried: ${want.map((c) => `${c} ${cases.get(c) ?? 0}`).join(', ')}`)
    // Every case is tried whatever the random runs draw: the fixed examples hold each one.
    expect(want.filter((c) => !fromExamples.has(c)), 'cases the fixed examples do not try').to.deep.equal([])
  })
})
