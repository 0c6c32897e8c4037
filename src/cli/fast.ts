// Entry point of the start-up fast paths (bin/run.js): `prism cat`, `prism fsck`, `prism
// fileset list` and the common forms of `prism clone`, `prism scan` and `prism export`.
// scripts/bundle.mjs bundles this module with
// the library into one file, dist/fast.cjs, because resolving and compiling some fifty
// modules one by one costs more than an asynchronous clone itself; bin/load-bundle.cjs loads
// it with V8's code cache. The check for a server holding the image (borrowIfServed) comes
// with it, so that a fast path loads one file.
export {fastCat} from './cat.js'
export {fastClone} from './fastclone.js'
export {fastScan} from './scan.js'
export {fastFsck} from './fsck.js'
export {fastExport} from './export.js'
export {fastFilesetList} from './filesetlist.js'
export {findImage} from './locate.js'
export {ensureExpander, runBackground} from '../clone/background.js'
export {borrowIfServed} from './served.js'
