// s2uc authentication: config.toml, the token store, and login/logout/check-auth/whoami/getToken.
export {
  UserAuth,
  getToken,
  type AuthIO,
  type AuthStatus,
  type DeviceAuthorizationInfo,
  type LoginFlow,
  type LoginOptions,
  type LoginResult,
  type LogoutResult,
  type ServerAuthStatus,
  type TokenState,
  type UserAuthOptions,
  type WhoAmI,
} from './login.js';
export {
  DEFAULT_SCOPES,
  GLOBUS_AUTH_CODE_PAGE,
  GLOBUS_ISSUER,
  buildConfig,
  loadClientConfig,
  scistreamHome,
  type AuthSettings,
  type ClientConfig,
  type ServerAuth,
} from './config.js';
export { TokenStore, findToken, isExpired, type StoredIdentity, type StoredToken, type TokenFile } from './tokens.js';
export { AuthConfigError } from '../../auth/common.js';
