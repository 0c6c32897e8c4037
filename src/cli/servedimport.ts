// The CLI's side of `prism import ARCHIVE` on a served image (src/server/import.ts): the
// archive, opened as alone (a file read in place, standard input spooled to a temporary file
// first), is sent as it is stored (compressed or not; bzip2, which only JavaScript decodes
// here, is decoded first, into a temporary file, so that the server's thread never waits on
// it) to the server, which imports it in
// slices between its mounts' requests. Progress and each refused entry come back as they
// happen, so the command's output, --json and exit codes are those of the import alone.
// Ctrl-C ends our side of the connection and waits for the server's answer: it drops the
// import (nothing of it shows) and the command exits 128 + the signal, or, if it had
// published it, the command reports it done. A server that dies meanwhile: exit status 7;
// the image replays without the import.
import fs from 'node:fs'
import {PrismError} from '../errors.js'
import type {ArchiveInput} from '../tar/io.js'
import type {ImportOptions, ImportStats, ImportTarget} from '../tar/import.js'
import type {ServedCopy} from './copyin.js'
import {ask} from './servedcopy.js'

/** Imports the opened archive `archive` into `target` through the image's server. */
export async function importServed(served: ServedCopy, target: ImportTarget, archive: ArchiveInput, opts: ImportOptions): Promise<ImportStats> {
  const {bunzipped, fileChunks} = await import('../tar/io.js')
  // (bzip2 decoded here, into a temporary file: see bunzipped)
  const plain = await bunzipped(archive)
  const input = plain ?? archive
  try {
    // The archive's length now: the server reads that many bytes (fewer: the command went away).
    const size = fs.fstatSync(input.fd).size
    const req = {op: 'import', target, size, owner: {uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0}}
    async function* body(): AsyncGenerator<Buffer> {
      let sent = 0
      for await (const b of fileChunks(input.fd, size)) {
        sent += b.length
        yield b
      }
      if (sent < size) throw new PrismError('EIO', `${input.name}: the archive shrank while it was read; nothing was imported`)
    }
    const answer = await ask(served, req, 'the import ended; the image holds nothing of it', (r) => {
      if (r.progress) opts.onProgress?.(r.progress as ImportStats)
      else if (typeof r.warning === 'string') opts.onWarning?.(r.warning)
    }, body())
    return answer.stats as ImportStats
  } finally {
    plain?.close()
  }
}
