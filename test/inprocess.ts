// A mount's request handlers without the kernel: a PrismFs (src/server/adapter.ts) on a volume
// this process holds, with a host that does what the server does between requests (commits a
// transaction grown too large; fsync commits) and nothing else (no other mounts, no gate, no
// holds). For tests and benchmarks that call the handlers directly, as the binding would.
import type {Volume} from '../src/fs/volume.js'
import {PrismFs, type AdapterHost} from '../src/server/adapter.js'
import {LockTable} from '../src/server/locks.js'

/** The caller of every request: root, umask 022. */
export const ROOT_CTX = {uid: 0, gid: 0, pid: 1, umask: 0o022, groups: (): number[] => []}

/** The host of a PrismFs on `vol`: as the server, a transaction grown too large is committed after the request. */
export function inProcessHost(vol: Volume): AdapterHost {
  return {
    vol,
    changed: () => {
      if (vol.txnFull) vol.commit()
    },
    sync: () => vol.commit(),
    gate: () => null,
    frozen: () => null,
    hold: () => {},
    locks: new LockTable(),
  }
}

/** PrismFs on `vol`, showing `top` (a fileset and a directory in it; null: the whole image). */
export function inProcessMount(vol: Volume, top: {fileset: string, path: string} | null = {fileset: 'root', path: '/'}): {pfs: PrismFs, host: AdapterHost} {
  const host = inProcessHost(vol)
  return {pfs: new PrismFs(host, {top, readOnly: false, attrTimeout: 1, entryTimeout: 1, rootOwner: {uid: 0, gid: 0}}), host}
}
