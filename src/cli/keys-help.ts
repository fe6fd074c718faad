// `narrowtune keys --help`, apart from the command so that printing it opens no database.
import { DATABASE_URL_ENV } from './database-url.js';

export const DEFAULT_DATA_DIR = 'narrowtune-data';

export const KEYS_HELP = `Usage: narrowtune keys <create|list|revoke> [options] [--data-dir DIR | --database-url URL]

Manages the API keys of a server started with \`narrowtune serve --auth api-key\` (the default beyond
loopback). Keys live in the server's job store, hashed: its --data-dir (default ./${DEFAULT_DATA_DIR}), or
the PostgreSQL database of --database-url (default the ${DATABASE_URL_ENV} variable) that its
replicas share. This command works on the store directly, also while servers run, and a change applies
to the next call on every replica.

  keys create --tenant NAME [--role admin|member|reader] [--expires-in 30d]
              [--model-root DIR]... [--data-root DIR]...
                      makes a key and prints its secret alone on stdout, once: it cannot be shown again.
                      --role (default member): reader may get, list and stream jobs; member may also
                      start jobs, cancel its tenant's jobs and evaluate; admin sees and cancels every
                      tenant's jobs. --expires-in: a number and s, m, h, d or w (default: never).
                      --model-root/--data-root narrow the server's roots for this key (they must lie
                      inside them; checked at every call)
  keys list [--json]  ids, tenants, roles, creation, expiry, last use and status; never secrets
  keys revoke KEY_ID  refuses the key from the next call on

Callers send the secret as the metadata "authorization: Bearer <secret>".
`;
