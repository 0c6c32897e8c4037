// Loaded with --import: at exit, prints to stderr the CPU time of the process's main thread
// and of all its threads (from /proc/self/task/*/schedstat, in nanoseconds) and the time
// since it started. On a shared machine the main thread's CPU time moves far less with the
// load than the wall time does, so two builds can be compared while others run:
//
//   node --import ./bench/threadcpu.mjs bin/run.js fsck -i IMG
//   -> threads: main 261.1 ms CPU, all 432.9 ms CPU, 473.4 ms since start
import fs from 'node:fs'

const cpuMs = (task) => Number(fs.readFileSync(`/proc/self/task/${task}/schedstat`, 'utf8').split(' ')[0]) / 1e6

process.on('exit', () => {
  let all = 0
  for (const t of fs.readdirSync('/proc/self/task')) all += cpuMs(t)
  fs.writeSync(2, `threads: main ${cpuMs(process.pid).toFixed(1)} ms CPU, all ${all.toFixed(1)} ms CPU, ${performance.now().toFixed(1)} ms since start\n`)
})
