// ClamAV database containers (.cvd, .cld, .cud), read as ClamAV reads them (libclamav/cvd.c):
// a 512-byte ASCII header `ClamAV-VDB:time:version:signatures:flevel:md5:dsig:builder[:stime]`
// padded with spaces, then a tar archive of plain files (gzip-compressed in a .cvd; a .cld is
// usually not). Only the unpacking and the checks that can be made offline are here: the
// header, the MD5 of everything after it (a .cvd's; ClamAV checks no MD5 of a .cld or .cud),
// the archive's form, and each file's size and SHA-256 against the container's .info file.
// The header's digital signature needs ClamAV's public key and is not checked. What the files
// mean is signatures.ts's business; nothing here knows signature formats.
import {createRequire} from 'node:module'
import {PrismError} from '../errors.js'
import {crypto} from '../lazy.js'

// The tar package is loaded on first use: most scans read no container.
const require = createRequire(import.meta.url)

export interface CvdHeader {
  /** build time as written, e.g. "16 Sep 2021 08-32 -0400" */
  time: string
  version: number
  /** the number of signatures the builder counted */
  signatures: number
  /** the functionality level ClamAV needs for it */
  flevel: number
  md5: string
  builder: string
}

export interface Container {
  header: CvdHeader
  /** the files in the archive, in order */
  files: Array<{name: string, data: Buffer}>
}

const HEADER = 512

function bad(file: string, why: string): never {
  throw new PrismError('EUSAGE', `${file}: not a ClamAV database container (${why})`)
}

/** Parses the 512-byte header (trailing spaces, newlines and NULs ignored). */
export function parseCvdHeader(file: string, head: Buffer): CvdHeader {
  if (head.length < HEADER) bad(file, `shorter than its ${HEADER}-byte header`)
  const text = head.subarray(0, HEADER).toString('latin1').replace(/[ \r\n\0]+$/, '')
  if (!text.startsWith('ClamAV-VDB:')) bad(file, "no 'ClamAV-VDB:' header")
  const f = text.split(':')
  if (f.length < 8) bad(file, `its header has ${f.length} fields, not 8 or 9`)
  const num = (i: number, what: string): number => {
    if (!/^\d+$/.test(f[i])) bad(file, `its header's ${what} '${f[i]}' is not a number`)
    return Number(f[i])
  }
  return {time: f[1], version: num(2, 'version'), signatures: num(3, 'signature count'), flevel: num(4, 'functionality level'), md5: f[5].toLowerCase(), builder: f[7]}
}

/**
 * Reads a container: checks its header (and, for a .cvd, the MD5 of the archive), unpacks the
 * archive in memory and checks each file against the .info file when there is one. Refuses
 * with one line (EUSAGE) anything that is not a sound container.
 */
export function readContainer(file: string, buf: Buffer, kind: '.cvd' | '.cld' | '.cud', isDatabase: (name: string) => boolean): Container {
  const header = parseCvdHeader(file, buf)
  const body = buf.subarray(HEADER)
  if (kind === '.cvd') {
    if (!/^[0-9a-f]{32}$/.test(header.md5)) bad(file, `its header's MD5 '${header.md5}' is not 32 hex digits`)
    const md5 = crypto().createHash('md5').update(body).digest('hex')
    if (md5 !== header.md5) throw new PrismError('EUSAGE', `${file}: damaged ClamAV database: the MD5 of its archive is ${md5}, its header says ${header.md5}`)
  }
  const files = untar(file, body)
  const info = files.find((f) => f.name.toLowerCase().endsWith('.info'))
  if (info) checkInfo(file, info.data, files.filter((f) => isDatabase(f.name)))
  return {header, files}
}

/** The most a container's archive may inflate to (ClamAV's main.cvd, the largest, to about 0.4 GB). */
export const INFLATED_MAX = 2 ** 31

/**
 * A gzip-compressed archive inflated in one call, to be handed to the tar parser whole. (node-tar's parser copies everything it holds after the archive's end each time
 * more comes, so fed piece by piece, by its own inflater, a container whose tar ends early costs
 * the square of its size: 100 MiB of zeros took 200 s.)
 */
function inflate(file: string, body: Buffer): Buffer {
  const zlib = require('node:zlib') as typeof import('node:zlib')
  try {
    return zlib.gunzipSync(body, {maxOutputLength: INFLATED_MAX})
  } catch (e) {
    const code = (e as {code?: string}).code
    if (code === 'ERR_BUFFER_TOO_LARGE') bad(file, `its archive inflates to more than ${INFLATED_MAX / 2 ** 30} GiB`)
    bad(file, `its archive is not a readable tar.gz (${(e as Error).message})`)
  }
}

/** The files of the tar archive (gzip-compressed or not); as ClamAV, only plain files without '/'. */
function untar(file: string, packed: Buffer): Array<{name: string, data: Buffer}> {
  const tar = require('tar') as typeof import('tar')
  const gz = packed[0] === 0x1f && packed[1] === 0x8b
  const body = gz ? inflate(file, packed) : packed
  const files: Array<{name: string, data: Buffer}> = []
  let error: string | null = null
  const parser = new tar.Parser({
    strict: true,
    onReadEntry: (e) => {
      if (e.type !== 'File' && e.type !== 'OldFile') {
        error ??= `its archive holds ${e.type === 'Directory' ? 'a directory' : `a ${e.type} entry`}, '${e.path}'`
        e.resume()
        return
      }
      if (e.path.includes('/')) error ??= `a name with '/' in its archive, '${e.path}'`
      const chunks: Buffer[] = []
      e.on('data', (c: Buffer) => chunks.push(c))
      e.on('end', () => files.push({name: e.path, data: Buffer.concat(chunks)}))
    },
  })
  parser.on('error', (e: Error & {code?: string}) => { error ??= `its archive is not a readable tar${gz ? '.gz' : ''} (${e.code ?? e.message})` })
  try {
    parser.end(body)
  } catch (e) {
    error ??= `its archive is not a readable tar (${(e as Error).message})`
  }
  if (error) bad(file, error)
  if (files.length === 0) bad(file, 'its archive is empty')
  return files
}

/**
 * The .info file: a `ClamAV-VDB:` line, then `name:size:sha256` per file, and a `DSIG:` line
 * (not checkable offline). As ClamAV, every file it loads must be listed with its size and
 * SHA-256 (other files, such as COPYING, are not looked at).
 */
function checkInfo(file: string, info: Buffer, files: Array<{name: string, data: Buffer}>): void {
  const listed = new Map<string, {size: number, sha256: string}>()
  for (const raw of info.toString('latin1').split('\n')) {
    const line = raw.replace(/\r$/, '')
    if (line === '' || line.startsWith('#') || line.startsWith('ClamAV-VDB:') || line.startsWith('DSIG:')) continue
    const f = line.split(':')
    if (f.length !== 3 || !/^\d+$/.test(f[1]) || !/^[0-9a-fA-F]{64}$/.test(f[2])) bad(file, `its .info file has a malformed line '${line.slice(0, 80)}'`)
    listed.set(f[0], {size: Number(f[1]), sha256: f[2].toLowerCase()})
  }
  for (const f of files) {
    const want = listed.get(f.name)
    if (!want) throw new PrismError('EUSAGE', `${file}: damaged ClamAV database: ${f.name} is not listed in its .info file`)
    const sha = crypto().createHash('sha256').update(f.data).digest('hex')
    if (want.size !== f.data.length || want.sha256 !== sha) {
      throw new PrismError('EUSAGE', `${file}: damaged ClamAV database: ${f.name} does not match its .info file (size or SHA-256)`)
    }
  }
}
