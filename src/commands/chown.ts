import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc, showLoc} from '../cli/locate.js'
import {servedTarget} from '../cli/served.js'

export default class Chown extends PrismCommand {
  static summary = 'Change the owner and group of files in the image'
  static description = `OWNER and GROUP are numbers, or names looked up in that fileset's own /etc/passwd and /etc/group (as chroot --userspec resolves them inside the new root), never the host's. OWNER: takes the owner's login group; :GROUP changes the group only.
As chown(2) on Linux, a change clears the set-user-ID bit (and set-group-ID with group execute) of anything but a directory, and removes a file capability (security.capability). A file shared with other filesets is copied first (its blocks stay shared), so they keep theirs.`
  static examples = [
    '<%= config.bin %> chown 1000:1000 root:/home/alice',
    '<%= config.bin %> chown -R www-data:www-data web:/srv/site',
    '<%= config.bin %> chown -h :staff root:/usr/local/bin/tool-link',
  ]
  static args = {owner: Args.string({description: 'OWNER[:GROUP], OWNER: or :GROUP', required: true}), paths: Args.string({description: 'FILESET:/path...', required: true})}
  static strict = false
  static flags = {
    ...imageFlags,
    recursive: Flags.boolean({char: 'R', description: 'change everything below a directory too (symlinks in the tree are not followed)'}),
    'no-dereference': Flags.boolean({char: 'h', description: 'change a symlink itself, not what it points to'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Chown)
    const [spec, ...rest] = argv as string[]
    const locs = rest.map(imageLoc)
    const {namespace, forEachItem} = await import('../fs/image.js')
    const {checkOwnerSpec, chownPath, parseOwner} = await import('../ops/attrs.js')
    const {Failures} = await import('../cli/each.js')
    checkOwnerSpec(spec)
    const failures = new Failures()
    // On a served image, its server changes the owners, in slices (src/cli/servedattrs.ts).
    const served = servedTarget()
    if (served) {
      const {askAttrs} = await import('../cli/servedattrs.js')
      const changed = await askAttrs(served, 'chown', spec, locs, {recursive: flags.recursive, noDereference: flags['no-dereference']}, failures.report)
      failures.settle()
      return {changed}
    }
    const done: Array<{path: string, inodes: number}> = []
    await this.withVolume(flags, true, (vol) => forEachItem(vol, locs, failures.report, (loc) => {
      const ns = namespace(vol, loc.fileset)
      const inodes = chownPath(ns, loc.path, parseOwner(ns, spec), {recursive: flags.recursive, noDereference: flags['no-dereference']})
      done.push({path: showLoc(loc), inodes})
    }))
    failures.settle()
    return {changed: done}
  }
}
