// The web chat: sends questions to /v1/chat/completions (streamed), keeps the conversation in a server-side
// session when the server has them (else sends the history itself), restores it on reload.

import { ApiError, AuthRequired, apiKey, call, sseEvents } from "./api.js";
import { AnswerView, errorMessage, userMessage } from "./render.js";

const SESSION_STORAGE = "llmops.chat.session";
const $ = (id) => document.getElementById(id);
const ui = {
  form: $("ask"), question: $("question"), send: $("send"), stop: $("stop"), messages: $("messages"),
  empty: $("empty"), newChat: $("new-chat"), release: $("release"),
  keyDialog: $("key-dialog"), keyForm: $("key-form"), keyInput: $("api-key"), keyReason: $("key-reason"),
};

const state = {
  model: "rag",
  sessionId: localStorage.getItem(SESSION_STORAGE),
  sessions: true, // false once the server says it has none (it rejects `store`): the page then sends the history
  history: [], // [{role, content}] of this conversation, for a server without sessions
  controller: null, // the AbortController of the answer being streamed
};

function setSession(id) {
  state.sessionId = id || null;
  if (id) localStorage.setItem(SESSION_STORAGE, id);
  else localStorage.removeItem(SESSION_STORAGE);
}

function show(node) {
  ui.empty.hidden = true;
  ui.messages.append(node);
  node.scrollIntoView({ block: "end", behavior: "smooth" });
}

// ------------------------------------------------------------------------------------------------ API key

/** Asks for an API key in a modal dialog; resolves when one is saved, rejects when the dialog is dismissed. */
function askForKey(reason) {
  if (reason) ui.keyReason.textContent = reason;
  ui.keyInput.value = "";
  return new Promise((resolve, reject) => {
    ui.keyDialog.addEventListener("close", () => {
      const key = ui.keyInput.value.trim();
      if (ui.keyDialog.returnValue !== "cancel" && key) {
        apiKey.set(key);
        resolve();
      } else reject(new ApiError(401, { message: "This server needs an API key: reload the page to enter one." }));
      ui.question.focus();
    }, { once: true });
    ui.keyDialog.returnValue = "";
    ui.keyDialog.showModal();
    ui.keyInput.focus();
  });
}
ui.keyDialog.addEventListener("cancel", () => { ui.keyDialog.returnValue = "cancel"; });

/** `call` that asks for a key on 401 and tries again with it. */
async function authed(path, options) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call(path, options);
    } catch (e) {
      if (!(e instanceof AuthRequired) || attempt > 2) throw e;
      if (apiKey.get()) apiKey.clear();
      await askForKey(attempt ? "That key was not accepted. Enter a valid API key." : undefined);
    }
  }
}

// ------------------------------------------------------------------------------------------------ asking

function requestBody(question) {
  const body = { model: state.model, stream: true, stream_options: { include_usage: true } };
  const asked = { role: "user", content: question };
  if (state.sessions && state.sessionId) return { ...body, session_id: state.sessionId, messages: [asked] };
  return { ...body, ...(state.sessions ? { store: true } : {}), messages: [...state.history, asked] };
}

/** Opens the stream; adapts once to a server without sessions (or whose store is down: the page then sends the
 * history itself), or one that forgot this session (expired: a new one is started with the history). */
async function openStream(question, signal) {
  for (;;) {
    try {
      return await authed("v1/chat/completions", { method: "POST", body: requestBody(question), signal });
    } catch (e) {
      const storeOff = e.param === "store" || e.code === "sessions_unavailable"; // no sessions, or the store is down
      if (e instanceof ApiError && storeOff && state.sessions) state.sessions = false;
      else if (e instanceof ApiError && e.param === "session_id" && state.sessionId) setSession(null);
      else throw e;
    }
  }
}

