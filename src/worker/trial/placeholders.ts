/**
 * Placeholders of an exec trial's command template: `{name}` and `{name:-default}`. Kept
 * apart from the runners so that spec validation can check a template without loading them.
 */

function shellQuote(value: string): string {
  return /^[A-Za-z0-9_.,:/=+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * A `{name}` or `{name:-default}` placeholder of a command template; `${...}` is the shell's
 * and never a placeholder. Group 1 is the name, group 2 the default (possibly empty).
 */
const PLACEHOLDER = /(?<!\$)\{([A-Za-z_][A-Za-z0-9_.-]*)(?::-([^}]*))?\}/g;

/**
 * Fills the placeholders of a command template with the trial's parameter values,
 * shell-quoted. A parameter absent from the trial (an inactive conditional one) takes the
 * placeholder's default, shell-quoted (`{momentum:-0.9}`; `{momentum:-}` gives nothing);
 * a `{name}` without default whose parameter is absent is left as it is.
 */
export function fillCommand(
  template: string,
  params: Record<string, number | string | boolean>,
): string {
  return template.replace(PLACEHOLDER, (whole, name: string, fallback: string | undefined) => {
    if (Object.hasOwn(params, name)) return shellQuote(String(params[name]));
    if (fallback === undefined) return whole;
    return fallback === '' ? '' : shellQuote(fallback);
  });
}

/** Placeholders of `template` in order: each parameter name and its default, if it has one. */
export function placeholdersOf(template: string): { name: string; fallback?: string }[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) =>
    m[2] === undefined ? { name: m[1]! } : { name: m[1]!, fallback: m[2] },
  );
}
