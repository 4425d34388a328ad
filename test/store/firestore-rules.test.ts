import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { startFirestoreEmulator } from '../support/firestore-emulator.ts';

// firestore.rules on the emulator: no client SDK request, signed in or not, reads or writes
// anything. (The services reach Firestore through IAM, which rules do not apply to.)

const emulator = await startFirestoreEmulator();
if ('skip' in emulator) console.log(emulator.skip);
afterAll(async () => {
  if (!('skip' in emulator)) await emulator.stop();
});

describe.skipIf('skip' in emulator)('firestore.rules', () => {
  const project = 'demo-mcp-front-rules';
  const host = 'skip' in emulator ? '' : emulator.host;
  const documents = `http://${host}/v1/projects/${project}/databases/(default)/documents`;

  it('deny every client read and write, for every collection', async () => {
    const load = await fetch(`http://${host}/emulator/v1/projects/${project}:securityRules`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rules: { files: [{ name: 'firestore.rules', content: readFileSync('firestore.rules', 'utf8') }] } }),
    });
    expect(load.status).toBe(200);
    // A client with a (fake, emulator-accepted) Firebase ID token, and one without any.
    const signedIn = { authorization: `Bearer ${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'u1', user_id: 'u1', aud: project, iss: `https://securetoken.google.com/${project}` })).toString('base64url')}.` };
    for (const headers of [{}, signedIn]) {
      for (const collection of ['clients', 'grants', 'refreshTokens', 'keys', 'mcpSessions']) {
        const read = await fetch(`${documents}/${collection}/x`, { headers });
        expect(read.status, `read ${collection}`).toBe(403);
        const write = await fetch(`${documents}/${collection}?documentId=x`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ fields: { a: { stringValue: 'b' } } }) });
        expect(write.status, `write ${collection}`).toBe(403);
      }
    }
  }, 60_000);
});
