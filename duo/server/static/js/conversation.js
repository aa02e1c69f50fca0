// The conversation as it happens: the user's words slice by slice with DUO's judgement of each, and
// duo's replies streaming in, cut where the user interrupted them.

const STATES = ["process", "incomplete", "ignore"];
const LABEL = { process: "process", incomplete: "incomplete", ignore: "ignore" };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(p) {
  return `${Math.round(p * 100)}%`;
}

export class ConversationView {
  /** @param {HTMLOListElement} list  @param {HTMLElement} scroller  @param {HTMLElement} empty */
  constructor(list, scroller, empty) {
    this.list = list;
    this.scroller = scroller;
    this.empty = empty;
    this.userTurn = null; // the user turn still being judged
    this.replies = new Map(); // responseId -> reply view
  }

  // -- layout -------------------------------------------------------------------------------------
  add(node) {
    const pinned = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 80;
    this.list.append(node);
    this.empty.hidden = true;
    if (pinned) this.follow();
    return node;
  }

  follow() {
    const near = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 160;
    if (near) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  turn(kind, who) {
    const li = el("li", `turn ${kind}`);
    const head = el("div", "who");
    head.append(el("span", "name", who));
    li.append(head, el("div", "bubble"));
    return li;
  }

  // -- the user -----------------------------------------------------------------------------------
  /** A slice of the user's words (recognized speech, or typed text). */
  userSlice(text, { typed = false, judged = true } = {}) {
    if (!this.userTurn) {
      const li = this.turn("user", "You");
      li.dataset.status = "listening";
      const how = el("span", "how", typed ? "typed" : "spoken");
      li.querySelector(".who").append(how);
      this.userTurn = this.add(li);
    }
    const slice = el("span", "slice");
    slice.append(el("span", "words", text.trim()));
    if (judged) {
      const chip = el("span", "chip");
      chip.dataset.state = "pending";
      chip.append(el("span", "probs"), el("span", "label", "judging…"));
      slice.append(chip);
      slice.dataset.state = "pending";
    }
    this.userTurn.querySelector(".bubble").append(slice, " ");
    this.follow();
    return slice;
  }

  /** A `duo.input.state`: the verdict on the oldest slice still waiting for one. */
  userState({ state, probs = {}, slice_text: sliceText = "", held = false }) {
    if (!this.userTurn) this.userSlice(sliceText || "…");
    const pending = [...this.userTurn.querySelectorAll('.slice[data-state="pending"]')];
    const slice = pending.find((s) => s.querySelector(".words").textContent === sliceText.trim()) ?? pending[0]
      ?? [...this.userTurn.querySelectorAll(".slice")].pop();
    if (slice) this.setChip(slice, state, probs, held);
    const turn = this.userTurn;
    if (state === "ignore") {
      turn.dataset.status = "ignored";
      turn.classList.add("ignored");
      turn.append(el("div", "note", "Ignored — not addressed to duo"));
      this.userTurn = null;
    } else if (state === "process") {
      turn.dataset.status = held ? "held" : "answered";
      if (!held) this.userTurn = null;
    } else {
      turn.dataset.status = "waiting";
    }
    this.follow();
  }

  setChip(slice, state, probs, held) {
    slice.dataset.state = state;
    const chip = slice.querySelector(".chip") ?? slice.appendChild(el("span", "chip"));
    chip.dataset.state = state;
    chip.replaceChildren();
    const bar = el("span", "probs");
    for (const s of STATES) {
      const seg = el("i", s);
      seg.style.flexGrow = String(Math.max(0, probs[s] ?? 0));
      bar.append(seg);
    }
    const p = probs[state];
    const label = `${LABEL[state] ?? state}${p === undefined ? "" : ` ${percent(p)}`}${held ? " · at the pause" : ""}`;
    chip.append(bar, el("span", "label", label));
    chip.title = STATES.map((s) => `${s} ${percent(probs[s] ?? 0)}`).join(" · ");
    chip.setAttribute("aria-label", `DUO state ${label}; ${chip.title}`);
  }

  /** The user's turn got its answer (a response started): close it. */
  closeUserTurn() {
    if (!this.userTurn) return;
    this.userTurn.dataset.status = "answered";
    for (const label of this.userTurn.querySelectorAll(".chip .label")) {
      label.textContent = label.textContent.replace(" · at the pause", "");
    }
    this.userTurn = null;
  }

  /** Without DUO (server_vad, or no turn detection) an utterance is a turn. */
  endUtterance() {
    if (this.userTurn) this.userTurn.dataset.status = "done";
    this.userTurn = null;
  }

  // -- duo ----------------------------------------------------------------------------------------
  replyStart(responseId) {
    const li = this.turn("assistant", "duo");
    li.dataset.responseId = responseId;
    li.dataset.status = "streaming";
    li.dataset.deltas = "0";
    const voice = el("span", "voice");
    voice.setAttribute("aria-hidden", "true");
    for (let i = 0; i < 4; i++) voice.append(el("i"));
    li.querySelector(".who").append(voice);
    const text = el("p", "text");
    text.append(el("span", "said"), el("span", "caret"));
    li.querySelector(".bubble").append(text);
    const view = { li, text: "", said: text.querySelector(".said") };
    this.replies.set(responseId, view);
    while (this.replies.size > 64) this.replies.delete(this.replies.keys().next().value);
    this.add(li);
    return view;
  }

  replyDelta(responseId, delta) {
    const view = this.replies.get(responseId);
    if (!view) return;
    view.text += delta;
    view.said.textContent = view.text;
    view.li.dataset.deltas = String(Number(view.li.dataset.deltas) + 1);
    this.follow();
  }

  replyDone(responseId, status) {
    const view = this.replies.get(responseId);
    if (!view || view.li.dataset.status === "interrupted") return;
    view.li.dataset.status = status === "incomplete" ? "incomplete" : "done";
    if (status === "incomplete") {
      view.li.querySelector(".bubble").append(el("div", "note", "Stopped at the reply length limit"));
    }
  }

  replySpeaking(responseId, speaking) {
    const view = this.replies.get(responseId);
    if (view) view.li.classList.toggle("speaking", speaking);
  }

  /**
   * The user cut this reply. `heard` is the fraction of its text the user heard (from the audio actually
   * played), or null when all text shown counts as delivered.
   */
  replyInterrupted(responseId, heard, why) {
    const view = this.replies.get(responseId);
    if (!view || view.li.dataset.status === "interrupted") return;
    view.li.dataset.status = "interrupted";
    view.li.classList.remove("speaking");
    let cut = view.text.length;
    if (heard !== null) {
      cut = Math.round(view.text.length * Math.min(1, Math.max(0, heard)));
      const space = view.text.lastIndexOf(" ", cut); // cut between words, on the heard side
      if (space > 0 && cut < view.text.length) cut = space;
    }
    const textNode = view.li.querySelector(".text");
    textNode.replaceChildren();
    const said = el("span", "said", view.text.slice(0, cut));
    const mark = el("span", "cut", "interrupted");
    mark.title = why;
    mark.setAttribute("role", "note");
    mark.setAttribute("aria-label", `Interrupted here: ${why}`);
    textNode.append(said, mark);
    if (cut < view.text.length) {
      const unsaid = el("span", "unsaid", view.text.slice(cut));
      unsaid.title = "Generated but never heard";
      textNode.append(unsaid);
    }
    this.follow();
  }

  // -- the rest -----------------------------------------------------------------------------------
  note(text, kind = "info") {
    const li = el("li", `turn system ${kind}`);
    li.append(el("span", "line", text));
    this.add(li);
  }
}
