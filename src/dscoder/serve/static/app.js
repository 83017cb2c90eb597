// The dscoder web page: completion, infilling and chat against this server's OpenAI API,
// streamed with server-sent events. Model output is only ever written with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let modelName = null;
let inFlight = null; // the AbortController of the generation in progress
const history = []; // the chat so far: {role, content}

// ---- talking to the server ------------------------------------------------------------------

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error?.message ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// Parse a server-sent event stream into the JSON objects of its `data:` lines.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice("data: ".length);
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

function unescape(text) {
  return text.replace(/\\(n|t|\\)/g, (_, c) => ({ n: "\n", t: "\t", "\\": "\\" })[c]);
}

function sampling() {
  const body = {
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
  };
  const stop = $("stop").value;
  if (stop) body.stop = unescape(stop);
  return body;
}

// Stream one generation; `onText` receives each new piece. Resolves to the finish reason,
// "stopped" when the user pressed Stop, or null after an error (shown on the page).
async function generate(path, body, onText) {
  showError(null);
  const controller = new AbortController();
  inFlight = controller;
  setBusy(true);
  setStatus("running", "generating…");
  const started = performance.now();
  let firstAt = null;
  let finish = null;
  let usage = null;
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, model: modelName, stream: true,
                             stream_options: { include_usage: true } }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    for await (const chunk of events(response)) {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        const text = choice.text ?? choice.delta?.content ?? "";
        if (text) {
          firstAt ??= performance.now();
          onText(text);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    setStatus("done", summary(finish, usage, started, firstAt), finish);
    return finish;
  } catch (error) {
    if (controller.signal.aborted) {
      setStatus("stopped", "stopped");
      return "stopped";
    }
    setStatus("error", "");
    showError(error.message);
    return null;
  } finally {
    inFlight = null;
    setBusy(false);
  }
}

function summary(finish, usage, started, firstAt) {
  const parts = [`finished: ${finish}`];
  if (usage) parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} generated tokens`);
  if (firstAt !== null) parts.push(`first token after ${Math.round(firstAt - started)} ms`);
  parts.push(`done after ${Math.round(performance.now() - started)} ms`);
  return parts.join(" · ");
}

// ---- page state ---------------------------------------------------------------------------

function setBusy(busy) {
  for (const button of document.querySelectorAll("button.primary")) button.disabled = busy;
  for (const button of document.querySelectorAll("button.stop")) button.disabled = !busy;
}

function setStatus(state, text, finish = "") {
  const status = $("status");
  status.dataset.state = state;
  status.dataset.finishReason = finish ?? "";
  status.textContent = text;
}

function showError(message) {
  const box = $("error");
  box.hidden = message === null;
  box.textContent = message ?? "";
}

function showPanel(name) {
  for (const tab of document.querySelectorAll("nav [role=tab]")) {
    const selected = tab.dataset.panel === name;
    tab.setAttribute("aria-selected", String(selected));
    $(`panel-${tab.dataset.panel}`).hidden = !selected;
  }
}

// ---- the three modes ----------------------------------------------------------------------

async function complete() {
  const prompt = $("prompt").value;
  const generated = $("complete-generated");
  $("complete-context").textContent = prompt;
  generated.textContent = "";
  await generate("/v1/completions", { prompt, ...sampling() }, (text) => {
    generated.textContent += text;
  });
}

async function infill() {
  const prefix = $("prefix").value;
  const suffix = $("suffix").value;
  const generated = $("infill-generated");
  $("infill-prefix").textContent = prefix;
  $("infill-suffix").textContent = suffix;
  generated.textContent = "";
  // The server writes the fill-in-the-middle template around prompt and suffix.
  await generate("/v1/completions", { prompt: prefix, suffix, ...sampling() }, (text) => {
    generated.textContent += text;
  });
}

function addTurn(role, content) {
  const item = document.createElement("li");
  item.className = role;
  item.textContent = content;
  $("transcript").append(item);
  return item;
}

async function chat() {
  const message = $("message").value;
  if (!message.trim() || inFlight) return;
  $("message").value = "";
  const userItem = addTurn("user", message);
  const answerItem = addTurn("assistant", "");
  history.push({ role: "user", content: message });
  const system = $("system").value;
  const messages = system ? [{ role: "system", content: system }, ...history] : [...history];
  let answer = "";
  const finish = await generate("/v1/chat/completions", { messages, ...sampling() }, (text) => {
    answer += text;
    answerItem.textContent = answer;
  });
  if (finish === null) {
    // The request failed: take the message back so it can be edited and sent again.
    history.pop();
    userItem.remove();
    answerItem.remove();
    $("message").value = message;
    return;
  }
  history.push({ role: "assistant", content: answer });
}

function clearChat() {
  history.length = 0;
  $("transcript").replaceChildren();
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models");
    if (!response.ok) throw new Error(await errorMessage(response));
    const models = await response.json();
    modelName = models.data[0].id;
    $("model").textContent = `${modelName} · context ${models.data[0].max_model_len} tokens`;
  } catch (error) {
    $("model").textContent = "server unreachable";
    showError(error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll("nav [role=tab]")) {
    tab.addEventListener("click", () => showPanel(tab.dataset.panel));
  }
  $("run-complete").addEventListener("click", complete);
  $("run-infill").addEventListener("click", infill);
  $("run-chat").addEventListener("click", chat);
  $("clear-chat").addEventListener("click", clearChat);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) chat();
  });
  for (const button of document.querySelectorAll("button.stop")) {
    button.addEventListener("click", () => inFlight?.abort());
  }
  loadModel();
});
