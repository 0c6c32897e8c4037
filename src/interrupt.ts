// Stopping long work cleanly on a signal. The library is synchronous, so it cannot be told to
// stop from outside: instead it asks, at points where stopping is safe (Volume.maybeCommit,
// its progress ticks, lock waits), and throws PrismError 'EINTR' if it should; the caller's
// withImage then drops the running transaction. Whoever runs the library (the CLI) sets the
// poll; the library never imports the code that sets it, and without a poll nothing is checked.
import {PrismError} from './errors.js'

/** Returns the number of a signal that asks to stop, or 0. */
export type InterruptPoll = () => number

let poll: InterruptPoll | null = null

export function setInterruptPoll(p: InterruptPoll | null): void {
  poll = p
}

/** Throws PrismError 'EINTR' (exit status 128 + the signal) if the work should stop. */
export function checkInterrupt(): void {
  if (poll === null) return
  const sig = poll()
  if (sig !== 0) throw new PrismError('EINTR', 'interrupted', 128 + sig)
}
