/**
 * `serve` (the HTTP API) and `token create|list|revoke` (its API tokens). Both load src/api/ with a dynamic
 * import() when they run, so that no other command loads fastify (scripts/bundle-cli.mjs keeps it in a chunk
 * of its own; .dependency-cruiser.cjs allows cli/ → api/ only this way, from this module).
 */
import type { Command } from '@commander-js/extra-typings';
import type { Settings } from '../../settings.js';
import { VERSION } from '../version.js';
import { print, printJson, type CliContext } from '../context.js';

/** The token store of the state directory; api/tokens.ts alone (no fastify): `token` commands start fast. */
async function tokenStore(settings: Settings) {
  const { TokenStore, apiStateDir } = await import('../../api/tokens.js');
  return new TokenStore(apiStateDir(settings));
}

export function addServeCommands(program: Command, ctx: CliContext, settings: Settings): void {
  program
    .command('serve')
    .description('serve the HTTP API (see README "HTTP API"): tokens from `volchain token create`, tasks and tokens kept under the state directory')
    .option('--listen <addr:port>', "address and port to listen on (default 127.0.0.1:8017: local only; 8017 is no PVE service's port)")
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM), with --tls-key')
    .option('--tls-key <file>', "the certificate's private key (PEM)")
    .action(async (opts) => {
      const api = await import('../../api/serve.js');
      const volchain = await ctx.open();
      await api.serve({
        volchain,
        settings,
        listen: opts.listen ?? api.DEFAULT_LISTEN,
        ...(opts.tlsCert !== undefined ? { tlsCert: opts.tlsCert } : {}),
        ...(opts.tlsKey !== undefined ? { tlsKey: opts.tlsKey } : {}),
        version: VERSION,
        onListening: (url) => print(`volchain serve: listening on ${url}`),
      });
    });

  const token = program
    .command('token')
    .description('API tokens of `volchain serve` (only their SHA-256 is stored, in <state dir>/api/tokens.json, mode 0600)');
  token
    .command('create')
    .description('make a token: its secret is printed once, here, and stored nowhere')
    .argument('<name>', "the token's name (a letter, then letters, digits, '_', '.' or '-')")
    .option('--read-only', 'the token may read, not change anything (GET only)')
    .option('--json', 'machine-readable output')
    .action(async (name, opts) => {
      const made = await (await tokenStore(settings)).create(name, opts.readOnly ?? false);
      if (opts.json) printJson(made);
      else print(`${made.token}\n# token '${made.name}'${made.readOnly ? ' (read-only)' : ''}: keep it now, it is not shown again`);
    });
  token
    .command('list')
    .description('list the tokens (names and rights; secrets are not stored)')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      const tokens = await (await tokenStore(settings)).list();
      if (opts.json) printJson({ tokens });
      else
        print(
          tokens.length === 0 ? 'no tokens' : tokens.map((t) => `${t.name}\t${t.readOnly ? 'read-only' : 'read-write'}\tcreated ${t.createdAt}`).join('\n'),
        );
    });
  token
    .command('revoke')
    .description('remove a token: requests with it are refused at once (401)')
    .argument('<name>')
    .action(async (name) => {
      await (await tokenStore(settings)).revoke(name);
      print(`revoked token '${name}'`);
    });
}
