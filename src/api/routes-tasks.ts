/**
 * Task routes: one task (state, steps, bytes, log, result or error), the list with filters, and a task's
 * progress as server-sent events. A task runs on whether or not a client listens; a client that drops the
 * stream loses nothing (GET the task, or open the stream again: it starts with the task as it is now).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { NotFoundError } from '../errors.js';
import { parseVmid } from '../naming/index.js';
import type { ApiContext } from './context.js';
import type { Task, TaskEvent } from './tasks.js';
import { taskListQuery, taskParams } from './schemas.js';

/** Comment lines keep proxies from closing a quiet stream (a long copy reports nothing for a while). */
const KEEPALIVE_MS = 15_000;

export const taskRoutes: FastifyPluginAsyncZod<{ ctx: ApiContext }> = async (app, { ctx }) => {
  const tags = ['tasks'];
  const find = (id: string): Task => {
    const task = ctx.tasks.get(id);
    if (!task) throw new NotFoundError(`task ${id} does not exist (finished tasks are kept: the newest 1000)`, { fields: { task: id } });
    return task;
  };

  app.get('/api/tasks', { schema: { tags, summary: 'tasks, newest first, filtered by state, operation, VM or volume', querystring: taskListQuery } }, (req) => {
    const { state, operation, vmid, volid, limit } = req.query;
    const tasks = ctx.tasks.list({
      ...(state !== undefined ? { state } : {}),
      ...(operation !== undefined ? { operation } : {}),
      ...(vmid !== undefined ? { vmid: parseVmid(vmid) } : {}),
      ...(volid !== undefined ? { volid } : {}),
      ...(limit !== undefined ? { limit: Number(limit) } : {}),
    });
    return { tasks };
  });

  app.get('/api/tasks/:id', { schema: { tags, summary: 'a task: state, steps, bytes done, log, result or error', params: taskParams } }, (req) =>
    find(req.params.id),
  );

  app.get(
    '/api/tasks/:id/events',
    {
      schema: {
        tags,
        summary:
          "a task's progress as server-sent events: 'task' (the task now), then 'step', 'progress', 'step-done', 'log', 'bytes' as they come, and 'end' (the finished task), after which the stream closes",
        params: taskParams,
      },
    },
    (req, reply) => {
      const task = find(req.params.id);
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      const send = (event: string, data: unknown): void => void raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      send('task', task);
      if (task.state !== 'running') {
        send('end', task);
        raw.end();
        return;
      }
      const keepalive = setInterval(() => raw.write(': keepalive\n\n'), KEEPALIVE_MS);
      const stop = (): void => {
        clearInterval(keepalive);
        unsubscribe();
      };
      const unsubscribe = ctx.tasks.subscribe(task.id, (e: TaskEvent) => {
        if (e.type === 'end') {
          send('end', e.task);
          stop();
          raw.end();
        } else if (e.type === 'log') send('log', e.line);
        else if (e.type === 'bytes') send('bytes', { bytesDone: e.bytesDone, bytesTotal: e.bytesTotal });
        else send(e.type, e.event);
      });
      // The client went away: stop listening; the task runs on.
      raw.on('close', stop);
    },
  );
};
