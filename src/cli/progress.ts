// Training progress for people: a redrawn bar on a terminal, plain log lines otherwise (CI, pipes).
// Validation and drift-probe results print as their own lines; the bar keeps the latest drift figures.
// One display of a job's stored events serves both `tune` (the trainer's events, mapped as the store
// maps them) and `jobs watch` (the server's stream, mapped back).
import { toJobEvent, type JobEvent } from '../store/job-events.js';
import type { TrainEvent } from '../trainer/events.js';

const BAR_WIDTH = 24;

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

const signed = (x: number, digits = 4) => `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`;

/** Shows a job's events; `job` names it in the closing line. */
export function jobProgressReporter(stream: NodeJS.WriteStream, job = 'job'): (e: JobEvent) => void {
  const tty = stream.isTTY === true;
  let drift = '';
  // On a terminal the bar stays on its line until the last step; a line printed meanwhile replaces it.
  let barOpen = false;
  const line = (text: string) => {
    stream.write(tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
    barOpen = false;
  };
  return (e) => {
    switch (e.type) {
      case 'started': {
        const resumed = e.resumedFromStep > 0 ? `, resuming after step ${e.resumedFromStep}` : '';
        const frozen = e.frozenTensors ? `, ${e.frozenTensors} frozen` : '';
        const shape = e.batchSize && e.gradAccum && e.seq ? ` of ${e.batchSize}×${e.gradAccum} sequences of ${e.seq} tokens` : '';
        const timing = e.compileMs ? ` (graph ${Math.round(e.compileMs)} ms, session ${Math.round(e.sessionMs ?? 0)} ms)` : '';
        line(`training ${e.trainableTensors.length} tensors (${e.trainableParameters.toLocaleString('en-US')} parameters)${frozen}; ${e.totalSteps} steps${shape} on ${e.provider}${timing}${resumed}`);
        return;
      }
      case 'step': {
        const parts = e.crossEntropy === undefined || e.lwfKl === undefined ? '' : ` (ce ${e.crossEntropy.toFixed(4)} kl ${e.lwfKl.toFixed(4)})`;
        const stats = `loss ${e.loss.toFixed(4)}${parts}  lr ${e.learningRate.toExponential(2)}  grad ${e.gradNorm.toFixed(3)}  ${Math.round(e.tokensPerSecond)} tok/s`;
        if (tty) {
          const filled = Math.round((BAR_WIDTH * e.step) / e.totalSteps);
          const eta = (e.elapsedSeconds / e.step) * (e.totalSteps - e.step);
          const bar = '█'.repeat(filled) + '░'.repeat(BAR_WIDTH - filled);
          stream.write(`\r\x1b[2K${bar} ${e.step}/${e.totalSteps}  ${stats}${drift}  eta ${duration(eta)}`);
          barOpen = e.step !== e.totalSteps;
          if (!barOpen) stream.write('\n');
        } else {
          stream.write(`step ${e.step}/${e.totalSteps}  ${stats}  elapsed ${duration(e.elapsedSeconds)}\n`);
        }
        return;
      }
      case 'validation':
        line(`validation at step ${e.step}: loss ${e.loss.toFixed(4)}  token accuracy ${(100 * e.tokenAccuracy).toFixed(1)}%`);
        return;
      case 'probe': {
        drift = `  number_mass ${e.numberMass.toFixed(4)}  kl ${e.klToBase.toFixed(4)}`;
        const classes = e.classes.map((c) => `  ${c.name} ${c.mass.toFixed(4)} (${signed(c.delta)})`).join('');
        line(
          `probe at step ${e.step}: number_mass ${e.numberMass.toFixed(4)} (${signed(e.numberMassDelta)})  kl_to_base ${e.klToBase.toFixed(4)}  ` +
            `top1_agreement ${(100 * e.top1Agreement).toFixed(1)}%  heldout_loss ${e.heldoutLoss.toFixed(4)} (${signed(e.heldoutLossDelta)})${classes}`,
        );
        return;
      }
      case 'budget_exceeded':
        line(`drift budget exceeded at step ${e.step}: ${e.limit} ${e.value.toFixed(4)} > ${e.threshold}; keeping the weights of step ${e.keptStep}`);
        return;
      case 'checkpoint':
        if (!tty) stream.write(`checkpoint at step ${e.step}: ${e.path}\n`);
        return;
      case 'finished': {
        // Keep the bar of an interrupted run: it shows how far the job got.
        if (barOpen) stream.write('\n');
        const output = e.outputPath ? `: ${e.outputPath}` : '';
        const why = e.error ? ` — ${e.error.message}` : e.note ? ` — ${e.note}` : '';
        line(`${job} ${e.state}${output}${why}`);
        return;
      }
      default: {
        const unknown: never = e;
        throw new Error(`unhandled event ${JSON.stringify(unknown)}`);
      }
    }
  };
}

/** Shows a local run: its events as a job would store them, then where the trainer wrote the model. */
export function progressReporter(stream: NodeJS.WriteStream): (e: TrainEvent) => void {
  const show = jobProgressReporter(stream);
  return (e) => {
    const stored = toJobEvent(e);
    if (stored) show(stored);
    else if (e.type === 'done') {
      stream.write(`${stream.isTTY === true ? '\r\x1b[2K' : ''}wrote ${e.out} (final loss ${e.finalLoss.toFixed(4)}; frozen tensors ${e.frozenUnchanged ? 'bitwise unchanged' : 'CHANGED'})\n`);
    }
  };
}
