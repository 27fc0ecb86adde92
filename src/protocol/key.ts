import { createHash } from 'node:crypto';
import { InputError } from './errors.js';

/**
 * The value of `path` in `item`: an own property of that exact name first (CSV headers may
 * contain dots), else the dotted path walked through nested objects and arrays (`a.b`,
 * `tags.0`). `undefined` when a step is missing or the value is `undefined`.
 */
export function fieldValue(item: unknown, path: string): { value: unknown } | undefined {
  if (!isContainer(item)) return undefined;
  if (Object.hasOwn(item, path)) {
    const value = (item as Record<string, unknown>)[path];
    return value === undefined ? undefined : { value };
  }
  let current: unknown = item;
  for (const step of path.split('.')) {
    if (!isContainer(current) || !Object.hasOwn(current, step)) return undefined;
    current = (current as Record<string, unknown>)[step];
  }
  return current === undefined ? undefined : { value: current };
}

function isContainer(value: unknown): value is object {
  return value !== null && typeof value === 'object';
}

/**
 * JSON with object keys sorted (by UTF-16 code units) at every depth and no whitespace, so equal
 * values give equal text whatever the key order. Otherwise as `JSON.stringify`: `toJSON` is
 * honoured, `undefined` object members are left out, non-finite numbers become `null`.
 */
export function canonicalJson(value: unknown): string {
  return canonical(value) ?? 'null';
}

function canonical(value: unknown): string | undefined {
  if (value !== null && typeof value === 'object') {
    const withToJson = value as { toJSON?: unknown };
    if (typeof withToJson.toJSON === 'function') {
      return canonical((withToJson.toJSON as () => unknown).call(value));
    }
    if (Array.isArray(value)) {
      return `[${value.map((v: unknown) => canonical(v) ?? 'null').join(',')}]`;
    }
    const members: string[] = [];
    for (const key of Object.keys(value).sort()) {
      const text = canonical((value as Record<string, unknown>)[key]);
      if (text !== undefined) members.push(`${JSON.stringify(key)}:${text}`);
    }
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value) as string | undefined;
}

/**
 * The idempotency key qtune derives from an item: the first 32 hex digits of the SHA-256 of
 * the canonical JSON of the key fields' values in order (`["acme", 2024]`), or of the whole
 * item when `fields` is empty. Canonical JSON sorts object keys at every depth, so the order of
 * an item's keys does not matter; a field may be a dotted path. Throws an InputError naming a
 * key field the item lacks.
 */
export function keyOf(item: unknown, fields: readonly string[] = []): string {
  let basis: unknown = item;
  if (fields.length > 0) {
    basis = fields.map((field) => {
      const found = fieldValue(item, field);
      if (found === undefined) throw new InputError(`item has no key field "${field}"`);
      return found.value;
    });
  }
  return createHash('sha256').update(canonicalJson(basis)).digest('hex').slice(0, 32);
}
