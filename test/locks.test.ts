// The image's lock table (src/server/locks.ts): POSIX byte ranges against a byte-by-byte model
// (fast-check), and the waits, cancels, deadlocks, releases, mounts going away and flock.
import {expect} from 'chai'
import fc from 'fast-check'
import {F_RDLCK, F_UNLCK, F_WRLCK, type LockKind, type LockRequest, LockTable} from '../src/server/locks.js'

// The model's bytes 0..N-1. A finite range ends by byte 27 (start <= 19, length <= 8), so bytes
// 28..N-1 stand for "to the end of any file": only such a range covers them. (With N = 24, a
// range ending past the model hid what an unlock left there: a random run found it.)
const N = 32
const req = (owner: string, type: number, start: number, end: number, extra: Partial<LockRequest> = {}): LockRequest =>
  ({file: 'f', kind: 'posix', owner, mount: 1, type, start, end, pid: 100, ...extra})

describe('LockTable: POSIX byte ranges against a model', () => {
  it('conflicts, splits and merges as a byte-by-byte model says', () => {
    const owners = ['a', 'b', 'c']
    const opArb = fc.record({
      owner: fc.constantFrom(...owners),
      type: fc.constantFrom(F_RDLCK, F_WRLCK, F_UNLCK),
      start: fc.nat(19),
      len: fc.oneof(fc.integer({min: 1, max: 8}), fc.constant(0)), // 0: to the end
    })
    fc.assert(fc.property(fc.array(opArb, {maxLength: 40}), (ops) => {
      const t = new LockTable()
      // owner -> byte -> type
      const model = new Map<string, Map<number, number>>(owners.map((o) => [o, new Map()]))
      for (const op of ops) {
        const end = op.len === 0 ? Infinity : op.start + op.len
        const bytes: number[] = []
        for (let i = op.start; i < Math.min(end, N); i++) bytes.push(i)
        const conflict = op.type !== F_UNLCK && owners.some((o) => o !== op.owner &&
          bytes.some((i) => model.get(o)!.has(i) && (model.get(o)!.get(i) === F_WRLCK || op.type === F_WRLCK)))
        const tested = t.test(req(op.owner, op.type, op.start, end))
        const res = t.set(req(op.owner, op.type, op.start, end))
        expect(res.ok).to.equal(!conflict)
        expect(tested !== null).to.equal(conflict)
        if (!res.ok) {
          expect(res.code).to.equal('EAGAIN')
          expect(res.blocker!.owner).to.not.equal(op.owner)
          continue
        }
        const mine = model.get(op.owner)!
        for (const i of bytes) {
          if (op.type === F_UNLCK) mine.delete(i)
          else mine.set(i, op.type)
        }
      }
      // the table, byte by byte, and its shape: each owner's locks disjoint, merged, in order
      const locks = t.locks('f', 'posix')
      for (const o of owners) {
        const got = new Map<number, number>()
        const own = locks.filter((l) => l.owner === o)
        for (let k = 0; k < own.length; k++) {
          const l = own[k]!
          expect(l.end).to.be.greaterThan(l.start)
          if (k > 0) {
            const p = own[k - 1]!
            expect(p.end).to.be.at.most(l.start) // disjoint, sorted
            if (p.end === l.start) expect(p.type).to.not.equal(l.type) // adjoining ones of a type merged
          }
          for (let i = l.start; i < Math.min(l.end, N); i++) got.set(i, l.type)
        }
        expect([...got].sort((x, y) => x[0] - y[0])).to.deep.equal([...model.get(o)!].sort((x, y) => x[0] - y[0]))
      }
    }), {numRuns: 500})
  })

  it('two owners: [0,10) and [10,20) do not conflict, overlapping ranges do; read locks share', () => {
    const t = new LockTable()
    expect(t.set(req('a', F_WRLCK, 0, 10)).ok).to.equal(true)
    expect(t.set(req('b', F_WRLCK, 10, 20)).ok).to.equal(true)
    const r = t.set(req('b', F_WRLCK, 9, 11))
    expect(r.ok).to.equal(false)
    expect(r.ok ? null : r.blocker).to.include({owner: 'a', start: 0, end: 10, pid: 100})
    expect(t.set(req('c', F_RDLCK, 30, Infinity)).ok).to.equal(true)
    expect(t.set(req('d', F_RDLCK, 40, 50)).ok).to.equal(true)
    expect(t.set(req('d', F_WRLCK, 40, 50)).ok).to.equal(false)
  })

  it('splits an owner\'s lock on a partial unlock and a change of type in the middle', () => {
    const t = new LockTable()
    t.set(req('a', F_WRLCK, 0, Infinity))
    t.set(req('a', F_UNLCK, 10, 20))
    t.set(req('a', F_RDLCK, 30, 40))
    expect(t.locks('f', 'posix').map((l) => [l.type, l.start, l.end])).to.deep.equal([
      [F_WRLCK, 0, 10], [F_WRLCK, 20, 30], [F_RDLCK, 30, 40], [F_WRLCK, 40, Infinity],
    ])
    t.set(req('a', F_WRLCK, 10, 20))
    t.set(req('a', F_WRLCK, 30, 40))
    expect(t.locks('f', 'posix').map((l) => [l.type, l.start, l.end])).to.deep.equal([[F_WRLCK, 0, Infinity]])
    t.set(req('a', F_UNLCK, 0, Infinity))
    expect(t.size).to.equal(0)
  })

  it('refuses bad ranges and types', () => {
    const t = new LockTable()
    expect(t.set(req('a', F_WRLCK, 5, 5))).to.deep.equal({ok: false, code: 'EINVAL'})
    expect(t.set(req('a', 7, 0, 5))).to.deep.equal({ok: false, code: 'EINVAL'})
    expect(t.set(req('a', F_WRLCK, -1, 5))).to.deep.equal({ok: false, code: 'EINVAL'})
  })
})

