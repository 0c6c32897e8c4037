// Summarizes a V8 .cpuprofile (from `node --cpu-prof`): self and inclusive time per function,
// as a share of the profile's wall time. For finding where a benchmark step spends its time:
//
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bin/run.js cp -r TREE root:/ -i x.img
//   node --import tsx bench/cpuprof.ts /tmp/prof/*.cpuprofile [--top 25]
import fs from 'node:fs'
import path from 'node:path'

interface Node {
  id: number
  callFrame: {functionName: string, url: string, lineNumber: number}
  hitCount?: number
  children?: number[]
}
interface Profile {nodes: Node[], startTime: number, endTime: number, samples: number[], timeDeltas: number[]}

const args = process.argv.slice(2)
const topIdx = args.indexOf('--top')
const top = topIdx >= 0 ? Number(args.splice(topIdx, 2)[1]) : 25

function label(n: Node): string {
  const f = n.callFrame
  const file = f.url ? path.basename(f.url.replace(/^file:\/\//, '')) : ''
  return `${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`
}

for (const file of args) {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // Time per sample node from timeDeltas (more exact than hitCount).
  const selfUs = new Map<number, number>()
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0
    selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + dt)
  }
  const total = p.endTime - p.startTime
  const self = new Map<string, number>()
  const incl = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!
    self.set(label(n), (self.get(label(n)) ?? 0) + us)
    // Inclusive: charge every distinct function on the stack once.
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!)
      if (seen.has(l)) continue
      seen.add(l)
      incl.set(l, (incl.get(l) ?? 0) + us)
    }
  }
  const pct = (us: number): string => `${((100 * us) / total).toFixed(1).padStart(5)}%`
  const ms = (us: number): string => `${(us / 1000).toFixed(0).padStart(7)} ms`
  process.stdout.write(`\n${file}: ${(total / 1e6).toFixed(3)} s profiled\n`)
  process.stdout.write(`  self time (top ${top}):\n`)
  for (const [l, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${ms(us)} ${pct(us)}  ${l}\n`)
  process.stdout.write(`  inclusive time (top ${top}):\n`)
  for (const [l, us] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${ms(us)} ${pct(us)}  ${l}\n`)
}
