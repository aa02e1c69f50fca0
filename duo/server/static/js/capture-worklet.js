// AudioWorklet: microphone samples in, PCM16 chunks at the session's rate out (with their level).
//
// Runs on the audio thread, so the main thread's layout or garbage collection never drops samples.
// Chunks of `chunkMs` go to the page through the port, their buffers transferred rather than copied.

import { Resampler, floatToPcm16 } from "./resampler.js";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { rate, chunkMs } = options.processorOptions;
    this.configure(rate, chunkMs);
    this.port.onmessage = (event) => {
      if (event.data.type === "rate") this.configure(event.data.rate, this.chunkMs);
    };
  }

  configure(rate, chunkMs) {
    this.rate = rate;
    this.chunkMs = chunkMs;
    this.resampler = new Resampler(sampleRate, rate);
    this.chunk = new Float32Array(Math.round((rate * chunkMs) / 1000));
    this.filled = 0;
    this.peak = 0;
    this.sumSquares = 0;
    this.counted = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const mono = channels[0]; // the microphone track is mono (or its first channel)
    for (let i = 0; i < mono.length; i++) {
      const s = mono[i];
      this.sumSquares += s * s;
      if (Math.abs(s) > this.peak) this.peak = Math.abs(s);
    }
    this.counted += mono.length;
    const out = this.resampler.process(mono);
    let offset = 0;
    while (offset < out.length) {
      const take = Math.min(out.length - offset, this.chunk.length - this.filled);
      this.chunk.set(out.subarray(offset, offset + take), this.filled);
      this.filled += take;
      offset += take;
      if (this.filled === this.chunk.length) this.flush();
    }
    return true;
  }

  flush() {
    const pcm = floatToPcm16(this.chunk);
    const rms = Math.sqrt(this.sumSquares / Math.max(1, this.counted));
    this.port.postMessage({ pcm: pcm.buffer, rate: this.rate, rms, peak: this.peak }, [pcm.buffer]);
    this.filled = 0;
    this.peak = 0;
    this.sumSquares = 0;
    this.counted = 0;
  }
}

registerProcessor("duo-capture", CaptureProcessor);
