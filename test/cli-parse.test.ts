// The command line means what it says. An argument left out is never read from standard input
// (oclif fills a missing one from any stdin that is not a terminal, so `echo vm7 | prism clone
// root` in a script would have named the clone vm7, and `echo coaw=off | prism set root` would
// have changed a setting); and positional arguments keep their order when one of them equals a
// flag's value (oclif moved it to the front: `prism cp -i disk.img root:/f disk.img` copied the
// image into root:/f).
import {expect} from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {ROOT, newImage, prism, tmpDir} from './helpers.js'

describe('command line: arguments come from the command line only, in their order', () => {
  let dir: string
  let img: string

  beforeEach(() => {
    dir = tmpDir()
    img = newImage(dir)
    fs.writeFileSync(path.join(dir, 'src'), 'data\n')
    expect(prism(['cp', '-i', img, path.join(dir, 'src'), 'root:/f']).status).to.equal(0)
    expect(prism(['mkdir', '-i', img, 'root:/d']).status).to.equal(0)
  })

  afterEach(() => {
    fs.rmSync(dir, {recursive: true, force: true})
  })

  // Each: a command with an optional argument left out, and what a pipe might hold.
  const cases: Array<{args: string[], stdin: string}> = [
    {args: ['ls'], stdin: 'root:/d\n'},
    {args: ['du'], stdin: 'root:/d\n'},
    {args: ['scan'], stdin: 'nosuch\n'},
    {args: ['expand'], stdin: 'nosuch\n'},
    {args: ['set', 'root'], stdin: 'coaw=off\n'},
    {args: ['xattr', 'list', 'root:/f'], stdin: 'user.x\n'},
    {args: ['mount'], stdin: '/nonexistent\n'},
    {args: ['fileset', 'list'], stdin: 'junk\n'},
  ]
  for (const c of cases) {
    it(`prism ${c.args.join(' ')} with ${JSON.stringify(c.stdin)} on stdin does what it does with none`, () => {
      const quiet = prism([...c.args, '-i', img], {input: ''})
      const piped = prism([...c.args, '-i', img], {input: c.stdin})
      expect({status: piped.status, stdout: piped.stdout, stderr: piped.stderr}).to.deep.equal({status: quiet.status, stdout: quiet.stdout, stderr: quiet.stderr})
    })
  }

  it('a clone left unnamed gets its default name, not one read from stdin', () => {
    const r = prism(['clone', 'root', '-i', img, '--mode', 'sync'], {input: 'fromstdin\n'})
    expect(r.status, r.stderr).to.equal(0)
    expect(r.stdout).to.not.match(/fromstdin/)
    expect(prism(['fileset', 'list', '-i', img]).stdout).to.not.match(/fromstdin/)
  })

  it('a positional equal to a flag value stays where it was given (cp --wait 5 root:/f 5)', () => {
    const r = prism(['cp', '--wait', '5', 'root:/f', '5'], {cwd: dir, env: {PRISM_IMAGE: img}})
    expect(r.status, r.stderr).to.equal(0)
    expect(fs.readFileSync(path.join(dir, '5'), 'utf8')).to.equal('data\n')
    // and the other way round: the host file named like the flag value goes into the image
    const back = prism(['cp', '--wait', '5', '5', 'root:/g'], {cwd: dir, env: {PRISM_IMAGE: img}})
    expect(back.status, back.stderr).to.equal(0)
    expect(prism(['cat', '-i', img, 'root:/g']).stdout).to.equal('data\n')
  })

  // oclif's repeatable flags take every word after them unless marked multipleNonGreedy:
  // `prism mount -o ro root /mnt` parsed as -o ro -o root -o /mnt, listed the mounts and
  // exited 0, having mounted nothing.
  it('a repeatable flag takes one value each time: the words after it stay positionals (every command)', async () => {
    const greedy: string[] = []
    let repeatable = 0
    const commands = path.join(ROOT, 'dist', 'commands')
    for (const file of fs.readdirSync(commands, {recursive: true}) as string[]) {
      if (!file.endsWith('.js')) continue
      const cmd = (await import(pathToFileURL(path.join(commands, file)).href) as {default: {flags?: Record<string, {multiple?: boolean, multipleNonGreedy?: boolean}>}}).default
      for (const [name, f] of Object.entries(cmd.flags ?? {})) {
        if (!f.multiple) continue
        repeatable++
        if (!f.multipleNonGreedy) greedy.push(`${file} --${name}`)
      }
    }
    expect(repeatable).to.be.above(3)
    expect(greedy).to.deep.equal([])
    // and through the CLI: the clone is named c, from root, with the exclusion
    const r = prism(['clone', '-x', 'f', 'root', 'c', '--mode', 'sync', '-i', img])
    expect(r.status, r.stderr).to.equal(0)
    expect(prism(['ls', '-i', img, 'c:/']).stdout).to.equal('d\n')
  })

  it('prism mount -o OPTIONS or --foreground with no mount point is a usage error, not a listing', () => {
    for (const args of [['-o', 'ro'], ['-o', 'ro', '-o', 'allow_other'], ['--foreground'], ['-f']]) {
      const r = prism(['mount', '-i', img, ...args])
      expect([r.status, r.stdout], args.join(' ')).to.deep.equal([2, ''])
      expect(r.stderr, args.join(' ')).to.match(/^prism: (-o|--foreground) needs a MOUNTPOINT \(with no arguments, prism mount lists the mounts\)\n$/)
    }
    expect(prism(['mount', '-i', img]).status).to.equal(0) // (the listing)
  })

  it('positionals after -- keep their order too', () => {
    const r = prism(['cp', '-i', img, '--', 'root:/f', '-dash'], {cwd: dir})
    expect(r.status, r.stderr).to.equal(0)
    expect(fs.readFileSync(path.join(dir, '-dash'), 'utf8')).to.equal('data\n')
  })
})
