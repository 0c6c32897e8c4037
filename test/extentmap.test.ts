// The in-memory extent map (src/fs/extentmap.ts) against a plain array: every splice, push and
// read, in maps of tiny chunks so that chunks are split, emptied and joined all the time; and
// the cost that made it: random inserts into a large map no longer move the whole map.
import {expect} from 'chai'
import fc from 'fast-check'
import type {Extent} from '../src/format/extent.js'
import {ExtentMap} from '../src/fs/extentmap.js'
import {mapRange, unmapRange} from '../src/fs/extents.js'

/** Extents told apart by l alone (the map keeps them in the order it is given). */
const ext = (l: number): Extent => ({l, n: 1, p: 1000 + l})

type Op =
  | {kind: 'splice', at: number, del: number, ins: number}
  | {kind: 'push'}

function same(m: ExtentMap, model: Extent[], chunk: number): void {
  expect(m.length).to.equal(model.length)
  const sizes = m.chunkSizes()
  expect(sizes.reduce((a, b) => a + b, 0)).to.equal(model.length)
  expect(Math.max(...sizes)).to.be.at.most(Math.max(2 * chunk, chunk + 12)) // split, or one splice past a split
  if (model.length) expect(sizes).to.not.include(0)
  for (let i = 0; i < model.length; i++) expect(m.get(i)).to.equal(model[i])
  // read backwards too: the lookup hint is for walks in order
  for (let i = model.length - 1; i >= 0; i -= 3) expect(m.get(i)).to.equal(model[i])
  expect(m.at(-1)).to.equal(undefined)
  expect(m.at(model.length)).to.equal(undefined)
  expect(m.last()).to.equal(model[model.length - 1])
  expect([...m]).to.deep.equal(model)
  expect(m.toArray()).to.deep.equal(model)
  if (model.length > 2) expect(m.slice(1, model.length - 1)).to.deep.equal(model.slice(1, -1))
  expect(m.slice(1, model.length + 5)).to.deep.equal(model.slice(1, model.length + 5))
  for (const i of [0, 1, model.length >> 1, model.length - 1, model.length]) expect([...m.from(i)]).to.deep.equal(model.slice(Math.max(0, i)))
}

describe('extent map in chunks', () => {
  it('agrees with an array through every splice and push, chunks of 1 to 8', () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      {weight: 8, arbitrary: fc.record({kind: fc.constant('splice' as const), at: fc.nat(), del: fc.integer({min: 0, max: 30}), ins: fc.integer({min: 0, max: 12})})},
      {weight: 1, arbitrary: fc.record({kind: fc.constant('push' as const)})},
    )
    fc.assert(fc.property(fc.integer({min: 1, max: 8}), fc.integer({min: 0, max: 60}), fc.array(op, {maxLength: 60}), (chunk, start, ops) => {
      let next = 0
      const model: Extent[] = []
      for (let i = 0; i < start; i++) model.push(ext(next++))
      const m = ExtentMap.of(model.slice(), chunk)
      same(m, model, chunk)
      for (const o of ops) {
        if (o.kind === 'push') {
          const e = ext(next++)
          model.push(e)
          m.push(e)
        } else {
          const at = o.at % (model.length + 1)
          const del = Math.min(o.del, model.length - at)
          const items = Array.from({length: o.ins}, () => ext(next++))
          model.splice(at, del, ...items)
          m.splice(at, del, items)
        }
        same(m, model, chunk)
      }
      const c = m.clone()
      expect(c.equals(m)).to.equal(true)
      if (model.length) {
        c.get(0).p++
        expect(c.equals(m)).to.equal(false)
        expect(m.get(0).p).to.equal(model[0].p) // the clone's extents are its own
      }
    }), {numRuns: 400})
  })

  it('finds the first extent ending after a block (firstEndingAfter) as a linear search does, in sorted maps with holes', () => {
    fc.assert(fc.property(fc.array(fc.record({gap: fc.nat(3), n: fc.integer({min: 1, max: 4})}), {maxLength: 80}), fc.integer({min: 1, max: 8}), (runs, chunk) => {
      const list: Extent[] = []
      let l = 0
      for (const r of runs) {
        l += r.gap
        list.push({l, n: r.n, p: 5000 + l})
        l += r.n
      }
      const m = ExtentMap.of(list.slice(), chunk)
      for (let b = 0; b <= l + 2; b++) {
        const want = list.findIndex((e) => e.l + e.n > b)
        expect(m.firstEndingAfter(b), `block ${b}`).to.equal(want < 0 ? list.length : want)
      }
    }), {numRuns: 200})
  })

  it('refuses a splice or a read outside the map', () => {
    const m = ExtentMap.of([ext(0), ext(1)])
    expect(() => m.splice(3, 0, [])).to.throw(RangeError)
    expect(() => m.splice(1, 2, [])).to.throw(RangeError)
    expect(() => m.get(2)).to.throw(RangeError)
    expect(() => new ExtentMap().get(0)).to.throw(RangeError)
  })

  it('maps 200,000 blocks written in random order as 200,000 extents, each insert touching one chunk', () => {
    // One block every other logical block, in a shuffled order: no two ever merge, so every
    // mapRange inserts an extent somewhere in the middle. In a flat array this moved half
    // the map each time (40 s at 400,000); in chunks it is linear in the count.
    const n = 200_000
    const order = Array.from({length: n}, (_, i) => i)
    let seed = 9
    for (let i = n - 1; i > 0; i--) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      const j = seed % (i + 1);
      [order[i], order[j]] = [order[j], order[i]]
    }
    const m = new ExtentMap()
    // (a splice shifts the extents of the chunk it lands in: the largest chunk bounds it)
    let largest = 0
    order.forEach((k, i) => {
      mapRange(m, 2 * k, 1, 10_000_000 + 2 * k)
      if (i % 1000 === 0) largest = Math.max(largest, ...m.chunkSizes())
    })
    expect(m.length).to.equal(n)
    let i = 0
    for (const e of m) {
      expect(e.l).to.equal(2 * i)
      expect(e.p).to.equal(10_000_000 + 2 * i)
      i++
    }
    for (const k of order.slice(0, 1000)) expect(unmapRange(m, 2 * k, 1)).to.deep.equal([{l: 2 * k, n: 1, p: 10_000_000 + 2 * k}])
    expect(m.length).to.equal(n - 1000)
    expect(largest).to.be.at.most(1024)
    const sizes = m.chunkSizes()
    expect(Math.max(...sizes)).to.be.at.most(1024)
    expect(sizes.length).to.be.at.most(Math.ceil(m.length / 128)) // no run of tiny chunks either
  })
})
