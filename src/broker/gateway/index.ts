export { GatewayBroker } from './gateway-broker.js';
export type { GatewayBrokerOptions, GatewayQueueOptions } from './gateway-broker.js';
