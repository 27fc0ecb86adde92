/**
 * The one place that hides secrets before text is logged or printed: passwords in URLs (also
 * URLs nested in another URL's query, such as `?management=http://admin:pw@host`, and strings
 * that are not valid URLs at all), and secret-looking query parameters.
 */

const HIDDEN = '***';

// Where a URL starts: `scheme://`.
const URL_START = /[a-z][a-z0-9+.-]*:\/\//giu;
// What ends a URL inside free text: white space, quotes, brackets.
const URL_END = /[\s"'`<>()[\]{}]/u;
// Query parameters whose value is a secret.
const SECRET_PARAM =
  /([?&](?:password|passwd|pass|pwd|token|secret|api[_-]?key|access[_-]?key)=)[^&#\s"'`]*/giu;

/**
 * `text` with every password it holds replaced by `***`. A URL's user info runs from its
 * `scheme://` to the last `@` before the next URL or the end of the URL, so passwords that
 * hold `@`, `/`, `?` or `:` are hidden whole (when in doubt, more is hidden, never less). User
 * names are kept; a secret-looking query parameter (`password=`, `token=`, `api_key=`, ...)
 * loses its value.
 */
export function redact(text: string): string {
  const starts = [...text.matchAll(URL_START)].map((m) => m.index + m[0].length);
  if (starts.length === 0) return text.replace(SECRET_PARAM, `$1${HIDDEN}`);
  let out = '';
  let from = 0;
  starts.forEach((start, i) => {
    // The URL's authority and what follows, up to the next `scheme://` or the end of the URL.
    const next = i + 1 < starts.length ? urlStartBefore(text, starts[i + 1]!) : text.length;
    const endMatch = URL_END.exec(text.slice(start, next));
    const end = endMatch === null ? next : start + endMatch.index;
    const at = text.lastIndexOf('@', end - 1);
    out += text.slice(from, start);
    from = start;
    if (at < start) return;
    const userInfo = text.slice(start, at);
    const colon = userInfo.indexOf(':');
    if (colon < 0) return;
    out += `${userInfo.slice(0, colon + 1)}${HIDDEN}`;
    from = at;
  });
  out += text.slice(from);
  return out.replace(SECRET_PARAM, `$1${HIDDEN}`);
}

/** Index where the `scheme://` ending at `afterSlashes` begins. */
function urlStartBefore(text: string, afterSlashes: number): number {
  let i = afterSlashes - 3;
  while (i > 0 && /[a-z0-9+.-]/iu.test(text[i - 1]!)) i--;
  return i;
}
