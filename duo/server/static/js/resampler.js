// Streaming band-limited resampler (windowed sinc), used by the capture worklet.
//
// Microphones run at the audio device's rate (44.1 or 48 kHz); the session wants 16 or 24 kHz. A plain
// decimation would fold everything above the new Nyquist frequency back into the speech band, so the
// kernel is a low-pass at 0.9 × the lower Nyquist, Blackman-windowed, read from an oversampled table.

const ZERO_CROSSINGS = 16; // kernel half-width in zero crossings of the cut-off sinc
const TABLE_STEPS = 512; // table points per zero crossing (linear interpolation in between)

export class Resampler {
  /**
   * @param {number} inRate  input sample rate (Hz)
   * @param {number} outRate output sample rate (Hz)
   */
  constructor(inRate, outRate) {
    if (!(inRate > 0 && outRate > 0)) throw new RangeError("sample rates must be positive");
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples per output sample
    this.cutoff = 0.9 * Math.min(1, outRate / inRate); // fraction of the input Nyquist frequency
    this.half = Math.ceil(ZERO_CROSSINGS / this.cutoff); // kernel half-width in input samples
    this.table = buildTable(this.cutoff, this.half);
    this.history = new Float32Array(this.half); // zeros before the first sample
    this.pos = this.half; // position of the next output sample, in `history` coordinates
  }

  /** Resample one block; output is produced once enough input follows each output sample. */
  process(input) {
    if (this.inRate === this.outRate) return Float32Array.from(input);
    const buf = new Float32Array(this.history.length + input.length);
    buf.set(this.history);
    buf.set(input, this.history.length);
    const last = buf.length - this.half - 1; // the kernel must fit to the right
    const count = Math.max(0, Math.floor((last - this.pos) / this.step) + 1);
    const out = new Float32Array(count);
    const { half, table, cutoff } = this;
    const scale = TABLE_STEPS * cutoff; // table index per input sample of distance
    let pos = this.pos;
    for (let n = 0; n < count; n++) {
      const centre = Math.floor(pos);
      const frac = pos - centre;
      let acc = 0;
      for (let k = -half + 1; k <= half; k++) {
        const x = Math.abs(k - frac) * scale;
        const i = Math.floor(x);
        if (i + 1 >= table.length) continue;
        const w = table[i] + (table[i + 1] - table[i]) * (x - i);
        acc += buf[centre + k] * w;
      }
      out[n] = acc;
      pos += this.step;
    }
    // keep what the next block's kernels reach back to
    const keepFrom = Math.max(0, Math.floor(pos) - half);
    this.history = buf.slice(keepFrom);
    this.pos = pos - keepFrom;
    return out;
  }
}

/** h(t) = cutoff · sinc(cutoff · t) · blackman(t / half), sampled at t = i / (TABLE_STEPS · cutoff). */
function buildTable(cutoff, half) {
  const n = Math.ceil(half * cutoff * TABLE_STEPS) + 2;
  const table = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const t = i / (TABLE_STEPS * cutoff); // distance in input samples
    if (t >= half) break;
    const x = Math.PI * cutoff * t;
    const sinc = x === 0 ? 1 : Math.sin(x) / x;
    const r = t / half; // 0..1 from the centre to the edge
    const window = 0.42 + 0.5 * Math.cos(Math.PI * r) + 0.08 * Math.cos(2 * Math.PI * r);
    table[i] = cutoff * sinc * window;
  }
  return table;
}

/** Float samples in [-1, 1] to little-endian PCM16. */
export function floatToPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff);
  }
  return out;
}
