// bin/run.js runs every command oclif runs from one bundle (dist/cli.cjs: oclif and all the
// commands, src/cli/oclif.ts runBundled), and help, the version and unknown commands through
// oclif loaded from its own modules (runOclif). The bundle must hold every command, and what a
// command prints, its exit status and what it does to the image must be the same either way.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {createRequire} from 'node:module'
import {BIN, ROOT, VIA_OCLIF, edit, imageContents, newImage, tmpDir, type CliResult} from './helpers.js'

const require = createRequire(import.meta.url)

/** The command through bin/run.js (the bundle) or through oclif from its modules. */
function run(way: 'bundle' | 'oclif', args: string[], cwd: string, input?: string): CliResult {
  const argv = way === 'bundle' ? [BIN, ...args] : ['--input-type=module', '-e', VIA_OCLIF, pathToFileURL(ROOT).href + '/', ...args]
  const r = spawnSync(process.execPath, argv, {cwd, input, env: {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}})
  return {status: r.status ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString()}
}

describe('cli: every command from the bundle dist/cli.cjs, as oclif runs it from its modules', function () {
  this.timeout(300_000)
  let dir: string
  let base: string
  before(() => {
    dir = tmpDir('prism-bundle-')
    base = newImage(dir)
    edit(base, (ns) => {
      ns.mkdir('/etc/conf', {parents: true})
      ns.writeFile('/etc/hostname', Buffer.from('box\n'))
      ns.writeFile('/etc/conf/a.conf', Buffer.from('x = 1\n'.repeat(100)))
      ns.symlink('hostname', '/etc/host-link')
    })
    fs.mkdirSync(path.join(dir, 'host'))
    fs.writeFileSync(path.join(dir, 'host', 'in.txt'), 'from the host\n')
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('holds every command of the manifest, and nothing else', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, unknown>}
    const {loadBundle} = require(path.join(ROOT, 'bin', 'load-bundle.cjs')) as {loadBundle: (name: string) => {exports: {COMMANDS: Record<string, unknown>}}}
    expect(Object.keys(loadBundle('cli').exports.COMMANDS).sort()).to.deep.equal(Object.keys(manifest.commands).sort())
  })

  // Each case runs on its own copy of the image, once each way; the outputs, the status and
  // what the image then holds must be the same. `IMG` stands for the copy.
  const cases: string[][] = [
    ['ls', '-l', 'root:/etc'], ['ls', '-lh', '--json', 'root:/etc'], ['ls', 'root:/nowhere'], ['ls', 'root:/etc', '--bogus'],
    ['stat', 'root:/etc/hostname'], ['stat', '--json', 'root:/etc/host-link'], ['df'], ['df', '-h'], ['df', 'extra'], ['du', '-s', 'root:/'],
    ['status'], ['diff', 'root:/etc', 'root:/etc'], ['fileset', 'list', 'x', 'y'],
    ['mkdir', '-p', 'root:/new/deep'], ['mkdir', 'root:/etc'], ['touch', 'root:/etc/t'], ['rm', '-r', 'root:/etc/conf'], ['rm', 'root:/etc'],
    ['mv', 'root:/etc/hostname', 'root:/hostname'], ['cp', '-r', 'root:/etc', 'root:/etc2'], ['cp', '../host/in.txt', 'root:/in.txt'],
    ['ln', '-s', 'target', 'root:/link'], ['chmod', '-R', '700', 'root:/etc'], ['chown', '12:34', 'root:/etc/hostname'],
    ['truncate', '-s', '1M', 'root:/etc/hostname'], ['write', 'root:/w.txt'], ['xattr', 'set', 'root:/etc/hostname', 'user.k', 'v'],
    ['mknod', 'root:/fifo', 'p'], ['set', 'root', 'coaw=off'], ['noclone', 'root:/etc/conf'], ['defrag', 'root'],
    ['fileset', 'create', 'made'], ['fileset', 'create', 'y', 'z'], ['fileset', 'rename', 'root', 'renamed'], ['fileset', 'delete', 'root'],
    ['clone', 'root', 'c1', '--mode', 'lazy', '--json'], ['expand', 'root'], ['import', 'root:/imp', '../host'], ['nosuch'], ['fileset'],
  ]
  for (const args of cases) {
    it(args.join(' '), () => {
      const got = (['bundle', 'oclif'] as const).map((way) => {
        // (the same name for both copies, in a directory of each: df prints it)
        const cwd = path.join(dir, way)
        fs.mkdirSync(cwd, {recursive: true})
        fs.copyFileSync(base, path.join(cwd, 'disk.img'))
        const r = run(way, [...args, '-i', 'disk.img'], cwd, 'from standard input\n')
        return {r, holds: imageContents(path.join(cwd, 'disk.img'))}
      })
      expect(got[0].r, 'output and status').to.deep.equal(got[1].r)
      expect(got[0].holds, 'what the image holds').to.equal(got[1].holds)
    })
  }
})
