// The tar benchmark: a tar of at least 50,000 entries made from the host's /usr (plain, gzip
// and zstd), imported with `prism import --create` next to `tar -x` of the same archive onto
// the host followed by `sync`, and next to `mke2fs -d` of the extracted tree; then
// `prism export` next to `tar -c` of the same tree (both into a file), and, for information,
// `tar --format=pax -c` (which writes a pax header with atime and ctime for every member).
// Same data, same run, the contenders' order rotating from run to run; medians and ratios.
//
//   node --import tsx bench/tar.ts                 # 60,000 entries, 3 runs
//   node --import tsx bench/tar.ts --files 2000 --runs 1   # a smoke test
//   node --import tsx bench/tar.ts --only export --runs 5  # the export step alone
//
// Goals (issue 16): import <= 1.0x (tar -x + sync), export <= 1.0x tar -c.
import fs from 'node:fs'
import path from 'node:path'
import {parseArgs} from 'node:util'
import {ensureBuilt, fmtBytes, log, median, prismCmd, q, sh, which} from './lib.js'

const {values} = parseArgs({options: {
  files: {type: 'string', default: process.env.PRISM_BENCH_FILES ?? '60000'},
  runs: {type: 'string', default: process.env.PRISM_BENCH_RUNS ?? '3'},
  base: {type: 'string', default: process.env.PRISM_BENCH_BASE ?? '/tmp/prism-bench-tar'},
  compress: {type: 'string', default: 'none,gzip,zstd'},
  keep: {type: 'boolean', default: false},
  only: {type: 'string', default: 'import,export'},
}})
const ONLY = values.only!.split(',')
const FILES = Number(values.files)
const RUNS = Number(values.runs)
const BASE = values.base!
const COMPRESS = values.compress!.split(',')

function timed(script: string): number {
  const t = process.hrtime.bigint()
  const r = sh(script)
  if (r.status !== 0) throw new Error(`${script}: exit ${r.status}: ${r.stderr}`)
  return Number(process.hrtime.bigint() - t) / 1e9
}

function main(): void {
  ensureBuilt()
  const P = prismCmd()
  fs.rmSync(BASE, {recursive: true, force: true})
  fs.mkdirSync(BASE, {recursive: true})
  const list = path.join(BASE, 'list')
  // The first FILES entries of /usr in name order (whole subtrees), directories included.
  sh(`cd / && find usr -xdev | LC_ALL=C sort | head -n ${FILES} > ${q(list)}`)
  const archives: Record<string, string> = {none: path.join(BASE, 'usr.tar')}
  sh(`tar --no-recursion -cf ${q(archives.none)} -C / -T ${q(list)} 2>/dev/null`)
  if (COMPRESS.includes('gzip')) sh(`gzip -c ${q(archives.none)} > ${q(archives.gzip = archives.none + '.gz')}`)
  if (COMPRESS.includes('zstd')) sh(`zstd -q -c ${q(archives.none)} > ${q(archives.zstd = archives.none + '.zst')}`)
  const tree = path.join(BASE, 'tree')
  fs.mkdirSync(tree)
  sh(`tar -xf ${q(archives.none)} -C ${q(tree)}`)
  const bytes = Number(sh(`du -sb ${q(tree)} | cut -f1`).stdout.toString().trim())
  const entries = Number(sh(`tar -tf ${q(archives.none)} | wc -l`).stdout.toString().trim())
  const imgSize = Math.max(256 * 1024 * 1024, Math.ceil(bytes * 2 / (1 << 20)) * (1 << 20))
  log(`tree: ${entries} entries, ${fmtBytes(bytes)}; load ${fs.readFileSync('/proc/loadavg', 'utf8').trim()}`)

  const img = path.join(BASE, 'disk.img')
  const dst = path.join(BASE, 'dst')
  const rows: string[] = []
  const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(2)
  for (const c of ONLY.includes('import') ? COMPRESS : []) {
    const a = archives[c]
    if (!a) continue
    const prismT: number[] = []
    const tarT: number[] = []
    for (let i = 0; i < RUNS; i++) {
      const one = () => {
        fs.rmSync(img, {force: true})
        sh(`${P} mkfs ${q(img)} --size ${imgSize} --force`)
        sh('sync')
        prismT.push(timed(`${P} import -i ${q(img)} --create usr ${q(a)}`))
      }
      const two = () => {
        fs.rmSync(dst, {recursive: true, force: true})
        fs.mkdirSync(dst)
        sh('sync')
        tarT.push(timed(`tar -xf ${q(a)} -C ${q(dst)} && sync`))
      }
      if (i % 2 === 0) { one(); two() } else { two(); one() }
    }
    rows.push(`import (${c})  prism ${median(prismT).toFixed(2)} s   tar -x + sync ${median(tarT).toFixed(2)} s   ratio ${ratio(prismT, tarT)}`)
  }
  const mke2fs = which('mke2fs')
  if (mke2fs && ONLY.includes('import')) {
    const m: number[] = []
    const e2 = path.join(BASE, 'e2.img')
    for (let i = 0; i < RUNS; i++) {
      fs.rmSync(e2, {force: true})
      sh(`truncate -s ${imgSize} ${q(e2)} && sync`)
      m.push(timed(`${mke2fs} -q -F -t ext4 -d ${q(tree)} ${q(e2)} && sync`))
    }
    rows.push(`mke2fs -d of the extracted tree: ${median(m).toFixed(2)} s`)
    fs.rmSync(e2, {force: true})
  }
  // Export: the image from the last plain import (re-made), against tar -c of the tree.
  if (ONLY.includes('export')) {
    fs.rmSync(img, {force: true})
    sh(`${P} mkfs ${q(img)} --size ${imgSize} --force && ${P} import -i ${q(img)} --create usr ${q(archives.none)}`)
    const out1 = path.join(BASE, 'out-prism.tar')
    const out2 = path.join(BASE, 'out-tar.tar')
    const out3 = path.join(BASE, 'out-tar-pax.tar')
    const pe: number[] = []
    const te: number[] = []
    const xe: number[] = []
    const contenders = [
      () => pe.push(timed(`${P} export -i ${q(img)} usr ${q(out1)}`)),
      () => te.push(timed(`tar -cf ${q(out2)} -C ${q(tree)} .`)),
      () => xe.push(timed(`tar --format=pax -cf ${q(out3)} -C ${q(tree)} .`)),
    ]
    for (let i = 0; i < RUNS + 1; i++) for (let k = 0; k < 3; k++) contenders[(i + k) % 3]()
    // The first round of each warms the caches; it is dropped.
    pe.shift()
    te.shift()
    xe.shift()
    const size = (f: string) => fmtBytes(fs.statSync(f).size)
    rows.push(`export (none)  prism ${median(pe).toFixed(2)} s   tar -c ${median(te).toFixed(2)} s   ratio ${ratio(pe, te)}`)
    rows.push(`  (information)  tar --format=pax -c ${median(xe).toFixed(2)} s   prism/that ${ratio(pe, xe)}; archives: prism ${size(out1)}, tar -c ${size(out2)}, tar --format=pax ${size(out3)}`)
    rows.push(`  samples: prism ${pe.map((x) => x.toFixed(2)).join(' ')}; tar -c ${te.map((x) => x.toFixed(2)).join(' ')}; tar --format=pax -c ${xe.map((x) => x.toFixed(2)).join(' ')}`)
  }
  for (const r of rows) log(r)
  log(`load after: ${fs.readFileSync('/proc/loadavg', 'utf8').trim()}`)
  if (!values.keep) fs.rmSync(BASE, {recursive: true, force: true})
}

main()
