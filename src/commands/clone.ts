import {pushAll} from '../arrays.js'
import fs from 'node:fs'
import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {parseImageLoc} from '../cli/locate.js'
import {PrismError, hostReason} from '../errors.js'
import {nameText} from '../format/name.js'
import {servedTarget} from '../cli/served.js'
import type {ServedCloneRequest, ServedTarget} from '../cli/servedexpand.js'
import type {CloneMode, CloneResult, CloneStats} from '../clone/clone.js'

export default class Clone extends PrismCommand {
  static summary = 'Make a new fileset from an existing one (or a subtree of one), sharing its files'
  static description = `No file data is copied: files are shared and copied on write, per file and then per block.
--mode async (the default) returns as soon as the clone's root exists: the clone is usable at once, shows the source exactly as it was, and is expanded by a background process and on demand (see 'prism status', 'prism expand'). --mode lazy expands only what is used. --mode sync expands the whole tree before returning. A graft (DST = FILESET:/path) is always synchronous.
SRC is a fileset or FILESET:/path. DST is a new fileset's name (generated and printed when omitted), or FILESET:/path inside an existing fileset to graft the clone there.
--exclude PATTERN leaves out what matches, as a .gitignore does: a pattern without a slash matches a name at any depth (*.log, newfile); one with a slash (other than a trailing one) is anchored at the clone's top, a leading / optional (etc/*.conf = /etc/*.conf); ** spans directories (**/x, a/**, a/**/b); a trailing / matches directories only (cache/); {a,b}, *, ?, [...] as in picomatch; !PATTERN takes back what an earlier pattern left out (the last match decides; nothing below an excluded directory comes back). --exclude-from FILE reads patterns as a .gitignore (# comments, blank lines), after those of --exclude. A pattern that matches nothing is a warning, in every mode.
--replace PATH=SOURCE puts a substitute at PATH: @empty-dir, @empty-file, a host path, or FILESET:/path. Paths marked with 'prism noclone' are always left out.`
  static examples = [
    '<%= config.bin %> clone root --exclude /home --exclude /var/log',
    '<%= config.bin %> clone root scratch --mode lazy',
    '<%= config.bin %> clone root ci-7 --mode sync',
    '<%= config.bin %> clone root sandbox --replace /home=@empty-dir --replace /etc/hostname=./hostname',
    '<%= config.bin %> clone root:/srv/site web:/srv/site',
    "<%= config.bin %> clone root ci-42 --exclude-from .cloneignore --exclude '**/*.log'",
    "<%= config.bin %> clone root ci-43 -x 'etc/*' -x '!etc/hosts' -x 'cache/'",
  ]
  static args = {
    src: Args.string({description: 'FILESET or FILESET:/path to clone', required: true}),
    dst: Args.string({description: 'new fileset name, or FILESET:/path to graft at'}),
  }
  static flags = {
    ...imageFlags,
    exclude: Flags.string({char: 'x', description: 'leave out paths matching this pattern (.gitignore rules; !PATTERN takes back; repeat the flag for several)', multiple: true, multipleNonGreedy: true, helpValue: 'PATTERN'}),
    'exclude-from': Flags.string({description: 'file of exclude patterns read as a .gitignore (# comments, blank lines)', helpValue: 'FILE'}),
    replace: Flags.string({char: 'r', description: 'put SOURCE at PATH in the clone (repeat the flag for several)', multiple: true, multipleNonGreedy: true, helpValue: 'PATH=SOURCE'}),
    mode: Flags.string({description: 'async: usable at once, expanded in the background and on demand; lazy: expanded only on demand; sync: expanded before returning', options: ['async', 'lazy', 'sync'], default: 'async', helpValue: 'async|lazy|sync'}),
    background: Flags.boolean({description: 'start the background expander (async mode)', default: true, allowNo: true}),
  }

  async run() {
    const {args, flags} = await this.parse(Clone)
    const src = parseImageLoc(args.src.includes(':') ? args.src : `${args.src}:/`)
    if (!src) throw new PrismError('EUSAGE', `'${args.src}' is not a fileset or FILESET:/path`)
    let dst: {fileset: string, path?: string} | null = null
    // An empty DST is a name (an invalid one), not the absence of one.
    if (args.dst !== undefined) dst = args.dst.includes(':') ? parseImageLoc(args.dst) : {fileset: args.dst}
    if (args.dst !== undefined && !dst) throw new PrismError('EUSAGE', `'${args.dst}' is not a fileset name or FILESET:/path`)
    const {clone, parseExcludeFile} = await import('../clone/clone.js')
    const exclude = [...(flags.exclude ?? [])]
    if (flags['exclude-from']) {
      try {
        // (its bytes, each one that is not UTF-8 kept as itself, as in a command-line pattern)
        pushAll(exclude, parseExcludeFile(nameText(fs.readFileSync(flags['exclude-from']))))
      } catch (e) {
        throw new PrismError('ENOENT', `${flags['exclude-from']}: ${hostReason(e)}`)
      }
    }
    const replace = (flags.replace ?? []).map((r) => {
      const i = r.indexOf('=')
      if (i <= 0) throw new PrismError('EUSAGE', `--replace '${r}' must be PATH=SOURCE`)
      return {path: r.slice(0, i), source: r.slice(i + 1)}
    })
    if (!flags.background) this.noBackground = true
    const spin = await this.spinner('cloning')
    const onProgress = (s: CloneStats) => spin.update(`cloning: ${s.dirs} directories, ${s.shared} files shared`)
    const mode = flags.mode as CloneMode
    // On an image a server holds, the clone is made by the server, in slices (src/cli/servedexpand.ts).
    const served = servedTarget()
    try {
      const res = served
        ? await this.servedClone(served, {src, dst, exclude, mode, replace}, onProgress, flags.wait)
        : await this.withVolume(flags, true, (vol) => clone(vol, src, dst, {
          exclude, replace, mode, onProgress, onWarning: (m) => this.notice(`warning: ${m}`),
        }))
      spin.stop()
      this.log(dst?.path !== undefined ? `cloned ${args.src} to ${res.fileset}:${res.path}` : res.fileset)
      return res
    } catch (e) {
      spin.stop()
      throw e
    }
  }

  /** The clone made by the server; its warnings said as a clone alone says them. */
  private async servedClone(t: ServedTarget, req: ServedCloneRequest, onProgress: (s: CloneStats) => void, wait: number): Promise<CloneResult> {
    const {servedClone} = await import('../cli/servedexpand.js')
    const res = await servedClone(t, req, {onProgress, wait})
    const {patternShown} = await import('../fs/match.js')
    for (const p of res.unmatched) this.notice(`warning: --exclude '${patternShown(p)}' matched nothing`)
    return res
  }
}
