// The Claim button: the portal signs a voucher and encodes the claim(...) call; the browser
// wallet (EIP-1193) sends it with eth_sendTransaction; the page reports the transaction hash.
// "Claim without gas": the portal signs a voucher and its relayer sends it (no wallet needed).
"use strict";

(function () {
  const button = document.getElementById("claim-button");
  const relayButton = document.getElementById("relay-button");
  const status = document.getElementById("claim-status");
  if (!button) return;

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json", "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.detail || `The portal answered ${response.status}.`);
      error.code = data.error;
      throw error;
    }
    return data;
  }

  function say(text, kind) {
    status.textContent = text;
    status.dataset.kind = kind || "info";
  }

  function walletErrorText(error) {
    if (error && error.code === 4001) return "You declined the transaction in your wallet. The voucher stays valid until its deadline.";
    return (error && error.message) || "Something went wrong.";
  }

  button.addEventListener("click", async () => {
    if (!window.ethereum) {
      say(relayButton
        ? "No browser wallet was found. Use \u201cClaim without gas\u201d, or install a wallet such as MetaMask or Rabby."
        : "No browser wallet was found. Install a wallet such as MetaMask or Rabby to claim.", "error");
      return;
    }
    button.disabled = true;
    try {
      const [from] = await window.ethereum.request({ method: "eth_requestAccounts" });
      say("Preparing your voucher…");
      const voucher = await api("/api/v1/me/claims");
      const chainId = await window.ethereum.request({ method: "eth_chainId" }).catch(() => null);
      if (chainId !== null && parseInt(chainId, 16) !== voucher.chain_id) {
        throw new Error(`Switch your wallet to chain ${voucher.chain_id} and try again.`);
      }
      say("Confirm the transaction in your wallet…");
      const txHash = await window.ethereum.request({
        method: "eth_sendTransaction",
        params: [{ from, to: voucher.tx.to, data: voucher.tx.data }],
      });
      await api(`/api/v1/me/claims/${voucher.claim_id}/transaction`, { tx_hash: txHash });
      say("Sent. The claim is confirmed once the chain has enough blocks on top of it.", "ok");
      window.location.reload();
    } catch (error) {
      say(walletErrorText(error), "error");
      button.disabled = false;
    }
  });

  // A new voucher, or else the newest one still waiting to be sent (a relay refused earlier).
  async function voucherToRelay() {
    try {
      return (await api("/api/v1/me/claims")).claim_id;
    } catch (error) {
      if (error.code !== "nothing_to_claim") throw error;
      const response = await fetch("/api/v1/me/claims", { credentials: "same-origin", headers: { Accept: "application/json" } });
      const open = ((await response.json().catch(() => ({}))).claims || []).find((c) => c.status === "issued");
      if (!open) throw error;
      return open.claim_id;
    }
  }

  if (relayButton) {
    relayButton.addEventListener("click", async () => {
      relayButton.disabled = true;
      button.disabled = true;
      try {
        say("Preparing your voucher…");
        const claimId = await voucherToRelay();
        say("The portal is sending your claim…");
        await api(`/api/v1/me/claims/${claimId}/relay`);
        say("Sent by the portal. The claim is confirmed once the chain has enough blocks on top of it.", "ok");
        window.location.reload();
      } catch (error) {
        say(error.message || "Something went wrong.", "error");
        relayButton.disabled = false;
        button.disabled = false;
      }
    });
  }
})();
