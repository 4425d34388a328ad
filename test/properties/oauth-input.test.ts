import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addressProblem } from '../../lib/http/safe-fetch.ts';
import { metadataUrlProblem } from '../../lib/oauth/client-metadata.ts';
import { knownClientName } from '../../lib/oauth/presets.ts';
import { pkcePair, registerPublicClient, send } from '../support/oauth-client.ts';
import { authorizationServer, ISSUER } from '../oauth/support.ts';

// Properties of what the authorization server does with untrusted parameters, checked against
// the real handler in process: redirect URIs match exactly or not at all; any scope or resource
// string is accepted only when it is exactly a configured one, and otherwise refused cleanly.

const DEMO = `${ISSUER}/demo/mcp`;
const REGISTERED = 'https://agent.example/oauth/callback';
/** Hundreds of runs from one IP would be rate-limited (429) otherwise, which is a different property. */
const UNLIMITED = '  rate_limits: { register: 100000, authorize: 100000, token: 100000 }\n';

/** Strings close to the registered redirect URI: the ways an attacker would bend it. */
const nearMisses = fc.oneof(
  fc.constantFrom(
    'https://agent.example/oauth/callback/',
    'https://agent.example/oauth/callback?x=1',
    'https://AGENT.example/oauth/callback',
    'https://agent.example/oauth/Callback',
    'https://agent.example:443/oauth/callback',
    'https://agent.example/oauth/%63allback',
    'https://agent.example/oauth/callback#',
    'https://agent.example.evil.example/oauth/callback',
    'https://agent.example@evil.example/oauth/callback',
    'http://agent.example/oauth/callback',
    'https://agent.example/oauth/callback/../callback',
    ' https://agent.example/oauth/callback',
  ),
  fc.tuple(fc.nat({ max: REGISTERED.length }), fc.string({ minLength: 1, maxLength: 5 })).map(([at, insert]) => REGISTERED.slice(0, at) + insert + REGISTERED.slice(at)),
  fc.nat({ max: REGISTERED.length - 1 }).map((at) => REGISTERED.slice(0, at) + REGISTERED.slice(at + 1)),
);

const authorizeQuery = (clientId: string, over: Record<string, string>) =>
  `/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REGISTERED, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', state: 's', resource: DEMO, ...over })}`;

describe('/authorize with untrusted parameters (in process)', () => {
  it('a redirect_uri that is not byte-for-byte the registered one gets a page, never a redirect', async () => {
    const as = await authorizationServer(UNLIMITED);
    const clientId = await registerPublicClient(as, REGISTERED);
    await fc.assert(
      fc.asyncProperty(nearMisses.filter((v) => v !== REGISTERED), async (uri) => {
        const res = await send(as, authorizeQuery(clientId, { redirect_uri: uri }));
        expect(res.status).toBe(400);
        expect(res.headers.get('location')).toBeNull();
      }),
      { numRuns: 150 },
    );
  });

  it('any scope string: the flow goes on only for known scopes, otherwise invalid_scope back to the client; never a 5xx', async () => {
    const as = await authorizationServer(UNLIMITED);
    const clientId = await registerPublicClient(as, REGISTERED);
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('mcp', 'mcp mcp', ' mcp ', 'MCP', 'mcp admin', 'mcp\tx', '\u0000')), async (scope) => {
        const res = await send(as, authorizeQuery(clientId, { scope }));
        expect(res.status).toBeLessThan(500);
        const location = res.headers.get('location') ?? '';
        const known = scope.split(' ').filter(Boolean).every((s) => s === 'mcp');
        if (res.status === 303 && location.startsWith(REGISTERED)) expect(new URL(location).searchParams.get('error')).toBe('invalid_scope');
        else expect(known).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it('any resource string: accepted exactly when it names a configured route, otherwise invalid_target', async () => {
    const as = await authorizationServer(UNLIMITED);
    const clientId = await registerPublicClient(as, REGISTERED);
    const accepted = new Set([`${ISSUER}/demo/mcp`, `${ISSUER}/demo`, `${ISSUER}/demo/sse`, `${ISSUER}/other/mcp`, `${ISSUER}/other`, `${ISSUER}/other/sse`]);
    const resources = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.webUrl(),
      fc.constantFrom(...accepted, `${ISSUER}/demo/mcp/`, `${ISSUER}/DEMO/mcp`, `${ISSUER}/demo/mcp?x`, `${ISSUER}/%64emo/mcp`, `${ISSUER}/demo/../other/mcp`, 'http://127.0.0.1:8788/demo/mcp'),
    );
    await fc.assert(
      fc.asyncProperty(resources, async (resource) => {
        const res = await send(as, authorizeQuery(clientId, { resource }));
        expect(res.status).toBeLessThan(500);
        const location = res.headers.get('location') ?? '';
        const refused = location.startsWith(REGISTERED) && new URL(location).searchParams.get('error') === 'invalid_target';
        expect(refused).toBe(!accepted.has(resource));
      }),
      { numRuns: 150 },
    );
  });
});

describe('outbound fetch and client_id checks', () => {
  const octet = fc.integer({ min: 0, max: 255 });
  const privateV4 = fc.oneof(
    fc.tuple(octet, octet, octet).map(([a, b, c]) => `10.${a}.${b}.${c}`),
    fc.tuple(octet, octet, octet).map(([a, b, c]) => `127.${a}.${b}.${c}`),
    fc.tuple(octet, octet).map(([a, b]) => `169.254.${a}.${b}`),
    fc.tuple(octet, octet).map(([a, b]) => `192.168.${a}.${b}`),
    fc.tuple(fc.integer({ min: 16, max: 31 }), octet, octet).map(([a, b, c]) => `172.${a}.${b}.${c}`),
    fc.tuple(fc.integer({ min: 64, max: 127 }), octet, octet).map(([a, b, c]) => `100.${a}.${b}.${c}`),
  );

  it('every private, loopback, link-local or CGNAT IPv4 address is refused, also in its IPv4-mapped IPv6 form', () => {
    fc.assert(
      fc.property(privateV4, (address) => {
        expect(addressProblem(address)).toBeDefined();
        expect(addressProblem(`::ffff:${address}`)).toBeDefined();
      }),
      { numRuns: 500 },
    );
  });

  it('addressProblem and metadataUrlProblem never throw, whatever the input', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.ipV4(), fc.ipV6(), fc.webUrl()), (input) => {
        expect(() => addressProblem(input)).not.toThrow();
        expect(() => metadataUrlProblem(input)).not.toThrow();
        expect(() => knownClientName(input)).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });

  it('a client_id URL that passes is https, has a path, and has no fragment, credentials or dot segments', () => {
    fc.assert(
      fc.property(fc.webUrl({ withFragments: true, withQueryParameters: true, validSchemes: ['https', 'http'] }), (url) => {
        if (metadataUrlProblem(url) !== undefined) return;
        const parsed = new URL(url);
        expect(parsed.protocol).toBe('https:');
        expect(parsed.pathname.length).toBeGreaterThan(1);
        expect(url).not.toContain('#');
        expect(parsed.username + parsed.password).toBe('');
        expect(url).not.toMatch(/\/\.\.?(\/|$)/);
      }),
      { numRuns: 500 },
    );
  });
});
