// Speech playback: PCM16 chunks scheduled back to back behind a small jitter buffer.
//
// Each chunk becomes an AudioBufferSourceNode started at an exact time on the audio clock, so chunks
// join without gaps. The first chunk plays as soon as it arrives, a short lead later (and so does a chunk
// after an underrun): the server sends each rendered piece of a reply at once, so only network jitter is
// left to absorb. A chunk of the same item arriving just after the queue ran dry is such jitter: the lead
// grows a step (up to LEAD_MAX_S) and shrinks back a half step with each new item. A longer gap is a pause
// in the reply's text, which no buffer would cure. Because every chunk's start time is known, how much of
// an item was actually heard is exact, and a flush stops everything at once.

export const LEAD_MS = 60; // the default lead: enough for the audio clock to schedule the chunk
const LEAD_MAX_S = 0.3;
const LEAD_STEP_S = 0.02;
const JITTER_GAP_S = 0.25; // a queue dry for less than this before a chunk came is an underrun
const OUTPUT_RATE = 24000; // response.output_audio.delta is PCM16 at 24 kHz
const DUCKED = 0.25; // playback level while someone speaks over it, before DUO has judged the speech

export class Player {
  /**
   * @param {() => AudioContext} context the page's shared audio context
   * @param {number} leadMs the least time between a chunk's arrival and its start, when nothing is queued
   */
  constructor(context, leadMs = LEAD_MS) {
    this.context = context;
    this.setLead(leadMs);
    this.underruns = 0;
    this.lastItem = null;
    this.segments = []; // {source, itemId, start, duration}
    this.items = new Map(); // itemId -> {receivedMs, heardMs (of flushed segments)}
    this.nextTime = 0;
    this.gain = null; // every source plays through it, so ducking reaches what is already scheduled
    this.ducked = false;
    this.onChange = () => {};
  }

  output() {
    const ctx = this.context();
    if (!this.gain) {
      this.gain = ctx.createGain();
      this.gain.connect(ctx.destination);
    }
    return this.gain;
  }

  /** Lower playback while speech over it is being judged (`on`), or restore it. */
  duck(on) {
    const gain = this.output().gain;
    gain.setTargetAtTime(on ? DUCKED : 1, this.context().currentTime, 0.03);
    this.ducked = on;
  }

  /** The least lead (from the settings); any growth after underruns starts again from it. */
  setLead(ms) {
    this.minLead = this.lead = ms / 1000;
  }

  /** Queue one chunk of an item's audio. */
  enqueue(itemId, pcm) {
    const ctx = this.context();
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
    const buffer = ctx.createBuffer(1, samples.length, OUTPUT_RATE);
    buffer.copyToChannel(samples, 0);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output());
    const now = ctx.currentTime;
    if (itemId !== this.lastItem) this.lead = Math.max(this.minLead, this.lead - LEAD_STEP_S / 2);
    if (this.nextTime < now + 0.01) { // nothing left queued: the item's first chunk, or an underrun
      if (itemId === this.lastItem && this.nextTime > 0 && now - this.nextTime < JITTER_GAP_S) {
        this.underruns += 1;
        this.lead = Math.min(LEAD_MAX_S, this.lead + LEAD_STEP_S);
      }
      this.nextTime = now + this.lead;
    }
    this.lastItem = itemId;
    const segment = { source, itemId, start: this.nextTime, duration: buffer.duration };
    source.onended = () => {
      this.segments = this.segments.filter((s) => s !== segment);
      const item = this.items.get(itemId);
      if (item) item.heardMs += segment.duration * 1000;
      if (!this.isPlaying(itemId)) this.onChange();
    };
    source.start(segment.start);
    this.nextTime += buffer.duration;
    this.segments.push(segment);
    const item = this.items.get(itemId) ?? { receivedMs: 0, heardMs: 0 };
    item.receivedMs += buffer.duration * 1000;
    this.items.set(itemId, item);
    if (this.segments.length === 1) this.onChange();
  }

  /** Whether audio of `itemId` (or of anything) is queued or sounding. */
  isPlaying(itemId) {
    return this.segments.some((s) => itemId === undefined || s.itemId === itemId);
  }

  receivedMs(itemId) {
    return this.items.get(itemId)?.receivedMs ?? 0;
  }

  /** Milliseconds of `itemId` that have come out of the speakers. */
  heardMs(itemId) {
    const item = this.items.get(itemId);
    if (!item) return 0;
    const ctx = this.context();
    const now = ctx.currentTime - (ctx.outputLatency || 0);
    let ms = item.heardMs;
    for (const s of this.segments) {
      if (s.itemId === itemId) ms += Math.min(Math.max(now - s.start, 0), s.duration) * 1000;
    }
    return Math.min(ms, item.receivedMs);
  }

  /** Stop everything now; returns how much of `itemId` was heard. */
  flush(itemId) {
    const heard = itemId === undefined ? 0 : this.heardMs(itemId);
    const segments = this.segments;
    this.segments = [];
    for (const s of segments) {
      s.source.onended = null;
      try {
        s.source.stop();
      } catch {
        // never started: nothing to stop
      }
      s.source.disconnect();
    }
    if (itemId !== undefined && this.items.has(itemId)) this.items.get(itemId).heardMs = heard;
    this.nextTime = 0;
    if (segments.length) this.onChange();
    return heard;
  }

  /** Forget finished items (keeps memory flat over a long conversation). */
  forget(itemId) {
    if (!this.isPlaying(itemId)) this.items.delete(itemId);
  }
}

/** Base64 of little-endian PCM16 to samples. */
export function decodePcm16(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Int16Array(bytes.buffer, 0, bytes.length >> 1);
}

/** Samples to base64 of little-endian PCM16. */
export function encodePcm16(pcm) {
  const bytes = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
