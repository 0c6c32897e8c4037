// The progress line of long commands, shared by PrismCommand and the start-up fast paths:
// ora, drawn on stderr only when stderr is a terminal wide enough to show it, never when
// stderr is redirected, never with --json. It must never install signal handlers or touch
// stdin (ora's hideCursor and discardStdin would: the first makes signal-exit register
// process.on('SIGINT'), which takes the signal from src/cli/signals.ts, the second puts the
// terminal in raw mode so that Ctrl-C sends no SIGINT at all), never start ora's timer (it
// could draw after the terminal shrank), and never draw on a line narrower than MIN_COLUMNS:
// ora's line clearing divides by the width, and at 0 columns it clears forever.

export interface Spinner {
  update: (text: string) => void
  stop: (final?: string) => void
}

/** Narrower terminals get no progress line. */
export const MIN_COLUMNS = 20
/** Frames are drawn at most this often (work calls update far more often). */
const FRAME_MS = 80

const none: Spinner = {update: () => {}, stop: () => {}}

/** Whether a progress line can be drawn on `stream` now. */
export function canDraw(stream: NodeJS.WriteStream): boolean {
  const env = process.env
  return stream.isTTY === true && (stream.columns ?? 0) >= MIN_COLUMNS && env.TERM !== 'dumb' && !('CI' in env)
}

export async function spinner(text: string, json: boolean): Promise<Spinner> {
  const stream = process.stderr
  if (json || !canDraw(stream)) return none
  const {default: ora} = await import('ora')
  // isEnabled: decided above; ora's own test (is-interactive) is the same.
  const s = ora({text: fit(text, stream), stream, hideCursor: false, discardStdin: false, isEnabled: true})
  let drawn = false
  let last = 0
  const draw = (t: string, force: boolean) => {
    const now = Date.now()
    if (!force && now - last < FRAME_MS) return
    last = now
    // The terminal may have shrunk (or lost its size) since: then clear and draw no more.
    if (!canDraw(stream)) {
      if (drawn) s.clear()
      drawn = false
      return
    }
    s.text = fit(t, stream) // one line: ora clears exactly what it drew
    s.render()
    drawn = true
  }
  draw(text, true)
  return {
    // Work runs synchronously (ora's timer would never fire), so each update draws a frame.
    update: (t: string) => draw(t, false),
    stop: (final?: string) => {
      if (drawn) s.clear()
      drawn = false
      if (final && canDraw(stream)) s.succeed(fit(final, stream))
    },
  }
}

/** Cuts `text` to what fits on one line after ora's frame and a space. */
function fit(text: string, stream: NodeJS.WriteStream): string {
  const room = Math.max(1, (stream.columns ?? 80) - 3)
  const line = text.replace(/\s*\n[\s\S]*$/, '')
  return line.length <= room ? line : line.slice(0, room - 1) + '…'
}
