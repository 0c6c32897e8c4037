// Test support for the tests of `prism mount`: images with a mount made through the real CLI
// (a server in the background), the CLI run asynchronously with a time limit, and a cleanup
// that leaves no mount and no server whatever happened (prism umount, then abort + umount -l,
// then SIGKILL of the server). The test process reaches the mounts only through asynchronous
// calls and child processes, so a hung server fails a test instead of hanging the suite.
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {fuseMountAt} from '../src/fuse/index.js'
import {request, socketPath} from '../src/server/paths.js'
import {forceUnmount, run, type RunResult} from './fuse-support.js'
import {BIN, newImage, tmpDir} from './helpers.js'

export {skipWithoutFuse} from './fuse-support.js'

/** The CLI, asynchronously, killed after `timeoutMs`. */
export function cli(args: string[], opts: {timeoutMs?: number, input?: string, env?: NodeJS.ProcessEnv} = {}): Promise<RunResult> {
  return run(process.execPath, [BIN, ...args], {timeoutMs: opts.timeoutMs ?? 60_000, input: opts.input, env: opts.env})
}

export async function cliOk(args: string[], opts: {timeoutMs?: number} = {}): Promise<string> {
  const r = await cli(args, opts)
  if (r.code !== 0) throw new Error(`prism ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}

/** prism fsck of `image` exits 0 (clean), or the test fails with what it printed. */
export async function expectClean(image: string): Promise<void> {
  const r = await cli(['fsck', '-i', image])
  expect(r.code, r.stdout + r.stderr).to.equal(0)
}

/** The pid of the server of `image`, or null when none answers. */
export async function serverPid(image: string): Promise<number | null> {
  let sock: string
  try {
    sock = socketPath(image)
  } catch {
    return null // the image file is gone (moved or removed by the test)
  }
  const r = await request(sock, {op: 'ping'}, 5000).catch(() => null)
  return r?.ok ? Number(r.pid) : null
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Waits (up to `ms`) for process `pid` to exit; true if it did. */
export async function waitExit(pid: number, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms
  while (alive(pid)) {
    if (Date.now() > end) return false
    await sleep(20)
  }
  return true
}

/**
 * Waits (up to `ms`) until prism's command `pid` catches the signals (src/cli/signals.ts): its
 * SIGHUP handler is in place (/proc/PID/status SigCgt; node itself catches SIGINT and SIGTERM
 * from its start, to reset the terminal, so those bits say nothing). Before that, a SIGINT ends
 * the process by its default action. True once it catches them, false if it exited first.
 */
export async function catchingSignals(pid: number, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms
  for (;;) {
    let caught: bigint
    try {
      caught = BigInt(`0x${/^SigCgt:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]}`)
    } catch {
      return false // gone
    }
    if (caught & 1n) return true
    if (Date.now() > end) throw new Error(`process ${pid} did not catch SIGHUP within ${ms} ms`)
    await sleep(2)
  }
}

/** A scratch directory with an image and mount points; cleanup() gets rid of every mount and the server. */
export class Scratch {
  readonly dir = tmpDir('prism-mount-')
  readonly image: string
  private readonly mps: string[] = []
  private pids = new Set<number>()

  constructor(opts: {size?: number, inodeCount?: number} = {}) {
    this.image = newImage(this.dir, opts.size ?? 256 * 1024 * 1024, {inodeCount: opts.inodeCount})
    fs.chmodSync(this.dir, 0o755)
  }

  /** A new, empty mount point (mode 0755). */
  mountpoint(name = `mp${this.mps.length}`): string {
    const mp = path.join(this.dir, name)
    fs.mkdirSync(mp, {recursive: true})
    fs.chmodSync(mp, 0o755)
    this.mps.push(mp)
    return mp
  }

  /** prism mount [SOURCE] MP [-o OPTIONS]; remembers the server for cleanup. */
  async mount(source: string | null, mp: string, options: string[] = []): Promise<void> {
    const args = ['mount', '-i', this.image, ...(source === null ? [] : [source]), mp, ...options.flatMap((o) => ['-o', o])]
    await cliOk(args)
    const pid = await serverPid(this.image)
    if (pid !== null) this.pids.add(pid)
  }

  /**
   * prism umount MP. Another process may hold any mount of the machine for a moment (a test
   * run beside this one: stress-ng's filesystem class, in test/mount-stress.test.ts, walks
   * /proc and the mounts it lists), and the kernel then answers EBUSY: a refusal that says
   * "target is busy" is tried again, for up to 5 s.
   */
  async umount(mp: string): Promise<void> {
    for (let tries = 1; ; tries++) {
      const r = await cli(['umount', mp])
      if (r.code === 0) return
      if (!r.stderr.includes('target is busy') || tries >= 25) throw new Error(`prism umount ${mp} failed (${r.code}, try ${tries}): ${r.stderr.trim()}`)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }

  async cleanup(): Promise<void> {
    for (const mp of this.mps) {
      if (fuseMountAt(mp) === undefined) continue
      await cli(['umount', mp], {timeoutMs: 15_000}).catch(() => undefined)
      await forceUnmount(mp).catch(() => undefined)
    }
    const pid = await serverPid(this.image)
    if (pid !== null) this.pids.add(pid)
    for (const p of this.pids) {
      if (!(await waitExit(p, 5000))) {
        try {
          process.kill(p, 'SIGKILL')
        } catch {
          // gone
        }
        await waitExit(p, 5000)
      }
    }
    fs.rmSync(this.dir, {recursive: true, force: true})
  }
}

export {run, type RunResult}
