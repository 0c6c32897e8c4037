import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {parseImageLoc} from '../cli/locate.js'
import {humanSize, parseSize} from '../cli/output.js'
import {PrismError} from '../errors.js'
import {nameShown} from '../format/name.js'

const KEYS = ['coaw']

export default class SetCommand extends PrismCommand {
  static summary = 'Show or change the settings of a fileset, file or directory (coaw: the locality policy)'
  static description = `coaw is copy-on-abundant-write, the locality policy of the write path (README "Locality"): on keeps each region of a file together as it is written and rewritten, off is pure block copy-on-write. Its value is off, on, inherit (take the fileset's setting, then the image's), or a region size from 64K to 1M (on, with regions of that size). A fileset's setting is inherited by its files and by its clones; a directory's by what is created in it afterwards; a file's beats both. Without KEY=VALUE, shows the settings in force. Several targets may be given, before the settings: each is set on its own, one that fails is reported and the others are set (exit 1). With --json, the target's object; with several targets, an array of them.`
  static examples = [
    '<%= config.bin %> set vm coaw=off',
    '<%= config.bin %> set vm:/disks/db.img coaw=1M',
    '<%= config.bin %> set root:/var/lib/postgres coaw=on',
    '<%= config.bin %> set vm:/disks/db.img coaw=inherit',
    '<%= config.bin %> set vm:/disks/db.img --json',
    '<%= config.bin %> set root:/srv/a.img root:/srv/b.img coaw=1M',
  ]
  static args = {
    target: Args.string({description: 'FILESET (its own setting) or FILESET:/path (a file or directory); several may be given', required: true}),
    settings: Args.string({description: 'KEY=VALUE (coaw=off|on|inherit|64K..1M), after the targets'}),
  }
  static strict = false
  static flags = {...imageFlags}

  async run() {
    const {argv, flags} = await this.parse(SetCommand)
    // Targets first, then KEY=VALUE settings (as `zfs set` takes several datasets).
    const args = argv as string[]
    const first = args.findIndex((a) => /^[a-z]+=/.test(a))
    const names = first < 0 ? args : args.slice(0, first)
    const assignments = first < 0 ? [] : args.slice(first)
    if (names.length === 0) throw new PrismError('EUSAGE', `missing argument TARGET before ${assignments[0]}`)
    // (`set vm coaw`: a setting without its value, not a second target named like a key)
    const bare = names.slice(1).find((n) => KEYS.includes(n))
    if (bare) throw new PrismError('EUSAGE', `'${bare}' is not KEY=VALUE (keys: ${KEYS.join(', ')})`)
    const targets = names.map((target) => {
      const loc = parseImageLoc(target)
      if (!loc && !/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(target)) throw new PrismError('EUSAGE', `'${target}' is neither a fileset name nor FILESET:/path`)
      return loc ? {fileset: loc.fileset, path: loc.path} : {fileset: target}
    })
    const {parseLocality} = await import('../format/locality.js')
    let code: number | null = null
    for (const a of assignments) {
      const m = /^([a-z]+)=(.*)$/.exec(a)
      if (!m) throw new PrismError('EUSAGE', `'${a}' is not KEY=VALUE (keys: ${KEYS.join(', ')}; the targets come first)`)
      if (!KEYS.includes(m[1])) throw new PrismError('EUSAGE', `unknown setting '${m[1]}' (keys: ${KEYS.join(', ')})`)
      try {
        code = parseLocality(m[2], parseSize)
      } catch (e) {
        throw new PrismError('EUSAGE', (e as Error).message)
      }
    }
    type Out = {target: string, fileset: string, path?: string, setting: string, effective: ReturnType<import('../fs/namespace.js').Namespace['locality']>}
    const outs = await this.short(flags, 'set', {targets, code}, code !== null) as Out[]
    const json = outs.map((out) => {
      const e = out.effective
      const from = {file: 'its own setting', fileset: `fileset ${out.fileset}`, image: 'the image default', default: 'the built-in default'}[e.from]
      this.log(`${nameShown(out.target)}: coaw=${out.setting} (in force: ${e.on ? `on, ${humanSize(e.regionBytes)} regions` : 'off'}, from ${from})`)
      return {target: out.target, fileset: out.fileset, ...(out.path !== undefined ? {path: out.path} : {}),
        coaw: {setting: out.setting, on: e.on, regionBytes: e.regionBytes, from: e.from}}
    })
    // (one target: its object, as before; several: an array of them, those that could be set)
    return targets.length === 1 ? json[0] : json
  }
}