describe('LockTable: waits', () => {
  function waiter(t: LockTable, r: LockRequest) {
    const out = {granted: false, failed: '' as string}
    const res = t.wait(r, () => {
      out.granted = true
    }, (code) => {
      out.failed = code
    })
    return {...out, res, get state() {
      return out
    }}
  }

  it('grants at once when free, later when the holder unlocks, in order', () => {
    const t = new LockTable()
    const w0 = waiter(t, req('a', F_WRLCK, 0, 10))
    expect(w0.state.granted).to.equal(true)
    const w1 = waiter(t, req('b', F_WRLCK, 5, 6))
    const w2 = waiter(t, req('c', F_RDLCK, 0, 1))
    expect(w1.state.granted || w2.state.granted).to.equal(false)
    t.set(req('a', F_UNLCK, 0, 5)) // frees c's byte, not b's
    expect(w2.state.granted).to.equal(true)
    expect(w1.state.granted).to.equal(false)
    t.releasePosix('f', 'a') // a close
    expect(w1.state.granted).to.equal(true)
    expect(t.locks('f', 'posix').map((l) => l.owner)).to.deep.equal(['c', 'b'])
  })

  it('a cancelled wait (interrupt) is not granted; a later one is', () => {
    const t = new LockTable()
    t.set(req('a', F_WRLCK, 0, Infinity))
    const w1 = waiter(t, req('b', F_WRLCK, 0, 1))
    const w2 = waiter(t, req('c', F_RDLCK, 0, 1))
    expect(t.cancel(w1.res.waiter!)).to.equal(true)
    expect(t.cancel(w1.res.waiter!)).to.equal(false)
    t.releasePosix('f', 'a')
    expect(w1.state.granted).to.equal(false)
    expect(w2.state.granted).to.equal(true)
  })

  it('EDEADLK for a wait that closes a cycle, across files', () => {
    const t = new LockTable()
    t.set(req('a', F_WRLCK, 0, 1, {file: 'x'}))
    t.set(req('b', F_WRLCK, 0, 1, {file: 'y'}))
    const wa = waiter(t, req('a', F_WRLCK, 0, 1, {file: 'y'})) // a waits for b
    expect(wa.res.waiter).to.not.equal(undefined)
    const wb = waiter(t, req('b', F_WRLCK, 0, 1, {file: 'x'})) // b would wait for a
    expect(wb.res).to.deep.equal({ok: false, code: 'EDEADLK'})
    // three owners
    t.set(req('c', F_WRLCK, 0, 1, {file: 'z'}))
    const wb2 = waiter(t, req('b', F_WRLCK, 0, 1, {file: 'z'})) // b waits for c
    expect(wb2.res.waiter).to.not.equal(undefined)
    expect(waiter(t, req('c', F_RDLCK, 0, 1, {file: 'x'})).res).to.deep.equal({ok: false, code: 'EDEADLK'}) // c -> a -> b -> c
    // flock waits are never deadlocks (Linux does not look)
    t.set(req('p', F_WRLCK, 0, Infinity, {kind: 'flock'}))
    expect(waiter(t, req('q', F_WRLCK, 0, Infinity, {kind: 'flock'})).res.waiter).to.not.equal(undefined)
  })

  it('a mount going away drops its locks and fails its waits, granting the others', () => {
    const t = new LockTable()
    t.set(req('1/a', F_WRLCK, 0, Infinity, {mount: 1}))
    const w1 = waiter(t, req('1/b', F_WRLCK, 0, 1, {mount: 1}))
    const w2 = waiter(t, req('2/a', F_WRLCK, 0, 1, {mount: 2}))
    t.dropMount(1)
    expect(w1.state.failed).to.equal('EIO')
    expect(w2.state.granted).to.equal(true)
    expect(t.locks('f', 'posix').map((l) => l.owner)).to.deep.equal(['2/a'])
  })

  it('repoint moves locks and waits to the new name of the file', () => {
    const t = new LockTable()
    t.set(req('a', F_WRLCK, 0, 10, {file: '3:7'}))
    const w = waiter(t, req('b', F_WRLCK, 0, 1, {file: '3:7'}))
    t.repoint('3:7', '3:9')
    expect(t.test(req('c', F_RDLCK, 0, 1, {file: '3:9'}))?.owner).to.equal('a')
    expect(t.test(req('c', F_RDLCK, 0, 1, {file: '3:7'}))).to.equal(null)
    t.releasePosix('3:9', 'a')
    expect(w.state.granted).to.equal(true)
  })
})

