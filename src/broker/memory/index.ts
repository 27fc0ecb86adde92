export { MemoryBroker } from './memory-broker.js';
export { MemoryBus, sharedMemoryBus } from './memory-bus.js';
