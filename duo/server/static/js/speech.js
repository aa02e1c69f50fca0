// Fallback voice: the browser's speech synthesis reads a text reply sentence by sentence.
//
// Used only when voice is on and the server sends text without audio (a server started with
// `--tts none`). Whole sentences are queued as they complete, so speech starts before the reply ends.

const SENTENCE_END = /[.!?…:;]\s|\n/;

export class BrowserVoice {
  constructor() {
    this.available = "speechSynthesis" in window && "SpeechSynthesisUtterance" in window;
    this.pending = "";
    this.responseId = null;
    this.queued = 0;
    this.onChange = () => {};
  }

  get speaking() {
    return this.queued > 0;
  }

  /** More text of `responseId`; speaks each sentence once it is complete. */
  push(responseId, delta) {
    if (!this.available) return;
    if (responseId !== this.responseId) {
      this.responseId = responseId;
      this.pending = "";
    }
    this.pending += delta;
    let match;
    while ((match = SENTENCE_END.exec(this.pending))) {
      const end = match.index + match[0].length;
      this.say(this.pending.slice(0, end));
      this.pending = this.pending.slice(end);
    }
  }

  /** The reply ended: read what is left. */
  finish(responseId) {
    if (responseId === this.responseId && this.pending.trim()) this.say(this.pending);
    this.pending = "";
  }

  say(text) {
    if (!text.trim()) return;
    const utterance = new SpeechSynthesisUtterance(text.trim());
    this.queued++;
    const done = () => {
      this.queued = Math.max(0, this.queued - 1);
      if (!this.queued) this.onChange();
    };
    utterance.onend = done;
    utterance.onerror = done; // "interrupted"/"canceled" on barge-in, or no voice installed
    speechSynthesis.speak(utterance);
    if (this.queued === 1) this.onChange();
  }

  /** Barge-in: silence now. */
  stop() {
    this.pending = "";
    this.responseId = null;
    const was = this.queued;
    this.queued = 0;
    if (this.available) speechSynthesis.cancel();
    if (was) this.onChange();
  }
}
