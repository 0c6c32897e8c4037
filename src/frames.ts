// Walks of a tree written as recursive generators, run without the JavaScript stack: a walk
// that met a directory per level with `yield* walk(child)` (or a plain recursive call) nested
// one native frame per level, and a tree a few thousand levels deep (which an image holds as
// easily as any other) ended in "Maximum call stack size exceeded". Here a frame hands its
// callee to run() with `yield* call(walk(child))` instead: run() keeps the generators on a
// stack of its own (an array), resumes the innermost, and hands a callee's return value, or
// its exception, back to its caller, exactly as yield* would. So a walk keeps its order,
// its try/catch/finally blocks and what it returns, at any depth.

const CALL = Symbol('call')

/** A request from a frame to run() that `frame` be run to its end, as yield* would. */
export interface Call {
  readonly [CALL]: Frame<unknown, unknown>
}

/**
 * A generator run by run(): it yields a step (a T: undefined for a walk whose plain `yield`
 * handed the consumer a step, a value for one that yields values) that run() hands on to the
 * consumer, or a Call for a nested frame.
 */
export type Frame<R = void, T = void> = Generator<Call | T, R, unknown>

/** `const r = yield* call(walk(child))`: the nested walk, run on run()'s stack; its value, or its exception. */
export function* call<R, T = void>(frame: Frame<R, T>): Generator<Call, R, unknown> {
  return (yield {[CALL]: frame as Frame<unknown, unknown>}) as R
}

function isCall(v: unknown): v is Call {
  return typeof v === 'object' && v !== null && CALL in v
}

type Input = {ok: true, value: unknown} | {ok: false, error: unknown}

/**
 * Runs `top` and every frame it calls, innermost first, yielding to the consumer where a frame
 * yields a step. What the consumer throws in (throw()) goes into the innermost frame, and a
 * return() closes every frame from the innermost out (their finally blocks run), as with yield*.
 */
export function* run<R, T = void>(top: Frame<R, T>): Generator<T, R, unknown> {
  const stack: Frame<unknown, unknown>[] = [top]
  let input: Input = {ok: true, value: undefined}
  let done = false
  try {
    for (;;) {
      const g = stack[stack.length - 1]
      let r: IteratorResult<unknown, unknown>
      try {
        r = input.ok ? g.next(input.value) : g.throw(input.error)
      } catch (e) {
        stack.pop()
        if (stack.length === 0) {
          done = true
          throw e
        }
        input = {ok: false, error: e}
        continue
      }
      if (r.done) {
        stack.pop()
        if (stack.length === 0) {
          done = true
          return r.value as R
        }
        input = {ok: true, value: r.value}
        continue
      }
      if (isCall(r.value)) {
        stack.push(r.value[CALL])
        input = {ok: true, value: undefined}
        continue
      }
      try {
        input = {ok: true, value: yield r.value as T}
      } catch (e) {
        input = {ok: false, error: e}
      }
    }
  } finally {
    // Left early (return() by the consumer): each frame still open is closed, innermost first.
    if (!done) closeAll(stack)
  }
}

function closeAll(stack: Frame<unknown, unknown>[]): void {
  let failure: {error: unknown} | null = null
  while (stack.length) {
    const g = stack.pop()!
    try {
      if (failure) {
        // (as yield* does: a finally block's exception goes on into the frame around it)
        const e = failure.error
        failure = null
        if (!g.throw(e).done) g.return(undefined)
      } else {
        g.return(undefined)
      }
    } catch (e) {
      failure = {error: e}
    }
  }
  if (failure) throw failure.error
}

/** run() of a walk that never yields a step: to its end, now. */
export function runNow<R>(top: Frame<R>): R {
  const steps = run(top)
  for (;;) {
    const r = steps.next()
    if (r.done) return r.value
  }
}
