/**
 * Progress of long steps (commit, rebase). A bar on a terminal; nothing when stderr is not a TTY or the
 * output is JSON, so scripts and logs stay clean.
 */
import { createRequire } from 'node:module';
import type cliProgressModule from 'cli-progress';
import type { PendingRemoval } from '../backends/backend.js';
import type { EngineEvent } from '../engine/run/step-rules.js';

type SingleBar = cliProgressModule.SingleBar;

/** Loaded on the first bar: most commands never draw one, and every CLI call pays its module loading. */
let loaded: typeof cliProgressModule | undefined;
function newBar(format: string): SingleBar {
  loaded ??= createRequire(import.meta.url)('cli-progress') as typeof cliProgressModule;
  return new loaded.SingleBar({ format, stream: process.stderr, hideCursor: true }, loaded.Presets.shades_classic);
}

export function progressReporter(enabled: boolean): { onEvent?: (e: EngineEvent) => void; stop: () => void } {
  if (!enabled || !process.stderr.isTTY) return { stop: () => undefined };
  let bar: SingleBar | undefined;
  const stop = (): void => {
    bar?.stop();
    bar = undefined;
  };
  return {
    stop,
    onEvent: (e) => {
      if (e.type === 'step' && e.long) {
        stop();
        bar = newBar(`${e.description.slice(0, 60)} [{bar}] {percentage}%`);
        bar.start(100, 0);
      } else if (e.type === 'progress') {
        bar?.update(Math.floor(e.percent));
      } else if (e.type === 'step-done') {
        bar?.update(100);
        stop();
      }
    },
  };
}

/**
 * Progress of `volchain wipe`: one bar per LV on a terminal; otherwise (the background wiper writes to its
 * log) timestamped lines: each start and end, and how far a wipe got at most every 10 seconds.
 */
export function wipeReporter(enabled: boolean): { onProgress?: (p: PendingRemoval) => void; log?: (line: string) => void; stop: () => void } {
  if (!enabled) return { stop: () => undefined };
  const line = (text: string): void => {
    process.stderr.write(`${new Date().toISOString()} ${text}\n`);
  };
  if (!process.stderr.isTTY) {
    let last = 0;
    return {
      log: line,
      onProgress: (p) => {
        if (Date.now() - last < 10_000 || p.totalBytes === 0) return;
        last = Date.now();
        line(`${p.layer}: ${p.doneBytes} of ${p.totalBytes} bytes zeroed (${Math.floor((100 * p.doneBytes) / p.totalBytes)}%)`);
      },
      stop: () => undefined,
    };
  }
  let bar: SingleBar | undefined;
  let current: string | undefined;
  const stop = (): void => {
    bar?.stop();
    bar = undefined;
    current = undefined;
  };
  return {
    stop,
    onProgress: (p) => {
      if (p.totalBytes === 0) return;
      if (current !== p.layer) {
        stop();
        current = p.layer;
        const who = p.pid !== null && p.pid !== process.pid ? ` (pid ${p.pid})` : '';
        bar = newBar(`wiping ${p.layer.slice(0, 50)}${who} [{bar}] {percentage}% {value}/{total} MiB`);
        bar.start(Math.ceil(p.totalBytes / MiB), 0);
      }
      bar?.update(Math.floor(p.doneBytes / MiB));
    },
  };
}

/** One line of `status` about a removed LV still being wiped (or waiting for a wiper). */
export function renderRemoval(w: PendingRemoval): string {
  const pct = w.totalBytes > 0 ? Math.floor((100 * w.doneBytes) / w.totalBytes) : 0;
  const done = `${w.doneBytes} of ${w.totalBytes} bytes zeroed (${pct}%)`;
  if (w.state === 'running') return `${w.storage}:${w.layer}: being wiped by pid ${String(w.pid)} on ${String(w.host)} since ${String(w.startedAt)}, ${done}`;
  const who = w.pid !== null ? `its wiper (pid ${w.pid} on ${String(w.host)}) stopped` : 'no wiper runs';
  return `${w.storage}:${w.layer}: removed, waiting to be wiped, ${done}; ${who}: 'volchain wipe' finishes it`;
}

const MiB = 1024 * 1024;
