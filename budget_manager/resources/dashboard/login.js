// The login page: asks for the API key, checks it by requesting the dashboard page with it,
// keeps it in sessionStorage (never in the URL) and shows the page it got in place of this one.
"use strict";
(() => {
  const STORE = "budget-manager.key";
  const form = document.getElementById("login");
  const status = document.getElementById("login-status");

  async function show(html) {
    const next = new DOMParser().parseFromString(html, "text/html");
    const scripts = [...next.querySelectorAll("script[src]")].map((script) => {
      script.remove();
      return script.getAttribute("src");
    });
    document.title = next.title;
    document.head.replaceChildren(...[...next.head.childNodes].map((n) => document.importNode(n, true)));
    document.body.replaceWith(document.importNode(next.body, true));
    for (const src of scripts) {  // in order, as the page lists them
      await new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = src;
        script.onload = resolve;
        script.onerror = () => reject(new Error(`cannot load ${src}`));
        document.body.appendChild(script);
      });
    }
  }

  async function enter(key, saved) {
    status.textContent = "Checking the key…";
    let answer;
    try {
      answer = await fetch(location.href, {
        headers: { Authorization: `Bearer ${key}` },
        cache: "no-store",
      });
    } catch (err) {
      status.textContent = "The service cannot be reached.";
      return;
    }
    if (answer.status === 401) {
      sessionStorage.removeItem(STORE);
      status.textContent = saved
        ? "The saved key is no longer accepted. Enter a key."
        : "That key was refused.";
      return;
    }
    if (!answer.ok) {
      status.textContent = `The service answered ${answer.status}.`;
      return;
    }
    sessionStorage.setItem(STORE, key);
    await show(await answer.text());
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = form.elements.key.value.trim();
    if (key) enter(key, false);
    else status.textContent = "Enter the API key.";
  });
  const saved = sessionStorage.getItem(STORE);
  if (saved) enter(saved, true);
})();
