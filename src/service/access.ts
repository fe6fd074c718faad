// Who may do what: roles per RPC, and which jobs a caller may see (its tenant's; an admin: every tenant's).
// Following AIP-211, a job the caller may not see and a job that does not exist get the same answer.
import type { JobRecord, JobStore } from '../store/job-store.js';
import { NarrowtuneError } from '../util/errors.js';
import type { Caller, Role } from './caller.js';

/** The least role each RPC needs. */
export const REQUIRED_ROLE = {
  StartTune: 'member',
  GetTuneJob: 'reader',
  ListTuneJobs: 'reader',
  CancelTuneJob: 'member',
  StreamMetrics: 'reader',
  Evaluate: 'member',
  MergeModels: 'member',
} as const satisfies Record<string, Role>;

export type Rpc = keyof typeof REQUIRED_ROLE;

const RANK: Readonly<Record<Role, number>> = { reader: 0, member: 1, admin: 2 };

export function requireRole(caller: Caller, rpc: Rpc): void {
  const needed = REQUIRED_ROLE[rpc];
  if (RANK[caller.role] < RANK[needed]) {
    throw new NarrowtuneError('permission_denied', `${rpc} needs the ${needed} or admin role; API key ${caller.keyId} is a ${caller.role}`);
  }
}

/** Admins (and every caller of a server without authentication) see every tenant's jobs. */
export function seesAllTenants(caller: Caller): boolean {
  return caller.role === 'admin';
}

/**
 * The job `id` names, if the caller may see it. For a caller limited to its tenant, another tenant's job and a
 * missing one both throw the same PERMISSION_DENIED, so a name's existence does not leak; an admin gets NOT_FOUND.
 */
export async function visibleJob(store: Pick<JobStore, 'getJob'>, caller: Caller | undefined, id: string, field = 'name'): Promise<JobRecord> {
  const job = await store.getJob(id);
  if (caller && !seesAllTenants(caller)) {
    if (job && job.tenant === caller.tenant) return job;
    throw new NarrowtuneError('permission_denied', `permission denied on jobs/${id}, or it does not exist`, [
      { field, description: 'no job of your tenant has this name' },
    ]);
  }
  if (!job) throw new NarrowtuneError('not_found', `job jobs/${id} not found`, [{ field, description: 'no such job' }]);
  return job;
}

/** The tenant a list is limited to: the caller's own, or (admins) the one asked for; undefined: every tenant. */
export function listTenant(caller: Caller, asked: string | undefined): string | undefined {
  if (seesAllTenants(caller)) return asked;
  if (asked !== undefined && asked !== caller.tenant) {
    throw new NarrowtuneError('permission_denied', `only an admin may list another tenant's jobs; API key ${caller.keyId} belongs to tenant ${caller.tenant}`, [
      { field: 'tenant', description: 'not your tenant' },
    ]);
  }
  return caller.tenant ?? undefined;
}
