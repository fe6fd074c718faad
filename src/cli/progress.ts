// Training progress for people: a redrawn bar on a terminal, plain log lines otherwise (CI, pipes).
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

export function progressReporter(stream: NodeJS.WriteStream): (e: TrainEvent) => void {
  const tty = stream.isTTY === true;
  return (e) => {
    if (e.type === 'start') {
      stream.write(
        `training ${e.trainable.length} tensors (${e.trainableParameters.toLocaleString('en-US')} parameters), ` +
          `${e.frozenTensors} frozen; ${e.totalSteps} steps of ${e.batchSize}×${e.gradAccum} sequences of ${e.seq} tokens on ${e.provider} ` +
          `(graph ${Math.round(e.compileMs)} ms, session ${Math.round(e.sessionMs)} ms)\n`,
      );
    } else if (e.type === 'step') {
      const stats = `loss ${e.loss.toFixed(4)}  lr ${e.lr.toExponential(2)}  grad ${e.gradNorm.toFixed(3)}  ${Math.round(e.tokensPerSec)} tok/s`;
      if (tty) {
        const filled = Math.round((BAR_WIDTH * e.step) / e.totalSteps);
        const eta = (e.elapsedSec / e.step) * (e.totalSteps - e.step);
        const bar = '█'.repeat(filled) + '░'.repeat(BAR_WIDTH - filled);
        stream.write(`\r\x1b[2K${bar} ${e.step}/${e.totalSteps}  ${stats}  eta ${duration(eta)}`);
        if (e.step === e.totalSteps) stream.write('\n');
      } else {
        stream.write(`step ${e.step}/${e.totalSteps}  ${stats}  elapsed ${duration(e.elapsedSec)}\n`);
      }
    } else if (e.type === 'checkpoint') {
      if (!tty) stream.write(`checkpoint at step ${e.step}: ${e.path}\n`);
    } else {
      stream.write(`wrote ${e.out} (final loss ${e.finalLoss.toFixed(4)}; frozen tensors ${e.frozenUnchanged ? 'bitwise unchanged' : 'CHANGED'})\n`);
    }
  };
}
