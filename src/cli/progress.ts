/** Progress inside an epoch: a bar on a terminal, a plain line every 15 s elsewhere. */
import { type StepInfo } from "../train/loop.js";

/** One line of progress: epoch, bar, step, loss, samples/s, ETA. */
export function progressBar(info: StepInfo, epochs: number, totalSteps: number): string {
  const done = (info.batch + 1) / info.batchesPerEpoch;
  const width = 24;
  const filled = Math.round(done * width);
  return (
    `epoch ${info.epoch + 1}/${epochs} [${"=".repeat(filled)}${" ".repeat(width - filled)}] ` +
    `step ${info.step}/${totalSteps} loss ${info.loss.toFixed(4)} ${info.samplesPerSecond.toFixed(0)} samples/s, ${timeLeft(info, totalSteps)} left`
  );
}

/** Milliseconds between the plain progress lines of a run whose output is not a terminal. */
export const PLAIN_PROGRESS_MS = 15_000;

/** One plain progress line: epoch, steps done of all, loss, speed and the run's time left. */
export function progressLine(info: StepInfo, epochs: number, totalSteps: number): string {
  const percent = ((100 * info.step) / totalSteps).toFixed(0);
  return `progress: epoch ${info.epoch + 1}/${epochs}, step ${info.step}/${totalSteps} (${percent}%), loss ${info.loss.toFixed(4)}, ${info.samplesPerSecond.toFixed(0)} samples/s, ${timeLeft(info, totalSteps)} left`;
}

/** The run's remaining steps at the current speed, as "1 min 5 s" (evaluations not counted). */
function timeLeft(info: StepInfo, totalSteps: number): string {
  const seconds =
    info.samplesPerSecond > 0
      ? ((totalSteps - info.step) * info.batchSize) / info.samplesPerSecond
      : 0;
  const minutes = Math.floor(seconds / 60);
  return minutes > 0 ? `${minutes} min ${Math.round(seconds % 60)} s` : `${seconds.toFixed(1)} s`;
}
