// Running a server in this process: `prism serve` (until a signal, or, started by
// `prism mount`, until its last unmount) and `prism mount --foreground` (one mount, until it
// is unmounted). Signals unmount everything, commit and close the image clean. It must never
// exit with the image open: every way out goes through Server.stop().
import {spawn} from 'node:child_process'
import {Server} from '../server/server.js'
import type {MountRequest} from '../server/server.js'

export interface ServeOptions {
  idleExit: boolean
  wait?: number
  commitSeconds?: number
  /** mount this first (mount --foreground) */
  mount?: MountRequest
}

export async function serveForeground(image: string, o: ServeOptions): Promise<void> {
  const server = new Server(image, {idleExit: o.idleExit, wait: o.wait, commitSeconds: o.commitSeconds})
  const onSignal = (sig: NodeJS.Signals): void => {
    process.exitCode = sig === 'SIGINT' ? 130 : sig === 'SIGTERM' ? 143 : 129
    if (o.mount === undefined && !o.idleExit) process.exitCode = 0 // a service asked to stop
    void server.stop()
  }
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal)
  try {
    await server.listen()
    if (o.mount) await server.mount(o.mount)
  } catch (e) {
    await server.stop()
    throw e
  }
  if (process.env.NOTIFY_SOCKET) {
    // systemd Type=notify (with NotifyAccess=all: the message comes from a child)
    spawn('systemd-notify', ['--ready', `MAINPID=${process.pid}`], {stdio: 'ignore'}).on('error', () => {})
  }
  if (o.idleExit && o.mount === undefined) {
    // Started by prism mount, which asks for its mount at once; a server nobody asks exits.
    setTimeout(() => {
      if (server.image.mounts.length === 0) void server.stop()
    }, 30_000).unref()
  }
  await server.stopped
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, onSignal)
}
