// Every page: the message toasts (templates/_messages.html). A live region announces what changes in it, not what a
// page arrives with, so the messages a page loads with are repeated a moment later in a visually hidden live region
// for screen readers; each toast gets a button that dismisses it.
(function () {
  "use strict";

  function addDismiss(toast) {
    if (toast.querySelector(".toast-close")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "toast-close";
    button.setAttribute("aria-label", "Dismiss this message");
    toast.appendChild(button);
  }

  function start() {
    const region = document.getElementById("messages");
    if (!region) return;
    region.querySelectorAll(".toast").forEach(addDismiss);
    const announcer = document.getElementById("announcer");
    const text = Array.from(region.querySelectorAll(".toast")).map((toast) => toast.textContent.trim()).join(" ");
    if (announcer && text) window.setTimeout(function () { announcer.textContent = text; }, 250);
    new MutationObserver(function () {
      region.querySelectorAll(".toast").forEach(addDismiss);
    }).observe(region, { childList: true });
    region.addEventListener("click", function (event) {
      const button = event.target.closest(".toast-close");
      if (button) button.parentElement.remove();
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
