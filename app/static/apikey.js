// The API key the page sends with every request (X-API-Key), kept in this browser's
// localStorage and set with the field on the start page.
"use strict";

const API_KEY_STORAGE = "slide-restore.api-key";

function apiKey() {
  return localStorage.getItem(API_KEY_STORAGE) || "";
}

function apiHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, "X-API-Key": key } : { ...extra };
}

// fetch with the key; a 401 or 403 says what to do about it.
async function apiFetch(url, options = {}) {
  const response = await fetch(url, { ...options, headers: apiHeaders(options.headers) });
  if (response.status === 401 || response.status === 403) {
    const hint = response.status === 401 ? "paste a valid API key on the start page" : "this key may not do that";
    throw new Error(`${url}: ${response.status} (${hint})`);
  }
  return response;
}

// The field on the start page: shows whether a key is set, saves a pasted one.
function setUpKeyForm() {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  const state = document.getElementById("key-state");
  state.textContent = apiKey() ? `key ${apiKey().split("_")[1] || "set"} in use` : "no key set";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (key) localStorage.setItem(API_KEY_STORAGE, key);
    else localStorage.removeItem(API_KEY_STORAGE);
    location.reload();
  });
}
