// A real OpenID Connect provider (the certified oidc-provider package) for
// nodekeys' account-login tests, on loopback over HTTPS. One Node process
// serves any number of providers, each on a port and with a store of its
// own, so that a test binary pays Node's start once.
//
// Usage: node server.mjs, then one JSON command a line on stdin, each
// answered by one line on stdout:
//   {"op": "start", "id": ID, "port": PORT (0: any), "cert": FILE, "key": FILE, "state": STATE}
//       -> "ready ID ISSUER"   (or "error ID MESSAGE")
//   {"op": "stop", "id": ID}   -> "stopped ID": the port is closed, every
//       connection to it ended; a start with the same id and port is a
//       restart (new keys, empty store).
// The process ends when stdin closes (the test binary exits).
// STATE: {"keys": "rsa"|"ec"|"both", "accessAlg": "RS256"|"ES256", "accessTTL": seconds,
//         "refreshedAccessTTL": seconds (of tokens from a refresh; default accessTTL),
//         "accounts": {"alice": ["admin"], ...}, "opaque": true|false,
//         "clients": [{"client_id": ..., "client_secret": ..., "grant_types": [...]}],
//         "noIntrospection": true|false, "heldKey": JWK}
// Device flow, refresh tokens, JWT access tokens for the resources
// https://flower-control and https://other-api, RS256 and ES256 keys made
// at start (a restart is a key rotation), token introspection (RFC 7662),
// and the development login pages, which accept any account name with any
// password. JWT access tokens carry the account's groups as "groups" and as
// "https://nodekeys.example/roles".
//
// Extra clients (state.clients) get opaque tokens unless they ask for a
// resource, so a test can hold another application's opaque and JWT tokens.
// GET /__counts answers the number of requests the provider has served,
// by path, for tests that bound how often a gateway calls it.
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';
import readline from 'node:readline';
import Provider from 'oidc-provider';

const resource = 'https://flower-control';
const resources = [resource, 'https://other-api'];
const rolesURL = 'https://nodekeys.example/roles';

// memoryAdapter is oidc-provider's adapter over a store of one provider's
// own (the package's default store is shared by every provider in the
// process, so a restarted provider would still know the old tokens).
function memoryAdapter() {
  const store = new Map(); // key -> {payload, expires}
  const get = (key) => {
    const e = store.get(key);
    if (!e) return undefined;
    if (e.expires && e.expires < Date.now()) { store.delete(key); return undefined; }
    return e.payload;
  };
  return class {
    constructor(model) { this.model = model; }
    key(id) { return `${this.model}:${id}`; }
    async upsert(id, payload, expiresIn) {
      const expires = expiresIn ? Date.now() + expiresIn * 1000 : 0;
      store.set(this.key(id), { payload, expires });
      if (payload.grantId) {
        const g = `grant:${payload.grantId}`;
        store.set(g, { payload: [...(get(g) || []), this.key(id)], expires: 0 });
      }
      if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: id, expires });
      if (payload.uid) store.set(`sessionUid:${payload.uid}`, { payload: id, expires });
    }
    async find(id) { return get(this.key(id)); }
    async findByUserCode(code) { const id = get(`userCode:${code}`); return id && this.find(id); }
    async findByUid(uid) { const id = get(`sessionUid:${uid}`); return id && this.find(id); }
    async consume(id) { const p = get(this.key(id)); if (p) p.consumed = Math.floor(Date.now() / 1000); }
    async destroy(id) { store.delete(this.key(id)); }
    async revokeByGrantId(grantId) {
      for (const k of get(`grant:${grantId}`) || []) store.delete(k);
      store.delete(`grant:${grantId}`);
    }
  };
}

// RSA keys cost a quarter of a second each to make here, and every start
// and restart needs one: a process takes them from rsa-keys.json (test
// keys, made by "node server.mjs make-keys 16 > rsa-keys.json"), each once,
// so that no two providers of a process share a key, and makes more when
// those run out.
function newRSAKey() {
  return crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
}
if (process.argv[2] === 'make-keys') {
  const n = Number(process.argv[3] || 16);
  process.stdout.write(JSON.stringify(Array.from({ length: n }, newRSAKey), null, 1) + '\n');
  process.exit(0);
}
const rsaKeys = JSON.parse(fs.readFileSync(new URL('./rsa-keys.json', import.meta.url), 'utf8'));

// start serves one provider on port (0: any) and calls ready(issuer).
function start(port, certFile, keyFile, state, ready, fail) {
const counts = {};
function jwk(kind) {
  const k = kind === 'rsa' && rsaKeys.length > 0
    ? { ...rsaKeys.shift() }
    : (kind === 'rsa' ? newRSAKey() : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }));
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

// accessTTL is the lifetime of an access token issued in ctx.
function accessTTL(ctx) {
  const refresh = ctx && ctx.oidc && ctx.oidc.params && ctx.oidc.params.grant_type === 'refresh_token';
  return (refresh && state.refreshedAccessTTL) || state.accessTTL || 60;
}

function make(issuer) {
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
        return { scope: 'openid offline_access email profile', audience: indicator, accessTokenTTL: accessTTL(ctx),
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
  adapter: memoryAdapter(),
  ttl: { AccessToken: (ctx) => accessTTL(ctx), DeviceCode: 600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  cookies: { keys: ['nodekeys-test-cookie-key'] },
  pkce: { required: () => false },
});
provider.proxy = false;
// Device logins are polled every second (RFC 8628 lets a provider say;
// oidc-provider says nothing, so clients wait its default of 5 s).
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/device/auth' && ctx.body && typeof ctx.body === 'object' && !ctx.body.interval) ctx.body.interval = 1;
});
return provider;
}
function extra(client) {
  return !!client && (state.clients || []).some((c) => c.client_id === client.clientId);
}

const sockets = new Set();
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
server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
server.on('error', (e) => fail(e.message));
let issuer;
let handle;
server.listen(Number(port), '127.0.0.1', () => {
  issuer = `https://127.0.0.1:${server.address().port}`;
  handle = make(issuer).callback();
  ready(issuer);
});
return { close: (done) => { server.close(() => done()); for (const s of sockets) s.destroy(); } };
}

const running = new Map(); // id -> {close}
const out = (line) => process.stdout.write(line + '\n');
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { out(`error - ${e.message}`); return; }
  if (cmd.op === 'start') {
    try {
      running.set(cmd.id, start(cmd.port || 0, cmd.cert, cmd.key, cmd.state || {},
        (issuer) => out(`ready ${cmd.id} ${issuer}`), (msg) => out(`error ${cmd.id} ${msg}`)));
    } catch (e) {
      out(`error ${cmd.id} ${e.message}`);
    }
  } else if (cmd.op === 'stop') {
    const p = running.get(cmd.id);
    running.delete(cmd.id);
    if (!p) { out(`stopped ${cmd.id}`); return; }
    p.close(() => out(`stopped ${cmd.id}`));
  }
}).on('close', () => process.exit(0));
