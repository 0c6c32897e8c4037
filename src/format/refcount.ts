// The block reference-count table (the Prism paper, §3.5): one u8 counter per data-area
// block, 0 = free, n = referenced by n inodes. REFCOUNTS_PER_BLOCK counters per table block,
// CRC-32 of them in the last 4 bytes. Pure helpers; docs/FORMAT.md §4.
import {checkCrc, sealCrc} from './checksum.js'
import {BLOCK_SIZE, REFCOUNTS_PER_BLOCK} from './constants.js'

/** Table block index and slot for a data block. */
export function refcountSlot(block: number, dataStart: number): {index: number, slot: number} {
  const i = block - dataStart
  return {index: Math.floor(i / REFCOUNTS_PER_BLOCK), slot: i % REFCOUNTS_PER_BLOCK}
}

export function sealRefcountBlock(buf: Buffer): void {
  sealCrc(buf, 0, BLOCK_SIZE - 4)
}

export function refcountBlockOk(buf: Buffer): boolean {
  return checkCrc(buf, 0, BLOCK_SIZE - 4)
}

const ZERO = Buffer.alloc(BLOCK_SIZE)

/** A block of all zeros: under INCOMPAT_SPARSE_REFCOUNT it reads as 4092 free counters (§4.1). */
export function refcountBlockZero(buf: Buffer): boolean {
  return buf.equals(ZERO)
}

/** A sound refcount block of an image with INCOMPAT_SPARSE_REFCOUNT: a valid CRC, or all zeros. */
export function refcountBlockOkSparse(buf: Buffer): boolean {
  return checkCrc(buf, 0, BLOCK_SIZE - 4) || refcountBlockZero(buf)
}
