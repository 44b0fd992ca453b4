/** Timing helpers shared by the chain and listing benchmarks (bench/qcow2-chain.ts, bench/list-1000.ts). */

export interface Timing {
  /** Milliseconds. */
  median: number;
  p10: number;
  p90: number;
  runs: number;
}

/** Runs `fn` `warmup` times, then `runs` times one after another; median and 10th/90th percentiles in ms. */
export async function timeIt(fn: () => Promise<unknown>, runs: number, warmup = Math.min(50, runs)): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    await fn();
    ms.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  ms.sort((a, b) => a - b);
  const at = (q: number): number => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? NaN;
  return { median: at(0.5), p10: at(0.1), p90: at(0.9), runs };
}

export function show(label: string, t: Timing, width = 52): string {
  const fmt = (ms: number): string => (ms >= 100 ? ms.toFixed(1) : ms.toFixed(3));
  return `${label.padEnd(width)} ${fmt(t.median).padStart(9)} ms  (p10 ${fmt(t.p10)}, p90 ${fmt(t.p90)}, n=${t.runs})`;
}

export function ratio(label: string, slow: Timing, fast: Timing, width = 52): string {
  return `${label.padEnd(width)} ${(slow.median / fast.median).toFixed(1).padStart(9)}x`;
}

/**
 * Times several functions in alternation: each round runs every function its `perRound` times, so all of
 * them are sampled over the same period and a change in machine load (a shared CI host) hits them alike.
 * Returns one Timing per function, in order.
 *
 * `settleMs`: before its timed runs in each round, a function runs untimed for this long. In-process code
 * timed right after a child process (qemu-img) ran is about twice as slow for some 20-30 ms on the test VM
 * (cold CPU caches and branch predictors after the other process and the idle wait), which would measure
 * the machine rather than the code; a few untimed runs bring it back to its steady state.
 */
export async function timeAlternating(
  entries: { fn: () => Promise<unknown>; perRound: number; warmup?: number; settleMs?: number }[],
  rounds: number,
): Promise<Timing[]> {
  for (const e of entries) for (let i = 0; i < (e.warmup ?? Math.min(50, e.perRound * rounds)); i++) await e.fn();
  const samples: number[][] = entries.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (const [k, e] of entries.entries()) {
      if (e.settleMs !== undefined && e.settleMs > 0) {
        const until = process.hrtime.bigint() + BigInt(Math.round(e.settleMs * 1e6));
        while (process.hrtime.bigint() < until) await e.fn();
      }
      for (let i = 0; i < e.perRound; i++) {
        const started = process.hrtime.bigint();
        await e.fn();
        samples[k]!.push(Number(process.hrtime.bigint() - started) / 1e6);
      }
    }
  }
  return samples.map((ms) => {
    ms.sort((a, b) => a - b);
    const at = (q: number): number => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? NaN;
    return { median: at(0.5), p10: at(0.1), p90: at(0.9), runs: ms.length };
  });
}
