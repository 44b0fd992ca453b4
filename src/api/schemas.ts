/**
 * The API's request schemas (zod): what a route accepts, checked before any handler runs, with the same
 * validators the CLI's arguments go through (src/naming/: volume ids, VM ids, snapshot names, sizes), so a
 * value the CLI refuses the API refuses too, with the same message. Objects are strict: an unknown field is
 * an error (400), never silently dropped. The OpenAPI document (/api/openapi.json) is generated from these.
 */
import { z } from 'zod';
import { parseSize, parseVmid, splitVolid, validateSnapshotName, validateStorageId } from '../naming/index.js';

/** A refinement that runs one of naming/'s validators and turns its InvalidInputError into the issue's message. */
function checkedBy(validate: (value: string) => unknown): (value: string, ctx: z.RefinementCtx) => void {
  return (value, ctx) => {
    try {
      validate(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
    }
  };
}

/** Long enough for any volid PVE can write (dir names are ≤ 255 bytes, a linked clone's volid holds two). */
const VOLID_MAX = 1024;

export const volidSchema = z
  .string()
  .max(VOLID_MAX)
  .superRefine(checkedBy(splitVolid))
  .describe("a volume id, e.g. 'local:100/vm-100-disk-0.qcow2' (URL-encoded in a path: local%3A100%2Fvm-100-disk-0.qcow2)");
export const storageSchema = z.string().max(128).superRefine(checkedBy(validateStorageId)).describe("a storage id of storage.cfg, e.g. 'local'");
export const vmidSchema = z.string().max(16).superRefine(checkedBy(parseVmid)).describe('a VM id, 100 to 999999999');
export const snapshotSchema = z
  .string()
  .max(64)
  .superRefine(checkedBy(validateSnapshotName))
  .describe("a snapshot name: a letter, then 1-39 letters, digits, '_' or '-'");
export const sizeSchema = z
  .union([z.string().max(32), z.number().int().positive()])
  .superRefine((value, ctx) => checkedBy(parseSize)(String(value), ctx))
  .describe('a virtual size: bytes, or a number with K/M/G/T (powers of 1024)');
/** `dryRun` in a query string (DELETE routes have no body). */
const queryFlag = z.enum(['true', 'false']).optional();

export const volidParams = z.strictObject({ volid: volidSchema });
export const volidSnapshotParams = z.strictObject({ volid: volidSchema, snapshot: snapshotSchema });
export const storageParams = z.strictObject({ storage: storageSchema });
export const vmidParams = z.strictObject({ vmid: vmidSchema });
export const vmidSnapshotParams = z.strictObject({ vmid: vmidSchema, snapshot: snapshotSchema });
export const taskParams = z.strictObject({ id: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'a task id') });

export const listQuery = z.strictObject({ vmid: vmidSchema.optional() });
export const infoQuery = z.strictObject({ deep: queryFlag });
export const pathQuery = z.strictObject({ snapshot: snapshotSchema.optional() });
export const vmDisksQuery = z.strictObject({ storage: storageSchema.optional() });
export const dryRunQuery = z.strictObject({ dryRun: queryFlag });
export const vmDeleteQuery = z.strictObject({ dryRun: queryFlag, storage: storageSchema.optional() });

export const allocBody = z.strictObject({
  vmid: vmidSchema,
  size: sizeSchema,
  name: z.string().max(255).optional().describe('volume name (default: the next free vm-<vmid>-disk-<n>)'),
  format: z.enum(['qcow2', 'raw']).optional(),
});
export const resizeBody = z.strictObject({ size: sizeSchema, dryRun: z.boolean().optional() });
export const snapshotCreateBody = z.strictObject({ name: snapshotSchema, dryRun: z.boolean().optional() });
export const rollbackBody = z.strictObject({
  purgeNewer: z.boolean().optional().describe('also delete the snapshots newer than this one'),
  dryRun: z.boolean().optional(),
});
export const vmSnapshotBody = z.strictObject({ name: snapshotSchema, storage: storageSchema.optional(), dryRun: z.boolean().optional() });
export const vmRollbackBody = z.strictObject({ storage: storageSchema.optional(), purgeNewer: z.boolean().optional(), dryRun: z.boolean().optional() });
export const repairBody = z.strictObject({
  volid: volidSchema.optional().describe('only this volume (default: every volume)'),
  dryRun: z.boolean().optional(),
});
export const wipeBody = z.strictObject({ storage: storageSchema.optional(), vmid: vmidSchema.optional(), wait: z.boolean().optional() });

export const TASK_STATES = ['running', 'done', 'failed', 'interrupted'] as const;
export const taskListQuery = z.strictObject({
  state: z.enum(TASK_STATES).optional(),
  operation: z.string().max(64).optional(),
  vmid: vmidSchema.optional(),
  volid: volidSchema.optional(),
  limit: z
    .string()
    .regex(/^[1-9][0-9]{0,3}$/, 'a number from 1 to 9999')
    .optional(),
});

/** The body of every error (src/results.ts ErrorDocument). */
export const errorDocument = z
  .object({
    error: z.object({
      code: z.string(),
      exitStatus: z.number(),
      message: z.string(),
      outcome: z.enum(['unchanged', 'needs-repair']),
      fields: z.record(z.string(), z.unknown()),
    }),
  })
  .describe("an error: code (errors.ts), the CLI's exit status, a one-line message, outcome, and the values involved");

/** 202: a task was accepted. */
export const acceptedTask = z
  .object({ task: z.string(), state: z.enum(TASK_STATES), href: z.string() })
  .describe('the task accepted: GET href for its state, steps, log and result; href + /events for its progress');

/** 200 of a dry run: the CLI's `--dry-run --json` document (PlansJson); plans as the library makes them. */
export const plansDocument = z
  .looseObject({ dryRun: z.boolean(), plans: z.array(z.looseObject({ operation: z.string(), volid: z.string(), steps: z.array(z.unknown()) })) })
  .describe('the plans (dryRun: nothing was changed)');

/** 200 of repair's dry run (RepairJson). */
const repairDocument = z
  .looseObject({ dryRun: z.boolean(), repaired: z.array(z.looseObject({ volid: z.string(), actions: z.array(z.string()) })) })
  .describe('what repair would do (dryRun: nothing was changed)');

/** The responses the mutating routes document (wipe has no dry run, repair's is its own document). */
export const mutationResponses = { 200: plansDocument, 202: acceptedTask, '4xx': errorDocument, '5xx': errorDocument };
export const repairResponses = { ...mutationResponses, 200: repairDocument };
export const taskOnlyResponses = { 202: acceptedTask, '4xx': errorDocument, '5xx': errorDocument };
