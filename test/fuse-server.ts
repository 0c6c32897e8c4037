// The FUSE test server: mounts a MemFs (test/fuse-memfs.ts) through src/fuse in a child
// process of the test, and answers the test's questions over the IPC channel (what the
// filesystem saw, changes made behind the kernel's back, cache notifications, unmount).
// Started by test/fuse-support.ts: node --import tsx test/fuse-server.ts '{"mountpoint": ...}'.
// It must never touch its own mount (that deadlocks): everything it learns about the files
// comes from the MemFs, never from the mount point.
import {abortConnection, type FuseSession, mount, type MountOptions} from '../src/fuse/index.js'
import {MemFs, type MemFsOptions, now} from './fuse-memfs.js'

interface Start {
  mountpoint: string
  options?: MountOptions
  memfs?: MemFsOptions
}

interface Message {
  id: number
  cmd: string
  args?: Record<string, unknown>
}

const start = JSON.parse(process.argv[2] ?? '{}') as Start
const memfs = new MemFs(start.memfs)
const errors: string[] = []
const notes = new Map<number, Promise<boolean>>()
let session: FuseSession | undefined
let ticker: NodeJS.Timeout | undefined
let ticks = {count: 0, last: 0, maxGapMs: 0}

const send = (m: object): void => {
  if (process.connected) process.send!(m)
}

function summary(list: number[]): {count: number, min: number, max: number, atLeast128k: number} {
  return {
    count: list.length, min: list.length ? Math.min(...list) : 0, max: list.length ? Math.max(...list) : 0,
    atLeast128k: list.filter((n) => n >= 128 * 1024).length,
  }
}

async function handle(m: Message): Promise<unknown> {
  const a = m.args ?? {}
  const s = session!
  switch (m.cmd) {
    case 'ping':
      return 'pong'
    case 'cpu': { // this process's CPU time, all threads (the loop thread included), in µs
      const u = process.cpuUsage()
      return u.user + u.system
    }
    case 'stats':
      return {
        writes: summary(memfs.stats.writes), reads: summary(memfs.stats.reads), lookupErrors: memfs.stats.lookupErrors,
        forgets: memfs.stats.forgets, nodes: memfs.nodes.size, errors, ops: Object.fromEntries(memfs.stats.ops),
        lookups: Object.fromEntries([...memfs.nodes.values()].map((n) => [n.ino, n.nlookup])),
      }
    case 'resetStats':
      memfs.stats.writes.length = 0
      memfs.stats.reads.length = 0
      return true
    case 'resolve': {
      const n = memfs.resolve(a.path as string)
      return {ino: n.ino, nlink: n.nlink, nlookup: n.nlookup, opens: n.opens, uid: n.uid, gid: n.gid, mode: n.mode, creatorPid: n.creatorPid, size: n.size}
    }
    case 'alive':
      return memfs.nodes.has(a.ino as number)
    case 'hold':
      memfs.hold(a.name as string)
      return true
    case 'release':
      return memfs.release(a.name as string)
    case 'heldCount':
      return memfs.held.get(a.name as string)?.length ?? 0
    case 'poke': { // new content behind the kernel's back
      const n = memfs.resolve(a.path as string)
      const data = Buffer.from(a.data as string)
      n.chunks.clear()
      n.size = 0
      const o = await memfs.ops.open!({uid: 0, gid: 0, pid: 0, umask: 0, groups: () => []}, n.ino, 2)
      const ctx = {uid: 0, gid: 0, pid: 0, umask: 0, groups: () => []}
      await memfs.ops.write!(ctx, n.ino, o.fh!, 0, data, {flags: 0, writepage: false})
      await memfs.ops.release!(ctx, n.ino, o.fh!, 2)
      return a.invalidate ? await s.invalidateInode(n.ino) : n.ino
    }
    case 'addFile': { // a new name behind the kernel's back
      const dir = memfs.resolve(a.dir as string)
      const ctx = {uid: 0, gid: 0, pid: 0, umask: 0, groups: () => []}
      const e = await memfs.ops.mknod!(ctx, dir.ino, Buffer.from(a.name as string), 0o100644, 0)
      memfs.ops.forget!(e.ino, 1)
      return a.invalidate ? await s.invalidateEntry(dir.ino, Buffer.from(a.name as string)) : e.ino
    }
    case 'removeFile': { // a name gone behind the kernel's back
      const dir = memfs.resolve(a.dir as string)
      const child = memfs.resolve(`${a.dir as string}/${a.name as string}`)
      await memfs.ops.unlink!({uid: 0, gid: 0, pid: 0, umask: 0, groups: () => []}, dir.ino, Buffer.from(a.name as string))
      if (a.notify === 'delete') return await s.notifyDelete(dir.ino, child.ino, Buffer.from(a.name as string))
      if (a.notify === 'entry') return await s.invalidateEntry(dir.ino, Buffer.from(a.name as string))
      return true
    }
    case 'invalEntryStart': { // a notification left running while the test checks we still answer
      const dir = memfs.resolve(a.dir as string)
      const id = notes.size + 1
      notes.set(id, s.invalidateEntry(dir.ino, Buffer.from(a.name as string)))
      return id
    }
    case 'invalEntryWait':
      return await notes.get(a.id as number)
    case 'invalInode':
      return await s.invalidateInode(a.ino as number, a.offset as number | undefined, a.length as number | undefined)
    case 'touchServer': { // times changed behind the kernel's back
      const n = memfs.resolve(a.path as string)
      n.mtime = now()
      return true
    }
    case 'unmount':
      await s.unmount({lazy: Boolean(a.lazy)})
      return true
    case 'abort':
      return await abortConnection(s.device!)
    case 'tickStart': { // a 5 ms timer: how often it ran and its longest wait, while the mount works
      ticks = {count: 0, last: performance.now(), maxGapMs: 0}
      const t = ticks
      ticker = setInterval(() => {
        const now = performance.now()
        t.maxGapMs = Math.max(t.maxGapMs, now - t.last)
        t.last = now
        t.count++
      }, 5)
      return true
    }
    case 'tickStop':
      if (ticker) clearInterval(ticker)
      ticker = undefined
      return {count: ticks.count, maxGapMs: Math.max(ticks.maxGapMs, performance.now() - ticks.last)}
    case 'exit':
      setImmediate(() => process.exit(0))
      return true
    default:
      throw new Error(`unknown command ${m.cmd}`)
  }
}

process.on('message', (m: Message) => {
  handle(m).then(
    (result) => send({id: m.id, result}),
    (e: unknown) => send({id: m.id, error: e instanceof Error ? `${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`.trim() : String(e)}),
  )
})
process.on('disconnect', () => process.exit(0))

try {
  session = await mount(start.mountpoint, memfs.ops, {
    ...start.options,
    onError: (op, e) => errors.push(`${op}: ${e instanceof Error ? e.message : String(e)}`),
  })
  send({type: 'ready', conn: session.conn, device: session.device, pid: process.pid})
  session.closed.then(() => send({type: 'closed'}), () => send({type: 'closed'}))
} catch (e) {
  send({type: 'failed', error: e instanceof Error ? e.message : String(e)})
  process.exitCode = 1
}
