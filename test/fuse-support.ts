// Test support for the FUSE tests: starts test/fuse-server.ts (a MemFs served through
// src/fuse) in a child process, talks to it over IPC, runs tools against the mount in child
// processes with time limits, and cleans up whatever happens. The test process itself only
// reaches the mount through asynchronous calls (fs.promises, child processes), so a hung
// server fails a test by its timeout instead of hanging the suite, and the after hooks can
// always run: ask the server to unmount, else abort the connection (fusectl) and `umount -l`,
// and kill the server.
// It must never let the server process touch its own mount, nor leave a mount behind.
import {type ChildProcess, fork, spawn} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {abortConnection, type ConnInfo, fuseAvailability, fuseMountAt, type MountOptions} from '../src/fuse/index.js'
import type {MemFsOptions} from './fuse-memfs.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const SERVER = path.join(HERE, 'fuse-server.ts')

/** Why the FUSE tests cannot run here, or undefined. */
export function fuseSkipReason(): string | undefined {
  const av = fuseAvailability()
  if (!av.available) return av.reason
  if (process.geteuid?.() !== 0) return 'the FUSE tests mount with mount(2) and switch users: they need root'
  return undefined
}

/** Skips the enclosing suite, saying why, when FUSE is not usable here. */
export function skipWithoutFuse(ctx: Mocha.Context): void {
  const why = fuseSkipReason()
  if (why !== undefined) {
    console.log(`      FUSE tests skipped: ${why}`)
    ctx.skip()
  }
}

export const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs a command (never in this process). After `timeoutMs` it is killed and the promise
 * rejects at once: a process waiting on a hung FUSE server dies only when the request ends.
 */
export function run(cmd: string, args: string[], opts: {timeoutMs?: number, input?: string, env?: NodeJS.ProcessEnv} = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 20_000
  return new Promise((resolve, reject) => {
    let stdout = ''
    let stderr = ''
    let done = false
    const child = spawn(cmd, args, {stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: opts.env ? {...process.env, ...opts.env} : process.env})
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      if (!done) reject(new Error(`${cmd} ${args.join(' ')}: killed after ${timeoutMs} ms (hung mount?)`))
      done = true
    }, timeoutMs)
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
    })
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    child.on('error', (e) => {
      clearTimeout(timer)
      if (!done) reject(e)
      done = true
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      if (!done) resolve({code, stdout, stderr})
      done = true
    })
    if (opts.input !== undefined) child.stdin!.end(opts.input)
  })
}

/** Runs a command that must succeed; its stdout. */
export async function runOk(cmd: string, args: string[], opts: {timeoutMs?: number} = {}): Promise<string> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}

/** python3 -c CODE ARGS...; stdout parsed as JSON. Throws with stderr on failure. */
export async function py(code: string, ...args: string[]): Promise<unknown> {
  const r = await run(PYTHON, ['-c', code, ...args])
  if (r.code !== 0) throw new Error(`python failed (${r.code}): ${r.stderr.trim().split('\n').pop()}`)
  return JSON.parse(r.stdout)
}

/** Runs a shell command as uid/gid 65534 (nobody), no supplementary groups. */
export function asNobody(script: string, timeoutMs = 20_000): Promise<RunResult> {
  return run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', 'sh', '-c', script], {timeoutMs})
}

export interface ServerOptions {
  options?: MountOptions
  memfs?: MemFsOptions
}

export class FuseServer {
  readonly child: ChildProcess
  readonly mountpoint: string
  conn!: ConnInfo
  device!: string
  private nextId = 1
  private readonly waiting = new Map<number, {resolve: (v: unknown) => void, reject: (e: Error) => void}>()
  closed = false
  private closedWaiters: (() => void)[] = []
  exited: Promise<void>

  private constructor(mountpoint: string, opts: ServerOptions) {
    this.mountpoint = mountpoint
    this.child = fork(SERVER, [JSON.stringify({mountpoint, ...opts})], {execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc']})
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()))
    this.child.on('message', (m: {id?: number, type?: string, result?: unknown, error?: string}) => {
      if (m.type === 'closed') {
        this.closed = true
        for (const f of this.closedWaiters) f()
        return
      }
      if (m.id === undefined) return
      const w = this.waiting.get(m.id)
      this.waiting.delete(m.id)
      if (m.error !== undefined) w?.reject(new Error(m.error))
      else w?.resolve(m.result)
    })
    this.child.on('exit', () => {
      for (const w of this.waiting.values()) w.reject(new Error('the FUSE server exited'))
      this.waiting.clear()
    })
  }

  /** Starts a server on a new mount point (a fresh directory unless given). */
  static async start(opts: ServerOptions = {}, mountpoint?: string): Promise<FuseServer> {
    const mp = mountpoint ?? fs.mkdtempSync(path.join(os.tmpdir(), 'prism-fuse-'))
    fs.chmodSync(mp, 0o755) // reachable by the non-root users of the tests
    const s = new FuseServer(mp, opts)
    const ready = await new Promise<{type: string, conn?: ConnInfo, device?: string, error?: string}>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the FUSE server did not mount within 20 s')), 20_000)
      s.child.on('message', (m: {type?: string}) => {
        if (m.type === 'ready' || m.type === 'failed') {
          clearTimeout(timer)
          resolve(m as {type: string})
        }
      })
      s.child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`the FUSE server exited (${code}) before mounting`))
      })
    })
    if (ready.type !== 'ready') {
      await s.cleanup()
      throw new Error(`the FUSE server failed: ${ready.error}`)
    }
    s.conn = ready.conn!
    s.device = ready.device!
    return s
  }

  call<T = unknown>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 15_000): Promise<T> {
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      if (!this.child.connected) {
        reject(new Error('the FUSE server is gone'))
        return
      }
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new Error(`the FUSE server did not answer ${cmd} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v as T)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.child.send({id, cmd, args})
    })
  }

  /** Resolves when the server's session has ended (false after `timeoutMs`). */
  waitClosed(timeoutMs = 10_000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.closedWaiters.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  }

  path(...parts: string[]): string {
    return path.join(this.mountpoint, ...parts)
  }

  /**
   * Unmounts and stops the server whatever state it is in: a clean unmount through the server
   * first, then fusectl abort + umount -l, then SIGKILL. Leaves no mount and no process.
   */
  async cleanup(): Promise<void> {
    if (this.child.exitCode === null && this.child.connected && !this.closed) {
      await this.call('unmount', {}, 5000).catch(() => undefined)
    }
    await forceUnmount(this.mountpoint)
    if (this.child.exitCode === null && this.child.signalCode === null) {
      if (this.child.connected) await this.call('exit', {}, 2000).catch(() => undefined)
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000))])
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
      await this.exited
    }
    fs.rmSync(this.mountpoint, {recursive: true, force: true})
  }
}

/** Gets rid of any FUSE mount on `mountpoint`: abort its connection, then detach it. */
export async function forceUnmount(mountpoint: string): Promise<void> {
  for (let i = 0; i < 5; i++) {
    const m = fuseMountAt(mountpoint)
    if (m === undefined) return
    await abortConnection(m.device).catch(() => false)
    await run('umount', ['-l', '--', mountpoint], {timeoutMs: 10_000}).catch(() => undefined)
  }
  if (fuseMountAt(mountpoint) !== undefined) throw new Error(`cannot get rid of the FUSE mount on ${mountpoint}`)
}

/** The FUSE tests' mocha timeout: generous, since a hang must fail rather than pass. */
export const FUSE_TIMEOUT = 60_000
