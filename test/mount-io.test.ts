// I/O through a real mount: fsx (test/mount-fsx.py: thousands of random writes, reads,
// truncates, holes, fallocate and mmap writes on one file, every read checked against a
// model, and the final content checked again in the image after unmounting), in a fileset
// and on files a lazy clone shares with its source (each side written in turn, the other
// and a second clone unchanged), and the crash test: the server
// is killed with SIGKILL at random moments while a workload writes and fsyncs files; each time
// `prism umount` cleans up the dead mount, fsck finds the image clean, a new `prism mount`
// works, and every write an fsync acknowledged is there.
// Environment: PRISM_FSX_OPS, PRISM_CRASH_ROUNDS.
import {expect} from 'chai'
import {spawn} from 'node:child_process'
import crypto, {createHash} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {PYTHON, py} from './fuse-support.js'
import {cli, cliOk, expectClean, run, Scratch, serverPid, skipWithoutFuse, waitExit} from './mount-support.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('prism mount: random I/O on one file checked against a model (fsx)', function () {
  this.timeout(180_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
    s = new Scratch()
  })

  after(async () => {
    await s?.cleanup()
  })

  it('every read agrees with the model through writes, truncates, holes and mmap writes, and the image holds the model after umount', async () => {
    const mp = s.mountpoint()
    await s.mount('root', mp)
    const ops = Number(process.env.PRISM_FSX_OPS ?? 3000)
    const seed = Math.floor(Math.random() * 2 ** 31)
    const model = path.join(s.dir, 'model.bin')
    const r = await run(PYTHON, [path.join(HERE, 'mount-fsx.py'), path.join(mp, 'fsx.bin'), String(ops), String(seed), model], {timeoutMs: 150_000})
    expect(r.code, r.stderr).to.equal(0)
    expect(Number(r.stdout.trim())).to.equal(ops)
    await s.umount(mp)
    const out = path.join(s.dir, 'out.bin')
    await cliOk(['cp', '-i', s.image, 'root:/fsx.bin', out])
    expect(createHash('sha256').update(fs.readFileSync(out)).digest('hex')).to.equal(createHash('sha256').update(fs.readFileSync(model)).digest('hex'))
    await expectClean(s.image)
  })
})

describe('prism mount: fsx on files a lazy clone shares with its source', function () {
  this.timeout(240_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
    s = new Scratch()
  })

  after(async () => {
    await s?.cleanup()
  })

  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
  const imageFile = async (spec: string): Promise<Buffer> => {
    const out = path.join(s.dir, 'out.bin')
    await cliOk(['cp', '-i', s.image, spec, out])
    const b = fs.readFileSync(out)
    fs.rmSync(out)
    return b
  }

  it('in the clone, then in the source: every read agrees with the model; the side written holds the model, the other side its old bytes; fsck clean', async () => {
    const mp = s.mountpoint()
    const ops = Number(process.env.PRISM_FSX_OPS ?? 3000)
    // the shared files: 1 MiB and 512 KiB of random bytes, made before the clones
    const original = {'shared.bin': crypto.randomBytes(1 << 20), 'shared.bin.src': crypto.randomBytes(1 << 19)}
    for (const [name, data] of Object.entries(original)) {
      const host = path.join(s.dir, name)
      fs.writeFileSync(host, data)
      await cliOk(['cp', '-i', s.image, host, `root:/${name}`])
    }
    await cliOk(['clone', '-i', s.image, 'root', 'c', '--mode', 'lazy'])
    await cliOk(['clone', '-i', s.image, 'root', 'd', '--mode', 'lazy'])
    const models: Record<string, Buffer> = {}
    for (const side of ['c', 'root']) {
      await s.mount(side, mp)
      const seed = Math.floor(Math.random() * 2 ** 31)
      const model = path.join(s.dir, `model-${side}.bin`)
      const r = await run(PYTHON, [path.join(HERE, 'mount-fsx.py'), path.join(mp, 'shared.bin'), String(ops), String(seed), model, 'existing'], {timeoutMs: 200_000})
      expect(r.code, `${side}: ${r.stderr}`).to.equal(0)
      await s.umount(mp)
      models[side] = fs.readFileSync(model)
    }
    expect(sha(await imageFile('c:/shared.bin')), 'the clone holds its model').to.equal(sha(models.c))
    expect(sha(await imageFile('root:/shared.bin')), 'the source holds its model').to.equal(sha(models.root))
    // the second clone, written by no one, still holds the bytes both started from
    expect(sha(await imageFile('d:/shared.bin'))).to.equal(sha(original['shared.bin']))
    expect(sha(await imageFile('d:/shared.bin.src'))).to.equal(sha(original['shared.bin.src']))
    await expectClean(s.image)
  })
})

