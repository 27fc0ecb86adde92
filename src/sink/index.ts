export * from './sink.js';
export * from './rows.js';
export { writerThreadAvailable } from './writer.js';
