import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// `@modelcontextprotocol/conformance client --suite auth` (2025-11-25) with `mcp-front connect`
// as the client's OAuth: discovery variants, CIMD, DCR, pre-registration, scopes, step-up and
// every token endpoint auth method. No expected failures.

const SUITE = join(import.meta.dirname, '../../node_modules/@modelcontextprotocol/conformance/dist/index.js');

describe('MCP conformance, client auth suite, through mcp-front connect', () => {
  it('passes every scenario', async () => {
    const command = `${process.execPath} ${join(import.meta.dirname, 'connect-client.ts')}`;
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [SUITE, 'client', '--suite', 'auth', '--spec-version', '2025-11-25', '--command', command], { maxBuffer: 64 << 20 }).catch((err: { stdout: string; stderr: string }) => err);
    const output = `${stdout}${stderr}`;
    const summary = output.slice(output.indexOf('=== SUITE SUMMARY ==='));
    console.log(summary);
    const results = [...summary.matchAll(/^([✓✗]) (auth\/[\w-]+): (\d+) passed, (\d+) failed/gm)].map((m) => ({ scenario: m[2], passed: m[1] === '✓' }));
    expect(results.length).toBeGreaterThanOrEqual(14);
    expect(results.filter((r) => !r.passed)).toEqual([]);
  }, 180_000);
});
