// The caller's address, for rate limits and logs. X-Forwarded-For is written by whoever sent
// the request: each proxy appends the address it got the request from, so only the entries
// added by proxies we run behind can be believed, and those are the rightmost ones. Google's
// load balancer appends "<client>, <lb>"; a client can put anything before that. Counting from
// the right is what Express's `trust proxy = N` does (proxy-addr).

/**
 * The client's address behind `trustedProxies` proxy hops. The socket peer is hop 1; each hop
 * vouches for the entry to its left in X-Forwarded-For. 0 trusts no one: the socket address.
 * A chain shorter than the hops we expect gives its leftmost address (Express does the same).
 */
export function clientIp(forwardedFor: string | readonly string[] | undefined, socketAddress: string | undefined, trustedProxies: number): string {
  const forwarded = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : ((forwardedFor as string | undefined) ?? ''))
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  // Nearest first: the socket peer, then X-Forwarded-For from the right.
  const chain = [socketAddress || 'unknown', ...forwarded.reverse()];
  return chain[Math.min(trustedProxies, chain.length - 1)]!;
}
