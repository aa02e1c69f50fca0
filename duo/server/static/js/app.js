// The demo page: wires the microphone, the connection, playback and the conversation view together.
// Wire format: docs/protocol.md (OpenAI Realtime events plus `duo.*`).

import { Microphone } from "./capture.js";
import { Connection } from "./connection.js";
import { ConversationView } from "./conversation.js";
import { StreamClock, Stat } from "./latency.js";
import { Player, decodePcm16, encodePcm16 } from "./player.js";
import { INPUT_RATE, fillForm, loadSettings, readForm, saveSettings, sessionPatch, syncForm } from "./settings.js";
import { BrowserVoice } from "./speech.js";

const $ = (id) => document.getElementById(id);

// -- state ----------------------------------------------------------------------------------------------
let settings = loadSettings();
let session = null; // the server's view of the session (session.created / .updated)
let serverInstructions = null; // the server's default instructions, shown until the user edits them
let sessionReady = false; // session.update sent: audio may stream
let inSession = false; // a session is open (a refused connection opens, errs and closes without one)
let sessions = 0;
let hearing = false;
let endOfInput = null; // performance.now() when the user's latest words ended
let speechStart = null; // ... and when they began
const replies = new Map(); // responseId -> {id, itemId, generating, spoken, browserVoice, interrupted, ...}
let current = null; // the newest reply

let audioContext = null;
function context() {
  if (!audioContext) audioContext = new AudioContext({ latencyHint: "interactive" });
  return audioContext;
}
/** Called from user gestures only: browsers start audio on a click or key press. */
function unlockAudio() {
  const ctx = context();
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
}

const clock = new StreamClock();
const replyLatency = new Stat();
const stopLatency = new Stat();
const view = new ConversationView($("turns"), $("conversation"), $("empty"));
const player = new Player(context, settings.playbackLeadMs);
const voice = new BrowserVoice();
const mic = new Microphone(context, onChunk);
const connection = new Connection({ onEvent, onState });

// -- connection -----------------------------------------------------------------------------------------
let countdown = null;
function onState(state, detail, waitS) {
  const status = $("status");
  status.dataset.state = state;
  clearInterval(countdown);
  const text = $("status-text");
  const button = $("connect");
  if (state === "open") {
    text.textContent = "Connected";
    button.textContent = "Disconnect";
  } else if (state === "connecting") {
    text.textContent = "Connecting…";
    button.textContent = "Disconnect";
  } else if (state === "waiting") {
    let left = waitS;
    const show = () => (text.textContent = `Reconnecting in ${left} s`);
    show();
    countdown = setInterval(() => (--left > 0 ? show() : clearInterval(countdown)), 1000);
    button.textContent = "Retry now";
    status.title = detail;
    if (inSession) view.note(`Connection lost: ${detail}`, "warn"); // once, not at every retry
  } else {
    text.textContent = "Disconnected";
    button.textContent = "Connect";
  }
  if (state !== "waiting") status.title = detail || "";
  if (state !== "open") {
    sessionReady = false;
    inSession = false;
    stopAll("the connection closed");
  }
}

function sendSessionUpdate() {
  connection.send({ type: "session.update", session: sessionPatch(settings) });
  clock.reset(INPUT_RATE); // the update restarts the server's audio stream at 0 ms
  mic.setRate(INPUT_RATE);
  sessionReady = true;
}

// -- server events --------------------------------------------------------------------------------------
function duoJudges() {
  // DUO's detector is reported under its published name, with its own parameters in `duo`
  return session?.audio?.input?.turn_detection?.type === "semantic_vad";
}

