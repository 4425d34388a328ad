import { onRequest } from 'firebase-functions/v2/https';
import { serveOAuth } from '../index.ts';

// `firebase emulators:start --only functions` loads only functions written with the
// firebase-functions SDK; this wraps the same Functions Framework body for it. Production
// deploys the Functions Framework export (functions/index.ts) with gcloud.

export const oauth = onRequest({ region: 'us-central1' }, serveOAuth);
