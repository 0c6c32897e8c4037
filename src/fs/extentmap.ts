// A file's extent map in memory: its extents sorted by logical block, held in chunks so that
// a change in the middle costs the chunk it lands in, not the whole map. A flat array moved
// every extent after the change: random writes into a file of 400,000 extents spent 79 % of
// their time moving them (68 s for 400,000 writes), growing with the square of the map.
//
// The map is a sequence of Extent objects read by index (get), walked in order (for...of),
// and changed only by splice (extents.ts mapRange and unmapRange, extundo.ts). An extent
// returned by get is the map's own: mapRange grows it in place.
import type {Extent} from '../format/extent.js'

/** Extents a chunk holds after a split; one grows to twice this before it is split again. */
const CHUNK = 512

export class ExtentMap implements Iterable<Extent> {
  /** never empty: a map without extents holds one empty chunk */
  private chunks: Extent[][] = [[]]
  /** the index of each chunk's first extent */
  private starts: number[] = [0]
  private count = 0
  /** the chunk the last lookup found (walks in order find the next one there or just after) */
  private hint = 0

  /** `chunk`: extents per chunk (tests make it small, to split and join chunks often) */
  constructor(private readonly chunk = CHUNK) {}

  /** A map holding `list`'s extents (taken, not copied: sorted by logical block). */
  static of(list: Extent[], chunk = CHUNK): ExtentMap {
    const m = new ExtentMap(chunk)
    m.reset(list)
    return m
  }

  get length(): number { return this.count }

  /** The extent at index i (0 <= i < length). */
  get(i: number): Extent {
    const c = this.chunkOf(i)
    return this.chunks[c][i - this.starts[c]]
  }

  /** The extent at index i, or undefined past either end. */
  at(i: number): Extent | undefined {
    return i >= 0 && i < this.count ? this.get(i) : undefined
  }

