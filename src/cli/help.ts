// prism's help class (package.json oclif.helpClass): oclif's own help, with one change. oclif
// writes a repeatable flag as `-s FILE...`, which reads as one flag taking several files; prism
// writes `[-s FILE]...` in the synopsis and `-s, --signatures=FILE` in the flag list (the
// flag's description says it repeats). It must stay a thin layer over oclif's help: the README's
// per-command reference is rendered by it too (scripts/readme.mjs).
import {CommandHelp, Help, type Command} from '@oclif/core'

type Flag = Command.Flag.Any
type Option = {name: string, char?: string, helpValue?: string | string[]}

function repeatable(flags: Record<string, Flag> | undefined): Option[] {
  return Object.values(flags ?? {}).filter((f) => f.type === 'option' && f.multiple && !f.hidden) as Option[]
}

class PrismCommandHelp extends CommandHelp {
  protected defaultUsage(): string {
    let usage = super.defaultUsage()
    for (const f of repeatable(this.command.flags)) {
      const value = typeof f.helpValue === 'string' ? f.helpValue : Array.isArray(f.helpValue) ? f.helpValue.join(' ') : '<value>'
      const one = `${f.char ? `-${f.char}` : `--${f.name}`} ${value}`
      if (usage.includes(`[${one}...]`)) usage = usage.replace(`[${one}...]`, `[${one}]...`)
      else usage = usage.replace(`${one}...`, `(${one})...`)
    }
    return usage
  }

  protected flagHelpLabel(flag: Flag, showOptions?: boolean): string {
    const label = super.flagHelpLabel(flag, showOptions)
    return flag.type === 'option' && flag.multiple ? label.replace('...', '') : label
  }
}

export default class PrismHelp extends Help {
  protected CommandHelpClass = PrismCommandHelp
}
