// Sign-In with Ethereum for the portal's pages: the browser wallet (EIP-1193) when there is one,
// and a paste-the-signature fallback for hardware and command-line wallets.
"use strict";

(function () {
  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    const options = {
      method,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.detail || `The portal answered ${response.status}.`);
      error.code = data.error;
      throw error;
    }
    return data;
  }

  // The portal builds the EIP-4361 text (checksummed address, its domain, chain and nonce).
  async function messageFor(address) {
    const data = await api("GET", `/auth/nonce?address=${encodeURIComponent(address)}`);
    return data.message;
  }

  function utf8Hex(text) {
    return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function walletSign(address, message) {
    return window.ethereum.request({ method: "personal_sign", params: [utf8Hex(message), address] });
  }

  function say(element, text, kind) {
    if (!element) return;
    element.textContent = text;
    element.dataset.kind = kind || "info";
  }

  function walletErrorText(error) {
    if (error && error.code === 4001) return "You declined the request in your wallet. Nothing was signed.";
    return (error && error.message) || "Something went wrong.";
  }

  async function signIn(status, nextUrl) {
    if (!window.ethereum) {
      document.getElementById("no-wallet").hidden = false;
      say(status, "No browser wallet was found. Use the fallback below, or install a wallet such as MetaMask or Rabby.", "error");
      return;
    }
    try {
      say(status, "Asking your wallet for an account…");
      const accounts = await window.ethereum.request({ method: "eth_requestAccounts" });
      if (!accounts || !accounts.length) throw new Error("Your wallet shared no account.");
      const message = await messageFor(accounts[0]);
      say(status, "Please sign the message in your wallet. It costs nothing and sends no transaction.");
      const signature = await walletSign(accounts[0], message);
      const result = await api("POST", "/auth/verify", { message, signature });
      say(status, `Signed in as ${result.address}.`, "success");
      window.location.assign(nextUrl || "/dashboard/");
    } catch (error) {
      say(status, walletErrorText(error), "error");
    }
  }

  async function linkWithBrowserWallet(status, linked) {
    if (!window.ethereum) {
      say(status, "No browser wallet was found. Use the fallback below to link a wallet by pasting a signature.", "error");
      return;
    }
    try {
      const accounts = await window.ethereum.request({ method: "eth_requestAccounts" });
      const fresh = (accounts || []).find((a) => !linked.includes(a.toLowerCase()));
      if (!fresh) {
        say(status, "Every account your wallet shared is linked already. Switch to the account you want to add in your wallet, then try again.", "error");
        return;
      }
      const message = await messageFor(fresh);
      say(status, "Please sign the message in your wallet to prove you own this account.");
      const signature = await walletSign(fresh, message);
      await api("POST", "/api/v1/me/wallets", { message, signature });
      window.location.reload();
    } catch (error) {
      say(status, walletErrorText(error), "error");
    }
  }

  function wireFallback(form, onSigned) {
    if (!form) return;
    const status = form.querySelector("[data-role=status]");
    const messageBox = form.querySelector("textarea[name=message]");
    form.querySelector("[data-action=get-message]").addEventListener("click", async () => {
      const address = form.querySelector("input[name=address]").value.trim();
      try {
        messageBox.value = await messageFor(address);
        say(status, "Sign this exact text with your wallet (personal_sign / EIP-191), then paste the signature.");
        messageBox.focus();
      } catch (error) {
        say(status, walletErrorText(error), "error");
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const message = messageBox.value;
      const signature = form.querySelector("textarea[name=signature]").value.trim();
      try {
        await onSigned(message, signature);
      } catch (error) {
        say(status, walletErrorText(error), "error");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("click", async () => {
        await api("POST", "/auth/logout").catch(() => {});
        window.location.assign("/");
      });
    }

    const signInButton = document.getElementById("signin-wallet");
    if (signInButton) {
      const status = document.getElementById("signin-status");
      const nextUrl = signInButton.dataset.next;
      signInButton.addEventListener("click", () => signIn(status, nextUrl));
      wireFallback(document.getElementById("manual-signin"), async (message, signature) => {
        await api("POST", "/auth/verify", { message, signature });
        window.location.assign(nextUrl || "/dashboard/");
      });
    }

    document.querySelectorAll("button[data-demo]").forEach((button) => {
      button.addEventListener("click", async () => {
        try {
          await api("POST", "/auth/demo", { name: button.dataset.demo });
          window.location.assign(button.dataset.next || "/dashboard/");
        } catch (error) {
          say(document.getElementById("signin-status"), walletErrorText(error), "error");
        }
      });
    });

    const wallets = document.getElementById("wallets");
    if (wallets) {
      const status = document.getElementById("wallet-status");
      const linked = Array.from(wallets.querySelectorAll("[data-address]"), (row) => row.dataset.address.toLowerCase());
      document.getElementById("link-wallet").addEventListener("click", () => linkWithBrowserWallet(status, linked));
      wallets.addEventListener("click", async (event) => {
        const button = event.target.closest("button[data-action]");
        if (!button) return;
        const address = button.closest("[data-address]").dataset.address;
        try {
          if (button.dataset.action === "payout") {
            await api("POST", `/api/v1/me/wallets/${address}/payout`);
          } else if (button.dataset.action === "unlink") {
            if (!window.confirm(`Unlink ${address}?`)) return;
            await api("DELETE", `/api/v1/me/wallets/${address}`);
          }
          window.location.reload();
        } catch (error) {
          say(status, walletErrorText(error), "error");
        }
      });
      wireFallback(document.getElementById("manual-link"), async (message, signature) => {
        await api("POST", "/api/v1/me/wallets", { message, signature });
        window.location.reload();
      });
    }
  });
})();
