import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {parseImageLoc} from '../cli/locate.js'
import {PrismError} from '../errors.js'

export default class Mount extends PrismCommand {
  static summary = 'Mount a fileset (or the whole image) as a filesystem, over FUSE; with no arguments, list the mounts'
  static description = `One server per image serves every mount of it: the first mount starts it in the background (it holds the image until its last unmount), later ones join it. A whole-image mount shows each fileset as a directory. Mounts are nosuid and nodev unless -o suid or -o dev is given; the kernel checks permissions (default_permissions); -o allow_other lets other users in. Writes are committed on fsync and at least every commit= seconds (default 5); prism umount commits everything and leaves the image clean. Needs /dev/fuse (and root, or fusermount3 for a user's own mounts).`
  static examples = [
    '<%= config.bin %> mount root /srv/root',
    '<%= config.bin %> mount /srv/prism',
    '<%= config.bin %> mount vm7:/home /mnt/home -o ro,allow_other',
    '<%= config.bin %> mount root /srv/root -o commit=1 --foreground',
    '<%= config.bin %> mount',
  ]
  static args = {
    source: Args.string({description: 'FILESET or FILESET:/path to mount (omit for the whole image)'}),
    mountpoint: Args.string({description: 'directory to mount on'}),
  }
  static flags = {
    ...imageFlags,
    options: Flags.string({char: 'o', multiple: true, multipleNonGreedy: true, description: 'mount options: ro, suid, dev, allow_other, commit=SECONDS', helpValue: 'OPTIONS'}),
    foreground: Flags.boolean({char: 'f', description: 'serve in this process until unmounted, instead of in the background'}),
  }

  // --foreground serves in this process: signals unmount and close the image (src/cli/serve.ts).
  protected ownSignals = process.argv.includes('--foreground') || process.argv.includes('-f')

  async run() {
    const {args, flags} = await this.parse(Mount)
    const {parseMountOptions, checkMountpoint, mountVia, listAll} = await import('../cli/mount.js')
    const path = await import('node:path')
    if (args.source === undefined) {
      // (`prism mount -o ro` or `-f` alone would list the mounts and exit 0, as if it had mounted)
      if (flags.options !== undefined || flags.foreground) {
        throw new PrismError('EUSAGE', `${flags.foreground ? '--foreground' : '-o'} needs a MOUNTPOINT (with no arguments, prism mount lists the mounts)`)
      }
      let image: string | undefined
      try {
        image = path.resolve(this.imagePath(flags.image))
      } catch {
        image = undefined // no image here: every prism mount
      }
      const all = await listAll(image)
      for (const m of all) {
        const what = m.source ? `${m.image}:${m.source}` : m.image
        const state = m.state === 'dead' ? 'server gone: prism umount it' : m.state === 'silent' ? 'server not answering (stopped or hung?): prism umount detaches it' : m.options.join(',')
        this.log(`${what} on ${m.mountpoint} type fuse.prism (${state})`)
      }
      return all
    }
    let source: string | undefined = args.source
    let mp = args.mountpoint
    if (mp === undefined) {
      mp = source
      source = undefined
    }
    let top: {fileset: string, path: string} | null = null
    if (source !== undefined) {
      top = parseImageLoc(source.includes(':') ? source : `${source}:/`)
      if (!top) throw new PrismError('EUSAGE', `'${source}' is not a fileset: write FILESET or FILESET:/path`)
    }
    const o = parseMountOptions(flags.options ?? [])
    const image = path.resolve(this.imagePath(flags.image))
    const mountpoint = checkMountpoint(mp)
    const spec = {top, mountpoint, readOnly: o.readOnly, suid: o.suid, dev: o.dev, allowOther: o.allowOther, commitSeconds: o.commitSeconds}
    if (flags.foreground) {
      const {serveForeground} = await import('../cli/serve.js')
      await serveForeground(image, {idleExit: true, wait: flags.wait, commitSeconds: o.commitSeconds, mount: spec})
      return
    }
    await mountVia(image, spec, flags.wait)
  }
}
