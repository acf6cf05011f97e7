// Refreshes the dashboard's figures in place, and asks before the kill switch changes.
// A file, not inline script, so it runs under the Content-Security-Policy (script-src 'self').
"use strict";
(function () {
  function bindConfirm(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    });
  }

  function refresh(panel) {
    var focused = panel.contains(document.activeElement) && document.activeElement.value;
    if (focused) {
      return; // someone is typing a reason: do not replace the form under them
    }
    fetch(panel.getAttribute("data-refresh-url"), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        panel.innerHTML = html;
        panel.setAttribute("data-refreshed", String(Date.now()));
        bindConfirm(panel);
      })
      .catch(function () {
        panel.setAttribute("data-refresh-failed", String(Date.now()));
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    bindConfirm(document);
    var panel = document.getElementById("dashboard-panel");
    if (!panel) {
      return;
    }
    var seconds = parseInt(panel.getAttribute("data-refresh-seconds"), 10) || 15;
    window.setInterval(function () { refresh(panel); }, seconds * 1000);
  });
})();
