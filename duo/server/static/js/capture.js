// The microphone: getUserMedia → AudioWorklet → PCM16 chunks at the session rate.

const CHUNK_MS = 40;
const loaded = new WeakSet(); // contexts that already have the worklet module

export class Microphone {
  /**
   * @param {() => AudioContext} context the page's shared audio context (created on a user gesture)
   * @param {(pcm: Int16Array, rms: number, rate: number) => void} onChunk every chunk, muted or not
   */
  constructor(context, onChunk) {
    this.context = context;
    this.onChunk = onChunk;
    this.stream = null;
    this.node = null;
    this.source = null;
    this.muted = false;
    this.rate = 24000;
  }

  get active() {
    return this.stream !== null;
  }

  /** Ask for the microphone and start streaming; rejects with a readable reason. */
  async start(rate) {
    if (this.active) return;
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      throw new Error("The microphone needs a secure page: open duo over HTTPS or on localhost.");
    }
    this.rate = rate;
    const ctx = this.context();
    if (!loaded.has(ctx)) {
      await ctx.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
      loaded.add(ctx);
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
      throw new Error(denied ? "Microphone permission was denied." : `No microphone: ${err.message || err}`);
    }
    this.stream = stream;
    this.source = ctx.createMediaStreamSource(stream);
    this.node = new AudioWorkletNode(ctx, "duo-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { rate, chunkMs: CHUNK_MS },
    });
    this.node.port.onmessage = ({ data }) => {
      const pcm = new Int16Array(data.pcm);
      this.onChunk(pcm, this.muted ? 0 : data.rms, data.rate);
    };
    this.source.connect(this.node);
    this.setMuted(this.muted);
  }

  /** The session's rate changed (session.updated): chunks from now on are at `rate`. */
  setRate(rate) {
    if (rate === this.rate) return;
    this.rate = rate;
    this.node?.port.postMessage({ type: "rate", rate });
  }

  /** Muted tracks deliver silence: the stream (and the server's pause detection) keeps going. */
  setMuted(muted) {
    this.muted = muted;
    for (const track of this.stream?.getAudioTracks() ?? []) track.enabled = !muted;
  }

  stop() {
    this.source?.disconnect();
    this.node?.port.close();
    this.node?.disconnect();
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = this.node = this.source = null;
  }
}
