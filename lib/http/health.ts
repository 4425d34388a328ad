import { StoreUnavailableError, type Store } from '../store/store.ts';
import { json } from './types.ts';

// Liveness (`health_path`) and readiness (`health_path/ready`: the store answers), the same for
// `serve` and for a route service (Cloud Run's startup probe). Undefined: not a health path.

export function healthAnswer(pathname: string, healthPath: string, store: Store): Promise<Response> | undefined {
  if (pathname === healthPath) return Promise.resolve(json({ status: 'ok' }));
  if (pathname !== `${healthPath}/ready`) return undefined;
  return store.ping().then(
    () => json({ status: 'ready', store: store.kind }),
    (err: unknown) => {
      if (err instanceof StoreUnavailableError) return json({ status: 'unavailable', store: store.kind }, 503, { 'retry-after': '5' });
      throw err;
    },
  );
}
