// Stress through a real mount: Debian's stress-ng runs every stressor of its filesystem class
// with --verify from inside a mounted fileset (one second each) while prism commands run on the
// same image through its server at the same time (ls, df, stat, clones sync and async, cat,
// fileset list: each one borrows the image from the server); then the image is unmounted, fsck
// must find it clean, and each clone must read back. PRISM_STRESS_COMMANDS=0 leaves the
// commands out. Skips, saying why, without stress-ng or FUSE.
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {run} from './fuse-support.js'
import {cli, Scratch, skipWithoutFuse} from './mount-support.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('prism mount: stress-ng --class filesystem --verify inside a mount, with prism commands at the same time', function () {
  this.timeout(300_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
    if (spawnSync('stress-ng', ['--version']).status !== 0) {
      console.log('      stress test skipped: stress-ng is not installed (apt-get install stress-ng)')
      this.skip()
    }
    s = new Scratch({size: 1024 * 1024 * 1024})
  })

  after(async () => {
    await s?.cleanup()
  })

  it('every stressor passes its verification, every command succeeds, and fsck is clean afterwards', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp, ['allow_other'])
    await run('mkdir', ['-p', `${mp}/work`, `${mp}/keep`])
    await run('sh', ['-c', `echo kept > ${mp}/keep/file`])
    const withCommands = process.env.PRISM_STRESS_COMMANDS !== '0'
    let done = false
    const stress = run('sh', ['-c', `cd ${mp}/work && exec stress-ng --class filesystem --sequential 1 --timeout 1s --verify --temp-path ${mp}/work`], {timeoutMs: 280_000})
      .finally(() => {
        done = true
      })
    const failures: string[] = []
    let commands = 0
    const clones: string[] = []
    for (let i = 0; !done && withCommands; i++) {
      const cmd = [['ls', 'root:/keep'], ['df'], ['stat', 'root:/keep/file'], ['clone', 'root:/keep', `k${i}`, '--mode', i % 2 ? 'sync' : 'async'], ['cat', 'root:/keep/file'], ['fileset', 'list']][i % 6]
      const r = await cli([...cmd, '-i', s.image], {timeoutMs: 60_000})
      commands++
      if (r.code !== 0) failures.push(`prism ${cmd.join(' ')}: ${r.code} ${r.stderr.trim()}`)
      else if (cmd[0] === 'clone') clones.push(cmd[2])
      if (cmd[0] === 'cat' && r.stdout !== 'kept\n') failures.push(`cat: ${JSON.stringify(r.stdout)}`)
      await sleep(1000)
    }
    const r = await stress
    const failed = r.stdout.split('\n').concat(r.stderr.split('\n')).filter((l) => /\bfail\b|verification|failed/i.test(l) && !/ 0 failed/.test(l))
    // 0: all passed; 3: some stressor could not run here (no resources or feature): skipped, not failed
    expect([0, 3], `stress-ng exit ${r.code}:\n${failed.join('\n')}\n${r.stderr.slice(-2000)}`).to.include(r.code)
    expect(failed, failed.join('\n')).to.deep.equal([])
    expect(failures).to.deep.equal([])
    if (withCommands) expect(commands).to.be.greaterThan(5)
    await s.umount(mp)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    for (const c of clones) expect((await cli(['cat', '-i', s.image, `${c}:/file`])).stdout).to.equal('kept\n')
  })
})
