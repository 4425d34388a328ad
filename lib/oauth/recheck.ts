import type { Clock } from '../clock.ts';
import type { Config } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { OAuthError } from './errors.ts';
import { peekGrant, provenFacts, type UpstreamVerdict } from './grants.ts';
import type { Store } from '../store/store.ts';
import type { Recheck } from './providers/oidc.ts';
import { admitFor, signInFor } from './providers/upstream.ts';
import { sealer } from './sealed.ts';

// At a refresh, ask the upstream provider about the grant's user again (at most once per
// `upstream_recheck`): a user suspended, deleted or moved out of the allowed domain or org at
// Google, GitHub or the OIDC provider loses access at their next refresh, not at their next
// sign-in. A provider that can't be reached is a 503 (the grant is kept); one that refuses the
// credential, or a user the policy no longer admits, ends the grant.

export async function askUpstream(deps: { config: Config; store: Store; clock: Clock; log: Logger }, refreshToken: string, clientId: string): Promise<UpstreamVerdict | undefined> {
  const oauth = deps.config.oauth;
  // Nothing to ask (and so nothing to read) when the provider can't be asked again.
  if (oauth.provider === 'dev' || !oauth.clientSecret) return undefined;
  // Read outside the refresh transaction: the question is a network call.
  const grant = await peekGrant(deps.store, refreshToken, clientId);
  if (!grant?.upstream) return undefined;
  const now = deps.clock.now();
  if (grant.upstreamCheckedAt !== undefined && now - grant.upstreamCheckedAt < oauth.upstreamRecheck) return undefined;
  const seal = sealer(oauth.clientSecret);
  const asked = grant.upstream;
  const credential = seal.open(asked);
  if (credential === undefined) return { asked, checkedAt: now, refusal: 'this sign-in can no longer be verified with the identity provider; sign in again' };
  let answer: Recheck;
  try {
    answer = await signInFor(deps.config).recheck(credential);
  } catch (err) {
    deps.log.warn('identity provider unreachable at refresh', { user: grant.userSub, error: (err as Error).message });
    throw new OAuthError('temporarily_unavailable', 503, 'the identity provider could not be reached to re-check the user; try again shortly', { 'retry-after': '5' });
  }
  if (answer.kind === 'gone') return { asked, checkedAt: now, refusal: `${answer.reason}; sign in again` };
  const who = answer.identity;
  const refusal = who.sub !== grant.userSub ? 'the identity provider answered for another user' : admitFor(oauth, who);
  if (refusal) deps.log.warn('user no longer admitted at refresh', { user: grant.userSub, reason: refusal });
  return { asked, checkedAt: now, ...(refusal ? { refusal } : {}), ...(answer.upstreamToken ? { upstream: seal.seal(answer.upstreamToken) } : {}), ...provenFacts(who) };
}
