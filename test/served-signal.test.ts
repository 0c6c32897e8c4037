// Ctrl-C of a command a server runs (cp and mv within the image, cp of a host tree in, import),
// when it comes as the server finishes: the work is published, so the command reports it done
// (exit 0), never "interrupted" for a copy or a move that is there. The server runs in this
// process (no mount: nothing here touches a FUSE mount), and the command is the real CLI. The
// moment is made certain: the server's notify of the slice that published the work sends the
// command SIGINT, then waits, so that the command's cancel arrives before the server answers.
import {expect} from 'chai'
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {namespace, withImage} from '../src/fs/image.js'
import {Server} from '../src/server/server.js'
import {edit, newImage, prism, snapshot, tmpDir} from './helpers.js'
import {mkTar} from './tar-lib.js'

const BIN = path.resolve('bin/run.js')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('a served command signalled as its work is published: done, exit 0', function () {
  this.timeout(120_000)
  let dir: string
  let host: string
  let archive: string
  before(() => {
    dir = tmpDir('prism-servedsig-')
    host = path.join(dir, 'host', 'tree')
    const entries: Parameters<typeof mkTar>[0] = []
    for (let d = 0; d < 20; d++) {
      fs.mkdirSync(path.join(host, `d${d}`), {recursive: true})
      for (let f = 0; f < 50; f++) {
        fs.writeFileSync(path.join(host, `d${d}`, `f${f}`), `h${d}.${f}`)
        entries.push({name: `tree/d${d}/f${f}`, data: Buffer.alloc(32 << 10, `a${d}.${f}`)})
      }
    }
    archive = path.join(dir, 'a.tar')
    fs.writeFileSync(archive, mkTar(entries))
  })
  after(() => fs.rmSync(dir, {recursive: true, force: true}))

  const cases: Array<{what: string, args: string[], published: (vol: Parameters<typeof namespace>[0]) => boolean}> = [
    {what: 'mv between filesets', args: ['mv', 'root:/big', 'other:/big'], published: (vol) => namespace(vol, 'other').exists('/big', false) && !namespace(vol, 'root').exists('/big', false)},
    {what: 'cp -r within the image', args: ['cp', '-r', 'root:/big', 'other:/big'], published: (vol) => namespace(vol, 'other').exists('/big', false)},
    // (a directory copied onto a fileset's root fills that root)
    {what: 'cp -r of a host tree in (the command streams it)', args: ['cp', '-r', '<host>', 'other:/'], published: (vol) => namespace(vol, 'other').exists('/d0', false)},
    {what: 'import (the command streams the archive)', args: ['import', 'other:/', '<archive>'], published: (vol) => namespace(vol, 'other').exists('/tree', false)},
  ]

  for (const c of cases) {
    for (const when of ['as its work is published', 'early'] as const) {
      it(`${c.what}, signalled ${when}`, async () => {
        const img = newImage(fs.mkdtempSync(path.join(dir, 'img-')), 128 << 20)
        edit(img, (ns, vol) => {
          ns.mkdir('/big')
          for (let d = 0; d < 20; d++) {
            ns.mkdir(`/big/d${d}`)
            for (let f = 0; f < 100; f++) ns.writeFile(`/big/d${d}/f${f}`, Buffer.from(`${d}.${f}`))
            vol.maybeCommit()
          }
        })
        expect(prism(['fileset', 'create', 'other', '-i', img]).status).to.equal(0)
        const args = c.args.map((a) => a === '<host>' ? host : a === '<archive>' ? archive : a)
        const state = (at: string) => withImage(at, {write: false}, (vol) => ({root: snapshot(namespace(vol, 'root')), other: snapshot(namespace(vol, 'other'))}))
        const before = state(img)
        // What the command alone leaves, on a copy of the image.
        const alone = path.join(path.dirname(img), 'alone.img')
        fs.copyFileSync(img, alone)
        const r = prism([...args, '-i', alone])
        expect(r.status, r.stderr).to.equal(0)
        const done = state(alone)
        const server = new Server(img, {idleExit: false, log: () => {}})
        await server.listen()
        let signalled: 'published' | 'before' | null = null
        let child: ReturnType<typeof spawn> | null = null
        let result: [number | string | null, string]
        try {
          const image = server.image
          const notify = image.notify.bind(image)
          image.notify = async (all?: boolean) => {
            const published = child !== null && c.published(image.vol)
            if (!signalled && child && (published || when === 'early')) {
              signalled = published ? 'published' : 'before'
              child.kill('SIGINT')
              // The command's cancel (a line, or the end of its stream) arrives meanwhile.
              await sleep(400)
            }
            return notify(all)
          }
          child = spawn(process.execPath, [BIN, ...args, '-i', img], {env: {...process.env, PRISM_IMAGE: '', PRISM_NO_BACKGROUND: '1'}, stdio: ['ignore', 'ignore', 'pipe']})
          let stderr = ''
          child.stderr!.on('data', (d) => (stderr += d))
          const code = await new Promise<number | string | null>((res) => child!.on('close', (x, sig) => res(sig ?? x)))
          result = [code, stderr]
        } finally {
          child?.kill('SIGKILL')
          await server.stop()
        }
        if (when === 'early') expect(signalled, 'signalled before the work was published').to.be.oneOf(['before', 'published'])
        else expect(signalled, 'signalled as the work was published').to.equal('published')
        // Signalled early, the work goes on until the cancel arrives, and may end first: then
        // it is done. Either way the exit status says which.
        if (signalled === 'published' || result[0] === 0) {
          expect(result).to.deep.equal([0, ''])
          expect(state(img)).to.deep.equal(done)
        } else {
          expect(result).to.deep.equal([130, 'prism: interrupted\n'])
          expect(state(img)).to.deep.equal(before)
        }
        if (when === 'early') console.log(`      exit ${result[0]}`)
        const f = prism(['fsck', '-i', img])
        expect(f.status, f.stdout + f.stderr).to.equal(0)
      })
    }
  }
})
