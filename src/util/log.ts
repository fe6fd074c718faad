// Structured logs: pino, one JSON object per line, to stderr unless told otherwise. The command that runs the
// server makes one logger and passes it down (ServerOptions → JobRunner, TuningService's transports); there is
// no global logger, so a test or an embedding program decides where lines go, and the default is silence.
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Paths pino blanks should a caller ever pass headers or metadata by mistake: a bearer secret must not reach a
 * log even through a bug.
 */
const REDACTED = ['authorization', '*.authorization', 'headers.authorization', 'metadata.authorization', 'secret', '*.secret'];

/** A logger at `level` writing to `destination` (default stderr, synchronously: lines survive a crash). */
export function createLogger(level: LogLevel = 'info', destination: DestinationStream = pino.destination({ fd: 2, sync: true })): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime, redact: { paths: REDACTED, censor: '[redacted]' } }, destination);
}

/** The logger of whatever is not given one. */
export const SILENT: Logger = pino({ level: 'silent' });
