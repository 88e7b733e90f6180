// A real OpenID Connect provider (the certified oidc-provider package) for
// nodekeys' account-login tests, on loopback over HTTPS.
//
// Usage: node server.mjs PORT CERT KEY STATE_JSON
// STATE_JSON: {"keys": "rsa"|"ec"|"both", "accessAlg": "RS256"|"ES256", "accessTTL": seconds,
//              "accounts": {"alice": ["admin"], ...}, "opaque": true|false,
//              "clients": [{"client_id": ..., "client_secret": ..., "grant_types": [...]}],
//              "noIntrospection": true|false, "heldKey": JWK}
// Prints "ready ISSUER" once listening. Device flow, refresh tokens, JWT
// access tokens for the resources https://flower-control and
// https://other-api, RS256 and ES256 keys made at start (a restart is a key
// rotation), token introspection (RFC 7662), and the development login
// pages, which accept any account name with any password. JWT access
// tokens carry the account's groups as "groups" and as
// "https://nodekeys.example/roles".
//
// Extra clients (state.clients) get opaque tokens unless they ask for a
// resource, so a test can hold another application's opaque and JWT tokens.
// GET /__counts answers the number of requests the provider has served,
// by path, for tests that bound how often a gateway calls it.
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const [port, certFile, keyFile, stateJSON] = process.argv.slice(2);
const state = JSON.parse(stateJSON || '{}');
const issuer = `https://127.0.0.1:${port}`;
const resource = 'https://flower-control';
const resources = [resource, 'https://other-api'];
const counts = {};
const rolesURL = 'https://nodekeys.example/roles';

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
// A key the test holds too, so that it can sign tokens of its own making.
if (state.heldKey) keys.push(state.heldKey);
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
  }, ...(state.clients || []).map((c) => ({
    response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', ...c,
  }))],
  jwks: { keys },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: !state.noIntrospection },
    resourceIndicators: {
      enabled: true,
      // Opaque mode, and extra clients that name no resource: no default
      // resource, so access tokens are opaque (for userinfo).
      defaultResource: (ctx, client) => (state.opaque || extra(client) ? undefined : resource),
      useGrantedResource: (ctx) => !state.opaque && !extra(ctx.oidc.client),
      getResourceServerInfo: (ctx, indicator) => {
        if (!resources.includes(indicator)) throw new Error('unknown resource');
        return { scope: 'openid offline_access email profile', audience: indicator, accessTokenTTL: state.accessTTL || 60,
                 accessTokenFormat: 'jwt', jwt: { sign: { alg: accessAlg } } };
      },
    },
  },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  claims: { openid: ['sub'], email: ['email'], profile: ['name', 'groups'] },
  // Access tokens carry the groups twice: as groups, and under a claim
  // named by a URL (with dots), as namespaced claims are.
  extraTokenClaims: async (ctx, token) => {
    const id = token.accountId;
    if (!id) return { groups: ['service'], [rolesURL]: ['service'] };
    const groups = accounts[id] || [];
    return { groups, [rolesURL]: groups, name: id, email: `${id}@example.org` };
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
    if (!state.opaque) for (const r of resources) grant.addResourceScope(r, 'openid offline_access email profile');
    await grant.save();
    return grant;
  },
  ttl: { AccessToken: state.accessTTL || 60, DeviceCode: 600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  cookies: { keys: ['nodekeys-test-cookie-key'] },
  pkce: { required: () => false },
});
provider.proxy = false;
function extra(client) {
  return !!client && (state.clients || []).some((c) => c.client_id === client.clientId);
}

const handle = provider.callback();
const server = https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) }, (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  if (path === '/__counts') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(counts));
    return;
  }
  counts[path] = (counts[path] || 0) + 1;
  handle(req, res);
});
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
