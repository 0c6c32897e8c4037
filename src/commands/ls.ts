import {pushAll} from '../arrays.js'
import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc, showLoc} from '../cli/locate.js'
import {humanSize, isoTime, lsTime, modeString, table} from '../cli/output.js'
import {nameShown} from '../format/name.js'
import type {FileType} from '../fs/inode.js'
import {checkInterrupt} from '../interrupt.js'

interface Row {
  name: string
  path: string
  type: FileType
  ino: number
  mode: string
  nlink: number
  uid: number
  gid: number
  size: number
  mtime: string
  target?: string
  /** device number of a character or block device */
  rdev?: {major: number, minor: number}
  flags: string[]
}

/** What a plain listing (names only) knows of an entry besides its name, type and inode. */
const NO_STAT = {
  ino: 0, type: 'file' as FileType, mode: 0, perm: 0, nlink: 0, share: 0, uid: 0, gid: 0, size: 0, blocks: 0,
  atime: {s: 0, ns: 0}, mtime: {s: 0, ns: 0}, ctime: {s: 0, ns: 0}, flags: [] as string[], generation: 0, xattrs: [] as string[],
}

export default class Ls extends PrismCommand {
  static summary = 'List directories in the image'
  static description = `As GNU ls, a symlink named on the command line is listed as itself with -l, and without -l only if it does not lead to a directory (a symlink to a directory lists that directory); -H follows symlinks named on the command line, -L every symlink (a link that leads nowhere is then an error). -R never enters a symlink unless -L is given. A path ending in / always means the directory it leads to.`
  static examples = [
    '<%= config.bin %> ls root:/',
    '<%= config.bin %> ls -l root:/etc',
    '<%= config.bin %> ls -lR --json sandbox:/var',
    '<%= config.bin %> ls -lL root:/etc/localtime',
    '<%= config.bin %> ls -lhd root:/var/log root:/etc/passwd',
  ]
  static args = {paths: Args.string({description: 'FILESET:/path (default root:/)'})}
  static strict = false
  static flags = {
    ...imageFlags,
    long: Flags.boolean({char: 'l', description: 'long listing: mode, links, owner, size, time, flags'}),
    recursive: Flags.boolean({char: 'R', description: 'list subdirectories too'}),
    all: Flags.boolean({char: 'a', description: 'include names that start with a dot'}),
    dereference: Flags.boolean({char: 'L', description: 'show what every symlink leads to, not the link'}),
    'dereference-command-line': Flags.boolean({char: 'H', description: 'follow symlinks named on the command line'}),
    human: Flags.boolean({char: 'h', description: 'with -l, sizes in K, M, G (powers of 1024)'}),
    directory: Flags.boolean({char: 'd', description: 'list directories themselves, not their contents'}),
  }

