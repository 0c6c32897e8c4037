// In-memory block devices for tests, in the spirit of littlefs's emubd: a device that can
// stop ("lose power") at its Nth write, and that then keeps only what had been synced plus
// a random choice of later writes, each kept whole, dropped, or torn at 512-byte sectors.
// It can also fail the Nth read, write or sync with an I/O error, and simulate a write-behind
// thread (behindLag): writes handed over land later, in order, as the real one's do.
import {BLOCK_SIZE} from '../format/constants.js'
import {PrismError} from '../errors.js'
import type {BlockDevice} from './device.js'

export class SimulatedCrash extends Error {
  constructor() {
    super('simulated power loss')
    this.name = 'SimulatedCrash'
  }
}

export type FaultOp = 'read' | 'write' | 'sync'

export interface Fault {
  op: FaultOp
  /** fail the nth operation of that kind (1-based) */
  at: number
  /** keep failing every later operation of that kind */
  persistent?: boolean
  errno?: 'EIO' | 'ENOSPC'
}

interface Pending {
  pos: number
  data: Buffer
}

/** Small deterministic PRNG so that a failing crash point can be replayed from its seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export class MemDevice implements BlockDevice {
  readonly blocks: number
  readOnly = false
  /** What reads see. */
  volatile: Buffer
  /** What survives a power loss. */
  durable: Buffer
  private pending: Pending[] = []
  counts = {read: 0, write: 0, sync: 0}
  /** Stop at this write (1-based): it and every later write throw SimulatedCrash. */
  crashAtWrite: number | null = null
  crashed = false
  faults: Fault[] = []
  /**
   * 0: no write-behind (writeBehind() takes nothing). n > 0: writeBehind() takes every write
   * and finishes it only once n more have been handed over, or when waited for, settled or
   * synced. It keeps the caller's buffers, not copies: a caller that reuses memory before its
   * write is finished sends the wrong bytes, as it would to the real device.
   */
  behindLag = 0
  private behind: Array<{ticket: number, block: number, bufs: Buffer[]}> = []
  private tickets = 0
  private done = 0
  private behindError: PrismError | null = null
  beforeWrite: ((block: number, count: number) => void) | null = null

  constructor(image: Buffer) {
    this.volatile = Buffer.from(image)
    this.durable = Buffer.from(image)
    this.blocks = Math.floor(image.length / BLOCK_SIZE)
  }

  private fault(op: FaultOp): void {
    const n = this.counts[op]
    for (const f of this.faults) {
      if (f.op === op && (n === f.at || (f.persistent && n > f.at))) {
        throw new PrismError(f.errno === 'ENOSPC' ? 'ENOSPC' : 'EIO', `simulated ${f.errno ?? 'EIO'} on ${op} #${n}`)
      }
    }
  }

  read(block: number, buf: Buffer): void {
    if (this.crashed) throw new SimulatedCrash()
    this.counts.read++
    this.fault('read')
    const pos = block * BLOCK_SIZE
    if (pos + buf.length > this.volatile.length) throw new PrismError('EIO', 'read past end of device')
    this.volatile.copy(buf, 0, pos, pos + buf.length)
  }

  write(block: number, buf: Buffer): void {
    if (this.crashed) throw new SimulatedCrash()
    this.beforeWrite?.(block, buf.length / BLOCK_SIZE)
    this.counts.write++
    const pos = block * BLOCK_SIZE
    if (pos + buf.length > this.volatile.length) throw new PrismError('EIO', 'write past end of device')
    if (this.crashAtWrite !== null && this.counts.write >= this.crashAtWrite) {
      // The interrupted write itself may land in part.
      this.pending.push({pos, data: Buffer.from(buf)})
      this.crashed = true
      throw new SimulatedCrash()
    }
    this.fault('write')
    buf.copy(this.volatile, pos)
    this.pending.push({pos, data: Buffer.from(buf)})
  }

  writev(block: number, bufs: Buffer[]): void {
    let b = block
    for (const buf of bufs) {
      this.write(b, buf)
      b += buf.length / BLOCK_SIZE
    }
  }

  /** Zeroes as a write of zeros (the crash tests' points count it as one), after the writes behind. */
  zero(block: number, count: number): boolean {
    if (this.crashed) throw new SimulatedCrash()
    this.finish(this.tickets)
    this.write(block, Buffer.alloc(count * BLOCK_SIZE))
    return true
  }

  writeBehind(block: number, bufs: Buffer[]): number {
    if (this.behindLag === 0) return 0
    if (this.crashed) throw new SimulatedCrash()
    this.beforeWrite?.(block, bufs.reduce((n, b) => n + b.length, 0) / BLOCK_SIZE)
    this.behind.push({ticket: ++this.tickets, block, bufs})
    this.finish(this.tickets - this.behindLag)
    return this.tickets
  }

  finished(): number {
    return this.done
  }

  waitFinished(ticket: number): void {
    this.finish(ticket)
  }

  settle(): void {
    this.finish(this.tickets)
    this.behindError = null
  }

  /** Writes what was handed over, up to `ticket`; an I/O error waits for sync(). */
  private finish(ticket: number): void {
    while (this.behind.length > 0 && this.behind[0].ticket <= ticket) {
      const w = this.behind.shift()!
      try {
        this.writev(w.block, w.bufs)
      } catch (e) {
        if (!(e instanceof PrismError)) throw e // a power loss
        this.behindError ??= e
      }
      this.done = w.ticket
    }
  }

  sync(): void {
    if (this.crashed) throw new SimulatedCrash()
    this.finish(this.tickets)
    if (this.behindError) {
      const e = this.behindError
      this.behindError = null
      throw e
    }
    this.counts.sync++
    this.fault('sync')
    for (const p of this.pending) p.data.copy(this.durable, p.pos)
    this.pending = []
  }

  close(): void {}

  /**
   * The image a power loss leaves: the synced state, plus each unsynced write kept,
   * dropped, or torn (a random subset of its 512-byte sectors), chosen by `seed`.
   */
  afterPowerLoss(seed: number): Buffer {
    const rnd = mulberry32(seed)
    const img = Buffer.from(this.durable)
    for (const p of this.pending) {
      const r = rnd()
      if (r < 0.4) continue // dropped
      if (r < 0.7) { p.data.copy(img, p.pos); continue } // kept
      for (let s = 0; s < p.data.length; s += 512) if (rnd() < 0.5) p.data.copy(img, p.pos + s, s, s + 512) // torn
    }
    return img
  }

  /** Number of writes not yet made durable. */
  get unsynced(): number {
    return this.pending.length
  }
}
