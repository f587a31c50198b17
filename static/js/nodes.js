// The machines page: copy the one-time command, and ask before revoking a machine.
"use strict";

(function () {
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-copy]").forEach((button) => {
      button.addEventListener("click", async () => {
        const text = document.querySelector(button.dataset.copy).textContent;
        try {
          await navigator.clipboard.writeText(text);
          button.textContent = "Copied";
        } catch (error) {
          button.textContent = "Select and copy the text above";
        }
      });
    });

    // The question names the machine; the server wrote it into data-confirm as an escaped
    // attribute, and confirm() shows plain text, so a hostname stays a hostname.
    document.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  });
})();
