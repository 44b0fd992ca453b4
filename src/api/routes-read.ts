/**
 * Read routes: what `storage list`, `list`, `info`, `path`, `snapshot list`, the VM's disks and `status`
 * print with --json, as the same documents (src/results.ts), from the same library calls.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { formatVolid, parseVmid } from '../naming/index.js';
import type { ListJson, PathJson, StatusJson, StorageListJson } from '../results.js';
import type { ApiContext } from './context.js';
import { infoQuery, listQuery, pathQuery, storageParams, vmDisksQuery, vmidParams, volidParams } from './schemas.js';

export const readRoutes: FastifyPluginAsyncZod<{ ctx: ApiContext }> = async (app, { ctx }) => {
  const { vc } = ctx;
  const tags = ['read'];

  app.get('/api/storages', { schema: { tags, summary: 'the storages of storage.cfg (storage list --json)' } }, () => {
    return { source: vc.config.source, storages: vc.storages() } satisfies StorageListJson;
  });

  app.get(
    '/api/storages/:storage/volumes',
    {
      schema: {
        tags,
        summary: 'the volumes of a storage (list --json); one that cannot be read is listed with its problem',
        params: storageParams,
        querystring: listQuery,
      },
    },
    async (req) => {
      const { vmid } = req.query;
      return { volumes: await vc.list(req.params.storage, vmid !== undefined ? { vmid: parseVmid(vmid) } : {}) } satisfies ListJson;
    },
  );

  app.get(
    '/api/volumes/:volid',
    { schema: { tags, summary: "a volume's size, chain, snapshot space and pending operation (info --json)", params: volidParams, querystring: infoQuery } },
    async (req) => vc.info(req.params.volid, { deep: req.query.deep === 'true' }),
  );

  app.get(
    '/api/volumes/:volid/path',
    { schema: { tags, summary: "the path of a volume's current layer, or of a snapshot's (path --json)", params: volidParams, querystring: pathQuery } },
    async (req) => {
      const { snapshot } = req.query;
      const path = await vc.path(req.params.volid, snapshot !== undefined ? { snapshot } : {});
      return { volid: req.params.volid, path } satisfies PathJson;
    },
  );

  app.get(
    '/api/volumes/:volid/snapshots',
    {
      schema: {
        tags,
        summary: 'the snapshot tree: every layer with its parent and children, and what the current layer builds on (snapshot list --json)',
        params: volidParams,
      },
    },
    async (req) => vc.snapshotList(req.params.volid),
  );

  app.get(
    '/api/vms/:vmid/disks',
    {
      schema: { tags, summary: "a VM's disks, as the vm commands take them (the VM's volumes on the storages)", params: vmidParams, querystring: vmDisksQuery },
    },
    async (req) => {
      const vmid = parseVmid(req.params.vmid);
      const warnings: string[] = [];
      const disks = await vc.vmVolumes(vmid, req.query.storage, undefined, (w) => warnings.push(w));
      return { vmid, disks: disks.map(({ volume }) => formatVolid(volume)), ...(warnings.length > 0 ? { warnings } : {}) };
    },
  );

  app.get('/api/status', { schema: { tags, summary: 'unfinished operations, wipes, journal leftovers (status --json)' } }, async () => {
    const [pending, wipes, journalFiles] = [await vc.status(), await vc.pendingRemovals(), await vc.journalLeftovers()];
    return { pending, wipes, journalFiles } satisfies StatusJson;
  });
};
