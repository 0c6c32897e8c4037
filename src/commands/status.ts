import {PrismCommand, imageFlags} from '../cli/base.js'
import {table} from '../cli/output.js'

function duration(ms: number | null): string {
  if (ms === null) return '-'
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
}

export default class Status extends PrismCommand {
  static summary = 'Show the clones that are still being expanded, with their progress'
  static description = `For each asynchronous or lazy clone not yet fully expanded: its source, the directories expanded and the directories known so far (the total grows as expansion discovers the tree), and for an async clone an estimate of the time left at the rate so far. BACKGROUND says whether the image's background expander is running.`
  static examples = ['<%= config.bin %> status', '<%= config.bin %> status --json']
  static flags = {...imageFlags}

  async run() {
    const {flags} = await this.parse(Status)
    const {expansionStatus} = await import('../fs/expand.js')
    const {expanderRunning} = await import('../clone/background.js')
    const image = this.imagePath(flags.image)
    this.noBackground = true // status only reports
    const list = await this.withVolume(flags, false, (vol) => expansionStatus(vol))
    const background = list.some((c) => c.mode === 'async') ? expanderRunning(image) : false
    if (list.length === 0) this.log('no clone is being expanded')
    else {
      this.log(table([['NAME', 'MODE', 'SOURCE', 'DIRS', 'ELAPSED', 'LEFT'], ...list.map((c) => [
        c.fileset, c.mode, c.source, `${c.done}/${c.known}`, duration(c.elapsedMs), c.mode !== 'async' ? 'on demand' : c.etaMs === null ? 'unknown' : `~${duration(c.etaMs)}`,
      ])], [3]))
      if (list.some((c) => c.mode === 'async')) this.log(`background expander: ${background ? 'running' : 'not running (the next prism command starts it)'}`)
    }
    return {expanding: list, background}
  }
}
