import type { ToolPolicyConfig } from '../config/config.ts';

// A route's tool policy (`routes[].tools`): which of the server's tools the client sees in
// tools/list and may call. Decided in memory from the config, per message: no store read.
// Deny wins over allow; without `allow`, every tool not denied is allowed.

export interface ToolPolicy {
  permits(tool: string): boolean;
  /** The error message for a call of a tool the policy hides. */
  refusal(tool: string): string;
  /** Filters a tools/list result's `tools` (other fields, nextCursor included, are kept). */
  filterList(result: unknown): unknown;
}

/** `*` any run of characters, `?` one; everything else literal. Names are case-sensitive, as MCP's are. */
export function toolPattern(pattern: string): RegExp {
  const source = [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&'))).join('');
  return new RegExp(`^${source}$`, 's');
}

export function compileToolPolicy(config: ToolPolicyConfig, route: string): ToolPolicy {
  const allow = config.allow?.map(toolPattern);
  const deny = config.deny.map(toolPattern);
  const permits = (tool: string) => !deny.some((p) => p.test(tool)) && (!allow || allow.some((p) => p.test(tool)));
  return {
    permits,
    // The MCP specification's answer to an unknown tool is -32602; the message says why this one is.
    refusal: (tool) => `Unknown tool: ${tool} is not available on ${route} (the route's tool policy hides it)`,
    filterList(result) {
      const tools = (result as { tools?: unknown } | null)?.tools;
      if (!Array.isArray(tools)) return result;
      // A tool without a string name can't be matched against the policy: it is not shown.
      return { ...(result as object), tools: tools.filter((t: { name?: unknown } | null) => typeof t?.name === 'string' && permits(t.name)) };
    },
  };
}
