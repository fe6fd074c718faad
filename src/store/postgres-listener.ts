// One dedicated connection that LISTENs on the job store's channel and hands each payload on; when the connection
// drops it reconnects with backoff and says so, since notifications sent meanwhile are lost.
import pg from 'pg';

const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 5000;

export interface ListenerEvents {
  /** A NOTIFY payload on the channel. */
  onPayload(payload: string): void;
  /** Listening again after a drop: whatever was sent in between is lost, so readers must look again. */
  onReconnect(): void;
  /** The connection dropped or a reconnect failed (the listener keeps trying). */
  onError(e: Error): void;
}

export class PgListener {
  private client: pg.Client | null = null;
  private closed = false;
  private retryMs = FIRST_RETRY_MS;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly channel: string,
    private readonly events: ListenerEvents,
  ) {}

  /** Connects and listens; rejects when the first connection fails. */
  async start(): Promise<void> {
    this.client = await this.connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => {});
  }

  private async connect(): Promise<pg.Client> {
    const c = new pg.Client(this.config);
    // Attached before connect: an error event without a listener would crash the process.
    c.on('error', (e) => this.dropped(c, e));
    c.on('end', () => this.dropped(c, new Error('the LISTEN connection ended')));
    c.on('notification', (n) => {
      if (n.channel === this.channel && n.payload !== undefined) this.events.onPayload(n.payload);
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
    } catch (e) {
      c.removeAllListeners('end');
      await c.end().catch(() => {});
      throw e;
    }
    return c;
  }

  private dropped(c: pg.Client, e: Error): void {
    if (this.closed || this.client !== c) return; // an old connection's late event
    this.client = null;
    c.removeAllListeners('end');
    c.end().catch(() => {});
    this.events.onError(e);
    this.retry();
  }

  private retry(): void {
    this.timer = setTimeout(async () => {
      this.timer = null;
      if (this.closed) return;
      try {
        const c = await this.connect();
        if (this.closed) {
          await c.end().catch(() => {});
          return;
        }
        this.client = c;
        this.retryMs = FIRST_RETRY_MS;
        this.events.onReconnect();
      } catch (e) {
        this.events.onError(e as Error);
        this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
        this.retry();
      }
    }, this.retryMs);
    // A store waiting to reconnect must not keep the process alive on its own.
    this.timer.unref();
  }
}
