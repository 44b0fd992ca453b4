/**
 * Import rules for src/, checked by `npm run check:deps` (which `npm test`, and so CI, runs before the tests).
 * ARCHITECTURE.md explains the layers; this file is what enforces them.
 *
 * Why rules at all: volchain is a library as much as a CLI (an HTTP API comes next). A layer that imports
 * one above it cannot be used, tested or replaced without dragging the upper one in, and a cycle means
 * neither module can be understood alone. Both crept in when nothing checked them.
 */

/**
 * The layers, lowest first. A module may import from its own layer and from layers with a lower rank, never
 * from a layer of the same rank (siblings stay independent of each other) or above.
 * `match` is a regular expression on the path relative to the repository root.
 */
const LAYERS = [
  // Error classes and shell-quoting for messages: every layer reports errors, so these sit below all.
  { name: 'errors', rank: 0, match: '^src/(errors|quote)\\.ts$' },
  // The settings read from the environment (settings.ts): any layer may take them, and they import nothing.
  { name: 'settings', rank: 0, match: '^src/settings\\.ts$' },
  // Types only (plans, steps, operation kinds): the vocabulary the journal and the backends share with the
  // engine, so that they need not import the engine to name a plan.
  { name: 'model', rank: 1, match: '^src/model/' },
  // Leaves, independent of each other: pure naming rules, the native qcow2 reader, the process runners
  // (the only place that starts processes) and the QMP client (speaks to a running QEMU over its socket).
  { name: 'naming', rank: 2, match: '^src/naming/' },
  { name: 'qcow2', rank: 2, match: '^src/qcow2/' },
  { name: 'tools', rank: 2, match: '^src/tools/' },
  { name: 'qmp', rank: 2, match: '^src/qmp/' },
  // Where operation journals live and their record format: read by backends (LVM keeps them on the VG).
  { name: 'journal', rank: 3, match: '^src/journal/' },
  // Which layers belong to which volume (names, trusted records, backing references): pure, and decided in
  // one place for the backends (LVM activation and tags) and the engine (tree reader, live matcher).
  { name: 'ownership', rank: 3, match: '^src/ownership/' },
  // storage.cfg and the VM config files: what storages exist and how they are set up.
  { name: 'config', rank: 4, match: '^src/config/' },
  // One implementation per storage type behind the Backend interface.
  { name: 'backends', rank: 5, match: '^src/backends/' },
  // Planning, executing, journaling, repair, live operations: the library's behaviour.
  { name: 'engine', rank: 6, match: '^src/engine/' },
  // The composition root (createVolchain) and the documented result shapes: what every front end (the CLI,
  // library callers, the HTTP API) goes through, so it sits above the engine and below them.
  { name: 'library', rank: 7, match: '^src/(create|results)\\.ts$' },
  // The command line, one user of the library among others (the HTTP API will be another).
  { name: 'cli', rank: 8, match: '^src/cli/' },
  // The HTTP API (`volchain serve`), another user of the library beside the CLI: the CLI loads it only for
  // `serve` and `token`, lazily, so a short command never loads fastify. The exception is written below.
  { name: 'api', rank: 8, match: '^src/api/' },
  // The package's public entry: re-exports the library; nothing imports it.
  { name: 'index', rank: 9, match: '^src/index\\.ts$' },
];

/** Any module of a layer. */
const ANY_LAYER = LAYERS.map((l) => `(${l.match})`).join('|');

/** One rule per layer: what it must not import (its siblings and everything above it). */
const layerRules = LAYERS.flatMap((layer) => {
  // cli/ may reach api/ (same rank) for `serve` and `token` only: see the rule cli-to-api-lazily.
  const forbidden = LAYERS.filter((other) => other !== layer && other.rank >= layer.rank && !(layer.name === 'cli' && other.name === 'api'));
  // The top layer may import everything (an empty pattern would match every path).
  if (forbidden.length === 0) return [];
  return {
    name: `layer-${layer.name}`,
    comment:
      `src/ layering: ${layer.name} (rank ${layer.rank}) may import only lower layers, ` +
      `not ${forbidden.map((o) => o.name).join(', ')} (see ARCHITECTURE.md)`,
    severity: 'error',
    from: { path: layer.match },
    to: { path: forbidden.map((o) => `(${o.match})`).join('|') },
  };
});

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      // A cycle, even through `import type`, means two modules that can only be read, tested and changed
      // together; type-only cycles count because they tie the modules' meaning together all the same.
      name: 'no-circular',
      comment: 'import cycle in src/ (type-only imports count): move the shared piece down or inject it',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    ...layerRules,
    {
      // The CLI starts the HTTP API for `serve` (and reaches its token store for `token`), but must not load
      // fastify for every other command: only a dynamic import() from the command module that needs it.
      name: 'cli-to-api-lazily',
      comment: 'cli/ may import api/ only with a dynamic import() from cli/commands/serve.ts (the CLI must not load fastify at start-up)',
      severity: 'error',
      from: { path: '^src/cli/' },
      to: { path: '^src/api/', dependencyTypesNot: ['dynamic-import'] },
    },
    {
      name: 'cli-to-api-only-from-serve',
      comment: 'only cli/commands/serve.ts may import api/',
      severity: 'error',
      from: { path: '^src/cli/', pathNot: '^src/cli/commands/serve\\.ts$' },
      to: { path: '^src/api/' },
    },
    {
      // Every file in src/ must belong to a layer above, so a new folder is placed on purpose: neither a
      // module outside them that imports something, nor an import of one, passes.
      name: 'src-in-a-layer',
      comment: 'a module in src/ outside the known layers: add its folder to LAYERS in .dependency-cruiser.cjs',
      severity: 'error',
      from: { path: '^src/', pathNot: ANY_LAYER },
      to: {},
    },
    {
      name: 'src-to-a-layer',
      comment: 'an import of a module in src/ outside the known layers: add its folder to LAYERS in .dependency-cruiser.cjs',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/', pathNot: ANY_LAYER },
    },
    {
      // model/ is vocabulary, not code: importing it must never load anything at run time.
      name: 'model-types-only',
      comment: 'src/model/ holds types only: import it with `import type`',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/model/', dependencyTypesNot: ['type-only'] },
    },
    {
      // Shipped code must not depend on the test suite or the benchmarks (not in the package).
      name: 'src-not-to-test-or-bench',
      comment: 'src/ imports from test/ or bench/, which are not shipped',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      // A module nothing imports and that imports nothing is dead code or a forgotten wiring.
      name: 'no-orphans',
      comment: 'a module in src/ that nothing imports and that imports nothing: wire it in or delete it',
      severity: 'error',
      from: { orphan: true, path: '^src/', pathNot: '\\.d\\.ts$' },
      to: {},
    },
    {
      // devDependencies are not installed for users of the package: src/ would fail at run time.
      name: 'src-not-to-dev-dependencies',
      comment: 'src/ imports a devDependency, which users of the package do not get: make it a dependency',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      // An import that resolves to nothing fails at run time (or is a typo tsc let through as a type).
      name: 'not-to-unresolvable',
      comment: 'an import in src/ that resolves to no file or package',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
    {
      // A package used but not declared in package.json works here by accident (hoisting) and not for users.
      name: 'no-non-package-json',
      comment: 'src/ imports a package that package.json does not declare',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-no-pkg', 'npm-unknown'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Count `import type` too: a type-only cycle is still a cycle between the modules' meanings.
    tsPreCompilationDeps: true,
    // Resolve `./x.js` specifiers to the `./x.ts` sources as tsc does (NodeNext).
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
