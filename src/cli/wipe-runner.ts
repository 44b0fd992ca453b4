/**
 * The CLI's background wiper (engine/run/wipe.ts's BackgroundWipeRunner): this program itself, started detached as
 * `node bin/volchain.js --config <file> wipe --storage <id> [--vmid N]`, as PVE forks a worker for saferemove.
 * Here rather than in the engine because only the CLI knows where its script is.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BackgroundWipeRequest } from '../engine/run/wipe.js';
import { spawnDetached } from '../tools/runner.js';

/** The CLI script (bin/volchain.js beside dist/, as in the npm package). */
const CLI_SCRIPT = fileURLToPath(new URL('../../../bin/volchain.js', import.meta.url));

/**
 * Starts the wiper with its output appended to `request.log`. False when it cannot be started that way (no
 * config file to hand over, no CLI script): the engine then wipes in the foreground.
 */
export function spawnCliWiper(request: BackgroundWipeRequest): boolean {
  if (!existsSync(CLI_SCRIPT) || !existsSync(request.configPath)) return false;
  const vmidArgs = request.vmid !== undefined ? ['--vmid', String(request.vmid)] : [];
  const args = [CLI_SCRIPT, '--config', request.configPath, 'wipe', '--storage', request.storage, ...vmidArgs];
  // The wiper is always a foreground wipe itself; a test's crash hooks are passed on (they target it too).
  return spawnDetached(process.execPath, args, request.log, { VOLCHAIN_WIPE: 'foreground' }) > 0;
}
