/**
 * Mutating routes: alloc, free, resize, snapshot create/rollback/delete, the VM-wide snapshot operations,
 * repair and wipe. Each is a task (202 + its id, context.ts mutation()) after the VM's lock was tried; with
 * `dryRun` the plan comes back at once (200), as `--dry-run --json` prints it. Live operations happen when
 * the VM runs and volchain's settings name its QMP socket ($VOLCHAIN_QMP_DIR/<vmid>.qmp): a request never
 * gives a socket path, nor a VM config path.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { parseVmid } from '../naming/index.js';
import { refuseMissingVolume } from '../engine/session/refusals.js';
import type { AllocJson, RepairJson, WipeJson } from '../results.js';
import { mutation, plansJson, type ApiContext, type LockTarget } from './context.js';
import {
  allocBody,
  dryRunQuery,
  mutationResponses,
  repairResponses,
  taskOnlyResponses,
  repairBody,
  resizeBody,
  rollbackBody,
  snapshotCreateBody,
  storageParams,
  vmDeleteQuery,
  vmidParams,
  vmidSnapshotParams,
  vmRollbackBody,
  vmSnapshotBody,
  volidParams,
  volidSnapshotParams,
  wipeBody,
} from './schemas.js';

export const mutateRoutes: FastifyPluginAsyncZod<{ ctx: ApiContext }> = async (app, { ctx }) => {
  const { vc } = ctx;
  const tags = ['tasks'];
  const describe = (summary: string) => `${summary}: 202 and a task id, or with dryRun 200 and the plan (nothing changed)`;

  /** The lock of the VM owning `volid`, after refusing a volume that does not exist (no lock file is made for it). */
  const volumeLock =
    (volid: string, refusePending = true) =>
    async (): Promise<LockTarget> => {
      const { backend, volume } = vc.resolve(volid);
      await refuseMissingVolume(backend, volume.vmid, volume.name, volid);
      return { backends: [backend], vmid: volume.vmid, refusePending };
    };
  /** The lock of VM `vmid` on every storage holding one of its disks (as the VM-wide operations take it). */
  const vmLock = (vmid: number, storage: string | undefined) => async (): Promise<LockTarget> => {
    const disks = await vc.vmVolumes(vmid, storage);
    return { backends: disks.map((d) => d.backend), vmid, refusePending: true };
  };

  app.post(
    '/api/storages/:storage/volumes',
    {
      schema: {
        tags,
        summary: 'alloc: a new volume (202 and a task id; its result is the new volid)',
        params: storageParams,
        body: allocBody,
        response: mutationResponses,
      },
    },
    async (req, reply) => {
      const { storage } = req.params;
      const { vmid: vmidText, size, name, format } = req.body;
      const vmid = parseVmid(vmidText);
      await mutation(ctx, req, reply, {
        operation: 'alloc',
        target: { storage, vmid },
        dryRun: false,
        planFirst: false,
        lock: () => Promise.resolve({ backends: [vc.backend(storage)], vmid, refusePending: true }),
        run: async () =>
          ({
            volid: await vc.alloc(storage, vmid, size, { ...(name !== undefined ? { name } : {}), ...(format !== undefined ? { format } : {}) }),
          }) satisfies AllocJson,
      });
    },
  );

  app.delete(
    '/api/volumes/:volid',
    {
      schema: {
        tags,
        summary: describe('free: remove the volume and all its snapshots'),
        params: volidParams,
        querystring: dryRunQuery,
        response: mutationResponses,
      },
    },
    async (req, reply) => {
      const { volid } = req.params;
      const dryRun = req.query.dryRun === 'true';
      await mutation(ctx, req, reply, {
        operation: 'free',
        target: { volid },
        dryRun,
        planFirst: true,
        lock: volumeLock(volid),
        run: async (call, { warnings }) => plansJson(await vc.free(volid, call), call.dryRun === true, warnings),
      });
    },
  );

  app.post(
    '/api/volumes/:volid/resize',
    { schema: { tags, summary: describe('resize: grow the virtual size'), params: volidParams, body: resizeBody, response: mutationResponses } },
    async (req, reply) => {
      const { volid } = req.params;
      const dryRun = req.body.dryRun ?? false;
      await mutation(ctx, req, reply, {
        operation: 'resize',
        target: { volid },
        dryRun,
        planFirst: true,
        lock: volumeLock(volid),
        run: async (call, { warnings }) => plansJson(await vc.resize(volid, req.body.size, call), call.dryRun === true, warnings),
      });
    },
  );

  app.post(
    '/api/volumes/:volid/snapshots',
    { schema: { tags, summary: describe('snapshot create'), params: volidParams, body: snapshotCreateBody, response: mutationResponses } },
    async (req, reply) => {
      const { volid } = req.params;
      const { name } = req.body;
      const dryRun = req.body.dryRun ?? false;
      await mutation(ctx, req, reply, {
        operation: 'snapshot-create',
        target: { volid, snapshot: name, vmid: vc.resolve(volid).volume.vmid },
        dryRun,
        planFirst: true,
        lock: volumeLock(volid),
        run: async (call, { warnings }) => plansJson(await vc.snapshotCreate(volid, name, call), call.dryRun === true, warnings),
      });
    },
  );

  app.post(
    '/api/volumes/:volid/snapshots/:snapshot/rollback',
    {
      schema: {
        tags,
        summary: describe('snapshot rollback (to any snapshot; newer ones stay as a branch unless purgeNewer)'),
        params: volidSnapshotParams,
        body: rollbackBody,
        response: mutationResponses,
      },
    },
    async (req, reply) => {
      const { volid, snapshot } = req.params;
      const dryRun = req.body.dryRun ?? false;
      await mutation(ctx, req, reply, {
        operation: 'snapshot-rollback',
        target: { volid, snapshot, vmid: vc.resolve(volid).volume.vmid },
        dryRun,
        planFirst: true,
        lock: volumeLock(volid),
        run: async (call, { warnings }) =>
          plansJson(await vc.snapshotRollback(volid, snapshot, { ...call, purgeNewer: req.body.purgeNewer ?? false }), call.dryRun === true, warnings),
      });
    },
  );

  app.delete(
    '/api/volumes/:volid/snapshots/:snapshot',
    {
      schema: {
        tags,
        summary: describe('snapshot delete (the plan names the strategy chosen and those considered)'),
        params: volidSnapshotParams,
        querystring: dryRunQuery,
        response: mutationResponses,
      },
    },
    async (req, reply) => {
      const { volid, snapshot } = req.params;
      const dryRun = req.query.dryRun === 'true';
      await mutation(ctx, req, reply, {
        operation: 'snapshot-delete',
        target: { volid, snapshot, vmid: vc.resolve(volid).volume.vmid },
        dryRun,
        planFirst: true,
        lock: volumeLock(volid),
        run: async (call, { warnings }) => plansJson(await vc.snapshotDelete(volid, snapshot, call), call.dryRun === true, warnings),
      });
    },
  );

  app.post(
    '/api/vms/:vmid/snapshots',
    { schema: { tags, summary: describe('vm snapshot: every disk of the VM at once'), params: vmidParams, body: vmSnapshotBody, response: mutationResponses } },
    async (req, reply) => {
      const vmid = parseVmid(req.params.vmid);
      const { name, storage } = req.body;
      const dryRun = req.body.dryRun ?? false;
      await mutation(ctx, req, reply, {
        operation: 'vm-snapshot',
        target: { vmid, snapshot: name, ...(storage !== undefined ? { storage } : {}) },
        dryRun,
        planFirst: true,
        lock: vmLock(vmid, storage),
        run: async (call, { warnings }) =>
          plansJson(await vc.vmSnapshot(vmid, name, { ...call, ...(storage !== undefined ? { storage } : {}) }), call.dryRun === true, warnings),
      });
    },
  );

  app.post(
    '/api/vms/:vmid/snapshots/:snapshot/rollback',
    { schema: { tags, summary: describe('vm rollback: every disk of the VM'), params: vmidSnapshotParams, body: vmRollbackBody, response: mutationResponses } },
    async (req, reply) => {
      const vmid = parseVmid(req.params.vmid);
      const { snapshot } = req.params;
      const { storage, purgeNewer } = req.body;
      const dryRun = req.body.dryRun ?? false;
      await mutation(ctx, req, reply, {
        operation: 'vm-rollback',
        target: { vmid, snapshot, ...(storage !== undefined ? { storage } : {}) },
        dryRun,
        planFirst: true,
        lock: vmLock(vmid, storage),
        run: async (call, { warnings }) =>
          plansJson(
            await vc.vmRollback(vmid, snapshot, { ...call, purgeNewer: purgeNewer ?? false, ...(storage !== undefined ? { storage } : {}) }),
            dryRun,
            warnings,
          ),
      });
    },
  );

  app.delete(
    '/api/vms/:vmid/snapshots/:snapshot',
    {
      schema: {
        tags,
        summary: describe('vm delsnapshot: the snapshot of every disk of the VM'),
        params: vmidSnapshotParams,
        querystring: vmDeleteQuery,
        response: mutationResponses,
      },
    },
    async (req, reply) => {
      const vmid = parseVmid(req.params.vmid);
      const { snapshot } = req.params;
      const { storage } = req.query;
      const dryRun = req.query.dryRun === 'true';
      await mutation(ctx, req, reply, {
        operation: 'vm-delsnapshot',
        target: { vmid, snapshot, ...(storage !== undefined ? { storage } : {}) },
        dryRun,
        planFirst: true,
        lock: vmLock(vmid, storage),
        run: async (call, { warnings }) =>
          plansJson(await vc.vmDeleteSnapshot(vmid, snapshot, { ...call, ...(storage !== undefined ? { storage } : {}) }), call.dryRun === true, warnings),
      });
    },
  );

  app.post(
    '/api/repair',
    {
      schema: {
        tags,
        summary: describe('repair: finish interrupted operations of one volume, or of every volume (then no single VM lock is tried first)'),
        body: repairBody,
        response: repairResponses,
      },
    },
    async (req, reply) => {
      const { volid } = req.body;
      const dryRun = req.body.dryRun ?? false;
      await mutation(ctx, req, reply, {
        operation: 'repair',
        target: volid !== undefined ? { volid, vmid: vc.resolve(volid).volume.vmid } : {},
        dryRun,
        planFirst: false,
        // Repair goes ahead over an unfinished operation (that is what it finishes), and may find its volume
        // under a temporary name: no refusal of a missing volume here.
        lock: volid !== undefined ? () => Promise.resolve(repairLock(volid)) : undefined,
        run: async (call, { reporter }) => {
          const repaired = await vc.repair(volid !== undefined ? { volid } : {}, call);
          for (const r of repaired) for (const a of r.actions) reporter?.log(`${r.volid}: ${a}`);
          return { dryRun, repaired } satisfies RepairJson;
        },
      });
    },
  );
  const repairLock = (volid: string): LockTarget => {
    const { backend, volume } = vc.resolve(volid);
    return { backends: [backend], vmid: volume.vmid, refusePending: false };
  };

  app.post(
    '/api/wipe',
    {
      schema: {
        tags,
        summary:
          "wipe: finish saferemove's removals (LVM) now; a task whose bytesDone/bytesTotal follow the zeroing. It takes no VM lock (removals have their own claims)",
        body: wipeBody,
        response: taskOnlyResponses,
      },
    },
    async (req, reply) => {
      const { storage, vmid: vmidText, wait } = req.body;
      const vmid = vmidText !== undefined ? parseVmid(vmidText) : undefined;
      await mutation(ctx, req, reply, {
        operation: 'wipe',
        target: { ...(storage !== undefined ? { storage } : {}), ...(vmid !== undefined ? { vmid } : {}) },
        dryRun: false,
        planFirst: false,
        lock: undefined,
        run: async (_call, { reporter }) => {
          const result = await vc.wipe({
            ...(storage !== undefined ? { storage } : {}),
            ...(vmid !== undefined ? { vmid } : {}),
            wait: wait ?? false,
            onProgress: (p) => reporter?.bytes(p.doneBytes, p.totalBytes),
            log: (line) => reporter?.log(line),
          });
          return { wiped: result.finished, waited: result.waited, busy: result.busy } satisfies WipeJson;
        },
      });
    },
  );
};