// The workload: files written whole and fsynced, some rewritten; "TRY name sha" before a
// write, "ACK name sha" once fsync returned. It runs until the mount dies under it.
const WORKLOAD = `
import hashlib, os, random, sys
root = sys.argv[1]
rnd = random.Random(int(sys.argv[2]))
i = 0
while True:
    name = 'f%d' % rnd.randrange(0, 40)
    data = os.urandom(rnd.choice([10, 4096, 70000, 300000]))
    sha = hashlib.sha256(data).hexdigest()[:16]
    print('TRY', name, sha, flush=True)
    try:
        fd = os.open(os.path.join(root, name), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        os.write(fd, data)
        if rnd.random() < 0.3:
            os.write(fd, b'')
        os.fsync(fd)
        os.close(fd)
    except OSError as e:
        print('ERR', e.errno, flush=True)
        sys.exit(0)
    print('ACK', name, sha, flush=True)
    i += 1
`

describe('prism mount: kill -9 of the server during an fsyncing workload (crash)', function () {
  this.timeout(240_000)
  let s: Scratch

  before(function () {
    skipWithoutFuse(this)
    s = new Scratch()
  })

  after(async () => {
    await s?.cleanup()
  })

  it('leaves an image fsck finds clean holding every acknowledged fsync; umount and a new mount work without manual steps', async () => {
    const mp = s.mountpoint()
    const rounds = Number(process.env.PRISM_CRASH_ROUNDS ?? 4)
    // what each file must hold: its last acknowledged content, or (a write was under way) a later try
    const acked = new Map<string, string>()
    const tried = new Map<string, string[]>()
    let acks = 0
    for (let round = 0; round < rounds; round++) {
      await s.mount('root', mp)
      const pid = await serverPid(s.image)
      expect(pid).to.not.equal(null)
      const child = spawn(PYTHON, ['-c', WORKLOAD, mp, String(round * 7919 + Date.now() % 1000)], {stdio: ['ignore', 'pipe', 'inherit']})
      let buf = ''
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        buf += d
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const [kind, name, sha] = buf.slice(0, nl).split(' ')
          buf = buf.slice(nl + 1)
          if (kind === 'TRY') tried.set(name, [...(tried.get(name) ?? []), sha])
          if (kind === 'ACK') {
            acked.set(name, sha)
            tried.set(name, [])
            acks++
          }
        }
      })
      const exited = new Promise<void>((resolve) => child.on('close', () => resolve()))
      await sleep(300 + Math.random() * 1500)
      process.kill(pid!, 'SIGKILL')
      expect(await waitExit(pid!, 10_000)).to.equal(true)
      await Promise.race([exited, sleep(10_000)])
      child.kill('SIGKILL')
      // the dead mount: prism umount cleans it up
      await cliOk(['umount', mp])
      const fsck = await cli(['fsck', '-i', s.image])
      expect(fsck.code, `round ${round}: ${fsck.stdout}${fsck.stderr}`).to.equal(0)
      // a new mount works, and holds every acknowledged write
      await s.mount('root', mp)
      const found = await py(`
import hashlib, json, os, sys
root = sys.argv[1]
print(json.dumps({n: hashlib.sha256(open(os.path.join(root, n), 'rb').read()).hexdigest()[:16] for n in os.listdir(root)}))`, mp) as Record<string, string>
      for (const [name, sha] of acked) {
        const later = tried.get(name) ?? []
        if (later.length === 0) expect(found[name], `round ${round}: ${name} lost its acknowledged content`).to.equal(sha)
        else expect(found[name], `round ${round}: ${name} is gone`).to.be.a('string')
      }
      await s.umount(mp)
      // the next round starts from what is there now
      for (const [name, sha] of Object.entries(found)) {
        acked.set(name, sha)
        tried.set(name, [])
      }
    }
    expect(acks).to.be.greaterThan(rounds)
    const fsck = await cli(['fsck', '-i', s.image])
    expect(fsck.code, fsck.stdout + fsck.stderr).to.equal(0)
    expect(fsck.stdout).to.match(/^clean/m)
  })
})
