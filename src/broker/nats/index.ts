export { NatsBroker, parseNatsUrl } from './nats-broker.js';
export type { NatsBrokerOptions } from './nats-broker.js';