describe('LockTable: flock', () => {
  const fl = (owner: string, type: number): LockRequest => req(owner, type, 0, Infinity, {kind: 'flock' as LockKind})

  it('shared locks share, an exclusive one excludes, POSIX locks are apart', () => {
    const t = new LockTable()
    expect(t.set(fl('a', F_RDLCK)).ok).to.equal(true)
    expect(t.set(fl('b', F_RDLCK)).ok).to.equal(true)
    expect(t.set(fl('c', F_WRLCK)).ok).to.equal(false)
    expect(t.set(req('c', F_WRLCK, 0, Infinity)).ok).to.equal(true) // POSIX: another kind
    t.releaseFlock('f', 'a')
    expect(t.set(fl('c', F_WRLCK)).ok).to.equal(false)
    t.releaseFlock('f', 'b')
    expect(t.set(fl('c', F_WRLCK)).ok).to.equal(true)
  })

  it('a conversion drops the old lock first (Linux): a refused upgrade leaves none', () => {
    const t = new LockTable()
    t.set(fl('a', F_RDLCK))
    t.set(fl('b', F_RDLCK))
    expect(t.set(fl('a', F_WRLCK)).ok).to.equal(false)
    expect(t.locks('f', 'flock').map((l) => l.owner)).to.deep.equal(['b'])
    expect(t.set(fl('b', F_WRLCK)).ok).to.equal(true) // an upgrade with nobody else
    expect(t.locks('f', 'flock').map((l) => [l.owner, l.type])).to.deep.equal([['b', F_WRLCK]])
  })

  it('a waiting upgrade is granted once the other sharer leaves', () => {
    const t = new LockTable()
    t.set(fl('a', F_RDLCK))
    t.set(fl('b', F_RDLCK))
    let granted = false
    const r = t.wait(fl('a', F_WRLCK), () => {
      granted = true
    }, () => {})
    expect(r.waiter).to.not.equal(undefined)
    t.releaseFlock('f', 'b')
    expect(granted).to.equal(true)
  })
})