function onEvent(event) {
  switch (event.type) {
    case "session.created":
      session = event.session;
      serverInstructions = session.instructions ?? null;
      inSession = true;
      connection.established();
      if (sessions++ > 0) view.note("Reconnected: a new session, which starts without the earlier turns.");
      sendSessionUpdate();
      break;
    case "session.updated":
      session = event.session;
      updateMode();
      break;
    case "duo.input.speech_started": // raw voice activity
      onSpeechStarted(event);
      break;
    case "duo.input.speech_stopped":
      onSpeechStopped(event);
      break;
    case "duo.output_audio.duck": // speech over the reply: lower it while DUO judges the speech
      player.duck(true);
      break;
    case "duo.output_audio.restore": // judged not a turn (the reply goes on), or the reply stopped
      player.duck(false);
      break;
    case "input_audio_buffer.speech_started": // under DUO: speech judged addressed to duo
      if (!duoJudges()) onSpeechStarted(event);
      break;
    case "input_audio_buffer.speech_stopped":
      if (!duoJudges()) onSpeechStopped(event);
      break;
    case "duo.input.transcript":
      if (event.text?.trim()) view.userSlice(event.text, { judged: true });
      break;
    case "conversation.item.input_audio_transcription.delta":
      if (!duoJudges() && event.delta?.trim()) view.userSlice(event.delta, { judged: false });
      break;
    case "conversation.item.input_audio_transcription.completed":
      if (!duoJudges()) view.endUtterance();
      break;
    case "conversation.item.added":
      if (event.item?.role === "user" && !duoJudges()) { // under DUO, typed words were shown as they went out
        const text = (event.item.content ?? []).map((c) => c.text ?? "").join(" ");
        view.userSlice(text, { typed: true, judged: duoJudges() });
        if (!duoJudges()) view.endUtterance();
      }
      break;
    case "duo.input.state":
      view.userState(event);
      if (event.state === "ignore") endOfInput = null; // not a question: nothing to time
      break;
    case "response.created":
      onResponseCreated(event.response.id);
      break;
    case "response.output_item.added": {
      const reply = replies.get(event.response_id);
      if (reply) reply.itemId = event.item?.id ?? reply.itemId;
      break;
    }
    case "response.output_text.delta":
    case "response.output_audio_transcript.delta":
      onReplyText(event, event.type === "response.output_text.delta");
      break;
    case "response.output_audio.delta":
      onReplyAudio(event);
      break;
    case "response.done":
      onResponseDone(event.response);
      break;
    case "duo.context.trimmed":
      view.note(`The oldest ${event.dropped_turns ?? "few"} turns left duo's memory (context window full).`);
      break;
    case "error": {
      const { code = "error", message = "" } = event.error ?? {};
      connection.noteError(message);
      if (inSession) view.note(`${code}: ${message}`, "error"); // else it explains the refusal in the status
      break;
    }
    default:
      break; // other events (committed, truncated, ...) change nothing on the page
  }
}

function onSpeechStarted(event) {
  setHearing(true);
  speechStart = clock.captured(event.audio_start_ms ?? 0) ?? performance.now();
}

function onSpeechStopped(event) {
  setHearing(false);
  endOfInput = clock.captured(event.audio_end_ms ?? 0) ?? performance.now();
}

// -- replies --------------------------------------------------------------------------------------------
function onResponseCreated(id) {
  view.closeUserTurn();
  if (player.ducked) player.duck(false); // the new reply plays at full level
  for (const reply of replies.values()) if (reply.id !== id && isLive(reply)) interrupt(reply, "turn_detected");
  const reply = { id, itemId: null, generating: true, spoken: false, browserVoice: false, interrupted: false,
                  firstToken: false, since: endOfInput };
  endOfInput = null;
  replies.set(id, reply);
  while (replies.size > 64) {
    const oldest = replies.keys().next().value;
    player.forget(replies.get(oldest).itemId);
    replies.delete(oldest);
  }
  current = reply;
  view.replyStart(id);
  updateLive();
}

function onReplyText(event, plainText) {
  const reply = replies.get(event.response_id);
  if (!reply || reply.interrupted) return; // output of a cancelled reply: dropped
  reply.itemId ??= event.item_id;
  if (!reply.firstToken) {
    reply.firstToken = true;
    if (reply.since !== null) {
      replyLatency.add(performance.now() - reply.since);
      showLatency();
    }
  }
  view.replyDelta(reply.id, event.delta ?? "");
  if (!plainText) reply.spoken = true; // an audio transcript: the audio itself follows
  if (plainText && settings.voice && voice.available) {
    reply.browserVoice = true; // voice on, but the server sends no audio: the browser speaks
    voice.push(reply.id, event.delta ?? "");
  }
}

