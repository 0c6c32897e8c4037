// Checksums used by every on-disk structure: CRC-32 (IEEE 802.3, as zlib and gzip),
// computed by Node's native zlib.crc32. Pure: no I/O.
import zlib from 'node:zlib'

type Crc32 = (data: Uint8Array, value?: number) => number
const maybe = (zlib as unknown as {crc32?: Crc32}).crc32
if (!maybe) throw new Error('Prism needs Node.js >= 20.15 (zlib.crc32)')
const native: Crc32 = maybe

export function crc32(data: Uint8Array, start = 0, end = data.length, seed = 0): number {
  return native(data.subarray(start, end), seed) >>> 0
}

/** CRC of buf[start, crcOff) stored little-endian at crcOff. */
export function sealCrc(buf: Buffer, start: number, crcOff: number): void {
  buf.writeUInt32LE(crc32(buf, start, crcOff), crcOff)
}

export function checkCrc(buf: Buffer, start: number, crcOff: number): boolean {
  return buf.readUInt32LE(crcOff) === crc32(buf, start, crcOff)
}

/** murmur3 (x86, 32-bit) of bytes: the directory name hash. */
export function nameHash(name: Uint8Array, seed: number): number {
  return nameHashAt(name, 0, name.length, seed)
}

/** nameHash of name[off, off+n), without making a view. */
export function nameHashAt(name: Uint8Array, off: number, n: number, seed: number): number {
  let h = seed >>> 0
  const c1 = 0xcc9e2d51
  const c2 = 0x1b873593
  let i = off
  const end = off + n
  for (; i + 4 <= end; i += 4) {
    let k = name[i] | (name[i + 1] << 8) | (name[i + 2] << 16) | (name[i + 3] << 24)
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  const rest = n & 3
  if (rest > 0) {
    let k = 0
    if (rest === 3) k ^= name[i + 2] << 16
    if (rest >= 2) k ^= name[i + 1] << 8
    k ^= name[i]
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
  }
  h ^= n
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
