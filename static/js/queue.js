// Keyboard shortcuts for the review queue. Every key presses a button or sets a field that also works with a mouse
// and without JavaScript; this file only maps keys, keeps focus where the next keystroke is expected, keeps typed text
// when a label is still missing, and opens or closes the guidelines (g, remembered in this browser).
(function () {
  "use strict";

  let shownAt = Date.now();
  let busy = false;
  // An edit that waits for its label: the next label key returns to the text, where Enter saves.
  let editWaitsForLabel = false;
  const GUIDELINES_KEY = "synthstudio.queue.guidelines";
  const $ = (selector) => document.querySelector(selector);

  function focusItem() {
    shownAt = Date.now();
    const panel = $("#queue-panel");
    // The server kept a refused edit and asks for its label: start where the answer is expected.
    if (panel && panel.dataset.focus === "labels" && askForLabel()) return;
    editWaitsForLabel = false;
    const target = $("#queue-item") || $("#queue-empty");
    if (target) target.focus();
  }

  function click(selector) {
    const button = $(selector);
    if (button && !busy) button.click();
  }

  function labelInputs() {
    return Array.from(document.querySelectorAll("#review-form input[name=labels]"));
  }

  function needsLabel() {
    const form = $("#review-form");
    return form && form.hasAttribute("data-needs-label") && !labelInputs().some((input) => input.checked);
  }

  // Show the "pick a label" note and move focus to the labels; the typed text stays in the (open) edit panel.
  function askForLabel() {
    const inputs = labelInputs();
    const note = $("#label-needed");
    if (!inputs.length || !note) return false;
    note.hidden = false;
    editWaitsForLabel = Boolean($("#edit-panel") && $("#edit-panel").open);
    inputs[0].focus();
    return true;
  }

  function labelPicked() {
    const note = $("#label-needed");
    if (note) note.hidden = true;
    if (editWaitsForLabel) {
      editWaitsForLabel = false;
      openEdit();
    }
  }

  function pickLabel(key) {
    const input = labelInputs().find((el) => el.dataset.hotkey === key);
    if (!input) return false;
    input.checked = input.type === "checkbox" ? !input.checked : true;
    labelPicked();
    return true;
  }

  function openEdit() {
    const panel = $("#edit-panel");
    const text = $("#edit-text");
    if (!panel || !text) return;
    panel.open = true;
    text.focus();
    text.setSelectionRange(text.value.length, text.value.length);
  }

  function saveEdit() {
    if (needsLabel()) {
      askForLabel();
      return;
    }
    click("#edit-save");
  }

  function cancelEdit() {
    const text = $("#edit-text");
    text.value = text.defaultValue;
    $("#edit-panel").open = false;
    editWaitsForLabel = false;
    focusItem();
  }

  function openReject() {
    const panel = $("#reject-panel");
    if (!panel) return;
    panel.open = true;
    const first = panel.querySelector("input[name=reason]:checked") || panel.querySelector("input[name=reason]");
    if (first) first.focus();
  }

  function closeReject() {
    $("#reject-panel").open = false;
    focusItem();
  }

  function onRejectKey(event) {
    if (event.key === "Escape") {
      event.preventDefault();
      closeReject();
    } else if (event.target.name === "reason" && /^[1-9]$/.test(event.key)) {
      const reason = document.querySelectorAll("#reject-form input[name=reason]")[Number(event.key) - 1];
      if (reason) {
        event.preventDefault();
        reason.checked = true;
        reason.focus();
      }
    } else if (event.key === "Enter" && event.target.name === "reason") {
      event.preventDefault();
      click("#reject");
    }
  }

  // Guidelines: open unless this browser closed them; the choice is kept in localStorage (none when it is blocked).
  function storedGuidelines() {
    try { return window.localStorage.getItem(GUIDELINES_KEY); } catch (error) { return null; }
  }

  function showGuidelines(open, remember) {
    const layout = $("#queue-layout");
    const body = $("#guidelines-body");
    const button = $("#guidelines-toggle");
    if (!layout || !body || !button) return;
    layout.classList.toggle("guidelines-hidden", !open);
    body.hidden = !open;
    button.hidden = false;
    button.setAttribute("aria-expanded", String(open));
    button.firstChild.textContent = open ? "Hide " : "Show ";
    if (remember) {
      try { window.localStorage.setItem(GUIDELINES_KEY, open ? "open" : "closed"); } catch (error) { /* private mode */ }
    }
  }

  function toggleGuidelines() {
    const body = $("#guidelines-body");
    if (body) showGuidelines(body.hidden, true);
  }

  // Label colours come from each label's colour field; the Content-Security-Policy refuses style attributes, so they
  // are set through the CSSOM (without it, app.css shows the accent colour).
  function paintLabels(root) {
    root.querySelectorAll("[data-color]").forEach((el) => {
      el.style.setProperty("--label", el.dataset.color);
      el.style.setProperty("--label-ink", el.dataset.ink || "#fff");
    });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target;
    if (target.id === "edit-text") {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        saveEdit();
      } else if (event.key === "Escape") {
        event.preventDefault();
        cancelEdit();
      }
      return;
    }
    if (target.closest && target.closest("#reject-panel")) {
      onRejectKey(event);
      return;
    }
    if (target.matches && target.matches("input[type=text], input[type=search], textarea, select")) return;
    if (!$("#queue-panel")) return;

    const actions = { a: "#accept", s: "#skip", u: "#undo" };
    // A label's hotkey wins over g (RESERVED_HOTKEYS keeps new labels off it; an older label may still use it).
    if (pickLabel(event.key)) {
      event.preventDefault();
    } else if (event.key === "Enter" && editWaitsForLabel && target.name === "labels") {
      event.preventDefault();
      saveEdit();
    } else if (actions[event.key]) {
      event.preventDefault();
      if (event.key === "a" && needsLabel()) askForLabel();
      else click(actions[event.key]);
    } else if (event.key === "e") {
      event.preventDefault();
      openEdit();
    } else if (event.key === "r") {
      event.preventDefault();
      openReject();
    } else if (event.key === "g") {
      event.preventDefault();
      toggleGuidelines();
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target.name === "labels" && event.target.closest("#review-form")) labelPicked();
  });

  // How long the item was on screen, sent with the action (the capture phase runs before htmx reads the form).
  document.addEventListener("submit", function (event) {
    const field = event.target.querySelector("input[name=time_spent_ms]");
    if (field) field.value = String(Date.now() - shownAt);
  }, true);

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("#guidelines-toggle")) toggleGuidelines();
  });

  document.addEventListener("htmx:beforeRequest", function () { busy = true; });
  document.addEventListener("htmx:afterRequest", function () { busy = false; });
  // Focus the new item in the same task that puts it on screen: no keystroke can arrive in between. htmx:afterSettle
  // would be too late, it runs on a timer after the swap (and once per out-of-band swap), so on a loaded machine the
  // user has already pressed e and started typing, and moving focus then sends those keys to the shortcuts instead.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.id === "queue-panel") {
      paintLabels($("#queue-panel") || document);
      focusItem();
    }
  });

  function start() {
    paintLabels(document);
    showGuidelines(storedGuidelines() !== "closed", false);
    focusItem();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
