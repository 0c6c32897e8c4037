// src/frames.ts: walks nested as frames run as yield* would run them (values, exceptions,
// steps, throw() and return() from the consumer, finally blocks), at any depth.
import {expect} from 'chai'
import {call, run, runNow, type Frame} from '../src/frames.js'

describe('frames: a recursive walk off the JavaScript stack', () => {
  it('runs 1,000,000 levels deep, returning each level\'s value to its caller', () => {
    function* depth(n: number): Frame<number> {
      return n === 0 ? 0 : 1 + (yield* call(depth(n - 1)))
    }
    expect(runNow(depth(1_000_000))).to.equal(1_000_000)
  })

  it('hands steps (values) to the consumer in order, and what it sends back to the frame that yielded', () => {
    const got: unknown[] = []
    function* tree(n: number): Frame<void, string> {
      const back = yield `pre ${n}`
      got.push(back)
      if (n > 0) yield* call(tree(n - 1))
      yield `post ${n}`
    }
    const steps = run(tree(2))
    const seen: string[] = []
    let i = 0
    for (let r = steps.next(); !r.done; r = steps.next(i++)) seen.push(r.value)
    expect(seen).to.deep.equal(['pre 2', 'pre 1', 'pre 0', 'post 0', 'post 1', 'post 2'])
    expect(got).to.deep.equal([0, 1, 2])
  })

  it('an exception goes to the caller\'s catch, through finally blocks, as with yield*', () => {
    const log: string[] = []
    function* inner(): Frame {
      try {
        yield
        throw new Error('boom')
      } finally {
        log.push('inner finally')
      }
    }
    function* outer(): Frame<string> {
      try {
        yield* call(inner())
        return 'no'
      } catch (e) {
        log.push(`caught ${(e as Error).message}`)
        return 'yes'
      }
    }
    expect(runNow(outer())).to.equal('yes')
    expect(log).to.deep.equal(['inner finally', 'caught boom'])
  })

  it('throw() from the consumer reaches the innermost frame; return() closes every frame, innermost first', () => {
    const log: string[] = []
    function* leaf(): Frame {
      try {
        yield
        yield
      } catch (e) {
        log.push(`leaf caught ${(e as Error).message}`)
        yield
      } finally {
        log.push('leaf finally')
      }
    }
    function* top(): Frame {
      try {
        yield* call(leaf())
      } finally {
        log.push('top finally')
      }
    }
    const steps = run(top())
    steps.next()
    steps.throw(new Error('stop'))
    expect(log).to.deep.equal(['leaf caught stop'])
    expect(steps.return(undefined).done).to.equal(true)
    expect(log).to.deep.equal(['leaf caught stop', 'leaf finally', 'top finally'])
  })
})
