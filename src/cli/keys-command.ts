// `narrowtune keys create|list|revoke`: API keys in a server's job store (PostgreSQL, or SQLite in its data directory).
import { existsSync, realpathSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DB_FILE, type JobStore } from '../store/job-store.js';
import { KEY_ROLES, type KeyRecord } from '../store/key-store.js';
import { openJobStore } from '../store/open-store.js';
import { invalidArgument, NarrowtuneError } from '../util/errors.js';
import { type Flags, list, oneOf, parseFlags, required, str } from './args.js';
import { databaseUrl } from './database-url.js';
import { DEFAULT_DATA_DIR } from './keys-help.js';
import { closest } from './suggest.js';

const SUBCOMMANDS = ['create', 'list', 'revoke'];
const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^(\d{1,9})([smhdw])$/;

interface Output {
  write(s: string): unknown;
}

/** `30d` → milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = DURATION.exec(text);
  if (!m || Number(m[1]) === 0) throw invalidArgument(flag, `expected a positive number and a unit (s, m, h, d, w), e.g. 30d; got "${text}"`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** Key roots are stored as real paths of existing directories, so the server's checks compare like with like. */
function realDirs(dirs: string[], flag: string): string[] {
  return dirs.map((d) => {
    let real: string;
    try {
      real = realpathSync(resolve(d));
    } catch {
      throw invalidArgument(flag, `${d} does not exist`);
    }
    if (!statSync(real).isDirectory()) throw invalidArgument(flag, `${d} is not a directory`);
    return real;
  });
}

/** The server's store: PostgreSQL with --database-url (or its variable), else SQLite in --data-dir. */
function openStore(f: Flags): Promise<JobStore> {
  return openJobStore({ dataDir: resolve(str(f, 'data-dir') ?? DEFAULT_DATA_DIR), databaseUrl: databaseUrl(f) });
}

/** list and revoke do not create a SQLite database where there was none (a mistyped --data-dir). */
function openExisting(f: Flags): Promise<JobStore> {
  const dataDir = resolve(str(f, 'data-dir') ?? DEFAULT_DATA_DIR);
  if (databaseUrl(f) === undefined && !existsSync(join(dataDir, DB_FILE))) {
    throw new NarrowtuneError('not_found', `no narrowtune database in ${dataDir} (give the server's --data-dir or --database-url; \`keys create\` makes one)`);
  }
  return openStore(f);
}

export function keyStatus(k: KeyRecord, now = Date.now()): 'active' | 'expired' | 'revoked' {
  if (k.revokeTime !== null && k.revokeTime <= now) return 'revoked';
  if (k.expireTime !== null && k.expireTime <= now) return 'expired';
  return 'active';
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const minute = (ms: number | null, none: string) => (ms === null ? none : new Date(ms).toISOString().slice(0, 16).replace('T', ' '));

function keyJson(k: KeyRecord, now: number) {
  return {
    id: k.id,
    tenant: k.tenant,
    role: k.role,
    status: keyStatus(k, now),
    createTime: iso(k.createTime),
    expireTime: iso(k.expireTime),
    revokeTime: iso(k.revokeTime),
    lastUsedTime: iso(k.lastUsedTime),
    modelRoots: k.modelRoots,
    dataRoots: k.dataRoots,
  };
}

export function keysTable(keys: KeyRecord[], now = Date.now()): string {
  const header = ['ID', 'TENANT', 'ROLE', 'STATUS', 'CREATED (UTC)', 'EXPIRES', 'LAST USED', 'ROOTS'];
  const rows = keys.map((k) => [
    k.id,
    k.tenant,
    k.role,
    keyStatus(k, now),
    minute(k.createTime, ''),
    minute(k.expireTime, 'never'),
    minute(k.lastUsedTime, 'never'),
    k.modelRoots.length + k.dataRoots.length === 0 ? "server's" : 'narrowed',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export async function keysCommand(argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create': {
      const f = parseFlags(rest, {
        'data-dir': { type: 'string' },
        'database-url': { type: 'string' },
        tenant: { type: 'string' },
        role: { type: 'string' },
        'expires-in': { type: 'string' },
        'model-root': { type: 'string', multiple: true },
        'data-root': { type: 'string', multiple: true },
      });
      const tenant = required(f, 'tenant');
      const role = oneOf(f, 'role', KEY_ROLES) ?? 'member';
      const expiresIn = str(f, 'expires-in');
      const ttl = expiresIn === undefined ? null : parseDuration(expiresIn, '--expires-in');
      const modelRoots = realDirs(list(f, 'model-root'), '--model-root');
      const dataRoots = realDirs(list(f, 'data-root'), '--data-root');
      const store = await openStore(f);
      try {
        const { key, secret } = await store.keys.create({ tenant, role, expireTime: ttl === null ? null : Date.now() + ttl, modelRoots, dataRoots });
        // The secret alone on stdout, so `KEY=$(narrowtune keys create …)` captures exactly it.
        out.write(`${secret}\n`);
        err.write(
          `created API key ${key.id} for tenant ${key.tenant} (role ${key.role}, expires ${minute(key.expireTime, 'never')}); ` +
            'the secret above is shown only this once\n',
        );
      } finally {
        await store.close();
      }
      return 0;
    }
    case 'list': {
      const f = parseFlags(rest, { 'data-dir': { type: 'string' }, 'database-url': { type: 'string' }, json: { type: 'boolean' } });
      const store = await openExisting(f);
      try {
        const keys = await store.keys.list();
        const now = Date.now();
        if (f.json === true) out.write(`${JSON.stringify(keys.map((k) => keyJson(k, now)), null, 2)}\n`);
        else if (keys.length === 0) err.write('no API keys (make one with `narrowtune keys create --tenant NAME`)\n');
        else out.write(keysTable(keys, now));
      } finally {
        await store.close();
      }
      return 0;
    }
    case 'revoke': {
      const id = rest[0] !== undefined && !rest[0].startsWith('--') ? rest[0] : undefined;
      if (id === undefined) throw invalidArgument('KEY_ID', 'the id of the key to revoke is required (`narrowtune keys list` shows them)');
      const f = parseFlags(rest.slice(1), { 'data-dir': { type: 'string' }, 'database-url': { type: 'string' } });
      const store = await openExisting(f);
      try {
        const key = await store.keys.revoke(id);
        err.write(`revoked API key ${key.id} (tenant ${key.tenant}, role ${key.role}) as of ${iso(key.revokeTime)}\n`);
      } finally {
        await store.close();
      }
      return 0;
    }
    default: {
      const guess = sub === undefined ? undefined : closest(sub, SUBCOMMANDS);
      throw new NarrowtuneError('invalid_argument', `unknown subcommand "${sub ?? ''}"${guess ? `; did you mean "${guess}"?` : ''} (one of ${SUBCOMMANDS.join(', ')})`);
    }
  }
}
