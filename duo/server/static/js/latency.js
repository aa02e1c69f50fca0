// Latency as the user lives it, on the page's own clock.
//
// The server reports speech boundaries in stream time (`audio_end_ms`: milliseconds of audio since the
// stream began). The page knows when it captured every sample it sent, so it maps stream time back to
// `performance.now()`: "end of speech → first reply token" then includes the pause the server waits
// for, recognition, the model and the network, and nothing is taken on the server's word.

const KEEP = 256; // capture marks kept (one per 40 ms chunk: ten seconds of stream)

export class StreamClock {
  constructor() {
    this.reset(16000);
  }

  /** A new audio stream on the server (new session, or a session.update touching audio). */
  reset(rate) {
    this.rate = rate;
    this.samples = 0;
    this.marks = []; // [sampleIndexAtChunkEnd, performance.now() when that chunk was captured]
  }

  /** A chunk of `count` samples ending now was sent. */
  sent(count, now = performance.now()) {
    this.samples += count;
    this.marks.push([this.samples, now]);
    if (this.marks.length > KEEP) this.marks.shift();
  }

  /** When the sample at `ms` of stream time was captured (null if no longer known). */
  captured(ms) {
    const sample = (ms / 1000) * this.rate;
    for (const [end, at] of this.marks) {
      if (end >= sample) return at - ((end - sample) / this.rate) * 1000;
    }
    const last = this.marks[this.marks.length - 1];
    return last && sample - last[0] < this.rate ? last[1] : null;
  }
}

/** Last value and median of one latency. */
export class Stat {
  constructor() {
    this.values = [];
  }

  add(ms) {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.values.push(ms);
    if (this.values.length > 200) this.values.shift();
  }

  get last() {
    return this.values.length ? this.values[this.values.length - 1] : null;
  }

  get median() {
    if (!this.values.length) return null;
    const sorted = [...this.values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }
}
