import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { ErrorCode, InputError, TaskError } from '../protocol/errors.js';
import { describeType, fieldValue, isPlainObject, jsonSyntaxProblem } from './values.js';

/** Kinds of template. */
export const TemplateKind = {
  /** A JSON value whose strings hold placeholders; renders to that value, filled. */
  Json: 'json',
  /** Text with placeholders; renders to `{ prompt: text }`. */
  Text: 'text',
} as const;

export type TemplateKind = (typeof TemplateKind)[keyof typeof TemplateKind];

/** A template filled from an item's fields; `{{field}}` and `{{a.b}}` are its placeholders. */
export interface Template {
  /** Names the template in errors (the file path as given). */
  readonly name: string;
  readonly kind: TemplateKind;
  /** The fields its placeholders use, each once, in order of first appearance. */
  readonly fields: readonly string[];
  /**
   * Fills the template from `item`, which must be an object with every field; otherwise throws
   * a TaskError with `retry: false` naming the template and the field.
   */
  render(item: unknown): unknown;
}

/**
 * Loads a template file: a `.json` file is parsed as JSON (an InputError gives the line and
 * column where it is not), any other file is text.
 */
export async function loadTemplate(path: string): Promise<Template> {
  let source: string;
  try {
    source = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : `cannot read it (${(err as Error).message})`;
    throw new InputError(`template "${path}": ${why}`, { cause: err });
  }
  const kind = extname(path).toLowerCase() === '.json' ? TemplateKind.Json : TemplateKind.Text;
  return parseTemplate(source.replace(/^\uFEFF/, ''), { name: path, kind });
}

/**
 * Compiles a template from its text. Text renders to `{ prompt: "<filled text>" }` (the body
 * OpenAI-compatible `/v1/completions` servers take): a string value goes in as it is, any
 * other value as JSON. JSON is parsed first; in its string values (not its keys) a string that
 * is exactly one placeholder becomes the field's value itself (a number stays a number, an
 * object an object), other strings are filled as text.
 */
export function parseTemplate(
  source: string,
  options: { name: string; kind: TemplateKind },
): Template {
  const { name, kind } = options;
  const fields = new Set<string>();
  let root: Node;
  if (kind === TemplateKind.Json) {
    let value: unknown;
    try {
      value = JSON.parse(source);
    } catch (err) {
      const problem = jsonSyntaxProblem(err, source);
      const at =
        problem.line !== undefined ? ` at line ${problem.line} column ${problem.column}` : '';
      throw new InputError(`template "${name}": not valid JSON${at} (${problem.detail})`, {
        cause: err,
      });
    }
    root = compileJson(value, fields);
  } else {
    root = { kind: 'object', entries: [['prompt', compileText(source, fields)]] };
  }
  const fieldList = [...fields];
  return {
    name,
    kind,
    fields: fieldList,
    render(item: unknown): unknown {
      if (!isPlainObject(item)) {
        const wanted =
          fieldList.length > 0 ? ` with ${fieldList.map((f) => `"${f}"`).join(', ')}` : '';
        throw new TaskError(
          ErrorCode.BadInput,
          `template "${name}": the payload is ${describeType(item)}, expected an object${wanted}`,
          { retry: false },
        );
      }
      return renderNode(root, (field) => {
        const found = fieldValue(item, field);
        if (found === undefined) {
          throw new TaskError(
            ErrorCode.BadInput,
            `template "${name}": item has no field "${field}"`,
            {
              retry: false,
            },
          );
        }
        return found.value;
      });
    },
  };
}

/** `{{ name }}`: a name without braces, spaces around it allowed. */
const PLACEHOLDER = /\{\{\s*([^{}\s](?:[^{}]*[^{}\s])?)\s*\}\}/g;
const WHOLE_PLACEHOLDER = new RegExp(`^${PLACEHOLDER.source}$`);

type Part = string | { field: string };

type Node =
  | { kind: 'value'; value: unknown }
  | { kind: 'field'; field: string }
  | { kind: 'text'; parts: Part[] }
  | { kind: 'array'; items: Node[] }
  | { kind: 'object'; entries: [string, Node][] };

function compileText(text: string, fields: Set<string>): Node {
  const parts: Part[] = [];
  let last = 0;
  for (const match of text.matchAll(PLACEHOLDER)) {
    const field = match[1]!;
    if (match.index > last) parts.push(text.slice(last, match.index));
    parts.push({ field });
    fields.add(field);
    last = match.index + match[0].length;
  }
  if (parts.length === 0) return { kind: 'value', value: text };
  if (last < text.length) parts.push(text.slice(last));
  return { kind: 'text', parts };
}

function compileJson(value: unknown, fields: Set<string>): Node {
  if (typeof value === 'string') {
    const whole = WHOLE_PLACEHOLDER.exec(value);
    if (whole) {
      fields.add(whole[1]!);
      return { kind: 'field', field: whole[1]! };
    }
    return compileText(value, fields);
  }
  if (Array.isArray(value))
    return { kind: 'array', items: value.map((v) => compileJson(v, fields)) };
  if (isPlainObject(value)) {
    return {
      kind: 'object',
      entries: Object.entries(value).map(([k, v]) => [k, compileJson(v, fields)]),
    };
  }
  return { kind: 'value', value };
}

function renderNode(node: Node, lookup: (field: string) => unknown): unknown {
  switch (node.kind) {
    case 'value':
      return node.value;
    case 'field':
      return lookup(node.field);
    case 'text':
      return node.parts
        .map((part) => {
          if (typeof part === 'string') return part;
          const value = lookup(part.field);
          return typeof value === 'string' ? value : JSON.stringify(value);
        })
        .join('');
    case 'array':
      return node.items.map((item) => renderNode(item, lookup));
    case 'object':
      // fromEntries defines own properties, so a "__proto__" key stays a plain key.
      return Object.fromEntries(node.entries.map(([k, v]) => [k, renderNode(v, lookup)]));
  }
}
