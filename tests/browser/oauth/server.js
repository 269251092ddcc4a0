// A real local OAuth2 / OpenID Connect server for tests/browser/test_oauth.py.
//
// oauth2-mock-server issues signed tokens (RS256, JWKS at /jwks, discovery document) but
// its /authorize endpoint logs in a fixed user ("johndoe") without asking. This wrapper adds
// the sign-in step an identity provider has: the client is sent to /signin, the user types a
// name, and the authorization code, the tokens and /userinfo then carry that name
// (sub, preferred_username, email, name).
//
// Usage: node server.js [port]   (port 0 or none: the system picks one)
// Prints one JSON line when listening: {"issuer": "http://127.0.0.1:PORT", "port": PORT}.

import { createServer } from "node:http";
import { OAuth2Issuer, OAuth2Service } from "oauth2-mock-server";

const issuer = new OAuth2Issuer();
await issuer.keys.generate("RS256");
const service = new OAuth2Service(issuer);
const userOfCode = new Map(); // authorization code -> user name typed at /signin
const userOfToken = new Map(); // access token -> user name

function claims(user) {
  return { sub: user, preferred_username: user, email: `${user}@example.test`, name: user };
}

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

service.on("beforeAuthorizeRedirect", (redirect, req) => {
  const user = req.query.username;
  const code = redirect.url.searchParams.get("code");
  if (typeof user === "string" && user && code) userOfCode.set(code, user);
});

service.on("beforeTokenSigning", (token, req) => {
  const user = userOfCode.get(req.body?.code);
  if (user) Object.assign(token.payload, claims(user));
});

service.on("beforeResponse", (response, req) => {
  const user = userOfCode.get(req.body?.code);
  if (user && response.body.access_token) {
    userOfToken.set(response.body.access_token, user);
    userOfCode.delete(req.body.code); // a code is used once
  }
});

service.on("beforeUserinfo", (response, req) => {
  const token = (req.headers.authorization || "").replace(/^Bearer /, "");
  const user = userOfToken.get(token);
  response.body = user ? claims(user) : { error: "invalid_token" };
  response.statusCode = user ? 200 : 401;
});

function signin(req, res, url) {
  // The authorize request's parameters travel as hidden fields to /authorize.
  const hidden = [...url.searchParams]
    .filter(([k]) => k !== "username")
    .map(([k, v]) => `<input type="hidden" name="${escape(k)}" value="${escape(v)}">`)
    .join("");
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><title>Test identity provider</title>
<h1>Test identity provider</h1>
<form method="get" action="/authorize">${hidden}
<label>User name <input name="username" autofocus required></label>
<button type="submit">Sign in</button></form>`);
}

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && url.pathname === "/signin") return signin(req, res, url);
  return service.requestHandler(req, res);
});

server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  const { port } = server.address();
  issuer.url = `http://127.0.0.1:${port}`;
  process.stdout.write(JSON.stringify({ issuer: issuer.url, port }) + "\n");
});

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => server.close(() => process.exit(0)));
