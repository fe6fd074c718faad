// `narrowtune jobs --help`, apart from the command so that printing it loads no gRPC.
import { DEFAULT_TARGET } from '../service/server-defaults.js';
import { CLIENT_FLAGS_HELP } from './client-help.js';

/** How long `jobs cancel` waits for a running job to come to rest. */
export const CANCEL_WAIT_S = 5;

export const JOBS_HELP = `Usage: narrowtune jobs <start|get|list|cancel|watch> [options] [connection options]

Talks to a narrowtune server (default --target ${DEFAULT_TARGET}; start one with \`narrowtune serve\`).

  jobs start --model DIR --data FILE [tune's policy, optimisation, validation and drift flags]
             [--checkpoint-every N] [--request-id ID] [--watch]
                      starts a job (paths are resolved here, then checked against the server's roots);
                      --watch then follows it as \`jobs watch\` does
  jobs get NAME       prints a job as JSON
  jobs list [--state STATE]... [--page-size N] [--page-token T] [--tenant NAME]
                      lists jobs, newest first (your tenant's; admins: every tenant's, or NAME's)
  jobs cancel NAME    cancels a pending or running job and prints the state it comes to rest in (a
                      running job stops at its next step; after ${CANCEL_WAIT_S} s it says the cancel is requested)
  jobs watch NAME [--from-sequence N]
                      follows a job's metrics live until it comes to rest

NAME is "jobs/{id}" (the id alone also works). Exit status: 0 done (for watch and start --watch: the job
SUCCEEDED), 1 otherwise, 2 bad usage.

${CLIENT_FLAGS_HELP}
`;
