// The dashboard's balance cards, filled from /api/v1/me/balance after the page loads.
"use strict";

(function () {
  // Whole OMNIT with four decimals, rounded down: exact arithmetic on the wei string.
  function omnit(wei) {
    const value = BigInt(wei), unit = 10n ** 18n;
    const frac = (value % unit).toString().padStart(18, "0").slice(0, 4);
    return `${(value / unit).toLocaleString("en-US")}.${frac}`;
  }

  function show(element, wei) {
    if (!element) return;
    const unit = document.createElement("small");
    unit.textContent = "OMNIT";
    element.replaceChildren(`${omnit(wei)} `, unit);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try {
      const response = await fetch("/api/v1/me/balance", { credentials: "same-origin" });
      if (!response.ok) return;
      const balance = await response.json();
      show(document.getElementById("claimable"), balance.claimable_wei);
      show(document.getElementById("lifetime"), balance.earned_wei);
    } catch (error) {
      /* the cards keep their dash */
    }
  });
})();
