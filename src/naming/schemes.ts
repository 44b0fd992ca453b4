/**
 * Storage kind -> naming scheme: the one place naming chooses by kind. A new storage type adds its scheme
 * file (scheme.ts says what one holds) and one line here.
 */
import { NotSupportedError } from '../errors.js';
import { quote } from './common.js';
import { dirNaming } from './dir-scheme.js';
import { lvmNaming } from './lvm-scheme.js';
import type { NamingScheme } from './scheme.js';
import type { StorageKind } from './types.js';

const SCHEMES: Readonly<Record<StorageKind, NamingScheme>> = {
  dir: dirNaming,
  lvm: lvmNaming,
};

/** Every scheme, for rules that recognise a name without knowing its storage type (temporary names). */
export const NAMING_SCHEMES: readonly NamingScheme[] = Object.values(SCHEMES);

/** True for a storage kind naming has a scheme for (guards values that bypassed the types: config, plain JS). */
export function isStorageKind(kind: unknown): kind is StorageKind {
  return typeof kind === 'string' && Object.hasOwn(SCHEMES, kind);
}

/** The known kinds for messages: 'dir' or 'lvm'. */
export function expectedKinds(): string {
  return NAMING_SCHEMES.map((s) => `'${s.kind}'`).join(' or ');
}

/** The naming scheme of storage kind `kind`; NotSupportedError for a kind without one. */
export function namingScheme(kind: StorageKind): NamingScheme {
  if (!isStorageKind(kind)) throw new NotSupportedError(`storage type ${quote(kind)} is not supported: expected ${expectedKinds()}`);
  return SCHEMES[kind];
}
