// The fuzzer's worker process (started by test/fuzz.test.ts, so that a hang or a runaway
// allocation is caught from outside): mutates a base image `runs` times, from `seed` on,
// and runs every operation on each mutation. It prints one JSON line per event:
//   {"start": execSeed}   before an execution (the parent reports it if it hangs)
//   {"ok": execSeed, "fsck": code, "repaired": code}
//   {"fail": execSeed, "mutations": [...], "message": "..."}
// Replay one execution: node --import tsx test/fuzz-worker.ts BASE.img EXECSEED 1 SCRATCH
import fs from 'node:fs'
import path from 'node:path'
import {mulberry32} from '../src/device/mem.js'
import {FuzzFailure, execute, metadataTargets, mutate} from './fuzz-lib.js'

const [base, seedArg, runsArg, scratch, secondsArg] = process.argv.slice(2)
const seed = Number(seedArg) >>> 0
const runs = Number(runsArg)
const deadline = secondsArg ? Date.now() + Number(secondsArg) * 1000 : Infinity
const pristine = fs.readFileSync(base)
const targets = metadataTargets(base)
const img = path.join(scratch, 'fuzz.img')
const say = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`)

for (let i = 0; i < runs && Date.now() < deadline; i++) {
  const execSeed = (seed + i) >>> 0
  say({start: execSeed})
  const buf = Buffer.from(pristine)
  const mutations = mutate(buf, targets, mulberry32(execSeed))
  fs.writeFileSync(img, buf)
  try {
    const r = execute(img, scratch)
    say({ok: execSeed, fsck: r.fsck, repaired: r.repaired})
  } catch (e) {
    const msg = e instanceof FuzzFailure ? e.message : `${(e as Error).name}: ${(e as Error).message}\n${(e as Error).stack}`
    say({fail: execSeed, mutations, message: msg})
  }
}
