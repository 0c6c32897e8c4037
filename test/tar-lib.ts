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
export function describeHost(root: string, opts: {dirTimes?: boolean, atime?: boolean} = {}): Record<string, string> {
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
    // (A symlink's access time is not compared: reading the link, as any copy must, sets it.)
    if (opts.atime && type !== 'dir' && type !== 'symlink') parts.push(`atime=${st.atimeNs}`)
    if (type === 'file') {
      parts.push(`size=${st.size}`, `sha=${createHash('sha256').update(readNoAtime(abs)).digest('hex').slice(0, 16)}`)
      if (st.blocks * 512n < st.size) parts.push(`blocks=${st.blocks}`)
    }
    // Names of one inode (a file, symlink, device or FIFO): grouped under the first met.
    const id = `${st.dev}:${st.ino}`
    if (type !== 'dir' && st.nlink > 1n) {
      if (!inodes.has(id)) inodes.set(id, key)
      parts.push(`nlink=${st.nlink} first=${inodes.get(id)}`)
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

/** A file's content, read without changing its access time where the host allows it (the owner, or root). */
function readNoAtime(p: Buffer): Buffer {
  let fd: number
  try {
    fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOATIME)
  } catch {
    return fs.readFileSync(p)
  }
  try {
    return fs.readFileSync(fd)
  } finally {
    fs.closeSync(fd)
  }
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

/**
 * Builds, under `t`, a tree with every file type (files, directories, symlinks, hard links
 * across directories, character and block devices, a FIFO), attributes in every namespace,
 * POSIX ACLs (access and default), other owners, setuid, setgid and sticky bits, sparse files,
 * long names and one that is not UTF-8, and nanosecond times. Returns what the host refused
 * (each test skips visibly, saying which).
 */
export function buildTree(t: string): string[] {
  const isRoot = process.getuid?.() === 0
  const skipped: string[] = []
  const p = (...x: string[]) => path.join(t, ...x)
  for (const d of ['etc', 'bin', 'dev', 'var/spool', 'var/lib', 'home/alice', 'home/bob', 'deep']) fs.mkdirSync(p(d), {recursive: true})
  fs.writeFileSync(p('etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n')
  fs.writeFileSync(p('etc/group'), 'root:x:0:\nalice:x:1000:\nbob:x:1001:\nstaff:x:50:\n')
  fs.writeFileSync(p('bin/busybox'), Buffer.alloc(200_000, 7))
  fs.chmodSync(p('bin/busybox'), 0o4755)
  fs.writeFileSync(p('bin/ping'), 'ping binary')
  fs.chmodSync(p('bin/ping'), 0o755)
  fs.writeFileSync(p('bin/wall'), 'wall')
  fs.chmodSync(p('bin/wall'), 0o2755)
  fs.symlinkSync('busybox', p('bin/sh'))
  fs.symlinkSync('/etc/passwd', p('etc/passwd.link'))
  fs.symlinkSync('x'.repeat(180) + '/target', p('deep/long-link'))
  fs.chmodSync(p('var/spool'), 0o1777)
  fs.chmodSync(p('home/alice'), 0o2770)
  fs.writeFileSync(p('home/alice/doc'), 'shared document\n')
  fs.linkSync(p('home/alice/doc'), p('home/bob/doc-link'))
  fs.linkSync(p('home/alice/doc'), p('var/doc-third'))
  fs.writeFileSync(p('empty'), '')
  fs.writeFileSync(Buffer.from(`${t}/caf\xe9-latin1`, 'latin1'), 'not utf-8')
  const long = p('deep', 'd'.repeat(120), 'e'.repeat(130))
  fs.mkdirSync(long, {recursive: true})
  fs.writeFileSync(path.join(long, 'f'.repeat(200)), 'long name')
  // Sparse files: data, a hole, data, and one ending in a hole.
  const sp = fs.openSync(p('var/lib/disk.img'), 'w')
  fs.writeSync(sp, Buffer.alloc(8192, 1), 0, 8192, 0)
  fs.writeSync(sp, Buffer.alloc(5000, 2), 0, 5000, 10 * 1024 * 1024)
  fs.ftruncateSync(sp, 32 * 1024 * 1024)
  fs.closeSync(sp)
  const sp2 = fs.openSync(p('var/lib/tail.img'), 'w')
  fs.writeSync(sp2, Buffer.from('end'), 0, 3, 20 * 1024 * 1024)
  fs.closeSync(sp2)
  if (isRoot) {
    for (const [f, u, g] of [['home/alice', 1000, 1000], ['home/alice/doc', 1000, 50], ['home/bob', 1001, 1001], ['bin/wall', 0, 5]] as const) fs.chownSync(p(f), u, g)
    fs.lchownSync(p('bin/sh'), 1001, 1001)
  } else skipped.push('other owners (needs root)')
  tryHost('character and block devices, FIFO', () => {
    execFileSync('mknod', [p('dev/null'), 'c', '1', '3'])
    execFileSync('mknod', [p('dev/sda'), 'b', '8', '0'])
    execFileSync('mknod', ['-m', '0620', p('dev/tty9'), 'c', '4', '9'])
  }, skipped)
  tryHost('FIFO', () => execFileSync('mkfifo', [p('dev/initctl')]), skipped)
  // Two names of a symlink (link(2) does not follow it). (Of a device or a FIFO too, GNU tar
  // would write two members: tar-export.test.ts checks those with Prism's own archives.)
  fs.linkSync(p('bin/sh'), p('bin/sh-again'))
  tryHost('user.* attributes', () => {
    execFileSync('setfattr', ['-n', 'user.comment', '-v', 'hello', p('etc/passwd')])
    execFileSync('setfattr', ['-n', 'user.binary', '-v', '0x00ff10', p('home/alice/doc')])
    execFileSync('setfattr', ['-n', 'user.dir', '-v', 'on a directory', p('home/bob')])
  }, skipped)
  tryHost('trusted.* attributes', () => execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', p('var/spool')]), skipped)
  tryHost('security.selinux', () => execFileSync('setfattr', ['-n', 'security.selinux', '-v', 'system_u:object_r:bin_t:s0', p('bin/busybox')]), skipped)
  tryHost('security.capability', () => execFileSync('setfattr', ['-n', 'security.capability', '-v', '0x0100000200200000000000000000000000000000', p('bin/ping')]), skipped)
  tryHost('POSIX ACLs', () => {
    execFileSync('setfacl', ['-m', 'u:1000:rw,g:50:r', p('home/alice/doc')])
    execFileSync('setfacl', ['-d', '-m', 'u:1001:rwx,g:50:rx', p('home/alice')])
    execFileSync('setfacl', ['-m', 'u:1001:rx', p('home/alice')])
  }, skipped)
  // Nanosecond times, set last (children before their directories), by bytes (names that are not UTF-8 too).
  execFileSync('python3', ['-c', `
import os, sys
root = os.fsencode(sys.argv[1])
i = 0
for d, subdirs, files in os.walk(root, topdown=False):
    for n in sorted(files) + sorted(subdirs) + ([b''] if d == root else []):
        p = os.path.join(d, n) if n else d
        i += 1
        t = (1500000000 + i * 1000) * 10**9 + 123456789 + i
        os.utime(p, ns=(t - 5 * 10**9, t), follow_symlinks=False)
`, t])
  return skipped
}

/** Sets a feature on the host, or says visibly that the host refuses it. */
function tryHost(what: string, fn: () => void, skipped: string[]): boolean {
  try {
    fn()
    return true
  } catch (e) {
    skipped.push(what)
    console.log(`      skipped: ${what} (the host refused: ${(e as Error).message.split('\n')[0]})`)
    return false
  }
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
