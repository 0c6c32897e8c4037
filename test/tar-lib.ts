// Helpers of the tar tests: archives built entry by entry (with Prism's own codec, so that a
// test can write what no tar program would: '..', absolute names, links out of the archive,
// damaged headers), imports through the library, and descriptions of host trees (stat,
// getfattr, getfacl) for comparing round trips.
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {TAR_BLOCK, encodeHeader, paxRecord} from '../src/tar/codec.js'
import {TarImport, type ImportOptions, type ImportStats, type ImportTarget} from '../src/tar/import.js'
import type {Volume} from '../src/fs/volume.js'

export interface MkEntry {
  name: string | Buffer
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'chardev' | 'blockdev' | 'fifo'
  data?: Buffer | string
  link?: string | Buffer
  mode?: number
  uid?: number
  gid?: number
  mtime?: number
  pax?: Array<[string, Buffer | string]>
  major?: number
  minor?: number
}

const FLAG = {file: 0x30, hardlink: 0x31, symlink: 0x32, chardev: 0x33, blockdev: 0x34, dir: 0x35, fifo: 0x36}

function pad(n: number): Buffer {
  return Buffer.alloc((TAR_BLOCK - (n % TAR_BLOCK)) % TAR_BLOCK)
}

/** A pax archive of these entries (names longer than 100 bytes go in a path record). */
export function mkTar(entries: MkEntry[], opts: {end?: boolean} = {}): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    const name = Buffer.isBuffer(e.name) ? e.name : Buffer.from(e.name)
    const link = e.link === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.link) ? e.link : Buffer.from(e.link)
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data)
    const recs = (e.pax ?? []).map(([k, v]) => paxRecord(k, v))
    if (name.length > 100) recs.push(paxRecord('path', name))
    if (link.length > 100) recs.push(paxRecord('linkpath', link))
    if (recs.length) {
      const body = Buffer.concat(recs)
      parts.push(encodeHeader({name: Buffer.from('PaxHeaders/x'), mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0, typeflag: 0x78}, 'ustar'), body, pad(body.length))
    }
    const type = e.type ?? 'file'
    parts.push(encodeHeader({
      name: name.subarray(0, 100), mode: e.mode ?? (type === 'dir' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0,
      size: type === 'file' ? data.length : 0, mtime: e.mtime ?? 1_600_000_000, typeflag: FLAG[type], linkname: link.subarray(0, 100),
      devmajor: e.major ?? 0, devminor: e.minor ?? 0,
    }, 'ustar'))
    if (type === 'file') parts.push(data, pad(data.length))
  }
  if (opts.end !== false) parts.push(Buffer.alloc(2 * TAR_BLOCK))
  return Buffer.concat(parts)
}

/** Imports `archive` through the library (in chunks of `chunk` bytes); abort on failure, as the CLI does. */
export function importBuffer(vol: Volume, target: ImportTarget, archive: Buffer, opts: ImportOptions = {}, chunk = 4096 + 17): ImportStats {
  const imp = new TarImport(vol, target, opts)
  try {
    for (let i = 0; i < archive.length; i += chunk) imp.write(archive.subarray(i, i + chunk))
    return imp.finish()
  } catch (e) {
    imp.abort()
    throw e
  }
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, {encoding: 'latin1', stdio: ['ignore', 'pipe', 'pipe']})
}

/**
 * Everything stat, getfattr and getfacl show of a host tree, by relative path (bytes as
 * latin1): type, mode, owner, size, modification time to the nanosecond, device number,
 * link count and which names are one inode, symlink targets, content, allocated blocks of
 * sparse files, attributes of every namespace (ACLs among them) and the ACLs as text.
 */
export function describeHost(root: string, opts: {dirTimes?: boolean} = {}): Record<string, string> {
  const out: Record<string, string> = {}
  const inodes = new Map<string, string>()
  // One run of each tool over the whole tree (names that are not UTF-8 cannot be passed as
  // arguments from here; the tools print them \ooo-escaped).
  const xattrs = sections(run('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root]))
  const acls = sections(run('getfacl', ['-R', '-P', '-n', '-p', root]))
  const walk = (rel: Buffer) => {
    const abs = rel.length ? Buffer.concat([Buffer.from(root + '/'), rel]) : Buffer.from(root)
    const st = fs.lstatSync(abs, {bigint: true})
    const key = rel.length ? rel.toString('latin1') : '.'
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : st.isCharacterDevice() ? 'chr' : st.isBlockDevice() ? 'blk' : st.isFIFO() ? 'fifo' : 'other'
    const parts = [type, `mode=${(st.mode & 0o7777n).toString(8)}`, `owner=${st.uid}:${st.gid}`]
    if (type !== 'dir' || opts.dirTimes !== false) parts.push(`mtime=${st.mtimeNs}`)
    if (type === 'file') {
      parts.push(`size=${st.size}`, `sha=${createHash('sha256').update(fs.readFileSync(abs)).digest('hex').slice(0, 16)}`)
      if (st.blocks * 512n < st.size) parts.push(`blocks=${st.blocks}`)
      const id = `${st.dev}:${st.ino}`
      if (st.nlink > 1n) {
        if (!inodes.has(id)) inodes.set(id, key)
        parts.push(`nlink=${st.nlink} first=${inodes.get(id)}`)
      }
    }
    if (type === 'symlink') parts.push(`-> ${fs.readlinkSync(abs, {encoding: 'buffer'}).toString('latin1')}`)
    if (type === 'chr' || type === 'blk') parts.push(`rdev=${st.rdev >> 8n & 0xfffn}:${(st.rdev & 0xffn) | ((st.rdev >> 12n) & 0xfff00n)}`)
    if (type !== 'symlink') {
      // getfattr -h: the node itself, every namespace, values in hex; getfacl: the ACLs as text.
      const q = quote(abs)
      const xa = xattrs.get(q) ?? []
      if (xa.length) parts.push(`xattrs{${[...xa].sort().join(' ')}}`)
      parts.push(`acl{${(acls.get(q) ?? []).join(',')}}`)
    }
    out[key] = parts.join(' ')
    if (type === 'dir') {
      for (const n of fs.readdirSync(abs, {encoding: 'buffer'}).sort(Buffer.compare)) walk(rel.length ? Buffer.concat([rel, Buffer.from('/'), n]) : n)
    }
  }
  walk(Buffer.alloc(0))
  return out
}

/** A path as getfattr and getfacl print it: bytes outside printable ASCII, and '\\', as \\ooo. */
function quote(b: Buffer): string {
  let s = ''
  for (const c of b) s += c <= 0x20 || c >= 0x7f || c === 0x5c ? '\\' + c.toString(8).padStart(3, '0') : String.fromCharCode(c)
  return s
}

/** "# file: NAME" sections of getfattr or getfacl output: name -> its lines. */
function sections(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>()
  let cur: string[] | null = null
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) m.set(line.slice(8), cur = [])
    else if (line && !line.startsWith('#') && cur) cur.push(line)
  }
  return m
}

export function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
}

export {path}
