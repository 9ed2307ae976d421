// A real OpenID Connect provider (the `oidc-provider` package) for ACGS's sign-in tests.
// tests/services/oidc.py writes a JSON configuration and starts `node provider.mjs CONFIG`:
//   {"port", "issuer", "keys": [private JWKs, the signing key first], "cookie_keys": [...],
//    "clients": [oidc-provider client metadata], "users": {"id": {"password", "name", "groups"}}}
// It listens on 127.0.0.1 only, requires PKCE (S256) of every client, puts `groups` in the ID
// token, and has a login page of its own that checks the seeded users' passwords.
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: config.keys },
  cookies: { keys: config.cookie_keys },
  pkce: { methods: ["S256"], required: () => true },
  scopes: ["openid", "profile", "groups"],
  claims: { openid: ["sub"], profile: ["name"], groups: ["groups"] },
  // Claims of the requested scopes in the ID token too, not only at the userinfo endpoint.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  async findAccount(ctx, id) {
    const user = Object.hasOwn(config.users, id) ? config.users[id] : undefined;
    if (!user) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, name: user.name, groups: user.groups }) };
  },
  // First-party clients: no consent screen, the grant covers what was asked for.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(" "));
    if (ctx.oidc.requestParamClaims.size) grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
  ttl: { Session: 600, Interaction: 600, Grant: 600, AuthorizationCode: 60, AccessToken: 600, IdToken: 600 },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test provider sign-in</title></head>
<body><h1>Sign in</h1>${error ? `<p id="error">${escape(error)}</p>` : ""}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>User <input id="login" name="login" autocomplete="username" required></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label>
<button id="submit" type="submit">Sign in</button></form></body></html>`;
}

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)(\/login)?$/.exec(ctx.path);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== match[1] || details.prompt.name !== "login") {
    ctx.status = 400;
    ctx.body = "unexpected interaction";
    return undefined;
  }
  ctx.set("cache-control", "no-store");
  if (ctx.method === "GET" && !match[2]) {
    ctx.type = "html";
    ctx.body = loginPage(details.uid);
    return undefined;
  }
  if (ctx.method === "POST" && match[2]) {
    const form = await formBody(ctx.req);
    const login = form.get("login") || "";
    const user = Object.hasOwn(config.users, login) ? config.users[login] : undefined;
    if (!user || user.password !== form.get("password")) {
      ctx.type = "html";
      ctx.status = 200;
      ctx.body = loginPage(details.uid, "wrong user or password");
      return undefined;
    }
    const to = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(to);
    return undefined;
  }
  ctx.status = 405;
  return undefined;
});

const server = provider.listen(config.port, "127.0.0.1", () => {
  process.stdout.write(`listening ${config.issuer}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));
