// The system calls Node does not offer, through Prism's own small native addon (native/sys.c,
// built by `npm ci`): one interface, loaded on first use as fs-ext is, so that a command that
// needs none of it never loads it. Today it catches signals for the CLI; later utimensat with
// nanoseconds and mknod belong here too. It must never hold policy: callers decide what a
// signal means; this only reports it.
import {createRequire} from 'node:module'

const require = createRequire(import.meta.url)

export interface Sys {
  /**
   * Installs handlers for SIGINT, SIGTERM and SIGHUP (once; later calls return the same
   * state). Returns shared memory: [0] the first signal caught (0: none), [1] set non-zero by
   * the caller when it has taken the signal and begun to stop, [2] signals caught so far.
   * If the signal is not taken within `graceMs`, or is not over within `afterTakenMs` of
   * being taken, or a second signal comes, the process ends by the signal's default action.
   */
  catchSignals(graceMs: number, afterTakenMs: number): Int32Array
}

let loaded: Sys | null = null

/** The addon (throws if it was not built: run `npm ci`). */
export function sys(): Sys {
  // src/sys.ts, dist/sys.js and the bundle dist/fast.mjs all sit one level below the root.
  loaded ??= require('../native/build/Release/prism_sys.node') as Sys
  return loaded
}
