/**
 * Disk sizes as users type them and as volchain prints them.
 *
 * Parsing follows PVE's `PVE::JSONSchema::parse_size` (digits, optional decimal part, optional unit
 * K/M/G/T or KiB/MiB/GiB/TiB, all powers of 1024) with two deliberate differences:
 * - units are also accepted in lower case (`10g`), a common typo that cannot mean anything else;
 * - PVE truncates fractional bytes (`1.5` becomes 1); volchain rejects them, because a size that silently
 *   changes is worse than an error. Decimals are fine when the result is whole (`1.5G`, `0.5K`).
 * A plain `B`, `GB` or SI units are not accepted, as in PVE.
 */
import { InvalidInputError } from '../errors.js';
import { quote } from './common.js';

const SIZE_PATTERN = /^(\d+)(?:\.(\d+))?(?:([kmgt])(ib)?)?$/i;
const UNIT_EXPONENT: Record<string, bigint> = { k: 1n, m: 2n, g: 3n, t: 4n };
const MAX_SIZE_TEXT = 64;

/** Parses a size such as `1048576`, `32G`, `1.5GiB` or `512m` into a positive whole number of bytes. */
export function parseSize(text: string): number {
  const allowed =
    'a positive whole number of bytes, or a number with unit K, M, G or T ' + "(powers of 1024, optionally written KiB, MiB, GiB, TiB), e.g. '32G' or '1.5GiB'";
  if (typeof text !== 'string' || text.length === 0) {
    throw new InvalidInputError(`size must not be empty: expected ${allowed}`);
  }
  const match = text.length <= MAX_SIZE_TEXT ? SIZE_PATTERN.exec(text) : null;
  if (!match) {
    throw new InvalidInputError(`size ${quote(text)} is not valid: expected ${allowed}`);
  }
  const [, whole = '', fraction = '', unit] = match;
  const multiplier = 1024n ** (unit === undefined ? 0n : (UNIT_EXPONENT[unit.toLowerCase()] ?? 0n));
  // Exact arithmetic: bytes = (whole.fraction) * multiplier = digits * multiplier / 10^fractionDigits.
  const scale = 10n ** BigInt(fraction.length);
  const scaled = BigInt(whole + fraction) * multiplier;
  if (scaled % scale !== 0n) {
    throw new InvalidInputError(`size ${quote(text)} is not a whole number of bytes: use a smaller unit or fewer decimals`);
  }
  const bytes = scaled / scale;
  if (bytes === 0n) {
    throw new InvalidInputError(`size ${quote(text)} is zero: a disk needs at least one byte`);
  }
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidInputError(`size ${quote(text)} is too large: at most ${Number.MAX_SAFE_INTEGER} bytes ` + `(${formatSize(Number.MAX_SAFE_INTEGER)})`);
  }
  return Number(bytes);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'] as const;

/**
 * Human-readable size with binary units and at most two decimals, trailing zeros dropped:
 * 1536 → "1.5 KiB", 1073741824 → "1 GiB", 512 → "512 B". Rounded for display only, never to be parsed back.
 * Accepts bigint because qcow2 header fields are read as bigint.
 */
export function formatSize(bytes: number | bigint): string {
  if (typeof bytes === 'number' && !Number.isSafeInteger(bytes)) {
    throw new InvalidInputError(`cannot format size ${String(bytes)}: expected a whole number of bytes`);
  }
  let value = BigInt(bytes);
  if (value < 0n) {
    throw new InvalidInputError(`cannot format size ${String(bytes)}: sizes are never negative`);
  }
  let unitIndex = 0;
  while (unitIndex < UNITS.length - 1 && value >= 1024n ** BigInt(unitIndex + 1)) unitIndex++;
  const divisor = 1024n ** BigInt(unitIndex);
  // Hundredths of the unit, rounded half up.
  let hundredths = (value * 200n + divisor) / (2n * divisor);
  if (hundredths >= 102400n && unitIndex < UNITS.length - 1) {
    // 1023.999 KiB would print as "1024 KiB": show it as the next unit instead.
    unitIndex++;
    value = hundredths;
    hundredths = (value + 512n) / 1024n;
  }
  const whole = hundredths / 100n;
  const cents = hundredths % 100n;
  const decimals = cents === 0n ? '' : `.${cents.toString().padStart(2, '0').replace(/0$/, '')}`;
  return `${whole}${decimals} ${String(UNITS[unitIndex])}`;
}
