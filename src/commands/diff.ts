import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {nameShown} from '../format/name.js'

export default class Diff extends PrismCommand {
  static summary = 'List what changed between two filesets or subtrees'
  static description = `Codes, as zfs diff: - removed, + added, M content modified, R renamed (old -> new), A attributes changed (mode, owner, modification time or the noclone flag; same content).
Files both sides share (one inode) are never read, and shared subtrees that are not yet expanded are skipped. A rename is found by inode number; a shared file that was changed on one side was copied first, so it shows as M. On a damaged image, what cannot be read is named on stderr (a directory: its subtree is left out), the rest is compared, and the exit status is 1.`
  static examples = [
    '<%= config.bin %> diff root root-1',
    '<%= config.bin %> diff root:/etc sandbox:/etc --json',
  ]
  static args = {
    a: Args.string({description: 'FILESET[:/path], the older side', required: true}),
    b: Args.string({description: 'FILESET[:/path], the newer side', required: true}),
  }
  static flags = {...imageFlags}

  async run() {
    const {args, flags} = await this.parse(Diff)
    const {diff} = await import('../diff/diff.js')
    const result = await this.withVolume(flags, false, (vol) => diff(vol, side(args.a), side(args.b)))
    // On a damaged image, what could not be compared is named (one line each, exit 1), the rest listed.
    // (the path is the entries' own: relative to both sides, as the listing's)
    const {errorLine} = await import('../cli/notices.js')
    for (const u of result.unreadable) process.stderr.write(errorLine(`cannot compare '${u.path}': ${u.message}`))
    if (result.unreadable.length) process.exitCode = 1
    if (this.jsonEnabled()) {
      const {readInodes, ...stats} = result.stats
      void readInodes
      this.logJson({entries: result.entries, stats, unreadable: result.unreadable})
      return
    }
    for (const e of result.entries) this.log(e.code === 'R' ? `R\t${nameShown(e.path)} -> ${nameShown(e.to!)}` : `${e.code}\t${nameShown(e.path)}`)
  }
}

/** FILESET or FILESET:/path. */
function side(arg: string): {fileset: string, path: string} {
  const m = /^([A-Za-z0-9_][A-Za-z0-9._-]*)(?::(.*))?$/s.exec(arg)
  if (!m) throw new Error(`invalid fileset '${arg}': write FILESET or FILESET:/path`)
  const p = m[2] === undefined || m[2] === '' ? '/' : m[2]
  return {fileset: m[1], path: p.startsWith('/') ? p : '/' + p}
}
