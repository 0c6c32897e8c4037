// A write never holds the image's lock while it waits for its input (issue 15, point 4): the
// input is spooled first (src/ops/spool.ts), in memory up to a bound and the rest in an
// unnamed temporary file. While `prism write` waits on a slow pipe, cat, ls and another write
// run at once (with --wait 0, a locked image would fail them with exit 3).
import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {Spool} from '../src/ops/spool.js'
import {BIN, newImage, prism, tmpDir} from './helpers.js'

async function* pieces(data: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let at = 0
  for (let i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]
    yield data.subarray(at, at + n)
    at += n
  }
}

describe('spool: input read before the lock', function () {
  this.timeout(120_000)
  let dir: string
  before(() => { dir = tmpDir('prism-spool-') })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('keeps input in memory up to its bound and the rest in an unnamed file, and gives it back in order', async () => {
    const tmp = path.join(dir, 'tmp')
    fs.mkdirSync(tmp)
    const data = randomBytes(3 * 1024 * 1024 + 12345)
    const s = await Spool.read(pieces(data, [65536, 1, 4095, 300_000, 7]), {memory: 1024 * 1024, tmpdir: tmp})
    try {
      expect(s.size).to.equal(data.length)
      expect(s.onDisk).to.be.greaterThan(2 * 1024 * 1024)
      // The temporary file has no name: nothing is left behind, whatever happens to the process.
      expect(fs.readdirSync(tmp)).to.deep.equal([])
      for (const chunk of [4096, 1 << 20, 999_999]) {
        const got: Buffer[] = []
        for (const c of s.chunks(chunk)) {
          expect(c.length <= chunk).to.equal(true)
          got.push(Buffer.from(c))
        }
        expect(got.slice(0, -1).every((c) => c.length === chunk), 'whole chunks but the last').to.equal(true)
        expect(Buffer.concat(got).equals(data)).to.equal(true)
      }
    } finally {
      s.close()
    }
    // Within the bound nothing touches the disk; empty input gives no chunk.
    const small = await Spool.read(pieces(data.subarray(0, 1000), [10]), {memory: 4096, tmpdir: tmp})
    expect(small.onDisk).to.equal(0)
    expect(Buffer.concat([...small.chunks()]).equals(data.subarray(0, 1000))).to.equal(true)
    small.close()
    const none = await Spool.read(pieces(Buffer.alloc(0), [1]), {tmpdir: tmp})
    expect([...none.chunks()]).to.deep.equal([])
    none.close()
  })

  it('says clearly when the temporary directory cannot take the input', async () => {
    try {
      await Spool.read(pieces(Buffer.alloc(10_000), [5000]), {memory: 100, tmpdir: path.join(dir, 'no-such-dir')})
      expect.fail('spooled into a missing directory')
    } catch (e) {
      expect((e as Error).message).to.match(/^cannot spool the input in .*no-such-dir \(set TMPDIR to another directory\): no such file or directory/)
    }
  })

  it('a $TMPDIR that cannot take the input: write of a large input and import - say so in one line, exit 1, the image unchanged', () => {
    const d = tmpDir('prism-spool-tmp-')
    const img = newImage(d, 64 << 20)
    const before = fs.readFileSync(img)
    // (an import spools whatever comes; a write only what passes its memory, 64 MiB)
    const tar = spawnSync('tar', ['-cf', '-', '-C', d, '.'], {maxBuffer: 1 << 28}).stdout
    for (const tmp of [path.join(d, 'no-such-dir'), '/proc/self']) {
      for (const [args, input] of [[['import', '--create', 'x', '-'], tar], [['write', 'root:/big'], Buffer.alloc(80 << 20, 1)]] as const) {
        const r = prism([...args, '-i', img], {input, env: {TMPDIR: tmp}})
        expect(r.status, `${args[0]} with TMPDIR=${tmp}: ${r.stderr}`).to.equal(1)
        expect(r.stderr).to.match(/^prism: cannot spool the input in .* \(set TMPDIR to another directory\): [^\n]+\n$/)
      }
    }
    expect(fs.readFileSync(img).equals(before)).to.equal(true)
  })

  it('while a write waits on a slow pipe, cat, ls and another write succeed at once; then the write completes', async () => {
    const img = newImage(tmpDir('prism-spool-cli-'), 64 << 20)
    expect(prism(['write', 'root:/existing', '-i', img], {input: 'there\n'}).status).to.equal(0)
    const child = spawn(process.execPath, [BIN, 'write', 'root:/slow', '-i', img], {env: {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}, stdio: ['pipe', 'pipe', 'pipe']})
    let stderr = ''
    child.stderr.on('data', (d) => { stderr += d })
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)))
    try {
      // Time for the writer to start and block on its input (with the old code: holding the lock).
      await new Promise((r) => setTimeout(r, 2500))
      expect(child.exitCode, 'the writer is still waiting for its input').to.equal(null)
      const others = [
        prism(['cat', 'root:/existing', '--wait', '0', '-i', img]),
        prism(['ls', 'root:/', '--wait', '0', '-i', img]),
        prism(['write', 'root:/other', '--wait', '0', '-i', img], {input: 'other\n'}),
      ]
      for (const r of others) expect(r.status, r.stderr).to.equal(0)
      expect(others[0].stdout).to.equal('there\n')
      expect(others[1].stdout).to.include('existing')
      child.stdin.write('slow\n')
      child.stdin.end()
      expect(await exited, stderr).to.equal(0)
    } finally {
      child.kill()
    }
    expect(prism(['cat', 'root:/slow', '-i', img]).stdout).to.equal('slow\n')
    expect(prism(['cat', 'root:/other', '-i', img]).stdout).to.equal('other\n')
  })

  it('writes an input larger than the memory bound (through the temporary file) byte for byte, and appends', () => {
    const img = newImage(tmpDir('prism-spool-big-'), 256 << 20)
    const data = randomBytes(66 * 1024 * 1024 + 777)
    const tmp = path.join(dir, 'tmp-cli')
    fs.mkdirSync(tmp)
    const w = spawnSync(process.execPath, [BIN, 'write', 'root:/big', '-i', img], {input: data, env: {...process.env, PRISM_IMAGE: '', TMPDIR: tmp}, maxBuffer: 1 << 20})
    expect(w.status, w.stderr.toString()).to.equal(0)
    expect(fs.readdirSync(tmp)).to.deep.equal([])
    expect(prism(['write', '--append', 'root:/big', '-i', img], {input: 'tail'}).status).to.equal(0)
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
    const cat = spawnSync(process.execPath, [BIN, 'cat', 'root:/big', '-i', img], {env: {...process.env, PRISM_IMAGE: ''}, maxBuffer: 1 << 30})
    expect(sha(cat.stdout)).to.equal(sha(Buffer.concat([data, Buffer.from('tail')])))
  })
})
