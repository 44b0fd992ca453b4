/** `resize`: grows a volume's current layer (planResize; the executor journals the steps). */
import { InvalidInputError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { parseSize } from '../../naming/index.js';
import { planResize } from '../planners/volume.js';
import { mutateVolume } from '../session/mutate.js';
import type { Session } from '../session/session.js';
import type { CallOptions } from './types.js';

export async function resize(session: Session, volid: string, size: string | number, opts: CallOptions = {}): Promise<Plan> {
  const sizeBytes = typeof size === 'number' ? size : parseSize(size);
  if (sizeBytes % 512 !== 0) throw new InvalidInputError(`size ${sizeBytes} is not a multiple of 512 bytes`);
  return mutateVolume(session, volid, 'resize', opts, (tree, ctx) => planResize(tree, sizeBytes, ctx));
}
