// The request and response types of both Node HTTP servers the web port runs (HTTP/1.1 and HTTP/2's
// compatibility API), as connect-node's adapter takes them.
import type { ConnectNodeAdapterOptions } from '@connectrpc/connect-node';

export type WebHandler = NonNullable<ConnectNodeAdapterOptions['fallback']>;
export type WebRequest = Parameters<WebHandler>[0];
export type WebResponse = Parameters<WebHandler>[1];
