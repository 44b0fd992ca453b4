/**
 * The naming rules that differ between storage types, behind one interface: what a volume, snapshot layer
 * and temporary layer are called on one kind of storage, how long a name may be, which characters it may
 * hold, and how its volid is written. volume-id.ts, layer-names.ts and allocate-name.ts hold the rules
 * every storage shares and ask the scheme (schemes.ts chooses it by kind) for the rest. A new storage type
 * adds one scheme file and one line in schemes.ts.
 */
import type { ImageFormat, StorageKind } from './types.js';

export interface NamingScheme {
  readonly kind: StorageKind;
  /** How messages name this storage type ('dir', 'LVM'). */
  readonly label: string;
  /** What a layer is on this storage, in messages ('file name', 'LV name'). */
  readonly objectName: string;
  /** Longest layer name (file or LV name) the storage accepts, in UTF-8 bytes. */
  readonly nameMaxBytes: number;
  /** The shape of a volume name, for messages. */
  readonly volumeShape: string;
  /** Matches the first character a volume name may not hold; `allowedChars` says which it may, for messages. */
  readonly disallowedChar: RegExp;
  readonly allowedChars: string;
  /**
   * How a volid's volname names a volume: `vmid-dir` is `<vmid>/<name>` (and a linked clone's
   * `<basevmid>/<basename>/<vmid>/<name>`, dir); `name` is the layer name alone (LVM).
   */
  readonly volnameLayout: 'vmid-dir' | 'name';
  /** Template base volumes (`base-<vmid>-…`) and linked clones of them exist on this storage. */
  readonly baseVolumes: boolean;
  /** Why a `base-` volume name is refused, for the message (`q` is the quoted name). */
  baseNameRefusal(q: string): string;
  /** The format a volume name says (`rest` is what follows `vm-<vmid>-`); throws when it says none. */
  volumeFormat(name: string, rest: string): ImageFormat;
  /** A substring the storage reserves that `name` contains (LVM's internal LV names), if any. */
  reservedSubstring(name: string): string | undefined;
  /** Refuses a name for a new volume that this storage could hold but should not be given (LVM: `.raw`). */
  checkNewVolumeName(name: string): void;
  /** The name of new disk `stem` (`vm-<vmid>-disk-<n>`) in `format`. */
  diskName(stem: string, format: ImageFormat): string;
  /** What surrounds the snapshot name in the names of a qcow2 volume's snapshot layers. */
  snapshotAffixes(volumeName: string): { prefix: string; suffix: string };
  /** What a temporary layer's name has before `volchain-tmp-` ('.' hides it from PVE on dir). */
  readonly temporaryPrefix: string;
}
