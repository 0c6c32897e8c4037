// A/B of whole commands: runs each command in turn, the order rotated every round (on this
// machine a contender's place in the rotation moves its time), and prints each one's median
// wall time with its range. For comparing two builds, or a build and its peer, by hand:
//
//   node bench/ab.mjs 21 'node OLD/bin/run.js fsck -i IMG' 'node bin/run.js fsck -i IMG' 'e2fsck -fn IMG.ext4'
import {spawnSync} from 'node:child_process'

const [runs, ...cmds] = process.argv.slice(2)
if (!(Number(runs) > 0) || cmds.length === 0) {
  process.stderr.write('usage: node bench/ab.mjs ROUNDS CMD [CMD...]\n')
  process.exit(2)
}
const t = cmds.map(() => [])
for (let r = 0; r < Number(runs); r++) {
  for (let k = 0; k < cmds.length; k++) {
    const j = (k + r) % cmds.length
    const a = process.hrtime.bigint()
    const p = spawnSync('/bin/sh', ['-c', cmds[j]], {stdio: 'ignore'})
    t[j].push(Number(process.hrtime.bigint() - a) / 1e6)
    if (p.status !== 0) process.stderr.write(`round ${r + 1}: exit ${p.status}: ${cmds[j]}\n`)
  }
}
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[(s.length - 1) >> 1] }
cmds.forEach((c, k) => console.log(`${med(t[k]).toFixed(1).padStart(8)} ms  (${Math.min(...t[k]).toFixed(1)}-${Math.max(...t[k]).toFixed(1)})  ${c}`))
