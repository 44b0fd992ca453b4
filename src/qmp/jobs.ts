/**
 * Following a block job (stream, commit) to its end.
 *
 * A job's life (qapi/job.json): created → running ⇄ paused → [ready ⇄ standby] → waiting → pending →
 * [aborting] → concluded → null. QEMU announces every step with JOB_STATUS_CHANGE, and block jobs also with
 * BLOCK_JOB_READY / BLOCK_JOB_COMPLETED (carrying `error` when the job failed) / BLOCK_JOB_CANCELLED /
 * BLOCK_JOB_ERROR. With auto-dismiss (QEMU's default) the job vanishes from query-jobs the moment it
 * concludes, so its outcome can only be learnt from those events: that is why waitForJob subscribes before
 * it starts the job (`start`), and why it reads query-jobs only for progress and for jobs that stay listed
 * (auto-dismiss off: then JobInfo.error tells, and waitForJob dismisses the job).
 */
import type { QmpClient } from './client.js';
import { jobComplete, jobDismiss, jobFinalize, queryJobs, type JobInfo, type JobStatus, type JobType } from './commands.js';
import { QmpJobError, QmpTimeoutError } from './errors.js';
import type { QmpEvent } from './protocol.js';

export interface JobProgress {
  id: string;
  status: JobStatus;
  /** Progress units are arbitrary (bytes for block jobs); only current/total means something. */
  current: number;
  total: number;
}

export interface JobResult {
  id: string;
  type: JobType | undefined;
  current: number;
  total: number;
}

export interface WaitForJobOptions {
  /** Starts the job once waitForJob listens, so no event can be missed (e.g. `() => blockCommit(c, {...})`). */
  start?: () => Promise<unknown>;
  onProgress?: (progress: JobProgress) => void;
  /** 0 (default) waits as long as it takes; on timeout the job keeps running (cancel it if you must). */
  timeoutMs?: number;
  /** How often query-jobs is read for progress while the job runs (default 1000 ms); 0 never polls. */
  pollIntervalMs?: number;
  /** On READY: 'complete' sends job-complete (what an active commit needs), 'wait' leaves it to the caller. */
  whenReady?: 'complete' | 'wait';
  /** Send job-finalize on PENDING: only for jobs started with autoFinalize false (default false). */
  finalize?: boolean;
  /** Dismiss the job when it stays listed after concluding (autoDismiss false). Default true. */
  dismiss?: boolean;
}

type JobClient = Pick<QmpClient, 'execute' | 'subscribe'>;

const JOB_EVENTS = ['JOB_STATUS_CHANGE', 'BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED', 'BLOCK_JOB_ERROR', 'BLOCK_JOB_PENDING'];

/**
 * Resolves when job `jobId` has concluded successfully; rejects with QmpJobError when it failed, was
 * cancelled, or is unknown to QEMU; with QmpTimeoutError after `timeoutMs`; with the disconnect error when
 * the connection ends; with the error of `start` when starting it failed.
 */
