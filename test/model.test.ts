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
import {apply, memImage, opArb} from './fsops.js'

describe('model: the namespace behaves as a plain tree', function () {
  this.timeout(600000)
  const runs = Number(process.env.PRISM_MODEL_RUNS ?? 150)

  it(`matches the reference model over ${runs} random sequences`, () => {
    fc.assert(fc.property(fc.array(opArb, {minLength: 25, maxLength: 80}), (ops) => {
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
          const r = apply(ns, m, o)
          if (r.real) vol.commit()
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
    }), {numRuns: runs})
  })
})
