/**
 * Time for the authorization server's decisions (expiry of codes, tokens, grants, requests;
 * grace and rate windows) and the stores' expiry: inject a fake in tests of those. Not
 * everything reads it: MCP sessions' idle reaping, `connect`, the dev tooling and the check of
 * an identity provider's ID token times use the system time.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  private current: number;
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.current = start;
  }
  now(): number {
    return this.current;
  }
  advance(ms: number): void {
    this.current += ms;
  }
}

export const seconds = (ms: number): number => Math.floor(ms / 1000);
