/**
 * The CLI without the one-file bundle: what bin/volchain.js ran before scripts/bundle-cli.mjs existed
 * (every compiled module loaded on its own). Only bench/cli-start.ts uses it, as the "before" figure.
 */
import { main } from '../src/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
