// A real OpenID Connect provider (the certified oidc-provider package) for
// nodekeys' account-login tests, on loopback over HTTPS.
//
// Usage: node server.mjs PORT CERT KEY STATE_JSON
// STATE_JSON: {"keys": "rsa"|"ec"|"both", "accessAlg": "RS256"|"ES256", "accessTTL": seconds,
//              "accounts": {"alice": ["admin"], ...}, "opaque": true|false}
// Prints "ready ISSUER" once listening. Device flow, refresh tokens, JWT
// access tokens for the resource https://flower-control, RS256 and ES256
// keys made at start (a restart is a key rotation), and the development
// login pages, which accept any account name with any password.
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const [port, certFile, keyFile, stateJSON] = process.argv.slice(2);
const state = JSON.parse(stateJSON || '{}');
const issuer = `https://127.0.0.1:${port}`;
const resource = 'https://flower-control';

function jwk(kind) {
  const { privateKey } = kind === 'rsa'
    ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const k = privateKey.export({ format: 'jwk' });
  k.kid = crypto.randomBytes(8).toString('hex');
  k.use = 'sig';
  k.alg = kind === 'rsa' ? 'RS256' : 'ES256';
  return k;
}
const which = state.keys || 'both';
const keys = which === 'both' ? [jwk('rsa'), jwk('ec')] : [jwk(which)];
// Access tokens are signed RS256 unless accessAlg says ES256 (ID tokens
// stay RS256, the default every client accepts).
const accessAlg = state.accessAlg || keys[0].alg;
const accounts = state.accounts || { alice: ['admin'], bob: ['member'] };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'flwr-gateway',
    client_secret: 'gateway-secret-for-tests',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }, {
    client_id: 'flwr-service',
    client_secret: 'service-secret-for-tests',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Opaque mode: no default resource, so access tokens are opaque and
      // checked at the userinfo endpoint.
      defaultResource: () => (state.opaque ? undefined : resource),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new Error('unknown resource');
        return { scope: 'openid offline_access email profile', audience: resource, accessTokenTTL: state.accessTTL || 60,
                 accessTokenFormat: 'jwt', jwt: { sign: { alg: accessAlg } } };
      },
    },
  },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  claims: { openid: ['sub'], email: ['email'], profile: ['name', 'groups'] },
  extraTokenClaims: async (ctx, token) => {
    const id = token.accountId;
    if (!id) return { groups: ['service'] };
    return { groups: accounts[id] || [], name: id, email: `${id}@example.org` };
  },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, name: id, email: `${id}@example.org`, groups: accounts[id] || [] }),
  }),
  issueRefreshToken: async () => true,
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid offline_access email profile');
    if (!state.opaque) grant.addResourceScope(resource, 'openid offline_access email profile');
    await grant.save();
    return grant;
  },
  ttl: { AccessToken: state.accessTTL || 60, DeviceCode: 600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  cookies: { keys: ['nodekeys-test-cookie-key'] },
  pkce: { required: () => false },
});
provider.proxy = false;

const server = https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) }, provider.callback());
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
