// Array helpers for arrays of any length. A spread into a call (`a.push(...b)`,
// `Math.min(...b)`) passes each element as an argument on the stack, and past about 120,000
// elements that is "Maximum call stack size exceeded": a directory of 150,000 subdirectories,
// a pax header of 200,000 records or a signature database of 150,000 lines did that.

/** Appends every element of `from` to `to` (as `to.push(...from)`, for any length); returns `to`. */
export function pushAll<T>(to: T[], from: Iterable<T>): T[] {
  for (const x of from) to.push(x)
  return to
}

/** The least of `init` and every element of `of` (as `Math.min(init, ...of)`, for any length). */
export function minOf(init: number, of: Iterable<number>): number {
  let m = init
  for (const x of of) if (x < m) m = x
  return m
}
