// Test helpers: temporary directories, images made through the library, the real CLI as a
// child process, and hashing of image files to prove that a failed command changed nothing.
import {spawn, spawnSync, type SpawnSyncReturns} from 'node:child_process'
import {createHash} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {PrismError} from '../src/errors.js'
import {Volume as ImageVolume, mkfs, namespace, withImage} from '../src/fs/image.js'
import {listFilesets} from '../src/fs/filesets.js'
import '../src/fs/namespace.js'
import type {Namespace} from '../src/fs/namespace.js'
import type {Volume} from '../src/fs/volume.js'

export const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
/** The CLI under test; PRISM_BIN runs another build (a copy of bin/ and dist/). */
export const BIN = process.env.PRISM_BIN ?? path.join(ROOT, 'bin', 'run.js')

/**
 * A script for `node --input-type=module -e` that runs the CLI through oclif alone, without
 * bin/run.js's start-up fast paths: argv is the package root as a file URL ending in '/',
 * then the command's arguments.
 */
export const VIA_OCLIF = `const [root, ...argv] = process.argv.slice(1); const {runOclif} = await import(root + 'dist/cli/oclif.js'); await runOclif(argv, root)`

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

/**
 * Everything a user can see in an image, without changing it: every fileset (name, state,
 * mode, parent) and its snapshot() (no times, no inode numbers). Opened for writing, as a lazy
 * clone is read by expanding it, and dropped unsaved.
 */
export function imageContents(img: string): string {
  const vol = ImageVolume.open(img, {write: true})
  try {
    const sets = listFilesets(vol).map((f) => ({name: f.name, state: f.state, mode: f.mode, parent: f.parentId}))
    return JSON.stringify({sets, trees: sets.map((f) => snapshot(namespace(vol, f.name)))})
  } finally {
    vol.closeAbort()
  }
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

/** True while process `pid` holds an flock on `file` (read from /proc/locks, taking nothing). */
export function holdsFlock(pid: number, file: string): boolean {
  const ino = fs.statSync(file).ino
  return fs.readFileSync('/proc/locks', 'utf8').split('\n').some((l) => {
    const f = l.trim().split(/\s+/)
    // 1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF
    return f[1] === 'FLOCK' && Number(f[4]) === pid && Number(f[5]?.split(':')[2]) === ino
  })
}

/**
 * Holds the image's exclusive lock from another process (util-linux flock(1), as a prism
 * writer in the middle of a long command would) until `release` is called.
 */
export async function holdImageLock(img: string): Promise<{pid: number, release: () => Promise<void>}> {
  const child = spawn('flock', ['--exclusive', '--nonblock', img, 'cat'], {stdio: ['pipe', 'ignore', 'inherit']})
  const pid = child.pid!
  const t0 = Date.now()
  while (!holdsFlock(pid, img)) {
    if (child.exitCode !== null) throw new Error(`flock(1) could not lock ${img} (exit ${child.exitCode})`)
    if (Date.now() - t0 > 30_000) throw new Error('flock(1) never took the image lock')
    await new Promise((r) => setTimeout(r, 5))
  }
  const release = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const closed = new Promise((r) => child.on('close', r))
    child.stdin!.end()
    await closed
  }
  return {pid, release}
}

export const NOBODY = 65534

/**
 * How to run a command as a user that is not root, for what root may always do (read a
 * mode-000 file): an argv prefix (setpriv to nobody when the tests run as root, nothing
 * otherwise), or why it cannot be done here. `probe` is a mode-000 file.
 */
export function asUser(probe: string): {prefix: string[]} | {skip: string} {
  if (process.getuid?.() !== 0) return {prefix: []}
  const prefix = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups']
  const r = spawnSync(prefix[0], [...prefix.slice(1), process.execPath, '-e', `require('fs').readFileSync(${JSON.stringify(probe)})`])
  if (r.error) return {skip: `setpriv is not available (${r.error.message})`}
  if (r.status === 0) return {skip: 'a process as nobody can still read a mode-000 file here'}
  const node = spawnSync(prefix[0], [...prefix.slice(1), process.execPath, BIN, '--version'])
  if (node.status !== 0) return {skip: `nobody cannot run the CLI here: ${node.stderr.toString().trim().split('\n')[0]}`}
  return {prefix}
}

/** The code of the PrismError `fn` throws, or 'ok' when it returns; any other error is thrown. */
export function errorCode(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    if (e instanceof PrismError) return e.code
    throw e
  }
  return 'ok'
}
