// Compression of tar archives: gzip (node:zlib), xz (lzma-native, liblzma) and zstd
// (zstd-napi, libzstd). An import finds the compression by its magic number; an export
// chooses it from --compress or the file name's extension. Each is a stream transform, so a
// multi-GiB archive is never held in memory. The bindings are loaded on first use.
// Never touches the image.
import {createRequire} from 'node:module'
import {Readable, type Transform} from 'node:stream'
import zlib from 'node:zlib'
import {fail, PrismError} from '../errors.js'

export type Compression = 'gzip' | 'xz' | 'zstd' | 'none'

const require = createRequire(import.meta.url)

/** The compression of an archive, from its first bytes (at least 6); 'none' for a plain tar. */
export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip'
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz'
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd'
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') fail('EINVAL', 'bzip2-compressed archives are not supported (gzip, xz and zstd are): decompress it first (bunzip2 -c ARCHIVE | prism import ... -)')
  return 'none'
}

/** The compression an archive's file name asks for (.tar.gz/.tgz, .tar.xz/.txz, .tar.zst/.tzst). */
/**
 * The compression a file name asks for that prism cannot write (bzip2, lzip, lzma, lzop,
 * compress, lz4), or null: an export by that name would be an uncompressed tar under a name
 * that says otherwise.
 */
export function unwritableCompressionOfName(name: string): string | null {
  const n = name.toLowerCase()
  const m = /\.(bz2|tbz2?|tb2|lz|tlz|lzma|lzo|tzo|z|taz|lz4)$/.exec(n)
  if (!m) return null
  const kind: Record<string, string> = {bz2: 'bzip2', tbz: 'bzip2', tbz2: 'bzip2', tb2: 'bzip2', lz: 'lzip', tlz: 'lzip', lzma: 'lzma', lzo: 'lzop', tzo: 'lzop', z: 'compress', taz: 'compress', lz4: 'lz4'}
  return kind[m[1]]
}

export function compressionOfName(name: string): Compression {
  const n = name.toLowerCase()
  if (/\.(tar\.gz|tgz|gz)$/.test(n)) return 'gzip'
  if (/\.(tar\.xz|txz|xz)$/.test(n)) return 'xz'
  if (/\.(tar\.zst|tzst|zst|tar\.zstd)$/.test(n)) return 'zstd'
  return 'none'
}

/** A transform that decompresses `kind` (null for 'none'). */
export function decompressor(kind: Compression): Transform | null {
  switch (kind) {
    case 'gzip': return zlib.createGunzip({chunkSize: 1024 * 1024})
    case 'xz': return (require('lzma-native') as {createDecompressor: () => Transform}).createDecompressor()
    case 'zstd': {
      const {DecompressStream} = require('zstd-napi') as {DecompressStream: new () => Transform}
      return new DecompressStream()
    }
    default: return null
  }
}

/**
 * A transform that compresses as `kind` (null for 'none'). Output depends only on the input
 * (no file name or time in the gzip header), so two exports of one tree are byte-identical.
 */
export function compressor(kind: Compression): Transform | null {
  switch (kind) {
    case 'gzip': return zlib.createGzip({level: 6, chunkSize: 1024 * 1024})
    case 'xz': return (require('lzma-native') as {createCompressor: (o: object) => Transform}).createCompressor({preset: 6, check: 'crc64'})
    case 'zstd': {
      const {CompressStream} = require('zstd-napi') as {CompressStream: new (o: object) => Transform}
      return new CompressStream({compressionLevel: 3, checksumFlag: true})
    }
    default: return null
  }
}

/**
 * The bytes of an archive, decompressed as its first bytes say (a plain tar as it comes).
 * `raw` is read as the result is: a stream of any length, held a chunk at a time.
 */
export async function* decompressed(raw: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const it = raw[Symbol.asyncIterator]()
  // The first 6 bytes name the compression (they may come in more than one chunk).
  const head: Buffer[] = []
  let headLen = 0
  let ended = false
  while (headLen < 6) {
    const r = await it.next()
    if (r.done) {
      ended = true
      break
    }
    head.push(r.value)
    headLen += r.value.length
  }
  const kind = detectCompression(Buffer.concat(head))
  async function* all(): AsyncGenerator<Buffer> {
    try {
      yield* head
      if (ended) return
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value
    } finally {
      await it.return?.()
    }
  }
  const dec = decompressor(kind)
  if (!dec) {
    yield* all()
    return
  }
  const src = Readable.from(all(), {objectMode: false})
  src.on('error', (e) => dec.destroy(e))
  src.pipe(dec)
  try {
    for await (const chunk of dec) yield chunk as Buffer
  } catch (e) {
    if (e instanceof PrismError) throw e
    throw new PrismError('EINVAL', `malformed archive: the ${kind} data is damaged or truncated (${(e as Error).message}); nothing was imported`)
  } finally {
    src.destroy()
    dec.destroy()
  }
}