export function waitForJob(c: JobClient, jobId: string, options: WaitForJobOptions = {}): Promise<JobResult> {
  const { whenReady = 'complete', finalize = false, dismiss = true, pollIntervalMs = 1000, timeoutMs = 0 } = options;

  return new Promise<JobResult>((resolve, reject) => {
    let settled = false;
    let type: JobType | undefined;
    let status: JobStatus | undefined;
    let current = 0;
    let total = 0;
    let cancelled = false;
    let completed = false;
    let failure: string | undefined;
    let ioError: string | undefined;
    let completeSent = false;
    let finalizeSent = false;
    let concluding = false;
    let polling = false;

    const unsubscribe = c.subscribe(JOB_EVENTS, onEvent, {
      filter: (e) => e.data['id'] === jobId || e.data['device'] === jobId,
      onClose: fail,
    });
    const poller = pollIntervalMs > 0 ? setInterval(() => void poll(), pollIntervalMs) : undefined;
    const timer = timeoutMs > 0 ? setTimeout(() => fail(new QmpTimeoutError(`block job ${jobId}`, timeoutMs)), timeoutMs) : undefined;

    void begin();

    async function begin(): Promise<void> {
      try {
        if (options.start) await options.start();
        if (settled) return;
        const info = (await queryJobs(c)).find((j) => j.id === jobId);
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- `settled` is set by fail()/finish() from event callbacks during the await; TS cannot see that
        if (settled) return;
        if (info) {
          take(info);
          onStatus(info.status);
        } else if (completed || cancelled) {
          settle(); // finished (and auto-dismissed) while start() was still waiting for its answer
        } else {
          fail(new QmpJobError(jobId, 'missing', 'is not known to QEMU (never started, or finished before it was watched)'));
        }
      } catch (err) {
        fail(err);
      }
    }

    function onEvent(e: QmpEvent): void {
      const d = e.data;
      switch (e.event) {
        case 'JOB_STATUS_CHANGE':
          onStatus(d['status'] as JobStatus);
          return;
        case 'BLOCK_JOB_READY':
        case 'BLOCK_JOB_COMPLETED':
        case 'BLOCK_JOB_CANCELLED':
          if (typeof d['type'] === 'string') type = d['type'] as JobType;
          if (typeof d['len'] === 'number' && typeof d['offset'] === 'number') progress(d['offset'], d['len']);
          if (e.event === 'BLOCK_JOB_COMPLETED') {
            completed = true;
            if (typeof d['error'] === 'string') failure = d['error'];
          }
          if (e.event === 'BLOCK_JOB_CANCELLED') cancelled = true;
          return;
        case 'BLOCK_JOB_ERROR':
          // The job's on-error policy decides what follows (report: it fails; stop: it pauses).
          ioError = `${String(d['operation'])} error (action ${String(d['action'])})`;
          return;
        default:
          return;
      }
    }

    function onStatus(s: JobStatus): void {
      if (settled) return;
      if (s !== status) {
        status = s;
        report();
      }
      if (s === 'ready' && whenReady === 'complete' && !completeSent) {
        completeSent = true;
        jobComplete(c, jobId).catch(fail);
      } else if (s === 'pending' && finalize && !finalizeSent) {
        finalizeSent = true;
        jobFinalize(c, jobId).catch(fail);
      } else if (s === 'concluded') {
        void conclude();
      } else if (s === 'null') {
        settle();
      }
    }

    /** A concluded job still listed (auto-dismiss off) carries its error; read it, then dismiss. */
    async function conclude(): Promise<void> {
      if (concluding) return;
      concluding = true;
      try {
        const info = (await queryJobs(c)).find((j) => j.id === jobId);
        if (info) {
          take(info);
          if (info.error !== undefined && failure === undefined) failure = info.error;
          if (dismiss && info.status === 'concluded') await jobDismiss(c, jobId);
        }
        settle();
      } catch (err) {
        fail(err);
      }
    }

    async function poll(): Promise<void> {
      if (polling || settled || status === 'concluded') return;
      polling = true;
      try {
        const info = (await queryJobs(c)).find((j) => j.id === jobId);
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- `settled` is set by fail()/finish() from event callbacks during the await; TS cannot see that
        if (info && !settled) take(info);
      } catch {
        // Progress is best effort; a lost connection is reported through the subscription's onClose.
      } finally {
        polling = false;
      }
    }

    function take(info: JobInfo): void {
      type = info.type;
      progress(info['current-progress'], info['total-progress']);
    }

    function progress(cur: number, tot: number): void {
      if (cur === current && tot === total) return;
      current = cur;
      total = tot;
      report();
    }

    function report(): void {
      if (status !== undefined && !settled) options.onProgress?.({ id: jobId, status, current, total });
    }

    function settle(): void {
      if (settled) return;
      if (cancelled) {
        fail(new QmpJobError(jobId, 'cancelled', 'was cancelled'));
      } else if (failure !== undefined) {
        fail(new QmpJobError(jobId, 'failed', `failed: ${failure}${ioError ? ` (${ioError})` : ''}`, failure));
      } else {
        finish();
        resolve({ id: jobId, type, current, total });
      }
    }

    function fail(err: unknown): void {
      if (settled) return;
      finish();
      reject(err);
    }

    function finish(): void {
      settled = true;
      unsubscribe();
      if (poller) clearInterval(poller);
      if (timer) clearTimeout(timer);
    }
  });
}
