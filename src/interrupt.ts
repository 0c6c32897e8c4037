// Stopping long work cleanly on a signal. The library is synchronous, so it cannot be told to
// stop from outside: instead it asks, at points where stopping is safe (Volume.maybeCommit,
// its progress ticks, lock waits), and throws PrismError 'EINTR' if it should; the caller's
// withImage then drops the running transaction. Whoever runs the library (the CLI) sets the
// poll; the library never imports the code that sets it, and without a poll nothing is checked.
//
// Past its point of no return a command's work is not stopped (uninterrupted()): once what it
// does is published (committed, or in the running transaction that the caller commits), a
// signal can no longer undo it, so throwing 'EINTR' there would report "interrupted" for work
// that is done. What is left then (moving a staged tree in place, freeing what it replaced,
// the last commit) goes on, or, where it may be left for later (the reaper's freeing, which
// the next writable open resumes), ends early; the command ends as done.
import {PrismError} from './errors.js'

/** Returns the number of a signal that asks to stop, or 0. */
export type InterruptPoll = () => number
/**
 * Told when work past its point of no return begins (true) and ends (false), outermost only:
 * the CLI then gives the process time to finish after a signal (src/cli/signals.ts).
 */
export type InterruptHold = (on: boolean) => void

let poll: InterruptPoll | null = null
let hold: InterruptHold | null = null
let held = 0

export function setInterruptPoll(p: InterruptPoll | null, h: InterruptHold | null = null): void {
  poll = p
  hold = h
}

/** Throws PrismError 'EINTR' (exit status 128 + the signal) if the work should stop. */
export function checkInterrupt(): void {
  if (poll === null) return
  const sig = poll()
  if (sig !== 0 && held === 0) throw new PrismError('EINTR', 'interrupted', 128 + sig)
}

/** True when a signal asks to stop; never throws (for work that may end early: see uninterrupted). */
export function interruptPending(): boolean {
  return poll !== null && poll() !== 0
}

/**
 * Runs `fn`, work past its point of no return: checkInterrupt() does not throw inside it, and
 * code that may leave the rest for later asks interruptPending(). Nests.
 */
export function uninterrupted<T>(fn: () => T): T {
  if (held++ === 0) hold?.(true)
  try {
    return fn()
  } finally {
    if (--held === 0) hold?.(false)
  }
}

/** How often a wait for input asks whether a signal came (see interruptible). */
const INPUT_POLL_MS = 20

/**
 * Awaits `p`, input that may be long in coming or never come (standard input from a terminal,
 * or a pipe whose writer waits), and stops with PrismError 'EINTR' as soon as a signal asks
 * to: nothing is held while input is awaited (the image is not open yet), and no library
 * point would ask in the meantime, so without this the process ended only after its grace
 * time, by the signal's default action. `stop` ends the reading (destroys the stream); its
 * own error then is not the one thrown.
 */
export async function interruptible<T>(p: Promise<T>, stop: () => void): Promise<T> {
  if (poll === null) return p
  let timer: NodeJS.Timeout | undefined
  const asked = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      try {
        checkInterrupt()
      } catch (e) {
        clearInterval(timer)
        stop()
        reject(e)
      }
    }, INPUT_POLL_MS)
    timer.unref()
  })
  try {
    return await Promise.race([p, asked])
  } finally {
    clearInterval(timer)
    p.catch(() => {}) // (its end after a stop is of no interest)
  }
}