function onReplyAudio(event) {
  const reply = replies.get(event.response_id);
  if (!reply || reply.interrupted || reply !== current || !settings.voice) return;
  reply.itemId ??= event.item_id;
  reply.spoken = true;
  player.enqueue(reply.itemId, decodePcm16(event.delta));
}

function onResponseDone(response) {
  const reply = replies.get(response?.id);
  if (!reply) return;
  if (response.status === "cancelled") {
    const reason = response.status_details?.reason;
    interrupt(reply, reason === "client_cancelled" ? "client_cancelled" : "turn_detected");
  } else {
    reply.generating = false;
    view.replyDone(reply.id, response.status);
    if (reply.browserVoice) voice.finish(reply.id);
  }
  updateLive();
}

function isLive(reply) {
  return !reply.interrupted && (reply.generating || (reply.itemId !== null && player.isPlaying(reply.itemId))
    || (reply.browserVoice && voice.speaking));
}

/** The user cut `reply`: silence at once, tell the server what was heard, mark the cut. */
function interrupt(reply, reason) {
  if (reply.interrupted) return;
  const wasLive = isLive(reply);
  reply.interrupted = true;
  reply.generating = false;
  let heard = null;
  if (reply.spoken && reply.itemId) {
    // the server speaks this reply: tell it how much was played (none yet is an answer too)
    const received = player.receivedMs(reply.itemId);
    const heardMs = player.flush(reply.itemId);
    heard = received > 0 ? heardMs / received : 0; // the server cuts its memory of the reply the same way
    connection.send({ type: "conversation.item.truncate", item_id: reply.itemId, content_index: 0,
                      audio_end_ms: Math.floor(heardMs) });
  }
  if (reply.browserVoice) voice.stop();
  if (wasLive && reason === "turn_detected") {
    const since = endOfInput ?? speechStart;
    if (since !== null) {
      stopLatency.add(performance.now() - since);
      showLatency();
    }
  }
  const why = reason === "turn_detected" ? "you spoke over duo" : reason === "client_cancelled" ? "stopped" : reason;
  view.replyInterrupted(reply.id, heard, why);
  updateLive();
}

/** The connection dropped: whatever was playing belongs to a session that is gone. */
function stopAll(why) {
  for (const reply of replies.values()) if (isLive(reply)) interrupt(reply, why);
  player.flush();
  voice.stop();
  setHearing(false);
}

function stopReply() {
  unlockAudio();
  const live = [...replies.values()].filter(isLive);
  if (live.some((r) => r.generating)) connection.send({ type: "response.cancel" });
  for (const reply of live) interrupt(reply, "client_cancelled");
}

function updateLive() {
  for (const reply of replies.values()) {
    view.replySpeaking(reply.id, !reply.interrupted && ((reply.itemId !== null && player.isPlaying(reply.itemId))
      || (reply.browserVoice && voice.speaking && reply === current)));
  }
  $("stop-reply").hidden = ![...replies.values()].some(isLive);
}
player.onChange = updateLive;
voice.onChange = updateLive;

// -- microphone -----------------------------------------------------------------------------------------
function onChunk(pcm, rms, rate) {
  const level = rms > 0 ? Math.min(1, Math.max(0, (20 * Math.log10(rms) + 60) / 55)) : 0;
  $("dock").style.setProperty("--level", level.toFixed(3));
  $("level").setAttribute("aria-valuenow", String(Math.round(level * 100)));
  if (!sessionReady || !connection.open || rate !== INPUT_RATE) return;
  connection.send({ type: "input_audio_buffer.append", audio: encodePcm16(pcm) });
  clock.sent(pcm.length);
}

function setHearing(on) {
  hearing = on;
  document.body.classList.toggle("hearing", on);
  $("hearing").textContent = on ? "Hearing you…" : "";
}

