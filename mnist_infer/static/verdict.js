// The verdict beside the pad: the digit, how sure, a waiting sign, an old answer marked as old.

const $ = (id) => document.getElementById(id);

export function createVerdict() {
  const box = $("verdict");
  const digit = $("digit");
  const confidence = $("confidence");
  const note = $("verdict-note");
  const status = $("status");
  const live = $("announce");

  function mark(kind) {
    box.dataset.state = kind; // empty, fresh, stale
    document.body.dataset.stale = kind === "stale" ? "1" : "0";
  }

  return {
    /** An answer for what is on the pad: a digit, or (is_digit false, as `predict` says
     * "not a digit") a message with the network's best guess in small print. */
    show(answer) {
      const notDigit = answer.is_digit === false;
      const percent = `${(answer.confidence * 100).toFixed(1)}%`;
      digit.textContent = notDigit ? "That doesn't look like a digit" : String(answer.digit);
      confidence.textContent = notDigit ? `Looks most like ${answer.guess} (${percent})` : `${percent} sure`;
      box.classList.toggle("not-digit", notDigit);
      note.textContent = "";
      mark("fresh");
    },

    /** What a screen reader hears of an answer. */
    spoken(answer) {
      const percent = `${(answer.confidence * 100).toFixed(0)}%`;
      return answer.is_digit === false
        ? `That doesn't look like a digit; it looks most like ${answer.guess} (${percent})`
        : `${answer.digit}, ${percent} sure`;
    },

    /** No answer (nothing drawn, or the image could not be used). */
    clear() {
      digit.textContent = "–";
      confidence.textContent = "no digit yet";
      box.classList.remove("not-digit");
      note.textContent = "";
      mark("empty");
    },

    /** The answer shown is for an earlier drawing: the server did not answer. */
    stale() {
      if (box.dataset.state === "fresh") {
        note.textContent = "old answer, for an earlier drawing";
        mark("stale");
      }
    },

    /** A request has been waiting a while (or no longer is). */
    waiting(on) {
      box.classList.toggle("waiting", on);
      $("waiting").hidden = !on;
    },

    /** The line under the pad; only rewritten when it changes. */
    status(text, error = false) {
      if (status.textContent !== text) status.textContent = text;
      status.classList.toggle("error", error);
    },

    /** Say something once to screen readers (a fresh node, so a repeat is said again). */
    announce(text) {
      const span = document.createElement("span");
      span.textContent = text;
      live.replaceChildren(span);
    },
  };
}
