// Settings: what the user chose, kept in localStorage, and the session.update they amount to.

import { LEAD_MS } from "./player.js";

const KEY = "duo.settings.v1";
export const INPUT_RATE = 16000; // what the server's recognizer works at: the least to send

export const DEFAULTS = Object.freeze({
  instructions: null, // null: the server's default instructions
  turnDetection: "duo", // duo | server_vad (the pause-only baseline)
  sliceMs: 2000,
  pauseMs: 500,
  processThreshold: 0.5,
  ignoreThreshold: 0.5,
  actBeforePause: false,
  incompleteTimeoutMs: 3000, // 0: an utterance judged incomplete waits for more speech however long
  earlyPauseMs: 150, // speech judged `process` ends after this much silence; 0: always the full pause
  confirmMs: 200, // the silence after an early close that releases its held reply; 0: the full pause
  partialMs: 0, // re-recognize the words being said this often; 0: the server's default (300 on CUDA, off on CPU)
  speculate: true, // start the reply on a `process` before the pause (held until the turn is confirmed)
  voice: true,
  playbackLeadMs: LEAD_MS, // the player's least lead before a first chunk plays
  maxTokens: 256,
  apiKey: "",
});

/** Bounds as in docs/protocol.md; out-of-range stored values are clamped, not sent. */
const LIMITS = {
  sliceMs: [500, 4000],
  pauseMs: [100, 3000],
  processThreshold: [0, 1],
  ignoreThreshold: [0, 1],
  incompleteTimeoutMs: [0, 60000],
  earlyPauseMs: [0, 3000],
  confirmMs: [0, 3000],
  partialMs: [0, 5000],
  playbackLeadMs: [20, 500],
  maxTokens: [1, 4096],
};

export function loadSettings() {
  let stored = {};
  try {
    stored = JSON.parse(localStorage.getItem(KEY) || "{}") || {};
  } catch {
    stored = {};
  }
  const settings = { ...DEFAULTS };
  for (const name of Object.keys(DEFAULTS)) {
    const ok = name === "instructions" ? stored[name] === null || typeof stored[name] === "string"
      : typeof stored[name] === typeof DEFAULTS[name];
    if (name in stored && ok) {
      settings[name] = stored[name];
    }
  }
  return clamp(settings);
}

export function saveSettings(settings) {
  try {
    localStorage.setItem(KEY, JSON.stringify(settings));
  } catch {
    // private mode or storage full: settings last for this page only
  }
}

function clamp(settings) {
  for (const [name, [lo, hi]] of Object.entries(LIMITS)) {
    const v = Number(settings[name]);
    settings[name] = Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : DEFAULTS[name];
  }
  if (!["duo", "server_vad"].includes(settings.turnDetection)) settings.turnDetection = DEFAULTS.turnDetection;
  return settings;
}

/** The `session` object of a session.update for these settings. */
export function sessionPatch(settings) {
  const turnDetection =
    settings.turnDetection === "server_vad"
      ? { type: "server_vad", silence_duration_ms: settings.pauseMs }
      : {
          type: "duo",
          slice_ms: settings.sliceMs,
          pause_ms: settings.pauseMs,
          process_threshold: settings.processThreshold,
          ignore_threshold: settings.ignoreThreshold,
          act_before_pause: settings.actBeforePause,
          // 0 in the form: wait however long (the server's null); the server's floor is 200 ms
          incomplete_timeout_ms:
            settings.incompleteTimeoutMs > 0 ? Math.max(200, settings.incompleteTimeoutMs) : null,
          // the short pause is at least the server's 50 ms floor and never longer than the pause itself
          early_pause_ms: settings.earlyPauseMs > 0 ? Math.min(settings.pauseMs, Math.max(50, settings.earlyPauseMs))
            : null,
          // at least the server's 50 ms floor; the server caps it at the pause
          confirm_ms: settings.confirmMs > 0 ? Math.max(50, settings.confirmMs) : null,
          partial_ms: settings.partialMs > 0 ? settings.partialMs : null,
          speculate: settings.speculate,
        };
  const session = {
    output_modalities: settings.voice ? ["audio"] : ["text"],
    max_output_tokens: settings.maxTokens,
    audio: { input: { format: { type: "audio/pcm", rate: INPUT_RATE }, turn_detection: turnDetection } },
  };
  if (settings.instructions !== null) session.instructions = settings.instructions || null;
  return session;
}

/** Fill the settings form from `settings`. */
export function fillForm(form, settings) {
  const f = form.elements;
  f.instructions.value = settings.instructions ?? "";
  f.turnDetection.value = settings.turnDetection;
  f.sliceMs.value = settings.sliceMs;
  f.pauseMs.value = settings.pauseMs;
  f.processThreshold.value = settings.processThreshold;
  f.ignoreThreshold.value = settings.ignoreThreshold;
  f.actBeforePause.checked = settings.actBeforePause;
  f.incompleteTimeoutMs.value = settings.incompleteTimeoutMs;
  f.earlyPauseMs.value = settings.earlyPauseMs;
  f.confirmMs.value = settings.confirmMs;
  f.partialMs.value = settings.partialMs;
  f.speculate.checked = settings.speculate;
  f.voice.checked = settings.voice;
  f.playbackLeadMs.value = settings.playbackLeadMs;
  f.maxTokens.value = settings.maxTokens;
  f.apiKey.value = settings.apiKey;
  syncForm(form);
}

/** Read the form back; the instructions stay "server default" until edited. */
export function readForm(form, previous, serverInstructions) {
  const f = form.elements;
  const text = f.instructions.value;
  const unchanged = previous.instructions === null && text === (serverInstructions ?? "");
  return clamp({
    instructions: unchanged ? null : text,
    turnDetection: f.turnDetection.value,
    sliceMs: Math.round(Number(f.sliceMs.value)),
    pauseMs: Math.round(Number(f.pauseMs.value)),
    processThreshold: Number(f.processThreshold.value),
    ignoreThreshold: Number(f.ignoreThreshold.value),
    actBeforePause: f.actBeforePause.checked,
    incompleteTimeoutMs: Math.round(Number(f.incompleteTimeoutMs.value)),
    earlyPauseMs: Math.round(Number(f.earlyPauseMs.value)),
    confirmMs: Math.round(Number(f.confirmMs.value)),
    partialMs: Math.round(Number(f.partialMs.value)),
    speculate: f.speculate.checked,
    voice: f.voice.checked,
    playbackLeadMs: Math.round(Number(f.playbackLeadMs.value)),
    maxTokens: Math.round(Number(f.maxTokens.value)),
    apiKey: f.apiKey.value.trim(),
  });
}

/** Show the slider values and disable what the chosen turn detection does not use. */
export function syncForm(form) {
  const f = form.elements;
  for (const name of ["processThreshold", "ignoreThreshold"]) {
    const out = form.querySelector(`output[for="${name}"]`);
    if (out) out.value = Number(f[name].value).toFixed(2);
  }
  const duo = f.turnDetection.value === "duo";
  const duoOnly = ["sliceMs", "processThreshold", "ignoreThreshold", "actBeforePause", "incompleteTimeoutMs",
                   "earlyPauseMs", "confirmMs", "partialMs", "speculate"];
  for (const name of duoOnly) f[name].disabled = !duo;
}
