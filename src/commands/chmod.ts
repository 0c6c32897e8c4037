import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {parseMode} from '../cli/output.js'
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
    const {namespace} = await import('../fs/image.js')
    await this.withVolume(flags, true, async (vol) => {
      for (const loc of locs) {
        const ns = namespace(vol, loc.fileset)
        const modeOf = (cur: number, isDir: boolean) => {
          try {
            return parseMode(mode, cur, isDir)
          } catch (e) {
            throw new PrismError('EUSAGE', (e as Error).message)
          }
        }
        if (flags.recursive) {
          const {chmodPath} = await import('../ops/attrs.js')
          chmodPath(ns, loc.path, modeOf)
          continue
        }
        const st = ns.stat(loc.path, true)
        ns.chmod(loc.path, modeOf(st.perm, st.type === 'dir'))
      }
    })
  }
}
