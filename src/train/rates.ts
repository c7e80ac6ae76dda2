/** Step timings of a run reduced to its cold, warm and overall rates, in bounded memory. */

/** Steps the cold figure covers. */
export const COLD_STEPS = 20;

// NOTE: bounded memory over any run length. The loop once kept every step's rows and seconds
// (two arrays growing by a step each, ~250 B a step over 200,000 steps); it now keeps running
// totals and a sample of cumulative totals at most SAMPLES long, thinned to every other point when
// full, so the warm rate starts at the first sampled step at or after the run's middle.

/** Step timings reduced to the cold, warm and overall rates in bounded memory. */
export class StepRates {
  private rows = 0;
  private seconds = 0;
  private steps = 0;
  private coldRows = 0;
  private coldSeconds = 0;
  /** Cumulative (steps, rows, seconds) after every `stride`-th step. */
  private readonly marks: [number, number, number][] = [[0, 0, 0]];
  private stride = 1;

  /** Records one step of `rows` samples that took `seconds`. */
  add(rows: number, seconds: number): void {
    this.rows += rows;
    this.seconds += seconds;
    this.steps++;
    if (this.steps <= COLD_STEPS) [this.coldRows, this.coldSeconds] = [this.rows, this.seconds];
    if (this.steps % this.stride !== 0) return;
    this.marks.push([this.steps, this.rows, this.seconds]);
    if (this.marks.length > StepRates.SAMPLES) {
      let kept = 0;
      for (let i = 0; i < this.marks.length; i += 2) this.marks[kept++] = this.marks[i];
      this.marks.length = kept;
      this.stride *= 2;
    }
  }

  /** Samples per second over every step, the first COLD_STEPS, and the second half. */
  rates(): { all: number; cold: number; warm: number } {
    const per = (n: number, t: number) => (t > 0 ? n / t : 0);
    const middle = this.marks.find(([steps]) => steps >= Math.floor(this.steps / 2)) ?? [0, 0, 0];
    return {
      all: per(this.rows, this.seconds),
      cold: per(this.coldRows, this.coldSeconds),
      warm: per(this.rows - middle[1], this.seconds - middle[2]),
    };
  }

  /** How many cumulative samples it holds now (bounded by SAMPLES + 1). */
  get sampleCount(): number {
    return this.marks.length;
  }

  private static readonly SAMPLES = 1024;
}
