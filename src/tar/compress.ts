// Compression of tar archives: gzip (node:zlib), xz (lzma-native, liblzma) and zstd
// (zstd-napi, libzstd), both ways; bzip2 (unbzip2-stream, JavaScript) read only. An import
// finds the compression by its magic number; an export chooses it from --compress or the file
// name's extension. Each is a stream transform, so a multi-GiB archive is never held in
// memory. The bindings are loaded on first use. Never touches the image.
import {createRequire} from 'node:module'
import {Readable, Transform} from 'node:stream'
import zlib from 'node:zlib'
import {fail, PrismError} from '../errors.js'
import {TAR_BLOCK, decodeHeader} from './codec.js'

/** What an export writes. */
export type Compression = 'gzip' | 'xz' | 'zstd' | 'none'
/** What an import reads. */
export type ArchiveCompression = Compression | 'bzip2'

const require = createRequire(import.meta.url)

/** The compression of an archive, from its first bytes (at least 6); 'none' for a plain tar. */
export function detectCompression(head: Buffer): ArchiveCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip'
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz'
  // A zstd frame, or a skippable frame (magic 0x184D2A5?) before one: pzstd starts so.
  if (head.length >= 4 && (head.readUInt32LE(0) === 0xfd2fb528 || (head.readUInt32LE(0) & 0xfffffff0) >>> 0 === 0x184d2a50)) return 'zstd'
  // "BZh" and the block size, '1'..'9' (a plain tar never starts so: its first name would be
  // "BZh1"..."BZh9", which the check of the header would refuse anyway)
  if (head.length >= 4 && head.toString('latin1', 0, 3) === 'BZh' && head[3] >= 0x31 && head[3] <= 0x39) return 'bzip2'
  // Compressions no import reads: said as such, rather than as a tar header that is not one.
  const unread = head.length >= 4 && head.toString('latin1', 0, 4) === 'LZIP' ? ['lzip', 'lzip -dc']
    : head.length >= 4 && head.readUInt32LE(0) === 0x184d2204 ? ['lz4', 'lz4 -dc']
      : head.length >= 2 && head[0] === 0x1f && head[1] === 0x9d ? ['compress (.Z)', 'uncompress -c'] : null
  if (unread) fail('EINVAL', `${unread[0]}-compressed archives are not supported (gzip, xz, zstd and bzip2 are): decompress it first (${unread[1]} ARCHIVE | prism import ... -)`)
  // Other archive formats: a tar is what import reads.
  const other = head.length >= 4 && head.readUInt32BE(0) === 0x504b0304 ? 'a zip archive'
    : head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])) ? 'a 7z archive'
      : head.length >= 6 && head.toString('latin1', 0, 6) === 'Rar!\x1a\x07' ? 'a rar archive'
        : head.length >= 8 && head.toString('latin1', 0, 8) === '!<arch>\n' ? 'an ar archive (a .deb?)'
          : head.length >= 6 && ['070707', '070701', '070702'].includes(head.toString('latin1', 0, 6)) ? 'a cpio archive'
            : binaryCpio(head) ? 'a cpio archive (old binary format)' : null
  if (other) fail('EINVAL', `this is ${other}, not a tar: import reads tar archives (plain, gzip, xz, zstd or bzip2); convert it first (bsdtar -cf - @ARCHIVE | prism import ... -)`)
  return 'none'
}

/**
 * The old binary cpio (`cpio -H bin`): the short 070707 in either byte order, and not a tar
 * header (a member name may begin with those two bytes; its header's checksum then holds).
 */
function binaryCpio(head: Buffer): boolean {
  if (head.length < 26 || !((head[0] === 0xc7 && head[1] === 0x71) || (head[0] === 0x71 && head[1] === 0xc7))) return false
  if (head.length < TAR_BLOCK) return true
  try {
    decodeHeader(head, 0)
    return false
  } catch {
    return true
  }
}

/** A stream of the classic kind (`through`: write, end, 'data', 'end', 'error'). */
interface ClassicStream {
  write(chunk: Buffer): unknown
  end(): unknown
  on(event: 'data', fn: (chunk: Buffer) => void): unknown
  on(event: 'end', fn: () => void): unknown
  on(event: 'error', fn: (e: Error) => void): unknown
}

/**
 * unbzip2-stream's decoder as a Transform: it decodes (and emits) as it is written, so what
 * it emits is pushed within the write, and the Transform's own back-pressure holds. Its
 * failures (a damaged block, a CRC mismatch, a stream cut short: emitted, the decoder then
 * broken and silent) end the Transform with that error. Concatenated streams (pbzip2's, or
 * `cat a.bz2 b.bz2`) are read one after another, as bunzip2 reads them.
 */
function bunzip2(): Transform {
  const dec = (require('unbzip2-stream') as () => ClassicStream)()
  let failed: Error | null = null
  let ended: (() => void) | null = null
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        dec.write(chunk)
      } catch (e) {
        failed ??= e as Error
      }
      cb(failed)
    },
    flush(cb) {
      let called = false
      const finish = () => {
        if (called) return
        called = true
        cb(failed)
      }
      ended = finish
      try {
        dec.end()
      } catch (e) {
        failed ??= e as Error
      }
      if (failed) finish() // (a decoder that failed never ends)
    },
  })
  dec.on('data', (d) => { if (!failed) out.push(d) })
  // (a read past the input, which ends inside a block, fails inside the decoder as a TypeError)
  dec.on('error', (e) => { failed ??= e instanceof TypeError ? new Error('the stream ends inside a block') : e })
  dec.on('end', () => ended?.())
  return out
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
export function decompressor(kind: ArchiveCompression): Transform | null {
  switch (kind) {
    case 'gzip': return zlib.createGunzip({chunkSize: 1024 * 1024})
    case 'bzip2': return bunzip2()
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
