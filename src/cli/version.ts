/**
 * The program's version, in a module of its own so that bin/volchain.js can answer a bare `--version` without
 * loading the CLI (issue 16: loading the bundle is most of a short command's time). A unit test keeps it equal
 * to package.json's version.
 */
export const VERSION = '0.1.0';