async function ask(question) {
  const view = new AnswerView();
  show(userMessage(question));
  show(view.node);
  const controller = new AbortController();
  const history = state.history; // "New chat" during the stream starts another list
  setBusy(controller);
  const result = { id: null, finish: null, sources: null, refusal: null, error: null };
  try {
    const response = await openStream(question, controller.signal);
    for await (const chunk of sseEvents(response)) {
      if (controller.signal.aborted) break; // events already buffered when Stop was pressed are not shown
      if (chunk.error) {
        result.error = chunk.error.message || "The answer failed.";
        break;
      }
      if (chunk.session_id) setSession(chunk.session_id);
      result.id = chunk.id || result.id;
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) view.append(choice.delta.content);
      if (choice?.finish_reason) result.finish = choice.finish_reason;
      if (chunk.sources) result.sources = chunk.sources;
      if (chunk.refusal) result.refusal = chunk.refusal;
    }
  } catch (e) {
    if (e.name !== "AbortError") result.error = e.message;
  } finally {
    setBusy(null);
  }
  if (controller.signal.aborted) {
    view.stopped();
    remember(history, question, view.text);
    return;
  }
  settle(view, result);
  if (!result.error) remember(history, question, result.refusal?.message || view.text); // a failed turn is not history
}

function settle(view, { id, finish, sources, refusal, error }) {
  if (error) view.fail(error);
  else if (refusal || finish === "content_filter") view.refuse(refusal);
  else view.finish(sources);
  if (id && !error) view.feedback((rating, comment) => sendFeedback(id, rating, comment));
}

function remember(history, question, answer) {
  history.push({ role: "user", content: question }, { role: "assistant", content: answer });
}

async function sendFeedback(responseId, rating, comment) {
  try {
    await authed("v1/feedback", { method: "POST", body: { response_id: responseId, rating, ...(comment ? { comment } : {}) } });
    return null;
  } catch (e) {
    return e.message;
  }
}

function setBusy(controller) {
  state.controller = controller;
  ui.send.disabled = Boolean(controller);
  ui.stop.hidden = !controller;
  if (!controller && document.activeElement === ui.stop) ui.question.focus();
}

// ------------------------------------------------------------------------------------------------ restoring

/** The stored conversation of this browser's session, drawn as it was; a session the server forgot is dropped. */
async function restore() {
  if (!state.sessionId) return;
  let session;
  try {
    session = await (await authed(`v1/sessions/${encodeURIComponent(state.sessionId)}`)).json();
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 400)) setSession(null);
    else show(errorMessage(`The conversation could not be restored: ${e.message}`));
    return;
  }
  for (const m of session.messages ?? session.turns ?? []) {
    const content = typeof m.content === "string" ? m.content : "";
    if (m.role === "user") show(userMessage(content));
    else if (m.role === "assistant") {
      const view = new AnswerView();
      view.append(content);
      show(view.node);
      settle(view, { id: m.response_id ?? m.id ?? null, finish: m.finish_reason, sources: m.sources, refusal: m.refusal });
    } else continue;
    state.history.push({ role: m.role, content });
  }
}

async function loadModel() {
  try {
    const models = await (await authed("v1/models")).json();
    const card = models.data?.[0];
    if (card) {
      state.model = card.id;
      ui.release.textContent = card.release ? `· ${card.release}` : "";
    }
  } catch (e) {
    show(errorMessage(e.message));
  }
}

// ------------------------------------------------------------------------------------------------ events

function submit() {
  const question = ui.question.value.trim();
  if (!question || state.controller) return;
  ui.question.value = "";
  fitQuestion();
  ask(question);
}

ui.form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });

// Enter sends, Shift+Enter is a new line. While an IME composes (Japanese input), Enter confirms the conversion
// and must not send: isComposing, keyCode 229 (Safari sends the Enter after compositionend) and our own flag.
let composing = false;
ui.question.addEventListener("compositionstart", () => { composing = true; });
ui.question.addEventListener("compositionend", () => { composing = false; });
ui.question.addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || e.shiftKey || e.isComposing || composing || e.keyCode === 229) return;
  e.preventDefault();
  submit();
});

function fitQuestion() {
  ui.question.style.height = "auto";
  ui.question.style.height = `${Math.min(ui.question.scrollHeight, 200)}px`;
}
ui.question.addEventListener("input", fitQuestion);

ui.stop.addEventListener("click", () => {
  state.controller?.abort();
  ui.question.focus();
});

ui.newChat.addEventListener("click", () => {
  state.controller?.abort();
  setSession(null);
  state.history = [];
  ui.messages.replaceChildren();
  ui.empty.hidden = false;
  ui.question.focus();
});

await loadModel();
await restore();
ui.question.focus();
document.body.dataset.ready = "true"; // the page is wired up (the browser tests wait for it)
