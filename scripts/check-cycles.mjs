#!/usr/bin/env node
// Reports every dependency cycle between the TypeScript modules under the given folders
// (default: src), and exits 1 when there is one. `npm run lint` runs it.
//
//   node scripts/check-cycles.mjs [DIR...]
//
// Edges are the relative specifiers of `import` and `export ... from` declarations (type-only
// ones included: a layer that needs another's types depends on it), `import x = require()`,
// `import('...')` calls with a literal specifier (a lazy import still ties the two modules
// together) and `import('...')` types. A specifier names the compiled file (`./a.js`), as
// NodeNext wants, or the source (`./a.ts`, `./a`, `./dir` for `./dir/index.ts`). Package
// imports are not followed. Each cycle is printed once, as a path from its first module in
// name order back to itself; an edge through `import()` is marked so.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';

const SOURCE = /\.(c|m)?tsx?$/;
const DECLARATION = /\.d\.(c|m)?ts$/;

/** Every TypeScript source file under `dir`, declaration files and node_modules left out. */
function sourceFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') out.push(...sourceFiles(path));
    } else if (SOURCE.test(entry.name) && !DECLARATION.test(entry.name)) {
      out.push(path);
    }
  }
  return out;
}

/** The source file a relative specifier in `from` names, or undefined (not one of ours). */
function resolveSpecifier(from, specifier, known) {
  if (!specifier.startsWith('./') && !specifier.startsWith('../')) return undefined;
  const base = resolve(dirname(from), specifier);
  const stem = base.replace(/\.(c|m)?jsx?$/, '');
  const candidates = [
    base,
    `${stem}.ts`,
    `${stem}.tsx`,
    `${stem}.mts`,
    `${stem}.cts`,
    join(base, 'index.ts'),
    join(base, 'index.tsx'),
  ];
  return candidates.find((c) => known.has(c));
}

/** The module specifiers `file` depends on, each with whether it is a dynamic `import()`. */
export function importsOf(fileName, text) {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found = [];
  const visit = (node) => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier !== undefined &&
      ts.isStringLiteralLike(node.moduleSpecifier)
    ) {
      found.push({ specifier: node.moduleSpecifier.text, dynamic: false });
    } else if (
      ts.isImportEqualsDeclaration(node) &&
      ts.isExternalModuleReference(node.moduleReference) &&
      ts.isStringLiteralLike(node.moduleReference.expression)
    ) {
      found.push({ specifier: node.moduleReference.expression.text, dynamic: false });
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments.length > 0 &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      found.push({ specifier: node.arguments[0].text, dynamic: true });
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteralLike(node.argument.literal)
    ) {
      found.push({ specifier: node.argument.literal.text, dynamic: false });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/**
 * The import graph of the TypeScript files under `dirs`: file -> [{ to, dynamic }], with
 * absolute paths, each edge once (static wins over dynamic when a file has both).
 */
export function importGraph(dirs) {
  const files = dirs.flatMap((d) => sourceFiles(resolve(d))).sort();
  const known = new Set(files);
  const graph = new Map();
  for (const file of files) {
    const edges = new Map();
    for (const { specifier, dynamic } of importsOf(file, readFileSync(file, 'utf8'))) {
      const to = resolveSpecifier(file, specifier, known);
      if (to === undefined) continue;
      edges.set(to, (edges.get(to) ?? true) && dynamic);
    }
    graph.set(
      file,
      [...edges].sort(([a], [b]) => (a < b ? -1 : 1)).map(([to, dyn]) => ({ to, dynamic: dyn })),
    );
  }
  return graph;
}

/** The strongly connected components of `graph` with more than one file or a self-import. */
function tangles(graph) {
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  let next = 0;
  const connect = (file) => {
    index.set(file, next);
    low.set(file, next);
    next++;
    stack.push(file);
    onStack.add(file);
    for (const { to } of graph.get(file) ?? []) {
      if (!index.has(to)) {
        connect(to);
        low.set(file, Math.min(low.get(file), low.get(to)));
      } else if (onStack.has(to)) {
        low.set(file, Math.min(low.get(file), index.get(to)));
      }
    }
    if (low.get(file) !== index.get(file)) return;
    const component = new Set();
    let f;
    do {
      f = stack.pop();
      onStack.delete(f);
      component.add(f);
    } while (f !== file);
    const selfImport = (graph.get(file) ?? []).some((e) => e.to === file);
    if (component.size > 1 || selfImport) out.push(component);
  };
  for (const file of [...graph.keys()].sort()) if (!index.has(file)) connect(file);
  return out;
}

/**
 * Every elementary cycle of `graph` (up to `limit` of them), each as a list of
 * { file, dynamic } steps where `dynamic` says whether the edge from this step to the next is
 * an `import()`; the last step's edge leads back to the first. A cycle starts at its least
 * file in name order, and cycles come in name order of that file.
 */
export function findCycles(graph, limit = 1000) {
  const cycles = [];
  for (const component of tangles(graph)) {
    const files = [...component].sort();
    for (const [rank, start] of files.entries()) {
      const allowed = new Set(files.slice(rank));
      const path = [];
      const onPath = new Set([start]);
      const walk = (file) => {
        for (const { to, dynamic } of graph.get(file) ?? []) {
          if (cycles.length >= limit) return;
          if (to === start) {
            cycles.push([...path, { file, dynamic }]);
          } else if (allowed.has(to) && !onPath.has(to)) {
            onPath.add(to);
            path.push({ file, dynamic });
            walk(to);
            path.pop();
            onPath.delete(to);
          }
        }
      };
      walk(start);
    }
  }
  return cycles.sort((a, b) => (a[0].file < b[0].file ? -1 : a[0].file > b[0].file ? 1 : 0));
}

/** One cycle as text: `a.ts > b.ts >(import()) c.ts > a.ts`, paths relative to `cwd`. */
export function formatCycle(cycle, cwd = process.cwd()) {
  const name = (f) => relative(cwd, f).split(sep).join('/');
  let out = name(cycle[0].file);
  for (let i = 0; i < cycle.length; i++) {
    const next = cycle[(i + 1) % cycle.length].file;
    out += `${cycle[i].dynamic ? ' >(import())' : ' >'} ${name(next)}`;
  }
  return out;
}

function main(argv) {
  const dirs = argv.length > 0 ? argv : ['src'];
  const graph = importGraph(dirs);
  const cycles = findCycles(graph);
  if (cycles.length === 0) {
    console.log(
      `check-cycles: no dependency cycle among ${graph.size} modules in ${dirs.join(', ')}`,
    );
    return 0;
  }
  console.error(
    `check-cycles: ${cycles.length} dependency cycle(s) among ${graph.size} modules in ${dirs.join(', ')}:`,
  );
  for (const cycle of cycles) console.error(`  ${formatCycle(cycle)}`);
  return 1;
}

if (
  process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(resolve(process.argv[1])).href
) {
  process.exitCode = main(process.argv.slice(2));
}
