/**
 * Tasks, as in PVE's task log: every mutating API call runs as one, in this process, after the request has
 * been answered (202 + the task id). A task records its state, the plan steps as the library reports them
 * (CallOptions.onEvent), progress, log lines, and its result or error; listeners get each change as it
 * happens (the server-sent events of GET /api/tasks/:id/events).
 *
 * Every task is a JSON file `<state dir>/api/tasks/<id>.json`, written when the task is accepted, at each
 * step and when it ends (progress within a step at most once a second), each time by rename, so a reader
 * never sees half a file. A server that stops while a task runs leaves it `running` on disk; the next server
 * marks it `interrupted` with `needsRepair`: the operation's own journal is what `repair` finishes, the task
 * file only says where to look. Finished tasks are kept (MAX_KEPT, oldest removed first).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { asVolchainError, type ErrorJson } from '../errors.js';
import type { EngineEvent } from '../engine/run/step-rules.js';

export type TaskState = 'running' | 'done' | 'failed' | 'interrupted';

/** What a task acts on, as given in the request (filters of GET /api/tasks). */
export interface TaskTarget {
  volid?: string;
  vmid?: number;
  storage?: string;
  snapshot?: string;
}

export interface TaskStep {
  volid: string;
  /** 1-based, as --dry-run numbers steps. */
  index: number;
  total: number;
  description: string;
  state: 'running' | 'done';
  /** Within a long step (a copy, a commit), when the tool reports it. */
  percent: number | null;
}

export interface TaskLogLine {
  time: string;
  line: string;
}

export interface Task {
  id: string;
  /** The operation, in the journal's words: snapshot-create, vm-rollback, free, repair, wipe, ... */
  operation: string;
  target: TaskTarget;
  state: TaskState;
  /** The name of the token that started it. */
  owner: string;
  pid: number;
  host: string;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  steps: TaskStep[];
  /** Bytes done and in all, where the library counts bytes (a wipe's zeroing); null otherwise. */
  bytesDone: number | null;
  bytesTotal: number | null;
  log: TaskLogLine[];
  /**
   * The plans made (as a dry run) before the task was accepted, for plan-based operations: the steps to come,
   * bytes to move and strategies, as `--dry-run --json` prints them; null for alloc, repair and wipe.
   */
  planned: unknown;
  /** The CLI's --json document of the operation (PlansJson, AllocJson, RepairJson, WipeJson) once done. */
  result: unknown;
  error: ErrorJson | null;
  /** The task stopped part-way (failed past a point of no return, or the server stopped): run repair. */
  needsRepair: boolean;
}

/** One change, as the event stream sends it: its type is the SSE event name. */
export type TaskEvent =
  | { type: 'step' | 'progress' | 'step-done'; event: EngineEvent }
  | { type: 'log'; line: TaskLogLine }
  | { type: 'bytes'; bytesDone: number; bytesTotal: number }
  | { type: 'end'; task: Task };

/** What a running operation is given to report through its task. */
export interface TaskReporter {
  onEvent(event: EngineEvent): void;
  log(line: string): void;
  bytes(done: number, total: number): void;
}

export interface TaskFilter {
  state?: TaskState;
  operation?: string;
  vmid?: number;
  volid?: string;
  limit?: number;
}

const MAX_LOG_LINES = 1000;
const MAX_KEPT = 1000;
const PROGRESS_WRITE_MS = 1000;

export class TaskManager {
  private readonly tasks = new Map<string, Task>();
  private readonly listeners = new Map<string, Set<(event: TaskEvent) => void>>();
  private readonly running = new Map<string, Promise<void>>();
  /** Per task, the chain of its file writes (one at a time, in order). */
  private readonly writes = new Map<string, Promise<void>>();
  private readonly lastWrite = new Map<string, number>();

  private constructor(readonly dir: string) {}

