// Keyboard shortcuts for the review queue. Every key presses a button or sets a field that also works with a mouse
// and without JavaScript; this file only maps keys and keeps focus where the next keystroke is expected.
(function () {
  "use strict";

  let shownAt = Date.now();
  let busy = false;
  const $ = (selector) => document.querySelector(selector);

  function focusItem() {
    const target = $("#queue-item") || $("#queue-empty");
    if (target) target.focus();
    shownAt = Date.now();
  }

  function click(selector) {
    const button = $(selector);
    if (button && !busy) button.click();
  }

  function pickLabel(key) {
    const input = Array.from(document.querySelectorAll("#review-form input[name=labels]"))
      .find((el) => el.dataset.hotkey === key);
    if (!input) return false;
    input.checked = input.type === "checkbox" ? !input.checked : true;
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

  function cancelEdit() {
    const text = $("#edit-text");
    text.value = text.defaultValue;
    $("#edit-panel").open = false;
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

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target;
    if (target.id === "edit-text") {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        click("#edit-save");
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
    if (pickLabel(event.key)) {
      event.preventDefault();
    } else if (actions[event.key]) {
      event.preventDefault();
      click(actions[event.key]);
    } else if (event.key === "e") {
      event.preventDefault();
      openEdit();
    } else if (event.key === "r") {
      event.preventDefault();
      openReject();
    }
  });

  // How long the item was on screen, sent with the action (the capture phase runs before htmx reads the form).
  document.addEventListener("submit", function (event) {
    const field = event.target.querySelector("input[name=time_spent_ms]");
    if (field) field.value = String(Date.now() - shownAt);
  }, true);

  document.addEventListener("htmx:beforeRequest", function () { busy = true; });
  document.addEventListener("htmx:afterRequest", function () { busy = false; });
  // Focus the new item in the same task that puts it on screen: no keystroke can arrive in between. htmx:afterSettle
  // would be too late, it runs on a timer after the swap (and once per out-of-band swap), so on a loaded machine the
  // user has already pressed e and started typing, and moving focus then sends those keys to the shortcuts instead.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.id === "queue-panel") focusItem();
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", focusItem);
  } else {
    focusItem();
  }
})();
