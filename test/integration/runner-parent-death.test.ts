/**
 * A data-moving command started by volchain dies with it (RunOptions.stopWithCaller): a SIGKILL of volchain
 * releases the VM's lock, and a qemu-img left running would go on writing into the layers `repair` is then
 * free to rewrite. Real processes: a node process starts a long command through the runner and is killed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import type * as Runner from '../../src/tools/runner.js';

const runnerUrl = pathToFileURL(join(import.meta.dirname, '..', '..', 'src', 'tools', 'runner.js')).href;

/** Pids of the live processes whose parent is `ppid` and whose command name is `comm`. */
function childrenOf(ppid: number, comm: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'.
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const fields = stat.slice(close + 2).split(' ');
      if (name === comm && Number(fields[1]) === ppid && fields[0] !== 'Z') found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return state.slice(state.lastIndexOf(')') + 2, state.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Starts a node process that runs `sleep 120` through the runner (with or without stopWithCaller), finds the
 * sleep (directly the node's child, or setpriv's exec'd image, which keeps the pid), SIGKILLs the node and
 * reports whether the sleep outlived it.
 */
async function sleepOutlivesKilledCaller(stopWithCaller: boolean): Promise<boolean> {
  const script = `import(${JSON.stringify(runnerUrl)}).then((m) => m.run('sleep', ['120'], { stopWithCaller: ${String(stopWithCaller)} }));`;
  const caller = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  const callerPid = caller.pid;
  assert.ok(callerPid !== undefined);
  const sleepPid = await waitFor('the sleep to start', () => childrenOf(callerPid, 'sleep')[0]);
  caller.kill('SIGKILL');
  await new Promise((resolve) => caller.once('exit', resolve));
  try {
    // The kernel sends the death signal as the caller exits; give it a moment to land.
    await waitFor('the sleep to die', () => (alive(sleepPid) ? undefined : true), 3000);
    return false;
  } catch {
    process.kill(sleepPid, 'SIGKILL');
    return true;
  }
}

test('a command run with stopWithCaller dies when volchain is SIGKILLed', async () => {
  assert.equal(await sleepOutlivesKilledCaller(true), false);
});

test('without stopWithCaller the same command outlives a SIGKILLed caller (the case the option exists for)', async () => {
  assert.equal(await sleepOutlivesKilledCaller(false), true);
});

test('a missing command behind stopWithCaller is still "not installed" (exit 5), not a generic failure', async () => {
  const { run } = (await import(runnerUrl)) as typeof Runner;
  await assert.rejects(run('volchain-no-such-command', [], { stopWithCaller: true }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'NOT_SUPPORTED');
    assert.match(err.message, /volchain-no-such-command is not installed/);
    return true;
  });
});
