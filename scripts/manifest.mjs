// Writes oclif.manifest.json so that `prism --help` lists commands without importing them.
import {Plugin} from '@oclif/core'
import {writeFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import path from 'node:path'

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const plugin = new Plugin({ignoreManifest: true, isRoot: true, respectNoCacheDefault: true, root, type: 'core'})
await plugin.load()
writeFileSync(path.join(root, 'oclif.manifest.json'), JSON.stringify(plugin.manifest, null, 2) + '\n')
console.log(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).length} commands`)
