/** The store on PostgreSQL (node-postgres). */
export { PostgresStore } from './postgres-store.js';
export type { PostgresStoreOptions } from './postgres-store.js';
