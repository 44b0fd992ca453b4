/**
 * Request schemas of the portable-chain routes (routes-portable.ts): clone, linked clone, convert, template,
 * move, export and import. Strict objects built on the validators of schemas.ts, as every other route's.
 */
import { z } from 'zod';
import { snapshotSchema, storageSchema, vmidSchema } from './schemas.js';

const nameSchema = z.string().max(255).describe('the new volume name (default: the next free vm-<vmid>-disk-<n>.qcow2 on the target)');
/** `dryRun` in a query string (GET and the import's stream body leave no room for it in a JSON body). */
const queryFlag = z.enum(['true', 'false']).optional();

export const cloneBody = z.strictObject({
  storage: storageSchema.describe("the target storage (with linked: the base's)"),
  vmid: vmidSchema.describe('the VM the new volume belongs to'),
  snapshot: snapshotSchema.optional().describe("copy this snapshot's view instead of the current state (not with linked)"),
  linked: z.boolean().optional().describe("a linked clone of a template's base volume (the volid), which it only reads"),
  name: nameSchema.optional(),
  dryRun: z.boolean().optional(),
});
export const convertBody = z.strictObject({
  format: z.literal('qcow2').optional().describe('the format to convert to: qcow2, the only one (and the default)'),
  dryRun: z.boolean().optional(),
});
export const templateBody = z.strictObject({ dryRun: z.boolean().optional() });
export const moveBody = z.strictObject({
  storage: storageSchema.describe("the target storage; the volume's own one with vmid: a reassign in place"),
  vmid: vmidSchema.optional().describe('give the volume to this VM (default: its own)'),
  dryRun: z.boolean().optional(),
});
export const exportQuery = z.strictObject({ dryRun: queryFlag });
export const importQuery = z.strictObject({ vmid: vmidSchema, name: nameSchema.optional(), dryRun: queryFlag });