async function toggleMic() {
  unlockAudio();
  const button = $("mic");
  if (mic.active) {
    if (hearing && sessionReady) connection.send({ type: "input_audio_buffer.commit" });
    mic.stop();
    setHearing(false);
  } else {
    button.disabled = true;
    try {
      await mic.start(INPUT_RATE);
    } catch (err) {
      view.note(err.message, "error");
    } finally {
      button.disabled = false;
    }
  }
  const on = mic.active;
  button.setAttribute("aria-pressed", String(on));
  button.setAttribute("aria-label", on ? "Turn the microphone off" : "Turn the microphone on");
  $("mic-label").textContent = on ? "Mic on" : "Mic off";
  document.body.classList.toggle("mic-on", on);
  $("mute").disabled = !on;
  if (!on) setMuted(false);
  $("dock").style.setProperty("--level", "0");
}

function setMuted(muted) {
  mic.setMuted(muted);
  const button = $("mute");
  button.setAttribute("aria-pressed", String(muted));
  button.textContent = muted ? "Unmute" : "Mute";
  document.body.classList.toggle("muted", muted);
}

// -- text -----------------------------------------------------------------------------------------------
function sendText(event) {
  event.preventDefault();
  unlockAudio();
  const input = $("message");
  const text = input.value.trim();
  if (!text) return;
  if (!connection.open || !sessionReady) {
    view.note("Not connected: the message was not sent.", "warn");
    return;
  }
  if (duoJudges()) {
    // DUO judges typed words as it judges speech; a standard text item would wait for response.create
    connection.send({ type: "duo.input.slice", text, final: true });
    view.userSlice(text, { typed: true, judged: true });
  } else {
    connection.send({ type: "conversation.item.create",
                      item: { type: "message", role: "user", content: [{ type: "input_text", text }] } });
    connection.send({ type: "response.create" }); // without DUO, a typed message is a turn
  }
  endOfInput = performance.now();
  speechStart = endOfInput;
  input.value = "";
}

// -- readouts -------------------------------------------------------------------------------------------
function showLatency() {
  for (const [id, stat] of [["lat-reply", replyLatency], ["lat-stop", stopLatency]]) {
    const box = $(id);
    if (stat.last === null) continue;
    box.querySelector(".v").textContent = `${Math.round(stat.last)} ms`;
    box.querySelector(".m").textContent = stat.values.length > 1
      ? `median ${Math.round(stat.median)} ms · ${stat.values.length}` : "";
    box.dataset.filled = "true";
  }
}

function updateMode() {
  const td = session?.audio?.input?.turn_detection?.type;
  $("mode").textContent = td === "semantic_vad" ? "DUO turn-taking" : td === "server_vad" ? "Pause-only baseline"
    : "Manual";
}

// -- settings -------------------------------------------------------------------------------------------
function openSettings() {
  const form = $("settings-form");
  fillForm(form, settings);
  if (settings.instructions === null) form.elements.instructions.value = serverInstructions ?? "";
  $("settings").showModal();
}

function closeSettings() {
  const dialog = $("settings");
  if (dialog.returnValue !== "save") return;
  const previousKey = settings.apiKey;
  settings = readForm($("settings-form"), settings, serverInstructions);
  saveSettings(settings);
  player.setLead(settings.playbackLeadMs);
  if (!settings.voice) {
    player.flush();
    voice.stop();
  }
  if (settings.apiKey !== previousKey) {
    connection.connect(settings.apiKey); // a new key needs a new handshake
  } else if (connection.open) {
    sendSessionUpdate();
  }
}

// -- start ----------------------------------------------------------------------------------------------
function start() {
  $("mic").addEventListener("click", toggleMic);
  $("mute").addEventListener("click", () => setMuted(!mic.muted));
  $("composer").addEventListener("submit", sendText);
  $("stop-reply").addEventListener("click", stopReply);
  $("open-settings").addEventListener("click", openSettings);
  $("settings").addEventListener("close", closeSettings);
  $("settings-form").addEventListener("input", () => syncForm($("settings-form")));
  $("connect").addEventListener("click", () => {
    unlockAudio();
    if (connection.open || $("status").dataset.state === "connecting") connection.disconnect();
    else connection.connect(settings.apiKey);
  });
  if (!window.isSecureContext) $("insecure").hidden = false;
  connection.connect(settings.apiKey);
}

start();