  async run() {
    const {argv, flags} = await this.parse(Ls)
    const locs = ((argv as string[]).length ? (argv as string[]) : ['root:/']).map(imageLoc)
    const {namespace, forEachItem} = await import('../fs/image.js')
    const {EXIT, PrismError, isDamage} = await import('../errors.js')
    const {Failures} = await import('../cli/each.js')
    const {enterDir} = await import('../fs/dir.js')
    const failures = new Failures()
    const detail = flags.long || flags.dereference || this.jsonEnabled()
    const listings: Array<{path: string, entries: Row[]}> = []
    await this.withVolume(flags, false, (vol) => {
      forEachItem(vol, locs, failures.report, (loc) => {
        const ns = namespace(vol, loc.fileset)
        type Stat = ReturnType<typeof ns.stat>
        const row = (name: string, path: string, st: Stat): Row => ({
          name, path, type: st.type, ino: st.ino, mode: modeString(st.type, st.perm), nlink: st.nlink, uid: st.uid, gid: st.gid,
          size: st.size, mtime: isoTime(st.mtime), target: st.target, flags: st.flags,
          ...(st.type === 'chardev' || st.type === 'blockdev' ? {rdev: st.rdev} : {}),
        })
        const dangling = (e: unknown) => e instanceof PrismError && (e.code === 'ENOENT' || e.code === 'ELOOP')
        if (flags.directory) {
          // As ls -d: the path itself, named as given (a symlink as itself unless -H or -L).
          listings.push({path: showLoc(loc), entries: [row(showLoc(loc), loc.path, ns.stat(loc.path, flags.dereference || flags['dereference-command-line']))]})
          return
        }
        // What a path named on the command line shows (GNU ls's rules: see the description).
        let top: Stat
        if (flags.dereference || flags['dereference-command-line']) top = ns.stat(loc.path, true)
        else if (flags.long) top = ns.stat(loc.path, false)
        else {
          const link = ns.stat(loc.path, false)
          top = link
          if (link.type === 'symlink') {
            try {
              const target = ns.stat(loc.path, true)
              if (target.type === 'dir') top = target
            } catch (e) {
              if (!dangling(e)) throw e
            }
          }
        }
        const out: Array<{path: string, entries: Row[]}> = []
        if (top.type !== 'dir') {
          out.push({path: showLoc(loc), entries: [row(loc.path.split('/').filter(Boolean).pop() || '/', loc.path, top)]})
        } else {
          // Each directory to list, with the directories above it: a symlink (with -L) that
          // leads back to one of them is not listed again, as GNU ls says.
          // Depth first, as GNU ls -R: a directory, then each of its subdirectories with all
          // below it, in the listing's order (the next to list is at the end of `todo`).
          const todo = [{dir: loc.path, above: new Set<number>([top.ino])}]
          const seen = new Set<number>([top.ino])
          while (todo.length) {
            checkInterrupt() // (-R: Ctrl-C heard a directory at a time)
            const {dir, above} = todo.pop()!
            const entries: Row[] = []
            const below: typeof todo = []
            // Names alone need no inode: a plain `ls` of a clone still expanding does not
            // expand the directories it lists (readdirStat would, for their link counts).
            // On a damaged image, as GNU ls past what it cannot read: a directory that cannot
            // be listed, or an entry whose inode cannot be read (with -l), is named (exit 1)
            // and the listing goes on.
            const damaged = (what: string, err: unknown): void => {
              if (!isDamage(err)) throw err
              failures.report(new PrismError('EBADIMAGE', `cannot read '${loc.fileset}:${what}': ${err.message}`, EXIT.FAIL))
            }
            let names: ReturnType<typeof ns.readdir>
            try {
              names = ns.readdir(dir)
            } catch (err) {
              damaged(dir, err)
              if (dir !== loc.path) out.push({path: `${loc.fileset}:${dir}`, entries: []})
              continue
            }
            let list: Array<(typeof names)[number] & {st: typeof NO_STAT}>
            try {
              list = detail ? ns.readdirStat(dir) : names.map((e) => ({...e, st: {...NO_STAT, type: e.type, ino: e.ino}}))
            } catch (err) {
              if (!isDamage(err)) throw err
              // (one entry's inode: each is taken on its own)
              list = []
              for (const e of names) {
                const p = (dir.endsWith('/') ? dir : dir + '/') + e.name
                try {
                  list.push({...e, st: ns.stat(p, false)})
                } catch (err2) {
                  damaged(p, err2)
                }
              }
            }
            for (const e of list) {
              if (!flags.all && e.name.startsWith('.')) continue
              const p = (dir.endsWith('/') ? dir : dir + '/') + e.name
              let st = e.st
              if (flags.dereference && st.type === 'symlink') {
                // -L: what the link leads to; one that leads nowhere is reported and shown as itself.
                try {
                  st = ns.stat(p, true)
                } catch (err) {
                  if (!dangling(err)) throw err
                  failures.report(err)
                }
              }
              entries.push(row(e.name, p, st))
              if (flags.recursive && st.type === 'dir') {
                if (above.has(st.ino) && flags.dereference) {
                  failures.report(new PrismError('ELOOP', `${loc.fileset}:${p}: not listing already-listed directory`))
                  continue
                }
                // A directory has one name: without -L, meeting one twice means a damaged image.
                if (!flags.dereference) enterDir(seen, st.ino, `${loc.fileset}:${p}`)
                // (only -L looks at them: a copy per directory made -R of a deep tree quadratic)
                below.push({dir: p, above: flags.dereference ? new Set([...above, st.ino]) : above})
              }
            }
            out.push({path: `${loc.fileset}:${dir}`, entries})
            for (let k = below.length - 1; k >= 0; k--) todo.push(below[k])
          }
        }
        pushAll(listings, out)
      })
    })
    failures.settle()
    const many = listings.length > 1 && !flags.directory
    // With -d every path is one line of one table (the JSON keeps one listing per path).
    const shown = flags.directory ? [{path: '', entries: listings.flatMap((l) => l.entries)}] : listings
    shown.forEach((l, i) => {
      if (many) this.log(`${i ? '\n' : ''}${nameShown(l.path)}:`)
      if (!flags.long) {
        for (const e of l.entries) this.log(nameShown(e.name))
        return
      }
      this.log(table(l.entries.map((e) => [
        e.mode, String(e.nlink), String(e.uid), String(e.gid), e.rdev ? `${e.rdev.major}, ${e.rdev.minor}` : flags.human ? humanSize(e.size) : String(e.size), (e.mtime.startsWith('@') ? e.mtime : lsTime({s: Date.parse(e.mtime) / 1000, ns: 0})),
        nameShown(e.name) + (e.target !== undefined ? ` -> ${nameShown(e.target)}` : '') + (e.flags.includes('noclone') ? '  [noclone]' : ''),
      ]), [1, 4]))
    })
    return listings // one shape whatever the number of paths: an array of listings
  }
}
