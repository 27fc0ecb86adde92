import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findCycles, formatCycle, importGraph, importsOf } from '../../scripts/check-cycles.mjs';

const SCRIPT = join(import.meta.dirname, '../../scripts/check-cycles.mjs');
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Writes `files` (path relative to a fresh folder -> text) and returns the folder. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'qtune-cycles-'));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

function run(root: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [SCRIPT, 'src'], { cwd: root, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('check-cycles', () => {
  it('finds the specifiers of imports, re-exports, import() calls and import types', () => {
    const refs = importsOf(
      'a.ts',
      [
        "import { x } from './x.js';",
        "import type { T } from './t.js';",
        "export * from './e.js';",
        "export { y } from './y.js';",
        "import fs = require('node:fs');",
        "type M = typeof import('./m.js');",
        "const lazy = () => import('./lazy.js');",
        'const notLiteral = (s: string) => import(s);',
      ].join('\n'),
    );
    expect(refs).toEqual([
      { specifier: './x.js', dynamic: false },
      { specifier: './t.js', dynamic: false },
      { specifier: './e.js', dynamic: false },
      { specifier: './y.js', dynamic: false },
      { specifier: 'node:fs', dynamic: false },
      { specifier: './m.js', dynamic: false },
      { specifier: './lazy.js', dynamic: true },
    ]);
  });

  it('passes a tree without a cycle, packages and index folders included', () => {
    const root = tree({
      'src/index.ts': "export * from './a/index.js';\nimport 'node:path';\n",
      'src/a/index.ts':
        "export { b } from './b.js';\nexport const lazy = () => import('../c.js');\n",
      'src/a/b.ts': "import { c } from '../c.js';\nexport const b = c;\n",
      'src/c.ts': "import type { Z } from 'zod';\nexport const c = 1 as unknown as Z;\n",
    });
    expect(findCycles(importGraph([join(root, 'src')]))).toEqual([]);
    const r = run(root);
    expect(r.status).toBe(0);
    expect(r.out).toContain('no dependency cycle among 4 modules');
  });

  it('reports a static cycle, a type-only one and one through import(), each with its path', () => {
    const root = tree({
      'src/a.ts': "import { b } from './b.js';\nexport const a = b;\n",
      'src/b.ts': "import { a } from './a.js';\nexport const b = 1;\nexport const c = () => a;\n",
      'src/t/x.ts': "import type { Y } from './y.js';\nexport type X = Y[];\n",
      'src/t/y.ts': "import type { X } from './x.js';\nexport type Y = X | 1;\n",
      'src/open.ts':
        "export async function open() {\n  return (await import('./impl/index.js')).impl;\n}\n",
      'src/impl/index.ts': "export { impl } from './impl.js';\n",
      'src/impl/impl.ts': "import { open } from '../open.js';\nexport const impl = open;\n",
    });
    const cycles = findCycles(importGraph([join(root, 'src')]));
    expect(cycles.map((c) => formatCycle(c, root))).toEqual([
      'src/a.ts > src/b.ts > src/a.ts',
      'src/impl/impl.ts > src/open.ts >(import()) src/impl/index.ts > src/impl/impl.ts',
      'src/t/x.ts > src/t/y.ts > src/t/x.ts',
    ]);
    const r = run(root);
    expect(r.status).toBe(1);
    expect(r.out).toContain('3 dependency cycle(s) among 7 modules');
    expect(r.out).toContain(
      'src/impl/impl.ts > src/open.ts >(import()) src/impl/index.ts > src/impl/impl.ts',
    );
  });

  it('reports every loop through a tangle of files, and a file importing itself', () => {
    const root = tree({
      'src/a.ts': "import './b.js';\nimport './c.js';\n",
      'src/b.ts': "import './a.js';\n",
      'src/c.ts': "import './b.js';\n",
      'src/self.ts': "export const s = 1;\nexport const again = () => import('./self.js');\n",
    });
    const cycles = findCycles(importGraph([join(root, 'src')]));
    expect(cycles.map((c) => formatCycle(c, root))).toEqual([
      'src/a.ts > src/b.ts > src/a.ts',
      'src/a.ts > src/c.ts > src/b.ts > src/a.ts',
      'src/self.ts >(import()) src/self.ts',
    ]);
  });
});
