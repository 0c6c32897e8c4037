#!/usr/bin/env node
// The `prism` binary: hands argv to oclif, which reads oclif.manifest.json
// so that --help and --version load no command code.
import {execute} from '@oclif/core'

await execute({dir: import.meta.url})
