// The TuningService client over Connect (JSON over fetch, server streaming included), with the tab's API key.
import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { TuningService } from '../../src/gen/es/narrowtune/v1/tuning_service_pb.js';

export * from '../../src/gen/es/narrowtune/v1/tuning_service_pb.js';

/** sessionStorage: typed once per tab, gone when the tab closes. */
const KEY_ITEM = 'narrowtune.apiKey';

export const apiKey = {
  get: (): string | null => sessionStorage.getItem(KEY_ITEM),
  set: (key: string) => sessionStorage.setItem(KEY_ITEM, key),
};

const bearer: Interceptor = (next) => (req) => {
  const key = apiKey.get();
  if (key) req.header.set('authorization', `Bearer ${key}`);
  return next(req);
};

export const api = createClient(
  TuningService,
  createConnectTransport({ baseUrl: location.origin, interceptors: [bearer], useBinaryFormat: false }),
);

export function isUnauthenticated(e: unknown): boolean {
  return e instanceof ConnectError && e.code === Code.Unauthenticated;
}

/** A failed call in one line, for the page. */
export function errorText(e: unknown): string {
  if (e instanceof ConnectError) return `${Code[e.code] ?? e.code}: ${e.rawMessage}`;
  return e instanceof Error ? e.message : String(e);
}

export { Code, ConnectError };
