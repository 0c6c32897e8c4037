// Writes the per-command reference of README.md from the commands' own definitions, so that
// the README and `prism CMD --help` cannot drift apart: between the marker comments
//   <!-- prism CMD (any remark) -->  and  <!-- end prism CMD -->
// goes what `prism CMD --help` shows under USAGE, ARGUMENTS, FLAGS and EXAMPLES, rendered
// by the same help class (src/cli/help.ts) at 100 columns. The prose around the markers is
// the README's own. Run after `npm run build` (it reads oclif.manifest.json and dist/).
//   node scripts/readme.mjs           rewrite README.md
//   node scripts/readme.mjs --check   exit 1 if README.md is not what it would write
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

// oclif reads these when it loads: a fixed width, and no colour.
process.env.OCLIF_COLUMNS = '100'
process.env.FORCE_COLOR = '0'
const {Config, loadHelpClass} = await import('@oclif/core')

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const readmePath = path.join(root, 'README.md')
const check = process.argv.includes('--check')

const config = await Config.load(root)
const Help = await loadHelpClass(config)
const help = new Help(config, {sections: ['usage', 'arguments', 'flags', 'examples'], stripAnsi: true})

/** The reference of one command, as the README shows it. */
export function reference(id) {
  const cmd = config.findCommand(id)
  if (!cmd) return null
  // eslint-disable-next-line no-control-regex
  const text = help.formatCommand(cmd).replace(/\u001b\[[0-9;]*m/g, '').replace(/[ \t]+$/gm, '').trimEnd()
  return '```\n' + text + '\n```\n'
}

const BLOCK = /(<!-- prism ([a-z]+(?: [a-z]+)*)(?: \([^)]*\))? -->\n)([\s\S]*?)(<!-- end prism \2 -->)/g
const readme = fs.readFileSync(readmePath, 'utf8')
const problems = []
const seen = new Set()
const next = readme.replace(BLOCK, (all, open, name, _body, close) => {
  const id = name.trim().replace(/ /g, ':')
  seen.add(id)
  const ref = reference(id)
  if (ref === null) {
    problems.push(`README.md has a block for 'prism ${name}', which is not a command`)
    return all
  }
  return open + ref + close
})
for (const c of config.commands) {
  // (oclif may hand back ids with the topic separator, a space, in place of ':')
  const id = c.id.replace(/ /g, ':')
  const words = id.replace(/:/g, ' ')
  if (!c.hidden && !seen.has(id)) problems.push(`README.md has no reference block for 'prism ${words}' (add <!-- prism ${words} --> and <!-- end prism ${words} --> where it belongs)`)
}
if (problems.length) {
  for (const p of problems) console.error(p)
  process.exit(1)
}
if (check) {
  if (next !== readme) {
    const stale = []
    for (const m of readme.matchAll(BLOCK)) if (m[3] !== reference(m[2].trim().replace(/ /g, ':'))) stale.push(m[2])
    console.error(`README.md is out of date for: ${stale.join(', ')}; run 'npm run build && npm run readme'`)
    process.exit(1)
  }
  console.log('README.md: the command reference matches the commands')
} else {
  if (next !== readme) fs.writeFileSync(readmePath, next)
  console.log(`README.md: ${seen.size} command references ${next !== readme ? 'rewritten' : 'already current'}`)
}
