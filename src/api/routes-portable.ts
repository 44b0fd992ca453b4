/**
 * Routes of the portable-chain operations: clone (full, or linked with `linked`), convert, template, move
 * (to another storage, or a reassign to another VM with `vmid`), export and import.
 *
 * clone, convert, template and move are tasks like every mutating route (context.ts mutation()): the lock of
 * EVERY VM the operation locks is tried first (clone and move: source and target VM), and with dryRun the plan
 * comes back at once. Their result is the CLI's `--json` plans document plus `volid`, the new volume's.
 *
 * Export and import carry a chain stream (docs/chain-stream.md) in the HTTP body, which the client sends or
 * reads live; neither is a task:
 * - export (`GET`) answers the stream as its response body while it holds the VM's lock, as the CLI's export
 *   does; before the first byte its errors are JSON documents, after it a failure cuts the response short
 *   (shorter than its Content-Length: the client sees a truncated body, never a complete-looking one).
 * - import (`POST`, application/octet-stream) reads the request body into importChain and answers when the
 *   volume is made (201): a task cannot own a request stream, whose bytes only the request's own connection
 *   delivers (answering 202 first would leave the client sending into a request that had already been
 *   answered). A client that goes away mid-stream is a truncated stream: the import is walked back.
 */
import { PassThrough, Readable } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { parseVmid } from '../naming/index.js';
import { refuseMissingVolume } from '../engine/session/refusals.js';
import type { Plan } from '../model/plan.js';
import { HttpError } from './http-errors.js';
import { mutation, plansJson, reserveAll, type ApiContext, type LockTarget } from './context.js';
import { errorDocument, mutationResponses, storageParams, volidParams } from './schemas.js';
import { cloneBody, convertBody, exportQuery, importQuery, moveBody, templateBody } from './schemas-portable.js';

/** Default largest import body: 1 TiB (a disk with its snapshots); JSON routes keep their own 64 KiB. */
export const IMPORT_LIMIT_BYTES = 1024 ** 4;

/** 200/201 of import: the plans document (schemas.ts plansDocument's shape) and the new volid. */
const importedDocument = z.unknown().describe('{dryRun, plans, volid}: the plans (the import-layer steps, the space needed) and the new volid');

export interface PortableOptions {
  ctx: ApiContext;
  /** Largest chain stream an import accepts, bytes (default IMPORT_LIMIT_BYTES). */
  importLimitBytes?: number;
}

/** The result of a task that makes a volume: the plans, and the new volume's id (as the CLI prints it). */
function madeVolume(plan: Plan, dryRun: boolean, warnings: string[]) {
  return { ...plansJson(plan, dryRun, warnings), volid: plan.newVolid ?? plan.volid };
}