  /** The tasks of `dir`; those a stopped server left running are marked interrupted (and written so). */
  static async open(dir: string): Promise<TaskManager> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const manager = new TaskManager(dir);
    for (const name of await readdir(dir)) {
      if (!/^[0-9a-f-]{36}\.json$/.test(name)) continue;
      let task: Task;
      try {
        task = JSON.parse(await readFile(join(dir, name), 'utf8')) as Task;
      } catch {
        continue; // not ours, or torn by a crash during the first write: the operation's journal is what counts
      }
      if (task.state === 'running') {
        const now = new Date().toISOString();
        task.state = 'interrupted';
        task.needsRepair = true;
        task.finishedAt = now;
        task.updatedAt = now;
        task.log.push({
          time: now,
          line: `the server (pid ${task.pid} on ${task.host}) stopped while this task ran: see GET /api/status, and POST /api/repair to finish what it left`,
        });
        await manager.persist(task, true);
      }
      manager.tasks.set(task.id, task);
    }
    return manager;
  }

  get(id: string): Task | undefined {
    return this.tasks.get(id);
  }

  /** Newest first. */
  list(filter: TaskFilter = {}): Task[] {
    const out = [...this.tasks.values()]
      .filter(
        (t) =>
          (filter.state === undefined || t.state === filter.state) &&
          (filter.operation === undefined || t.operation === filter.operation) &&
          (filter.vmid === undefined || t.target.vmid === filter.vmid) &&
          (filter.volid === undefined || t.target.volid === filter.volid),
      )
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    return filter.limit !== undefined ? out.slice(0, filter.limit) : out;
  }

  /** Listens to a task's changes until the returned function is called. */
  subscribe(id: string, listener: (event: TaskEvent) => void): () => void {
    const set = this.listeners.get(id) ?? new Set();
    set.add(listener);
    this.listeners.set(id, set);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  /**
   * Records a new task (on disk before this resolves: the caller answers 202 only then) and starts `run`,
   * whose value becomes the task's result. `finished` is called when it ends, whatever the outcome.
   */
  async start(
    operation: string,
    target: TaskTarget,
    owner: string,
    run: (reporter: TaskReporter) => Promise<unknown>,
    finished: () => void = () => undefined,
    planned: unknown = null,
  ): Promise<Task> {
    const now = new Date().toISOString();
    const task: Task = {
      id: randomUUID(),
      operation,
      target,
      state: 'running',
      owner,
      pid: process.pid,
      host: hostname(),
      createdAt: now,
      updatedAt: now,
      finishedAt: null,
      steps: [],
      bytesDone: null,
      bytesTotal: null,
      log: [],
      planned,
      result: null,
      error: null,
      needsRepair: false,
    };
    this.tasks.set(task.id, task);
    await this.persist(task, true);
    await this.prune();
    const reporter: TaskReporter = {
      onEvent: (event) => this.onEngineEvent(task, event),
      log: (line) => this.addLog(task, line),
      bytes: (done, total) => {
        task.bytesDone = done;
        task.bytesTotal = total;
        this.emit(task, { type: 'bytes', bytesDone: done, bytesTotal: total }, false);
      },
    };
    const done = (async () => {
      try {
        task.result = await run(reporter);
        task.state = 'done';
      } catch (err) {
        const error = asVolchainError(err);
        task.state = 'failed';
        task.error = error.toJSON();
        task.needsRepair = error.outcome === 'needs-repair';
        this.addLog(task, `failed: ${error.message}`);
      } finally {
        finished();
      }
      const end = new Date().toISOString();
      task.finishedAt = end;
      task.updatedAt = end;
      await this.persist(task, true).catch(() => undefined);
      this.emit(task, { type: 'end', task }, false);
      this.running.delete(task.id);
    })();
    this.running.set(task.id, done);
    return task;
  }

  /** Resolves when every task started so far has ended (tests, and a server shutting down cleanly). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running.values());
    await Promise.all(this.writes.values());
  }

  private onEngineEvent(task: Task, event: EngineEvent): void {
    if (event.type === 'step') {
      task.steps.push({ volid: event.volid, index: event.index, total: event.total, description: event.description, state: 'running', percent: null });
    } else {
      const step = task.steps.findLast((s) => s.volid === event.volid && s.index === event.index);
      if (step && event.type === 'progress') step.percent = event.percent;
      if (step && event.type === 'step-done') step.state = 'done';
    }
    // Step boundaries are written at once (what a restarted server shows); progress at most once a second.
    this.emit(task, { type: event.type, event }, event.type !== 'progress');
    if (event.type === 'step') this.addLog(task, `${event.volid}: step ${event.index}/${event.total}: ${event.description}`);
  }

  private addLog(task: Task, line: string): void {
    const entry = { time: new Date().toISOString(), line };
    task.log.push(entry);
    if (task.log.length > MAX_LOG_LINES) task.log.splice(0, task.log.length - MAX_LOG_LINES);
    this.emit(task, { type: 'log', line: entry }, true);
  }

  private emit(task: Task, event: TaskEvent, writeNow: boolean): void {
    task.updatedAt = new Date().toISOString();
    for (const listener of this.listeners.get(task.id) ?? []) listener(event);
    if (event.type !== 'end') void this.persist(task, writeNow).catch(() => undefined);
  }

  /** Writes the task's file (by rename), in order after its earlier writes; `force` or at most once a second. */
  private persist(task: Task, force: boolean): Promise<void> {
    const now = Date.now();
    if (!force && now - (this.lastWrite.get(task.id) ?? 0) < PROGRESS_WRITE_MS) return Promise.resolve();
    this.lastWrite.set(task.id, now);
    const text = JSON.stringify(task, null, 2) + '\n';
    const file = join(this.dir, `${task.id}.json`);
    const previous = this.writes.get(task.id) ?? Promise.resolve();
    const next = previous.then(async () => {
      const tmp = `${file}.tmp`;
      const handle = await open(tmp, 'w', 0o600);
      try {
        await handle.writeFile(text);
      } finally {
        await handle.close();
      }
      await rename(tmp, file);
    });
    const settled = next.catch(() => undefined);
    this.writes.set(task.id, settled);
    void settled.then(() => {
      if (this.writes.get(task.id) === settled) this.writes.delete(task.id);
    });
    return next;
  }

  /** Keeps the newest MAX_KEPT tasks: finished ones beyond that are forgotten, here and on disk. */
  private async prune(): Promise<void> {
    const finished = this.list().filter((t) => t.state !== 'running');
    const excess = Math.max(0, this.tasks.size - MAX_KEPT);
    for (const task of finished.slice(finished.length - excess, excess > 0 ? undefined : 0)) {
      this.tasks.delete(task.id);
      await rm(join(this.dir, `${task.id}.json`), { force: true });
    }
  }
}
