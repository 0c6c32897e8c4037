// 64-bit little-endian fields as JavaScript numbers, without BigInt (FORMAT.md §1.1: sizes,
// counts and block numbers are kept in numbers, which are exact below 2^53). Reading through
// BigInt costs several times more, and inodes and extents are decoded by the hundred thousand.
const TWO32 = 0x1_0000_0000

/** An unsigned 64-bit field; exact below 2^53 (check with u64Safe where that matters). */
export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off + 4) * TWO32 + buf.readUInt32LE(off)
}

/** A signed 64-bit field; exact while its magnitude is below 2^53. */
export function readI64(buf: Buffer, off: number): number {
  return buf.readInt32LE(off + 4) * TWO32 + buf.readUInt32LE(off)
}

/** Is the unsigned 64-bit field at most Number.MAX_SAFE_INTEGER (2^53 - 1)? */
export function u64Safe(buf: Buffer, off: number): boolean {
  return buf.readUInt32LE(off + 4) <= 0x1f_ffff
}

/** Writes a non-negative integer as an unsigned 64-bit field (exactly, below 2^53). */
export function writeU64(buf: Buffer, v: number, off: number): void {
  if (Number.isSafeInteger(v) && v >= 0) {
    buf.writeUInt32LE(v % TWO32, off)
    buf.writeUInt32LE(Math.floor(v / TWO32), off + 4)
  } else {
    // Beyond 2^53 a number is still an integer (if imprecise): as BigInt did, write it.
    if (!(v >= 0 && Number.isInteger(v))) throw new RangeError(`u64 field: ${v} is not a non-negative integer`)
    // 2^64 - 1 reads back as 2^64 (the nearest number): write the largest field instead.
    buf.writeBigUInt64LE(v >= 2 ** 64 ? (1n << 64n) - 1n : BigInt(v), off)
  }
}

/**
 * Writes an integer as a signed 64-bit field (two's complement). A value read from a damaged
 * field may be far beyond 2^53: it is written back as it reads (readI64), not refused.
 */
export function writeI64(buf: Buffer, v: number, off: number): void {
  if (Number.isSafeInteger(v)) {
    const hi = Math.floor(v / TWO32)
    buf.writeUInt32LE(v - hi * TWO32, off)
    buf.writeInt32LE(hi, off + 4)
  } else {
    if (!Number.isInteger(v)) throw new RangeError(`i64 field: ${v} is not an integer`)
    // 2^63 - 1 reads back as 2^63 (the nearest number): write the largest field instead.
    buf.writeBigInt64LE(v >= 2 ** 63 ? (1n << 63n) - 1n : v < -(2 ** 63) ? -(1n << 63n) : BigInt(v), off)
  }
}
