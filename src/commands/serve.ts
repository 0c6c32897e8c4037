import {Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {PrismError} from '../errors.js'

export default class Serve extends PrismCommand {
  static summary = 'Run the server of an image in the foreground (for systemd)'
  static description = `Holds the image and serves its mounts (prism mount joins it) until SIGTERM or SIGINT, then unmounts everything, commits and closes the image clean. With $NOTIFY_SOCKET set (systemd Type=notify, NotifyAccess=all) it tells systemd when it is ready. prism mount starts the same server in the background by itself.`
  static examples = ['<%= config.bin %> serve -i /var/lib/prism/disk.img', 'systemd-run --property=Type=notify --property=NotifyAccess=all prism serve -i /var/lib/prism/disk.img']
  static enableJsonFlag = false
  static flags = {
    ...imageFlags,
    commit: Flags.string({description: 'seconds between commits (default 5)', helpValue: 'SECONDS'}),
    'exit-when-idle': Flags.boolean({hidden: true, description: 'exit after the last unmount (the server prism mount starts)'}),
  }

  // Signals end the server through JavaScript handlers (it unmounts and closes the image), not
  // through the library's interrupt points: the server's work is answering requests.
  protected ownSignals = true

  async run() {
    const {flags} = await this.parse(Serve)
    let commitSeconds: number | undefined
    if (flags.commit !== undefined) {
      commitSeconds = Number(flags.commit)
      if (!/^\d+(\.\d*)?$/.test(flags.commit) || !(commitSeconds > 0)) throw new PrismError('EUSAGE', `invalid --commit '${flags.commit}': give seconds`)
    }
    const path = await import('node:path')
    const {serveForeground} = await import('../cli/serve.js')
    await serveForeground(path.resolve(this.imagePath(flags.image)), {idleExit: flags['exit-when-idle'] ?? false, wait: flags.wait, commitSeconds})
  }
}
