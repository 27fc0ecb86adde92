/** Types of check-cycles.mjs. */

/** One module specifier a file depends on; `dynamic` when it is an `import()` call. */
export interface ImportRef {
  specifier: string;
  dynamic: boolean;
}

/** An edge of the import graph: the file imported, and whether through `import()`. */
export interface ImportEdge {
  to: string;
  dynamic: boolean;
}

/** A step of a cycle: a file, and whether its edge to the next step is an `import()`. */
export interface CycleStep {
  file: string;
  dynamic: boolean;
}

export function importsOf(fileName: string, text: string): ImportRef[];
export function importGraph(dirs: string[]): Map<string, ImportEdge[]>;
export function findCycles(graph: Map<string, ImportEdge[]>, limit?: number): CycleStep[][];
export function formatCycle(cycle: CycleStep[], cwd?: string): string;
