import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {servedTarget} from '../cli/served.js'
import {PrismError} from '../errors.js'

export default class Chmod extends PrismCommand {
  static summary = 'Change permissions of files in the image'
  static examples = ['<%= config.bin %> chmod 600 root:/etc/shadow', '<%= config.bin %> chmod u+x,go-w root:/usr/local/bin/tool', '<%= config.bin %> chmod -R go-w,a+X web:/srv/site']
  static args = {mode: Args.string({description: 'octal (755) or symbolic (u+x,go-w)', required: true}), paths: Args.string({description: 'FILESET:/path', required: true})}
  static strict = false
  static enableJsonFlag = false
  static flags = {
    ...imageFlags,
    recursive: Flags.boolean({char: 'R', description: 'change everything below a directory too (symlinks are neither changed nor followed)'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Chmod)
    const [mode, ...rest] = argv as string[]
    const locs = rest.map(imageLoc)
    const {chmodPath, parseMode} = await import('../ops/attrs.js')
    // A mode that does not parse is a usage error, before any path is touched.
    try {
      parseMode(mode, 0, false)
    } catch (e) {
      throw new PrismError('EUSAGE', (e as Error).message)
    }
    const {Failures} = await import('../cli/each.js')
    const failures = new Failures()
    // On a served image, its server changes the modes, in slices (src/cli/servedattrs.ts).
    const served = servedTarget()
    if (served) {
      const {askAttrs} = await import('../cli/servedattrs.js')
      await askAttrs(served, 'chmod', mode, locs, {recursive: flags.recursive}, failures.report)
      failures.settle()
      return
    }
    const {namespace, forEachItem} = await import('../fs/image.js')
    await this.withVolume(flags, true, (vol) => forEachItem(vol, locs, failures.report, (loc) => {
      const ns = namespace(vol, loc.fileset)
      if (flags.recursive) chmodPath(ns, loc.path, (cur, isDir) => parseMode(mode, cur, isDir))
      else {
        const st = ns.stat(loc.path, true)
        ns.chmod(loc.path, parseMode(mode, st.perm, st.type === 'dir'))
      }
    }))
    failures.settle()
  }
}
