import {Args, Flags} from '@oclif/core'
import {PrismCommand, imageFlags} from '../cli/base.js'
import {imageLoc, showLoc} from '../cli/locate.js'
import {PrismError, hostReason} from '../errors.js'

type Encoding = 'text' | 'hex' | 'base64'

/** A value as getfattr -e shows it: "text" (non-printable bytes as \NNN octal), 0xHEX or 0sBASE64. */
export function encodeValue(v: Buffer, e: Encoding | 'auto'): string {
  if (e === 'hex') return '0x' + v.toString('hex')
  if (e === 'base64') return '0s' + v.toString('base64')
  const body = v.length > 0 && v[v.length - 1] === 0 ? v.subarray(0, -1) : v
  const printable = body.every((c) => (c >= 0x20 && c < 0x7f) || c === 0x09 || c === 0x0a)
  if (e === 'auto' && !printable) return '0s' + v.toString('base64')
  let out = '"'
  for (const c of v) out += c === 0x22 || c === 0x5c ? '\\' + String.fromCharCode(c) : c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '\\' + c.toString(8).padStart(3, '0')
  return out + '"'
}

/** A value as setfattr -v takes it: 0xHEX, 0sBASE64, "quoted text" (with \NNN escapes), or plain text. */
export function decodeValue(s: string): Buffer {
  if (/^0x/i.test(s)) {
    const hex = s.slice(2)
    if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new PrismError('EUSAGE', `invalid hex value '${s}'`)
    return Buffer.from(hex, 'hex')
  }
  if (/^0s/i.test(s)) {
    const b = s.slice(2)
    // (whole groups of four, as setfattr decodes it: 'AAA' is not base64)
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b) || b.length % 4 !== 0) throw new PrismError('EUSAGE', `invalid base64 value '${s}'`)
    return Buffer.from(b, 'base64')
  }
  if (s.startsWith('"') && (s.length < 2 || !s.endsWith('"'))) throw new PrismError('EUSAGE', `invalid quoted value '${s}': no closing '"'`)
  if (s.length >= 2 && s.startsWith('"') && s.endsWith('"')) {
    const out: number[] = []
    const t = s.slice(1, -1)
    for (let i = 0; i < t.length; i++) {
      if (t[i] === '\\' && /^[0-7]{3}/.test(t.slice(i + 1))) { out.push(parseInt(t.slice(i + 1, i + 4), 8)); i += 3 }
      else if (t[i] === '\\' && i + 1 < t.length) { out.push(...Buffer.from(t[i + 1])); i++ }
      else out.push(...Buffer.from(t[i]))
    }
    return Buffer.from(out)
  }
  return Buffer.from(s)
}

export default class Xattr extends PrismCommand {
  static summary = 'List, get, set and remove extended attributes of files in the image'
  static description = `Names carry their namespace: user., trusted., security. (security.selinux, security.capability), and system.posix_acl_access / system.posix_acl_default (POSIX ACLs, in Linux's binary form). A value is given as setfattr takes it: 0x followed by hex, 0s followed by base64, "quoted text" (\\NNN octal escapes allowed) or plain text; or read from a host file with --value-file. 'get' writes the raw value to standard output unless an encoding is asked for; 'list -d' shows each value as getfattr -d does (text when printable, else base64). A symlink is followed unless -h is given, as getfattr does. Changing an attribute of a file shared with other filesets copies it first (its blocks stay shared), so they keep theirs.`
  static examples = [
    '<%= config.bin %> xattr list -d root:/usr/bin/ping',
    '<%= config.bin %> xattr get -e hex root:/usr/bin/ping security.capability',
    '<%= config.bin %> xattr set root:/usr/bin/ping security.capability 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=',
    '<%= config.bin %> xattr set root:/srv/data user.origin "backup 2024"',
    '<%= config.bin %> xattr set --value-file ./label root:/etc/shadow security.selinux',
    '<%= config.bin %> xattr rm root:/srv/data user.origin',
  ]
  static args = {
    action: Args.string({description: 'list, get, set or rm', required: true, options: ['list', 'get', 'set', 'rm']}),
    path: Args.string({description: 'FILESET:/path', required: true}),
    name: Args.string({description: 'attribute name (get, set, rm)'}),
    value: Args.string({description: 'value (set): 0xHEX, 0sBASE64, "text" or text'}),
  }
  static flags = {
    ...imageFlags,
    encoding: Flags.string({char: 'e', description: 'show values as text, hex or base64', options: ['text', 'hex', 'base64']}),
    dump: Flags.boolean({char: 'd', description: 'list: show values too'}),
    'value-file': Flags.string({char: 'f', description: 'set: read the value from this host file'}),
    'no-dereference': Flags.boolean({char: 'h', description: 'act on a symlink itself'}),
    create: Flags.boolean({description: 'set: fail if the attribute exists', exclusive: ['replace']}),
    replace: Flags.boolean({description: 'set: fail if the attribute does not exist', exclusive: ['create']}),
  }

  async run() {
    const {args, flags} = await this.parse(Xattr)
    const loc = imageLoc(args.path)
    const follow = !flags['no-dereference']
    const needName = args.action !== 'list'
    if (needName && !args.name) throw new PrismError('EUSAGE', `xattr ${args.action} needs an attribute NAME`)
    if (!needName && args.name) throw new PrismError('EUSAGE', 'xattr list takes no NAME')
    if (args.action === 'set' && (args.value === undefined) === (flags['value-file'] === undefined)) {
      throw new PrismError('EUSAGE', 'xattr set needs a VALUE or --value-file (not both)')
    }
    if (args.action !== 'set' && args.value !== undefined) throw new PrismError('EUSAGE', `xattr ${args.action} takes no VALUE`)
    const name = args.name !== undefined ? Buffer.from(args.name) : Buffer.alloc(0)
    let value: Buffer | null = null
    if (args.action === 'set') {
      if (flags['value-file']) {
        const fs = await import('node:fs')
        try {
          value = fs.readFileSync(flags['value-file'])
        } catch (e) {
          throw new PrismError('ENOENT', `${flags['value-file']}: ${hostReason(e)}`)
        }
      } else value = decodeValue(args.value!)
    }
    if (args.action === 'set' || args.action === 'rm') {
      await this.short(flags, 'xattr', {loc, name: name.toString('base64'), value: value?.toString('base64'), create: flags.create, replace: flags.replace, follow})
      return args.action === 'set' ? {path: showLoc(loc), name: args.name, bytes: value!.length} : {path: showLoc(loc), name: args.name}
    }
    const {namespace} = await import('../fs/image.js')
    const enc: Encoding | 'auto' = (flags.encoding as Encoding | undefined) ?? 'auto'
    return this.withVolume(flags, false, (vol) => {
      const ns = namespace(vol, loc.fileset)
      if (args.action === 'list') {
        const list = ns.listXattrs(loc.path, follow)
        for (const x of list) this.log(flags.dump || flags.encoding ? `${x.name.toString()}=${encodeValue(x.value, enc)}` : x.name.toString())
        return {path: showLoc(loc), xattrs: list.map((x) => ({name: x.name.toString(), value: encodeValue(x.value, flags.encoding ? enc : 'base64')}))}
      }
      const v = ns.getXattr(loc.path, name, follow)
      if (!v) throw new PrismError('ENODATA', `${showLoc(loc)}: no attribute ${args.name}`)
      if (!this.jsonEnabled()) {
        if (flags.encoding) this.log(encodeValue(v, enc))
        else process.stdout.write(v)
      }
      return {path: showLoc(loc), name: args.name, value: encodeValue(v, flags.encoding ? enc : 'base64')}
    })
  }
}
