import {Args} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc} from '../cli/locate.js'
import {parseMode} from '../cli/output.js'
import {PrismError} from '../errors.js'

export default class Chmod extends PrismCommand {
  static summary = 'Change permissions of files in the image'
  static examples = ['<%= config.bin %> chmod 600 root:/etc/shadow', '<%= config.bin %> chmod u+x,go-w root:/usr/local/bin/tool']
  static args = {mode: Args.string({description: 'octal (755) or symbolic (u+x,go-w)', required: true}), paths: Args.string({description: 'FILESET:/path', required: true})}
  static strict = false
  static enableJsonFlag = false
  static flags = {...imageFlags}

  async run() {
    const {argv, flags} = await this.parse(Chmod)
    const [mode, ...rest] = argv as string[]
    const locs = rest.map(imageLoc)
    const {namespace} = await import('../fs/image.js')
    await this.withVolume(flags, true, (vol) => {
      for (const loc of locs) {
        const ns = namespace(vol, loc.fileset)
        const st = ns.stat(loc.path, true)
        let perm: number
        try {
          perm = parseMode(mode, st.perm, st.type === 'dir')
        } catch (e) {
          throw new PrismError('EUSAGE', (e as Error).message)
        }
        ns.chmod(loc.path, perm)
      }
    })
  }
}
