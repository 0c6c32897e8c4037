// Test helpers: temporary directories, images made through the library, the real CLI as a
// child process, and hashing of image files to prove that a failed command changed nothing.
import {spawnSync, type SpawnSyncReturns} from 'node:child_process'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {mkfs, namespace, withImage} from '../src/fs/image.js'
import '../src/fs/namespace.js'
import type {Namespace} from '../src/fs/namespace.js'
import type {Volume} from '../src/fs/volume.js'

export const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
/** The CLI under test; PRISM_BIN runs another build (a copy of bin/ and dist/). */
export const BIN = process.env.PRISM_BIN ?? path.join(ROOT, 'bin', 'run.js')

export function tmpDir(prefix = 'prism-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

export function newImage(dir: string, size = 64 * 1024 * 1024, opts: {inodeCount?: number, journalBlocks?: number} = {}): string {
  const img = path.join(dir, 'disk.img')
  mkfs(img, {size, ...opts}).close()
  return img
}

/** Runs `work` on fileset `fs` of an image opened for writing, then commits. */
export function edit<T>(img: string, work: (ns: Namespace, vol: Volume) => T, fsName = 'root'): T {
  return withImage(img, {write: true}, (vol) => work(namespace(vol, fsName), vol))
}

export function read<T>(img: string, work: (ns: Namespace, vol: Volume) => T, fsName = 'root'): T {
  return withImage(img, {write: false}, (vol) => work(namespace(vol, fsName), vol))
}

export function sha256File(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex')
}

export interface CliResult {
  status: number
  stdout: string
  stderr: string
}

/**
 * Runs the real CLI. No background expander is started (PRISM_NO_BACKGROUND=1) unless the
 * test asks for one through `env`: a stray expander would change images under other tests.
 */
export function prism(args: string[], opts: {cwd?: string, input?: string | Buffer, env?: Record<string, string>} = {}): CliResult {
  const r: SpawnSyncReturns<Buffer> = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd, input: opts.input, env: {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1', ...opts.env}, maxBuffer: 1 << 30,
  })
  return {status: r.status ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString()}
}

/** Everything in a fileset: path -> description, for comparing trees. */
export function snapshot(ns: Namespace): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (dir: string) => {
    for (const e of ns.readdir(dir)) {
      const p = (dir === '/' ? '' : dir) + '/' + e.name
      const st = ns.stat(p)
      // Owner and extended attributes (values hashed), when not root's and none: as Model.snapshot().
      const owner = st.uid || st.gid ? ` o=${st.uid}:${st.gid}` : ''
      const xs = ns.listXattrs(p).map((x) => `${x.name.toString()}=${x.value.toString('latin1')}`).sort()
      const meta = owner + (xs.length ? ` x={${xs.join(',')}}` : '')
      if (st.type === 'dir') {
        out[p] = `dir ${st.perm.toString(8)} nlink=${st.nlink}${meta}`
        walk(p)
      } else if (st.type === 'symlink') {
        out[p] = `symlink -> ${st.target}${meta}`
      } else if (st.type !== 'file') {
        out[p] = `${st.type} ${st.perm.toString(8)} nlink=${st.nlink}${meta}`
      } else {
        const h = createHash('sha256').update(ns.readFile(p)).digest('hex').slice(0, 16)
        out[p] = `file ${st.perm.toString(8)} size=${st.size} nlink=${st.nlink} ${h}${meta}`
      }
    }
  }
  walk('/')
  return out
}

/** A small host tree with a nested dir, a symlink, a hard link and an empty file. */
export function hostTree(dir: string): string {
  const t = path.join(dir, 'tree')
  fs.mkdirSync(path.join(t, 'etc'), {recursive: true})
  fs.mkdirSync(path.join(t, 'home', 'alice'), {recursive: true})
  fs.mkdirSync(path.join(t, 'var', 'log'), {recursive: true})
  fs.writeFileSync(path.join(t, 'etc', 'hostname'), 'prism-host\n')
  fs.writeFileSync(path.join(t, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n'.repeat(50))
  fs.writeFileSync(path.join(t, 'home', 'alice', 'notes.txt'), Buffer.alloc(70000, 'n'))
  fs.writeFileSync(path.join(t, 'var', 'log', 'syslog'), 'boot\n')
  fs.writeFileSync(path.join(t, 'empty'), '')
  fs.symlinkSync('hostname', path.join(t, 'etc', 'hn'))
  fs.linkSync(path.join(t, 'etc', 'passwd'), path.join(t, 'etc', 'passwd.bak'))
  fs.chmodSync(path.join(t, 'home', 'alice'), 0o700)
  return t
}
