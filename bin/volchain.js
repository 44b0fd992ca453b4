#!/usr/bin/env node
// Entry point of the CLI; the code lives in the compiled library (npm run build).
import { main } from '../dist/src/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