  /** The index of the first extent that ends after logical block l (length when none does). */
  firstEndingAfter(l: number): number {
    let lo = 0
    let hi = this.count
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      const e = this.get(mid)
      if (e.l + e.n <= l) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** The extents from index i on, in order. */
  * from(i: number): Generator<Extent> {
    i = Math.max(0, i)
    if (i >= this.count) return
    let c = this.chunkOf(i)
    let k = i - this.starts[c]
    for (; c < this.chunks.length; c++, k = 0) {
      const ch = this.chunks[c]
      for (; k < ch.length; k++) yield ch[k]
    }
  }

  /** The last extent, or undefined for an empty map. */
  last(): Extent | undefined {
    const ch = this.chunks[this.chunks.length - 1]
    return ch[ch.length - 1]
  }

  push(e: Extent): void {
    this.chunks[this.chunks.length - 1].push(e)
    this.count++
    if (this.chunks[this.chunks.length - 1].length > 2 * this.chunk) this.rebalance(this.chunks.length - 1)
  }

  /** Replaces the `del` extents from index `at` with `items` (as Array.prototype.splice). */
  splice(at: number, del: number, items: readonly Extent[] = []): void {
    if (at < 0 || del < 0 || at + del > this.count) throw new RangeError(`extent map splice ${at}+${del} of ${this.count}`)
    if (del === 0 && items.length === 0) return
    if (items.length > this.chunk) {
      // (a large replacement: rebuilt whole, as cheap as the copy the items cost anyway)
      const all = this.toArray()
      const out = all.slice(0, at)
      for (const e of items) out.push(e)
      for (let i = at + del; i < all.length; i++) out.push(all[i])
      this.reset(out)
      return
    }
    const c = at === this.count ? this.chunks.length - 1 : this.chunkOf(at)
    const first = this.chunks[c]
    const off = at - this.starts[c]
    const here = Math.min(del, first.length - off)
    first.splice(off, here, ...items)
    let left = del - here
    // The rest of the deletion runs into the chunks after it.
    let k = c + 1
    while (left > 0) {
      const ch = this.chunks[k]
      const r = Math.min(left, ch.length)
      ch.splice(0, r)
      left -= r
      k++
    }
    this.count += items.length - del
    this.rebalance(c, k)
  }

  /** The extents from index a up to (not including) b, in a new array (as Array.prototype.slice, for 0 <= a: b past the end stops there). */
  slice(a: number, b: number): Extent[] {
    const out: Extent[] = []
    const end = Math.min(b, this.count)
    for (let i = a; i < end; i++) out.push(this.get(i))
    return out
  }

  /** Whether `o` maps the same blocks the same way, extent for extent. */
  equals(o: ExtentMap): boolean {
    if (o.count !== this.count) return false
    for (let i = 0; i < this.count; i++) {
      const a = this.get(i)
      const b = o.get(i)
      if (a.l !== b.l || a.n !== b.n || a.p !== b.p) return false
    }
    return true
  }

  /** Every extent, in order, in a new array. */
  toArray(): Extent[] {
    const out: Extent[] = new Array(this.count)
    let i = 0
    for (const ch of this.chunks) for (const e of ch) out[i++] = e
    return out
  }

  * [Symbol.iterator](): Iterator<Extent> {
    for (const ch of this.chunks) yield* ch
  }

  /** How many extents each chunk holds, in order (for tests: a chunk's size bounds a splice's cost). */
  chunkSizes(): number[] {
    return this.chunks.map((c) => c.length)
  }

  /** Copies of every extent, in a new map. */
  clone(): ExtentMap {
    return ExtentMap.of(this.toArray().map((e) => ({...e})), this.chunk)
  }

  private reset(list: Extent[]): void {
    this.chunks = []
    for (let i = 0; i < list.length; i += this.chunk) this.chunks.push(list.slice(i, i + this.chunk))
    if (this.chunks.length === 0) this.chunks.push([])
    this.count = list.length
    this.hint = 0
    this.restart(0)
  }

  /** The chunk holding index i. */
  private chunkOf(i: number): number {
    if (i < 0 || i >= this.count) throw new RangeError(`extent index ${i} of ${this.count}`)
    const s = this.starts
    let h = this.hint
    if (i >= s[h] && i < s[h] + this.chunks[h].length) return h
    h++
    if (h < s.length && i >= s[h] && i < s[h] + this.chunks[h].length) return (this.hint = h)
    let lo = 0
    let hi = s.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (s[mid] <= i) lo = mid
      else hi = mid - 1
    }
    // (an empty chunk starts where the next does: the search lands on the last of equals,
    // which holds i unless empty, and an empty chunk is only ever the map's single one)
    return (this.hint = lo)
  }

  /**
   * After chunks [from, to) changed: splits those grown past twice the chunk size, drops the
   * empty ones, joins a small one to its neighbour, and counts the starts again from `from`.
   */
  private rebalance(from: number, to = from + 1): void {
    const ch = this.chunks
    const fixed: Extent[][] = []
    for (let k = from; k < to && k < ch.length; k++) {
      const x = ch[k]
      if (x.length === 0) continue
      if (x.length > 2 * this.chunk) {
        for (let i = 0; i < x.length; i += this.chunk) fixed.push(x.slice(i, i + this.chunk))
        continue
      }
      const prev = fixed.length ? fixed[fixed.length - 1] : (from > 0 ? ch[from - 1] : undefined)
      if (prev && x.length < this.chunk / 4 && prev.length + x.length <= this.chunk) {
        for (const e of x) prev.push(e)
        continue
      }
      fixed.push(x)
    }
    // a small last piece joins the chunk after it when both fit in one
    const next = ch[to]
    const tail = fixed.length ? fixed[fixed.length - 1] : undefined
    if (tail && next && tail.length + next.length <= this.chunk && tail.length < this.chunk / 4) {
      for (const e of next) tail.push(e)
      to++
    }
    ch.splice(from, Math.min(to, ch.length) - from, ...fixed)
    if (ch.length === 0) ch.push([])
    this.restart(Math.max(0, from - 1))
    if (this.hint >= ch.length) this.hint = ch.length - 1
  }

  /** Counts the chunks' first indexes again from chunk `from`. */
  private restart(from: number): void {
    const ch = this.chunks
    const s = this.starts
    s.length = ch.length
    let at = from === 0 ? 0 : s[from - 1] + ch[from - 1].length
    for (let k = from; k < ch.length; k++) {
      s[k] = at
      at += ch[k].length
    }
  }
}
