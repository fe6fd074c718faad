// Per-key rate limits on the RPCs that start work (StartTune, Evaluate): a token bucket per API key and method,
// in this server process's memory. A bucket holds a minute's worth of calls and refills continuously, so a key
// may burst up to its limit and then sustains it. Over the limit → RESOURCE_EXHAUSTED with QuotaFailure (which
// limit, whose) and RetryInfo (when one call will be allowed again).
import { quotaExceeded } from '../util/errors.js';

export type RateLimitedMethod = 'StartTune' | 'Evaluate';

/** Calls per minute per key; 0 turns a limit off. */
export interface RateLimits {
  startTunePerMinute: number;
  evaluatePerMinute: number;
}

export const RATE_LIMIT_DEFAULTS: Readonly<RateLimits> = { startTunePerMinute: 60, evaluatePerMinute: 30 };

/** What the flags call each limit, for messages a client can act on. */
const FLAG: Readonly<Record<RateLimitedMethod, string>> = { StartTune: '--rate-limit-start', Evaluate: '--rate-limit-evaluate' };
/** A server without authentication has no keys: all its callers share one bucket per method under this subject. */
export const ANONYMOUS_SUBJECT = 'anonymous';
const MS_PER_MINUTE = 60_000;
/** Buckets idle long enough to be full again are forgotten, so a stream of new keys cannot grow memory. */
const SWEEP_EVERY = 1024;

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private takes = 0;

  constructor(
    private readonly limits: RateLimits,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes one call from the caller's bucket for `method`, or throws RESOURCE_EXHAUSTED saying when to retry. */
  take(method: RateLimitedMethod, keyId: string | null): void {
    const perMinute = method === 'StartTune' ? this.limits.startTunePerMinute : this.limits.evaluatePerMinute;
    if (perMinute <= 0) return;
    const now = this.now();
    if (++this.takes % SWEEP_EVERY === 0) this.sweep(now);
    const subject = keyId === null ? ANONYMOUS_SUBJECT : `key:${keyId}`;
    const id = `${method} ${subject}`;
    const perMs = perMinute / MS_PER_MINUTE;
    const b = this.buckets.get(id) ?? { tokens: perMinute, at: now };
    b.tokens = Math.min(perMinute, b.tokens + (now - b.at) * perMs);
    b.at = now;
    this.buckets.set(id, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return;
    }
    const retryDelayMs = Math.ceil((1 - b.tokens) / perMs);
    throw quotaExceeded(subject, `${method} rate limit of ${perMinute} per minute per key reached (${FLAG[method]})`, retryDelayMs);
  }

  /** Any bucket refills from empty within a minute: one untouched that long is full, the same as none. */
  private sweep(now: number): void {
    for (const [id, b] of this.buckets) if (now - b.at >= MS_PER_MINUTE) this.buckets.delete(id);
  }

  /** Buckets held, for tests of the sweep. */
  get size(): number {
    return this.buckets.size;
  }
}
