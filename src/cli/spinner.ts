// The progress line of long commands: ora on stderr when stdout is a terminal, nothing
// otherwise (or with --json). Shared by PrismCommand and the start-up fast paths.

export interface Spinner {
  update: (text: string) => void
  stop: (final?: string) => void
}

export async function spinner(text: string, json: boolean): Promise<Spinner> {
  if (!process.stdout.isTTY || json) return {update: () => {}, stop: () => {}}
  const {default: ora} = await import('ora')
  const s = ora({text, stream: process.stderr}).start()
  return {
    // Work runs synchronously, so each update draws a frame itself.
    update: (t: string) => { s.text = t; s.render() },
    stop: (final?: string) => { if (final) s.succeed(final); else s.stop() },
  }
}
