import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { InputError, toError } from '../protocol/errors.js';

/**
 * What a token may do: `producer` submits work, `worker` pulls it, `viewer` reads statistics and
 * status (the dashboard) and changes nothing, `admin` does everything.
 */
export const Role = {
  Producer: 'producer',
  Worker: 'worker',
  Viewer: 'viewer',
  Admin: 'admin',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

/** One configured token. The secret is kept only as its SHA-256 digest. */
export interface TokenEntry {
  /** Shown in logs and used as the rate-limit key; never the secret itself. */
  name: string;
  role: Role;
  /** SHA-256 of the token. */
  digest: Buffer;
  /** Requests per second for this token (default: the gateway's rate limit). */
  rateLimit?: number;
}

/** How the gateway authenticates requests. */
export interface AuthConfig {
  tokens: readonly TokenEntry[];
  /**
   * Accept requests without a token, as an `admin` named `anonymous`. Only for a gateway on a
   * loopback address (default: false).
   */
  disabled?: boolean;
}

/** Who made a request. */
export interface Principal {
  name: string;
  role: Role;
  /** Requests per second for this principal, when its token sets one. */
  rateLimit?: number;
}

const NAME = /^[A-Za-z0-9_.@-]{1,64}$/;

const fileSchema = z.object({
  tokens: z
    .array(
      z
        .object({
          name: z.string().regex(NAME, 'letters, digits, "_", ".", "@" or "-", 1 to 64'),
          role: z.enum(['producer', 'worker', 'viewer', 'admin']),
          token: z.string().min(16, 'at least 16 characters').optional(),
          sha256: z
            .string()
            .regex(/^[0-9a-fA-F]{64}$/, '64 hex digits')
            .optional(),
          rateLimit: z.number().int().positive().optional(),
        })
        .refine((t) => (t.token === undefined) !== (t.sha256 === undefined), {
          message: 'give exactly one of "token" or "sha256"',
        }),
    )
    .min(1),
});

/** SHA-256 of a token, as stored and compared. */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * Parses `QTUNE_TOKENS`: `name:role:token` entries separated by commas (the token is what
 * follows the second colon). Throws InputError naming the entry (never its token).
 */
export function parseTokenList(value: string, source = 'QTUNE_TOKENS'): TokenEntry[] {
  const entries: TokenEntry[] = [];
  const parts = value
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  parts.forEach((part, index) => {
    const first = part.indexOf(':');
    const second = first < 0 ? -1 : part.indexOf(':', first + 1);
    if (second < 0) {
      throw new InputError(
        `${source}: entry ${index + 1} is not "name:role:token" (expected two ":" separators)`,
      );
    }
    const name = part.slice(0, first);
    const role = part.slice(first + 1, second);
    const token = part.slice(second + 1);
    if (!NAME.test(name)) {
      throw new InputError(
        `${source}: entry ${index + 1} has an invalid name ${shown(name)} (letters, digits, "_", ".", "@" or "-")`,
      );
    }
    if (!isRole(role)) {
      throw new InputError(
        `${source}: token "${name}" has role ${shown(role)}, expected producer, worker, viewer or admin (entries are "name:role:token")`,
      );
    }
    if (token.length < 16) {
      throw new InputError(
        `${source}: token "${name}" is ${token.length} characters long; use at least 16`,
      );
    }
    entries.push({ name, role, digest: tokenDigest(token) });
  });
  return entries;
}

/**
 * A misplaced field of a token entry, quoted in an error only when it cannot be a token (too
 * short, one plain word): `name:token:role` must not print the token.
 */
function shown(field: string): string {
  return field.length < 16 && /^[\w.@-]*$/u.test(field)
    ? JSON.stringify(field)
    : `(${field.length} characters, not shown: it may be a token)`;
}

/** Reads a YAML or JSON tokens file: `tokens: [{ name, role, token | sha256, rateLimit? }]`. */
export function loadTokenFile(path: string): TokenEntry[] {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new InputError(`tokens file "${path}": ${toError(err).message}`, { cause: err });
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : '(root)';
    throw new InputError(
      `tokens file "${path}": invalid at "${where}": ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data.tokens.map((t) => {
    const entry: TokenEntry = {
      name: t.name,
      role: t.role,
      digest: t.sha256 !== undefined ? Buffer.from(t.sha256, 'hex') : tokenDigest(t.token!),
    };
    if (t.rateLimit !== undefined) entry.rateLimit = t.rateLimit;
    return entry;
  });
}

/** Checks that names and secrets are unique; throws InputError naming the duplicate. */
export function checkTokens(tokens: readonly TokenEntry[]): void {
  const names = new Set<string>();
  const digests = new Map<string, string>();
  for (const t of tokens) {
    if (names.has(t.name)) throw new InputError(`token name "${t.name}" is given twice`);
    names.add(t.name);
    const hex = t.digest.toString('hex');
    const other = digests.get(hex);
    if (other !== undefined) {
      throw new InputError(`tokens "${other}" and "${t.name}" have the same secret`);
    }
    digests.set(hex, t.name);
  }
}

function isRole(value: string): value is Role {
  return (
    value === Role.Producer ||
    value === Role.Worker ||
    value === Role.Viewer ||
    value === Role.Admin
  );
}

/** The principal of a request when authentication is disabled. */
export const ANONYMOUS: Principal = Object.freeze({ name: 'anonymous', role: Role.Admin });

/**
 * Finds the token presented in an `Authorization: Bearer ...` header. Every configured digest is
 * compared in constant time (no early exit), so timing tells nothing about which one matched.
 */
export class TokenVerifier {
  readonly #tokens: readonly TokenEntry[];

  constructor(tokens: readonly TokenEntry[]) {
    checkTokens(tokens);
    this.#tokens = tokens;
  }

  /** The principal of a bearer header, or undefined when it is missing or matches no token. */
  verify(authorization: string | undefined): Principal | undefined {
    if (authorization === undefined) return undefined;
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization);
    if (!m) return undefined;
    const digest = tokenDigest(m[1]!);
    let found: TokenEntry | undefined;
    for (const t of this.#tokens) {
      if (timingSafeEqual(digest, t.digest) && found === undefined) found = t;
    }
    if (!found) return undefined;
    const principal: Principal = { name: found.name, role: found.role };
    if (found.rateLimit !== undefined) principal.rateLimit = found.rateLimit;
    return principal;
  }
}

/** True when `role` may call an endpoint open to `allowed` (admin may call everything). */
export function roleAllowed(role: Role, allowed: readonly Role[]): boolean {
  return role === Role.Admin || allowed.includes(role);
}
