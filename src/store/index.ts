/** The experiment store contract and its SQLite implementation. */
export * from './experiments.js';
export * from './sqlite/experiment-store.js';
