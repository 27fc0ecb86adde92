export { createGateway, GATEWAY_DEFAULTS } from './gateway.js';
export type { GatewayOptions, GatewayStatusProviders } from './gateway.js';
export {
  ANONYMOUS,
  Role,
  TokenVerifier,
  checkTokens,
  loadTokenFile,
  parseTokenList,
  roleAllowed,
  tokenDigest,
} from './auth.js';
export type { AuthConfig, Principal, TokenEntry } from './auth.js';
export { GatewayErrorCode, HttpError } from './errors.js';
export { openApiDocument } from './openapi.js';