export const portableRoutes: FastifyPluginAsyncZod<PortableOptions> = async (app, { ctx, importLimitBytes }) => {
  const { vc } = ctx;
  const tags = ['portable'];
  const limit = importLimitBytes ?? IMPORT_LIMIT_BYTES;
  const describe = (summary: string) => `${summary}: 202 and a task id (its result names the new volid), or with dryRun 200 and the plan`;

  // The import's body is a stream handed to the library as it arrives, not a buffered document: fastify's
  // bodyLimit does not apply to a stream passed on, so the route counts the bytes itself (limited()). This
  // parser belongs to this plugin only: the other routes accept no octet-stream body.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => {
    done(null, payload);
  });

  /** The lock of the VM owning `volid` (refusing a volume that does not exist first). */
  const volumeLock = async (volid: string): Promise<LockTarget> => {
    const { backend, volume } = vc.resolve(volid);
    await refuseMissingVolume(backend, volume.vmid, volume.name, volid);
    return { backends: [backend], vmid: volume.vmid, refusePending: true };
  };

  app.post(
    '/api/volumes/:volid/clone',
    {
      schema: {
        tags,
        summary: describe("clone: a full copy of the volume (or of a snapshot's view) as a new volume; linked: a linked clone of a base volume"),
        params: volidParams,
        body: cloneBody,
        response: mutationResponses,
      },
    },
    async (req, reply) => {
      const { volid } = req.params;
      const { storage, snapshot, linked, name } = req.body;
      const vmid = parseVmid(req.body.vmid);
      if (linked === true && snapshot !== undefined) {
        // As the CLI: a base volume has no snapshots, and PVE's clone_image refuses a snapshot.
        throw new HttpError(400, "linked and snapshot do not go together: a linked clone is backed by a template's base volume, which has no snapshots");
      }
      const named = name !== undefined ? { name } : {};
      await mutation(ctx, req, reply, {
        operation: linked === true ? 'linked-clone' : 'clone',
        target: { volid, storage, vmid, ...(snapshot !== undefined ? { snapshot } : {}) },
        dryRun: req.body.dryRun ?? false,
        planFirst: true,
        // Both VMs' locks: the source's (its chain must not change while read; a base must not be freed
        // meanwhile) and the target's (the new name is taken under it), as the library takes them.
        lock: async () => [await volumeLock(volid), { backends: [vc.backend(storage)], vmid, refusePending: true }],
        run: async (call, { warnings }) => {
          const plan =
            linked === true
              ? await vc.linkedClone(volid, storage, vmid, { ...call, ...named })
              : await vc.clone(volid, storage, vmid, { ...call, ...named, ...(snapshot !== undefined ? { snapshot } : {}) });
          return madeVolume(plan, call.dryRun === true, warnings);
        },
      });
    },
  );

  app.post(
    '/api/volumes/:volid/convert',
    {
      schema: {
        tags,
        summary: describe('convert: a raw volume becomes a qcow2 volume (that can take snapshots)'),
        params: volidParams,
        body: convertBody,
        response: mutationResponses,
      },
    },
    async (req, reply) => {
      const { volid } = req.params;
      await mutation(ctx, req, reply, {
        operation: 'convert',
        target: { volid },
        dryRun: req.body.dryRun ?? false,
        planFirst: true,
        lock: () => volumeLock(volid),
        run: async (call, { warnings }) => madeVolume(await vc.convert(volid, { ...call, format: req.body.format ?? 'qcow2' }), call.dryRun === true, warnings),
      });
    },
  );

  app.post(
    '/api/volumes/:volid/template',
    {
      schema: {
        tags,
        summary: describe("template: the volume becomes a template's base volume (base-<vmid>-…)"),
        params: volidParams,
        body: templateBody,
        response: mutationResponses,
      },
    },
    async (req, reply) => {
      const { volid } = req.params;
      await mutation(ctx, req, reply, {
        operation: 'template',
        target: { volid },
        dryRun: req.body.dryRun ?? false,
        planFirst: true,
        lock: () => volumeLock(volid),
        run: async (call, { warnings }) => madeVolume(await vc.template(volid, call), call.dryRun === true, warnings),
      });
    },
  );

  app.post(
    '/api/volumes/:volid/move',
    {
      schema: {
        tags,
        summary: describe('move: the volume with its snapshot tree to another storage, or (vmid on its own storage) reassigned to another VM'),
        params: volidParams,
        body: moveBody,
        response: mutationResponses,
      },
    },
    async (req, reply) => {
      const { volid } = req.params;
      const { storage } = req.body;
      const newVmid = req.body.vmid !== undefined ? parseVmid(req.body.vmid) : undefined;
      await mutation(ctx, req, reply, {
        operation: 'move',
        target: { volid, storage, ...(newVmid !== undefined ? { vmid: newVmid } : {}) },
        dryRun: req.body.dryRun ?? false,
        planFirst: true,
        // The source VM's lock, and the target VM's on the target storage (the same VM when not reassigned).
        lock: async () => {
          const source = await volumeLock(volid);
          return [source, { backends: [vc.backend(storage)], vmid: newVmid ?? source.vmid, refusePending: true }];
        },
        run: async (call, { warnings }) =>
          madeVolume(await vc.move(volid, storage, { ...call, ...(newVmid !== undefined ? { vmid: newVmid } : {}) }), call.dryRun === true, warnings),
      });
    },
  );

  app.get(
    '/api/volumes/:volid/export',
    {
      schema: {
        tags,
        summary: 'export: the volume with every snapshot as one chain stream (application/octet-stream), for import',
        description:
          'Not a task: the client reads the stream live, and the export holds the VM lock while it runs (as the CLI). ' +
          'The lock is tried first (409 naming the holder); errors before the first byte are JSON documents; a failure ' +
          'later cuts the response short of its Content-Length. A read-only token is refused (403): the export takes ' +
          "the VM's lock. With dryRun=true: 200 and the manifest with the stream's size, as `export --dry-run --json`.",
        params: volidParams,
        querystring: exportQuery,
        produces: ['application/octet-stream', 'application/json'],
        response: { 200: z.unknown(), '4xx': errorDocument, '5xx': errorDocument },
      },
    },
    async (req, reply) => {
      const { volid } = req.params;
      const token = req.volchainToken;
      if (token?.readOnly === true) {
        throw new HttpError(403, `token '${token.name}' is read-only: an export takes VM ${vc.resolve(volid).volume.vmid}'s lock while it runs`, {
          auth: 'read-only',
          token: token.name,
        });
      }
      const reservation = await reserveAll(ctx, await volumeLock(volid), 'export');
      let planned;
      try {
        // Made before the first byte, so what export refuses (a raw volume, a linked clone, a running VM, a
        // corrupt layer) is this request's JSON error, and the response has its exact Content-Length.
        planned = await vc.exportChain(volid, undefined, { dryRun: true });
      } catch (err) {
        reservation.release();
        throw err;
      }
      if (req.query.dryRun === 'true') {
        reservation.release();
        return { dryRun: true, ...planned };
      }
      const body = new PassThrough();
      // A client that goes away: the writer's pending write fails (an error, not a silent close, so an
      // export waiting for 'drain' ends), the export stops and the lock goes. Nothing was written to disk.
      reply.raw.once('close', () => {
        if (!body.writableFinished) body.destroy(new Error('the client closed the export response'));
      });
      void vc
        .exportChain(volid, body, {})
        .then(
          () => body.end(),
          (err: unknown) => {
            req.log.error({ err, volid }, 'export failed after its first byte: the response is cut short');
            body.destroy(err instanceof Error ? err : new Error(String(err)));
          },
        )
        .finally(() => reservation.release());
      const file = `${volid.replace(/[^A-Za-z0-9._-]/g, '_')}.vcx`;
      // The reply is returned (not only sent): a stream with no byte yet is not "sent", and an async handler
      // resolving with nothing would then make fastify answer an empty body.
      return reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', String(planned.streamBytes))
        .header('content-disposition', `attachment; filename="${file}"`)
        .send(body);
    },
  );

  app.post(
    '/api/storages/:storage/import',
    {
      schema: {
        tags,
        summary: 'import: a chain stream (the body, application/octet-stream) made by export becomes a new volume with its snapshots',
        description:
          'Not a task: the request body is the stream, which only this request delivers; the answer (201, the plans and ' +
          'the new volid) comes when the volume is made. The target VM lock is tried first (409). A malformed, hostile or ' +
          'truncated stream is refused (400/422) with nothing left. dryRun=true reads the manifest only: 200 and the plan.',
        params: storageParams,
        querystring: importQuery,
        consumes: ['application/octet-stream'],
        response: { 200: importedDocument, 201: importedDocument, '4xx': errorDocument, '5xx': errorDocument },
      },
    },
    async (req, reply) => {
      const { storage } = req.params;
      const { name } = req.query;
      const vmid = parseVmid(req.query.vmid);
      const dryRun = req.query.dryRun === 'true';
      const input = req.body;
      if (!(input instanceof Readable)) {
        throw new HttpError(415, "import reads a chain stream: send it as the body with 'content-type: application/octet-stream'", {
          contentType: req.headers['content-type'] ?? null,
        });
      }
      const reservation = dryRun ? undefined : await reserveAll(ctx, { backends: [vc.backend(storage)], vmid, refusePending: true }, 'import');
      try {
        const plan = await vc.importChain(storage, vmid, limited(input, limit), {
          dryRun,
          ...(name !== undefined ? { name } : {}),
          onEvent: (e) => {
            if (e.type === 'step') req.log.info({ volid: e.volid, step: e.description }, 'import step');
          },
        });
        req.log.info({ operation: 'import', volid: plan.volid, dryRun, token: req.volchainToken?.name }, 'import done');
        void reply.code(dryRun ? 200 : 201).send(madeVolume(plan, dryRun, []));
      } finally {
        reservation?.release();
        // A dry run reads the manifest only, a refusal stops reading: the rest of the body is not waited for.
        input.resume();
      }
    },
  );
};

/** The chain stream's bytes, refused past `limitBytes` (an import can be big, not unbounded). */
async function* limited(input: AsyncIterable<Buffer | string>, limitBytes: number): AsyncGenerator<Buffer | string> {
  let total = 0;
  for await (const chunk of input) {
    total += chunk.length;
    if (total > limitBytes) throw new HttpError(413, `the import body is larger than the server's limit of ${limitBytes} bytes`, { limitBytes });
    yield chunk;
  }
}
