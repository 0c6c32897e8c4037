// oclif's `command_not_found` hook: `prism lss` names the nearest command. On a terminal it
// is @oclif/plugin-not-found's own hook (it asks "Did you mean ls?" and runs it); in a
// non-interactive shell, where that plugin would print two lines, exit 127 and keep its
// suggestion to itself, it is one line and the usage status:
//   prism: 'lss' is not a prism command; did you mean 'ls'? ('prism help' lists the commands)
// It must never prompt when stdin or stderr is not a terminal.
import {Errors, toConfiguredId, type Hook} from '@oclif/core'
import {closest} from 'fastest-levenshtein'
import {EXIT} from '../errors.js'

/** e2fsck's status for a usage error (src/cli/fsck.ts FSCK_USAGE; not imported: it loads the checker) */
const FSCK_USAGE = 16

const hook: Hook<'command_not_found'> = async function (opts) {
  // `prism fsck extra`: oclif reads the words of a command that takes no argument as a longer
  // command's name. It is that command with an argument too many: its usage error.
  const parts = opts.id.split(':')
  for (let n = parts.length - 1; n > 0; n--) {
    const id = parts.slice(0, n).join(':')
    if (!opts.config.findCommand(id)) continue
    const shown = toConfiguredId(id, opts.config)
    throw new Errors.CLIError(`unexpected argument '${parts.slice(n).join(' ')}' (see '${opts.config.bin} ${shown} --help')`, {exit: id === 'fsck' ? FSCK_USAGE : EXIT.USAGE})
  }
  // `prism -i IMG` (bin/run.js moves a leading image flag after the command), `prism -x`: a
  // flag where the command goes.
  if (opts.id === '-i' || opts.id === '--image' || opts.id.startsWith('--image=')) {
    throw new Errors.CLIError(`no command after the image: ${opts.config.bin} [-i IMAGE] COMMAND [ARGUMENTS] [FLAGS] ('${opts.config.bin} help' lists the commands)`, {exit: EXIT.USAGE})
  }
  if (opts.id.startsWith('-')) {
    throw new Errors.CLIError(`a command comes first: ${opts.config.bin} COMMAND [ARGUMENTS] [FLAGS], '${opts.id}' is not one ('${opts.config.bin} help' lists the commands)`, {exit: EXIT.USAGE})
  }
  if (process.stdin.isTTY && process.stderr.isTTY) {
    const {default: plugin} = await import('@oclif/plugin-not-found')
    return plugin.call(this, opts)
  }
  const hidden = new Set(opts.config.commands.filter((c) => c.hidden).map((c) => c.id))
  const ids = [...opts.config.commandIDs, ...opts.config.commands.flatMap((c) => c.aliases)].filter((id) => !hidden.has(id))
  const bin = opts.config.bin
  const typed = toConfiguredId(opts.id, opts.config)
  const near = ids.length > 0 ? toConfiguredId(closest(opts.id, ids), opts.config) : null
  throw new Errors.CLIError(`'${typed}' is not a ${bin} command${near ? `; did you mean '${near}'?` : ''} ('${bin} help' lists the commands)`, {exit: EXIT.USAGE})
}

export default hook
