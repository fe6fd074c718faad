// The connection flags' help, shared by `jobs` and `health`, apart from client-options.ts so that printing it loads no gRPC.
import { DEFAULT_TARGET } from '../service/server-defaults.js';

export const API_KEY_ENV = 'NARROWTUNE_API_KEY';

export const CLIENT_FLAGS_HELP = `Connecting (plaintext unless a TLS flag is given):
  --target HOST:PORT      the server (default ${DEFAULT_TARGET})
  --tls                   use TLS, trusting the system's CAs (implied by the --tls-* flags below)
  --tls-ca FILE           trust this PEM CA for the server's certificate
  --tls-cert FILE         present this PEM client certificate (mutual TLS), with ...
  --tls-key FILE          ... its PEM private key
  --tls-server-name NAME  the name the server's certificate carries, when --target names it otherwise
  --api-key KEY           sent as "authorization: Bearer KEY" on every call; default $${API_KEY_ENV},
                          which keeps the key out of the process list and the shell history`;
