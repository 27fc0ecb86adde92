// Copies the dashboard's static files (HTML, CSS, browser JS) next to the compiled gateway, so
// that dist/ holds everything `qtune serve` needs. uPlot is served from node_modules (a dependency).
import { cpSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
mkdirSync(join(root, 'dist'), { recursive: true });
cpSync(join(root, 'src/dashboard'), join(root, 'dist/dashboard'), { recursive: true });
