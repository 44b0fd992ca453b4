/**
 * Progress of long steps (commit, rebase). A bar on a terminal; nothing when stderr is not a TTY or the
 * output is JSON, so scripts and logs stay clean.
 */
import cliProgress from 'cli-progress';
import type { EngineEvent } from '../engine/executor.js';

export function progressReporter(enabled: boolean): { onEvent?: (e: EngineEvent) => void; stop: () => void } {
  if (!enabled || !process.stderr.isTTY) return { stop: () => undefined };
  let bar: cliProgress.SingleBar | undefined;
  const stop = (): void => {
    bar?.stop();
    bar = undefined;
  };
  return {
    stop,
    onEvent: (e) => {
      if (e.type === 'step' && e.long) {
        stop();
        bar = new cliProgress.SingleBar(
          { format: `${e.description.slice(0, 60)} [{bar}] {percentage}%`, stream: process.stderr, hideCursor: true },
          cliProgress.Presets.shades_classic,
        );
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
