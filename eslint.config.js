// ESLint flat config: typescript-eslint's type-checked rule sets over src/, test/, bench/ and scripts/.
// Formatting is Prettier's job (.prettierrc.json); eslint-config-prettier comes last and switches off every
// rule that would fight it, so `prettier --write .` never makes lint fail.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  ...tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['eslint.config.js', 'bin/*.js', 'scripts/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // The rules this project most needs (STYLE.md: an unawaited rename corrupts a chain). Already in
      // strictTypeChecked; listed so that nobody relaxes them by accident.
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unnecessary-condition': 'error',
      // Not in any preset: a new step kind or operation kind must be handled everywhere it is switched on.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      // Not in any preset: type-only imports stay type-only in the emitted JS (no accidental runtime cycles).
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      // node:test's describe/it/test return a promise that never rejects (a failure is reported by the runner,
      // not by the promise), and the runner waits for every test it registered: nothing floats there.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] },
          ],
        },
      ],
      // Relaxed: sizes, offsets, counts and exit codes in messages are numbers and bigints (64-bit qcow2 fields),
      // and their default rendering is exactly what a message should show. Objects, arrays, null/undefined and
      // never stay forbidden: those are the real bugs ("[object Object]", "undefined").
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowAny: false, allowBoolean: false, allowNever: false, allowNullish: false, allowRegExp: false },
      ],
      // Off: it asks for `x!` instead of `x as T`, while strictTypeChecked's no-non-null-assertion forbids `x!`;
      // the two cannot both be satisfied.
      '@typescript-eslint/non-nullable-type-assertion-style': 'off',
      // Relaxed: parsed QMP and JSON replies are Record<string, unknown>; a bracket marks a key that comes from
      // untyped input rather than from a declared property.
      '@typescript-eslint/dot-notation': ['error', { allowIndexSignaturePropertyAccess: true }],
    },
  },
  {
    // Plain JS (this file, bin/, scripts/, the dependency-cruiser config): no types to check; Node globals.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', module: 'writable', require: 'readonly', URL: 'readonly' },
    },
  },
  prettier,
);
