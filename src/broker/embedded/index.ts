export { EmbeddedBroker } from './embedded-broker.js';
export type { EmbeddedBrokerOptions } from './embedded-broker.js';
