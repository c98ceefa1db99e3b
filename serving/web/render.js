// DOM for the conversation. Model and user text only ever goes in through textContent / text nodes.

let counter = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (value !== false && value != null) node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

export function userMessage(text) {
  return el("li", { class: "msg user" }, el("span", { class: "who visually-hidden", text: "You:" }),
    el("div", { class: "bubble", text }));
}

/** An answer: text that grows while it streams, then its sources, a refusal or an error, and feedback. */
export class AnswerView {
  constructor() {
    this.key = `a${++counter}`;
    this.text = "";
    this.body = el("div", { class: "bubble" });
    this.status = el("p", { class: "status" });
    this.node = el("li", { class: "msg assistant", "aria-busy": "true" },
      el("span", { class: "who visually-hidden", text: "Answer:" }), this.body, this.status);
    this.body.append(el("span", { class: "typing", "aria-hidden": "true" }));
  }

  append(delta) {
    if (!this.text) this.body.textContent = "";
    this.text += delta;
    this.body.append(document.createTextNode(delta));
  }

  /** The final text with its [n] markers as links to the numbered sources below. */
  finish(sources) {
    this.node.setAttribute("aria-busy", "false");
    this.body.querySelector(".typing")?.remove();
    if (!this.text) this.body.textContent = "";
    if (!sources?.length) return;
    this.body.replaceChildren(...this.linkCitations(this.text, sources.length));
    this.node.append(this.sourceList(sources));
  }

  linkCitations(text, count) {
    const parts = [];
    let last = 0;
    for (const m of text.matchAll(/\[(\d{1,3})\]/g)) {
      const n = Number(m[1]);
      if (n < 1 || n > count) continue;
      parts.push(document.createTextNode(text.slice(last, m.index)));
      const link = el("a", { href: `#${this.key}-src-${n}`, class: "cite", "aria-label": `source ${n}`, text: m[0] });
      link.addEventListener("click", () => { document.getElementById(`${this.key}-src-${n}`).open = true; });
      parts.push(link);
      last = m.index + m[0].length;
    }
    parts.push(document.createTextNode(text.slice(last)));
    return parts;
  }

  sourceList(sources) {
    const list = el("ol", { class: "sources", "aria-label": "Sources" });
    sources.forEach((s, i) => {
      const n = s.index ?? i + 1;
      const where = [s.source, s.start != null && s.end != null ? `characters ${s.start}–${s.end}` : null]
        .filter(Boolean).join(", ");
      list.append(el("li", { value: n },
        el("details", { id: `${this.key}-src-${n}` },
          el("summary", {}, el("span", { class: "num", text: `[${n}]` }), " ",
            el("span", { class: "title", text: s.title || s.source || `Source ${n}` })),
          el("blockquote", { class: "chunk", text: s.text ?? "" }),
          where ? el("p", { class: "where" }, sourceLink(s.source, where)) : "")));
    });
    return el("section", { class: "sources-box" }, el("h2", { class: "sources-title", text: "Sources" }), list);
  }

  /** Shown as a refusal, not as an answer: the policy's message (or the streamed text when there is none). */
  refuse(refusal) {
    const notFound = refusal?.kind === "not_in_documents";
    this.node.classList.add("refusal");
    this.node.setAttribute("aria-busy", "false");
    const message = refusal?.message || this.text || "The request was refused.";
    this.body.replaceChildren(
      el("strong", { class: "label", text: notFound ? "Not in the documents" : "Refused" }), " ",
      el("span", { text: message }));
    if (refusal?.policy && !notFound) this.body.append(el("span", { class: "policy", text: ` (policy: ${refusal.policy})` }));
  }

  fail(message) {
    this.node.classList.add("error");
    this.node.setAttribute("aria-busy", "false");
    this.body.querySelector(".typing")?.remove();
    this.node.append(el("p", { class: "error-text", role: "alert" }, el("strong", { text: "Error: " }), message));
  }

  stopped() {
    this.node.setAttribute("aria-busy", "false");
    this.body.querySelector(".typing")?.remove();
    this.node.classList.add("stopped");
    this.status.textContent = "Stopped.";
  }

  /** Thumbs up/down, then an optional comment; `send(rating, comment)` posts it and resolves to an error message
   * or null. */
  feedback(send) {
    const box = el("div", { class: "feedback", role: "group", "aria-label": "Rate this answer" });
    const up = el("button", { type: "button", class: "thumb", "aria-pressed": "false", "aria-label": "Good answer", title: "Good answer" }, thumbIcon());
    const down = el("button", { type: "button", class: "thumb down", "aria-pressed": "false", "aria-label": "Bad answer", title: "Bad answer" }, thumbIcon());
    const note = el("span", { class: "feedback-note", role: "status" });
    const form = el("form", { class: "comment", hidden: true },
      el("label", { for: `${this.key}-comment`, class: "visually-hidden", text: "Comment on this answer (optional)" }),
      el("input", { id: `${this.key}-comment`, name: "comment", type: "text", maxlength: "2000", placeholder: "Add a comment (optional)" }),
      el("button", { type: "submit", class: "secondary", text: "Send comment" }));
    let rating = null;
    const rate = async (value) => {
      rating = value;
      up.setAttribute("aria-pressed", String(value === "up"));
      down.setAttribute("aria-pressed", String(value === "down"));
      const error = await send(value, null);
      note.textContent = error ? `Feedback not sent: ${error}` : "Thanks for the feedback.";
      if (!error) {
        form.hidden = false;
        form.comment.focus();
      }
    };
    up.addEventListener("click", () => rate("up"));
    down.addEventListener("click", () => rate("down"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const comment = form.comment.value.trim();
      if (!comment || !rating) return;
      const error = await send(rating, comment);
      note.textContent = error ? `Comment not sent: ${error}` : "Thanks, your comment was sent.";
      if (!error) form.hidden = true;
    });
    box.append(up, down, note, form);
    this.node.append(box);
    return note;
  }
}

/** The source's location: a link when it is a web address, else text. */
function sourceLink(source, label) {
  if (!/^https?:\/\//i.test(source ?? "")) return label;
  return el("a", { href: source, target: "_blank", rel: "noopener noreferrer", text: label });
}

/** A thumbs-up drawn inline (no emoji font needed, nothing to fetch); `.thumb.down` turns it over. */
function thumbIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", "M2 10h4v11H2zM8 21V10l4.5-8c1.6 0 2.7 1.2 2.5 2.8L14.4 9H20c1.3 0 2.2 1.2 1.9 2.4l-1.8 7.2A3 3 0 0 1 17.2 21z");
  svg.append(path);
  return svg;
}
const SVG = "http://www.w3.org/2000/svg";

export function errorMessage(message) {
  return el("li", { class: "msg notice error", role: "alert" }, el("strong", { text: "Error: " }), message);
}
