// Waiting, from a thread that must stay synchronous, for a worker thread to move a counter in
// shared memory (src/ops/hostwriter.ts, src/device/writebehind.ts).

/** how long a worker may leave its counter unchanged before it is taken for dead */
export const STALL_MS = 120_000

/**
 * Waits while `busy(state[index])` holds, in slices of a second (Atomics.wait). A value that
 * does not change for STALL_MS means the worker died (a bug, or out of memory): `stalled()`
 * is thrown, an I/O error rather than a hang.
 */
export function waitWhile(state: Int32Array, index: number, busy: (value: number) => boolean, stalled: () => Error): void {
  let seen = Atomics.load(state, index)
  let since = Date.now()
  for (let v = seen; busy(v); v = Atomics.load(state, index)) {
    if (v !== seen) {
      seen = v
      since = Date.now()
    } else if (Date.now() - since > STALL_MS) throw stalled()
    Atomics.wait(state, index, v, 1000)
  }
}
