// A minimal clamd client: VERSION (to key incremental results) and INSTREAM (the content
// in length-prefixed chunks, ended by a zero length). One connection per request, over a
// Unix socket or TCP (host:port).
import type net from 'node:net'
import {PrismError} from '../errors.js'

export interface ClamdReply {
  found: string[]
  error: string | null
}

/** node:net is loaded on first use: most scans never talk to clamd. */
async function connect(where: string): Promise<net.Socket> {
  const {createConnection} = await import('node:net')
  const tcp = /^(?:tcp:\/\/)?([^/:]+):(\d+)$/.exec(where)
  return tcp ? createConnection({host: tcp[1], port: Number(tcp[2])}) : createConnection({path: where})
}

/** Sends `cmd` (already framed), then whatever `send` writes, and returns the reply text. */
async function request(where: string, cmd: string, send?: (sock: net.Socket) => Promise<void>): Promise<string> {
  const sock = await connect(where)
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let settled = false
    const done = (err: Error | null, text?: string) => {
      if (settled) return
      settled = true
      sock.destroy()
      if (err) reject(err)
      else resolve(text!)
    }
    sock.on('data', (d) => {
      parts.push(d)
      const all = Buffer.concat(parts)
      const z = all.indexOf(0)
      if (z >= 0) done(null, all.toString('utf8', 0, z))
    })
    sock.on('end', () => done(null, Buffer.concat(parts).toString('utf8').replace(/\0.*$/s, '')))
    sock.on('error', (e: NodeJS.ErrnoException) => {
      // clamd may close the connection once it has answered (size limit): keep its answer.
      if (parts.length > 0) done(null, Buffer.concat(parts).toString('utf8').replace(/\0.*$/s, ''))
      else done(new PrismError('EIO', `clamd at ${where}: ${e.code ?? e.message}`))
    })
    sock.on('connect', () => {
      sock.write(cmd)
      if (!send) return
      send(sock).catch((e) => { if (!settled && parts.length === 0) done(e as Error) })
    })
  })
}

export async function clamdVersion(where: string): Promise<string> {
  const v = (await request(where, 'zVERSION\0')).trim()
  if (!/^ClamAV /.test(v)) throw new PrismError('EIO', `clamd at ${where}: unexpected VERSION reply '${v.slice(0, 80)}'`)
  return v
}

function write(sock: net.Socket, buf: Buffer): Promise<void> {
  if (sock.destroyed) return Promise.reject(new Error('connection closed'))
  if (sock.write(buf)) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const onDrain = () => { sock.off('close', onClose); resolve() }
    const onClose = () => { sock.off('drain', onDrain); reject(new Error('connection closed')) }
    sock.once('drain', onDrain)
    sock.once('close', onClose)
  })
}

/** Streams the chunks to clamd with INSTREAM and parses its verdict. */
export async function clamdScan(where: string, chunks: AsyncIterable<Buffer>): Promise<ClamdReply> {
  const reply = await request(where, 'zINSTREAM\0', async (sock) => {
    for await (const c of chunks) {
      const len = Buffer.alloc(4)
      len.writeUInt32BE(c.length)
      await write(sock, len)
      await write(sock, c)
    }
    await write(sock, Buffer.alloc(4))
  })
  const text = reply.trim()
  const m = /^stream: (.*) FOUND$/.exec(text)
  if (m) return {found: [m[1]], error: null}
  if (text === 'stream: OK') return {found: [], error: null}
  return {found: [], error: text || 'no reply'}
}
