// Entry point of `prism fsck`'s start-up fast path (bin/run.js): scripts/bundle.mjs bundles
// it into dist/fast-fsck.cjs, about half of dist/fast.cjs. fsck is judged against e2fsck's
// start-up, and the smaller bundle loads faster. The check for a server holding the image
// comes with it, so that the command loads one file.
export {fastFsck} from './fsck.js'
export {borrowIfServed} from './served.js'
