// Training progress for people: a redrawn bar on a terminal, plain log lines otherwise (CI, pipes).
// Validation and drift-probe results print as their own lines; the bar keeps the latest drift figures.
import type { TrainEvent } from '../trainer/trainer.js';

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

export function progressReporter(stream: NodeJS.WriteStream): (e: TrainEvent) => void {
  const tty = stream.isTTY === true;
  let drift = '';
  const line = (text: string) => stream.write(tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
  return (e) => {
    switch (e.type) {
      case 'start': {
        const resumed = e.resumedFromStep > 0 ? `, resuming after step ${e.resumedFromStep}` : '';
        const shape = e.batchSize > 0 ? ` of ${e.batchSize}×${e.gradAccum} sequences of ${e.seq} tokens` : '';
        const timing = e.compileMs > 0 ? ` (graph ${Math.round(e.compileMs)} ms, session ${Math.round(e.sessionMs)} ms)` : '';
        line(`training ${e.trainable.length} tensors (${e.trainableParameters.toLocaleString('en-US')} parameters)${e.frozenTensors > 0 ? `, ${e.frozenTensors} frozen` : ''}; ${e.totalSteps} steps${shape} on ${e.provider}${timing}${resumed}`);
        return;
      }
      case 'step': {
        const stats = `loss ${e.loss.toFixed(4)}  lr ${e.lr.toExponential(2)}  grad ${e.gradNorm.toFixed(3)}  ${Math.round(e.tokensPerSec)} tok/s`;
        if (tty) {
          const filled = Math.round((BAR_WIDTH * e.step) / e.totalSteps);
          const eta = (e.elapsedSec / e.step) * (e.totalSteps - e.step);
          const bar = '█'.repeat(filled) + '░'.repeat(BAR_WIDTH - filled);
          stream.write(`\r\x1b[2K${bar} ${e.step}/${e.totalSteps}  ${stats}${drift}  eta ${duration(eta)}`);
          if (e.step === e.totalSteps) stream.write('\n');
        } else {
          stream.write(`step ${e.step}/${e.totalSteps}  ${stats}  elapsed ${duration(e.elapsedSec)}\n`);
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
      case 'done':
        line(`wrote ${e.out} (final loss ${e.finalLoss.toFixed(4)}; frozen tensors ${e.frozenUnchanged ? 'bitwise unchanged' : 'CHANGED'})`);
    }
  };
}
