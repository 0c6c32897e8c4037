// SIGINT, SIGTERM and SIGHUP for prism's commands. The library works synchronously, so a
// JavaScript signal handler would never run while it works: the native addon (src/sys.ts)
// records the signal, and the library asks at its consistent points (src/interrupt.ts) and
// stops with PrismError 'EINTR': the running transaction is dropped, `prism: interrupted` is
// printed, and the exit status is 128 + the signal (130, 143, 129). Where a command does not
// ask in time (blocked reading stdin, say) the addon's watchdog ends the process by the
// signal's default action, so nothing hangs. It must never install a JavaScript handler
// (process.on('SIGINT')): libuv would take the signal from the addon.
import {setInterruptPoll} from '../interrupt.js'
import {sys} from '../sys.js'

/** How long the library has to take a signal before the process ends without its help. */
const GRACE_MS = 1500
/** How long a command may take to stop once it took the signal. */
const UNWIND_MS = 10_000

let state: Int32Array | null = null

/** Catches the signals for the rest of the process (idempotent). */
export function catchSignals(): void {
  if (state) return
  try {
    state = sys().catchSignals(GRACE_MS, UNWIND_MS)
  } catch {
    // The addon was not built: the signals keep their default action (the process ends at
    // once, which the journal survives as it survives a crash).
    return
  }
  const st = state
  setInterruptPoll(() => {
    const sig = Atomics.load(st, 0)
    if (sig !== 0) Atomics.store(st, 1, 1)
    return sig
  }, (on) => {
    // Work past its point of no return (src/interrupt.ts uninterrupted) may not ask in time:
    // a signal meanwhile counts as taken, and the process has UNWIND_MS to finish. Afterwards,
    // if none came, the grace is back to GRACE_MS.
    if (on) Atomics.store(st, 1, 1)
    else if (Atomics.load(st, 0) === 0) Atomics.store(st, 1, 0)
  })
}
