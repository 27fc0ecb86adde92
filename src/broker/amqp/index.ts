export { AmqpBroker, parseAmqpUrl } from './amqp-broker.js';
export type { AmqpBrokerOptions } from './amqp-broker.js';
