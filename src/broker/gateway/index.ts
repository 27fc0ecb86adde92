export { GatewayBroker } from './gateway-broker.js';
export type { GatewayBrokerOptions } from './gateway-broker.js';
