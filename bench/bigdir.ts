// Walks over one large directory, at several sizes (issue 19: every cost grows linearly or
// better). A directory of N files of 100 bytes is put in an image with `prism cp -r`; then
// each command that walks a tree runs on it, next to the host tool doing the same job on the
// same files (on the host's file system) in the same run, the two alternating which goes
// first. The table gives the medians, Prism's time per file, and how that time per file grew
// from the smallest N: about 1.0 is linear. Before the walks visited a large directory in
// inode order (src/fs/dir.ts INODE_ORDER_MIN) the time per file grew about fourfold from
// 100,000 to 400,000 files (bench/README.md, "One large directory").
//
//   node --import tsx bench/bigdir.ts [--files 100000,200000,400000] [--runs 2] [--base DIR] [--keep] [--only rm,du]
import fs from 'node:fs'
import path from 'node:path'
import {parseArgs} from 'node:util'
import {check, ensureBuilt, log, median, prism, q, sh, type RunResult} from './lib.js'

const {values: v} = parseArgs({options: {
  files: {type: 'string'}, runs: {type: 'string'}, base: {type: 'string'}, keep: {type: 'boolean'}, only: {type: 'string'},
}})
/** steps whose command starts with one of these words (all when not given) */
const only = v.only?.split(',')
const sizes = (v.files ?? '100000,200000,400000').split(',').map(Number)
const runs = Number(v.runs ?? 2)
const base = v.base ?? '/tmp/prism-bigdir'
fs.mkdirSync(base, {recursive: true})
ensureBuilt()

interface Step {
  name: string
  /** prepares a fresh image `img` (a copy of the filled one) and the host side, untimed */
  prepare?: (img: string, host: string) => void
  prism: (img: string) => RunResult
  /** the host tool, on the host directory `host` of the same files; null: no peer */
  peer: ((host: string, scratch: string) => RunResult) | null
  /** puts the host side back, untimed */
  undo?: (host: string, scratch: string) => void
}

const ok = (r: RunResult, what: string) => check(r, what)
const steps: Step[] = [
  {name: 'du -s', prism: (img) => ok(prism(['du', '-s', '-i', img, 'root:/flat']), 'prism du'), peer: (h) => ok(sh(`du -s ${q(h)}`), 'du')},
  {name: 'fileset list', prism: (img) => ok(prism(['fileset', 'list', '-i', img]), 'prism fileset list'), peer: null},
  {
    name: 'clone --mode sync',
    prism: (img) => ok(prism(['clone', '-i', img, 'root', 'c', '--mode', 'sync']), 'prism clone'),
    peer: (h, s) => ok(sh(`cp -a ${q(h)} ${q(s)} && sync -f ${q(s)}`), 'cp -a'),
    undo: (h, s) => fs.rmSync(s, {recursive: true, force: true}),
  },
  {
    name: 'expand (lazy clone)',
    prepare: (img) => { ok(prism(['clone', '-i', img, 'root', 'c', '--mode', 'lazy']), 'prism clone --mode lazy') },
    prism: (img) => ok(prism(['expand', '-i', img, 'c']), 'prism expand'),
    peer: null,
  },
  {
    name: 'chmod -R',
    prism: (img) => ok(prism(['chmod', '-R', '600', 'root:/flat', '-i', img]), 'prism chmod'),
    peer: (h) => ok(sh(`chmod -R 600 ${q(h)} && chmod 755 ${q(h)} && sync -f ${q(h)}`), 'chmod -R'),
    undo: (h) => { ok(sh(`chmod -R 644 ${q(h)} && chmod 755 ${q(h)}`), 'chmod back') },
  },
  {
    name: 'rm -r',
    prepare: (_img, h) => { ok(sh(`cp -a ${q(h)} ${q(h + '.rm')}`), 'cp -a for rm') },
    prism: (img) => ok(prism(['rm', '-r', 'root:/flat', '-i', img]), 'prism rm'),
    peer: (h) => ok(sh(`rm -r ${q(h + '.rm')} && sync -f ${q(path.dirname(h))}`), 'rm -r'),
  },
]

interface Row {n: number, step: string, prism: number[], peer: number[]}
const rows: Row[] = []
for (const n of sizes) {
  const dir = path.join(base, `n${n}`)
  const host = path.join(dir, 'flat')
  const filled = path.join(dir, 'filled.img')
  if (!fs.existsSync(filled)) {
    log(`${n} files: making the host directory and the image`)
    fs.rmSync(dir, {recursive: true, force: true})
    fs.mkdirSync(host, {recursive: true})
    const data = Buffer.alloc(100, 'x')
    for (let i = 0; i < n; i++) fs.writeFileSync(path.join(host, `file-${String(i).padStart(7, '0')}.txt`), data)
    ok(prism(['mkfs', filled, '--size', '16G']), 'prism mkfs')
    ok(prism(['cp', '-r', host, 'root:/flat', '-i', filled]), 'prism cp -r')
  }
  const img = path.join(dir, 'work.img')
  const scratch = path.join(dir, 'copy')
  for (const s of steps.filter((x) => !only || only.some((w) => x.name.startsWith(w)))) {
    const row: Row = {n, step: s.name, prism: [], peer: []}
    for (let r = 0; r < runs; r++) {
      ok(sh(`cp --sparse=always ${q(filled)} ${q(img)}`), 'copy of the image')
      s.prepare?.(img, host)
      // (alternating which goes first: the second finds the page cache as the first left it)
      const order = r % 2 === 0 ? ['prism', 'peer'] : ['peer', 'prism']
      for (const who of order) {
        if (who === 'prism') row.prism.push(s.prism(img).secs)
        else if (s.peer) { row.peer.push(s.peer(host, scratch).secs); s.undo?.(host, scratch) }
      }
      log(`${n} ${s.name} run ${r + 1}: prism ${row.prism[row.prism.length - 1].toFixed(2)} s${row.peer.length ? `, peer ${row.peer[row.peer.length - 1].toFixed(2)} s` : ''}`)
    }
    rows.push(row)
  }
  fs.rmSync(img, {force: true})
  if (!v.keep) fs.rmSync(dir, {recursive: true, force: true})
}

const peerName: Record<string, string> = {'du -s': 'du -s', 'clone --mode sync': 'cp -a + sync', 'chmod -R': 'chmod -R + sync', 'rm -r': 'rm -r + sync'}
console.log(`\nOne directory of N files (medians of ${runs} runs; growth: Prism's time per file against the smallest N)`)
console.log('| files | command | prism s | peer | peer s | prism / peer | prism µs per file | growth per file |')
console.log('|---|---|---|---|---|---|---|---|')
for (const r of rows) {
  const p = median(r.prism)
  const first = rows.find((x) => x.step === r.step)!
  const growth = (p / r.n) / (median(first.prism) / first.n)
  const peer = r.peer.length ? median(r.peer) : null
  console.log(`| ${r.n.toLocaleString('en')} | ${r.step} | ${p.toFixed(2)} | ${peerName[r.step] ?? '-'} | ${peer === null ? '-' : peer.toFixed(2)} | ${peer === null ? '-' : (p / peer).toFixed(2)} | ${((p / r.n) * 1e6).toFixed(1)} | ${growth.toFixed(2)} |`)
}
